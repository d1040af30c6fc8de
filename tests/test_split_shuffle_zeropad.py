"""Channel split, channel shuffle, zero-padding shortcuts (`zeropad`, `residual shortcut=zeropad:`) and `x 0`:
their rules against hand-computed values, their diagnostics, their text and JSON forms, and in torch what
torchvision and the usual option A implementation compute."""

from __future__ import annotations

import json

import pytest
from helpers import strip_spans

import archc
from archc.diagnostics import ArchcError, RuleError
from archc.fmt import format_text
from archc.ops import OPS

# ---------------------------------------------------------------- the rules, by hand

CASES = [
    # op, args, input shape, output shape
    ("split", dict(parts=2, part=0), (28, 28, 116), (28, 28, 58)),
    ("split", dict(parts=2, part=1), (28, 28, 116), (28, 28, 58)),
    ("split", dict(parts=3, part=2), (5, 6, 12), (5, 6, 4)),
    ("split", dict(parts=1, part=0), (5, 6, 12), (5, 6, 12)),
    ("shuffle", dict(groups=2), (7, 7, 464), (7, 7, 464)),
    ("shuffle", dict(groups=12), (2, 2, 12), (2, 2, 12)),
    ("zeropad", dict(filters=32, stride=2), (32, 32, 16), (16, 16, 32)),
    ("zeropad", dict(filters=64, stride=2), (15, 15, 32), (8, 8, 64)),  # rows 0, 2, ..., 14: ceil(15 / 2)
    ("zeropad", dict(filters=9, stride=(3, 2)), (7, 6, 4), (3, 3, 9)),
    ("zeropad", dict(filters=4), (7, 6, 4), (7, 6, 4)),
]


@pytest.mark.parametrize("op, args, shape, out", CASES)
def test_rules(op, args, shape, out):
    kind = OPS[op]
    resolved = kind.resolve(kind.args(**args), [shape])
    assert kind.shape(resolved, [shape]) == out
    assert kind.params(resolved, [shape]) == (0, 0)
    assert kind.macs(resolved, [shape], out) == 0


def test_zero_channels_go_half_before_half_after():
    pads = OPS["zeropad"].pads
    assert pads(OPS["zeropad"].args(filters=32, stride=2), 16) == (8, 8)  # planes // 4 each side, as the reference
    assert pads(OPS["zeropad"].args(filters=9), 4) == (2, 3)  # an odd extra: the one more after
    assert pads(OPS["zeropad"].args(filters=4), 4) == (0, 0)


@pytest.mark.parametrize("op, args, shape, code, words", [
    ("split", dict(parts=2, part=2), (8, 8, 4), "A104", "part 2 does not exist"),
    ("split", dict(parts=2, part=-1), (8, 8, 4), "A104", "part -1 does not exist"),
    ("split", dict(parts=0, part=0), (8, 8, 4), "A104", "at least 1 part"),
    ("split", dict(parts=3, part=0), (8, 8, 4), "A206", "do not split into 3"),
    ("split", dict(parts=2, part=0), (64,), "A205", "needs a feature map"),
    ("shuffle", dict(groups=3), (8, 8, 4), "A206", "3 groups do not divide 4"),
    ("shuffle", dict(groups=0), (8, 8, 4), "A104", "at least 1 group"),
    ("shuffle", dict(groups=2), (64,), "A205", "needs a feature map"),
    ("zeropad", dict(filters=2), (8, 8, 4), "A104", "cannot take 4 channels down to 2"),
    ("zeropad", dict(filters=8), (64,), "A205", "needs a feature map"),
])
def test_rule_errors(op, args, shape, code, words):
    kind = OPS[op]
    with pytest.raises(RuleError) as e:
        kind.resolve(kind.args(**args), [shape])
    assert e.value.code == code and words in e.value.message


# ---------------------------------------------------------------- residual shortcut=zeropad


def check(text: str):
    return archc.check("input 9x9x4\n" + text + "\n")


def errors(text: str) -> list:
    with pytest.raises(ArchcError) as e:
        check(text)
    return e.value.diagnostics


BODY = "\n  conv 3x3, 8, stride=2, same, bn, relu\n  conv 3x3, 8, same, bn"


@pytest.mark.parametrize("header", ["residual shortcut=zeropad:", "residual add shortcut=zeropad:",
                                    "residual  shortcut = zeropad :"])
def test_residual_zeropad_shortcut(header):
    plan = check(header + BODY)
    short = plan.node("shortcut.zeropad")
    assert short.op == "zeropad" and short.params == 0
    assert short.args.stride == (2, 2) and short.args.filters == 8 and short.shape == (5, 5, 8)
    assert plan.node("add").inputs == ("bn2", "shortcut.zeropad")
    assert plan.trainable_params == check("residual:" + BODY).trainable_params - 32 - 16  # no 1x1 conv, no bn


def test_the_default_is_the_projection_and_equal_shapes_need_no_shortcut():
    default = check("residual:" + BODY)
    assert [n.op for n in default.nodes if "shortcut" in n.name] == ["conv", "batchnorm"]
    assert strip_spans(archc.load("input 9x9x4\nresidual shortcut=projection:" + BODY + "\n")) == \
        strip_spans(archc.load("input 9x9x4\nresidual:" + BODY + "\n"))
    same = check("residual shortcut=zeropad:\n  conv 3x3, 4, same, bn")
    assert not [n for n in same.nodes if "shortcut" in n.name]
    assert same.node("add").inputs == ("bn", "input")


def test_a_parameter_may_hold_the_option():
    text = ("input 9x9x4\nparam option=zeropad\nblock unit(w, option=projection):\n  residual shortcut=option:\n"
            "    conv 3x3, w, stride=2, same, bn\nunit(8, option=option)\n")
    assert archc.check(text).nodes[-2].op == "zeropad"
    assert archc.check(text, option="projection").nodes[-2].op == "batchnorm"
    with pytest.raises(ArchcError) as e:
        archc.check(text, option="zeropd")
    assert e.value.diagnostics[0].code == "A104" and "did you mean `zeropad`" in e.value.diagnostics[0].help
    # a word that names a kind of shortcut is that kind, whatever a parameter of that name holds
    assert archc.check(text.replace("param option=zeropad", "param option=zeropad, zeropad=1")).nodes[-2].op \
        == "zeropad"


@pytest.mark.parametrize("text, code, words", [
    ("residual shortcut=zeropd:" + BODY, "A104", "`zeropd` is not a kind of shortcut"),
    ("residual shortcut=zeropad:\n  conv 3x3, 2, stride=2, same", "A202", "no zero-padding shortcut takes 9x9x4"),
    ("residual shortcut=zeropad:" + BODY + "\nshortcut:\n  conv 1x1, 8, stride=2", "A104", "its own `shortcut:`"),
    ("residual concat shortcut=zeropad:\n  conv 1x1, 8", "A104", "not one that uses `concat`"),
])
def test_residual_option_errors(text, code, words):
    diags = errors(text)
    assert len(diags) == 1
    assert diags[0].code == code and words in diags[0].message and diags[0].span.line == 2


def test_residual_option_syntax_errors_are_positioned():
    for text in ("residual shortcut=3:" + BODY, "residual shortcut:" + BODY):
        diags = errors(text)
        assert diags[0].code == "A001" and diags[0].span.line == 2


def test_formatting_and_json_keep_the_option():
    text = "input 9x9x4\nresidual add  shortcut = zeropad :" + BODY + "\nrelu\n"
    formatted = format_text(text)
    assert "residual shortcut=zeropad:\n" in formatted
    assert format_text(formatted) == formatted
    spec = archc.load(text)
    dumped = json.loads(spec.model_dump_json())
    assert dumped["body"][0]["auto_shortcut"] == "zeropad"
    assert "auto_shortcut" not in archc.load("input 9x9x4\nresidual:" + BODY + "\n").model_dump_json(
        exclude_defaults=True)
    assert archc.check(formatted).node("shortcut.zeropad").op == "zeropad"


# ---------------------------------------------------------------- x 0


def test_zero_repetitions_leave_the_item_out():
    text = ("input 8x8x3\nblock unit(w):\n  conv 3x3, w, same, relu\n"
            "a: conv 1x1, 4; unit(8) x 0; (conv 3x3, 5, same; relu) x 0; dense 7 x 0 -> 8x8x4\nb: unit(6) x (1 - 1)\n")
    plan = archc.check(text)
    assert [n.name for n in plan.nodes] == ["a.conv"]
    assert plan.output_shape == (8, 8, 4)


def test_a_negative_count_is_an_error_that_says_what_zero_does():
    diags = errors("conv 1x1, 4 x (0 - 1)")
    assert diags[0].code == "A117" and "0 or more" in diags[0].message and "not `-1`" in diags[0].message
    assert "`x 0` leaves the item out" in diags[0].help


def test_a_stage_of_one_block_less_is_a_set_away():
    """`basic(w) x (n - 1)` with n = 1: one block a stage (ResNet-8 on CIFAR-10)."""
    from pathlib import Path

    spec = Path(__file__).resolve().parent.parent / "specs" / "resnet20_cifar.arch"
    plan = archc.check(spec, n=1)
    assert plan.trainable_params == 97_216 * 1 - 21_926
    assert [name for name in ("stage1.0.add", "stage1.1.add") if name in {n.name for n in plan.nodes}] == \
        ["stage1.0.add"]


# ---------------------------------------------------------------- torch: what torchvision and the reference compute


def test_torch_split_and_shuffle_are_torchvisions():
    torch = pytest.importorskip("torch")
    plan = archc.check("input 5x4x12\nconcat:\n  split 2, part=0\n  split 2, part=1; relu\nshuffle 3\n")
    model = archc.compile(plan, backend="torch").eval()
    x = torch.randn(2, 12, 5, 4)
    x1, x2 = x.chunk(2, dim=1)
    out = torch.cat((x1, torch.relu(x2)), dim=1)
    n, c, h, w = out.shape  # torchvision's channel_shuffle, written out
    want = torch.transpose(out.view(n, 3, c // 3, h, w), 1, 2).contiguous().view(n, c, h, w)
    before = x.clone()
    with torch.no_grad():
        assert torch.equal(model(x), want)
    assert torch.equal(x, before)  # the ReLU after a split (a view of the input) did not work in place


def test_torch_zeropad_is_the_usual_option_a():
    torch = pytest.importorskip("torch")
    model = archc.compile("input 8x8x16\nzeropad 32, stride=2\n", backend="torch")
    x = torch.randn(2, 16, 8, 8)
    want = torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 32 // 4, 32 // 4), "constant", 0)
    assert torch.equal(model(x), want)
