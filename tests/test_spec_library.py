"""The spec library against its sources: every spec in specs/ has a test here, driven by the figures transcribed in
tests/golden/spec_library.toml (exact parameter counts, the tables' output sizes, the published MACs)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import archc
from archc.loader import load

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = tomllib.loads((Path(__file__).parent / "golden" / "spec_library.toml").read_text(encoding="utf-8"))


def network_specs() -> list[str]:
    """Every spec in specs/ that is a network (block files hold only definitions)."""
    names = []
    for path in sorted(SPECS.glob("*.arch")):
        spec = load(path).spec
        if spec.body or spec.input is not None:
            names.append(path.stem)
    return names


def size(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split("x"))


def matches(expected: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """A table's size against a plan shape: `HxW` checks height and width; a flat vector may be written 1x1xN."""
    if len(shape) == 1:
        return expected in (shape, (1, 1, shape[0]))
    return expected in (shape, shape[:2])


def stage_table(plan) -> dict[str, tuple[tuple[int, ...], int]]:
    return {name: (nodes[-1].shape, sum(n.params for n in nodes)) for name, nodes in plan.stages()}


def test_every_spec_has_golden_figures():
    assert sorted(network_specs()) == sorted(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_spec_against_its_source(name):
    golden = GOLDEN[name]
    plan = archc.check(SPECS / f"{name}.arch")
    if "params" in golden:
        assert plan.total_params == golden["params"]
    assert plan.trainable_params == golden["trainable"]
    if "non_trainable" in golden:
        assert plan.non_trainable_params == golden["non_trainable"]
    stages = stage_table(plan)
    for stage, expected in golden["stages"].items():
        assert stage in stages, f"{name} has no stage `{stage}`"
        assert matches(size(expected), stages[stage][0]), f"{name}.{stage}: {stages[stage][0]} != {expected}"
    for stage, expected in golden.get("stage_params", {}).items():
        assert stages[stage][1] == expected, f"{name}.{stage}"
    assert plan.description, "`archc list` shows the spec's one-line description"


RESNETS = [name for name in GOLDEN if "flops_row" in GOLDEN[name]]


@pytest.mark.parametrize("name", RESNETS)
def test_resnet_macs_against_flops_row(name):
    golden = GOLDEN[name]
    macs = archc.check(SPECS / f"{name}.arch").macs
    assert abs(macs - golden["flops_row"]) / golden["flops_row"] < 0.03
    assert f"{macs:.4g}" == f"{golden['original_layout_macs']:.4g}"


def test_resnet50_v15_is_one_parameter_away():
    paper = archc.check(SPECS / "resnet50.arch")
    v15 = archc.check(SPECS / "resnet50.arch", downsample_at=2)
    assert v15.trainable_params == paper.trainable_params
    assert f"{v15.macs:.4g}" == f"{GOLDEN['resnet50']['v15_macs']:.4g}"
    # the stride moves from the first 1x1 conv to the 3x3 conv of each downsampling block
    assert paper.node("conv3_x.0.conv1").args.stride == (2, 2)
    assert paper.node("conv3_x.0.conv2").args.stride == (1, 1)
    assert v15.node("conv3_x.0.conv1").args.stride == (1, 1)
    assert v15.node("conv3_x.0.conv2").args.stride == (2, 2)


def test_googlenet_inception_rows():
    plan = archc.check(SPECS / "googlenet.arch")
    stages = stage_table(plan)
    rows = [s for s in GOLDEN["googlenet"]["stages"] if s.startswith("inception_")]
    assert len(rows) == 9
    for row in rows:
        assert stages[row][0] == size(GOLDEN["googlenet"]["stages"][row])
        # four branches concatenated
        concat = plan.node(f"{row}.concat")
        assert len(concat.inputs) == 4


def test_googlenet_ops_column():
    """Table 1's ops column is multiply-adds; the rows that agree with their own params column agree with archc."""
    stages = {name: nodes for name, nodes in archc.check(SPECS / "googlenet.arch").stages()}
    for row in ("conv2", "inception_3a", "inception_3b", "inception_4b", "inception_4d", "inception_4e", "linear"):
        table_ops = GOLDEN["googlenet"]["rows"][row][1] * 1e6
        assert abs(sum(n.macs for n in stages[row]) - table_ops) / table_ops < 0.05, row


def test_mobilenet_mult_adds_and_multipliers():
    golden = GOLDEN["mobilenet_v1"]
    assert round(archc.check(SPECS / "mobilenet_v1.arch").macs / 1e6) == 569
    for alpha, (mult_adds, params) in golden["width_multiplier"].items():
        plan = archc.check(SPECS / "mobilenet_v1.arch", alpha=float(alpha))
        assert round(plan.macs / 1e6) == mult_adds
        assert round(plan.trainable_params / 1e6, 1) == params
    for side, mult_adds in golden["resolution"].items():
        plan = archc.check(SPECS / "mobilenet_v1.arch", input=f"{side}x{side}x3")
        # Table 7 scales 569 M by the squared resolution ratio (290.3 M at 160) where the exact count is 290.7 M
        assert abs(plan.macs / 1e6 - mult_adds) < 1
        assert plan.trainable_params == golden["trainable"]


@pytest.mark.parametrize("name", [name for name in sorted(GOLDEN) if GOLDEN[name]["cifar"]])
def test_cifar_overrides(name):
    plan = archc.check(SPECS / f"{name}.arch", classes=10, input="32x32x3")
    assert plan.input_shape == (32, 32, 3)
    assert plan.output_shape == (10,)
    assert plan.nodes[-1].op in ("softmax", "dense")


@pytest.mark.parametrize("name", [name for name in sorted(GOLDEN) if not GOLDEN[name]["cifar"]])
def test_imagenet_only_specs_say_why_on_cifar(name):
    with pytest.raises(archc.ArchcError) as e:
        archc.check(SPECS / f"{name}.arch", classes=10, input="32x32x3")
    assert e.value.diagnostics[0].code == "A201"


def test_every_parameter_is_documented_in_its_spec():
    for name in network_specs():
        path = SPECS / f"{name}.arch"
        comment = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
        for param in load(path).spec.params:
            assert f"{param.name} (" in comment, f"{name}: document `{param.name}` in the spec's comment"


def test_specs_cite_their_source_on_the_network_line():
    for name in network_specs():
        first = (SPECS / f"{name}.arch").read_text().splitlines()[0]
        assert first.startswith(f'network {name} "'), name


# ---- ShuffleNet v2 and the CIFAR-10 ResNets against their papers' tables (their `members` are checked by
# tests/test_zoo_unet_inception.py's test_family_members_by_set)


def test_shufflenet_v2_flops_per_width():
    """Table 5's FLOPs per width against archc's MACs: within 1.5% (the paper counts a little more)."""
    for width, flops in GOLDEN["shufflenet_v2_x1_0"]["width_flops"].items():
        macs = archc.check(SPECS / "shufflenet_v2_x1_0.arch", width=width).macs
        assert abs(macs / 1e6 - flops) / flops < 0.015, width


def test_resnet_cifar_table6_parameters():
    """Table 6 gives the CIFAR-10 ResNets' parameters to two digits (option A)."""
    for n, millions in GOLDEN["resnet20_cifar"]["table6"].items():
        plan = archc.check(SPECS / "resnet20_cifar.arch", n=int(n))
        assert f"{plan.trainable_params / 1e6:.2g}" == f"{millions:.2g}", n
        assert len([node for node in plan.nodes if node.op in ("conv", "dense")]) == 6 * int(n) + 2  # 6n + 2 layers
