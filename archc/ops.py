"""THE table of layer kinds. Each kind is defined once, here: its arguments (a pydantic model), how a spec
writes them (positional order, bare-word flags), and its rules for output shape, parameters and
multiply-accumulates. Inference, `check`, the JSON output, the docs and every backend read these rows;
no other module knows a shape or parameter formula.

Shapes leave the batch out: `(H, W, C)` for feature maps, `(N,)` for flat vectors.

The language's arithmetic, defined once (docs/language.md repeats it):
  * padding `valid` adds nothing; an integer `p` or a pair `(ph, pw)` pads both sides by that much;
    `same` pads `d*(k-1)` in total per axis, `floor` of half before and the rest after, so the output
    size is `ceil(in / stride)` whatever the stride (TensorFlow's `same` only agrees at stride 1).
  * output size = floor((in + pad_before + pad_after - d*(k-1) - 1) / stride) + 1.
  * max pooling pads with -infinity; average pooling averages only real inputs (padding not counted).
  * MACs count the multiply-accumulates of conv and dense layers (the papers' "FLOPs" rows); other layers 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from .diagnostics import RuleError

Shape = tuple[int, ...]
Pads = tuple[int, int, int, int]  # top, bottom, left, right


def fmt_shape(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape)


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer or a size like `3x3`")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in value):
        return (value[0], value[1])
    raise ValueError(f"{what} must be an integer or a size like `3x3`, not `{value}`")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return fmt_shape(value) if len(set(value)) > 1 else str(value[0])
    return str(value)


def _window(args: WindowArgs) -> str:
    text = fmt_shape(args.kernel)
    if args.stride and args.stride != (1, 1):
        text += f"/{_show(args.stride)}"
    if args.padding != "valid":
        text += f" {args.padding}" if isinstance(args.padding, str) else f" pad {_show(args.padding)}"
    if args.dilation != (1, 1):
        text += f" dil {_show(args.dilation)}"
    return text


class OpArgs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


@dataclass(frozen=True, slots=True)
class Weight:
    """One tensor a layer holds, in PyTorch's layout (the names are PyTorch's: `weight`, `bias`,
    `running_mean`); every backend, `transfer_weights` and `load_weights` read these."""

    shape: Shape
    trainable: bool = True
    role: Literal["weight", "bias", "statistic"] = "weight"  # the papers' "weights" leave biases out
    in_axis: int | None = None  # the axis indexing the input's features: permuted with a flat vector's order
    init: Literal["uniform", "ones", "zeros"] | float = "uniform"  # PyTorch's default for the layer kind;
    # a number: every element starts at that value (`layer_scale 1e-6`)
    fan_in: int = 1  # uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for conv and dense

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# ---------------------------------------------------------------- argument models


class WindowArgs(OpArgs):
    """Shared by convolution and pooling: a sliding window."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: Literal["same", "valid"] | tuple[int, int] | Pads = "valid"
    dilation: tuple[int, int] = (1, 1)

    @field_validator("kernel", "stride", "dilation", mode="before")
    @classmethod
    def _square(cls, v, info):
        pair = _pair(v, info.field_name)
        if min(pair) < 1:
            raise ValueError(f"{info.field_name} must be at least 1, not {v}")
        return pair

    @field_validator("padding", mode="before")
    @classmethod
    def _padding(cls, v):
        if isinstance(v, str):
            return v
        if isinstance(v, (tuple, list)) and len(v) == 4:
            return tuple(v)
        pair = _pair(v, "padding")
        if min(pair) < 0:
            raise ValueError(f"padding cannot be negative, not {v}")
        return pair

    def pads(self) -> Pads:
        """The padding as explicit (top, bottom, left, right) amounts."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            th = self.dilation[0] * (self.kernel[0] - 1)
            tw = self.dilation[1] * (self.kernel[1] - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        if len(self.padding) == 4:
            return self.padding  # type: ignore[return-value]
        ph, pw = self.padding  # type: ignore[misc]
        return (ph, ph, pw, pw)

    def window_output(self, h: int, w: int) -> tuple[int, int]:
        top, bottom, left, right = self.pads()
        eh = self.dilation[0] * (self.kernel[0] - 1) + 1
        ew = self.dilation[1] * (self.kernel[1] - 1) + 1
        ph, pw = h + top + bottom, w + left + right
        if eh > ph or ew > pw:
            raise RuleError(
                f"kernel {self.kernel[0]}x{self.kernel[1]} does not fit a {h}x{w} input",
                help="pad the layer (`same`), use a smaller kernel or remove a downsampling layer before it",
                code="A201",
            )
        return ((ph - eh) // self.stride[0] + 1, (pw - ew) // self.stride[1] + 1)


class ConvArgs(WindowArgs):
    filters: int | None = None  # None: as many as the input has channels (depthwise) times `multiplier`
    groups: int = 1
    depthwise: bool = False
    multiplier: int = 1
    bias: bool = True


class PoolArgs(WindowArgs):
    stride: tuple[int, int] | None = None  # None: the kernel size, as every framework does


class DenseArgs(OpArgs):
    units: int
    bias: bool = True


class BatchNormArgs(OpArgs):
    epsilon: float = 1e-5
    momentum: float = 0.9  # Keras's sense: running = momentum * running + (1 - momentum) * batch
    scale: bool = True
    center: bool = True


class LRNArgs(OpArgs):
    """Krizhevsky et al.: b = a / (k + alpha * sum of a^2 over `size` neighbouring channels) ^ beta."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0


class DropoutArgs(OpArgs):
    rate: float


class LeakyReluArgs(OpArgs):
    negative_slope: float = 0.01


class EluArgs(OpArgs):
    alpha: float = 1.0


class NoArgs(OpArgs):
    pass


# ---------------------------------------------------------------- layer kinds


class Op:
    """One layer kind, the whole of it: arguments, how a spec writes them, traits, weights, rules, docs.
    Subclasses override what differs from "same shape, no weights". Every pass and backend reads these
    attributes; none keeps its own list of kind names (docs/contributing.md, "Adding a layer kind")."""

    name: ClassVar[str]
    prefix: ClassVar[str]  # the default layer name in a spec's scope: conv, bn, fc, ...
    summary: ClassVar[str]
    args: ClassVar[type[OpArgs]] = NoArgs
    positional: ClassVar[tuple[str, ...]] = ()
    flags: ClassVar[dict[str, tuple[str, Any]]] = {}  # bare word -> (argument, value)

    # ---- traits
    category: ClassVar[str] = "other"  # the family pictures colour by: conv, pool, dense, norm, merge, ...
    inputs: ClassVar[str] = "one"  # "one", or "many" for a merge (written `residual NAME:` / `NAME:` + branches)
    activation: ClassVar[bool] = False  # may be written as a trailing flag of another layer: `conv 3x3, 64, relu`
    keeps_order: ClassVar[bool] = False  # output feature i belongs to input feature i: permuting the input's
    # features permutes the output's alike (activations, dropout, batchnorm, softmax; not lrn, which mixes neighbours)
    fresh_output: ClassVar[bool] = False  # a new tensor its own backward does not need: a later op may overwrite it
    passes_input: ClassVar[bool] = False  # may return its input tensor itself (dropout and drop path in evaluation,
    # identity) and otherwise a new tensor its backward does not need: overwritable exactly when its input is
    normalizes: ClassVar[bool] = False  # removes any per-channel shift: a bias just before it is redundant
    probabilities: ClassVar[bool] = False  # turns scores into probabilities: left out when logits are asked for
    same_shapes: ClassVar[bool] = False  # a merge whose inputs must agree in shape: `residual` projects to it
    shortcut_first: ClassVar[bool] = False  # `residual` passes (shortcut, body), not (body, shortcut)
    joins: ClassVar[bool] = False  # a merge that lays its inputs' channels side by side
    flattens: ClassVar[bool] = False  # HxWxC to a vector, row-major: frameworks differ in the features' order

    # ---- documentation (docs/language.md is generated from these)
    shape_rule: ClassVar[str] = "unchanged"
    param_rule: ClassVar[str] = "none"
    examples: ClassVar[tuple[tuple[str, str], ...]] = ()  # (spec line, input size): worked rows in the docs

    def label(self, args: OpArgs) -> str:
        """The layer as a table row shows it: `conv 3x3/2, 64`."""
        shown = []
        for key, field_info in type(args).model_fields.items():
            value = getattr(args, key)
            if value != field_info.default:
                shown.append(f"{key}={_show(value)}")
        return " ".join([self.name, ", ".join(shown)]).strip()

    def resolve(self, args: OpArgs, in_shapes: list[Shape]) -> OpArgs:
        """Fill arguments that depend on the input (depthwise filters, default strides)."""
        return args

    def shape(self, args: OpArgs, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]

    def weights(self, args: OpArgs, in_shapes: list[Shape]) -> dict[str, Weight]:
        """The tensors the layer holds, by their PyTorch names, in creation order."""
        return {}

    def params(self, args: OpArgs, in_shapes: list[Shape]) -> tuple[int, int]:
        """(trainable, non-trainable) parameter counts: the sizes of its weights."""
        trainable = non_trainable = 0
        for weight in self.weights(args, in_shapes).values():
            if weight.trainable:
                trainable += weight.size
            else:
                non_trainable += weight.size
        return (trainable, non_trainable)

    def macs(self, args: OpArgs, in_shapes: list[Shape], out: Shape) -> int:
        return 0


def _feature_map(shape: Shape, op: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise RuleError(
            f"`{op}` needs a feature map (HxWxC), but its input is a flat vector of {shape[0]}",
            help="put it before the `flatten` or the global pooling",
            code="A205",
        )
    return shape  # type: ignore[return-value]


class Conv(Op):
    name = prefix = "conv"
    summary = "2-D convolution: kernel, filters; stride, padding, dilation, groups, depthwise (`dw`), bias"
    args = ConvArgs
    positional = ("kernel", "filters")
    flags = {"same": ("padding", "same"), "valid": ("padding", "valid"), "dw": ("depthwise", True),
             "nobias": ("bias", False)}
    category = "conv"
    fresh_output = True
    shape_rule = ("H'xW' by the window arithmetic (see *Arithmetic*); C' = `filters` (depthwise: C x `multiplier` "
                  "unless `filters` is given)")
    param_rule = ("kh * kw * (C / groups) * filters weights, + filters biases unless `nobias` (or a trailing `bn`); "
                  "MACs H' * W' * filters * kh * kw * C / groups")
    examples = (("conv 3x3, 64", "56x56x64"), ("conv 3x3, 64, same", "56x56x64"),
                ("conv 7x7, 64, stride=2, same, nobias", "224x224x3"), ("conv 11x11, 96, stride=4", "227x227x3"),
                ("conv 3x3, dw, same", "112x112x32"), ("conv 3x3, 64, groups=2, padding=1", "27x27x48"),
                ("conv 3x3, 16, dilation=2, same", "32x32x8"))

    def label(self, args: ConvArgs) -> str:
        text = f"conv {_window(args)}, {args.filters if args.filters is not None else 'dw'}"
        if args.depthwise:
            text += " dw"
        elif args.groups > 1:
            text += f" groups={args.groups}"
        return text + ("" if args.bias else " nobias")

    def resolve(self, args: ConvArgs, in_shapes):
        _, _, c = _feature_map(in_shapes[0], "conv")
        if args.depthwise:
            if args.groups not in (1, c):
                raise RuleError("a depthwise conv has one group per input channel; do not give `groups`",
                                code="A104")
            filters = args.filters if args.filters is not None else c * args.multiplier
            args = args.model_copy(update={"groups": c, "filters": filters})
        if args.filters is None:
            raise RuleError("`conv` needs a number of filters", help="write it after the kernel: `conv 3x3, 64`",
                            code="A104")
        if args.filters < 1 or args.groups < 1:
            raise RuleError("filters and groups must be at least 1", code="A104")
        if c % args.groups or args.filters % args.groups:
            raise RuleError(
                f"{args.groups} groups do not divide {c} input channels and {args.filters} filters evenly",
                help="both channel counts must be multiples of `groups`",
                code="A206",
            )
        return args

    def shape(self, args: ConvArgs, in_shapes):
        h, w, _ = _feature_map(in_shapes[0], "conv")
        return (*args.window_output(h, w), args.filters)

    def weights(self, args: ConvArgs, in_shapes):
        per_group = in_shapes[0][2] // args.groups
        fan_in = per_group * args.kernel[0] * args.kernel[1]
        out = {"weight": Weight((args.filters, per_group, *args.kernel), in_axis=1, fan_in=fan_in)}
        if args.bias:
            out["bias"] = Weight((args.filters,), role="bias", fan_in=fan_in)
        return out

    def macs(self, args: ConvArgs, in_shapes, out):
        c = in_shapes[0][2]
        return out[0] * out[1] * out[2] * args.kernel[0] * args.kernel[1] * (c // args.groups)


class _Pool(Op):
    args = PoolArgs
    positional = ("kernel",)
    flags = {"same": ("padding", "same"), "valid": ("padding", "valid")}
    category = "pool"
    fresh_output = True

    def label(self, args: PoolArgs) -> str:
        return f"{self.name} {_window(args)}"

    def resolve(self, args: PoolArgs, in_shapes):
        _feature_map(in_shapes[0], self.name)
        return args if args.stride is not None else args.model_copy(update={"stride": args.kernel})

    def shape(self, args: PoolArgs, in_shapes):
        h, w, c = _feature_map(in_shapes[0], self.name)
        out = args.window_output(h, w)
        top, _, left, _ = args.pads()
        for size, n, stride, before, kernel, dilation in zip((h, w), out, args.stride, (top, left), args.kernel,
                                                             args.dilation, strict=True):
            if _window_sees_padding_only(size, n, stride, before, kernel, dilation):
                raise RuleError(f"a `{self.name}` window would cover padding only (its max would be -inf, "
                                "its average 0/0)", help="pad a pooling layer by less than its kernel", code="A207")
        return (*out, c)


def _window_sees_padding_only(size: int, out: int, stride: int, before: int, kernel: int, dilation: int) -> bool:
    """Whether some window along one axis has all its taps in the padding."""
    def empty(o: int) -> bool:
        start = o * stride - before
        return not any(0 <= start + i * dilation < size for i in range(kernel))

    if dilation <= size:  # taps cannot jump over the input: only the first or the last window can miss it
        return empty(0) or empty(out - 1)
    return any(empty(o) for o in range(min(out, 4096)))


class MaxPool(_Pool):
    name = prefix = "maxpool"
    summary = "max pooling: kernel; stride (default: the kernel), padding (pads with -inf)"
    shape_rule = "H'xW' by the window arithmetic, padding counts as -infinity; C unchanged"
    examples = (("maxpool 3x3, stride=2, same", "112x112x64"), ("maxpool 3x3, stride=2", "55x55x96"),
                ("maxpool 2x2", "28x28x16"))


class AvgPool(_Pool):
    name = prefix = "avgpool"
    summary = "average pooling: kernel; stride (default: the kernel), padding (not counted in the average)"
    shape_rule = "H'xW' by the window arithmetic, padding left out of each average; C unchanged"
    examples = (("avgpool 2x2, stride=2", "56x56x256"), ("avgpool 3x3, stride=1, same", "28x28x192"))


class _GlobalPool(Op):
    category = "pool"
    shape_rule = "HxWxC to C"

    def shape(self, args, in_shapes):
        return (_feature_map(in_shapes[0], self.name)[2],)


class GlobalAvgPool(_GlobalPool):
    name = "globalavgpool"
    prefix = "gap"
    summary = "global average pooling: HxWxC to C"
    examples = (("globalavgpool", "7x7x2048"),)


class GlobalMaxPool(_GlobalPool):
    name = "globalmaxpool"
    prefix = "gmp"
    summary = "global max pooling: HxWxC to C"
    examples = (("globalmaxpool", "7x7x512"),)


class Flatten(Op):
    name = prefix = "flatten"
    summary = "HxWxC to a flat vector of H*W*C"
    category = "reshape"
    flattens = keeps_order = True  # a flat input passes through unchanged
    shape_rule = "HxWxC to H * W * C (row-major over H, W, C)"
    examples = (("flatten", "6x6x256"),)

    def shape(self, args, in_shapes):
        return (math.prod(in_shapes[0]),)


class Dense(Op):
    name = "dense"
    prefix = "fc"
    summary = "fully connected: units; bias"
    args = DenseArgs
    positional = ("units",)
    flags = {"nobias": ("bias", False)}
    category = "dense"
    fresh_output = True
    shape_rule = "N to `units`; the input must be flat"
    param_rule = "N * units weights, + units biases unless `nobias`; MACs N * units"
    examples = (("dense 4096", "9216"), ("dense 10, nobias", "512"))

    def label(self, args: DenseArgs) -> str:
        return f"dense {args.units}" + ("" if args.bias else " nobias")

    def resolve(self, args: DenseArgs, in_shapes):
        if len(in_shapes[0]) != 1:
            raise RuleError(
                f"`dense` needs a flat vector, but its input is a {fmt_shape(in_shapes[0])} feature map",
                help="add `flatten` or `globalavgpool` before it",
                code="A205",
            )
        if args.units < 1:
            raise RuleError("`dense` needs at least 1 unit", code="A104")
        return args

    def shape(self, args: DenseArgs, in_shapes):
        return (args.units,)

    def weights(self, args: DenseArgs, in_shapes):
        n = in_shapes[0][0]
        out = {"weight": Weight((args.units, n), in_axis=1, fan_in=n)}
        if args.bias:
            out["bias"] = Weight((args.units,), role="bias", fan_in=n)
        return out

    def macs(self, args: DenseArgs, in_shapes, out):
        return in_shapes[0][0] * args.units


class BatchNorm(Op):
    name = "batchnorm"
    prefix = "bn"
    summary = "batch normalisation over channels: epsilon, momentum; running statistics are non-trainable"
    args = BatchNormArgs
    category = "norm"
    keeps_order = fresh_output = normalizes = True
    param_rule = ("2C trainable (scale, shift; fewer with `scale=false` / `center=false`) and 2C "
                  "non-trainable (running mean and variance)")
    examples = (("batchnorm", "56x56x64"), ("bn epsilon=0.001", "1024"))

    def weights(self, args: BatchNormArgs, in_shapes):
        c = (in_shapes[0][-1],)
        out = {}
        if args.scale:
            out["weight"] = Weight(c, in_axis=0, init="ones")
        if args.center:
            out["bias"] = Weight(c, role="bias", in_axis=0, init="zeros")
        out["running_mean"] = Weight(c, trainable=False, role="statistic", in_axis=0, init="zeros")
        out["running_var"] = Weight(c, trainable=False, role="statistic", in_axis=0, init="ones")
        return out


class LRN(Op):
    name = prefix = "lrn"
    summary = "local response normalisation across channels (AlexNet): size, alpha, beta, k"
    args = LRNArgs
    category = "norm"
    examples = (("lrn size=5, alpha=0.0001, beta=0.75, k=2", "55x55x96"),)


class Dropout(Op):
    name = prefix = "dropout"
    summary = "dropout: rate (`0.5` or `50%`)"
    args = DropoutArgs
    positional = ("rate",)
    category = "regularization"
    keeps_order = passes_input = True
    shape_rule = "unchanged; `rate` in [0, 1)"
    examples = (("dropout 0.5", "4096"), ("dropout 40%", "4096"))

    def resolve(self, args: DropoutArgs, in_shapes):
        if not 0 <= args.rate < 1:
            raise RuleError(f"a dropout rate must be in [0, 1), not {args.rate}", code="A104")
        return args


class Identity(Op):
    name = prefix = "identity"
    summary = "passes its input through"
    keeps_order = passes_input = True
    examples = (("identity", "8x8x3"),)


class _Activation(Op):
    activation = keeps_order = True
    category = "activation"


class ReLU(_Activation):
    name = prefix = "relu"
    summary = "max(x, 0)"
    examples = (("relu", "8x8x3"),)


class ReLU6(_Activation):
    name = prefix = "relu6"
    summary = "min(max(x, 0), 6)"
    examples = (("relu6", "8x8x3"),)


class LeakyReLU(_Activation):
    name = prefix = "leaky_relu"
    summary = "x if x > 0 else negative_slope * x (default 0.01)"
    args = LeakyReluArgs
    examples = (("leaky_relu negative_slope=0.2", "8x8x3"),)


class ELU(_Activation):
    name = prefix = "elu"
    summary = "x if x > 0 else alpha * (exp(x) - 1)"
    args = EluArgs
    examples = (("elu", "8x8x3"),)


class Sigmoid(_Activation):
    name = prefix = "sigmoid"
    summary = "1 / (1 + exp(-x))"
    examples = (("sigmoid", "10"),)


class Tanh(_Activation):
    name = prefix = "tanh"
    summary = "tanh(x)"
    examples = (("tanh", "10"),)


class Softmax(_Activation):
    name = prefix = "softmax"
    summary = "softmax over the channels"
    probabilities = True
    examples = (("softmax", "1000"),)


class _Merge(Op):
    inputs = "many"
    category = "merge"
    fresh_output = True


class Add(_Merge):
    name = prefix = "add"
    summary = "element-wise sum of its inputs (residual connections, `add:` branches)"
    same_shapes = keeps_order = True
    shape_rule = "every input has the same shape, which is the output's"

    def shape(self, args, in_shapes):
        first = in_shapes[0]
        for other in in_shapes[1:]:
            if other != first:
                raise RuleError(
                    f"cannot add a {fmt_shape(other)} tensor to a {fmt_shape(first)} one",
                    help="every branch of a sum must give the same shape",
                    code="A202",
                )
        return first


class Concat(_Merge):
    name = prefix = "concat"
    summary = "concatenation of its inputs along the channels (Inception, DenseNet)"
    shortcut_first = joins = True  # DenseNet: the input's channels, then the new ones
    shape_rule = "inputs agree in every size but the last; the output's last size is their sum"

    def shape(self, args, in_shapes):
        first = in_shapes[0]
        for other in in_shapes[1:]:
            if len(other) != len(first) or other[:-1] != first[:-1]:
                raise RuleError(
                    f"cannot concatenate a {fmt_shape(other)} tensor with a {fmt_shape(first)} one",
                    help="branches that are concatenated must agree in every size but the channels",
                    code="A203",
                )
        return (*first[:-1], sum(s[-1] for s in in_shapes))


# ---------------------------------------------------------------- ConvNeXt's kinds (issue 12): gelu, layernorm,
# layer_scale, stochastic_depth. Each computes what torchvision's module computes (nn.GELU, ConvNeXt's
# LayerNorm2d / nn.LayerNorm, CNBlock's layer_scale parameter, torchvision.ops.StochasticDepth in "row" mode).


class GeluArgs(OpArgs):
    approximate: Literal["none", "tanh"] = "none"


class LayerNormArgs(OpArgs):
    epsilon: float = 1e-5  # PyTorch's nn.LayerNorm default, as batchnorm's is; ConvNeXt writes 1e-6


class LayerScaleArgs(OpArgs):
    init: float = 1e-6  # every scale's initial value; ConvNeXt's (torchvision's `layer_scale=1e-6`)


class StochasticDepthArgs(OpArgs):
    rate: float


class GELU(_Activation):
    name = prefix = "gelu"
    summary = ("Gaussian error linear unit, x * Phi(x) with Phi the standard normal CDF (exact, with erf); "
               "`approximate=tanh`: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))")
    args = GeluArgs
    fresh_output = True  # its backward reads its input, not its output
    examples = (("gelu", "8x8x3"), ("gelu approximate=tanh", "10"))


class LayerNorm(Op):
    name = "layernorm"
    prefix = "ln"
    summary = ("layer normalisation over the channels of each position (ConvNeXt's LayerNorm2d; over the "
               "features of a flat vector): epsilon (default 1e-5, PyTorch's nn.LayerNorm's; ConvNeXt writes 1e-6)")
    args = LayerNormArgs
    category = "norm"
    keeps_order = fresh_output = True  # each position's mean and variance do not depend on the channels' order
    # not `normalizes`: it removes a shift common to all channels, not a per-channel bias
    shape_rule = "unchanged; each position's C values become (x - mean) / sqrt(var + epsilon) * weight + bias"
    param_rule = "2C trainable (weight, bias)"
    examples = (("layernorm epsilon=1e-6", "56x56x96"), ("layernorm", "768"))

    def resolve(self, args: LayerNormArgs, in_shapes):
        if not args.epsilon >= 0:
            raise RuleError(f"`layernorm` needs epsilon >= 0, not {args.epsilon}", code="A104")
        return args

    def weights(self, args: LayerNormArgs, in_shapes):
        c = (in_shapes[0][-1],)
        return {"weight": Weight(c, in_axis=0, init="ones"),
                "bias": Weight(c, role="bias", in_axis=0, init="zeros")}


class LayerScale(Op):
    name = prefix = "layer_scale"
    summary = ("a learnable scale per channel (Touvron et al. 2021; ConvNeXt): init, every scale's initial "
               "value (default 1e-6)")
    args = LayerScaleArgs
    positional = ("init",)
    category = "norm"
    keeps_order = fresh_output = True
    param_rule = ("C trainable: `weight`, C x 1 x 1 for a feature map (the shape of torchvision's CNBlock.layer_scale), "
                  "C for a vector. torchvision keeps it on the block module itself, so its state_dict lists it before "
                  "the block's layers: a positional `archc.load_weights` from torchvision needs it moved after them "
                  "(tests/torchvision_zoo.py does)")
    examples = (("layer_scale 1e-6", "56x56x96"), ("layer_scale 0.1", "10"))

    def label(self, args: LayerScaleArgs) -> str:
        return f"layer_scale {args.init:g}"

    def weights(self, args: LayerScaleArgs, in_shapes):
        shape = in_shapes[0]
        return {"weight": Weight((shape[-1], 1, 1) if len(shape) == 3 else shape, in_axis=0, init=args.init)}


class StochasticDepth(Op):
    name = "stochastic_depth"
    prefix = "stochastic_depth"
    summary = ("drop path (Huang et al. 2016): in training, each sample's whole input is zeroed with "
               "probability `rate` and kept ones are scaled by 1 / (1 - rate); the identity in evaluation")
    args = StochasticDepthArgs
    positional = ("rate",)
    category = "regularization"
    keeps_order = passes_input = True
    shape_rule = "unchanged; `rate` in [0, 1)"
    examples = (("stochastic_depth 0.1", "56x56x96"), ("stochastic_depth 5%", "10"))

    def label(self, args: StochasticDepthArgs) -> str:
        return f"stochastic_depth {args.rate:.4g}"

    def resolve(self, args: StochasticDepthArgs, in_shapes):
        if not 0 <= args.rate < 1:
            raise RuleError(f"a stochastic depth rate must be in [0, 1), not {args.rate}", code="A104")
        return args


OPS: dict[str, Op] = {
    op.name: op()
    for op in (Conv, MaxPool, AvgPool, GlobalAvgPool, GlobalMaxPool, Flatten, Dense, BatchNorm, LRN, Dropout,
               Identity, ReLU, ReLU6, LeakyReLU, ELU, Sigmoid, Tanh, Softmax, Add, Concat,
               GELU, LayerNorm, LayerScale, StochasticDepth)
}

# Other spellings a spec may use; each names a row above.
ALIASES: dict[str, str] = {
    "fc": "dense",
    "linear": "dense",
    "bn": "batchnorm",
    "gap": "globalavgpool",
    "gmp": "globalmaxpool",
    "drop_path": "stochastic_depth",
}

# Words that may trail a layer's arguments to append a layer: `conv 3x3, 64, bn, relu`.
POST_OPS: set[str] = {"bn"} | {name for name, op in OPS.items() if op.activation}

# The merges: kinds with many inputs, written `residual NAME:` or `NAME:` over one branch a line.
MERGES: frozenset[str] = frozenset(name for name, op in OPS.items() if op.inputs == "many")


def lookup(kind: str) -> Op | None:
    return OPS.get(ALIASES.get(kind, kind))


def projection(src: Shape, target: Shape, normalized: bool) -> list[tuple[str, OpArgs]] | None:
    """The automatic shortcut of a residual whose body changes the shape (He et al., option B): a strided 1x1
    conv to the body's width, followed by batchnorm when the body normalises (without a bias then).
    None when no such conv gives `target`."""
    if len(src) != 3 or len(target) != 3:
        return None
    stride = (math.ceil(src[0] / target[0]), math.ceil(src[1] / target[1]))
    conv = ConvArgs(kernel=(1, 1), filters=target[2], stride=stride, bias=not normalized)
    if conv.window_output(src[0], src[1]) != target[:2]:
        return None
    layers: list[tuple[str, OpArgs]] = [("conv", conv)]
    if normalized:
        layers.append(("batchnorm", BatchNormArgs()))
    return layers
