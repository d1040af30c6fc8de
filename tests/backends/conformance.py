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

from pathlib import Path

import numpy as np

import archc
from archc.load import load as load_spec
from archc.ops import OPS
from archc.plan import Plan

SPECS = Path(__file__).resolve().parents[2] / "specs"


def network_specs() -> list[Path]:
    """Every shipped spec that is a network (block files, which have no `input`, are left out)."""
    # archc.load.load, not archc.load: importing the archc.load submodule shadows the package's function
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
    "convnext_kinds": ("input 5x5x6\nconv 3x3, 6, same, gelu; layernorm epsilon=1e-6; conv 1x1, 6\n"
                       "gelu approximate=tanh; layer_scale 0.5; stochastic_depth 0.2\n"
                       "globalavgpool; layernorm; layer_scale 3.0; drop_path 0.1; dense 4"),
    "merges": ("input 8x8x4\nconv 3x3, 4, same, bn, relu\nadd:\n  identity\n  conv 3x3, 4, same\n"
               "concat:\n  conv 1x1, 3\n  maxpool 3x3, stride=1, same\n"
               "residual:\n  conv 3x3, 7, same, bn, relu\n  conv 3x3, 7, same, bn\nrelu"),
}

# Cases a single layer makes, with the numpy reference that defines what it must compute.
NUMERIC_CASES = [name for name in OP_CASES if name.startswith(("conv_", "maxpool_", "avgpool_", "lrn_", "softmax_"))]


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
    if node.op == "maxpool":
        win = windows(pad(x, a.pads(), -np.inf), a.kernel, a.stride, a.dilation, node.shape[:2])
        return win.max(axis=(3, 4))
    if node.op == "avgpool":  # padding is not counted in the average
        sums = windows(pad(x, a.pads(), 0.0), a.kernel, a.stride, a.dilation, node.shape[:2]).sum(axis=(3, 4))
        ones = np.ones((1, *x.shape[1:3], 1), np.float32)
        counts = windows(pad(ones, a.pads(), 0.0), a.kernel, a.stride, a.dilation, node.shape[:2]).sum(axis=(3, 4))
        return sums / counts
    if node.op == "lrn":  # Krizhevsky: a / (k + alpha * sum of squares of `size` neighbouring channels)^beta
        c = x.shape[-1]
        sq = np.pad(x**2, [(0, 0)] * (x.ndim - 1) + [(a.size // 2, (a.size - 1) // 2)])
        sums = sum(sq[..., i:i + c] for i in range(a.size))
        return x / (a.k + a.alpha * sums) ** a.beta
    if node.op == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(f"no reference for `{node.op}`")


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
