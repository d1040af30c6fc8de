"""The ONNX backend: onnx.checker passes, ONNX shape inference agrees with archc's for every layer, the
initializers are exactly the plan's parameters, ONNX Runtime computes the language's definitions, and
it matches the PyTorch backend after the same weights are loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conformance import BIG_PARAMS, OP_CASES, half_side, light_plan  # noqa: E402

import archc  # noqa: E402
from archc.backends import get_backend  # noqa: E402
from archc.backends.onnx import OnnxBackend  # noqa: E402
from archc.diagnostics import ArchcError  # noqa: E402
from archc.loader import load as load_spec  # noqa: E402
from archc.ops import OPS  # noqa: E402

SPECS = Path(__file__).resolve().parents[2] / "specs"
NETWORKS = [p for p in sorted(SPECS.glob("*.arch")) if load_spec(p).spec.input is not None]

CASES = OP_CASES  # the conformance suite's small networks: every layer kind and its tricky variants


def _plan(case: str):
    return archc.check(CASES[case]) if case in CASES else archc.check(case)


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _nchw(shape):
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def _input(plan, batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *_nchw(plan.input_shape))).astype(np.float32)


def test_every_op_has_an_emitter_and_a_case():
    assert OnnxBackend.missing_emitters() == []
    covered = {n.op for case in CASES for n in _plan(case).nodes}
    assert covered == set(OPS)


def _check_model(plan, model, folder: Path) -> None:
    """onnx.checker and ONNX shape inference over the model saved with its weights as external data: neither then
    reads the weights, where in memory each would copy the whole model twice or more (VGG-19: 2.9 GB)."""
    path, inferred_path = folder / "model.onnx", folder / "inferred.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="model.weights", size_threshold=0)
    onnx.checker.check_model(str(path), full_check=True)
    onnx.shape_inference.infer_shapes_path(str(path), str(inferred_path), strict_mode=True)
    inferred = onnx.load(inferred_path, load_external_data=False)
    shapes = {}
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]
        shapes[info.name] = dims
    wrong = [(n.name, n.shape, shapes.get(n.name)) for n in plan.nodes
             if shapes.get(n.name) != ["N", *_nchw(n.shape)]]
    assert not wrong, f"ONNX shape inference disagrees with archc (name, archc HWC, ONNX NCHW): {wrong[:5]}"
    params = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    non_trainable = sum(v for k, v in params.items() if k.endswith((".running_mean", ".running_var")))
    assert (sum(params.values()) - non_trainable, non_trainable) == (plan.trainable_params,
                                                                      plan.non_trainable_params)


@pytest.mark.parametrize("case", sorted(CASES))
def test_case_checks_and_infers_archc_shapes(case, tmp_path):
    plan = _plan(case)
    _check_model(plan, OnnxBackend().build(plan), tmp_path)


@pytest.mark.parametrize("spec", NETWORKS, ids=lambda p: p.stem)
def test_shipped_spec_checks_and_infers_archc_shapes(spec, tmp_path):
    plan = archc.check(spec)
    if plan.total_params > BIG_PARAMS:  # VGG's 0.5 GB of weights are built at half the side (fc1 meets 3x3)
        plan = half_side(spec, plan)
    model = OnnxBackend().build(plan)
    _check_model(plan, model, tmp_path)
    assert {i.name for i in model.graph.initializer} >= {f"{n.name}.weight" for n in plan.nodes
                                                          if n.op in ("conv", "dense")}


# ---------------------------------------------------------------- the language's definitions, by hand


def _run(spec: str, x: np.ndarray) -> np.ndarray:
    model = OnnxBackend().build(archc.check(spec))
    return _session(model).run(None, {"input": x})[0]


def test_max_pooling_pads_with_minus_infinity():
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)  # all negative: zero padding would win
    y = _run("input 3x3x1\nmaxpool 2x2, stride=1, same", x)
    # `same` with a 2x2 window pads 0 before and 1 after: every window's max is its top-left input
    np.testing.assert_array_equal(y, x)
    y = _run("input 3x3x1\nmaxpool 3x3, stride=2, padding=2", x)  # windows of rows/cols -2..0, 0..2, 2..4
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, -3], [-1, -1, -3], [-7, -7, -9]])


def test_average_pooling_leaves_padding_out():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    y = _run("input 3x3x1\navgpool 3x3, stride=1, same", x)
    assert y[0, 0, 0, 0] == pytest.approx((1 + 2 + 4 + 5) / 4)  # a corner averages its 4 real inputs
    assert y[0, 0, 1, 1] == pytest.approx(5.0)
    y = _run("input 3x3x1\navgpool 2x2, stride=2, padding=(1, 1)", x)  # pad as large as the window
    np.testing.assert_allclose(y[0, 0], [[1, 2.5], [5.5, 7]])


def test_lrn_is_krizhevskys():
    x = np.random.default_rng(1).standard_normal((1, 6, 1, 1)).astype(np.float32)
    y = _run("input 1x1x6\nlrn size=3, alpha=0.1, beta=0.75, k=2", x)
    v = x[0, :, 0, 0]
    sq = np.pad(v**2, (1, 1))
    want = v / (2 + 0.1 * (sq[:-2] + sq[1:-1] + sq[2:])) ** 0.75
    np.testing.assert_allclose(y[0, :, 0, 0], want, rtol=1e-5)


def test_logits_leave_out_the_final_softmax():
    plan = archc.check(CASES["flat_chain"])
    x = _input(plan, 2)
    probs = _session(OnnxBackend().build(plan)).run(None, {"input": x})[0]
    logits = _session(OnnxBackend().build(plan, logits=True)).run(None, {"input": x})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the conformance suite, where merged


def test_conformance_numerics():
    conformance = pytest.importorskip("conformance")

    class Harness:
        name = "onnx"

        def build(self, plan, logits=False):
            return OnnxBackend().build(plan, logits)

        def forward_nhwc(self, model, x):
            y = _session(model).run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
            return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y

        def conv_kernel(self, model, name):
            arrays = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
            kernel = arrays[f"{name}.weight"]  # O x I x KH x KW -> HWIO
            return kernel.transpose(2, 3, 1, 0), arrays.get(f"{name}.bias")

    for case in conformance.NUMERIC_CASES:
        conformance.check_numerics(Harness(), case)


# ---------------------------------------------------------------- against the PyTorch backend


def _randomize_batchnorm(model, torch) -> None:
    """Running statistics that are not 0 and 1, so that loading them is actually tested."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)


def _compare_with_torch(plan, batch: int, tolerance: float = 1e-4) -> None:
    torch = pytest.importorskip("torch")
    # logits: a softmax over 1000 classes squeezes differences below any tolerance
    torch_model = archc.compile(plan, backend="torch", logits=True).eval()
    _randomize_batchnorm(torch_model, torch)
    x = _input(plan, batch)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x)).numpy()
    onnx_model = get_backend("onnx").load_weights(OnnxBackend().build(plan, logits=True, seed=1), torch_model)
    # one copy of the weights alive at a time where possible (the ResNets over 60 M parameters: 0.25 GB a copy)
    del torch_model
    serialized = onnx_model.SerializeToString()
    del onnx_model
    session = ort.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    del serialized
    got = session.run(None, {"input": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("case", sorted(CASES))
def test_case_matches_torch(case):
    _compare_with_torch(_plan(case), batch=2)


@pytest.mark.parametrize("spec", NETWORKS, ids=lambda p: p.stem)
def test_shipped_spec_matches_torch(spec):
    _compare_with_torch(light_plan(spec, archc.check(spec)), batch=1)


# ---------------------------------------------------------------- files and weights


def test_build_command_writes_a_loadable_model(tmp_path):
    from click.testing import CliRunner

    from archc.cli import main

    out = tmp_path / "tiny.onnx"
    spec = tmp_path / "tiny.arch"
    spec.write_text(CASES["merges"])
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", "onnx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert model.graph.input[0].name == "input" and model.graph.output[0].name == "output"
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", "onnx", "--format", "py"])
    assert result.exit_code == 2


def test_load_weights_by_name_and_its_errors():
    plan = archc.check(CASES["merges"])
    a, b = OnnxBackend().build(plan, seed=1), OnnxBackend().build(plan, seed=2)
    archc.load_weights(b, a)
    assert [i.SerializeToString() for i in a.graph.initializer] == \
        [i.SerializeToString() for i in b.graph.initializer]
    arrays = {i.name: onnx.numpy_helper.to_array(i) for i in a.graph.initializer}
    first = next(iter(arrays))
    with pytest.raises(ArchcError) as e:
        archc.load_weights(b, {k: v for k, v in arrays.items() if k != first})
    assert e.value.diagnostics[0].code == "A431" and first in e.value.diagnostics[0].message
    with pytest.raises(ArchcError) as e:
        archc.load_weights(b, {**arrays, first: np.zeros((1, 2, 3))})
    assert e.value.diagnostics[0].code == "A431"


def test_compile_and_write_through_the_api():
    model = archc.compile(CASES["merges"], backend="onnx")
    assert isinstance(model, onnx.ModelProto)
    with pytest.raises(ArchcError) as e:
        get_backend("onnx").write(archc.check(CASES["merges"]), "py")
    assert e.value.diagnostics[0].code == "A430"
