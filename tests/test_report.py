"""`archc check --format html` / `archc report`: one self-contained page with the totals, picture and table."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

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
    if graph.have_dot():
        assert page.tags.count("svg") == 2 and "<?xml" not in text
    else:
        assert "flowchart TB" in body and "digraph" in body


def test_page_without_graphviz_carries_the_text_forms(monkeypatch):
    monkeypatch.setattr(graph, "have_dot", lambda: False)
    text = html_report(archc.check(TINY))
    assert "<svg" not in text and "apt-get install graphviz" in text
    assert "flowchart TB" in text and "digraph &quot;tiny&quot;" in text


def test_cli_check_html_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["check", str(TINY), "--format", "html"])
    assert result.exit_code == 0, result.output
    assert re.search(r"<h1>tiny</h1>", (tmp_path / "graph_tiny.html").read_text())
    result = runner.invoke(main, ["report", str(TINY), str(ROOT / "specs" / "resnet50.arch"), "-o", "out"])
    assert result.exit_code == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"graph_tiny.html", "resnet50.html"}
    result = runner.invoke(main, ["report", str(TINY), "-o", "one.html"])
    assert result.exit_code == 0 and (tmp_path / "one.html").exists()
