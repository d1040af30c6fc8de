"""The Keras backend: every op emitted, every shipped spec built with check's counts and shapes, and the
same function as PyTorch computes (the hand-written reference of torch_reference.py, and the PyTorch
backend where it is installed), its files standalone."""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import archc  # noqa: E402
from archc.backends import get_backend  # noqa: E402
from archc.backends.keras import KerasBackend, Layout  # noqa: E402
from archc.diagnostics import ArchcError  # noqa: E402
from archc.plan import Plan  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import conformance  # noqa: E402
from torch_reference import ReferenceModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
NETWORK_SPECS = sorted(p for p in SPECS.glob("*.arch")
                       if any(line.startswith("input ") for line in p.read_text().splitlines()))
CIFAR_CONV_POOL = """network cifar_conv_pool
input 32x32x3
param classes=10
conv 3x3, 64, relu; maxpool 2x2; flatten; dense 32, relu; dense classes, softmax
"""
TOLERANCE = 1e-4  # relative to the output's scale
BACKEND = get_backend("keras")


def spec_plan(text: str, **overrides) -> Plan:
    return archc.check(textwrap.dedent(text), **overrides)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Batchnorm statistics and scales away from their initial 0/1, so that a misplaced one shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif "weight" in module._parameters and not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                # layernorm and layer_scale (of either torch side): scales and shifts off their 1/0 or 1e-6
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                if module._parameters.get("bias") is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)


def outputs(plan: Plan, keras_model, torch_model, batch: int = 2, seed: int = 0):
    """Both models' eval-mode outputs on one random input, in the Keras model's layout."""
    x = np.random.RandomState(seed).randn(batch, *plan.input_shape).astype("float32")
    got = np.asarray(keras_model(x, training=False))
    with torch.no_grad():
        want = torch_model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x))
    want = want.numpy()
    if want.ndim == 4:
        want = want.transpose(0, 2, 3, 1)
    output = plan.model_output(getattr(keras_model, "archc_logits", False))
    order = plan.flat_orders().get(output)
    if order is not None:  # a flat output (the spec ends in `flatten`): the features' orders differ
        want = want[:, order]
    return got, want


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    scale = float(np.abs(want).max()) or 1.0
    error = float(np.abs(got - want).max())
    assert error <= TOLERANCE * scale, f"max error {error:.3g} at output scale {scale:.3g}"


def torch_model_of(plan: Plan, side: str, logits: bool = False) -> torch.nn.Module:
    """The PyTorch side: the hand-written reference, or the PyTorch backend where it is installed."""
    if side == "reference":
        return ReferenceModel(plan, logits=logits)
    return archc.compile(plan, backend="torch", logits=logits)


TORCH_SIDES = ["reference", "torch_backend"]


def check_both_ways(plan: Plan, logits: bool = False, batch: int = 2, side: str = "reference") -> None:
    """torch -> Keras transfer, same outputs; then fresh Keras weights -> torch, same outputs again."""
    keras_model = BACKEND.build(plan, logits=logits)
    torch_model = torch_model_of(plan, side, logits)
    randomize(torch_model)
    archc.transfer_weights(torch_model, keras_model)
    assert_close(*outputs(plan, keras_model, torch_model, batch))

    reverse = BACKEND.build(plan, logits=logits)
    for layer in reverse.layers:  # statistics off their defaults so that the reverse move is seen
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.random.RandomState(1).randn(*layer.moving_mean.shape) * 0.1)
            layer.moving_variance.assign(np.random.RandomState(2).rand(*layer.moving_variance.shape) + 0.5)
    archc.transfer_weights(reverse, torch_model)
    assert_close(*outputs(plan, reverse, torch_model, batch, seed=1))


def free_memory() -> None:
    """Drop Keras's global state and collect what it held; give freed heap pages back to the system, so that a
    big model's memory is not kept for the rest of the run (glibc otherwise keeps it for its next allocation)."""
    keras.backend.clear_session(free_memory=True)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    yield
    keras.backend.clear_session(free_memory=False)  # layer-name counters and graphs of this test's models


# Numerics of the specs above conformance.BIG_PARAMS are compared at half their input side (VGG's, AlexNet,
# ZFNet, ResNet-152): two VGG-19s at full size and the copies Keras makes of a 411 MB weight when one is
# assigned would peak near 3.5 GB. Every layer computes the same at any input size, the flatten still meets a
# 2x2 or 3x3 map (its feature order is still tested), and counts and shapes are checked at full size.
class Shipped:
    """One shipped spec's plans and Keras model. TensorFlow builds are slow, so the model is built once for the
    spec's tests; pytest runs those one after another (a module-scoped parametrised fixture) and the model is
    dropped before the next spec's, so at most one shipped model is alive at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.plan = archc.check(path)
        self._model = None
        self._numeric = None

    @property
    def model(self):
        """The spec's model at its own input size."""
        if self._model is None:
            self._model = archc.compile(self.plan, backend="keras")
        return self._model

    def numeric(self):
        """(plan, Keras model) for the numerical comparisons: the spec's own, or a smaller one (conformance)."""
        small = conformance.light_plan(self.path, self.plan)
        if small is self.plan:
            return self.plan, self.model
        if self._numeric is None:
            self._model = None  # the full-size model's tests have run: never two big models at once
            self._numeric = (small, archc.compile(small, backend="keras"))
        return self._numeric

    def take(self):
        """The numerical comparisons' plan and model, no longer kept here: the caller's is the last reference."""
        numeric = self.numeric()
        self._model = self._numeric = None
        return numeric


@pytest.fixture(scope="module", params=NETWORK_SPECS, ids=lambda p: p.stem)
def shipped(request):
    holder = Shipped(request.param)
    yield holder
    holder._model = holder._numeric = None
    free_memory()


# ---------------------------------------------------------------- the backend covers the language


def test_every_op_has_an_emitter():
    assert KerasBackend.missing_emitters() == []


# Each case: one small spec; its Keras model must compute what the reference computes.
OP_CASES = {
    # the language's `same` at stride 2 pads 3 before and 3 after a 7x7 kernel; TensorFlow's pads 2 and 3
    "conv_same_stride2_even": "input 16x16x3\nconv 7x7, 8, stride=2, same",
    "conv_same_stride2_odd": "input 15x15x3\nconv 3x3, 8, stride=2, same",
    "conv_same_even_kernel": "input 9x9x3\nconv 4x4, 5, same",
    "conv_explicit_pads": "input 10x11x3\nconv 3x3, 4, padding=(1, 2), stride=2",
    "conv_valid_nobias": "input 10x10x3\nconv 3x5, 6, nobias",
    "conv_dilated": "input 12x12x4\nconv 3x3, 6, dilation=2, same",
    "conv_dilated_strided": "input 13x13x4\nconv 3x3, 6, dilation=2, stride=2, same",
    "conv_grouped": "input 8x8x8\nconv 3x3, 12, groups=4, same",
    "conv_depthwise": "input 8x8x6\nconv 3x3, dw, stride=2, same",
    "conv_depthwise_multiplier": "input 8x8x4\nconv 3x3, 12, dw, same",
    "conv_groups_as_channels": "input 8x8x4\nconv 3x3, 8, groups=4",
    # -inf padding: a window at the border must never return a padded 0 over negative inputs
    "maxpool_same_stride2": "input 9x9x3\nmaxpool 3x3, stride=2, same",
    "maxpool_same_stride2_even": "input 8x8x3\nmaxpool 3x3, stride=2, same",
    "maxpool_same_stride1": "input 7x7x3\nmaxpool 3x3, stride=1, same",
    "maxpool_pad_even_kernel": "input 7x7x3\nmaxpool 2x2, padding=1",
    "maxpool_valid": "input 8x8x3\nmaxpool 2x2",
    "maxpool_dilated": "input 11x10x3\nmaxpool 3x3, stride=2, dilation=2, same",
    "avgpool_dilated": "input 11x10x3\navgpool 3x2, stride=(2, 1), dilation=(2, 3), padding=(2, 1)",
    # padding is not counted in the average
    "avgpool_same_stride2": "input 9x9x3\navgpool 3x3, stride=2, same",
    "avgpool_same_stride1": "input 7x7x3\navgpool 3x3, stride=1, same",
    "avgpool_explicit_pads": "input 8x7x3\navgpool 3x3, padding=(1, 0), stride=2",
    "avgpool_valid": "input 8x8x3\navgpool 2x2",
    "global_pools": "input 5x5x3\nconcat:\n  globalavgpool\n  globalmaxpool",
    "lrn": "input 6x6x9\nlrn",
    "lrn_constants": "input 6x6x7\nlrn size=3, alpha=0.01, beta=0.5, k=1.0",
    "batchnorm": "input 6x6x5\nbatchnorm epsilon=0.01, momentum=0.5",
    "batchnorm_flat": "input 6\nbatchnorm",
    "activations": ("input 5x5x4\nconv 1x1, 4; relu6; conv 1x1, 4; leaky_relu negative_slope=0.2; "
                    "conv 1x1, 4; elu alpha=0.5; conv 1x1, 4; sigmoid; conv 1x1, 4; tanh; dropout 0.3; identity"),
    "softmax_on_channels": "input 3x3x5\nconv 1x1, 4; softmax",
    "residual_add": "input 6x6x4\nresidual:\n  conv 3x3, 4, same, bn, relu\n  conv 3x3, 4, same, bn\nrelu",
    "residual_projection": "input 6x6x4\nresidual:\n  conv 3x3, 8, stride=2, same\nrelu",
    "concat_branches": ("input 6x6x4\nconcat:\n  conv 1x1, 3\n  maxpool 3x3, stride=1, same\n"
                        "  avgpool 3x3, stride=1, same"),
    # flattened NHWC (Keras) and NCHW (torch) order the features differently: the dense weights follow
    "flatten_dense": "input 3x4x5\nflatten; dense 7",
    "flatten_dropout_bn_dense": "input 3x4x5\nflatten; dropout 0.5; batchnorm; relu; dense 7",
    "flatten_concat_dense": "input 3x3x2\nconcat:\n  flatten\n  globalavgpool\ndense 4",
    "flatten_output": "input 2x3x4\nconv 1x1, 3; flatten",
    # Keras has no ceil mode: the overhang past the padding is -inf (max) or left out of the count (average)
    "maxpool_ceil": "input 13x14x3\nmaxpool 3x3, stride=2, ceil",
    "maxpool_ceil_padded": "input 13x14x3\nmaxpool 3x3, stride=2, padding=1, ceil",
    "avgpool_ceil": "input 13x14x3\navgpool 3x3, stride=2, padding=1, ceil",
    # counted zero padding: Keras's own average pooling never counts it
    "avgpool_count_pad": "input 7x7x3\navgpool 3x3, stride=1, padding=1, count_pad",
    "avgpool_count_pad_ceil": "input 6x7x2\navgpool 3x3, stride=2, padding=2, count_pad, ceil",
    # PyTorch's padding crops the transposed conv's output; output_padding extends it (bias only there)
    "convtranspose": "input 5x6x4\nupconv 2x2, 3, stride=2",
    "convtranspose_cropped": "input 5x6x4\nupconv 3x3, 3, stride=2, padding=1, output_padding=1",
    "convtranspose_kernel_below_stride": "input 5x6x4\nupconv 1x1, 3, stride=3, output_padding=(2, 1)",
    "upsample_nearest": "input 5x7x3\nupsample 2",
    "upsample_bilinear": "input 5x7x3\nupsample 3, bilinear",
    "upsample_size": "input 5x7x3\nupsample size=11x4, bilinear",
    "upsample_align_corners": "input 5x7x3\nupsample size=11x13, bilinear, align_corners=true",
    "cropconcat": "input 11x10x4\nresidual cropconcat:\n  conv 3x3, 4\n  conv 2x2, 3\n",
    # channel split, channel shuffle, zero-padding shortcuts: channels-last slices and reshapes
    "split_shuffle": "input 4x5x12\nconcat:\n  split 3, part=2\n  split 3, part=0; conv 1x1, 4\nshuffle 4",
    "zeropad_shortcut": "input 7x6x4\nresidual shortcut=zeropad:\n  conv 3x3, 9, stride=2, same, bn\nrelu",
    # ConvNeXt's kinds: layernorm over each position's channels, layer scale's C x 1 x 1 <-> C, GELU's two forms;
    # after a flatten, layernorm's and layer_scale's weights follow the features' order
    "convnext_kinds": ("input 5x5x6\nconv 3x3, 6, same, gelu; layernorm epsilon=1e-6; conv 1x1, 6\n"
                       "gelu approximate=tanh; layer_scale 0.5; stochastic_depth 0.2"),
    "convnext_kinds_flat": "input 3x2x4\nflatten; layernorm; layer_scale 2.0; drop_path 0.1; gelu; dense 5",
}


@pytest.mark.parametrize("side", TORCH_SIDES)
@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_op_matches_torch(case, side):
    check_both_ways(spec_plan(OP_CASES[case]), side=side)


def test_maxpool_padding_never_wins_over_negative_inputs():
    plan = spec_plan("input 4x4x1\nmaxpool 3x3, stride=2, same")
    model = BACKEND.build(plan)
    x = -1 - np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    # windows start one row/column before the input (rows and columns -1..1 and 1..3): zero padding would
    # give 0 first, TensorFlow's `same` (windows 0..2 and 2..4) -1, -3, -9, -11
    assert np.asarray(model(x)).ravel().tolist() == [-1, -2, -5, -6]


def test_avgpool_leaves_padding_out():
    plan = spec_plan("input 3x3x1\navgpool 3x3, stride=2, same")
    model = BACKEND.build(plan)
    x = np.ones((1, 3, 3, 1), dtype="float32")
    assert np.asarray(model(x)).ravel().tolist() == [1, 1, 1, 1]


def test_batchnorm_momentum_and_epsilon_mean_the_same():
    plan = spec_plan("input 4x4x3\nbatchnorm epsilon=0.01, momentum=0.75")
    model = BACKEND.build(plan)
    layer = model.get_layer("bn")
    assert (layer.epsilon, layer.momentum) == (0.01, 0.75)
    reference = ReferenceModel(plan)
    x = np.random.RandomState(0).randn(8, 4, 4, 3).astype("float32") + 2
    model(x, training=True)
    reference.train()(torch.from_numpy(x).permute(0, 3, 1, 2))
    bn = reference.get_submodule("bn")
    np.testing.assert_allclose(np.asarray(layer.moving_mean), bn.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.moving_mean), 0.25 * x.mean(axis=(0, 1, 2)), rtol=1e-5)


def test_dropout_rate_is_the_spec_rate():
    model = BACKEND.build(spec_plan("input 8\ndropout 40%"))
    assert model.get_layer("dropout").rate == pytest.approx(0.4)
    kept = np.asarray(model(np.ones((2000, 8), dtype="float32"), training=True))
    assert abs((kept == 0).mean() - 0.4) < 0.03 and np.allclose(kept[kept != 0], 1 / 0.6)


@pytest.mark.parametrize("spec", ["input 9x9x3\navgpool 2x2, padding=2",
                                  "input 4x4x3\nmaxpool 2x2, stride=2, padding=(0, 3, 0, 0)"])
def test_pooling_over_padding_only_is_a_diagnostic(spec):
    with pytest.raises(ArchcError) as e:  # the language forbids it, so no backend ever sees one
        BACKEND.build(spec_plan(spec))
    assert e.value.diagnostics[0].code == "A207"


# ---------------------------------------------------------------- every shipped spec


def test_shipped_spec_counts_and_shapes(shipped):
    plan, model = shipped.plan, shipped.model
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == plan.trainable_params
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == plan.non_trainable_params
    assert tuple(model.output.shape[1:]) == plan.output_shape
    for node in plan.nodes:
        layer = BACKEND.layer_for(model, node.name)
        if layer is None:  # a conv/dense whose activation is folded in: the activation's layer shows its shape
            continue
        assert tuple(model.get_layer(layer).output.shape[1:]) == node.shape, node.name


def test_shipped_spec_matches_reference(shipped):
    plan, keras_model = shipped.numeric()
    torch_model = ReferenceModel(plan)
    randomize(torch_model)
    archc.transfer_weights(torch_model, keras_model)
    assert_close(*outputs(plan, keras_model, torch_model, batch=1))


def test_shipped_spec_reads_back(shipped):
    """archc.readers.keras reads the model back as its plan, node for node (tests/test_import_keras.py)."""
    from archc.flat import flat_of_plan, same_layers
    from archc.readers.keras import canonical, read_flat

    plan, keras_model = shipped.numeric()
    assert same_layers(read_flat(keras_model), canonical(flat_of_plan(plan))) is None


def test_shipped_spec_matches_torch_backend(shipped):
    plan, keras_model = shipped.take()  # the spec's last test: its model goes with this test
    torch_model = archc.compile(plan, backend="torch")
    randomize(torch_model, seed=3)
    archc.transfer_weights(torch_model, keras_model)
    assert_close(*outputs(plan, keras_model, torch_model, batch=1))
    del keras_model  # before the next is built: two of VGG-19's would be 1.15 GB
    free_memory()
    fresh = archc.compile(plan, backend="keras")
    archc.transfer_weights(fresh, torch_model)  # the reverse: the torch model now computes the fresh Keras one
    assert_close(*outputs(plan, fresh, torch_model, batch=1, seed=1))


def test_logits_leaves_out_the_final_softmax():
    plan = spec_plan(CIFAR_CONV_POOL)
    model = BACKEND.build(plan, logits=True)
    assert model.get_layer("fc2").activation.__name__ == "linear"
    for side in TORCH_SIDES:
        if side == "reference" or importlib.util.find_spec("archc.backends.torch"):
            check_both_ways(plan, logits=True, side=side)


def test_overrides_reach_the_model():
    model = archc.compile(textwrap.dedent(CIFAR_CONV_POOL), backend="keras", classes=3, input=(28, 28, 3))
    assert tuple(model.input.shape[1:]) == (28, 28, 3) and tuple(model.output.shape[1:]) == (3,)


def test_cifar_conv_pool_summary_reads_like_the_lecture():
    path = SPECS / "cifar_conv_pool.arch"
    plan = archc.check(path) if path.is_file() else spec_plan(CIFAR_CONV_POOL)
    model = BACKEND.build(plan)
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    rows = [(layer.__class__.__name__, tuple(layer.output.shape), layer.count_params()) for layer in model.layers[1:]]
    assert rows == [  # the lecture's Sequential model, row for row
        ("Conv2D", (None, 30, 30, 64), 1_792),
        ("MaxPooling2D", (None, 15, 15, 64), 0),
        ("Flatten", (None, 14_400), 0),
        ("Dense", (None, 32), 460_832),
        ("Dense", (None, 10), 330),
    ]
    text = "\n".join(lines)
    assert "Total params: 462,954" in text and "Non-trainable params: 0" in text
    assert "conv (Conv2D)" in text and "fc1 (Dense)" in text


def test_a_small_model_trains():
    keras.utils.set_random_seed(0)
    plan = spec_plan("""
        input 12x12x3
        param classes=3
        conv 3x3, 8, same, bn, relu; maxpool 2x2; flatten; dropout 0.1; dense classes, softmax
    """)
    model = BACKEND.build(plan)
    rng = np.random.RandomState(0)
    x = rng.randn(96, 12, 12, 3).astype("float32")
    y = (x[:, :6].mean(axis=(1, 2, 3)) > x[:, 6:].mean(axis=(1, 2, 3))).astype("int64") + (x[..., 0].mean(
        axis=(1, 2)) > 0.1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses


# ---------------------------------------------------------------- files

FILE_SPEC = """network file_check
input 16x16x3
param classes=4
conv 5x5, 8, stride=2, same, bn, relu
lrn
maxpool 2x2, stride=1, dilation=2, same
maxpool 3x3, stride=2, same
avgpool 3x3, stride=2, same
flatten; dense classes, softmax
"""

# Runs Python with archc made unimportable, from a folder outside the repository.
NO_ARCHC = textwrap.dedent("""
    import importlib.abc, sys
    class NoArchc(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "archc" or name.startswith("archc."):
                raise ImportError("archc is not installed here")
    sys.meta_path.insert(0, NoArchc())
""")


def run_without_archc(code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-c", NO_ARCHC + textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def cli(*args: str, cwd: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "archc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_keras_file_loads_without_archc(tmp_path):
    spec = tmp_path / "file_check.arch"
    spec.write_text(FILE_SPEC)
    cli("build", str(spec), "--backend", "keras", "--format", "keras", "-o", str(tmp_path / "m.keras"), cwd=tmp_path)
    x = np.random.RandomState(0).randn(2, 16, 16, 3).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = np.asarray(keras.models.load_model(tmp_path / "m.keras")(x))
    run_without_archc("""
        import keras, numpy as np
        model = keras.models.load_model("m.keras")
        np.save("y.npy", np.asarray(model(np.load("x.npy"))))
    """, tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6, atol=1e-7)
    # and it is the spec's model
    plan = spec_plan(FILE_SPEC)
    model = keras.models.load_model(tmp_path / "m.keras")
    assert model.count_params() == plan.total_params
    assert [layer.name for layer in model.layers if layer.name.startswith("conv")] == ["conv_pad", "conv"]


def test_python_file_is_standalone(tmp_path):
    spec = tmp_path / "file_check.arch"
    spec.write_text(FILE_SPEC)
    out = tmp_path / "file_check_model.py"
    cli("build", str(spec), "--backend", "keras", "-o", str(out), cwd=tmp_path)
    source = out.read_text()
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])}
    assert imported == {"keras"}
    assert source == BACKEND.source(spec_plan(FILE_SPEC))  # the file is what build() executes
    printed = run_without_archc("""
        import json, file_check_model
        model = file_check_model.build_model()
        print(json.dumps([model.count_params(), [layer.name for layer in model.layers]]))
    """, tmp_path)
    count, names = json.loads(printed.strip().splitlines()[-1])
    plan = spec_plan(FILE_SPEC)
    assert count == plan.total_params
    layout = Layout.of(plan, logits=False)
    assert {layout.layer_for(n.name) for n in plan.nodes} - {None} <= set(names)
    assert layout.folded == {"softmax": "fc"}  # `dense classes, softmax` is one Dense layer
    assert all(len(line) < 240 for line in source.splitlines())


def test_generated_source_reads_one_line_per_node():
    plan = archc.check(SPECS / "resnet50.arch")
    source = BACKEND.source(plan)
    assert 'layers.Conv2D(64, (3, 3), padding="same", use_bias=False, name="conv2_x_0_conv2")' in source
    assert 'layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_conv_pad")' in source  # same at stride 2
    body = source.split("def build_model():")[1]
    assigned = [line for line in body.splitlines() if " = " in line]
    folded = Layout.of(plan, logits=False).folded  # the final softmax is the Dense layer's activation
    assert len(assigned) == 1 + len(plan.nodes) - len(folded)  # the input, then each node


# ---------------------------------------------------------------- names never become code


def _with_names(plan: Plan, rename) -> Plan:
    from dataclasses import replace

    nodes = [replace(n, name=rename(n.name), inputs=tuple(rename(i) if i != "input" else i for i in n.inputs))
             for n in plan.nodes]
    return Plan(name=plan.name, input_shape=plan.input_shape, nodes=nodes, output=rename(plan.output))


def test_a_crafted_name_is_refused_not_executed():
    plan = spec_plan("input 4x4x3\nconv 1x1, 2")
    evil = _with_names(plan, lambda n: 'x", name=__import__("os").system("echo pwned")) #')
    with pytest.raises(ArchcError) as e:
        BACKEND.source(evil)
    assert e.value.diagnostics[0].code == "A410"


def test_names_that_collide_in_keras_are_a_diagnostic():
    plan = spec_plan("input 4x4x3\nconv 1x1, 2; conv 1x1, 2")  # conv1, conv2
    twins = _with_names(plan, {"conv1": "a.b_c", "conv2": "a_b.c"}.get)  # both would be `a_b_c`
    with pytest.raises(ArchcError) as e:
        BACKEND.source(twins)
    assert e.value.diagnostics[0].code == "A411"


def test_network_name_and_description_stay_data():
    plan = spec_plan("input 4x4x3\nconv 1x1, 2")
    plan.name = 'n"; import os; os.system("echo pwned"); "'
    plan.description = '"""\nimport os\nos.system("echo pwned")\n"""'
    source = BACKEND.source(plan)
    namespace: dict = {}
    exec(compile(source, "<test>", "exec"), namespace)
    assert namespace["DESCRIPTION"] == plan.description
    assert "os.system" not in source.replace(repr(plan.description), "")


# ---------------------------------------------------------------- random specs

def random_spec(rng: np.random.RandomState) -> str:
    """A random small network over the language's layer kinds and arithmetic (invalid draws are redrawn)."""
    pick = lambda options: options[rng.randint(len(options))]  # noqa: E731
    padding = lambda: pick(["same", "valid", "padding=1", "padding=(1, 2)", "padding=(0, 1, 2, 1)"])  # noqa: E731
    activation = lambda: pick(["relu", "relu6", "leaky_relu", "elu alpha=0.7", "sigmoid", "tanh"])  # noqa: E731

    def conv() -> str:
        kind = pick(["", "", ", dw", ", groups=2"])
        filters = pick([4, 6, 8]) if kind != ", dw" else pick(["dw", 8])
        text = f"conv {pick(['1x1', '2x2', '3x3', '3x1', '5x5'])}, {filters}, stride={pick([1, 1, 2])}, {padding()}"
        text += kind + pick(["", ", dilation=2"]) + pick(["", ", nobias"])
        return text + pick(["", ", bn", f", {activation()}", f", bn, {activation()}"])

    def pool() -> str:
        text = f"{pick(['maxpool', 'avgpool'])} {pick(['2x2', '3x3'])}, stride={pick([1, 2])}, {padding()}"
        return text + pick(["", "", ", dilation=2"])

    def item() -> str:
        return pick([conv, conv, pool, lambda: "lrn", lambda: "batchnorm", activation])()

    lines = [f"input {pick([7, 8, 11, 16])}x{pick([7, 9, 16])}x{pick([2, 4])}", "conv 3x3, 8, same"]
    for _ in range(rng.randint(2, 6)):
        shape = rng.randint(4)
        if shape == 0:
            lines += ["residual:", f"  {item()}", f"  {item()}"]
        elif shape == 1:
            lines += ["concat:", f"  {item()}", f"  {pool() if rng.rand() < 0.5 else item()}"]
        else:
            lines.append(item())
    lines.append(pick(["flatten; dense 5", "flatten; dropout 0.3; batchnorm; dense 5, softmax", "globalavgpool",
                       "globalmaxpool; dense 3", "flatten"]))
    return "\n".join(lines)


def random_plans(count: int, seed: int = 7):
    rng = np.random.RandomState(seed)
    plans = []
    while len(plans) < count:
        text = random_spec(rng)
        try:
            plan = archc.check(text)
            BACKEND.source(plan)
        except ArchcError:
            continue  # a draw the language refuses (a kernel that does not fit, groups that do not divide)
        plans.append((text, plan))
    return plans


RANDOM_COUNT = 200 if os.environ.get("ARCHC_THOROUGH") else 20


@pytest.mark.parametrize("side", TORCH_SIDES)
@pytest.mark.parametrize("index", range(RANDOM_COUNT))
def test_random_spec_matches_torch(index, side, random_specs=[]):  # noqa: B006 - drawn once for the module
    if not random_specs:
        random_specs.extend(random_plans(RANDOM_COUNT))
    text, plan = random_specs[index]
    model = BACKEND.build(plan)
    assert model.count_params() == plan.total_params, text
    try:
        check_both_ways(plan, side=side)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{text}") from None


def test_load_weights_by_position_and_from_torch():
    plan = spec_plan("input 6x6x3\nconv 3x3, 4, bn, relu; flatten; dense 3")
    source, target = BACKEND.build(plan), BACKEND.build(plan)
    archc.load_weights(target, source)
    x = np.random.RandomState(0).randn(2, 6, 6, 3).astype("float32")
    np.testing.assert_array_equal(np.asarray(target(x)), np.asarray(source(x)))
    reference = ReferenceModel(plan)
    randomize(reference)
    BACKEND.load_weights(target, reference)  # a PyTorch model's weights come by name, through the plan
    assert_close(*outputs(plan, target, reference))


def test_a_network_that_is_only_its_input():
    plan = spec_plan("input 4x4x3\nidentity")
    model = BACKEND.build(plan)
    x = np.ones((1, 4, 4, 3), dtype="float32")
    np.testing.assert_array_equal(np.asarray(model(x)), x)
