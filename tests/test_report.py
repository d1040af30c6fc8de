"""`archc check --format html` / `archc report`: one self-contained page with the totals, picture and table."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

import archc
from archc import graph
from archc.cli import main
from archc.report import html_report

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).resolve().parent / "fixtures" / "graph_tiny.arch"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_page_has_totals_tables_and_picture():
    plan = archc.check(ROOT / "specs" / "resnet50.arch")
    text = html_report(plan)
    page = _parse(text)
    body = " ".join(page.text)
    assert f"{plan.total_params:,}" in body and f"{plan.macs:,}" in body
    assert "script" not in page.tags and not page.links  # self-contained: nothing fetched, nothing run
    rows = page.tags.count("tr")
    assert rows == 2 * 2 + len(plan.stages()) + len(plan.nodes)  # header and input rows in both tables
    assert page.tags.count("svg") == 2 and "<?xml" not in text  # Graphviz's or archc's own: always a picture


def _graphviz_gone(monkeypatch, dot: bool, package: bool) -> None:
    """As if `dot` and the `graphviz` Python package were (not) installed: either can be missing alone."""
    import sys

    monkeypatch.setattr(graph, "have_dot", lambda: dot)
    if not package:
        monkeypatch.setitem(sys.modules, "graphviz", None)


def _svgs(text: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg.*?</svg>", text, re.S)]


@pytest.mark.parametrize("dot, package", [(False, False), (False, True), (True, False)],
                         ids=["nothing", "package-only", "dot-only"])
def test_page_without_graphviz_still_has_its_pictures(monkeypatch, dot, package):
    """Regression: with `dot` on PATH but the `graphviz` package missing, the page failed with A403."""
    _graphviz_gone(monkeypatch, dot, package)
    plan = archc.check(ROOT / "specs" / "googlenet.arch")
    text = html_report(plan)
    pictures = _svgs(text)  # well-formed XML, inline
    assert len(pictures) == 2
    page = _parse(text)
    assert "script" not in page.tags and not page.links
    names = " ".join(t.text or "" for t in pictures[1].iter("{http://www.w3.org/2000/svg}text"))
    for stage in ("inception_3a", "inception_5b", "conv1"):
        assert stage in names  # stage boxes carry their names
    titles = [t.text for t in pictures[1].iter("{http://www.w3.org/2000/svg}title")]
    assert len(titles) == len(plan.nodes) + 1  # a node per layer, and the input


def test_archc_svg_keeps_branches_in_the_specs_order(monkeypatch):
    from archc.graph import to_svg

    plan = archc.check(ROOT / "specs" / "googlenet.arch")
    svg = ET.fromstring(to_svg(plan, "layer"))
    ns = "{http://www.w3.org/2000/svg}"
    x = {}
    for g in svg.iter(f"{ns}g"):
        title = g.find(f"{ns}title")
        shape = g.find(f"{ns}rect")
        if title is not None and shape is not None:
            x[title.text] = float(shape.get("x"))
    firsts = [x[f"inception_3a.branch{i}.{first}"] for i, first in ((1, "conv"), (2, "conv1"), (3, "conv1"),
                                                                       (4, "maxpool"))]
    assert firsts == sorted(firsts)


def test_page_names_no_folder_of_the_machine(tmp_path):
    spec = tmp_path / "deep" / "inside" / "tiny.arch"
    spec.parent.mkdir(parents=True)
    spec.write_text(TINY.read_text())
    text = html_report(archc.check(spec))
    assert str(tmp_path) not in text and "deep" not in text
    assert "<code>tiny.arch</code>" in text


def test_cli_check_html_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["check", str(TINY), "--format", "html"])
    assert result.exit_code == 0, result.output
    assert re.search(r"<h1>tiny</h1>", (tmp_path / "graph_tiny.html").read_text())
    result = runner.invoke(main, ["report", str(TINY), str(ROOT / "specs" / "resnet50.arch"), "-o", "out"])
    assert result.exit_code == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"graph_tiny.html", "resnet50.html", "index.html"}
    index = _parse((tmp_path / "out" / "index.html").read_text())
    assert index.links == ["graph_tiny.html", "resnet50.html"]  # relative: the folder can move
    result = runner.invoke(main, ["report", str(TINY), "-o", "one.html"])
    assert result.exit_code == 0 and (tmp_path / "one.html").exists()


def test_check_html_takes_o(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", str(TINY), "--format", "html", "-o", "page.html"])
    assert result.exit_code == 0, result.output
    assert "<h1>tiny</h1>" in (tmp_path / "page.html").read_text()
    refused = CliRunner().invoke(main, ["check", str(TINY), "-o", "page.txt"])
    assert refused.exit_code == 2 and "only --format html writes files" in refused.output
