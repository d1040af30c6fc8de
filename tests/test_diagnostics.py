"""Golden diagnostics (rustc's UI tests): each tests/ui/NAME.arch beside the exact NAME.stderr `check` prints.

Regenerate after an intended change with ARCHC_BLESS=1.
"""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from archc.cli import main
from archc.diagnostics import Diagnostic, Span, render_text

ROOT = Path(__file__).resolve().parent.parent
UI = sorted((ROOT / "tests" / "ui").glob("*.arch"))


@pytest.mark.parametrize("spec", UI, ids=[p.stem for p in UI])
def test_ui(spec, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("NO_COLOR", "1")
    result = CliRunner().invoke(main, ["check", str(spec.relative_to(ROOT))])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    golden = spec.with_suffix(".stderr")
    if os.environ.get("ARCHC_BLESS"):
        golden.write_text(result.stderr)
    assert result.stderr == golden.read_text()


def test_render_layout():
    source = "input 4x4x3\nconv 7x7, 64, stride=2\n"
    diag = Diagnostic("A201", "kernel 7x7 does not fit a 4x4 input", Span(file="t.arch", line=2, column=1,
                      end_line=2, end_column=23), label="input is 4x4 here", notes=["a note"], help="pad it")
    assert render_text([diag], {"t.arch": source}) == (
        "error[A201]: kernel 7x7 does not fit a 4x4 input\n"
        " --> t.arch:2:1\n"
        "  |\n"
        "2 | conv 7x7, 64, stride=2\n"
        "  | ^^^^^^^^^^^^^^^^^^^^^^ input is 4x4 here\n"
        "  |\n"
        "   = note: a note\n"
        "   = help: pad it\n"
    )


def test_json_diagnostics(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["check", "tests/ui/unknown_layer.arch", "--format", "json"])
    assert result.exit_code == 1
    import json

    document = json.loads(result.stdout)  # one stream for tools: the diagnostics take the spec's place
    assert document["ok"] is False and document["file"] == "tests/ui/unknown_layer.arch"
    [diag] = document["diagnostics"]
    assert diag["code"] == "A101" and (diag["line"], diag["column"]) == (3, 1)
    assert diag["help"] == "did you mean `conv`?"
