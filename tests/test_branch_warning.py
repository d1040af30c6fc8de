"""Issue 14, silent acceptance: a stage whose lines read like a merge's branches (the merge line forgotten) runs
them in sequence and checks; A120 says so, with the fix in its help, and no shipped spec draws it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import archc
from archc.cli import main
from archc.codes import CODES
from archc.diagnostics import ArchcError
from archc.ops import OPS

SPECS = Path(__file__).resolve().parent.parent / "specs"
BRANCHES = ("  conv 1x1, 64, relu\n"
            "  conv 1x1, 96, relu; conv 3x3, 128, same, relu\n"
            "  conv 1x1, 16, relu; conv 5x5, 32, same, relu\n"
            "  maxpool 3x3, stride=1, same; conv 1x1, 32, relu\n")


def _codes(text: str) -> list[str]:
    return [w.code for w in archc.check(text=text).warnings]


def test_forgotten_merge_line_warns_once_at_the_stage():
    plan = archc.check(text="input 28x28x192\nmixed:\n" + BRANCHES)
    (warning,) = plan.warnings
    assert warning.code == "A120" and warning.severity == "warning"
    assert "`mixed` runs its 4 lines one after the other" in warning.message
    assert warning.span.line == 2
    assert "`concat`" in warning.help and "join its lines with `;`" in warning.help
    assert "A120" in CODES


def test_the_cli_prints_it_and_still_succeeds(tmp_path):
    spec = tmp_path / "net.arch"
    spec.write_text("input 28x28x192\nmixed:\n" + BRANCHES)
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 0 and "warning[A120]" in result.output


@pytest.mark.parametrize("text", [
    "input 28x28x192\nmixed:\n  concat:\n  " + BRANCHES.replace("\n  ", "\n    "),  # the merge written
    "input 28x28x192\nmixed:\n  " + "; ".join(line.strip() for line in BRANCHES.splitlines()) + "\n",  # one line
    "input 28x28x64\nvgg:\n  conv 3x3, 64, same, relu\n  conv 3x3, 64, same, relu\n",  # a sequence opening 3x3
    "input 28x28x64\ndown:\n  conv 1x1, 32, relu\n  maxpool 2x2, stride=2\n",  # changes the size
    "input 28x28x64\nsingle:\n  conv 1x1, 32, relu; conv 1x1, 64\n",  # one line
])
def test_what_is_not_a_forgotten_merge(text):
    assert "A120" not in _codes(text)


def test_a_stage_named_like_a_kind_keeps_its_own_warning():
    assert _codes("input 28x28x192\nconv:\n  conv 1x1, 8\n  conv 1x1, 8\n") == ["A119"]


def test_no_shipped_spec_draws_a_warning():
    specs = [p for p in sorted(SPECS.glob("*.arch")) if p.name != "blocks.arch"]
    assert len(specs) > 40
    warned = {p.name: [w.code for w in archc.check(p).warnings] for p in specs}
    assert {name: codes for name, codes in warned.items() if codes} == {}


@pytest.mark.parametrize("kind", sorted(k for k, op in OPS.items() if op.inputs == "one" and op.examples))
def test_every_kind_may_open_the_lines_of_a_stage(kind):
    """Filed: a stage whose lines opened with a global pooling crashed the check (`GlobalPoolArgs` has no
    stride); the warning reads every kind's arguments, so every kind opens two lines of a stage here."""
    example, size = OPS[kind].examples[0]
    text = f"input {size}\ns:\n  {example}\n  {example}\n"
    for spec in (text, text.replace(f"input {size}", "input 1x1x8")):  # 1x1: every layer keeps the size
        try:
            plan = archc.check(text=spec)
        except ArchcError as e:  # a line that does not fit its input: a diagnostic, never a crash
            assert e.diagnostics
        else:
            assert {d.code for d in plan.warnings} <= {"A119", "A120"}


def test_global_pools_opening_lines_are_no_branches():
    assert _codes("input 1x1x8\ns:\n  globalavgpool keepdims\n  globalmaxpool keepdims\n") == []
