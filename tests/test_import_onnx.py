"""archc.readers.onnx.read_flat: an ONNX model as a flat network in archc's vocabulary.

(a) Every shipped spec and every conformance case, written by archc's ONNX backend and read back, is its plan
    again, layer for layer (in the form a file can tell: `archc.readers.onnx.canonical`).
(b) torchvision models exported by torch.onnx.export (TorchScript, batchnorm kept): the layers read hold exactly
    the file's initializers, and the weights read load into the shipped spec of the same architecture through
    the structure (`archc.load_weights(compiled, onnx_model)`), whose outputs then equal ONNX Runtime's on the
    file. Two models by default, all seven with ARCHC_THOROUGH=1.
(c) An operator archc has no kind for raises archc.flat.Unsupported naming it and its node, with the layers
    before it; never a wrong layer.
The speed target (issue 15: DenseNet-201 read in at most 2x loading it) is benchmarks/bench_import_onnx.py.
"""

from __future__ import annotations

import io
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "backends"))
from conformance import OP_CASES, network_specs, numeric_plan  # noqa: E402

import archc  # noqa: E402
from archc.backends.onnx import OnnxBackend  # noqa: E402
from archc.flat import Unsupported, flat_of_plan, same_layers  # noqa: E402
from archc.ops import OPS  # noqa: E402
from archc.readers.onnx import canonical, read_flat  # noqa: E402

THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))
ROOT = Path(__file__).resolve().parent.parent
QUICK_PARAMS = 8_000_000  # by default, specs up to this size (writing the file draws every weight); all thoroughly


def _params(net) -> tuple[int, int]:
    trainable = frozen = 0
    for layer, (args, ins, _) in zip(net.layers, net.resolved(), strict=True):
        t, f = OPS[layer.op].params(args, ins)
        trainable, frozen = trainable + t, frozen + f
    return trainable, frozen


# ---------------------------------------------------------------- (a) archc's own files, read back


def _round_trip(plan) -> None:
    model = OnnxBackend().build(plan)
    net = read_flat(model)
    assert same_layers(canonical(net), canonical(flat_of_plan(plan))) is None
    assert [layer.path for layer in net.layers] == [node.name for node in plan.nodes]  # named as the spec names
    assert _params(net) == (plan.trainable_params, plan.non_trainable_params)
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for layer in net.layers:  # every weight read is the file's, under the kind's own (PyTorch's) names
        for name, array in layer.tensors.items():
            np.testing.assert_array_equal(array, inits[f"{layer.path}.{name}"])


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_every_conformance_case_reads_back_as_its_plan(case):
    _round_trip(archc.check(OP_CASES[case]))


def test_every_kind_is_read_back():
    kinds = {node.op for case in OP_CASES.values() for node in archc.check(case).nodes}
    assert kinds == set(OPS)  # so the cases above read every registered kind


def _spec_plans():
    out = []
    for path in network_specs():
        plan = numeric_plan(path, archc.check(path))
        heavy = plan.total_params > QUICK_PARAMS
        marks = [pytest.mark.skipif(heavy and not THOROUGH, reason="large: ARCHC_THOROUGH=1")]
        out.append(pytest.param(path, marks=marks, id=path.stem))
    return out


@pytest.mark.parametrize("path", _spec_plans())
def test_every_shipped_spec_reads_back_as_its_plan(path):
    _round_trip(numeric_plan(path, archc.check(path)))


def test_the_file_does_not_say_how_padding_was_written():
    """`same` and `padding=1` are the same Conv in a file; ceil mode is padding after, for archc's backend."""
    plan = archc.check("input 13x13x3\nconv 3x3, 4, padding=1\nconv 3x3, 4, same\nmaxpool 3x3, stride=2, ceil\n")
    net = read_flat(OnnxBackend().build(plan))
    assert [layer.args["padding"] for layer in net.layers] == [(1, 1), (1, 1), "valid"]
    assert net.layers[2].args["ceil"] is False and canonical(net).layers[2].args["padding"] == "valid"
    assert same_layers(canonical(net), canonical(flat_of_plan(plan))) is None


# ---------------------------------------------------------------- (b) torch.onnx.export of torchvision's models

# torchvision constructor, its arguments, the shipped spec of the same architecture and its settings (None: no
# spec computes the same: specs/googlenet.arch is the paper's, without batchnorm; no EfficientNet spec yet)
EXPORTS = {
    "mobilenet_v2": ({}, "mobilenet_v2", {}),
    "shufflenet_v2_x1_0": ({}, "shufflenet_v2_x1_0", {}),
    "resnet50": ({}, "resnet50", {"downsample_at": 2}),  # torchvision's is v1.5
    "densenet121": ({}, "densenet121", {}),
    "efficientnet_b0": ({}, None, {}),
    "googlenet": ({"aux_logits": False, "init_weights": False}, None, {}),
    "convnext_tiny": ({}, "convnext_tiny", {}),
}
QUICK = ()  # ~10 s an export, after ~10 s importing torchvision: ARCHC_THOROUGH=1 (a small export runs by default)
SIDE = 64


@pytest.fixture(scope="module")
def exported():
    """name -> (ONNX bytes, the torchvision model's state dict size): each model exported once per module."""
    torch = pytest.importorskip("torch")
    from torchvision_zoo import perturb, torchvision_or_skip

    torchvision = torchvision_or_skip()
    cache = {}

    def get(name):
        if name not in cache:
            kwargs = EXPORTS[name][0]
            model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
            perturb(model)  # distinct values: the exporter would share equal initializers (zeros, ones)
            buf = io.BytesIO()
            # TorchScript's exporter (no onnxscript needed); constant folding off keeps batchnorm apart from conv
            torch.onnx.export(model, torch.randn(1, 3, SIDE, SIDE), buf, dynamo=False, do_constant_folding=False)
            size = sum(t.numel() for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked"))
            cache[name] = (buf.getvalue(), size)
        return cache[name]

    yield get
    cache.clear()


MODELS = [pytest.param(name, marks=[] if name in QUICK else [pytest.mark.skipif(not THOROUGH, reason="export: "
                                                                                "ARCHC_THOROUGH=1")])
          for name in EXPORTS]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("name", MODELS)
def test_an_export_reads_with_the_files_weights(exported, name):
    data, size = exported(name)
    model = onnx.load_from_string(data)
    net = read_flat(model)
    in_file = sum(math.prod(init.dims) for init in model.graph.initializer)
    assert sum(_params(net)) == in_file == size
    read = sum(array.size for layer in net.layers for array in layer.tensors.values())
    assert read == in_file  # every initializer is some layer's tensor, once
    assert net.input_shape == (SIDE, SIDE, 3)
    assert not any(layer.path.startswith("/") for layer in net.layers)  # module paths, not node names


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("name", [m for m in MODELS if EXPORTS[m.values[0]][1] is not None])
def test_an_exports_weights_load_into_the_spec_and_compute_the_same(exported, name, tmp_path):
    torch = pytest.importorskip("torch")
    data, _ = exported(name)
    _, spec, settings = EXPORTS[name]
    compiled = archc.compile(ROOT / "specs" / f"{spec}.arch", input=(SIDE, SIDE, 3), logits=True, **settings).eval()
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(data)
    assert archc.load_weights(compiled, str(path)) is compiled  # from the file's path; a ModelProto alike
    x = np.random.default_rng(0).standard_normal((1, 3, SIDE, SIDE)).astype(np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = compiled(torch.from_numpy(x)).numpy()
    # the perturbed weights make large activations (ResNet-50's logits reach ~1e4): relative to the output's scale
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


TINY_SPEC = """input 16x16x3
conv1: conv 3x3, 8, stride=2, padding=1, nobias, bn, relu
residual:
  conv 3x3, dw, same, nobias, bn, hardswish
  conv 1x1, 8
globalavgpool
dense 5
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_a_small_exports_weights_load_into_its_spec_and_compute_the_same():
    """(b) in small, by default: a torch module and the spec of the same network, matched through the structure."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torchvision_zoo import perturb

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
                                      nn.Hardswish(), nn.Conv2d(8, 8, 1))
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = x + self.body(x)
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    tiny = Tiny().eval()
    perturb(tiny)
    source = _export(tiny, (1, 3, 16, 16))
    net = read_flat(source)
    assert [layer.path for layer in net.layers if layer.tensors] == ["conv1", "bn1", "body.0", "body.1", "body.3",
                                                                     "fc"]
    compiled = archc.compile(TINY_SPEC, logits=True).eval()
    archc.load_weights(compiled, source)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = ort.InferenceSession(source.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {
        source.graph.input[0].name: x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(compiled(torch.from_numpy(x)).numpy(), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(tiny(torch.from_numpy(x)).numpy(), want, rtol=1e-5, atol=1e-5)


def test_an_onnx_source_that_does_not_fit_the_spec_is_a406(tmp_path):
    pytest.importorskip("torch")
    plan = archc.check("input 8x8x3\nconv 3x3, 4, same, bn, relu\nglobalavgpool\ndense 5\n")
    other = archc.check("input 8x8x3\nconv 3x3, 6, same, bn, relu\nglobalavgpool\ndense 5\n")
    compiled = archc.compile(plan)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(compiled, OnnxBackend().build(other))
    assert err.value.diagnostics[0].code == "A406"
    source = OnnxBackend().build(plan, seed=3)
    archc.load_weights(compiled, source)  # the same spec: every weight arrives
    weights = {i.name: numpy_helper.to_array(i) for i in source.graph.initializer}
    for key, tensor in compiled.state_dict().items():
        if key in weights:
            np.testing.assert_array_equal(tensor.numpy(), weights[key])


# ---------------------------------------------------------------- small exports: the patterns one by one


def _export(module, shape):
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.onnx.export(module.eval(), torch.randn(*shape), buf, dynamo=False, do_constant_folding=False)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_torch_patterns_read_as_kinds():
    torch = pytest.importorskip("torch")
    from torch import nn

    class LayerNorm2d(nn.LayerNorm):  # torchvision's ConvNeXt: channels last, normalised, back
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=(1, 2), stride=(1, 2))
            self.pool = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True)
            self.norm = LayerNorm2d(8, eps=1e-6)
            self.fc1 = nn.Linear(8, 16)
            self.scale = nn.Parameter(torch.full((8, 1, 1), 0.5))
            self.fc2 = nn.Linear(16, 8)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.head = nn.Linear(8 * 9 * 3, 4)

        def forward(self, x):
            x = self.pool(torch.nn.functional.leaky_relu(self.stem(x), 0.2))
            y = self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x).permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)
            x = x + self.scale * y
            x = torch.nn.functional.hardswish(x) * torch.sigmoid(x.mean((2, 3), keepdim=True))
            x = torch.nn.functional.elu(self.up(x))  # (torch writes LocalResponseNorm out in 3-d pooling)
            a, b = x.chunk(2, dim=1)
            x = torch.cat([torch.nn.functional.relu6(a), torch.tanh(b)], 1)
            x = torch.nn.functional.max_pool2d(x, 2, ceil_mode=True)
            return torch.softmax(self.head(x.flatten(1)), 1)

    net = read_flat(_export(Net(), (1, 3, 16, 8)))
    assert [layer.op for layer in net.layers] == [
        "conv", "leaky_relu", "avgpool", "layernorm", "conv", "gelu", "conv", "layer_scale", "add", "hardswish",
        "globalavgpool", "sigmoid", "multiply", "upsample", "elu", "split", "split", "relu6", "tanh",
        "concat", "maxpool", "flatten", "dense", "softmax"]
    conv, leaky, avg, norm = net.layers[:4]
    assert conv.args["padding"] == (1, 2) and conv.args["stride"] == (1, 2) and leaky.args["negative_slope"] == 0.2
    assert avg.args["ceil"] and avg.args["count_pad"] and norm.args["epsilon"] == 1e-6
    assert net.layers[4].tensors["weight"].shape == (16, 8, 1, 1)  # a Linear on channels last: a 1x1 conv
    assert net.layers[7].args["init"] == 0.5 and net.layers[10].args["keepdims"]
    assert net.layers[13].args == {"mode": "nearest", "scale": (2, 2)}
    assert [net.layers[i].args for i in (15, 16)] == [{"parts": 2, "part": 0}, {"parts": 2, "part": 1}]
    assert [layer.path for layer in net.layers[:5]] == ["stem", "", "pool", "norm", "fc1"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_a_channel_shuffle_is_read_from_its_reshapes():
    torch = pytest.importorskip("torch")
    from torch import nn

    class Shuffle(nn.Module):
        def forward(self, x):  # torchvision's channel_shuffle
            n, c, h, w = x.size()
            return x.view(n, 3, c // 3, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)

    net = read_flat(_export(Shuffle(), (1, 12, 4, 4)))
    assert [(layer.op, layer.args) for layer in net.layers] == [("shuffle", {"groups": 3})]
    del torch


def test_weights_are_converted_only_when_their_values_are_asked_for(monkeypatch):
    """Reading a model for its structure (`read_flat`, `archc import`) converts no weight out of protobuf (it
    needs their shapes only: copying DenseNet-201's 76 MB cost as much as parsing the file); each tensor is
    converted when asked for (load_weights), once, to exactly the file's values in PyTorch's layout."""
    import archc.readers.onnx as reader

    rng = np.random.default_rng(0)
    arrays = {"conv.w": rng.standard_normal((4, 3, 3, 3)), "conv.b": rng.standard_normal(4),
              "bn.scale": rng.uniform(0.5, 1.5, 4), "bn.shift": rng.standard_normal(4),
              "bn.mean": rng.standard_normal(4), "bn.var": rng.uniform(0.5, 1.5, 4),
              "fc.w": rng.standard_normal((4, 5)), "fc.b": rng.standard_normal(5)}
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in arrays.items()]
    nodes = [helper.make_node("Identity", ["bn.scale"], ["bn.shared"]),  # torch.onnx.export's shared initializer
             helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "bn.shared", "bn.shift", "bn.mean", "bn.var"], ["n"],
                              name="/bn/BatchNormalization"),
             helper.make_node("Relu", ["n"], ["r"], name="/relu/Relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/GlobalAveragePool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="/fc/Gemm", alpha=0.5)]
    model = _model(nodes, inits, out_shape=[1, 5])
    converted: list[str] = []
    array = reader._array

    def counted(init):
        converted.append(init.name)
        return array(init)

    monkeypatch.setattr(reader, "_array", counted)
    archc.import_model(model)
    net = read_flat(model)
    assert converted == ["fc.b", "fc.b"]  # a Gemm's bias is checked against its units as it is read; no other
    converted.clear()
    conv, bn, fc = (layer.tensors for layer in net.layers if layer.tensors)
    np.testing.assert_array_equal(conv["weight"], arrays["conv.w"].astype(np.float32))
    np.testing.assert_array_equal(bn["weight"], arrays["bn.scale"].astype(np.float32))
    np.testing.assert_array_equal(fc["weight"], (arrays["fc.w"].astype(np.float32) * np.float32(0.5)).T)
    assert conv["weight"] is conv["weight"] and converted == ["conv.w", "bn.scale", "fc.w"]  # each once
    assert fc["weight"].flags.c_contiguous and fc["weight"].shape == (5, 4)


# ---------------------------------------------------------------- (c) what archc cannot express


def _model(nodes, initializers=(), shape=(1, 3, 8, 8), out_shape=None):
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv():
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "conv.weight")
    return helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="/block/conv/Conv", pads=[1, 1, 1, 1]), weight


@pytest.mark.parametrize(("nodes", "what", "where"), [
    ([helper.make_node("Sin", ["c"], ["y"], name="/block/Sin")], "`Sin`", "/block/Sin"),
    ([helper.make_node("InstanceNormalization", ["c", "s", "b"], ["y"], name="/block/norm/In")],
     "`InstanceNormalization`", "/block/norm/In"),
    # an element-wise function with no kind of its own: 2x, x * x, a clip to (-1, 1)
    ([helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
      helper.make_node("Mul", ["c", "two"], ["m"], name="/twice"), helper.make_node("Conv", ["m", "conv.weight"],
                                                                                    ["y"], name="/next")],
     "`Mul`", "/twice"),
    ([helper.make_node("Mul", ["c", "c"], ["y"], name="/square")], "`Mul`", "/square"),
    ([helper.make_node("Constant", [], ["lo"], value=numpy_helper.from_array(np.array(-1.0, np.float32))),
      helper.make_node("Constant", [], ["hi"], value=numpy_helper.from_array(np.array(1.0, np.float32))),
      helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="/clip")], "`Clip`", "/clip"),
    ([helper.make_node("Transpose", ["c"], ["y"], name="/t", perm=[0, 1, 3, 2])], "`Transpose`", "/t"),
    ([helper.make_node("ReduceSum", ["c"], ["y"], name="/sum", keepdims=1)], "`ReduceSum`", "/sum"),
])
def test_what_archc_cannot_express_is_unsupported_at_its_node(nodes, what, where):
    conv, weight = _conv()
    inits = [weight, numpy_helper.from_array(np.ones(4, np.float32), "s"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b")]
    if nodes[-1].output[0] == "y" and nodes[-1].op_type == "Conv":
        inits.append(numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "conv2.weight"))
    with pytest.raises(Unsupported) as err:
        read_flat(_model([conv, *nodes], inits))
    assert err.value.what.startswith(what) and err.value.where == where and err.value.help
    partial = err.value.partial
    assert [layer.op for layer in partial.layers] == ["conv"] and partial.layers[0].path == "block.conv"


@pytest.mark.parametrize("op", ["Concat", "Sum"])
def test_a_merge_of_one_input_is_that_input(op):
    """torch.cat of a list of one tensor (each DenseNet block's first layer: torch.onnx.export writes a Concat of
    one input) is no layer, as the PyTorch reader reads it; a merge of one input would be a branch the language
    cannot write (A504), so a dense block would not import."""
    conv, weight = _conv()
    nodes = [conv, helper.make_node(op, ["c"], ["m"], name="/block/one", **({"axis": 1} if op == "Concat" else {})),
             helper.make_node("Conv", ["m", "conv2.weight"], ["d"], name="/block/conv2/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["m", "d"], ["y"], name="/block/cat", axis=1)]
    model = _model(nodes, [weight, numpy_helper.from_array(np.ones((2, 4, 3, 3), np.float32), "conv2.weight")])
    net = read_flat(model)
    assert [(layer.op, layer.inputs) for layer in net.layers] == [("conv", (-1,)), ("conv", (0,)), ("concat", (0, 1))]
    assert "residual concat:" in archc.import_model(model)


def test_an_unsupported_source_in_load_weights_is_a530(tmp_path):
    pytest.importorskip("torch")
    conv, weight = _conv()
    path = tmp_path / "sin.onnx"
    onnx.save(_model([conv, helper.make_node("Sin", ["c"], ["y"], name="/block/Sin")], [weight]), str(path))
    compiled = archc.compile("input 8x8x3\nconv 3x3, 4, same, nobias\n")
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(compiled, str(path))
    diagnostic = err.value.diagnostics[0]
    assert diagnostic.code == "A530" and "`Sin`" in diagnostic.message and "/block/Sin" in diagnostic.message
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(compiled, str(tmp_path / "junk.onnx"))
    assert err.value.diagnostics[0].code == "A530"


@pytest.mark.filterwarnings("ignore:The onnxtxt format is experimental")
@pytest.mark.parametrize("name", ["model.onnx", "model.pb", "model", "model.txtpb", "model.onnxtxt"])
def test_a_file_is_read_as_onnx_load_reads_it(tmp_path, name):
    """read_flat parses a protobuf file where it lies (mapped into memory: no copy of its bytes first) to exactly
    the model onnx.load gives; a file onnx keeps as text, by its extension, is onnx.load's to read."""
    import archc.readers.onnx as reader

    conv, weight = _conv()
    model = _model([conv, helper.make_node("Relu", ["c"], ["y"], name="/relu/Relu")], [weight])
    path = tmp_path / name
    onnx.save(model, str(path))
    loaded = reader._load(str(path))
    assert loaded == onnx.load(str(path), load_external_data=False)
    path.write_bytes(b"")  # the mapping is gone: nothing read refers to it
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), numpy_helper.to_array(weight))
    net = read_flat(model)
    onnx.save(model, str(path))
    assert [(layer.op, layer.args, layer.path) for layer in read_flat(path).layers] == \
        [(layer.op, layer.args, layer.path) for layer in net.layers]


def test_a_nodes_path_is_the_same_with_its_scopes_remembered():
    """The reader remembers what each scope of torch.onnx.export's names gives (its nodes share their enclosing
    modules'): every name, read after any others, gives the path it gives alone (a Sequential's children that
    repeat its name, empty scopes, a trailing `/`, archc's own names)."""
    import itertools

    from archc.readers.onnx import _path

    alone = {"/layer1/layer1.0/conv1/Conv": "layer1.0.conv1", "/features/features.1/conv/conv.0/conv.0.0/Conv":
             "features.1.conv.0.0", "conv3_x.0.conv2": "conv3_x.0.conv2", "ln1/norm": "ln1", "/Conv": "", "/x/": ""}
    assert {name: _path(name) for name in alone} == alone
    parts = ["/", "a", "a.b", "b", ".", "a.", "x/"]
    names = ["".join(p) for k in range(1, 5) for p in itertools.product(parts, repeat=k)] + list(alone)
    scopes: dict = {}
    for name in names + names[::-1]:
        assert _path(name, scopes) == _path(name), name


def test_an_empty_or_broken_file_is_said_to_be_no_model(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")  # cannot be mapped: onnx.load reads it, an empty model
    with pytest.raises(Unsupported, match="0 inputs"):
        read_flat(path)
    conv, weight = _conv()
    data = _model([conv, helper.make_node("Relu", ["c"], ["y"])], [weight]).SerializeToString()
    path.write_bytes(data[:len(data) // 2])  # cut off
    with pytest.raises(ValueError, match="not an ONNX model"):
        read_flat(path)


def test_a_dynamic_input_needs_its_sizes():
    conv, weight = _conv()
    model = _model([conv, helper.make_node("Relu", ["c"], ["y"], name="/relu")], [weight], shape=("N", 3, "H", "W"))
    with pytest.raises(Unsupported) as err:
        read_flat(model)
    assert "dynamic" in err.value.what
    net = read_flat(model, input_shape=(8, 8, 3))
    assert [layer.op for layer in net.layers] == ["conv", "relu"] and net.input_shape == (8, 8, 3)
    with pytest.raises(Unsupported):
        read_flat(_model([conv, helper.make_node("Relu", ["c"], ["y"])], [weight]), input_shape=(9, 9, 3))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_torch_interpolation_reads_as_upsample():
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.nn import functional as F

    class Resize(nn.Module):
        def forward(self, x):
            a = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            b = F.interpolate(x, size=(9, 9), mode="bilinear", align_corners=True)
            c = F.interpolate(x, scale_factor=3, mode="nearest")
            return torch.cat([F.max_pool2d(a, 2), F.max_pool2d(F.interpolate(b, size=(8, 8)), 2),
                              F.max_pool2d(c, 3)], 1)

    net = read_flat(_export(Resize(), (1, 2, 4, 4)))
    assert [layer.args for layer in net.layers if layer.op == "upsample"] == [
        {"mode": "bilinear", "align_corners": False, "scale": (2, 2)},
        {"mode": "bilinear", "align_corners": True, "size": (9, 9)},
        {"mode": "nearest", "scale": (3, 3)}, {"mode": "nearest", "size": (8, 8)}]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("opset", [14, 17])  # before 17 torch writes LayerNorm out: ReduceMean, Sub, Pow, Sqrt...
def test_layer_normalisation_written_out_or_not_loads_and_computes_the_same(opset):
    torch = pytest.importorskip("torch")
    from torch import nn

    class LayerNorm2d(nn.LayerNorm):  # torchvision's ConvNeXt
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class ChannelsFirst(nn.Module):  # ConvNeXt's own repository: the means written by hand
        def __init__(self, c):
            super().__init__()
            self.weight, self.bias = nn.Parameter(torch.rand(c) + 0.5), nn.Parameter(torch.rand(c))

        def forward(self, x):
            u = x.mean(1, keepdim=True)
            s = (x - u).pow(2).mean(1, keepdim=True)
            return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + 1e-6)) + self.bias[:, None, None]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.ln, self.ln2 = nn.Conv2d(3, 8, 3), LayerNorm2d(8, eps=1e-6), ChannelsFirst(8)
            self.fc, self.ln3 = nn.Linear(8, 4), nn.LayerNorm(4)

        def forward(self, x):
            return self.ln3(self.fc(self.ln2(self.ln(self.conv(x))).mean((2, 3))))

    module = Net().eval()
    buf = io.BytesIO()
    torch.onnx.export(module, torch.randn(1, 3, 8, 8), buf, dynamo=False, do_constant_folding=False,
                      opset_version=opset)
    source = onnx.load_from_string(buf.getvalue())
    net = read_flat(source)
    assert [(layer.op, layer.path) for layer in net.layers] == [
        ("conv", "conv"), ("layernorm", "ln"), ("layernorm", "ln2"), ("globalavgpool", ""), ("dense", "fc"),
        ("layernorm", "ln3")]
    assert [layer.args["epsilon"] for layer in net.layers if layer.op == "layernorm"] == [1e-6, 1e-6, 1e-5]
    compiled = archc.compile("input 8x8x3\nconv 3x3, 8\nlayernorm epsilon=1e-6\nlayernorm epsilon=1e-6\n"
                             "globalavgpool\ndense 4\nlayernorm\n").eval()
    archc.load_weights(compiled, source)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x).numpy(), module(x).numpy(), rtol=1e-5, atol=1e-5)
