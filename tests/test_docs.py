"""docs/language.md is complete and true: its generated parts are current, its examples run, every
diagnostic code and every construct of the grammar is documented."""

from __future__ import annotations

import re
import shlex
import shutil

import docgen  # tests/ is on sys.path: pytest puts a test file's folder there
import pytest

import archc
from archc.diagnostics import ArchcError
from archc.fmt import format_text
from archc.ops import OPS

ROOT = docgen.ROOT
TEXT = docgen.DOC.read_text(encoding="utf-8")
EXAMPLES = docgen.examples(TEXT)


def test_generated_parts_are_current():
    fresh = docgen.regenerate(TEXT)
    assert fresh == TEXT, "docs/language.md is stale: run `python tests/docgen.py`"


def _id(example: docgen.Example) -> str:
    return f"line{example.line}-{example.attrs.get('error', 'ok')}"


VALID = [e for e in EXAMPLES if "error" not in e.attrs]
BROKEN = [e for e in EXAMPLES if "error" in e.attrs]


@pytest.mark.parametrize("example", VALID, ids=_id)
def test_valid_example_checks_and_is_canonical(example, tmp_path, monkeypatch):
    shutil.copy(ROOT / "specs" / "blocks.arch", tmp_path / "blocks.arch")
    (tmp_path / "example.arch").write_text(example.code)
    monkeypatch.chdir(tmp_path)
    plan = archc.check("example.arch")
    # what a reader who runs it sees: `archc check` exits 0 and prints this plan's totals
    from click.testing import CliRunner

    from archc.cli import main

    result = CliRunner().invoke(main, ["check", "example.arch"], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    output = result.stdout
    assert f"total params {plan.total_params:,} (trainable {plan.trainable_params:,}" in output
    assert f"; {len(plan.nodes)} layers" in output
    assert format_text(example.code) == example.code


@pytest.mark.parametrize("example", BROKEN, ids=_id)
def test_broken_example_fails_with_its_code(example, tmp_path, monkeypatch):
    code = example.attrs["error"]
    status, output = docgen.run_example(example)
    assert status in (1, 2)
    if code == "A108":  # a usage error on the command line; the API reports the code
        sets = dict(item.split("=", 1) for item in re.findall(r"--set (\S+)", example.attrs["command"]))
        shutil.copy(ROOT / "specs" / "blocks.arch", tmp_path / "blocks.arch")
        (tmp_path / "example.arch").write_text(example.code)
        monkeypatch.chdir(tmp_path)
        with pytest.raises(ArchcError) as e:
            archc.check("example.arch", **sets)
        assert e.value.diagnostics[0].code == code
    else:
        assert output.startswith(f"error[{code}]")
    assert example.output == output


def _codes_in_source() -> set[str]:
    codes = set()
    for path in (ROOT / "archc").rglob("*.py"):
        codes |= set(re.findall(r'"(A\d{3})"', path.read_text()))
    return codes


def test_every_diagnostic_code_is_documented_with_an_example():
    sections = dict(re.findall(r"^### (A\d{3})\n(.*?)(?=^##)", TEXT, re.M | re.S))
    missing = _codes_in_source() - set(sections)
    assert not missing, f"undocumented diagnostic codes: {sorted(missing)}"
    with_examples = {e.attrs["error"] for e in BROKEN}
    for code, body in sections.items():
        assert code in with_examples or "<!-- no-example:" in body, f"{code} has no example"


def test_every_layer_kind_is_documented():
    for name, op in OPS.items():
        assert f"\n### {name}\n" in TEXT
        assert op.shape_rule and op.param_rule, f"`{name}` has no shape or parameter rule in words"
        assert op.examples or op.inputs == "many", f"`{name}` has no worked example"


def test_every_keyword_and_function_of_the_language_is_documented():
    grammar = (ROOT / "archc" / "grammar.lark").read_text()
    keywords = set(re.findall(r'"([a-z]+)"', grammar))
    assert {"network", "residual", "shortcut", "import"} <= keywords
    from archc.ops import MERGES

    keywords |= MERGES  # merges are registry rows, written like keywords
    from archc.exprs import FUNCS as _FUNCS

    code_spans = " ".join(re.findall(r"`[^`\n]+`", TEXT))
    for word in sorted(keywords) + list(_FUNCS):
        assert re.search(rf"\b{word}\b", code_spans), f"`{word}` is not in docs/language.md"


def test_commands_in_the_examples_exist():
    from archc.cli import main

    for example in BROKEN:
        command = shlex.split(example.attrs.get("command", "check {file}"))[0]
        assert command in main.commands
