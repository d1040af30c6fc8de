"""editors/arch.tmLanguage.json: current with archc/ops.py, and its scopes land on the right tokens (the
patterns are run with Python's re, which agrees with Oniguruma on the constructs the grammar uses)."""

from __future__ import annotations

import json
import re

import pytest
import tmgrammar  # tests/ is on sys.path: pytest puts a test file's folder there

GRAMMAR = json.loads(tmgrammar.GRAMMAR.read_text(encoding="utf-8"))
COMPILED = [(p, re.compile(p["match"])) for p in GRAMMAR["patterns"]]


def test_grammar_file_is_current():
    assert tmgrammar.GRAMMAR.read_text(encoding="utf-8") == tmgrammar.text(), "run `python tests/tmgrammar.py`"
    assert GRAMMAR["scopeName"] == "source.arch" and GRAMMAR["fileTypes"] == ["arch"]


def tokenize(line: str) -> list[tuple[str, str]]:
    """TextMate's rule for a flat pattern list: at each point the match that starts first wins, ties going
    to the pattern listed first. -> [(text, scope)]"""
    tokens, pos = [], 0
    while pos < len(line):
        best = None
        for pattern, regex in COMPILED:
            m = regex.search(line, pos)
            if m and (best is None or m.start() < best[1].start()):
                best = (pattern, m)
        if best is None:
            break
        pattern, m = best
        if "name" in pattern:
            tokens.append((m.group(0), pattern["name"]))
        for group, capture in pattern.get("captures", {}).items():
            if m.group(int(group)) is not None:
                tokens.append((m.group(int(group)), capture["name"]))
        pos = max(m.end(), pos + 1)
    return tokens


CASES = [
    ('network resnet50 "ResNet-50, He et al." # note', [
        ("network", "keyword.other.network.arch"), ("resnet50", "entity.name.type.arch"),
        ('"ResNet-50, He et al."', "string.quoted.double.arch"), ("# note", "comment.line.number-sign.arch")]),
    ("param classes=1000, downsample_at=1", [
        ("param", "keyword.other.statement.arch"), ("classes", "variable.parameter.arch"),
        ("1000", "constant.numeric.integer.arch"), ("downsample_at", "variable.parameter.arch")]),
    ("conv2_x  56x56  : maxpool 3x3, stride=2, same; bottleneck(64, at=downsample_at) x 3", [
        ("conv2_x", "entity.name.section.arch"), ("56x56", "constant.numeric.size.arch"),
        ("maxpool", "support.type.layer.arch"), ("3x3", "constant.numeric.size.arch"),
        ("stride", "variable.parameter.arch"), ("same", "support.constant.flag.arch"),
        ("bottleneck", "entity.name.function.call.arch"), ("at", "variable.parameter.arch"),
        ("x", "keyword.operator.repeat.arch"), ("3", "constant.numeric.integer.arch")]),
    ("block bottleneck(w, stride=1, at=1):", [
        ("block", "keyword.other.block.arch"), ("bottleneck", "entity.name.function.arch"),
        ("stride", "variable.parameter.arch")]),
    ("  residual concat:", [("residual", "keyword.control.residual.arch"), ("concat", "keyword.control.merge.arch")]),
    ("    conv 1x1, int(in.c * 0.5), nobias, bn, relu -> 28x28x128", [
        ("conv", "support.type.layer.arch"), ("int", "support.function.builtin.arch"),
        ("in.c", "variable.language.input-shape.arch"), ("0.5", "constant.numeric.float.arch"),
        ("nobias", "support.constant.flag.arch"), ("bn", "support.type.layer.arch"),
        ("relu", "support.type.layer.arch"), ("->", "keyword.operator.expect.arch"),
        ("28x28x128", "constant.numeric.size.arch")]),
    ("  conv 3x3, w, stride=stride if at == 2 else 1, dropout 40%", [
        ("if", "keyword.operator.logical.arch"), ("==", "keyword.operator.arithmetic.arch"),
        ("else", "keyword.operator.logical.arch"), ("40%", "constant.numeric.percent.arch")]),
    ("    pool: maxpool 3x3, stride=1, same", [("pool", "entity.name.section.arch")]),
    ("    stochastic_depth rate * call_index / (blocks - 1); layer_scale 1e-6", [
        ("stochastic_depth", "support.type.layer.arch"), ("call_index", "variable.language.builtin.arch"),
        ("layer_scale", "support.type.layer.arch"), ("1e-6", "constant.numeric.float.arch")]),
]


@pytest.mark.parametrize("line, expected", CASES, ids=[c[0][:24] for c in CASES])
def test_scopes(line, expected):
    tokens = tokenize(line)
    for token in expected:
        assert token in tokens, f"{token} not in {tokens}"


def test_check_imports_none_of_the_optional_tools():
    """`archc check` stays fast: no framework, no drawing, no language-server package."""
    import subprocess
    import sys

    code = ("import sys\nfrom archc.cli import main\n"
            "try:\n    main(['check', 'specs/resnet50.arch'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch', 'tensorflow', 'keras', 'onnx', 'onnxruntime', 'graphviz', 'pygls', 'lsprotocol')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmgrammar.ROOT,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
