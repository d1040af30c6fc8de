"""`archc.load_weights` from a PyTorch module: layers matched through the structure (archc/match.py,
archc/readers/torch.py), proven by the outputs. torchvision's models (no weights downloaded, every weight and
batchnorm statistic randomised) give the same outputs as the shipped specs once loaded; a reference that creates
a block's shortcut before its body (torchvision's RegNet) loads where a copy by position fails; architectures
that differ fail with a diagnostic naming the spec's layer, its line and the source's module, copying nothing."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torchvision_zoo import torchvision_models  # noqa: E402

import archc  # noqa: E402
from archc.match import GraphBuilder, Layer, graph_of_plan, match  # noqa: E402
from archc.readers.torch import read_module  # noqa: E402

SPECS = Path(__file__).resolve().parents[2] / "specs"
THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every weight and batchnorm statistic drawn at random, at scales that keep activations finite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t[0].numel()))
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith(".weight") else 0.0))
    return model


def assert_same_function(model: nn.Module, reference: nn.Module, shape: tuple[int, ...], batch: int = 2):
    model.eval()
    reference.eval()
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert torch.isfinite(theirs).all()
    error = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    assert error <= 1e-5, f"outputs differ by {error:.2e} (relative)"


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- torchvision's models into the shipped specs

TORCHVISION = [  # spec, overrides, torchvision constructor and its arguments
    ("resnet18", {}, "resnet18", {}),
    # torchvision's ResNet-50 is "v1.5": the stride on the 3x3 conv (the spec's default is the paper's 1x1)
    ("resnet50", {"downsample_at": 2}, "resnet50", {}),
    ("densenet121", {}, "densenet121", {}),
    pytest.param("vgg16", {}, "vgg16", {}, marks=pytest.mark.skipif(
        not THOROUGH, reason="138 M parameters, ~1.7 GB and ~10 s; ARCHC_THOROUGH=1 runs it")),
] + [  # the other members of the families: the same machinery, more of it
    pytest.param(spec, overrides, spec, {}, marks=pytest.mark.skipif(not THOROUGH, reason="ARCHC_THOROUGH=1 runs it"))
    for spec, overrides in [("resnet34", {}), ("resnet101", {"downsample_at": 2}), ("resnet152", {"downsample_at": 2}),
                            ("densenet169", {}), ("densenet201", {}), ("densenet161", {}), ("vgg11", {}),
                            ("vgg13", {}), ("vgg19", {})]
]


@pytest.mark.parametrize(("spec", "overrides", "ctor", "kwargs"), TORCHVISION)
def test_torchvision_models_load_into_the_shipped_specs(spec, overrides, ctor, kwargs):
    reference = randomise(getattr(torchvision_models(), ctor)(weights=None, **kwargs))
    model = archc.compile(SPECS / f"{spec}.arch", logits=True, **overrides)
    assert archc.load_weights(model, reference) is model
    assert_same_function(model, reference, (3, 224, 224), batch=1)


ZOO = [  # spec, input size, torchvision constructor and its arguments: the zoo's specs, loaded from the module
    ("squeezenet1_1", "224x224x3", "squeezenet1_1", {}),
    ("inception_v3", "75x75x3", "inception_v3", {"aux_logits": False, "init_weights": False}),
    ("resnext50_32x4d", "32x32x3", "resnext50_32x4d", {}),
    ("wide_resnet50_2", "32x32x3", "wide_resnet50_2", {}),
]


@pytest.mark.parametrize(("spec", "size", "ctor", "kwargs"), ZOO)
def test_the_zoos_specs_load_from_torchvisions_modules(spec, size, ctor, kwargs):
    if not (SPECS / f"{spec}.arch").exists():
        pytest.skip(f"specs/{spec}.arch is not here yet")
    reference = randomise(getattr(torchvision_models(), ctor)(weights=None, **kwargs))
    model = archc.compile(SPECS / f"{spec}.arch", logits=True, input=size)
    archc.load_weights(model, reference)
    h, w, c = (int(d) for d in size.split("x"))
    assert_same_function(model, reference, (c, h, w))


def test_resnet50_v1_against_torchvisions_v1_5_names_the_moved_stride():
    """The same tensors, a different function: the stride on the other conv changes an output size."""
    model = archc.compile(SPECS / "resnet50.arch", logits=True)  # downsample_at=1, the paper's
    before = snapshot(model)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, torchvision_models().resnet50(weights=None))
    diag = err.value.diagnostics[0]
    assert diag.code == "A406"
    assert "`conv3_x.0.conv1`" in diag.message and "`layer2.0.conv1`" in diag.message
    assert "128x28x28" in diag.message and "128x56x56" in diag.message
    assert diag.span is not None and diag.span.file.endswith("blocks.arch")  # the bottleneck's first conv
    assert unchanged(model, before)


def test_googlenet_is_not_torchvisions():
    """torchvision's GoogLeNet has batchnorm after every conv (and no bias); the spec is the paper's."""
    reference = torchvision_models().googlenet(weights=None, aux_logits=False, transform_input=False,
                                               init_weights=False)
    model = archc.compile(SPECS / "googlenet.arch", logits=True)
    before = snapshot(model)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, reference)
    diag = err.value.diagnostics[0]
    assert "the spec's `conv1.conv`" in diag.message and "the source's `conv1.conv`" in diag.message
    assert "bias 64 in the spec" in diag.message
    assert diag.span.file.endswith("googlenet.arch") and diag.span.line == 13
    assert unchanged(model, before)


def test_alexnet_is_not_torchvisions():
    with torch.device("meta"):  # two AlexNets' 0.5 GB of weights: the mismatch is found from shapes alone
        model = archc.compile(SPECS / "alexnet.arch", logits=True)
        source = torchvision_models().alexnet(weights=None)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, source)
    message = err.value.diagnostics[0].message
    assert "`conv1.conv`" in message and "`features.0`" in message
    assert "`conv1.conv.weight` is 96x3x11x11" in message and "`features.0.weight` is 64x3x11x11" in message


# ---------------------------------------------------------------- the shortcut created before the body

REGNET_LIKE = """network regnet_like "residual bottlenecks with projection shortcuts"
input 16x16x3
param first_stride=2
block resb(w, stride=1, g=4):
  residual:
    conv 1x1, w, bn, relu
    conv 3x3, w, stride=stride, same, groups=g, bn, relu
    conv 1x1, w, bn
  relu
stem: conv 3x3, 8, same, bn, relu
s1: resb(16, stride=first_stride); resb(16)
head: globalavgpool; dense 5
"""


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> list:
    layers = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class ResBottleneck(nn.Module):
    """As torchvision.models.regnet.ResBottleneckBlock: the projection `proj` is created before the body `f`,
    and the bottleneck is as wide as the output, so the shortcut's conv and the body's first conv hold tensors
    of the same shapes."""

    def __init__(self, cin: int, w: int, stride: int = 1):
        super().__init__()
        self.proj = nn.Sequential(*conv_bn(cin, w, 1, stride, relu=False)) if cin != w or stride != 1 else None
        self.f = nn.Sequential(*conv_bn(cin, w), *conv_bn(w, w, 3, stride, groups=4), *conv_bn(w, w, relu=False))
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = self.proj(x) if self.proj is not None else x
        return self.activation(shortcut + self.f(x))


class RegNetLike(nn.Module):
    def __init__(self, first_stride: int = 2):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8, 3))
        self.s1 = nn.Sequential(ResBottleneck(8, 16, first_stride), ResBottleneck(16, 16))
        self.aux = nn.Linear(16, 5)  # like GoogLeNet's auxiliary heads: used only in training
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.s1(self.stem(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x) + self.aux(x) if self.training else self.fc(x)


@pytest.mark.parametrize("first_stride", [2, 1])
def test_shortcut_created_before_the_body(first_stride):
    """At stride 1 the shortcut's conv and the body's first conv also have the same output: only what follows
    tells them apart."""
    reference = randomise(RegNetLike(first_stride))
    model = archc.compile(REGNET_LIKE, logits=True, first_stride=first_stride)
    # The spec's plan has the body first, the source creates the shortcut first: by position it cannot load.
    assert next(k for k in model.state_dict() if k.startswith("s1.0.")).startswith("s1.0.conv1")
    assert next(k for k in reference.state_dict() if k.startswith("s1.0.")).startswith("s1.0.proj")
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, reference.state_dict())
    assert err.value.diagnostics[0].code == "A406" and err.value.diagnostics[0].span is not None
    archc.load_weights(model, reference)
    assert torch.equal(model.s1[0].shortcut.conv.weight, reference.s1[0].proj[0].weight)
    assert_same_function(model, reference, (3, 16, 16))


def test_a_different_architecture_names_the_spec_layer_and_the_source_module(tmp_path):
    class Wider(RegNetLike):
        def __init__(self):
            super().__init__()
            self.s1[1].f[3] = nn.Conv2d(16, 16, 3, padding=1, groups=8, bias=False)  # 8 groups, not 4

    model = archc.compile(REGNET_LIKE, logits=True)
    before = snapshot(model)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, Wider())
    diag = err.value.diagnostics[0]
    assert diag.code == "A406"
    assert diag.message == ("the spec's `s1.1.conv2` does not match the source's `s1.1.f.3`: `s1.1.conv2.weight` is "
                            "16x4x3x3 in the spec, `s1.1.f.3.weight` is 16x2x3x3 in the source")
    assert (diag.span.file, diag.span.line) == ("<spec>", 7)  # the block's line in the spec text
    assert diag.notes == ("the spec: weight 16x4x3x3; output 16x8x8", "the source: weight 16x2x3x3; output 16x8x8")
    assert "data flow" in diag.help
    assert unchanged(model, before)
    (tmp_path / "regnet_like.arch").write_text(REGNET_LIKE)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(archc.compile(tmp_path / "regnet_like.arch"), Wider())
    rendered = err.value.render()
    assert "regnet_like.arch:7:5" in rendered
    assert "7 |     conv 3x3, w, stride=stride, same, groups=g, bn, relu" in rendered  # the line, as written


def test_a_source_with_a_layer_more_or_less():
    class Longer(RegNetLike):
        def __init__(self):
            super().__init__()
            self.s1.append(ResBottleneck(16, 16))

    model = archc.compile(REGNET_LIKE, logits=True)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, Longer())
    message = err.value.diagnostics[0].message
    assert "the source's `s1.2.f.0`" in message or "`s1.2.f.0`" in message, message
    shorter = archc.compile(REGNET_LIKE.replace("resb(16, stride=first_stride); resb(16)",
                                                "resb(16, stride=first_stride); resb(16) x 2"), logits=True)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(shorter, RegNetLike())
    diag = err.value.diagnostics[0]
    assert "`s1.2.conv1`" in diag.message and diag.span is not None


# ---------------------------------------------------------------- concatenation order is structure

BRANCHES = """network branches "two branches of the same shapes, concatenated"
input 8x8x4
stem: conv 1x1, 6
mix:
  concat:
    conv 3x3, 4, same, relu
    conv 3x3, 4, same
    conv 1x1, 2
head: conv 1x1, 3; globalavgpool; dense 2
"""


class Branches(nn.Module):
    """The spec's three branches, created in another order and concatenated in the spec's order."""

    def __init__(self, order=(0, 1, 2)):
        super().__init__()
        self.stem = nn.Conv2d(4, 6, 1)
        self.c = nn.Conv2d(6, 2, 1)  # created first, concatenated last
        self.b = nn.Conv2d(6, 4, 3, padding=1)
        self.a = nn.Conv2d(6, 4, 3, padding=1)
        self.head = nn.Conv2d(10, 3, 1)
        self.fc = nn.Linear(3, 2)
        self.order = order

    def forward(self, x):
        x = self.stem(x)
        parts = [torch.relu(self.a(x)), self.b(x), self.c(x)]
        x = self.head(torch.cat([parts[i] for i in self.order], 1))
        return self.fc(x.mean((2, 3)))


def test_branches_of_the_same_shapes_pair_by_their_place_in_the_concatenation():
    reference = randomise(Branches())
    model = archc.compile(BRANCHES, logits=True)
    archc.load_weights(model, reference)
    assert torch.equal(model.mix.branch1.conv.weight, reference.a.weight)
    assert torch.equal(model.mix.branch2.conv.weight, reference.b.weight)
    assert_same_function(model, reference, (4, 8, 8))


def test_branches_concatenated_in_another_order_do_not_load():
    model = archc.compile(BRANCHES, logits=True)
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, Branches(order=(2, 0, 1)))  # the 2 channels first: offsets differ
    assert err.value.diagnostics[0].message == (
        "the spec's `head.conv` is connected differently from the source's `head`: `head.conv` reads "
        "`mix.branch1.conv` (`a`), `mix.branch2.conv` (`b`) at channel 4, `mix.branch3.conv` (`c`) at channel 8; "
        "`head` reads `a` at channel 2, `b` at channel 6, `c`")


# ---------------------------------------------------------------- how the source is read


class ValueDependent(nn.Module):
    """A forward fx cannot trace (it branches on a tensor's value), with a parameter used by a function."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.bn(self.conv(x))
        if x.abs().sum() >= 0:  # always true, but fx cannot know
            x = torch.relu(x)
        return self.fc(x.mean((2, 3)))


def test_a_forward_fx_cannot_trace_is_read_by_running_it():
    reference = randomise(ValueDependent())
    model = archc.compile("network v\ninput 6x6x3\nf: conv 3x3, 4, same, nobias, bn, relu; gap; dense 2\n",
                          logits=True)
    archc.load_weights(model, reference)
    assert_same_function(model, reference, (3, 6, 6))


def test_the_reader_sees_layers_calls_and_parameters_used_by_functions():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.scale = nn.Parameter(torch.ones(4, 1, 1))  # ConvNeXt's layer_scale

        def forward(self, x):
            return self.scale * self.conv(x)

    for model in (Scaled(), ValueDependent()):
        graph = read_module(model, (3, 5, 5))
        assert graph.layers[0].label == "conv" and graph.layers[0].sources == (frozenset({(-1, 0)}),)
        assert graph.layers[1].sources == (frozenset({(0, 0)}),)
    graph = read_module(Scaled(), (3, 5, 5))
    assert graph.layers[1].label == "scale" and graph.layers[1].tensors == (("scale", (4, 1, 1)),)
    assert graph.layers[1].out_shape == (4, 5, 5)
    graph = read_module(ValueDependent(), (3, 5, 5))
    assert [layer.label for layer in graph.layers] == ["conv", "bn", "fc"]
    assert graph.layers[1].tensors == (("weight", (4,)), ("bias", (4,)), ("running_mean", (4,)),
                                       ("running_var", (4,)))  # num_batches_tracked is no weight


def test_reading_leaves_the_source_as_it_was():
    class WithConstant(RegNetLike):
        def __init__(self):
            super().__init__()
            self.shift = torch.zeros(1)  # a plain attribute: fx makes it a constant of the root it traces

        def forward(self, x):
            return super().forward(x + self.shift)

    reference = randomise(WithConstant()).train()
    reference.s1[0].f[1].eval()  # a frozen batchnorm inside a training model keeps its own mode
    before = snapshot(reference)
    attributes = set(vars(reference))
    graph = read_module(reference, (3, 16, 16))
    assert reference.training and not reference.s1[0].f[1].training and reference.s1[0].f[4].training
    assert unchanged(reference, before) and set(vars(reference)) == attributes
    assert [layer.label for layer in graph.layers][:2] == ["stem.0", "stem.1"]  # the constant is no layer


def test_a_source_that_cannot_run_on_that_input_is_a_diagnostic():
    model = archc.compile(REGNET_LIKE, logits=True)
    reference = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 5))  # needs a 3x3 input
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, reference)
    diag = err.value.diagnostics[0]
    assert diag.code == "A405" and "3x16x16" in diag.message and "state_dict()" in diag.help


def test_a_state_dict_is_copied_by_position_with_the_spec_line_of_a_misfit():
    model = archc.compile(REGNET_LIKE, logits=True)
    state = dict(RegNetLike().state_dict())
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(model, state)
    diag = err.value.diagnostics[0]
    # the shortcut's 1x1 conv and the body's first are alike: by position, the first misfit comes later
    assert "`s1.0.conv2.weight` is 16x4x3x3" in diag.message and "`s1.0.f.0.weight` is 16x8x1x1" in diag.message
    assert diag.span is not None and diag.span.line == 7


# ---------------------------------------------------------------- the matcher alone


def test_a_spec_matches_itself_layer_for_layer():
    """What `archc diff` will build on: two plans of one spec pair every layer with itself."""
    plan = archc.check(SPECS / "densenet121.arch")
    result = match(graph_of_plan(plan), graph_of_plan(plan))
    assert result.pairs == list(range(len(result.a.layers)))
    assert result.steps == len(result.a.layers)  # no backtracking


def test_parallel_layers_of_one_kind_are_told_apart_by_what_follows():
    """Two graphs whose twin branches are listed in opposite orders: the first candidate tried for the first
    branch is the wrong one unless what follows decides; with the hint off, backtracking still finds it."""

    def graph(first_long: bool):
        b = GraphBuilder()
        b.input("x", (4, 8, 8))
        branches = [("long", 2), ("short", 1)] if first_long else [("short", 1), ("long", 2)]
        for name, depth in branches:
            prev = "x"
            for i in range(depth):
                b.layer(f"{name}{i}", [prev], (4, 8, 8), f"{name}{i}", [("weight", (4, 4, 1, 1))])
                prev = f"{name}{i}"
        b.op("sum", ["long1", "short0"], (4, 8, 8))
        b.layer("out", ["sum"], (2,), "out", [("weight", (2, 4))])
        return b.graph

    for rounds in (3, 0):
        result = match(graph(True), graph(False), rounds=rounds)
        labels = [(result.a.layers[i].label, result.b.layers[j].label) for i, j in enumerate(result.pairs)]
        assert all(x == y for x, y in labels), labels


def test_the_search_is_bounded():
    a = GraphBuilder()
    a.input("x", (1,))
    for i in range(30):  # thirty interchangeable layers, then one that fits nothing
        a.layer(i, ["x"], (1,), f"a{i}", [("weight", (1, 1))])
    a.layer("end", list(range(30)), (1,), "end", [("weight", (3, 3))])
    result = match(a.graph, a.graph, max_steps=500)
    assert result.pairs == list(range(31))  # the same graph: found without search
    b = GraphBuilder()
    b.input("x", (1,))
    for i in range(30):
        b.layer(i, ["x"], (1,), f"b{i}", [("weight", (1, 1))])
    b.layer("end", list(range(30)), (1,), "end", [("weight", (2, 2))])
    result = match(a.graph, b.graph, max_steps=500)
    assert result.pairs is None and result.steps <= 500
    assert result.mismatch.a.label == "end" and result.mismatch.b.label == "end"


def test_layer_describes_itself():
    layer = Layer("conv1", (("weight", (64, 3, 7, 7)), ("bias", (64,))), (3, 224, 224), (64, 112, 112), ())
    assert layer.describe() == "weight 64x3x7x7, bias 64; output 64x112x112"


SHORTCUT_FIRST = """network shortcut_first "REGNET_LIKE written with the shortcut as the first branch of a sum"
input 16x16x3
param first_stride=2
block proj_first(w, stride):
  add:
    conv 1x1, w, stride=stride, bn
    conv 1x1, w, bn, relu; conv 3x3, w, stride=stride, same, groups=4, bn, relu; conv 1x1, w, bn
  relu
block plain(w):
  residual:
    conv 1x1, w, bn, relu
    conv 3x3, w, same, groups=4, bn, relu
    conv 1x1, w, bn
  relu
stem: conv 3x3, 8, same, bn, relu
stage: proj_first(16, first_stride); plain(16)
head: globalavgpool; dense 5
"""


@pytest.mark.parametrize("first_stride", [2, 1])
def test_two_specs_of_one_network_written_in_other_orders_match_through_their_plans(first_stride):
    """What `archc diff` builds on: two plans whose layers are listed and named differently."""
    a = archc.compile(REGNET_LIKE, logits=True, first_stride=first_stride)
    b = randomise(archc.compile(SHORTCUT_FIRST, logits=True, first_stride=first_stride))
    result = match(graph_of_plan(a.archc_plan), graph_of_plan(b.archc_plan))
    pairs = {result.a.layers[i].label: result.b.layers[j].label for i, j in enumerate(result.pairs)}
    assert pairs["s1.0.shortcut.conv"] == "stage.0.branch1.conv" and pairs["s1.0.conv1"] == "stage.0.branch2.conv1"
    archc.load_weights(a, b)
    assert_same_function(a, b, (3, 16, 16))


class ChannelsLast(nn.Module):
    """ConvNeXt's way: 1x1 convolutions run as Linear layers on an HxWxC tensor; and a classifier that is a
    1x1 conv on a pooled Cx1x1 map (as squeeze-excitation's are), where the spec has dense layers."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pw1 = nn.Linear(8, 16)
        self.pw2 = nn.Linear(16, 8)
        self.classifier = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        x = self.stem(x)
        y = self.pw2(torch.relu(self.pw1(x.permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)
        return torch.flatten(self.classifier(nn.functional.adaptive_avg_pool2d(x + y, 1)), 1)


def test_layouts_do_not_matter_only_sizes():
    reference = randomise(ChannelsLast())
    model = archc.compile("network cl\ninput 6x6x3\nstem: conv 3x3, 8, same\n"
                          "mix:\n  residual:\n    conv 1x1, 16, relu; conv 1x1, 8\nhead: gap; dense 5\n", logits=True)
    archc.load_weights(model, reference)
    assert model.mix.conv1.weight.shape == (16, 8, 1, 1)  # reshaped from the Linear's 16x8
    assert_same_function(model, reference, (3, 6, 6))


@pytest.mark.parametrize("source", ["densenet121", "regnet_like", "branches"])
def test_running_the_module_reads_what_fx_reads(source, monkeypatch):
    """The fallback for forwards fx cannot trace gives the same graph as fx, concatenations included."""
    import archc.readers.torch as reader

    if source == "densenet121":
        module, shape = torchvision_models().densenet121(weights=None), (3, 224, 224)
    else:
        module, shape = (RegNetLike(), (3, 16, 16)) if source == "regnet_like" else (Branches(), (4, 8, 8))
    traced = read_module(module, shape)

    def refuse(*args, **kwargs):
        raise RuntimeError("no fx today")

    monkeypatch.setattr(reader._Tracer, "trace", refuse)
    ran = read_module(module, shape)
    def fields(graph):
        return [(x.label, x.tensors, x.in_shape, x.out_shape, x.sources, x.ref) for x in graph.layers]

    assert fields(traced) == fields(ran)
