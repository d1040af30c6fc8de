"""`archc graph`: the DOT and Mermaid archc writes, and SVG through Graphviz where `dot` is installed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

import archc
from archc import graph
from archc.cli import main
from archc.diagnostics import ArchcError

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).resolve().parent / "fixtures" / "graph_tiny.arch"
SPECS = ROOT / "specs"
needs_dot = pytest.mark.skipif(not graph.have_dot(), reason="Graphviz `dot` is not installed")

_NODE = re.compile(r'^\s*"([^"]+)" \[label="((?:[^"\\]|\\.)*)"', re.M)
_EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)"( \[style=dashed[^\]]*\])?;', re.M)


def parse_dot(text: str) -> tuple[dict[str, str], dict[tuple[str, str], bool]]:
    """-> (node id -> label, (src, dst) -> dashed)."""
    nodes = {m.group(1): m.group(2).replace("\\n", "\n") for m in _NODE.finditer(text)}
    edges = {(m.group(1), m.group(2)): bool(m.group(3)) for m in _EDGE.finditer(text)}
    return nodes, edges


def test_tiny_dot_has_every_layer_and_edge():
    plan = archc.check(TINY)
    nodes, edges = parse_dot(graph.to_dot(plan))
    assert set(nodes) == {"input"} | {n.name for n in plan.nodes}
    assert set(edges) == {(src, n.name) for n in plan.nodes for src in n.inputs}
    for n in plan.nodes:
        assert "x".join(map(str, n.shape)) in nodes[n.name]
        assert n.opdef.label(n.args) in nodes[n.name]


def test_tiny_dot_draws_shortcuts_dashed_and_branches_solid():
    plan = archc.check(TINY)
    _, edges = parse_dot(graph.to_dot(plan))
    dashed = {e for e, is_dashed in edges.items() if is_dashed}
    assert dashed == {
        ("stem.relu", "res.add1"),  # identity shortcut
        ("res.relu2", "res.shortcut.conv"), ("res.shortcut.conv", "res.shortcut.bn"),  # projection
        ("res.shortcut.bn", "res.add2"),
    }
    assert not any(edges[(src, "mixed.concat")] for src in plan.node("mixed.concat").inputs)


def test_tiny_dot_boxes_stages_and_shortcut():
    text = graph.to_dot(archc.check(TINY))
    for cluster in ("stem", "res", "res.shortcut", "mixed", "mixed.pool", "head"):
        assert f'subgraph "cluster_{cluster}"' in text
    assert 'subgraph "cluster_mixed.a"' not in text  # one layer: no box


def test_resnet50_every_block_has_one_dashed_shortcut():
    plan = archc.check(SPECS / "resnet50.arch")
    _, edges = parse_dot(graph.to_dot(plan))
    adds = [n for n in plan.nodes if n.op == "add"]
    assert len(adds) == 16
    for add in adds:
        assert sum(edges[(src, add.name)] for src in add.inputs) == 1
    projections = [n for n in plan.nodes if n.name.endswith("shortcut.conv")]
    assert len(projections) == 4


def test_densenet_concat_dashes_the_identity_input():
    plan = archc.check(SPECS / "densenet121.arch")
    _, edges = parse_dot(graph.to_dot(plan))
    concats = [n for n in plan.nodes if n.op == "concat"]
    assert len(concats) == 58
    for node in concats:
        assert [edges[(src, node.name)] for src in node.inputs] == [True, False]


def test_stage_level_has_one_node_per_stage():
    plan = archc.check(SPECS / "resnet50.arch")
    nodes, edges = parse_dot(graph.to_dot(plan, level="stage"))
    stages = [key for key, _ in plan.stages()]
    assert list(nodes) == ["input", *stages]
    assert set(edges) == set(zip(["input", *stages], stages, strict=False))
    assert "7x7x2048" in nodes["conv5_x"] and "bottleneck x 3" in nodes["conv5_x"]
    assert "conv 7x7/2 same, 64" in nodes["conv1"]


def test_mermaid_matches_dot():
    plan = archc.check(TINY)
    text = graph.to_mermaid(plan)
    _, edges = parse_dot(graph.to_dot(plan))
    assert text.splitlines()[3] == "flowchart TB"
    assert len(re.findall(r"^\s+n\d+ -\.-> n\d+$", text, re.M)) == sum(edges.values())
    assert len(re.findall(r"^\s+n\d+ --> n\d+$", text, re.M)) == len(edges) - sum(edges.values())
    assert len(re.findall(r'^\s+n\d+[\[(]', text, re.M)) == len(plan.nodes) + 1
    assert text.count("subgraph ") == len(re.findall(r"^\s+end$", text, re.M)) == 7


@needs_dot
def test_svg_renders_one_node_per_layer():
    plan = archc.check(TINY)
    svg = graph.picture(plan, "svg")
    root = ET.fromstring(svg)
    groups = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "node"]
    assert len(groups) == len(plan.nodes) + 1
    edges = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "edge"]
    assert len(edges) == sum(len(n.inputs) for n in plan.nodes)


@needs_dot
def test_png_renders(tmp_path):
    out = tmp_path / "t.png"
    result = CliRunner().invoke(main, ["graph", str(TINY), "-o", str(out), "--level", "stage"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dot_says_how_to_install(monkeypatch):
    pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ArchcError) as e:
        graph.picture(archc.check(TINY), "svg")
    diag = e.value.diagnostics[0]
    assert diag.code == "A421"
    assert "apt-get install graphviz" in diag.help and "brew install graphviz" in diag.help


def test_cli_formats(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["graph", str(TINY)])
    assert result.exit_code == 0 and result.output.startswith('digraph "tiny"')
    result = runner.invoke(main, ["graph", str(TINY), "--format", "mermaid", "--direction", "LR"])
    assert result.exit_code == 0 and "flowchart LR" in result.output
    out = tmp_path / "t.mmd"
    assert runner.invoke(main, ["graph", str(TINY), "-o", str(out)]).exit_code == 0
    assert "flowchart TB" in out.read_text()


def test_too_many_layers_points_to_stage_level(monkeypatch):
    monkeypatch.setattr(graph, "MAX_DRAWN_NODES", 10)
    result = CliRunner().invoke(main, ["graph", str(TINY)])
    assert result.exit_code == 1 and "A420" in result.output and "--level stage" in result.output
    assert CliRunner().invoke(main, ["graph", str(TINY), "--level", "stage"]).exit_code == 0


# ---------------------------------------------------------------- issue 13: what the pictures show


def _clusters(dot_text: str) -> list[tuple[str, str]]:
    """(cluster path, label) in the order the DOT writes them."""
    return re.findall(r'subgraph "cluster_([^"]+)" \{\n\s*label="([^"]*)"', dot_text)


def test_single_layer_stages_get_their_box_and_name():
    dot_text = graph.to_dot(archc.check(SPECS / "lenet5.arch"))
    boxes = dict(_clusters(dot_text))
    for stage in ("C1", "S2", "C3", "S4", "C5", "F6", "output"):  # S2, S4, output hold one layer each
        assert boxes.get(stage) == stage, stage


def test_boxes_follow_the_specs_order():
    """Clusters were written alphabetically (and Graphviz places what comes first to the left/top)."""
    plan = archc.check(SPECS / "lenet5.arch")
    order = [path for path, _ in _clusters(graph.to_dot(plan))]
    assert order == ["C1", "S2", "C3", "S4", "C5", "F6", "output"]
    tiny = archc.check(TINY)
    first_seen = list(dict.fromkeys(".".join(n.name.split(".")[:2]) for n in tiny.nodes if n.name.startswith("mixed.")))
    written = [path for path, _ in _clusters(graph.to_dot(tiny)) if path.startswith("mixed.")]
    assert written == [p for p in first_seen if p in written]  # the branches as the spec writes them


def test_numbered_blocks_are_labelled_by_stage_and_position():
    boxes = dict(_clusters(graph.to_dot(archc.check(SPECS / "resnet18.arch"))))
    assert boxes["conv3_x.0"] == "conv3_x block 1" and boxes["conv3_x.1"] == "conv3_x block 2"
    assert boxes["conv3_x.0.shortcut"] == "shortcut"
    assert graph.cluster_label("inception_3a.branch2") == "branch2"


def test_layer_names_are_in_the_labels_not_only_the_tooltips():
    plan = archc.check(SPECS / "resnet18.arch")
    nodes, _ = parse_dot(graph.to_dot(plan))
    for name in ("conv3_x.0.conv1", "conv3_x.0.bn2", "conv3_x.0.relu1", "head.fc"):
        assert nodes[name].splitlines()[0] == name.rsplit(".", 1)[-1], nodes[name]
    mermaid = graph.to_mermaid(plan)
    assert '"conv1<br/>conv 3x3' in mermaid


def test_wide_left_to_right_drawings_are_refused_with_advice():
    plan = archc.check(SPECS / "resnet50.arch")
    with pytest.raises(ArchcError) as e:
        graph.picture(plan, "dot", "layer", "LR")
    assert e.value.diagnostics[0].code == "A420" and "--level stage" in e.value.diagnostics[0].help
    assert graph.picture(plan, "dot", "stage", "LR")  # one node per stage stays narrow enough
    assert graph.picture(archc.check(TINY), "dot", "layer", "LR")
