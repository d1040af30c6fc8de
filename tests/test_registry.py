"""Every registered layer kind, through every piece that must know it (STYLE.md, "Adding a layer kind";
docs/contributing.md). A kind is one entry in archc/ops.py; these tests walk all of them and fail naming the
kind and the piece that is missing, so a new kind cannot be half added."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

import archc
from archc.backends import BUILTIN
from archc.ops import MERGES, OPS, Weight
from archc.plan import Plan

ROOT = Path(__file__).resolve().parent.parent
KINDS = sorted(OPS)
FRAMEWORK = {"torch": "torch", "keras": "keras", "onnx": "onnxruntime"}


def example_specs(kind: str) -> list[str]:
    """Small networks that use the kind: its documented examples, or for a merge, branches it merges."""
    op = OPS[kind]
    if kind in MERGES:
        return [f"input 6x6x4\n{kind}:\n  conv 1x1, 4\n  identity\n"]
    return [f"input {size}\n{line}\n" for line, size in op.examples]


def _backend_class(name: str):
    module, _, cls = BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module), cls)


@pytest.mark.parametrize("kind", KINDS)
def test_the_entry_is_complete(kind):
    op = OPS[kind]
    for attribute in ("summary", "prefix", "category", "shape_rule", "param_rule"):
        assert getattr(op, attribute, ""), f"`{kind}` has no `{attribute}`"
    assert op.examples or kind in MERGES, f"`{kind}` has no worked example (`examples`) for the docs"
    for text in example_specs(kind):
        plan = archc.check(text)
        node = plan.nodes[-1]
        assert node.op == kind
        weights = node.weights()
        assert all(isinstance(w, Weight) for w in weights.values())
        # the parameter rule and the weights are one definition: the counts are the weights' sizes
        trainable = sum(w.size for w in weights.values() if w.trainable)
        assert (node.trainable, node.non_trainable) == (trainable, sum(w.size for w in weights.values()) - trainable)


@pytest.mark.parametrize("backend", sorted(BUILTIN))
@pytest.mark.parametrize("kind", KINDS)
def test_every_backend_has_an_emitter(backend, kind):
    cls = _backend_class(backend)
    assert kind in cls.TABLE or hasattr(cls, f"emit_{kind}"), (
        f"the {backend} backend cannot emit `{kind}`: add a line to {cls.__name__}.TABLE or an `emit_{kind}` method")


def test_backends_emit_every_kind_and_agree():
    """Every kind's examples, built by every backend whose framework is here, give the same outputs (on the same
    weights); a kind a backend cannot build fails here with that backend's positioned diagnostic."""
    torch = pytest.importorskip("torch")
    for kind in KINDS:
        for text in example_specs(kind):
            plan = archc.check(text)
            x = np.random.default_rng(0).standard_normal((2, *plan.input_shape)).astype(np.float32)
            outputs = {name: run(plan, x) for name, run in _RUNNERS.items() if _have(name)}
            reference = outputs.pop("torch")
            for name, got in outputs.items():
                np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5,
                                           err_msg=f"`{kind}` in the {name} backend differs from torch: {text!r}")
    del torch


def _have(name: str) -> bool:
    try:
        importlib.import_module(FRAMEWORK[name])
    except ImportError:
        return False
    return True


def _torch_model(plan: Plan):
    import torch

    torch.manual_seed(0)
    return archc.compile(plan, backend="torch").eval()


def _nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _run_torch(plan: Plan, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return _nhwc(_torch_model(plan)(torch.from_numpy(_nchw(x).copy())).numpy())


def _run_onnx(plan: Plan, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    model = archc.compile(plan, backend="onnx")
    archc.load_weights(model, _torch_model(plan))
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return _nhwc(session.run(None, {"input": np.ascontiguousarray(_nchw(x))})[0])


def _run_keras(plan: Plan, x: np.ndarray) -> np.ndarray:
    import keras

    model = archc.compile(plan, backend="keras")
    archc.transfer_weights(_torch_model(plan), model)
    out = np.asarray(model(x, training=False))
    order = plan.flat_orders().get(plan.output)
    keras.backend.clear_session()
    return out if order is None else out[:, np.argsort(order)]


_RUNNERS = {"torch": _run_torch, "onnx": _run_onnx, "keras": _run_keras}


@pytest.mark.parametrize("kind", KINDS)
def test_transfer_knows_where_every_weight_lives(kind):
    """transfer_weights and load_weights read `weights()`: each framework must hold each weight by that name."""
    pytest.importorskip("torch")
    from archc.backends.keras import KerasBackend

    for text in example_specs(kind):
        plan = archc.check(text)
        node = plan.nodes[-1]
        if not node.weights():
            continue
        assert hasattr(KerasBackend, f"variables_{kind}"), (
            f"the keras backend does not say where `{kind}` keeps its weights: add `variables_{kind}`")
        module = _torch_model(plan).get_submodule(node.name)
        for name, weight in node.weights().items():
            tensor = getattr(module, name, None)
            assert tensor is not None, f"the torch module of `{kind}` has no `{name}`"
            assert tuple(tensor.shape) == weight.shape, f"`{kind}`.{name}: torch {tuple(tensor.shape)}"


@pytest.mark.parametrize("kind", [k for k in KINDS if OPS[k].keeps_order and k not in MERGES])
def test_keeps_order_is_true(kind):
    """A kind declared `keeps_order` must commute with a permutation of a flat input's features (transfer
    relies on it after a `flatten`; a wrong declaration would copy weights in the wrong order)."""
    torch = pytest.importorskip("torch")
    flat = [(line, size) for line, size in OPS[kind].examples if "x" not in size] or [(kind, "12")]
    line, size = flat[0]
    plan = archc.check(f"input {size}\n{line}\n")
    model = _torch_model(plan)
    x = torch.randn(3, int(size))
    perm = torch.randperm(int(size))
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, perm]), model(x)[:, perm], msg=f"`{kind}` does not keep feature order")


@pytest.mark.parametrize("kind", KINDS)
def test_docs_and_editor_grammar_know_the_kind(kind):
    docs = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    assert f"\n### {kind}\n" in docs, f"docs/language.md has no section for `{kind}`: run `python tests/docgen.py`"
    grammar = json.loads((ROOT / "editors" / "arch.tmLanguage.json").read_text(encoding="utf-8"))
    assert kind in json.dumps(grammar), f"the TextMate grammar lacks `{kind}`: regenerate it (tests/tmgrammar.py)"
