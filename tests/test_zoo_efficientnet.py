"""EfficientNet B0-B7 (issue 12): specs/efficientnet_b0.arch and the header's `--set`s are torchvision's
efficientnet_b0 ... efficientnet_b7: the same trainable and non-trainable counts, drop-path rates and batchnorm
settings for every member, and the same function: torchvision's weights (every tensor drawn afresh, batchnorm
statistics included) copied with `archc.load_weights` give the same outputs in eval mode, and Keras and ONNX give
PyTorch's on those weights. A few optimiser steps lower the loss at a small size.

ARCHC_THOROUGH=1 adds B1-B7's outputs against torchvision's (at 128x128: their full sizes cost minutes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from torchvision_zoo import assert_training_works, perturb, relative_difference, torchvision_models

import archc

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "efficientnet_b0.arch"
THOROUGH = os.environ.get("ARCHC_THOROUGH") == "1"

# torchvision's efficientnet_bN: (trainable, non-trainable = batchnorm running means and variances)
COUNTS = {
    "B0": (5_288_548, 42_016), "B1": (7_794_184, 62_048), "B2": (9_109_994, 67_568),
    "B3": (12_233_232, 87_296), "B4": (19_341_616, 125_200), "B5": (30_389_784, 172_736),
    "B6": (43_040_704, 224_432), "B7": (66_347_960, 310_720),
}


def header_members() -> dict[str, dict[str, str]]:
    """The header's `#   BN  --set a=1 --set b=2   COUNT` lines: member -> its `--set`s (text, as the CLI passes
    them), checked against the count written beside them."""
    members = {}
    for line in SPEC.read_text().splitlines():
        m = re.match(r"#\s+(B\d)\s+(.*?)\s+([\d,]+)$", line)
        if m:
            members[m.group(1)] = dict(s.split("=", 1) for s in re.findall(r"--set (\S+)", m.group(2)))
            assert int(m.group(3).replace(",", "")) == COUNTS[m.group(1)][0], f"the header's count of {m.group(1)}"
    return members


MEMBERS = header_members()


def test_the_header_names_every_member():
    assert list(MEMBERS) == list(COUNTS)
    assert MEMBERS["B0"] == {}


@pytest.mark.parametrize("member", list(COUNTS))
def test_counts_are_torchvisions(member):
    plan = archc.check(SPEC, **MEMBERS[member])
    assert (plan.trainable_params, plan.non_trainable_params) == COUNTS[member]


def torchvision_on_meta(member: str):
    """torchvision's model without memory or initialisation (meta tensors): its structure and counts only."""
    import torch

    with torch.device("meta"):
        return getattr(torchvision_models(), f"efficientnet_{member.lower()}")(weights=None)


@pytest.mark.parametrize("member", list(COUNTS))
def test_each_member_is_torchvisions_model(member):
    """The counts above, drop-path rates (torchvision's `0.2 * block_id / total_blocks`, used by the blocks with a
    skip), batchnorm epsilon and momentum (PyTorch's is 1 - archc's), classifier dropout and the input size of
    torchvision's weights."""
    import torch

    model = torchvision_on_meta(member)
    buffers = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert (sum(p.numel() for p in model.parameters()), buffers) == COUNTS[member]
    plan = archc.check(SPEC, **MEMBERS[member])
    blocks = [m for m in model.modules() if type(m).__name__ == "MBConv"]
    assert [n.args.rate for n in plan.nodes if n.op == "stochastic_depth"] == [
        b.stochastic_depth.p for b in blocks if b.use_res_connect]
    theirs = {(m.eps, m.momentum) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {(n.args.epsilon, round(1 - n.args.momentum, 6)) for n in plan.nodes if n.op == "batchnorm"} == theirs
    assert [n.args.rate for n in plan.nodes if n.op == "dropout"] == [model.classifier[0].p]
    weights = getattr(torchvision_models(), f"EfficientNet_{member}_Weights").IMAGENET1K_V1
    side = weights.transforms().crop_size[0]
    assert plan.input_shape == (side, side, 3)


def test_table_1_rows():
    """B0's stages as Table 1 gives them: resolution, channels, layers; the blocks' kernels and expansions."""
    plan = archc.check(SPEC)
    stages = dict(plan.stages())
    rows = [  # stage, output size, layers (MBConv blocks), kernel, expansion t
        ("stage2", (112, 112, 16), 1, 3, 1), ("stage3", (56, 56, 24), 2, 3, 6), ("stage4", (28, 28, 40), 2, 5, 6),
        ("stage5", (14, 14, 80), 3, 3, 6), ("stage6", (14, 14, 112), 3, 5, 6), ("stage7", (7, 7, 192), 4, 5, 6),
        ("stage8", (7, 7, 320), 1, 3, 6)]
    for name, shape, layers, kernel, t in rows:
        nodes = stages[name]
        assert nodes[-1].shape == shape, name
        depthwise = [n for n in nodes if n.op == "conv" and n.args.depthwise]
        assert [n.args.kernel for n in depthwise] == [(kernel, kernel)] * layers, name
        gates = [n for n in nodes if n.op == "sigmoid"]
        assert len(gates) == layers, name  # squeeze-excitation in every block
        expand = [n for n in nodes if n.op == "conv" and not n.args.depthwise and n.shape[:2] != (1, 1)
                  and n.shape[2] == t * plan.node(n.inputs[0]).shape[2]]
        assert len(expand) == (0 if t == 1 else layers), name


def test_squeeze_excitation_is_a_quarter_of_the_blocks_input():
    """torchvision's `max(1, input_channels // 4)`: the block's input, not its expanded width."""
    plan = archc.check(SPEC)
    squeeze = [n.shape[2] for n in plan.nodes if n.op == "silu" and n.shape[:2] == (1, 1)]
    inputs = [32, 16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192]
    assert squeeze == [c // 4 for c in inputs]


# ---------------------------------------------------------------- the same function as torchvision's


def torchvision_pair(member: str, size: int):
    """torchvision's model with every tensor drawn afresh, and archc's PyTorch model holding its weights."""
    import torch

    torch.manual_seed(0)
    reference = perturb(getattr(torchvision_models(), f"efficientnet_{member.lower()}")(weights=None)).eval()
    sets = {**MEMBERS[member], "input": f"{size}x{size}x3"}
    ours = archc.compile(SPEC, backend="torch", logits=True, **sets).eval()
    archc.load_weights(ours, reference)
    return reference, ours


def assert_same_function(member: str, size: int) -> None:
    import torch

    reference, ours = torchvision_pair(member, size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(x), ours(x)
    assert float((want[0] - want[1]).abs().max()) > 1e-2 * float(want.abs().max()), "the outputs carry the input"
    assert relative_difference(got, want) <= 1e-5


def test_b0_is_torchvisions_function():
    assert_same_function("B0", 224)


@pytest.mark.skipif(not THOROUGH, reason="B1-B7 in torch: ARCHC_THOROUGH=1")
@pytest.mark.parametrize("member", [m for m in COUNTS if m != "B0"])
def test_each_member_is_torchvisions_function(member):
    assert_same_function(member, 128)


# ---------------------------------------------------------------- Keras and ONNX: the same function as PyTorch's


def test_keras_and_onnx_compute_torchs_function():
    """A small member (every kind and construct of B0, half its layers) at 32x32, every tensor drawn afresh: the
    torch model is torchvision's function (above), so Keras and ONNX are too. B0 itself runs at 224x224 in
    tests/test_zoo_full_size.py (ARCHC_THOROUGH=1)."""
    keras = pytest.importorskip("keras")
    onnxruntime = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    ours = perturb(archc.compile(SPEC, backend="torch", logits=True, input="32x32x3", classes=10, width=0.5,
                                 depth=0.5), seed=1).eval()
    plan = ours.archc_plan
    assert {"silu", "sigmoid", "multiply", "stochastic_depth", "add"} <= {n.op for n in plan.nodes}
    x = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        want = ours(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    keras_model = archc.compile(plan, backend="keras", logits=True)
    archc.transfer_weights(ours, keras_model)
    keras_diff = relative_difference(keras_model(x, training=False), want)
    del keras_model
    keras.backend.clear_session()
    onnx_model = archc.load_weights(archc.compile(plan, backend="onnx", logits=True), ours)
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_diff = relative_difference(session.run(None, {"input": x.transpose(0, 3, 1, 2).copy()})[0], want)
    assert keras_diff <= 1e-5 and onnx_diff <= 1e-5, (keras_diff, onnx_diff)


# ---------------------------------------------------------------- training


def test_a_few_steps_lower_the_loss_and_drop_path_is_live():
    """A small member (width 0.25, one block per stage but two in the deepest) at 16x16 (five halvings to 1x1) in
    train mode:
    dropout and drop path draw anew each pass, batchnorm learns its statistics, and Adam steps lower the loss
    on one batch (each step draws the same masks, so the loss they lower is one function)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = archc.compile(SPEC, backend="torch", logits=True, input="16x16x3", classes=4, width=0.25, depth=0.3,
                          sd_prob=0.5).train()
    assert any(n.op == "stochastic_depth" and n.args.rate > 0 for n in model.archc_plan.nodes)
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 4
    with torch.no_grad():
        assert not torch.equal(model(x), model(x)), "dropout and drop path are off in train mode"
    assert_training_works(model, x, y)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
