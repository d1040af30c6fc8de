"""archc.readers.keras: a Keras 3 model read back as a flat network in archc's vocabulary.

* Every shipped spec compiled to Keras reads back as its own plan, node for node (in the spelling one Keras model
  has: `archc.readers.keras.canonical`): tests/backends/test_keras.py::test_shipped_spec_reads_back does it on the
  models that file builds anyway; here a few cheap ones, the rest with ARCHC_THOROUGH=1.
* keras.applications' ResNet50, DenseNet121, MobileNetV2 and EfficientNetB0 (no weights downloaded) read with the
  model's own trainable and non-trainable counts, and compute the same: the read network, built by the torch
  backend (`plan_of_flat`: what the decompiler will write as a spec, without its blocks), takes the Keras model's
  weights through `archc.load_weights` (matched through the structure) and gives the Keras model's outputs within
  1e-5 (eval, batchnorm statistics perturbed). EfficientNetB0 and MobileNetV2 by default, the others thorough.
* Each Keras layer the reader maps, in small hand-made models, proven by outputs the same way; what the language
  cannot express is archc.flat.Unsupported naming the class and the layer, never a different model.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from backends.conformance import network_specs, numeric_plan  # noqa: E402

import archc  # noqa: E402
from archc.flat import INPUT, FlatNetwork, Unsupported, flat_of_plan, same_layers  # noqa: E402
from archc.ops import OPS  # noqa: E402
from archc.plan import Plan, PlanNode  # noqa: E402
from archc.readers.keras import canonical, read_flat  # noqa: E402

layers = keras.layers
THOROUGH = os.environ.get("ARCHC_THOROUGH") == "1"
SPECS = Path(__file__).resolve().parent.parent / "specs"
TOLERANCE = 1e-5  # relative to the output's scale


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    yield
    keras.backend.clear_session(free_memory=False)  # layer-name counters; a full collection costs ~2 s a test


# ---------------------------------------------------------------- helpers


def plan_of_flat(net: FlatNetwork) -> Plan:
    """The flat network as a Plan one node a layer, named after the source's layers: what a spec without blocks
    that the decompiler writes would check to."""
    names = []
    for layer in net.layers:
        name = "".join(ch if ch.isalnum() else "_" for ch in layer.path)
        name = name if name[:1].isalpha() else f"n_{name}"
        while name in names:
            name += "_"
        names.append(name)
    nodes = []
    for layer, name, (args, in_shapes, shape) in zip(net.layers, names, net.resolved(), strict=False):
        op = OPS[layer.op]
        trainable, non_trainable = op.params(args, in_shapes)
        nodes.append(PlanNode(name, layer.op, args, tuple("input" if i == INPUT else names[i] for i in layer.inputs),
                              tuple(in_shapes), shape, trainable, non_trainable, op.macs(args, in_shapes, shape)))
    return Plan(net.name, net.input_shape, nodes, "input" if net.output == INPUT else names[net.output])


def perturb(model) -> None:
    """Batchnorm statistics, scales and shifts, and biases away from their initial values."""
    rng = np.random.RandomState(0)
    for layer in model.layers:
        for w in layer.weights:
            name = w.path.split("/")[-1]
            if name in ("moving_mean", "beta", "bias"):
                w.assign(rng.randn(*w.shape).astype("float32") * 0.1)
            elif name in ("moving_variance", "gamma"):
                w.assign(rng.rand(*w.shape).astype("float32") + 0.5)


def torch_outputs(net: FlatNetwork, model, x: np.ndarray) -> np.ndarray:
    """The read network built by the torch backend, loaded from the Keras model, run on x (NHWC)."""
    compiled = archc.compile(plan_of_flat(net), backend="torch")
    archc.load_weights(compiled, model)
    with torch.no_grad():
        inp = torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x)
        out = compiled.eval()(inp).numpy()
    return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out


def assert_same_function(model, net: FlatNetwork | None = None, batch: int = 2) -> None:
    net = net or read_flat(model)
    x = np.random.RandomState(1).randn(batch, *net.input_shape).astype("float32")
    want = np.asarray(model(x, training=False))
    got = torch_outputs(net, model, x)
    assert got.shape == want.shape
    scale = float(np.abs(want).max()) or 1.0
    error = float(np.abs(got - want).max())
    assert error <= TOLERANCE * scale, f"max error {error:.3g} at output scale {scale:.3g}"


def counts(net: FlatNetwork) -> tuple[int, int]:
    trainable = non_trainable = 0
    for layer, (args, in_shapes, _) in zip(net.layers, net.resolved(), strict=False):
        t, n = OPS[layer.op].params(args, in_shapes)
        trainable, non_trainable = trainable + t, non_trainable + n
    return trainable, non_trainable


def keras_counts(model) -> tuple[int, int]:
    return (sum(int(np.prod(w.shape)) for w in model.trainable_weights),
            sum(int(np.prod(w.shape)) for w in model.non_trainable_weights))


# ---------------------------------------------------------------- (a) shipped specs read back as their plans

# Small, with every construct archc's Keras backend writes for a shipped spec: TensorFlow-padded strided convs,
# LRN and -infinity padding (sub-models of keras.ops), a strided dilated conv (a dense one, then every 2nd
# output), channel split and shuffle, a cropped transposed conv and a centred crop, He et al.'s option A,
# counted and ceil-mode pooling, an activation folded into the dense layer.
CONSTRUCTS = """
input 64x64x3
conv 3x3, 16, stride=2, same, bn, relu
lrn size=3, alpha=0.001, beta=0.75, k=2
maxpool 3x3, stride=2, same
conv 3x3, 16, dilation=2, stride=2, same, relu
concat:
  split 2, part=0
  split 2, part=1; conv 1x1, 8, bn, relu; conv 3x3, dw, same, bn
shuffle 2
residual cropconcat:
  conv 3x3, 8
  upconv 2x2, 8, stride=2, padding=1
residual shortcut=zeropad:
  conv 3x3, 32, stride=2, same, bn, relu
  conv 3x3, 32, same, bn
avgpool 3x3, stride=1, padding=1, count_pad
maxpool 3x3, stride=2, ceil
conv 1x1, 4
globalavgpool
dense 3, softmax
"""


def test_what_archcs_keras_backend_writes_reads_back_from_a_model_and_a_file(tmp_path):
    plan = archc.check(text=CONSTRUCTS)
    model = archc.compile(plan, backend="keras")
    perturb(model)
    net = read_flat(model)
    assert same_layers(net, canonical(flat_of_plan(plan))) is None
    # paths are the Keras layers' names: the plan's names joined with `_`
    assert [layer.path for layer in net.layers][:3] == [node.flat_name for node in plan.nodes[:3]]
    assert_same_function(model, net)
    model.save(tmp_path / "m.keras")  # a loaded model's sub-models give their indexes as lists
    assert same_layers(read_flat(tmp_path / "m.keras"), canonical(flat_of_plan(plan))) is None
    compiled = archc.compile(plan, backend="torch")
    archc.load_weights(compiled, str(tmp_path / "m.keras"))
    x = np.random.RandomState(0).randn(2, *plan.input_shape).astype("float32")
    with torch.no_grad():
        got = compiled.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    want = np.asarray(model(x, training=False))
    assert np.abs(got - want).max() <= TOLERANCE * np.abs(want).max()


# The rest with ARCHC_THOROUGH=1, and every one in tests/backends/test_keras.py (test_shipped_spec_reads_back)
DEFAULT_SPECS = {"lenet5", "squeezenet1_1"}
ROUND_TRIP = [p for p in network_specs() if THOROUGH or p.stem in DEFAULT_SPECS]


@pytest.mark.parametrize("path", ROUND_TRIP, ids=lambda p: p.stem)
def test_a_shipped_spec_compiled_to_keras_reads_back_as_its_plan(path):
    plan = numeric_plan(path, archc.check(path))
    model = archc.compile(plan, backend="keras")
    net = read_flat(model)
    assert same_layers(net, canonical(flat_of_plan(plan))) is None
    assert counts(net) == (plan.trainable_params, plan.non_trainable_params)
    if THOROUGH:
        perturb(model)
        assert_same_function(model, net, batch=1)


# ---------------------------------------------------------------- (b) keras.applications

APPLICATIONS = ["EfficientNetB0"] + (["ResNet50", "DenseNet121", "MobileNetV2"] if THOROUGH else [])
# Keras's DenseNet121 is specs/densenet121.arch (its batchnorm epsilon, 1.001e-5, is within the tolerance). Its
# ResNet50 has conv biases (A406 names `conv1_conv`); its MobileNetV2 loads into specs/mobilenet_v2.arch through
# the structure but pads its strided convs (0, 1) and uses epsilon 1e-3: outputs differ by ~1e-3 (docs/matching.md,
# "what layers without weights compute is not compared").
SAME_AS_SHIPPED = {"DenseNet121": "densenet121"}
LAYER_COUNTS = {"ResNet50": 174, "DenseNet121": 426, "MobileNetV2": 151, "EfficientNetB0": 249}  # no softmax


@pytest.mark.parametrize("name", APPLICATIONS)
def test_keras_applications_read_with_their_counts_and_outputs(name):
    # by default at a small input (include_top with no weights allows any): the same layers, a cheaper forward
    shape = {} if THOROUGH else {"input_shape": (64, 64, 3)}
    model = getattr(keras.applications, name)(weights=None, **shape)
    perturb(model)
    # compare the logits, not probabilities near 1/1000: the head's softmax (an `activation=`) left out
    model.get_layer("predictions").activation = keras.activations.linear
    net = read_flat(model)
    assert len(net.layers) == LAYER_COUNTS[name] and net.layers[-1].op == "dense"
    trainable, non_trainable = keras_counts(model)
    # Normalization's `count` (a scalar of bookkeeping, as torch's num_batches_tracked) is no weight of archc's
    bookkeeping = sum(1 for layer in model.layers if isinstance(layer, layers.Normalization))
    assert counts(net) == (trainable, non_trainable - bookkeeping)
    assert_same_function(model, net, batch=1)
    if name in SAME_AS_SHIPPED:  # the shipped spec is this architecture: its torch model takes the weights too
        x = np.random.RandomState(2).randn(1, *net.input_shape).astype("float32")
        compiled = archc.compile(SPECS / f"{SAME_AS_SHIPPED[name]}.arch", backend="torch", logits=True)
        archc.load_weights(compiled, model)
        with torch.no_grad():
            got = compiled.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
        want = np.asarray(model(x, training=False))
        assert np.abs(got - want).max() <= TOLERANCE * np.abs(want).max()


@pytest.mark.skipif(not THOROUGH, reason="builds DenseNet-201 four times (ARCHC_THOROUGH=1)")
def test_reading_densenet201_costs_less_than_building_it():
    builds, reads = [], []
    for _ in range(3):
        keras.backend.clear_session()
        start = time.perf_counter()
        model = keras.applications.DenseNet201(weights=None)
        builds.append(time.perf_counter() - start)
        start = time.perf_counter()
        read_flat(model)
        reads.append(time.perf_counter() - start)
    ratio = statistics.median(reads) / statistics.median(builds)
    print(f"DenseNet201: build {statistics.median(builds):.2f} s, read {statistics.median(reads):.2f} s, "
          f"ratio {ratio:.2f}")
    assert ratio <= 2


# ---------------------------------------------------------------- each layer's mapping, proven by outputs


def _model(x_shape, build):
    inputs = keras.Input(x_shape)
    return keras.Model(inputs, build(inputs))


def test_tensorflow_same_padding_at_a_stride_is_explicit():
    # TensorFlow's `same` at stride 2 on an even input pads (0, 1): not the language's `same`
    model = _model((8, 8, 3), lambda x: layers.MaxPooling2D(3, 2, padding="same")(
        layers.Conv2D(4, 3, strides=2, padding="same", name="c")(x)))
    net = read_flat(model)
    assert net.layers[0].args["padding"] == (0, 1, 0, 1)
    assert net.layers[1].args["padding"] == (0, 1, 0, 1)
    assert_same_function(model, net)


def test_convolutions_activations_and_normalisations():
    def build(x):
        x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=0.99)(x)
        x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False)(x)
        x = layers.Conv2D(16, 3, groups=4, dilation_rate=2, padding="same", activation="swish")(x)
        x = layers.ReLU(max_value=6.0)(x)
        x = layers.Activation("hard_swish")(x)
        x = layers.Activation("gelu")(x)
        x = layers.LeakyReLU(negative_slope=0.1)(x)
        x = layers.ELU(alpha=0.5)(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        x = layers.Activation("tanh")(x)
        x = layers.Conv2DTranspose(6, 3, strides=2)(x)
        x = layers.Cropping2D(1)(x)
        x = layers.Conv2DTranspose(6, 2, strides=3, padding="same")(x)  # kernel < stride: the rest is zeros + bias
        x = layers.Conv2DTranspose(6, 4, strides=2, padding="same")(x)
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.AveragePooling2D(3, strides=2, padding="same")(x)
        return layers.Activation("hard_sigmoid")(x)

    model = _model((8, 8, 3), build)
    perturb(model)
    net = read_flat(model)
    kinds = [layer.op for layer in net.layers]
    assert kinds == ["conv", "relu", "batchnorm", "conv", "conv", "silu", "relu6", "hardswish", "gelu",
                     "leaky_relu", "elu", "layernorm", "tanh", "convtranspose", "convtranspose", "convtranspose",
                     "upsample", "avgpool", "hardsigmoid"]
    assert net.layers[2].args["momentum"] == pytest.approx(0.99) and net.layers[2].args["epsilon"] == 1e-3
    assert net.layers[3].args["depthwise"] and net.layers[3].args["filters"] == 16
    assert net.layers[13].args["padding"] == (1, 1)  # the Cropping2D after it
    assert net.layers[14].args["output_padding"] == (1, 1) and net.layers[15].args["padding"] == (1, 1)
    assert_same_function(model, net)


def test_merges_squeeze_excitation_and_the_head():
    def build(x):
        x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        gate = layers.GlobalAveragePooling2D()(x)
        gate = layers.Reshape((1, 1, 8))(gate)  # EfficientNet's: a global pooling then 1x1xC is `keepdims`
        gate = layers.Conv2D(8, 1, activation="sigmoid")(gate)
        x = layers.Multiply()([x, gate])
        flat_gate = layers.Dense(8, activation="sigmoid")(layers.GlobalMaxPooling2D()(x))
        x = layers.Multiply()([x, layers.Reshape((1, 1, 8))(flat_gate)])  # a vector broadcast over the map
        y = layers.ZeroPadding2D(((1, 1), (0, 2)))(layers.ReLU()(x))
        y = layers.MaxPooling2D(3, 1)(y)  # zeros after relu never win the max: -infinity padding
        x = layers.Add()([x, layers.Conv2D(8, 1)(y)])
        x = layers.Concatenate()([x, layers.Dropout(0.3)(x)])
        x = layers.Dropout(0.2, noise_shape=(None, 1, 1, 1))(x)  # drop path
        x = layers.Flatten()(x)  # channels-last order: the dense's weights are permuted for PyTorch
        return layers.Dense(5, activation="softmax")(x)

    model = _model((6, 6, 3), build)
    perturb(model)
    net = read_flat(model)
    kinds = [layer.op for layer in net.layers]
    assert "multiply" in kinds and "stochastic_depth" in kinds and "concat" in kinds and "flatten" in kinds
    assert net.layers[2].op == "globalavgpool" and net.layers[2].args["keepdims"]
    assert_same_function(model, net)


def test_preprocessing_is_a_batchnorm_with_fixed_statistics():
    def build(x):
        x = layers.Rescaling(1 / 255.0)(x)
        x = layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.05, 0.05, 0.05])(x)
        x = layers.Rescaling([2.0, 2.1, 2.2])(x)
        return layers.Conv2D(4, 3)(x)

    model = _model((8, 8, 3), build)
    net = read_flat(model)
    assert [layer.op for layer in net.layers] == ["batchnorm", "conv"]
    assert net.layers[0].args == {"epsilon": 1e-12, "momentum": 1.0, "scale": False, "center": False}
    x = np.random.RandomState(1).rand(2, 8, 8, 3).astype("float32") * 255
    want = np.asarray(model(x, training=False))
    got = torch_outputs(net, model, x)
    assert np.abs(got - want).max() <= TOLERANCE * np.abs(want).max()


# ---------------------------------------------------------------- (c) what the language cannot express


@pytest.mark.parametrize("make, what, where", [
    (lambda x: layers.Conv2D(4, 3, name="ok")(layers.Permute((2, 1, 3), name="perm")(x)), "Permute", "perm"),
    (lambda x: layers.SeparableConv2D(4, 3, name="sep")(layers.Conv2D(4, 1, name="ok")(x)), "SeparableConv2D",
     "sep"),
    (lambda x: layers.MaxPooling2D(3, name="pool")(layers.ZeroPadding2D(1, name="zp")(layers.Conv2D(4, 1, name="ok")(
        x))), "ZeroPadding2D", "zp"),  # zeros could win the max of a conv's output
    (lambda x: layers.Dense(3, name="d")(layers.Conv2D(4, 1, name="ok")(x)), "Dense", "d"),
    (lambda x: layers.Reshape((16, 4, 4), name="r")(layers.Conv2D(4, 1, name="ok")(x)), "Reshape", "r"),
    (lambda x: layers.Activation("softplus", name="sp")(layers.Conv2D(4, 1, name="ok")(x)), "softplus", "sp"),
    (lambda x: layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(layers.Conv2D(4, 1, name="ok")(
        x)), "Conv2DTranspose", "up"),  # TensorFlow crops 0 before, 1 after: PyTorch's padding crops alike
    (lambda x: layers.ReLU(negative_slope=0.1, max_value=3.0, name="clip")(layers.Conv2D(4, 1, name="ok")(x)),
     "ReLU", "clip"),
])
def test_what_cannot_be_expressed_names_the_class_and_the_layer(make, what, where):
    model = _model((8, 8, 3), make)
    with pytest.raises(Unsupported) as caught:
        read_flat(model)
    assert what in caught.value.what and caught.value.where == where and caught.value.help
    partial = caught.value.partial
    assert partial is not None and [layer.path for layer in partial.layers] == (["ok"] if where != "perm" else [])


def test_a_layer_called_twice_shares_its_weights_and_is_unsupported():
    shared = layers.Conv2D(3, 3, padding="same", name="shared")
    model = _model((8, 8, 3), lambda x: shared(shared(x)))
    with pytest.raises(Unsupported) as caught:
        read_flat(model)
    assert caught.value.where == "shared" and "called twice" in caught.value.what
    assert [layer.path for layer in caught.value.partial.layers] == ["shared"]


def test_load_weights_from_an_unsupported_keras_model_is_a_diagnostic():
    model = _model((8, 8, 3), lambda x: layers.Permute((2, 1, 3), name="perm")(layers.Conv2D(4, 1)(x)))
    compiled = archc.compile(text="input 8x8x3\nconv 1x1, 4\n", backend="torch")
    with pytest.raises(archc.ArchcError) as caught:
        archc.load_weights(compiled, model)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "A541" and "`perm`" in diagnostic.message and "Permute" in diagnostic.message


def test_a_source_that_cannot_be_walked_is_a_diagnostic(tmp_path):
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    compiled = archc.compile(text="input 8x8x3\nconv 1x1, 4\n", backend="torch")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    for source in (Subclassed(), str(broken), keras.Sequential([layers.Conv2D(4, 1)])):
        with pytest.raises(archc.ArchcError) as caught:
            archc.load_weights(compiled, source)
        (diagnostic,) = caught.value.diagnostics
        assert diagnostic.code == "A540", diagnostic.message


def test_a_model_of_open_input_size_reads_at_the_size_given():
    def build(x):
        x = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)  # TensorFlow's pads depend on it
        x = layers.MaxPooling2D(3, strides=2)(layers.ZeroPadding2D(1)(x))
        x = layers.Conv2DTranspose(4, 3, strides=2)(x)
        return layers.Dense(2)(layers.GlobalAveragePooling2D()(x))

    model = _model((None, None, 3), build)
    with pytest.raises(Unsupported) as caught:
        read_flat(model)
    assert "open size" in caught.value.what and "input_shape" in caught.value.help
    for size in (9, 10):
        net = read_flat(model, input_shape=(size, size, 3))
        assert net.layers[0].args["padding"] == ("same" if size % 2 else (0, 1, 0, 1))
        assert_same_function(model, net)
