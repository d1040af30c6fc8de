"""archc.readers.torch.read_flat: a PyTorch module as a flat network in archc's vocabulary (what `archc import`
decompiles). Proved three ways: every shipped spec compiled to PyTorch reads back as its own plan, layer for layer;
torchvision's classification models read with exactly torchvision's parameter and buffer counts, wired as the
structural reader sees them; and what the language lacks is an Unsupported naming the call and its module path.

ARCHC_THOROUGH=1 reads every shipped spec and every torchvision classification model, and times ResNet-152.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

import archc
from archc.flat import INPUT, Unsupported, flat_of_plan, graph_of_flat, same_layers
from archc.ops import OPS

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from backends.conformance import OP_CASES  # noqa: E402
from torchvision_zoo import torchvision_or_skip  # noqa: E402

from archc.readers.torch import read_flat, read_module  # noqa: E402

THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))
SPECS = Path(__file__).resolve().parent.parent / "specs"
ALL_SPECS = sorted(p.stem for p in SPECS.glob("*.arch") if p.stem != "blocks")
# between them every helper module the torch backend writes, beside the conformance cases below (every kind)
SOME_SPECS = ["alexnet", "convnext_tiny", "lenet5", "mobilenet_v3_small", "resnet20_cifar", "shufflenet_v2_x1_0",
              "unet"]


def _counts(net) -> tuple[int, int]:
    trainable = non_trainable = 0
    for layer, (args, in_shapes, _) in zip(net.layers, net.resolved(), strict=True):
        t, n = OPS[layer.op].params(args, in_shapes)
        trainable += t
        non_trainable += n
    return trainable, non_trainable


def _torch_counts(model) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters()),
            sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked")))


# ---------------------------------------------------------------- (a) archc's own modules read back as their plans


@pytest.mark.parametrize("case", list(OP_CASES))
def test_every_kind_the_torch_backend_writes_reads_back_as_its_layer(case):
    plan = archc.check(OP_CASES[case])
    model = archc.compile(OP_CASES[case], backend="torch")
    assert same_layers(flat_of_plan(plan), read_flat(model, plan.input_shape)) is None


@pytest.mark.parametrize("name", ALL_SPECS if THOROUGH else SOME_SPECS)
def test_a_shipped_spec_compiled_to_torch_reads_back_as_its_plan(name):
    plan = archc.check(SPECS / f"{name}.arch")
    with torch.device("meta"):  # no weights drawn: the structure is what is read
        model = archc.compile(SPECS / f"{name}.arch", backend="torch")
    net = read_flat(model, plan.input_shape)
    assert same_layers(flat_of_plan(plan), net) is None
    assert [layer.path for layer in net.layers] == [node.name for node in plan.nodes]  # the module paths


def test_every_shipped_spec_is_either_read_here_or_in_thorough_runs():
    assert set(SOME_SPECS) <= set(ALL_SPECS)


def test_tensors_are_the_modules_own_in_the_kinds_layout():
    text = OP_CASES["convnext_kinds"]
    model = archc.compile(text, backend="torch")
    net = read_flat(model, archc.check(text).input_shape)
    state = model.state_dict()
    seen = 0
    for layer, (args, in_shapes, _) in zip(net.layers, net.resolved(), strict=True):
        weights = OPS[layer.op].weights(args, in_shapes)
        assert set(layer.tensors) == set(weights), layer.path
        for name, array in layer.tensors.items():
            assert isinstance(array, np.ndarray) and array.shape == weights[name].shape
            np.testing.assert_array_equal(array, state[f"{layer.path}.{name}"].numpy().reshape(array.shape))
            seen += 1
    assert seen == len([k for k in state if not k.endswith("num_batches_tracked")])


# ---------------------------------------------------------------- (b) torchvision's classification models

# by default the families tests/test_import_e2e.py does not read (it reads, counts and runs ResNet-50, DenseNet-121,
# MobileNet v2, VGG-16, ShuffleNet v2, GoogLeNet, ConvNeXt-T and EfficientNet-B0), and ResNet-50 for the wiring
HANDFUL = ["resnet50", "mobilenet_v3_large", "inception_v3", "densenet121"]
EVERY = (["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
          "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "alexnet", "squeezenet1_0", "squeezenet1_1",
          "densenet121", "densenet161", "densenet169", "densenet201", "googlenet", "inception_v3", "mobilenet_v2",
          "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
          "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
          "convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]
         + [f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn")]
         + [f"efficientnet_b{i}" for i in range(8)] + [f"efficientnet_v2_{s}" for s in "sml"]
         + [f"regnet_{xy}_{size}" for xy in "xy" for size in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf",
                                                              "32gf")] + ["regnet_y_128gf"])


def _torchvision_model(name: str):
    tv = torchvision_or_skip()
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return getattr(tv.models, name)(weights=None, **kwargs)


@pytest.fixture(scope="module")
def read_nets():
    """Flat networks read in this module, by model name: the tests below look at some again (models not kept)."""
    nets: dict = {}
    yield nets
    nets.clear()


def _read(name: str, nets: dict):
    if name not in nets:
        nets[name] = read_flat(_torchvision_model(name))
    return nets[name]


@pytest.mark.parametrize("name", EVERY if THOROUGH else HANDFUL)
def test_a_torchvision_model_reads_with_its_own_counts_and_wiring(name, read_nets):
    model = _torchvision_model(name)
    shape = (299, 299, 3) if name == "inception_v3" else (224, 224, 3)
    net = read_flat(model, shape)
    if shape == (224, 224, 3):
        read_nets[name] = net
    assert _counts(net) == _torch_counts(model)
    # wired as the structural reader (load_weights) sees the module: every weighted layer pairs up
    from archc.match import match

    result = match(graph_of_flat(net), read_module(model, (shape[2], shape[0], shape[1])))
    assert result.mismatch is None, result.mismatch.message
    # and every tensor is the module's, by its name in the kind's layout
    state = model.state_dict()
    layer = next(layer for layer in net.layers if layer.op == "conv")
    np.testing.assert_array_equal(layer.tensors["weight"], state[f"{layer.path}.weight"].numpy())


def test_torchvision_paths_and_plumbing(read_nets):
    net = _read("resnet18", read_nets)
    paths = [layer.path for layer in net.layers]
    assert paths[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert "layer1.0.add" in paths  # `out += identity`: the calling module's path and the function
    # AdaptiveAvgPool2d((1, 1)) then torch.flatten is global pooling to a vector
    assert [layer.op for layer in net.layers[-2:]] == ["globalavgpool", "dense"]
    assert net.layers[-2].args == {"keepdims": False}
    assert net.layers[0].args["padding"] == (3, 3) and net.layers[0].args["bias"] is False

    net = _read("shufflenet_v2_x1_0", read_nets)
    ops = [layer.op for layer in net.layers]
    assert ops.count("shuffle") == 16 and ops.count("split") == 2 * 13  # view/transpose/view; chunk
    net = _read("convnext_tiny", read_nets)
    block = [(layer.op, layer.path) for layer in net.layers[2:10]]
    assert block == [("conv", "features.1.0.block.0"), ("layernorm", "features.1.0.block.2"),
                     ("conv", "features.1.0.block.3"), ("gelu", "features.1.0.block.4"),
                     ("conv", "features.1.0.block.5"), ("layer_scale", "features.1.0.layer_scale"),
                     ("stochastic_depth", "features.1.0.stochastic_depth"), ("add", "features.1.0.add")]
    assert net.layers[2].args["depthwise"] and net.layers[4].args["kernel"] == (1, 1)  # Linear over channels-last
    assert [layer.op for layer in net.layers[-3:]] == ["globalavgpool", "layernorm", "dense"]


def test_densenet_concatenations_read_as_a_chain(read_nets):
    """torchvision concatenates every earlier feature map again in each layer; read, each layer concatenates the
    previous concatenation and one more, as `residual concat:` writes it."""
    net = _read("densenet121", read_nets)
    concats = [layer for layer in net.layers if layer.op == "concat"]
    assert concats and all(len(layer.inputs) == 2 for layer in concats)


@pytest.mark.skipif(not THOROUGH, reason="times ResNet-152 five times (ARCHC_THOROUGH=1)")
def test_reading_resnet152_costs_at_most_twice_constructing_it():
    tv = torchvision_or_skip()
    read_flat(tv.models.resnet18())  # the first meta call in a process loads PyTorch's meta kernels
    build, read = [], []
    for _ in range(5):
        start = time.perf_counter()
        model = tv.models.resnet152()
        build.append(time.perf_counter() - start)
        start = time.perf_counter()
        read_flat(model)
        read.append(time.perf_counter() - start)
        del model
    assert statistics.median(read) <= 2 * statistics.median(build)


# ---------------------------------------------------------------- (c) what archc's language lacks


class _Area(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=0.5, mode="area")


class _Attention(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.qkv = nn.Conv2d(c, 3 * c, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)
        return (v @ attn.transpose(1, 2)).view(n, c, h, w)


class _Net(nn.Module):
    def __init__(self, inner: nn.Module, channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Identity(), inner)

    def forward(self, x):
        return self.body(self.stem(x))


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


UNSUPPORTED = {
    "interpolate_area": (lambda: _Net(_Area()), "interpolate(mode='area')", "body.1.interpolate"),
    "attention": (lambda: _Net(_Attention(), 8), "", "body.1."),
    "group_norm": (lambda: _Net(nn.GroupNorm(1, 3)), "group_norm", "body.1.group_norm"),
    "reflect_padding": (lambda: _Net(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")), "reflect", "body.1"),
    "cumulative_batchnorm": (lambda: _Net(nn.BatchNorm2d(3, momentum=None)), "momentum=None", "body.1"),
    "no_running_stats": (lambda: _Net(nn.BatchNorm2d(3, track_running_stats=False)), "running statistics",
                         "body.1"),
    "add_a_constant": (lambda: _Net(_Fn(lambda x: x + 1)), "adding", "body.1.add"),
    "reflect_pad": (lambda: _Net(_Fn(lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"))), "pad", "body.1.pad"),
    "flatten_with_the_batch": (lambda: _Net(_Fn(lambda x: x.reshape(-1))), "reshape", "body.1.reshape"),
    "softmax_over_width": (lambda: _Net(nn.Softmax(dim=-1)), "softmax over dimension -1", "body.1"),
    "adaptive_to_3x3": (lambda: _Net(nn.AdaptiveAvgPool2d(3)), "adaptive pooling from 8x8 to 3x3", "body.1"),
    "dropout2d": (lambda: _Net(nn.Dropout2d(0.1)), "dropout2d", "body.1"),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_what_the_language_lacks_is_unsupported_at_its_module_path(case):
    build, what, where = UNSUPPORTED[case]
    with pytest.raises(Unsupported) as info:
        read_flat(build(), (8, 8, 3))
    e = info.value
    assert what in e.what and e.where.startswith(where), (e.what, e.where)
    assert e.help
    # what came before it: the stem's conv and relu (and the identity), for `--partial`
    assert [layer.op for layer in e.partial.layers][:3] == ["conv", "relu", "identity"]


def test_an_unsupported_stochastic_depth_mode():
    tv = torchvision_or_skip()
    with pytest.raises(Unsupported, match="stochastic depth in `batch` mode"):
        read_flat(_Net(tv.ops.StochasticDepth(0.1, "batch")), (8, 8, 3))


# ---------------------------------------------------------------- plumbing, functional forms, fallback


class _Functional(nn.Module):
    """The same network as _Modules, in functions and tensor methods, with framework plumbing between."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding="same", bias=False)
        self.bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.01)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        y = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        y = y.sigmoid() * torch.tanh(y)
        y = torch.cat([y, F.hardswish(y)], 1).contiguous()
        y = F.adaptive_avg_pool2d(y.chunk(2, dim=1)[0], 1)
        y = y.view(y.size(0), -1)
        return F.softmax(self.fc(F.dropout(y, 0.2, training=self.training)), dim=1)


class _Modules(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.01)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.sig, self.tanh, self.hs = nn.Sigmoid(), nn.Tanh(), nn.Hardswish()
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.flat = nn.Flatten()
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 4)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        y = self.pool(self.relu(self.bn(self.conv(x))))
        y = self.sig(y) * self.tanh(y)
        y = torch.cat((y, self.hs(y)), dim=1)
        y = self.flat(self.gap(torch.split(y, 8, dim=1)[0]))
        return self.softmax(self.fc(self.drop(y)))


def _signature(net):
    return [(layer.op, layer.args, layer.inputs) for layer in net.layers]


def test_functions_and_methods_read_as_their_modules():
    a, b = read_flat(_Functional(), (9, 9, 3)), read_flat(_Modules(), (9, 9, 3))
    assert same_layers(a, b) is None
    assert [layer.op for layer in a.layers] == ["conv", "batchnorm", "relu", "maxpool", "sigmoid", "tanh",
                                                "multiply", "hardswish", "concat", "split", "globalavgpool",
                                                "dropout", "dense", "softmax"]
    assert a.layers[1].args["momentum"] == 0.99 and a.layers[1].args["epsilon"] == 1e-3  # torch's 0.01


class _Untraceable(nn.Module):
    """Control flow on a size: torch.fx cannot trace it, running it can."""

    def __init__(self):
        super().__init__()
        self.inner = _Modules()
        self.extra = nn.ReLU()

    def forward(self, x):
        if x.shape[-1] > 100:
            x = self.extra(x)
        return self.inner(x)


class _ValueDependent(_Untraceable):
    """Control flow on a value: neither fx nor the meta device can follow it; the CPU can."""

    def forward(self, x):
        if float(x.sum()) > 0:
            x = self.extra(x)
        return self.inner(x)


@pytest.mark.parametrize("cls", [_Untraceable, _ValueDependent])
def test_a_forward_fx_cannot_trace_is_read_by_running_it(cls):
    net = read_flat(cls(), (9, 9, 3))
    assert same_layers(net, read_flat(_Modules(), (9, 9, 3))) is None
    assert net.layers[0].path == "inner.conv" and net.layers[6].path == "inner.mul"


def test_an_in_place_call_is_seen_by_later_readers_of_its_input():
    class _InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            y.relu_()
            y += y.sigmoid()
            return y

    net = read_flat(_InPlace(), (4, 4, 3))
    assert [(layer.op, layer.inputs) for layer in net.layers] == [("conv", (INPUT,)), ("relu", (0,)),
                                                                  ("sigmoid", (1,)), ("add", (1, 2))]
    assert net.output == 3


def test_pads_fold_into_the_window_they_feed():
    class _Pads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 2)

        def forward(self, x):
            x = self.conv(F.pad(x, (0, 1, 0, 1)))  # TensorFlow's `same` for an even kernel
            return F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, stride=2)

    net = read_flat(_Pads(), (6, 6, 3))
    assert [(layer.op, layer.args["padding"]) for layer in net.layers] == [("conv", (0, 1, 0, 1)),
                                                                           ("maxpool", (1, 1))]
    assert _signature(net)[0][1]["kernel"] == (2, 2)


# ---------------------------------------------------------------- what "the same network" means


@pytest.mark.parametrize("a, b", [
    ("conv 3x3, 4, same", "conv 3x3, 4, padding=1"),
    ("conv 1x1, 4, same", "conv 1x1, 4"),
    ("conv 3x3, dw, multiplier=2", "conv 3x3, 6, groups=3"),
    ("maxpool 3x3, stride=2, padding=(0, 1, 1, 0), ceil", "maxpool 3x3, stride=2, padding=(0, 2, 1, 0)"),
    ("avgpool 3x3, stride=2, padding=2, ceil, count_pad", "avgpool 3x3, stride=2, padding=2, count_pad"),
    ("upconv 2x2, 4, stride=2", "upconv 2x2, 4, stride=2, padding=0"),
])
def test_same_layers_compares_meanings_not_spellings(a, b):
    """A reader sees what a module computes, not how the spec spelled it: `same` is the padding it adds, `dw` is
    groups equal to the channels, ceil mode is the padding it adds after (for max and uncounted averages)."""
    flat = [flat_of_plan(archc.check(f"input 13x14x3\n{line}\n")) for line in (a, b)]
    assert same_layers(*flat) is None


@pytest.mark.parametrize("a, b", [
    ("conv 3x3, 4, padding=1", "conv 3x3, 4, padding=(1, 2, 1, 1)"),
    ("avgpool 3x3, stride=1, padding=1", "avgpool 3x3, stride=1, padding=1, count_pad"),
    ("maxpool 3x3, stride=2, padding=1, ceil", "maxpool 3x3, stride=2, padding=1"),
])
def test_same_layers_still_tells_different_layers_apart(a, b):
    flat = [flat_of_plan(archc.check(f"input 13x14x3\n{line}\n")) for line in (a, b)]
    assert same_layers(*flat) is not None


def test_sums_compare_unordered_and_concatenations_ordered():
    a = flat_of_plan(archc.check("input 4x4x3\nconv 1x1, 3\nadd:\n  identity\n  relu\n"))
    b = flat_of_plan(archc.check("input 4x4x3\nconv 1x1, 3\nadd:\n  identity\n  relu\n"))
    b.layers[-1].inputs = b.layers[-1].inputs[::-1]
    assert same_layers(a, b) is None
    for layer in (a.layers[-1], b.layers[-1]):
        layer.op = "concat"
    assert same_layers(a, b) is not None


class _ResampleModules(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.act = nn.Sequential(nn.LeakyReLU(0.2), nn.ELU(0.5), nn.GELU("tanh"), nn.Hardsigmoid(), nn.ReLU6())
        self.near = nn.Upsample(scale_factor=2)
        self.bilinear = nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)  # count_include_pad=True, torch's default
        self.flat = nn.Flatten()
        self.bn = nn.BatchNorm1d(140)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        x = self.bilinear(self.near(self.act(self.up(x))))
        return self.softmax(self.bn(self.flat(self.avg(x))))


class _ResampleFunctions(_ResampleModules):
    def forward(self, x):
        x = F.relu6(F.hardsigmoid(F.gelu(F.elu(F.leaky_relu(self.up(x), 0.2), 0.5), approximate="tanh")))
        x = F.interpolate(F.interpolate(x, scale_factor=2.0), size=(5, 7), mode="bilinear", align_corners=True)
        x = F.avg_pool2d(x, 3, 1, 1)
        return torch.softmax(self.bn(torch.flatten(x, 1)), -1)


def test_resampling_and_activations_in_modules_and_functions():
    a, b = read_flat(_ResampleModules(), (3, 4, 3)), read_flat(_ResampleFunctions(), (3, 4, 3))
    assert same_layers(a, b) is None
    assert [layer.op for layer in a.layers] == ["convtranspose", "leaky_relu", "elu", "gelu", "hardsigmoid", "relu6",
                                                "upsample", "upsample", "avgpool", "flatten", "batchnorm", "softmax"]
    assert a.layers[0].args == {"kernel": (3, 3), "filters": 4, "stride": (2, 2), "padding": (1, 1),
                                "output_padding": (1, 1), "bias": True}
    assert a.layers[7].args == {"mode": "bilinear", "align_corners": True, "size": (5, 7)}
    assert a.layers[6].args == {"mode": "nearest", "scale": (2, 2)}
    assert a.layers[8].args["count_pad"] is True and a.layers[3].args == {"approximate": "tanh"}
