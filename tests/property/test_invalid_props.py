"""Invalid input: mutated specs, random unicode and random bytes. The parser and `check` raise only ArchcError;
the CLI exits 1 with a diagnostic and never prints a traceback; nothing hangs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import event as _event
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from profiles import budget
from strategies import specs
from support import check_error, check_plan_invariants, within

import archc
from archc.cli import main
from archc.diagnostics import ArchcError
from archc.loader import parse_source

SPECS = Path(__file__).resolve().parents[2] / "specs"
SHIPPED = {p.name: p.read_text(encoding="utf-8") for p in sorted(SPECS.glob("*.arch"))}

# Tokens: runs of word characters, of spaces, single line breaks, and single symbols. Joining them gives the
# text back, so a mutation of the list is a mutation of the text.
_TOKEN = re.compile(r"\w+|[ \t]+|\n|[^\w\s]")
# What a mutation may put in: the language's keywords and symbols, the limits' edge values, and odd text.
VOCABULARY = [
    "input", "param", "import", "block", "residual", "shortcut", "concat", "add", "x", "->", ":", ";", ",", "(",
    ")", "=", "if", "else", "in.c", "in.n", "0", "1", "-1", "3x3", "0x0", "1000000000", "9" * 30, "1e999", "40%",
    "0.5", "same", "valid", "dw", "groups=3", "stride=0", "dilation=0", "conv", "dense", "flatten", "relu",
    "bottleneck(", "\n", "\n  ", "\n    ", "\t", '"', '"x"', "#", "\\\n", "×", "\x00", "\r", "\u2028", "é", "a" * 200,
]


def event(name: str) -> None:
    """Count a kind of outcome for `--hypothesis-show-statistics` (a no-op in the plain regression tests)."""
    if currently_in_test_context():
        _event(name)


def tokens(text: str) -> list[str]:
    found = _TOKEN.findall(text)
    assert "".join(found) == text
    return found


@st.composite
def mutations(draw, source: st.SearchStrategy[str]) -> str:
    """1-4 token edits of a spec: delete, duplicate, swap, or replace by something from VOCABULARY."""
    toks = tokens(draw(source))
    for _ in range(draw(st.integers(1, 4))):
        if not toks:
            break
        i = draw(st.integers(0, len(toks) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "insert"]))
        event(f"mutation: {kind}")
        if kind == "delete":
            del toks[i]
        elif kind == "duplicate":
            toks.insert(i, toks[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "replace":
            toks[i] = draw(st.sampled_from(VOCABULARY))
        else:
            toks.insert(i, draw(st.sampled_from(VOCABULARY)))
    return "".join(toks)


generated_texts = specs().map(lambda g: g.text)
shipped_texts = st.sampled_from(sorted(SHIPPED.values()))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding the shipped specs, so that mutated specs' `import "blocks.arch"` resolves."""
    folder = tmp_path_factory.mktemp("mutants")
    for name, text in SHIPPED.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def check_text(text: str, folder: Path | None = None) -> None:
    """`check` on text: a plan that holds together, or ArchcError and nothing else, within the hang bound."""
    try:
        with within():
            if folder is not None:
                path = folder / "mutant.arch"
                path.write_text(text, encoding="utf-8", errors="surrogatepass")
                plan = archc.check(path)
            else:
                plan = archc.check(text)
    except ArchcError as e:
        event(f"diagnostic {e.diagnostics[0].code}")
        check_error(e, text)
        return
    event("accepted")
    check_plan_invariants(plan)


# Every crash these properties found is kept here as an explicit example (docs/testing.md lists them).
REGRESSIONS = [
    "input 8x8x3\n" + "(" * 10_000 + "relu" + ")" * 10_000 + "\n",  # RecursionError in the transformer
    "input 8x8x3\nparam a=" + "-" * 5_000 + "1\nrelu\n",  # RecursionError: a chain of unary minus
    "input 8x8x3\nparam a=" + "+".join(["1"] * 20_000) + "\nrelu\n",  # RecursionError: a left-deep sum
    "input 8x8x3\nconv 3x3, " + "9" * 5_000 + "\n",  # ValueError: int() refuses over 4,300 digits
    "input 8x8x3\n" + "".join(" " * i + f"s{i}:\n" for i in range(3_000)) + " " * 3_000 + "relu\n",  # deep indent
    "input 8x8x3\n" + "(" * 300 + "relu" + ")x 2" * 300 + "\n",  # RecursionError: nested repeated groups
    '{"input": {"kind": "dims", "dims": [8, 8, ' + "9" * 5_000 + "]}, \"body\": []}",  # ValueError in json.loads
    '{"body": ' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError in json.loads
    "a" * 300,  # OSError: a one-line spec text was taken for a path too long for the file system
]


@budget(1000)
@given(mutations(shipped_texts))
def test_mutated_shipped_specs(workdir, text):
    check_text(text, workdir)


@budget(1000)
@given(mutations(generated_texts))
@example("input 8x8x3\nconv 3x3, 4 -> 6x6x4 -> 6x6x4\n")
def test_mutated_generated_specs(text):
    check_text(text)


@budget(1000)
@given(st.text(max_size=300))
def test_random_unicode(text):
    check_text(text)


@budget(1000)
@given(st.lists(st.sampled_from(sorted(set(VOCABULARY) | {" ", "8x8x3", "input 8x8x3\n"})), max_size=60).map("".join))
def test_random_vocabulary(text):
    check_text(text)


@pytest.mark.parametrize("text", REGRESSIONS, ids=[f"regression{i}" for i in range(len(REGRESSIONS))])
def test_regressions(text):
    check_text(text)


@budget(500)
@given(st.text(max_size=300))
def test_random_text_as_json(text):
    """Anything that starts with `{` is read as JSON: hostile JSON gets diagnostics too."""
    try:
        with within():
            parse_source("{" + text)
    except ArchcError as e:
        check_error(e, "{" + text)


def _cli_check(path: Path) -> None:
    runner = CliRunner()
    with within():
        result = runner.invoke(main, ["check", str(path)], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    if result.exit_code == 1:
        assert "error[A" in result.stderr, result.stderr


@budget(300)
@given(st.binary(max_size=400))
def test_random_bytes_through_the_cli(workdir, data):
    path = workdir / "bytes.arch"
    path.write_bytes(data)
    _cli_check(path)


@budget(300)
@given(mutations(shipped_texts))
def test_mutated_specs_through_the_cli(workdir, text):
    path = workdir / "mutant.arch"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _cli_check(path)


def test_build_of_mutants_never_tracebacks(workdir):
    """`build` on broken specs: exit 1 with a diagnostic, before any backend is needed."""
    runner = CliRunner()
    for i, text in enumerate(REGRESSIONS[:6] + ["input 8x8x3\nconv 9x9, 4\n", "", "\x00\x01"]):
        path = workdir / f"broken{i}.arch"
        path.write_text(text, encoding="utf-8")
        result = runner.invoke(main, ["build", str(path), "--backend", "torch", "-o", str(workdir / "out.py")])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and "error[A" in result.stderr
    assert not (workdir / "out.py").exists()
