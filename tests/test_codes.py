"""One table of diagnostic codes (archc/codes.py) behind `archc explain` and docs/language.md, and install hints
that name this project's distribution (`archc` on the package index is someone else's)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from click.testing import CliRunner

from archc.cli import main
from archc.codes import CODES, DISTRIBUTION, install_hint

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")


def _codes_in_source() -> set[str]:
    codes = set()
    for path in (ROOT / "archc").rglob("*.py"):
        if path.name != "codes.py":
            codes |= set(re.findall(r'"(A\d{3})"', path.read_text(encoding="utf-8")))
    return codes


def test_every_code_used_is_in_the_table():
    missing = _codes_in_source() - set(CODES)
    assert not missing, f"codes raised in archc/ but missing from archc/codes.py: {sorted(missing)}"


def test_the_docs_open_each_code_with_the_tables_explanation():
    sections = dict(re.findall(r"^### (A\d{3})\n(.*?)(?=^##)", DOC, re.M | re.S))
    assert set(sections) == set(CODES), "docs/language.md and archc/codes.py list different codes"
    for code, body in sections.items():
        first = re.sub(r"<!--.*?-->", "", body.strip().split("\n\n")[0]).strip()
        assert " ".join(first.split()) == CODES[code][1], f"{code}: docs and archc/codes.py differ"


def test_explain_prints_a_code_and_refuses_an_unknown_one():
    result = CliRunner().invoke(main, ["explain", "A204"])
    assert result.exit_code == 0
    assert result.output.startswith("A204: size differs from the spec's (shapes)")
    assert CODES["A204"][1] in result.output
    assert CliRunner().invoke(main, ["explain", "a204"]).output == result.output  # case does not matter
    unknown = CliRunner().invoke(main, ["explain", "A999"])
    assert unknown.exit_code == 2 and "no diagnostic is called `A999`" in unknown.output


# ---------------------------------------------------------------- the distribution's name


def test_pyproject_names_the_distribution_and_its_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION != "archc"
    assert project["scripts"] == {"archc": "archc.cli:run"}  # the command keeps its name
    extras = project["optional-dependencies"]
    assert set(extras) >= {"torch", "keras", "onnx", "graph", "lsp", "all", "dev"}
    for name in ("all", "dev"):  # self-references name the distribution, or pip fetches the other `archc`
        for requirement in extras[name]:
            if requirement.startswith("archc"):
                assert requirement.startswith(f"{DISTRIBUTION}["), requirement


_PIP = re.compile(r"pip install\s+(?:-[-\w]+(?:[ =]\S+)?\s+)*['\"]?([A-Za-z0-9_.-]+)(\[[\w,]*\])?")


def _hint_files() -> list[Path]:
    files = list((ROOT / "archc").rglob("*.py")) + list((ROOT / "docs").glob("*.md"))
    return files + list((ROOT / "editors").glob("*.md")) + [ROOT / "README.md"]


def test_every_install_hint_names_our_distribution():
    """Every `pip install NAME[extra]` and every `pip install 'archc...'` in code and docs names archc-cnn;
    `pip install .` (this checkout) and third-party packages (torch, graphviz...) are left alone."""
    seen = 0
    for path in _hint_files():
        for match in _PIP.finditer(path.read_text(encoding="utf-8")):
            name, extras = match.groups()
            if name.startswith("."):
                continue  # this checkout: `pip install ".[dev]"`
            if extras or name.startswith("archc"):
                seen += 1
                assert name == DISTRIBUTION, f"{path.relative_to(ROOT)}: `{match.group(0)}` names `{name}`"
    assert seen >= 3  # the README's extras, editors/README.md's lsp line, the codes table's template
    assert install_hint("lsp") == f"pip install '{DISTRIBUTION}[lsp]'"


def test_the_install_hints_of_missing_packages_name_our_distribution(monkeypatch):
    import sys

    from archc.backends import get_backend
    from archc.diagnostics import ArchcError

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "archc.backends.onnx", raising=False)
    monkeypatch.setattr("archc.backends._loaded", {})
    try:
        get_backend("onnx")
    except ArchcError as e:
        assert e.diagnostics[0].code == "A403"
        assert e.diagnostics[0].help == f"pip install '{DISTRIBUTION}[onnx]'"
    else:  # pragma: no cover
        raise AssertionError("no A403 without onnx")
