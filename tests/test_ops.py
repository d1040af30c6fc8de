"""Each layer kind's rules against hand-computed values: (op, args, input shape) -> (shape, params, MACs)."""

import pytest

from archc.diagnostics import RuleError
from archc.ops import OPS

CASES = [
    # op, args, input shapes, output shape, (trainable, non-trainable), MACs
    ("conv", dict(kernel=3, filters=64), [(28, 28, 1)], (26, 26, 64), (640, 0), 26 * 26 * 64 * 9),
    ("conv", dict(kernel=3, filters=64, padding="same"), [(32, 32, 3)], (32, 32, 64), (1792, 0), 32 * 32 * 64 * 27),
    ("conv", dict(kernel=7, filters=64, stride=2, padding="same", bias=False), [(224, 224, 3)], (112, 112, 64),
     (9408, 0), 112 * 112 * 64 * 147),
    ("conv", dict(kernel=11, filters=96, stride=4), [(227, 227, 3)], (55, 55, 96), (34944, 0), 55 * 55 * 96 * 363),
    ("conv", dict(kernel=5, filters=256, padding=2, groups=2), [(27, 27, 96)], (27, 27, 256), (307456, 0),
     27 * 27 * 256 * 25 * 48),
    ("conv", dict(kernel=3, depthwise=True, stride=2, padding="same", bias=False), [(112, 112, 64)],
     (56, 56, 64), (576, 0), 56 * 56 * 64 * 9),
    ("conv", dict(kernel=3, depthwise=True, multiplier=2), [(8, 8, 4)], (6, 6, 8), (80, 0), 6 * 6 * 8 * 9),
    ("conv", dict(kernel=3, filters=8, dilation=2), [(10, 10, 2)], (6, 6, 8), (152, 0), 6 * 6 * 8 * 18),
    ("conv", dict(kernel=3, filters=4, dilation=2, padding="same", stride=2), [(9, 9, 1)], (5, 5, 4), (40, 0),
     5 * 5 * 4 * 9),
    ("conv", dict(kernel=(1, 7), filters=4, padding=(0, 3)), [(9, 9, 2)], (9, 9, 4), (60, 0), 9 * 9 * 4 * 14),
    ("maxpool", dict(kernel=2), [(30, 30, 64)], (15, 15, 64), (0, 0), 0),
    ("maxpool", dict(kernel=3, stride=2), [(55, 55, 96)], (27, 27, 96), (0, 0), 0),
    ("maxpool", dict(kernel=3, stride=2, padding="same"), [(112, 112, 64)], (56, 56, 64), (0, 0), 0),
    ("maxpool", dict(kernel=3, stride=2, padding="same"), [(7, 7, 1)], (4, 4, 1), (0, 0), 0),
    ("avgpool", dict(kernel=2, stride=2), [(56, 56, 128)], (28, 28, 128), (0, 0), 0),
    ("avgpool", dict(kernel=7), [(7, 7, 1024)], (1, 1, 1024), (0, 0), 0),
    ("globalavgpool", {}, [(6, 6, 10)], (10,), (0, 0), 0),
    ("globalmaxpool", {}, [(6, 6, 10)], (10,), (0, 0), 0),
    ("flatten", {}, [(30, 30, 64)], (57600,), (0, 0), 0),
    ("dense", dict(units=32), [(57600,)], (32,), (1843232, 0), 57600 * 32),
    ("dense", dict(units=10, bias=False), [(84,)], (10,), (840, 0), 840),
    ("batchnorm", {}, [(56, 56, 64)], (56, 56, 64), (128, 128), 0),
    ("batchnorm", dict(scale=False), [(10,)], (10,), (10, 20), 0),
    ("lrn", {}, [(55, 55, 96)], (55, 55, 96), (0, 0), 0),
    ("dropout", dict(rate=0.5), [(4096,)], (4096,), (0, 0), 0),
    ("relu", {}, [(4, 4, 2)], (4, 4, 2), (0, 0), 0),
    ("softmax", {}, [(10,)], (10,), (0, 0), 0),
    ("identity", {}, [(3, 3, 3)], (3, 3, 3), (0, 0), 0),
    ("add", {}, [(56, 56, 256), (56, 56, 256)], (56, 56, 256), (0, 0), 0),
    ("concat", {}, [(28, 28, 64), (28, 28, 128), (28, 28, 32), (28, 28, 32)], (28, 28, 256), (0, 0), 0),
    ("concat", {}, [(10,), (5,)], (15,), (0, 0), 0),
    # squeeze-excitation and mobile activations
    ("globalavgpool", dict(keepdims=True), [(14, 14, 96)], (1, 1, 96), (0, 0), 0),
    ("globalmaxpool", dict(keepdims=True), [(7, 7, 8)], (1, 1, 8), (0, 0), 0),
    ("silu", {}, [(4, 4, 2)], (4, 4, 2), (0, 0), 0),
    ("hardswish", {}, [(10,)], (10,), (0, 0), 0),
    ("hardsigmoid", {}, [(1, 1, 96)], (1, 1, 96), (0, 0), 0),
    ("multiply", {}, [(1, 1, 96), (14, 14, 96)], (14, 14, 96), (0, 0), 0),  # the gate first, as `residual` passes it
    ("multiply", {}, [(14, 14, 96), (96,)], (14, 14, 96), (0, 0), 0),  # a flat gate counts as 1x1xC
    ("multiply", {}, [(7, 1, 4), (1, 5, 4), (7, 5, 1)], (7, 5, 4), (0, 0), 0),  # each axis broadcasts alone
    ("multiply", {}, [(12,), (12,)], (12,), (0, 0), 0),
    ("multiply", {}, [(12,), (1,)], (12,), (0, 0), 0),
]


@pytest.mark.parametrize("op, args, in_shapes, shape, params, macs", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rules(op, args, in_shapes, shape, params, macs):
    opdef = OPS[op]
    resolved = opdef.resolve(opdef.args(**args), in_shapes)
    assert opdef.shape(resolved, in_shapes) == shape
    assert opdef.params(resolved, in_shapes) == params
    assert opdef.macs(resolved, in_shapes, shape) == macs


@pytest.mark.parametrize("op, args, in_shapes, code", [
    ("conv", dict(kernel=7, filters=8), [(4, 4, 3)], "A201"),
    ("conv", dict(kernel=3, filters=8, groups=3), [(8, 8, 4)], "A206"),
    ("conv", dict(kernel=3), [(8, 8, 4)], "A114"),
    ("conv", dict(kernel=3, filters=4), [(16,)], "A205"),
    ("dense", dict(units=4), [(2, 2, 3)], "A205"),
    ("maxpool", dict(kernel=3), [(2, 2, 1)], "A201"),
    ("dropout", dict(rate=1.0), [(3,)], "A104"),
    ("avgpool", dict(kernel=2, padding=2), [(9, 9, 3)], "A207"),
    ("maxpool", dict(kernel=2, stride=2, padding=(0, 3, 0, 0)), [(4, 4, 3)], "A207"),
    ("add", {}, [(4, 4, 2), (4, 4, 3)], "A202"),
    ("concat", {}, [(4, 4, 2), (2, 2, 2)], "A203"),
    ("multiply", {}, [(1, 1, 8), (4, 4, 6)], "A202"),  # a gate of the wrong width
    ("multiply", {}, [(4, 4, 6), (2, 2, 6)], "A202"),  # sizes that are neither 1 nor the other's
    ("multiply", {}, [(8,), (4, 4, 6)], "A202"),
    ("multiply", {}, [(12,), (6,)], "A202"),
])
def test_rule_errors(op, args, in_shapes, code):
    opdef = OPS[op]
    with pytest.raises(RuleError) as err:
        resolved = opdef.resolve(opdef.args(**args), in_shapes)
        opdef.shape(resolved, in_shapes)
    assert err.value.code == code


def test_same_padding_is_floor_half_before():
    """The language's `same`: total d*(k-1), floor half before, the rest after; output ceil(in/stride)."""
    conv = OPS["conv"].args(kernel=2, filters=1, padding="same")
    assert conv.pads() == (0, 1, 0, 1)
    conv = OPS["conv"].args(kernel=7, filters=1, padding="same", stride=2)
    assert conv.pads() == (3, 3, 3, 3)
    conv = OPS["conv"].args(kernel=3, filters=1, padding="same", dilation=3)
    assert conv.pads() == (3, 3, 3, 3)
    for size in range(1, 20):
        for stride in (1, 2, 3):
            args = OPS["maxpool"].resolve(OPS["maxpool"].args(kernel=3, stride=stride, padding="same"),
                                          [(size, size, 1)])
            assert OPS["maxpool"].shape(args, [(size, size, 1)])[0] == -(-size // stride)


def test_pool_stride_defaults_to_kernel():
    args = OPS["avgpool"].resolve(OPS["avgpool"].args(kernel=3), [(9, 9, 1)])
    assert args.stride == (3, 3)


def test_every_op_has_summary_and_prefix():
    for name, op in OPS.items():
        assert op.summary and op.prefix and op.name == name
