"""Nothing in a spec can execute code. Names are identifiers (the grammar for text, the IR's types for JSON and
Python), strings hold no line break or quote, and JSON is decoded, never evaluated. Once the backends are in the
tree, the source they write for hostile-looking specs is compiled and run to show it does only what it should."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import archc
from archc import ir
from archc.diagnostics import ArchcError
from archc.loader import parse_json

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "ARCHC_PWNED"
PAYLOADS = [
    f"x\nimport os; os.system('touch {SENTINEL}')",
    f"x'); open('{SENTINEL}', 'w'); ('",
    f'x"); open("{SENTINEL}", "w"); ("',
    f"__import__('os').system('touch {SENTINEL}')",
    "x\r\nimport os",
    "a b",
    "1abc",
    "",
    "é",
    "x" * 129,
    "a\x00b",
]


def _spec(body: list, **top) -> dict:
    return {"input": {"kind": "dims", "dims": [8, 8, 3]}, "body": body, **top}


def _where(payload: str) -> list[dict]:
    """The same payload in every field of the IR that holds a name."""
    relu = {"kind": "layer", "op": "relu"}
    return [
        _spec([relu], name=payload),
        _spec([{"kind": "scope", "name": payload, "body": [relu]}]),
        _spec([{"kind": "branches", "merge": "add", "branches": [{"name": payload, "body": [relu]},
                                                                  {"body": [relu]}]}]),
        _spec([relu], blocks=[{"name": payload, "body": [relu]}]),
        _spec([relu], blocks=[{"name": "b", "params": [{"name": payload}], "body": [relu]}]),
        _spec([relu], params=[{"name": payload, "default": 1}]),
        _spec([{"kind": "layer", "op": payload}]),
        _spec([{"kind": "call", "block": payload}]),
        _spec([{"kind": "layer", "op": "dropout", "args": [{"name": payload, "value": 0.5}]}]),
        _spec([{"kind": "layer", "op": "dense", "args": [{"value": {"kind": "name", "id": payload}}]}]),
        _spec([{"kind": "layer", "op": "dense", "args": [{"value": {"kind": "func", "func": payload, "args": []}}]}]),
    ]


@pytest.mark.parametrize("payload", PAYLOADS, ids=[f"payload{i}" for i in range(len(PAYLOADS))])
def test_json_names_must_be_identifiers(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spec in _where(payload):
        with pytest.raises(ArchcError) as info:
            archc.check(json.dumps(spec))
        assert {d.code for d in info.value.diagnostics} == {"A005"}, info.value.render()
    assert not (tmp_path / SENTINEL).exists()


@pytest.mark.parametrize("payload", ["two\nlines", "carriage\rreturn", "nul\x00", "bell\x07", "\x1b[2J"])
def test_json_strings_hold_what_a_spec_string_can(payload):
    for spec in (_spec([], description=payload), {**_spec([]), "imports": [{"path": payload}]},
                 _spec([{"kind": "layer", "op": "dropout", "args": [{"value": {"kind": "str", "value": payload}}]}])):
        with pytest.raises(ArchcError) as info:
            parse_json(json.dumps(spec))
        assert info.value.diagnostics[0].code == "A005"


def test_json_errors_name_the_field_that_is_wrong():
    with pytest.raises(ArchcError) as info:
        parse_json(json.dumps(_spec([{"kind": "scope", "name": "a b", "body": []}])))
    first = info.value.diagnostics[0]
    assert "`body[0].name`" in first.message and "is not a name" in first.message
    with pytest.raises(ArchcError) as info:
        parse_json(json.dumps(_spec([], description="a\nb")))
    assert "line break" in info.value.diagnostics[0].message


def test_ir_built_in_python_is_held_to_the_same_rules():
    with pytest.raises(ValidationError):
        ir.Scope(name="x; import os", body=[])
    with pytest.raises(ValidationError):
        ir.Spec(description="a\nb")
    assert ir.Scope(name="class", body=[]).name == "class"  # a Python keyword is still a spec identifier


def test_json_is_decoded_never_evaluated(tmp_path, monkeypatch):
    """Strings that would run if anything evaluated them stay strings (and fail as values)."""
    monkeypatch.chdir(tmp_path)
    code = f"__import__('os').system('touch {SENTINEL}')"
    spec = _spec([{"kind": "layer", "op": "conv", "args": [{"value": {"kind": "dims", "dims": [3, 3]}},
                                                          {"value": {"kind": "str", "value": code}}]}])
    with pytest.raises(ArchcError) as info:
        archc.check(json.dumps(spec))
    assert info.value.diagnostics[0].code == "A104"
    assert not (tmp_path / SENTINEL).exists()


def test_the_grammar_keeps_code_out_of_text_names():
    for text in ["input 8x8x3\nx'); import os: relu\n", "input 8x8x3\nrelu; __import__('os')\n",
                 'network n "two\nlines"\ninput 8x8x3\nrelu\n']:
        with pytest.raises(ArchcError):
            archc.check(text)


# ---------------------------------------------------------------- what the backends write

# Names that are identifiers to a spec but special to Python, and strings that are code to a careless emitter.
DESCRIPTION = "''' + __import__('os').system('touch " + SENTINEL + "') + ''' \\\\ {}"
HOSTILE_SPEC = "\n".join([
    f'network class "{DESCRIPTION}"',
    "input 8x8x3",
    "param self=4, lambda=2",
    "block def(__init__, forward=1):",
    "  conv 1x1, __init__, stride=forward",
    "from: conv 3x3, self, same, relu",
    "return 8x8 : def(lambda); def(self)",
    "None:",
    "  concat:",
    "    global: conv 1x1, 2",
    "    yield: relu",
    "globalavgpool; dense lambda",
]) + "\n"


# JSON may hold double quotes in a string (text cannot): a description that closes every kind of literal.
QUOTED_DESCRIPTION = 'x""" + __import__("os").system("touch ' + SENTINEL + '") + """ \' \'\'\' \\'


def _hostile(form: str) -> str:
    if form == "text":
        return HOSTILE_SPEC
    from archc.cli import spec_to_json

    data = json.loads(spec_to_json(archc.load(HOSTILE_SPEC)))
    data["description"] = QUOTED_DESCRIPTION
    return json.dumps(data)


def _generated_source(backend: str, tmp_path: Path, form: str = "text") -> Path:
    pytest.importorskip(backend)  # the framework: archc.backends.<name> always imports
    from archc.backends import get_backend

    plan = archc.check(_hostile(form))
    path = tmp_path / f"hostile_{backend}.py"
    path.write_bytes(get_backend(backend).write(plan, "py"))
    return path


def _assert_inert(path: Path) -> None:
    """The generated file calls no code the spec named, and running it creates no sentinel file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            assert node.id not in ("__import__", "eval", "exec", "os", "system"), node.id
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("system", "popen"), node.attr
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(path)], cwd=path.parent, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (path.parent / SENTINEL).exists()


def test_hostile_spec_checks():
    plan = archc.check(HOSTILE_SPEC)
    assert plan.name == "class" and plan.description == DESCRIPTION
    assert plan.output_shape == (2,)
    assert archc.check(_hostile("json")).description == QUOTED_DESCRIPTION


@pytest.mark.parametrize("form", ["text", "json"])
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_generated_source_is_inert(backend, form, tmp_path):
    _assert_inert(_generated_source(backend, tmp_path, form))


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_in_memory_models_keep_the_spec_names(backend):
    pytest.importorskip(backend)  # the framework: archc.backends.<name> always imports
    plan = archc.check(HOSTILE_SPEC)
    model = archc.compile(plan, backend=backend)
    if backend == "torch":
        names = {name for name, _ in model.named_modules()}
        assert {"from", "return", "None.global"} <= names
    else:
        names = {layer.name for layer in model.layers}
        assert "from_conv" in names


@pytest.mark.parametrize("backend", ["torch", "keras"])
@pytest.mark.parametrize("name", ["__class__", "forward", "training", "_modules", "state_dict", "layers", "call"])
def test_names_a_framework_reserves_build_or_get_a_diagnostic(backend, name):
    """A spec identifier that the framework uses itself either works or is refused with a diagnostic."""
    pytest.importorskip(backend)  # the framework: archc.backends.<name> always imports
    plan = archc.check(f"input 8x8x3\n{name}: conv 3x3, 2\n{name}_b: relu\n")
    try:
        model = archc.compile(plan, backend=backend)
    except ArchcError as e:
        assert e.diagnostics[0].code.startswith("A4"), e.render()
        return
    # built: it is the spec's model, and it runs
    import numpy as np

    x = np.random.RandomState(0).randn(1, 8, 8, 3).astype("float32")
    if backend == "torch":
        import torch

        assert sum(p.numel() for p in model.parameters()) == plan.total_params
        with torch.no_grad():
            out = model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    else:
        assert model.count_params() == plan.total_params
        out = np.asarray(model(x, training=False))
    assert out.shape[1:] == plan.output_shape and np.isfinite(out).all()
