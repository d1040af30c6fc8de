"""Issue 13: Graphviz draws the branches of a merge left to right in the order the spec writes them.

GoogLeNet's inception branches came out 3, 2, 4, 1: `ordering=out` is ignored between boxes and dot swapped
whole branch boxes at will. The positions here are Graphviz's own (`dot -Tplain`, and the SVG it draws)."""

from __future__ import annotations

import re
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import archc
from archc import graph

SPECS = Path(__file__).resolve().parent.parent / "specs"
TINY = Path(__file__).resolve().parent / "fixtures" / "graph_tiny.arch"
needs_dot = pytest.mark.skipif(not graph.have_dot(), reason="Graphviz `dot` is not installed")


def dot_positions(dot_text: str) -> dict[str, float]:
    """Node name -> x of its centre, as dot lays it out."""
    out = subprocess.run(["dot", "-Tplain"], input=dot_text, capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return {f[1]: float(f[2]) for f in map(shlex.split, out.splitlines()) if f and f[0] == "node"}


def svg_positions(svg: bytes) -> dict[str, float]:
    """Node name -> x of its centre in the SVG that `archc graph --format svg` writes (its first text line)."""
    ns = "{http://www.w3.org/2000/svg}"
    pos = {}
    for g in ET.fromstring(svg).iter(ns + "g"):
        if g.get("class") == "node":
            pos[g.find(ns + "title").text] = float(next(g.iter(ns + "text")).get("x"))
    return pos


def branch_columns(plan, pos: dict[str, float]) -> list[tuple[str, list[float]]]:
    """For each merge of parallel branches: the mean x of each branch's layers, in the merge's input order."""
    rows = []
    for order in graph._branch_orders(plan):
        prefix = order.scope + "." if order.scope else ""
        xs = []
        for src in plan.node(order.merge).inputs:
            part = prefix + src[len(prefix):].split(".")[0]
            members = [x for name, x in pos.items() if name == part or name.startswith(part + ".")]
            xs.append(sum(members) / len(members))
        rows.append((order.merge, xs))
    return rows


def test_every_branches_merge_of_the_library_is_found():
    """Each concat of these specs merges branches written under it; a residual's merge is none (its identity
    input is above its body, not beside it)."""
    for name, count in [("googlenet", 9), ("inception_v3", 15), ("squeezenet1_1", 8), ("shufflenet_v2_x1_0", 16)]:
        plan = archc.check(SPECS / f"{name}.arch")
        orders = graph._branch_orders(plan)
        assert [o.merge for o in orders] == [n.name for n in plan.nodes if n.op == "concat"], name
        assert len(orders) == count
        for order in orders:  # every branch starts from the merge's one input
            assert all(heads for heads in order.heads)
            assert all(order.fork in plan.node(h).inputs for heads in order.heads for h in heads)
    for name in ("resnet50", "densenet121", "unet"):
        assert graph._branch_orders(archc.check(SPECS / f"{name}.arch")) == [], name


def test_the_guides_are_invisible_and_add_no_layer():
    plan = archc.check(TINY)
    text = graph.to_dot(plan)
    guide = '"mixed.(order of concat)"'
    assert f'{guide} [shape=point, style=invis' in text
    assert re.findall(rf'{re.escape(guide)} -> "([^"]+)" \[style=invis\];', text) == \
        ["mixed.a.conv", "mixed.branch.conv1", "mixed.pool.maxpool"]  # the spec's order
    assert "ordering=out" not in text and "newrank=true" in text


@needs_dot
@pytest.mark.parametrize("spec", ["googlenet", "inception_v3", "squeezenet1_1", "shufflenet_v2_x1_0", "tiny"])
def test_branches_stand_left_to_right_in_the_specs_order(spec):
    plan = archc.check(TINY if spec == "tiny" else SPECS / f"{spec}.arch")
    rows = branch_columns(plan, dot_positions(graph.to_dot(plan)))
    assert rows
    wrong = [(merge, [round(x, 2) for x in xs]) for merge, xs in rows if xs != sorted(xs) or len(set(xs)) < len(xs)]
    assert wrong == []


@needs_dot
def test_the_svg_keeps_the_order():
    """What `archc graph --format svg/png` writes: rendered from the same DOT."""
    plan = archc.check(SPECS / "googlenet.arch")
    rows = branch_columns(plan, svg_positions(graph.picture(plan, "svg")))
    assert len(rows) == 9 and all(xs == sorted(xs) for _, xs in rows)
    first = dict(rows)["inception_3a.concat"]
    assert len(first) == 4 and first[0] < first[1] < first[2] < first[3]


@needs_dot
def test_left_to_right_drawings_put_branches_top_to_bottom():
    plan = archc.check(TINY)
    out = subprocess.run(["dot", "-Tplain"], input=graph.to_dot(plan, direction="LR"), capture_output=True,
                         text=True, check=True, timeout=60).stdout
    y = {f[1]: float(f[3]) for f in map(shlex.split, out.splitlines()) if f and f[0] == "node"}
    assert y["mixed.a.conv"] > y["mixed.branch.conv1"] > y["mixed.pool.maxpool"]  # plain's y grows upwards
