"""Issue 12's U-Net, Inception v3, VGG-16-BN, SqueezeNet 1.1, ResNeXt and Wide ResNet specs: the same function
as their reference implementations, not only the same count.

For each spec torchvision has: torchvision's model (no weights downloaded), every weight and batchnorm statistic
drawn afresh, copied into archc's PyTorch model by `archc.load_weights` (by position: every spec here is written
in its reference's registration order), then the eval-mode outputs compared. torchvision has no U-Net: `UNet` below
is a plain PyTorch reading of Ronneberger et al.'s Fig. 1. Keras and ONNX (onnxruntime) are held to archc's PyTorch
model at reduced sizes; the big ones run with ARCHC_THOROUGH=1. A few optimiser steps in training mode lower the
loss of each family at a small size.
"""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest

import archc

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torchvision_zoo import perturb, torchvision_models  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = tomllib.loads((ROOT / "tests" / "golden" / "spec_library.toml").read_text(encoding="utf-8"))
THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))
RELATIVE = 1e-5  # outputs must agree to this fraction of their largest magnitude


@functools.cache
def torchvision_reference(spec: str) -> nn.Module:
    """torchvision's model of `spec` in eval mode, every tensor perturbed; built once per session."""
    ctor, kwargs, _, _ = CASES[spec]
    reference = getattr(torchvision_models(), ctor)(weights=None, **kwargs).eval()
    perturb(reference)
    return reference


def assert_same(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    error = float(np.abs(got - want).max() / np.abs(want).max())
    assert error <= RELATIVE, f"outputs differ by {error:.3g} of their scale"
    return error


def archc_torch(spec: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return archc.compile(SPECS / f"{spec}.arch", backend="torch", logits=True, **overrides).eval()


# ---------------------------------------------------------------- U-Net: a reference module from the paper


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.Conv2d(cout, cout, 3), nn.ReLU())


def center_crop(x, h: int, w: int):
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, top:top + h, left:left + w]


class UNet(nn.Module):
    """Ronneberger et al. 2015, Fig. 1: valid 3x3 convs, 2x2 max pools, 2x2 up-convs halving the channels, the
    contracting path's maps centre-cropped and concatenated before the up-conv's; modules in data-flow order."""

    def __init__(self, width: int = 64, classes: int = 2, channels: int = 1):
        super().__init__()
        w = [width * 2**i for i in range(5)]
        self.down = nn.ModuleList([double_conv(channels, w[0])] + [double_conv(w[i - 1], w[i]) for i in range(1, 5)])
        self.ups = nn.ModuleList()
        for i in range(4, 0, -1):
            self.ups.append(nn.ConvTranspose2d(w[i], w[i - 1], 2, stride=2))
            self.ups.append(double_conv(2 * w[i - 1], w[i - 1]))
        self.head = nn.Conv2d(w[0], classes, 1)  # registered: contracting path, then innermost level first

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for k in range(4):
            x = self.ups[2 * k](x)
            x = self.ups[2 * k + 1](torch.cat([center_crop(skips.pop(), x.shape[2], x.shape[3]), x], 1))
        return self.head(x)


def test_unet_reference_has_the_papers_count():
    reference = UNet()
    assert sum(p.numel() for p in reference.parameters()) == 31_030_658 == GOLDEN["unet"]["trainable"]


@pytest.mark.parametrize("width", [8, 64] if THOROUGH else [8])
def test_unet_computes_the_reference(width):
    reference = UNet(width=width).eval()
    perturb(reference)
    model = archc_torch("unet", width=width, input="188x188x1")
    archc.load_weights(model, reference.state_dict())
    x = torch.randn(2, 1, 188, 188)
    with torch.no_grad():
        want = reference(x)
        got = model(x)
    assert tuple(got.shape) == (2, 2, 4, 4)  # 188 - 124 = 64 = 16 x 4
    assert_same(got, want)


def test_unet_crops_odd_differences_like_the_reference():
    """At 189 the first level's maps are 185x185 and the up-conv's 8x8: an odd difference of 177, so the crop
    starts at row and column 177 // 2 = 88, the extra row and column left at the bottom and right, as
    torchvision-style centre crops do. Sizes that leave a conv nothing to work on are refused (A201)."""
    plan = archc.check(SPECS / "unet.arch", input="189x189x1", width=4)
    last = [n for n in plan.nodes if n.op == "cropconcat"][-1]
    assert [s[:2] for s in last.in_shapes] == [(185, 185), (8, 8)]
    assert last.opdef.crops(list(last.in_shapes), last.shape) == [(88, 88), (0, 0)]
    reference = UNet(width=4).eval()
    perturb(reference)
    model = archc_torch("unet", width=4, input="189x189x1")
    archc.load_weights(model, reference.state_dict())
    x = torch.randn(1, 1, 189, 189)
    with torch.no_grad():
        assert_same(model(x), reference(x))
    with pytest.raises(archc.ArchcError) as e:
        archc.check(SPECS / "unet.arch", input="172x172x1")
    assert e.value.diagnostics[0].code == "A201"


# ---------------------------------------------------------------- torchvision's models

CASES = {  # spec: (torchvision constructor and its arguments, input size for the comparison, thorough only)
    "squeezenet1_1": ("squeezenet1_1", {}, "224x224x3", False),
    "inception_v3": ("inception_v3", {"aux_logits": False, "init_weights": False}, "75x75x3", False),
    "resnext50_32x4d": ("resnext50_32x4d", {}, "32x32x3", False),
    "wide_resnet50_2": ("wide_resnet50_2", {}, "32x32x3", False),
    "vgg16_bn": ("vgg16_bn", {}, "224x224x3", True),  # its classifier wants 7x7x512: the full size only
}


@pytest.mark.parametrize("spec", sorted(CASES))
def test_same_function_as_torchvision(spec):
    ctor, kwargs, size, heavy = CASES[spec]
    if heavy and not THOROUGH:
        pytest.skip("the full-size VGG runs with ARCHC_THOROUGH=1")
    reference = torchvision_reference(spec)
    assert sum(p.numel() for p in reference.parameters() if p.requires_grad) == GOLDEN[spec]["trainable"]
    model = archc_torch(spec, input=size)
    archc.load_weights(model, reference.state_dict())
    h, w, c = (int(d) for d in size.split("x"))
    x = torch.randn(2, c, h, w)
    with torch.no_grad():
        assert_same(model(x), reference(x))


def test_inception_v3_differs_without_counted_padding(tmp_path):
    """The reason for `count_pad`: the same weights with padding left out of the module averages (the language's
    default) give other outputs."""
    reference = torchvision_reference("inception_v3")
    (tmp_path / "blocks.arch").write_text((SPECS / "blocks.arch").read_text().replace(", count_pad;", ";"))
    (tmp_path / "inception_v3.arch").write_text((SPECS / "inception_v3.arch").read_text())
    plan = archc.check(tmp_path / "inception_v3.arch", input="75x75x3")
    assert plan.trainable_params == GOLDEN["inception_v3"]["trainable"]
    assert not any(getattr(n.args, "count_pad", False) for n in plan.nodes)
    torch.manual_seed(0)
    model = archc.compile(plan, backend="torch", logits=True).eval()
    archc.load_weights(model, reference.state_dict())
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        got, want = model(x), reference(x)
    assert float((got - want).abs().max() / want.abs().max()) > 1e-3


@pytest.mark.parametrize("spec", [s for s in sorted(GOLDEN) if "members" in GOLDEN[s]])
def test_family_members_by_set(spec):
    """Each header's `--set` members have their exact torchvision counts."""
    for overrides, member, trainable in GOLDEN[spec]["members"]:
        values = dict(pair.split("=") for pair in overrides.split())
        plan = archc.check(SPECS / f"{spec}.arch", **values)  # the values as `--set` passes them: text
        assert plan.trainable_params == trainable, member
        header = (SPECS / f"{spec}.arch").read_text()
        assert " ".join(f"--set {k}={v}" for k, v in values.items()) in header, f"{spec}: say how to get {member}"


@pytest.mark.skipif(not THOROUGH, reason="three big torchvision models: ARCHC_THOROUGH=1")
def test_members_are_torchvision_counts():
    models = torchvision_models()
    for ctor in ("resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2"):
        trainable = sum(p.numel() for p in getattr(models, ctor)(weights=None).parameters())
        assert [m for spec in GOLDEN.values() for m in spec.get("members", []) if m[1] == ctor][0][2] == trainable


# ---------------------------------------------------------------- Keras and ONNX against archc's PyTorch model

BACKEND_CASES = {  # spec: (overrides, thorough only)
    "unet": ({"width": 4, "input": "188x188x1"}, False),
    "squeezenet1_1": ({"input": "64x64x3", "classes": 10}, True),
    "inception_v3": ({"input": "75x75x3", "classes": 10}, True),
    "resnext50_32x4d": ({"input": "32x32x3", "classes": 10}, True),
    "wide_resnet50_2": ({"input": "32x32x3", "classes": 10}, True),
    "vgg16_bn": ({"input": "32x32x3", "classes": 10}, True),
}


def _torch_reference(spec: str, overrides: dict):
    model = archc_torch(spec, **overrides)
    perturb(model, seed=1)
    plan = model.archc_plan
    x = np.random.default_rng(0).standard_normal((2, *plan.input_shape)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    return model, plan, x, want


@pytest.mark.parametrize("spec", sorted(BACKEND_CASES))
def test_keras_and_onnx_compute_the_torch_model(spec):
    overrides, heavy = BACKEND_CASES[spec]
    if heavy and not THOROUGH:
        pytest.skip("the big models in Keras run with ARCHC_THOROUGH=1")
    ort = pytest.importorskip("onnxruntime")
    keras = pytest.importorskip("keras")
    model, plan, x, want = _torch_reference(spec, overrides)
    onnx_model = archc.compile(plan, backend="onnx", logits=True)
    archc.load_weights(onnx_model, model)
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert_same(session.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0], want)
    keras_model = archc.compile(plan, backend="keras", logits=True)
    archc.transfer_weights(model, keras_model)
    got = np.asarray(keras_model(x, training=False))
    keras.backend.clear_session()
    assert_same(got.transpose(0, 3, 1, 2) if got.ndim == 4 else got, want)


# ---------------------------------------------------------------- training

TRAINING = {  # spec: (overrides giving a small member, thorough only)
    "unet": ({"width": 4, "input": "188x188x1"}, False),
    "squeezenet1_1": ({"input": "32x32x3", "classes": 10}, False),
    "inception_v3": ({"input": "75x75x3", "classes": 10}, True),
    "resnext50_32x4d": ({"input": "32x32x3", "classes": 10, "width": 1, "cardinality": 4}, True),
}


@pytest.mark.parametrize("spec", sorted(TRAINING))
def test_a_few_steps_lower_the_loss(spec):
    overrides, heavy = TRAINING[spec]
    if heavy and not THOROUGH:
        pytest.skip("training a full-width model runs with ARCHC_THOROUGH=1")
    model = archc_torch(spec, **overrides).train()
    plan = model.archc_plan
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, *(plan.input_shape[2], *plan.input_shape[:2]), generator=gen)
    out_shape = plan.node(plan.model_output(True)).shape
    if len(out_shape) == 3:  # segmentation: a class per output pixel
        target = torch.randint(0, out_shape[2], (4, *out_shape[:2]), generator=gen)
    else:
        target = torch.randint(0, out_shape[0], (4,), generator=gen)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    if any(n.op == "batchnorm" for n in plan.nodes):  # training mode moved the running statistics
        assert any(float(b.abs().sum()) > 0 for k, b in model.state_dict().items() if k.endswith("running_mean"))
