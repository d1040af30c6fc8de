"""MobileNet v2 and v3, MnasNet and RegNet (issue 12): each spec against torchvision's model of the same name, the
same count for every member a `--set` gives, and the same function: torchvision's weights (every tensor drawn
afresh, batchnorm statistics included) copied into archc's PyTorch model give the same outputs, and Keras and ONNX
give PyTorch's on the same weights. Also the language this needs: squeeze-excitation (`multiply`, `globalavgpool
keepdims`), the mobile activations, `divisible()`, a repetition count of 0, activations passed to blocks by name.

ARCHC_THOROUGH=1 adds every member's count against torchvision's own model and the 224x224 models in Keras.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from torchvision_zoo import assert_training_works, perturb, torchvision_or_skip

import archc
from archc.exprs import divisible

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
THOROUGH = os.environ.get("ARCHC_THOROUGH") == "1"

# spec, --set overrides -> (torchvision's model, its keyword arguments, its trainable parameters)
MEMBERS = {
    ("mobilenet_v2", ()): ("mobilenet_v2", {}, 3_504_872),
    ("mobilenet_v2", (("alpha", 0.35),)): ("mobilenet_v2", {"width_mult": 0.35}, 1_677_128),
    ("mobilenet_v2", (("alpha", 0.5),)): ("mobilenet_v2", {"width_mult": 0.5}, 1_968_680),
    ("mobilenet_v2", (("alpha", 0.75),)): ("mobilenet_v2", {"width_mult": 0.75}, 2_636_424),
    ("mobilenet_v2", (("alpha", 1.4),)): ("mobilenet_v2", {"width_mult": 1.4}, 6_108_776),
    ("mobilenet_v2", (("classes", 10),)): ("mobilenet_v2", {"num_classes": 10}, 2_236_682),
    ("mobilenet_v3_large", ()): ("mobilenet_v3_large", {}, 5_483_032),
    ("mobilenet_v3_large", (("alpha", 0.75),)): ("mobilenet_v3_large", {"width_mult": 0.75}, 3_377_576),
    ("mobilenet_v3_large", (("alpha", 1.25),)): ("mobilenet_v3_large", {"width_mult": 1.25}, 8_164_744),
    ("mobilenet_v3_small", ()): ("mobilenet_v3_small", {}, 2_542_856),
    ("mobilenet_v3_small", (("alpha", 0.75),)): ("mobilenet_v3_small", {"width_mult": 0.75}, 1_653_920),
    ("mnasnet1_0", ()): ("mnasnet1_0", {}, 4_383_312),
    ("mnasnet1_0", (("alpha", 0.5),)): ("mnasnet0_5", {}, 2_218_512),
    ("mnasnet1_0", (("alpha", 0.75),)): ("mnasnet0_75", {}, 3_170_208),
    ("mnasnet1_0", (("alpha", 1.3),)): ("mnasnet1_3", {}, 6_282_256),
    ("regnet_y_400mf", ()): ("regnet_y_400mf", {}, 4_344_144),
    ("regnet_y_400mf", (("d1", 1), ("d2", 3), ("d3", 8), ("d4", 2), ("w1", 64), ("w2", 144), ("w3", 320),
                        ("w4", 784), ("g", 16))): ("regnet_y_800mf", {}, 6_432_512),
    ("regnet_y_400mf", (("d1", 2), ("d2", 6), ("d3", 17), ("d4", 2), ("w1", 48), ("w2", 120), ("w3", 336),
                        ("w4", 888), ("g", 24))): ("regnet_y_1_6gf", {}, 11_202_430),
    ("regnet_y_400mf", (("d1", 1), ("d2", 2), ("d3", 7), ("d4", 12), ("w1", 32), ("w2", 64), ("w3", 160),
                        ("w4", 400), ("g", 16), ("se_ratio", 0))): ("regnet_x_400mf", {}, 5_495_976),
    ("regnet_y_400mf", (("d1", 2), ("d2", 5), ("d3", 15), ("d4", 1), ("w1", 80), ("w2", 240), ("w3", 720),
                        ("w4", 1920), ("g", 120), ("se_ratio", 0))): ("regnet_x_8gf", {}, 39_572_648),
}
SPEC_NAMES = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet1_0", "regnet_y_400mf"]


def _id(key) -> str:
    spec, sets = key
    return spec + "".join(f"-{k}={v}" for k, v in sets)


@pytest.mark.parametrize("key", MEMBERS, ids=_id)
def test_every_member_has_torchvisions_count(key):
    spec, sets = key
    assert archc.check(SPECS / f"{spec}.arch", **dict(sets)).trainable_params == MEMBERS[key][2]


@pytest.mark.parametrize("key", [k for k in MEMBERS if THOROUGH or not k[1]], ids=_id)
def test_the_counts_are_torchvisions_own(key):
    """The figures above are what torchvision's models count (every member with ARCHC_THOROUGH=1)."""
    tv = torchvision_or_skip()
    name, kwargs, count = MEMBERS[key]
    model = getattr(tv.models, name)(weights=None, **kwargs)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count


def test_the_headers_name_every_member_and_its_count():
    for (spec, sets), (name, _, count) in MEMBERS.items():
        if dict(sets).keys() == {"classes"}:
            continue  # not a member of the family
        header = "\n".join(line for line in (SPECS / f"{spec}.arch").read_text().splitlines() if line.startswith("#"))
        assert f"{count:,}" in header, f"{spec}.arch does not give {name}'s count"
        for key, value in sets:
            assert f"--set {key}={value}" in header, f"{spec}.arch does not say that `--set {key}={value}` is used"


# ---------------------------------------------------------------- the same function as torchvision's


def torchvision_pair(spec: str, size: int, **sets):
    """torchvision's model with fresh random weights, and archc's PyTorch model holding the same weights."""
    tv = torchvision_or_skip()
    import torch

    name, kwargs, _ = MEMBERS[(spec, tuple(sets.items()))]
    torch.manual_seed(0)
    reference = getattr(tv.models, name)(weights=None, **kwargs).eval()
    perturb(reference)
    ours = archc.compile(SPECS / f"{spec}.arch", backend="torch", logits=True, input=f"{size}x{size}x3",
                         **sets).eval()
    archc.load_weights(ours, reference)  # through the structure: torchvision's RegNet creates shortcuts first
    return reference, ours


def max_relative_difference(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("spec", SPEC_NAMES)
def test_same_function_as_torchvision(spec):
    """Eval mode, at 64x64 (every one of these networks takes any size down to 32x32)."""
    import torch

    reference, ours = torchvision_pair(spec, 64)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(x), ours(x)
    assert float((want[0] - want[1]).abs().max()) > 1e-2 * float(want.abs().max()), "the outputs carry the input"
    assert max_relative_difference(got, want) <= 1e-5


def test_regnet_by_position_is_refused_and_by_structure_fits():
    """torchvision's RegNet lists a block's shortcut (`proj`) before its body (`f`); archc's spec follows the data
    flow. Copying its state dict by position stops at the first misfit (A406); its module fits by structure."""
    reference, ours = torchvision_pair("regnet_y_400mf", 32)
    with pytest.raises(archc.ArchcError) as e:
        archc.load_weights(ours, reference.state_dict())
    assert e.value.diagnostics[0].code == "A406"


# ---------------------------------------------------------------- Keras and ONNX: the same function as PyTorch's


def keras_and_onnx_agree(spec: str, size: int) -> tuple[float, float]:
    """-> the largest relative differences of Keras's and ONNX Runtime's outputs from PyTorch's."""
    keras = pytest.importorskip("keras")
    onnxruntime = pytest.importorskip("onnxruntime")
    import torch

    _, ours = torchvision_pair(spec, size)
    plan = ours.archc_plan
    x = np.random.default_rng(2).standard_normal((2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        want = ours(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    keras_model = archc.compile(plan, backend="keras", logits=True)
    archc.transfer_weights(ours, keras_model)
    keras_diff = max_relative_difference(keras_model(x, training=False), want)
    del keras_model
    keras.backend.clear_session()
    onnx_model = archc.load_weights(archc.compile(plan, backend="onnx", logits=True), ours)
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_diff = max_relative_difference(session.run(None, {"input": x.transpose(0, 3, 1, 2).copy()})[0], want)
    return keras_diff, onnx_diff


# Other frameworks sum in other orders: float32 rounding alone moves MobileNet v3 Large's outputs by 1.6e-5 of
# their scale at 32x32 and 2.2e-5 at 224x224 (PyTorch in float32 against PyTorch in float64, on these weights);
# Keras measured 1.5e-5 and 6.9e-5 from PyTorch, ONNX Runtime 0.6e-5 and 3.0e-5; the other specs stay under 1.3e-5.
FRAMEWORK_TOLERANCE = 1e-4


@pytest.mark.parametrize("spec", SPEC_NAMES)
def test_keras_and_onnx_compute_torchs_function(spec):
    keras_diff, onnx_diff = keras_and_onnx_agree(spec, 32)
    assert keras_diff <= FRAMEWORK_TOLERANCE and onnx_diff <= FRAMEWORK_TOLERANCE, (keras_diff, onnx_diff)


@pytest.mark.skipif(not THOROUGH, reason="224x224 models in Keras: ARCHC_THOROUGH=1")
@pytest.mark.parametrize("spec", SPEC_NAMES)
def test_keras_and_onnx_compute_torchs_function_at_224(spec):
    keras_diff, onnx_diff = keras_and_onnx_agree(spec, 224)
    assert keras_diff <= FRAMEWORK_TOLERANCE and onnx_diff <= FRAMEWORK_TOLERANCE, (keras_diff, onnx_diff)


def test_keras_file_of_squeeze_excitation_loads_without_archc(tmp_path):
    """hardswish, hardsigmoid, `multiply` of a 1x1xC gate and `globalavgpool keepdims` are Keras's own layers."""
    keras = pytest.importorskip("keras")
    import subprocess
    import sys

    path = tmp_path / "m.keras"
    archc.compile(SPECS / "mobilenet_v3_small.arch", backend="keras", input="32x32x3", classes=10).save(path)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    want = np.asarray(keras.models.load_model(path)(x))
    keras.backend.clear_session()
    script = ("import sys; sys.modules['archc'] = None\n"  # archc cannot be imported
              "import keras, numpy as np\n"
              "np.save('y.npy', np.asarray(keras.models.load_model('m.keras')(np.load('x.npy'))))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- training


SMALL_REGNET = {"d1": 1, "d2": 1, "d3": 2, "d4": 1, "w1": 16, "w2": 32, "w3": 48, "w4": 64, "g": 8}


@pytest.mark.parametrize("spec, sets", [
    ("mobilenet_v2", {"alpha": 0.35}), ("mobilenet_v3_small", {"alpha": 0.75}), ("mnasnet1_0", {"alpha": 0.5}),
    ("regnet_y_400mf", SMALL_REGNET),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_few_steps_lower_the_loss(spec, sets):
    """Train mode at 16x16 (the networks' five halvings end at 1x1): dropout drops, batchnorm learns its
    statistics, and a few Adam steps lower the loss on one batch (each step draws the same dropout mask, so the
    loss they lower is one function; the learning rate is small enough that they do not overshoot it)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = archc.compile(SPECS / f"{spec}.arch", backend="torch", logits=True, input="16x16x3", classes=4,
                          **sets).train()
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 4
    assert_training_works(model, x, y)
    with torch.no_grad():
        if any(isinstance(m, torch.nn.Dropout) for m in model.modules()):
            assert not torch.equal(model(x), model(x)), "dropout is off in train mode"
        model.eval()
        assert torch.equal(model(x), model(x))


def test_in_place_activations_keep_the_gradients():
    """silu and hardswish work in place after a conv or batchnorm (as torchvision's do); their backward must still
    see what it needs: the gradients equal those of the plain reference model's out-of-place functions."""
    torch = pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "backends"))
    from torch_reference import ReferenceModel

    spec = ("input 8x8x3\nconv 3x3, 8, same, bn, silu\nconv 3x3, 8, same, bn, hardswish\nresidual multiply:\n"
            "  globalavgpool keepdims\n  conv 1x1, 2, swish\n  conv 1x1, 8, hardsigmoid\nglobalavgpool; dense 4\n")
    torch.manual_seed(0)
    model = archc.compile(spec, backend="torch").train()
    assert [m.inplace for m in model.modules() if isinstance(m, (torch.nn.SiLU, torch.nn.Hardswish))] == [
        True, True, True]
    reference = ReferenceModel(model.archc_plan).train()
    archc.load_weights(reference, model)
    grads = []
    for m in (model, reference):
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
        m(x).square().sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])


# ---------------------------------------------------------------- the language these networks need


def test_divisible_is_torchvisions_make_divisible():
    assert [divisible(v, 8) for v in (32 * 0.75, 0.35 * 16, 0.5 * 88, 83, 84, 3.9, 1280 * 1.4)] == \
        [24, 8, 48, 80, 88, 8, 1792]
    assert divisible(10, 4, 16) == 16  # the minimum, when given
    tv = torchvision_or_skip()
    make_divisible = tv.models._utils._make_divisible
    for value in [v / 8 for v in range(1, 4000)]:
        for d in (1, 2, 4, 8, 16):
            assert divisible(value, d) == make_divisible(value, d), (value, d)


@pytest.mark.parametrize("expr, value", [("round(2.5)", 2), ("round(3.5)", 4), ("ceil(2.1)", 3), ("floor(2.9)", 2),
                                         ("divisible(36 * 0.5, 8)", 24), ("divisible(20, 8, 32)", 32)])
def test_expression_functions(expr, value):
    plan = archc.check(f"input 4x4x3\nparam w={expr}\nconv 1x1, w\n")
    assert plan.output_shape == (4, 4, value)


@pytest.mark.parametrize("expr", ["divisible(24, 0)", "divisible(24, 2.5)", "divisible(24)"])
def test_divisible_refuses_a_bad_divisor(expr):
    with pytest.raises(archc.ArchcError) as e:
        archc.check(f"input 4x4x3\nconv 1x1, {expr}\n")
    assert e.value.diagnostics[0].code == "A115"  # a function's arguments: an arithmetic error


def test_a_repetition_count_of_zero_leaves_the_item_out():
    spec = """input 8x8x4
block expand(t):
  (conv 1x1, 4 * t, bn, relu6) x (1 if t != 1 else 0)
  conv 3x3, dw, same
block expand_if(t):
  (conv 1x1, 4 * t, bn, relu6) x (t != 1)
  conv 3x3, dw, same
a: expand(1)
b: expand(2)
c: (conv 1x1, 7) x 0
d: expand(2) x 0
e: expand_if(1)
f: expand_if(2)
g: dense 3 x false
"""
    plan = archc.check(spec)
    assert [n.name for n in plan.nodes if n.stage == "a"] == ["a.conv"]
    assert [n.op for n in plan.nodes if n.stage == "b"] == ["conv", "batchnorm", "relu6", "conv"]
    assert not [n for n in plan.nodes if n.stage in ("c", "d", "g")]
    assert [n.op for n in plan.nodes if n.stage == "e"] == ["conv"]
    assert [n.op for n in plan.nodes if n.stage == "f"] == ["conv", "batchnorm", "relu6", "conv"]
    assert plan.output_shape == (8, 8, 8)
    with pytest.raises(archc.ArchcError) as e:
        archc.check("input 8x8x4\n(conv 1x1, 4) x (0 - 1)\n")
    assert e.value.diagnostics[0].code == "A117" and "0 or more" in e.value.diagnostics[0].message
    with pytest.raises(archc.ArchcError) as e:
        archc.check("input 8x8x4\n(conv 1x1, 4) x 1.5\n")
    assert e.value.diagnostics[0].code == "A117"


def test_an_activation_is_passed_to_a_block_by_name():
    spec = """input 8x8x16
import "blocks.arch"
a: se(4)
b: se(4, hardswish, hardsigmoid)
c: se(4, gate=swish)
"""
    path = SPECS / "_zoo_mobile_probe.arch"
    path.write_text(spec)
    try:
        plan = archc.check(path)
    finally:
        path.unlink()
    acts = {stage: [n.op for n in plan.nodes if n.stage == stage and n.opdef.activation] for stage in "abc"}
    assert acts == {"a": ["relu", "sigmoid"], "b": ["hardswish", "hardsigmoid"], "c": ["relu", "silu"]}
    assert plan.node("a.multiply").inputs == ("a.sigmoid", "input")  # the gate scales the block's input
    # a network parameter may hold one too, and `--set` changes it
    net = "input 8x8x3\nparam act=relu\nconv 3x3, 8, act\n"
    assert [n.op for n in archc.check(net).nodes] == ["conv", "relu"]
    assert [n.op for n in archc.check(net, act="hardswish").nodes] == ["conv", "hardswish"]
    with pytest.raises(archc.ArchcError) as e:  # a word that is no activation is still a mistake
        archc.check("input 8x8x4\nblock b(act):\n  conv 1x1, 4, act\nb(rleu)\n")
    assert e.value.diagnostics[0].code == "A103" and "relu" in (e.value.diagnostics[0].help or "")


def test_squeeze_excitation_reads_like_its_paper():
    """Hu et al.'s Fig. 3, torchvision's SqueezeExcitation: pool to 1x1xC, 1x1 conv (bias) to the squeeze width, act,
    1x1 conv back, gate; then the input times the gate. Parameters: 2 * C * squeeze + squeeze + C."""
    plan = archc.check(SPECS / "mobilenet_v3_large.arch")
    names = [n for n in plan.nodes if n.name.startswith("bneck4.0.")]
    assert [(n.op, n.shape) for n in names] == [
        ("globalavgpool", (1, 1, 72)), ("conv", (1, 1, 24)), ("relu", (1, 1, 24)), ("conv", (1, 1, 72)),
        ("hardsigmoid", (1, 1, 72)), ("multiply", (28, 28, 72))]
    assert sum(n.params for n in names) == 2 * 72 * 24 + 24 + 72


def test_ops_says_how_a_merge_is_written():
    from click.testing import CliRunner

    from archc.cli import main

    result = CliRunner().invoke(main, ["ops", "multiply"])
    assert result.exit_code == 0 and "`residual multiply:`" in result.output and "`multiply:`" in result.output


@pytest.mark.parametrize("args", ["momentum=1.5", "momentum=-0.1", "epsilon=0"])
def test_batchnorm_momentum_is_a_weight_and_epsilon_positive(args):
    with pytest.raises(archc.ArchcError) as e:
        archc.check(f"input 4x4x2\nbn {args}\n")
    assert e.value.diagnostics[0].code == "A104"


def test_batchnorm_momentum_is_documented_in_both_conventions():
    docs = (ROOT / "docs" / "language.md").read_text()
    section = docs.split("\n### batchnorm\n")[1].split("\n### ")[0]
    assert "0.0003" in section and "0.9997" in section and "1 - momentum" in section
    mnasnet = archc.check(SPECS / "mnasnet1_0.arch")
    assert {n.args.momentum for n in mnasnet.nodes if n.op == "batchnorm"} == {0.9997}
    model = archc.compile(SPECS / "mnasnet1_0.arch", backend="torch") if _have("torch") else None
    if model is not None:
        import torch

        assert {round(m.momentum, 6) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.0003}


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True
