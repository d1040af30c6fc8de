"""ConvNeXt (issue 12): its kinds (gelu, layernorm, layer_scale, stochastic_depth) compute what torchvision's
modules compute, specs/convnext_tiny.arch is torchvision's convnext_tiny (counts, drop-path rates, outputs on
the same weights), Keras and ONNX compute the same, the family's members are the header's `--set`s, and
training works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torchvision_zoo import convnext_state_dict, torchvision_models  # noqa: E402

import archc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "convnext_tiny.arch"
THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))
SMALL = dict(c1=8, c2=16, c3=24, c4=32, b1=1, b2=1, b3=2, b4=1, classes=5, input="32x32x3")


def perturbed_torchvision(builder: str = "convnext_tiny", seed: int = 0):
    """torchvision's model with every weight moved off its initialisation, the layer scales up from 1e-6 to
    0.1-0.5 so that every block's branch counts in the output."""
    torch.manual_seed(seed)
    model = getattr(torchvision_models(), builder)(weights=None).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(torch.rand_like(p) * 0.4 + 0.1)
            else:
                p.add_(torch.randn_like(p) * 0.05)
    return model


def relative_error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def reference():
    return perturbed_torchvision()


@pytest.fixture(scope="module")
def compiled(reference):
    """The spec's torch model at 64x64 (every stage still more than 1x1) holding torchvision's weights."""
    model = archc.compile(SPEC, backend="torch", logits=True, input="64x64x3").eval()
    archc.load_weights(model, convnext_state_dict(reference))
    return model


# ---------------------------------------------------------------- the spec is torchvision's convnext_tiny


def test_same_function_as_torchvision(reference, compiled):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(x), compiled(x)
    assert relative_error(got, want) < 1e-5


def test_drop_path_rates_are_torchvisions(reference):
    """`sd_prob * call_index / (blocks - 1)` gives each block torchvision's rate, to the last bit."""
    ours = [n.args.rate for n in archc.check(SPEC).nodes if n.op == "stochastic_depth"]
    theirs = [m.p for m in reference.modules() if type(m).__name__ == "StochasticDepth"]
    assert len(ours) == 18 and ours == theirs
    assert ours[0] == 0.0 and ours[-1] == 0.1


def test_trainable_count_is_torchvisions(reference):
    assert archc.check(SPEC).trainable_params == sum(p.numel() for p in reference.parameters()) == 28_589_128


def header_members() -> list[tuple[str, dict, int]]:
    """The header's `#   ConvNeXt-X  --set a=1 --set b=2   COUNT` lines."""
    members = []
    for line in SPEC.read_text().splitlines():
        m = re.match(r"#\s+(ConvNeXt-\w)\s+(.*?)\s+([\d,]+)$", line)
        if m:
            sets = dict(s.split("=") for s in re.findall(r"--set (\S+)", m.group(2)))
            members.append((m.group(1), {k: float(v) if "." in v else int(v) for k, v in sets.items()},
                            int(m.group(3).replace(",", ""))))
    return members


def test_the_headers_members_have_torchvisions_counts():
    members = header_members()
    assert [m[0] for m in members] == ["ConvNeXt-T", "ConvNeXt-S", "ConvNeXt-B", "ConvNeXt-L"]
    torchvision_counts = {"ConvNeXt-T": 28_589_128, "ConvNeXt-S": 50_223_688, "ConvNeXt-B": 88_591_464,
                          "ConvNeXt-L": 197_767_336}  # issue 12's table, torchvision's convnext_*
    for name, sets, count in members:
        assert count == torchvision_counts[name]
        assert archc.check(SPEC, **sets).trainable_params == count, name


@pytest.mark.skipif(not THOROUGH, reason="builds torchvision's ConvNeXt-S/B/L (ARCHC_THOROUGH=1)")
def test_the_headers_members_are_torchvisions_models():
    for name, sets, count in header_members()[1:]:
        builder = {"S": "convnext_small", "B": "convnext_base", "L": "convnext_large"}[name[-1]]
        model = getattr(torchvision_models(), builder)(weights=None)
        assert sum(p.numel() for p in model.parameters()) == count
        rates = [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]
        assert [n.args.rate for n in archc.check(SPEC, **sets).nodes if n.op == "stochastic_depth"] == rates
        del model


# ---------------------------------------------------------------- the kinds, against torchvision's modules


def one_layer(line: str, size: str):
    model = archc.compile(f"input {size}\n{line}\n", backend="torch")
    node = model.archc_plan.nodes[-1]
    return model, model.get_submodule(node.name)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_is_torchs(approximate):
    model, _ = one_layer(f"gelu approximate={approximate}", "4x4x3")
    x = torch.randn(2, 3, 4, 4) * 3
    torch.testing.assert_close(model(x), torch.nn.functional.gelu(x, approximate=approximate), rtol=0, atol=0)


def test_layernorm_is_convnexts_layernorm2d_and_torchs_layernorm():
    from torchvision.models.convnext import LayerNorm2d

    model, module = one_layer("layernorm epsilon=0.01", "5x4x6")
    ref = LayerNorm2d(6, eps=0.01)
    with torch.no_grad():
        for p in (module.weight, module.bias):
            p.copy_(torch.randn(6))
        ref.load_state_dict(module.state_dict())
        x = torch.randn(3, 6, 5, 4) * 2 + 1
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    flat, flat_module = one_layer("layernorm", "7")
    ref = torch.nn.LayerNorm(7)
    with torch.no_grad():
        flat_module.weight.copy_(torch.randn(7))
        ref.load_state_dict(flat_module.state_dict())
        x = torch.randn(3, 7)
        torch.testing.assert_close(flat(x), ref(x), rtol=0, atol=0)


def test_layer_scale_is_cnblocks_parameter():
    model, module = one_layer("layer_scale 0.25", "3x3x4")
    assert tuple(module.weight.shape) == (4, 1, 1) and bool((module.weight == 0.25).all())
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(model(x), x * 0.25)
    _, flat = one_layer("layer_scale", "4")
    assert tuple(flat.weight.shape) == (4,) and flat.weight[0].item() == pytest.approx(1e-6)


def test_stochastic_depth_is_torchvisions_row_mode():
    from torchvision.ops import StochasticDepth

    model, module = one_layer("stochastic_depth 0.3", "2x2x3")
    ref = StochasticDepth(0.3, "row")
    x = torch.randn(64, 3, 2, 2)
    model.train(), ref.train()
    torch.manual_seed(5)
    got = model(x)
    torch.manual_seed(5)
    want = ref(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # the same draws, the same scaling
    kept = got.flatten(1).abs().sum(1) > 0
    assert 0 < kept.sum() < 64
    torch.testing.assert_close(got[kept], x[kept] / 0.7)
    model.eval()
    assert model(x) is x or torch.equal(model(x), x)


# ---------------------------------------------------------------- Keras and ONNX compute the same


def test_onnx_computes_the_same(reference):
    ort = pytest.importorskip("onnxruntime")
    torch_model = archc.compile(SPEC, backend="torch", logits=True, input="32x32x3").eval()
    archc.load_weights(torch_model, convnext_state_dict(reference))
    onnx_model = archc.load_weights(archc.compile(SPEC, backend="onnx", logits=True, input="32x32x3"), torch_model)
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x)).numpy()
    assert relative_error(session.run(None, {"input": x})[0], want) < 1e-5


def test_keras_computes_the_same(reference):
    keras = pytest.importorskip("keras")
    torch_model = archc.compile(SPEC, backend="torch", logits=True, input="32x32x3").eval()
    archc.load_weights(torch_model, convnext_state_dict(reference))
    keras_model = archc.compile(SPEC, backend="keras", logits=True, input="32x32x3")
    archc.transfer_weights(torch_model, keras_model)
    x = np.random.default_rng(3).standard_normal((2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    got = np.asarray(keras_model(x, training=False))
    keras.backend.clear_session()
    assert relative_error(got, want) < 1e-4


KINDS_SPEC = ("input 6x6x4\nconv 3x3, 8, same, gelu; layernorm epsilon=1e-6; conv 1x1, 8\n"
              "gelu approximate=tanh; layer_scale 0.5; stochastic_depth 0.2\nglobalavgpool; layernorm; dense 3\n")

NO_ARCHC = textwrap.dedent("""
    import importlib.abc, sys
    class NoArchc(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "archc" or name.startswith("archc."):
                raise ImportError("archc is not installed here")
    sys.meta_path.insert(0, NoArchc())
""")


def test_keras_file_with_the_kinds_loads_without_archc(tmp_path):
    keras = pytest.importorskip("keras")
    from archc.backends import get_backend

    (tmp_path / "m.keras").write_bytes(get_backend("keras").write(archc.check(KINDS_SPEC), "keras"))
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = np.asarray(keras.models.load_model(tmp_path / "m.keras")(x))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    code = NO_ARCHC + textwrap.dedent("""
        import keras, numpy as np
        model = keras.models.load_model("m.keras")
        np.save("y.npy", np.asarray(model(np.load("x.npy"))))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6, atol=1e-7)
    keras.backend.clear_session()


# ---------------------------------------------------------------- the torch backend's layout


def test_pointwise_convs_after_layernorm_are_matrix_products():
    """The 1x1 convs of a ConvNeXt block read channels-last data (LayerNorm2d's output): written as F.linear
    over the channels, as torchvision does, they compute the same as nn.Conv2d; elsewhere 1x1 convs stay
    convolutions."""
    from archc.backends import get_backend

    source = get_backend("torch").source(archc.check(SPEC))
    assert source.count("PointwiseConv2d(") == 2 * 18 + 1  # two per block, and the helper's definition
    assert "PointwiseConv2d" not in get_backend("torch").source(archc.check(ROOT / "specs" / "resnet50.arch"))
    model, _ = one_layer("layernorm\nconv 1x1, 5\ngelu\nconv 1x1, 3", "4x4x6")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [type(m).__name__ for m in convs] == ["PointwiseConv2d", "PointwiseConv2d"]
    x = torch.randn(2, 6, 4, 4)
    with torch.no_grad():
        y = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), model.ln.weight, model.ln.bias)
        y = torch.nn.functional.conv2d(y.permute(0, 3, 1, 2), convs[0].weight, convs[0].bias)
        y = torch.nn.functional.conv2d(torch.nn.functional.gelu(y), convs[1].weight, convs[1].bias)
        torch.testing.assert_close(model(x), y)


# ---------------------------------------------------------------- training


def test_training_lowers_the_loss_and_drop_path_is_live():
    torch.manual_seed(0)
    model = archc.compile(SPEC, backend="torch", logits=True, sd_prob=0.5, **SMALL)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 5, (8,))
    model.train()
    with torch.no_grad():  # drop path draws anew each pass in training, and is the identity in evaluation
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(10):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is not None for p in model.parameters())


def test_the_residual_sum_overwrites_the_drop_paths_tensor_only_when_nothing_else_reads_it():
    """Drop path returns its input in evaluation: the sum may go into it (torchvision's `result += input`) only
    when its input has no other reader."""
    from archc.backends import get_backend

    source = get_backend("torch").source
    alone = archc.check("input 4x4x3\nresidual:\n  conv 1x1, 3\n  layer_scale 0.5\n  stochastic_depth 0.1\n")
    assert "Add(inplace=True)" in source(alone)
    shared = "input 4x4x3\nconv 1x1, 3\nresidual:\n  stochastic_depth 0.1\n  identity\nrelu\n"
    assert "Add(inplace=True)" not in source(archc.check(shared))
    model = archc.compile(shared, backend="torch")
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        conv = model.conv(x)
        torch.testing.assert_close(model.eval()(x), torch.relu(2 * conv))
    model.train()(x).sum().backward()  # an in-place write over a tensor autograd saved would raise here
