"""Backend conformance: what every backend must agree with inference about, and the language's definitions
(padding, pooling, LRN) as plain numpy references. A backend's tests supply a harness:

    class Harness:
        name: str
        def build(self, plan, logits=False) -> model
        def counts(self, model) -> (trainable, non_trainable)       # running statistics are non-trainable
        def layer_shapes(self, model, plan, batch) -> {node name: HWC or (N,) shape, batch left out}
                                                                     # caught on a real forward pass
        def forward_nhwc(self, model, x) -> numpy array              # x: N x H x W x C, output NHWC or N x C
        def conv_kernel(self, model, name) -> (HWIO kernel, bias or None)

and calls the check_* functions below over OP_CASES and network_specs().
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

import archc
from archc.loader import load as load_spec
from archc.ops import OPS
from archc.plan import Plan

SPECS = Path(__file__).resolve().parents[2] / "specs"


# A forward pass of a shipped spec in a test costs at most this many MACs: bigger networks (U-Net at 572x572 is
# 150 G) are run at a smaller input that the spec still checks at; their counts are checked at full size.
NUMERIC_MACS = 2_000_000_000

# Shipped specs with more parameters than this (the VGGs, AlexNet, ZFNet, ResNet-152) are built for a backend's
# numerical or file tests at half their input side, where their dense layers shrink: the suite stays under 3 GB.
BIG_PARAMS = 50_000_000


def numeric_plan(path: Path, plan: Plan) -> Plan:
    """The plan to run numbers through: the spec's own, or the largest smaller square input (same channels) that
    checks and costs at most NUMERIC_MACS. Every layer computes the same at any size its rules accept."""
    if plan.macs <= NUMERIC_MACS or len(plan.input_shape) != 3:
        return plan
    h, w, c = plan.input_shape
    side = min(h, w)
    return _smallest_within(str(path), side, c, plan.macs) or plan


def light_plan(path: Path, plan: Plan) -> Plan:
    """numeric_plan, and for a spec over BIG_PARAMS that numeric_plan keeps at full size, its plan at half the input
    side (the flatten still meets a 2x2 or 3x3 map, so its feature order is still tested)."""
    small = numeric_plan(path, plan)
    return small if plan.total_params <= BIG_PARAMS or small is not plan else half_side(path, plan)


def half_side(path: Path, plan: Plan) -> Plan:
    h, w, c = plan.input_shape
    return archc.check(path, input=(h // 2, w // 2, c))


@functools.cache
def _smallest_within(path: str, side: int, channels: int, macs: int) -> Plan | None:
    """MACs grow with the input's area: start at the side that area predicts and go up to the first that checks
    within the budget (or, for a network whose valid sizes are sparse, such as U-Net, the first that checks)."""
    first = None
    for candidate in range(max(8, int(side * (NUMERIC_MACS / macs) ** 0.5)), side):
        try:
            smaller = archc.check(path, input=(candidate, candidate, channels))
        except archc.ArchcError:
            continue
        first = first or smaller
        if smaller.macs <= NUMERIC_MACS:
            return smaller
        if first is not smaller:
            break
    return first


def network_specs() -> list[Path]:
    """Every shipped spec that is a network (block files, which have no `input`, are left out)."""
    return [p for p in sorted(SPECS.glob("*.arch")) if load_spec(p).spec.input is not None]


# Small networks that between them use every layer kind, with the variants whose definitions backends
# most easily get wrong: asymmetric and over-half-kernel padding, dilation, groups, partial batchnorm.
OP_CASES: dict[str, str] = {
    "conv_same_even_kernel": "input 9x10x4\nconv 4x4, 6, stride=2, same",
    "conv_explicit_pads": "input 7x7x3\nconv 3x3, 5, padding=(0, 2, 1, 0)",
    "conv_pair_padding_nobias": "input 7x8x3\nconv 3x2, 5, padding=2x1, nobias",
    "conv_dilated_groups": "input 11x11x4\nconv 3x3, 8, dilation=2, groups=2, same",
    "conv_depthwise": "input 9x9x4\nconv 3x3, dw, same; conv 3x3, dw, multiplier=2, stride=2",
    "maxpool_same_even": "input 7x6x3\nmaxpool 2x2, stride=1, same",
    "maxpool_big_padding": "input 7x7x3\nmaxpool 3x3, stride=2, padding=2",
    "maxpool_dilated": "input 9x9x2\nmaxpool 3x3, stride=1, dilation=2, same",
    "maxpool_default_stride": "input 8x8x2\nmaxpool 2x2",
    "avgpool_same_even": "input 7x6x3\navgpool 2x2, stride=1, same",
    "avgpool_same_odd": "input 7x7x3\navgpool 3x3, stride=2, same",
    "avgpool_big_padding": "input 6x6x2\navgpool 3x3, stride=1, padding=2",
    "avgpool_dilated": "input 9x9x2\navgpool 3x3, stride=1, dilation=2, same",
    "lrn_map": "input 5x5x7\nlrn size=5, alpha=0.01, beta=0.75, k=2",
    "softmax_map": "input 4x4x6\nsoftmax",
    "global_pools": "input 6x6x4\nconcat:\n  globalavgpool\n  globalmaxpool\ndense 3",
    "flat_chain": ("input 6x6x4\nflatten; dense 32, relu6; batchnorm; dropout 0.3; dense 16\n"
                   "leaky_relu negative_slope=0.2; lrn size=3; dense 8; elu alpha=0.5; identity\n"
                   "dense 8, sigmoid; dense 8, tanh; dense 4, softmax"),
    "batchnorm_variants": ("input 5x5x4\nbatchnorm epsilon=0.001, momentum=0.99; batchnorm scale=false\n"
                           "batchnorm center=false; batchnorm scale=false, center=false; relu"),
    "conv_dilated_groups_same_nobias": "input 11x11x4\nconv 3x3, 8, dilation=2, groups=2, same, nobias",
    "avgpool_pad_beyond_window": "input 5x5x2\navgpool 2x2, stride=1, padding=(1, 1)",
    "merges_softmax_map": ("input 8x8x4\nconv 3x3, 4, same, bn, relu\nadd:\n  identity\n  conv 3x3, 4, same\n"
                           "concat:\n  conv 1x1, 3\n  maxpool 3x3, stride=1, same\n"
                           "residual:\n  conv 3x3, 7, same, bn, relu\n  conv 3x3, 7, same, bn\nrelu; softmax"),
    # squeeze-excitation: a 1x1xC gate and a flat C gate broadcast over a map; the mobile activations folded
    # into convs and dense layers (Keras) and standing alone
    "multiply_gates": ("input 6x5x8\nconv 3x3, 8, same, bn, hardswish\n"
                       "residual multiply:\n  globalavgpool keepdims\n  conv 1x1, 2, relu\n  conv 1x1, 8, hardsigmoid\n"
                       "multiply:\n  silu\n  globalmaxpool\n  globalavgpool keepdims\n"
                       "residual multiply:\n  globalavgpool\n  dense 3, swish\n  dense 8, sigmoid\n"
                       "hardswish; hardsigmoid; globalavgpool; dense 4, silu"),
    "multiply_flat": "input 12\ndense 12, hardsigmoid\nresidual multiply:\n  dense 12, hardswish\nsilu",
    "convnext_kinds": ("input 5x5x6\nconv 3x3, 6, same, gelu; layernorm epsilon=1e-6; conv 1x1, 6\n"
                       "gelu approximate=tanh; layer_scale 0.5; stochastic_depth 0.2\n"
                       "globalavgpool; layernorm; layer_scale 3.0; drop_path 0.1; dense 4"),
    "merges": ("input 8x8x4\nconv 3x3, 4, same, bn, relu\nadd:\n  identity\n  conv 3x3, 4, same\n"
               "concat:\n  conv 1x1, 3\n  maxpool 3x3, stride=1, same\n"
               "residual:\n  conv 3x3, 7, same, bn, relu\n  conv 3x3, 7, same, bn\nrelu"),
    # ---- issue 12: ceil-mode pooling, averages that count padding, transposed convs, upsampling, cropconcat
    "maxpool_ceil": "input 13x14x2\nmaxpool 3x3, stride=2, ceil",
    "maxpool_ceil_padded": "input 13x14x2\nmaxpool 3x3, stride=2, padding=1, ceil",
    # the last window would start in the right padding: dropped (PyTorch's rule)
    "maxpool_ceil_last_window_dropped": "input 13x13x2\nmaxpool 3x3, stride=3, padding=2, ceil",
    "maxpool_ceil_asymmetric": "input 13x14x2\nmaxpool 3x3, stride=2, padding=(0, 1, 1, 0), ceil",
    "maxpool_ceil_dilated": "input 13x14x2\nmaxpool 3x3, stride=2, dilation=2, ceil",
    "avgpool_ceil": "input 13x14x2\navgpool 3x3, stride=2, ceil",
    "avgpool_ceil_padded": "input 13x14x2\navgpool 3x3, stride=2, padding=1, ceil",
    "avgpool_ceil_asymmetric": "input 13x14x2\navgpool 3x3, stride=2, padding=(0, 1, 1, 0), ceil",
    "avgpool_ceil_dilated": "input 13x14x2\navgpool 3x3, stride=2, dilation=2, ceil",
    "avgpool_count_pad": "input 7x7x2\navgpool 3x3, stride=1, padding=1, count_pad",
    "avgpool_count_pad_ceil": "input 13x14x2\navgpool 3x3, stride=2, padding=1, ceil, count_pad",
    "avgpool_count_pad_same_even": "input 7x6x2\navgpool 2x2, stride=1, same, count_pad",
    "avgpool_count_pad_big": "input 6x6x2\navgpool 3x3, stride=1, padding=2, count_pad",
    "avgpool_count_pad_big_ceil": "input 6x7x2\navgpool 3x3, stride=2, padding=2, count_pad, ceil",
    "convtranspose_unet": "input 5x6x4\nconvtranspose 2x2, 3, stride=2",
    "convtranspose_padded": "input 5x6x4\nupconv 3x3, 3, stride=2, padding=1, output_padding=1",
    "convtranspose_kernel_below_stride": "input 5x6x4\nupconv 1x1, 3, stride=3, output_padding=(2, 1), nobias",
    "convtranspose_pair_padding": "input 4x4x2\nupconv 4x4, 3, stride=2, padding=(1, 2)",
    "upsample_nearest": "input 5x7x3\nupsample 2",
    "upsample_nearest_size": "input 5x7x3\nupsample size=11x13",
    "upsample_bilinear": "input 5x7x3\nupsample 3, bilinear",
    "upsample_bilinear_pair": "input 5x7x3\nupsample scale=(2, 3), bilinear",
    "upsample_bilinear_down": "input 5x7x3\nupsample size=3x4, bilinear",
    "upsample_bilinear_size_one": "input 5x7x3\nupsample size=1x1, bilinear",
    "upsample_align_corners": "input 5x7x3\nupsample size=11x13, bilinear, align_corners=true",
    "cropconcat_residual": "input 11x10x4\nresidual cropconcat:\n  conv 3x3, 4\n  conv 2x2, 3\n",
    "cropconcat_branches": "input 9x9x2\ncropconcat:\n  conv 4x4, 2\n  identity\n  conv 3x2, 5\n",
}

# Cases a single layer makes, with the numpy reference that defines what it must compute.
NUMERIC_CASES = [name for name in OP_CASES if name.startswith(("conv_", "maxpool_", "avgpool_", "lrn_", "softmax_",
                                                               "convtranspose_", "upsample_"))]

# ---- channel split, channel shuffle, zero-padding shortcuts (ShuffleNet v2; He et al.'s option A)
_CHANNEL_CASES = {
    "split_third": "input 5x6x12\nsplit 3, part=1",
    "shuffle_three": "input 4x5x12\nshuffle 3",
    "zeropad_odd_extra": "input 7x6x4\nzeropad 9, stride=2",
    "zeropad_stride_pair": "input 7x7x3\nzeropad 8, stride=(3, 2)",
}
OP_CASES.update(_CHANNEL_CASES)
NUMERIC_CASES += list(_CHANNEL_CASES)
OP_CASES["shufflenet_units"] = (  # Ma et al. 2018, Fig. 3(c) and 3(d); an in-place ReLU must not write into a split
    "input 8x8x8\nconcat:\n  conv 3x3, dw, stride=2, same, bn; conv 1x1, 4, bn, relu\n"
    "  conv 1x1, 4, bn, relu; conv 3x3, dw, stride=2, same, bn; conv 1x1, 4, bn, relu\nshuffle 2\n"
    "concat:\n  split 2, part=0\n  split 2, part=1; relu; conv 1x1, 4, bn, relu\nshuffle 2")
OP_CASES["residual_zeropad"] = (  # He et al. 2015, option A: subsample, zero channels on both sides
    "input 9x9x4\nresidual shortcut=zeropad:\n  conv 3x3, 8, stride=2, same, bn, relu\n  conv 3x3, 8, same, bn\n"
    "relu\nresidual add shortcut=zeropad:\n  conv 3x3, 8, same, bn\nrelu")


def plan_of(case: str) -> Plan:
    return archc.check(OP_CASES[case])


def ops_covered() -> set[str]:
    return {node.op for case in OP_CASES for node in plan_of(case).nodes}


def missing_ops() -> set[str]:
    return set(OPS) - ops_covered()


# ---------------------------------------------------------------- checks


def check_counts(harness, model, plan: Plan) -> None:
    trainable, non_trainable = harness.counts(model)
    assert (trainable, non_trainable) == (plan.trainable_params, plan.non_trainable_params), (
        f"{plan.name}: the {harness.name} model has {trainable:,} trainable and {non_trainable:,} non-trainable "
        f"parameters; inference says {plan.trainable_params:,} and {plan.non_trainable_params:,}")


def check_layer_shapes(harness, model, plan: Plan, batch: int = 1, skip: set[str] = frozenset()) -> None:
    got = harness.layer_shapes(model, plan, batch)
    wrong = [(n.name, n.shape, got.get(n.name)) for n in plan.nodes
             if n.name not in skip and got.get(n.name) != n.shape]
    assert not wrong, f"{plan.name}: {len(wrong)} layers differ from inference (name, inferred, actual): {wrong[:5]}"


def check_numerics(harness, case: str, seed: int = 0) -> None:
    plan = plan_of(case)
    model = harness.build(plan)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *plan.input_shape)).astype(np.float32)
    got = harness.forward_nhwc(model, x)
    want = x
    for node in plan.nodes:
        want = reference(harness, model, node, want)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{case} differs from the language")


# ---------------------------------------------------------------- the language's definitions, in numpy


def reference(harness, model, node, x: np.ndarray) -> np.ndarray:
    a = node.args
    if node.op == "conv":
        kernel, bias = harness.conv_kernel(model, node.name)
        y = conv2d(x, kernel, a.stride, a.dilation, a.pads(), a.groups, node.shape[:2])
        return y + bias if bias is not None else y
    if node.op in ("maxpool", "avgpool"):  # ceil mode: windows run past the padding, over nothing
        overhang = ceil_overhang(x.shape[1:3], node.shape[:2], a)
        pads = (a.pads()[0], a.pads()[1] + overhang[0], a.pads()[2], a.pads()[3] + overhang[1])
    if node.op == "maxpool":
        win = windows(pad(x, pads, -np.inf), a.kernel, a.stride, a.dilation, node.shape[:2])
        return win.max(axis=(3, 4))
    if node.op == "avgpool":  # padding is not counted in the average unless `count_pad`; the overhang never
        sums = windows(pad(x, pads, 0.0), a.kernel, a.stride, a.dilation, node.shape[:2]).sum(axis=(3, 4))
        top, bottom, left, right = a.pads()
        ones = np.ones((1, *x.shape[1:3], 1), np.float32)
        if a.count_pad:
            ones = np.ones((1, x.shape[1] + top + bottom, x.shape[2] + left + right, 1), np.float32)
            pads = (0, overhang[0], 0, overhang[1])
        counts = windows(pad(ones, pads, 0.0), a.kernel, a.stride, a.dilation, node.shape[:2]).sum(axis=(3, 4))
        return sums / counts
    if node.op == "convtranspose":  # every input value scatters value * kernel at (i * stride, j * stride)
        kernel, bias = harness.conv_kernel(model, node.name)  # kh x kw x out x in
        (kh, kw), (sh, sw), (ph, pw) = a.kernel, a.stride, a.crop()
        n, h, w, _ = x.shape
        full = np.zeros((n, (h - 1) * sh + kh + a.output_padding[0], (w - 1) * sw + kw + a.output_padding[1],
                         kernel.shape[2]), np.float64)
        for i in range(kh):
            for j in range(kw):
                full[:, i:i + (h - 1) * sh + 1:sh, j:j + (w - 1) * sw + 1:sw, :] += np.einsum(
                    "nhwc,oc->nhwo", x, kernel[i, j])
        y = full[:, ph:ph + node.shape[0], pw:pw + node.shape[1], :]
        return (y + bias if bias is not None else y).astype(np.float32)
    if node.op == "upsample":  # PyTorch's F.interpolate, written out
        return resize(resize(x, 1, node.shape[0], a), 2, node.shape[1], a)
    if node.op == "lrn":  # Krizhevsky: a / (k + alpha * sum of squares of `size` neighbouring channels)^beta
        c = x.shape[-1]
        sq = np.pad(x**2, [(0, 0)] * (x.ndim - 1) + [(a.size // 2, (a.size - 1) // 2)])
        sums = sum(sq[..., i:i + c] for i in range(a.size))
        return x / (a.k + a.alpha * sums) ** a.beta
    if node.op == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if node.op == "split":  # the `part`-th of `parts` equal slices of the channels
        size = x.shape[-1] // a.parts
        return x[..., a.part * size:(a.part + 1) * size]
    if node.op == "shuffle":  # output channel j * groups + i is input channel i * (C / groups) + j
        per_group = x.shape[-1] // a.groups
        return x[..., [i * per_group + j for j in range(per_group) for i in range(a.groups)]]
    if node.op == "zeropad":  # rows and columns 0, s, 2s, ...; floor(extra / 2) zero channels before, the rest after
        sub = x[:, ::a.stride[0], ::a.stride[1], :]
        extra = a.filters - x.shape[-1]
        return np.pad(sub, [(0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)])
    raise AssertionError(f"no reference for `{node.op}`")


def ceil_overhang(in_hw, out_hw, a) -> tuple[int, int]:
    """How far ceil mode's last window runs past the padding, per axis (0 in floor mode)."""
    top, bottom, left, right = a.pads()
    return tuple(max(0, (o - 1) * s + d * (k - 1) + 1 - (n + p)) for n, o, s, d, k, p in
                 zip(in_hw, out_hw, a.stride, a.dilation, a.kernel, (top + bottom, left + right), strict=True))


def resize(x: np.ndarray, axis: int, out: int, a) -> np.ndarray:
    n = x.shape[axis]
    rows = []
    for i in range(out):
        if a.mode == "nearest":
            rows.append(np.take(x, min(int(np.floor(i * n / out)), n - 1), axis=axis))
            continue
        src = i * (n - 1) / (out - 1) if a.align_corners else max((i + 0.5) * n / out - 0.5, 0.0)
        if a.align_corners and out == 1:
            src = 0.0
        lo = min(int(np.floor(src)), n - 1)
        hi = min(lo + 1, n - 1)
        t = src - lo
        rows.append((1 - t) * np.take(x, lo, axis=axis) + t * np.take(x, hi, axis=axis))
    return np.stack(rows, axis=axis).astype(np.float32)


def pad(x: np.ndarray, pads, value: float) -> np.ndarray:
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def windows(x: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Padded N x H x W x C -> N x OH x OW x KH x KW x C: every window's inputs."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    out = np.empty((x.shape[0], oh, ow, kh, kw, x.shape[3]), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j, :] = x[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw, :]
    return out


def conv2d(x, kernel, stride, dilation, pads, groups, out_hw) -> np.ndarray:
    win = windows(pad(x, pads, 0.0), kernel.shape[:2], stride, dilation, out_hw)
    cin, cout = kernel.shape[2], kernel.shape[3]
    per_group = cout // groups
    parts = [np.einsum("nhwijc,ijco->nhwo", win[..., g * cin:(g + 1) * cin],
                       kernel[..., g * per_group:(g + 1) * per_group]) for g in range(groups)]
    return np.concatenate(parts, axis=-1)
