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
  * max pooling pads with -infinity; average pooling averages only real inputs (padding not counted), or with
    `count_pad` counts zero padding (PyTorch's count_include_pad); `ceil` rounds pooled sizes up (ceil_mode).
  * MACs count the multiply-accumulates of conv and dense layers (the papers' "FLOPs" rows); other layers 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .diagnostics import RuleError

Shape = tuple[int, ...]
Pads = tuple[int, int, int, int]  # top, bottom, left, right

# What every backend builds (docs/language.md, "Limits"): `check` accepts no more. Each argument's range is declared
# on its field below (tests/property/test_arg_edges.py builds every kind at the edges of every range).
MAX_DIM = 2**31 - 1  # a size: a kernel, stride, dilation, padding, count of filters or units, a tensor's side
MAX_ELEMENTS = 2**40  # values in one example's tensor (H * W * C): a batch of them stays well inside int64
MAX_REAL = 1e6  # the magnitude of a real argument (a slope, alpha, beta, k, epsilon): finite in float32
MIN_EPSILON = 1e-12  # the least positive real argument (epsilon, lrn's alpha, beta, k): not 0 as a float32

Count = Annotated[int, Field(ge=1, le=MAX_DIM)]
Real = Annotated[float, Field(ge=-MAX_REAL, le=MAX_REAL, allow_inf_nan=False)]
NonNegativeReal = Annotated[float, Field(ge=0, le=MAX_REAL, allow_inf_nan=False)]
PositiveReal = Annotated[float, Field(ge=MIN_EPSILON, le=MAX_REAL, allow_inf_nan=False)]  # > 0 even in float32


def check_shape(shape: Shape) -> Shape:
    """A layer's (or the input's) shape, held to MAX_DIM a side and MAX_ELEMENTS in all."""
    if max(shape) > MAX_DIM or math.prod(shape) > MAX_ELEMENTS:
        raise RuleError(f"a {fmt_shape(shape)} tensor is larger than archc builds (at most {MAX_DIM:,} a side and "
                        f"{MAX_ELEMENTS:,} values)", help="frameworks index tensors with 64-bit integers; "
                        "make the input or the padding smaller", code="A301")
    return shape


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


def _sizes(values: tuple[int, ...], what: str, low: int) -> tuple[int, ...]:
    """Every value in [low, MAX_DIM]."""
    for v in values:
        if not low <= v <= MAX_DIM:
            raise ValueError(f"{what} must be {'at least 1' if low else 'non-negative'} and at most {MAX_DIM:,}, "
                             f"not {v:,}")
    return values


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

    def canonical(self, in_shapes: list[Shape] | None = None) -> dict[str, Any]:
        """The resolved arguments with one spelling for each meaning (padding `same` or `(1, 1)` as the amounts
        it pads, for inputs of `in_shapes`): what two networks compare (archc.flat.same_layers)."""
        return self.model_dump()


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
        return _sizes(pair, info.field_name, 1)

    @field_validator("padding", mode="before")
    @classmethod
    def _padding(cls, v):
        if isinstance(v, str):
            return v
        if isinstance(v, (tuple, list)) and len(v) == 4:
            if not all(isinstance(p, int) and not isinstance(p, bool) for p in v):
                raise ValueError(f"padding must be integers, not `{v}`")
            if min(v) < 0:
                raise ValueError(f"padding cannot be negative, not {tuple(v)}")
            return _sizes(tuple(v), "padding", 0)
        pair = _pair(v, "padding")
        if min(pair) < 0:
            raise ValueError(f"padding cannot be negative, not {v}")
        return _sizes(pair, "padding", 0)

    def canonical(self, in_shapes: list[Shape] | None = None) -> dict[str, Any]:
        return {**self.model_dump(), "padding": self.pads()}

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
        if max(ph, pw) > MAX_DIM:  # frameworks pad explicitly: the padded map is a tensor too
            raise RuleError(f"the padded input, {ph:,}x{pw:,}, is larger than archc builds (at most {MAX_DIM:,} a "
                            "side)", help="use a smaller kernel, dilation or padding", code="A301")
        if eh > ph or ew > pw:
            raise RuleError(
                f"kernel {self.kernel[0]}x{self.kernel[1]} does not fit a {h}x{w} input",
                help="pad the layer (`same`), use a smaller kernel or remove a downsampling layer before it",
                code="A201",
            )
        return ((ph - eh) // self.stride[0] + 1, (pw - ew) // self.stride[1] + 1)


class ConvArgs(WindowArgs):
    filters: Count | None = None  # None: as many as the input has channels (depthwise) times `multiplier`
    groups: Count = 1
    depthwise: bool = False
    multiplier: Count = 1
    bias: bool = True

    def canonical(self, in_shapes: list[Shape] | None = None) -> dict[str, Any]:
        out = super().canonical(in_shapes)  # resolved, `dw` is groups = channels and filters = channels * multiplier
        del out["depthwise"], out["multiplier"]
        return out


class PoolArgs(WindowArgs):
    stride: tuple[int, int] | None = None  # None: the kernel size, as every framework does
    ceil: bool = False  # PyTorch's ceil_mode: round the output size up (see `window_output`)

    def window_output(self, h: int, w: int) -> tuple[int, int]:
        """Floor mode: the window arithmetic. Ceil mode (PyTorch's ceil_mode, Caffe's pooling): the division
        rounds up, so a last window may run past the padding, but it must start inside the input or the
        padding before it: `if (out - 1) * stride >= in + pad_before: out -= 1`."""
        out = super().window_output(h, w)  # checks that the window fits
        if not self.ceil:
            return out
        top, bottom, left, right = self.pads()
        sizes = []
        for size, before, after, k, s, d in ((h, top, bottom, self.kernel[0], self.stride[0], self.dilation[0]),
                                             (w, left, right, self.kernel[1], self.stride[1], self.dilation[1])):
            n = -(-(size + before + after - d * (k - 1) - 1) // s) + 1
            if (n - 1) * s >= size + before:
                n -= 1
            sizes.append(n)
        return (sizes[0], sizes[1])

    def canonical(self, in_shapes: list[Shape] | None = None) -> dict[str, Any]:
        """Ceil mode as the padding it adds after (`ceil_pads`): a max never takes the overhang, an average never
        counts it, as it does not count padding; counting padding, `ceil` is kept where it adds some."""
        out = super().canonical(in_shapes)
        if in_shapes and len(in_shapes[0]) == 3:
            pads = self.ceil_pads(*in_shapes[0][:2])
            if getattr(self, "count_pad", False):
                out["ceil"] = pads != self.pads()
            else:
                out.update(padding=pads, ceil=False)
        return out

    def ceil_pads(self, h: int, w: int) -> Pads:
        """The padding with ceil mode's overhang added after it: (top, bottom, left, right) such that floor-mode
        windows over the padded input are the ceil-mode windows. The overhang is never counted in an average
        and never wins a max (PyTorch's rule); equal to `pads()` in floor mode."""
        top, bottom, left, right = self.pads()
        oh, ow = self.window_output(h, w)
        eh = max(0, (oh - 1) * self.stride[0] + self.dilation[0] * (self.kernel[0] - 1) + 1 - (h + top + bottom))
        ew = max(0, (ow - 1) * self.stride[1] + self.dilation[1] * (self.kernel[1] - 1) + 1 - (w + left + right))
        return (top, bottom + eh, left, right + ew)


class AvgPoolArgs(PoolArgs):
    count_pad: bool = False  # True: padding counts as zeros in the average (PyTorch's count_include_pad=True)


class DenseArgs(OpArgs):
    units: Count
    bias: bool = True


class BatchNormArgs(OpArgs):
    epsilon: PositiveReal = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.9  # Keras's sense: running =
    # momentum * running + (1 - momentum) * batch
    scale: bool = True
    center: bool = True


MAX_LRN_SIZE = 1023  # frameworks pad the channels by size // 2 on each side: a window wider is only padding


class LRNArgs(OpArgs):
    """Krizhevsky et al.: b = a / (k + alpha * sum of a^2 over `size` neighbouring channels) ^ beta."""

    size: Annotated[int, Field(ge=1, le=MAX_LRN_SIZE)] = 5  # odd: centred on the channel (ONNX Runtime's rule)
    alpha: PositiveReal = 1e-4  # alpha, beta and k positive: ONNX Runtime's rule (and never 0 ** -beta)
    beta: PositiveReal = 0.75
    k: PositiveReal = 2.0

    @field_validator("size")
    @classmethod
    def _odd(cls, v):
        if v % 2 == 0:
            raise ValueError(f"size must be odd (a window centred on each channel), not {v}")
        return v


class DropoutArgs(OpArgs):
    rate: float


class LeakyReluArgs(OpArgs):
    negative_slope: NonNegativeReal = 0.01  # Keras refuses a negative slope


class EluArgs(OpArgs):
    alpha: Real = 1.0


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
    commutes: ClassVar[bool] = False  # a merge whose result does not depend on its inputs' order (a sum, a product):
    # `archc import` may write `x + f(x)` as `residual:`, which passes (f(x), x)
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

    # ---- how a spec writes a layer of this kind (`archc import` writes specs back from layers)
    def spelling(self, fields: dict[str, Any]) -> list[tuple[str | None, Any]]:
        """The arguments a layer line gives for these field values, in the language's order: positional
        values first (`positional`, while none is missing), then keywords, then bare-word flags (`same`,
        `nobias`). -> (keyword or None, value); a flag is (None, its word), the only bare string."""
        order = list(type(self).args.model_fields)
        words = {(key, _hashable(value)): word for word, (key, value) in self.flags.items()}
        out: list[tuple[str | None, Any]] = []
        flags: list[tuple[str | None, Any]] = []
        positional = True
        for key in self.positional:
            if key in fields and positional:
                out.append((None, fields[key]))
            else:
                positional = False
        done = {key for key, _ in zip(self.positional, out, strict=False)}
        for key in sorted(fields, key=order.index):
            if key in done:
                continue
            word = words.get((key, _hashable(fields[key])))
            if word is not None:
                flags.append((None, word))
            else:
                out.append((key, fields[key]))
        return out + flags

    def spell(self, args: OpArgs) -> str:
        """The canonical layer line for resolved arguments, arguments at their default left out:
        `conv 3x3, 64, stride=2, same`. (Arguments the kind derives from its input, such as a depthwise conv's
        filters, are written out; archc.decompile leaves out what the input implies.)"""
        defaults = {key: f.default for key, f in type(args).model_fields.items() if not f.is_required()}
        fields = {key: value for key, value in args.model_dump().items()
                  if key not in defaults or _hashable(value) != _hashable(defaults[key])}
        parts = []
        for key, value in self.spelling(fields):
            text = value if key is None and isinstance(value, str) else _spelled(value, key is None)
            parts.append(text if key is None else f"{key}={text}")
        return " ".join([self.name, ", ".join(parts)]).strip()


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _spelled(value: Any, positional: bool) -> str:
    """A value as the language writes it: `3x3` (a positional size; a keyword's square pair is one number)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        if not positional and len(value) == 2 and value[0] == value[1]:
            return str(value[0])
        if all(isinstance(v, int) and v >= 1 for v in value) and len(value) in (2, 3):
            return "x".join(str(v) for v in value)
        return "(" + ", ".join(str(v) for v in value) + ")"
    return str(value)


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
                            code="A114")
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
        return f"{self.name} {_window(args)}" + (" ceil" if args.ceil else "") + (
            " count_pad" if getattr(args, "count_pad", False) else "")

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
    """Whether some window along one axis has all its taps in the padding. Arithmetic, not a scan: sizes,
    paddings and window counts may each be billions (a hostile spec must not stall `check`)."""
    first = -before  # where window 0 starts; window o starts at first + o * stride
    last = first + (out - 1) * stride
    reach = (kernel - 1) * dilation
    if dilation <= size:  # taps cannot jump over the input: only the first or the last window can miss it
        return first + reach < 0 or last >= size
    # Taps farther apart than the input is wide: at most one tap of a window can land in it, the one congruent
    # to the window's start modulo `dilation`. A window starting at s sees the input iff s % dilation < size
    # and -reach <= s <= dilation - 1. The starts are increasing, so the bounds need only the first and last;
    # the residues are counted by a floor sum over all windows.
    if first < -reach or last > dilation - 1:
        return True
    shift = -(first // dilation) * dilation  # makes the first start non-negative without changing residues
    seen = (_floor_sum(out, dilation, stride, first + shift)
            - _floor_sum(out, dilation, stride, first + shift + dilation - size) + out)
    return seen != out


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """sum(floor((a * i + b) / m) for i in range(n)) for a, b >= 0, m >= 1, in O(log) steps (the classic
    Euclid-like reduction). For 0 < size <= m, floor(x/m) - floor((x - size)/m) is 1 iff x % m < size."""
    total = 0
    while n > 0:
        if a >= m:
            total += (n - 1) * n // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            break
        n, b, m, a = y_max // m, y_max % m, a, m
    return total


class MaxPool(_Pool):
    name = prefix = "maxpool"
    summary = "max pooling: kernel; stride (default: the kernel), padding (pads with -inf), `ceil` mode"
    flags = {**_Pool.flags, "ceil": ("ceil", True)}
    shape_rule = ("H'xW' by the window arithmetic, padding counts as -infinity; `ceil`: the division rounds up "
                  "(PyTorch's ceil_mode), the last window must start inside the input or the padding before it, "
                  "and what it covers past the padding is ignored; C unchanged")
    examples = (("maxpool 3x3, stride=2, same", "112x112x64"), ("maxpool 3x3, stride=2", "55x55x96"),
                ("maxpool 2x2", "28x28x16"), ("maxpool 3x3, stride=2, ceil", "56x56x64"))


class AvgPool(_Pool):
    name = prefix = "avgpool"
    summary = ("average pooling: kernel; stride (default: the kernel), padding (not counted in the average "
               "unless `count_pad`), `ceil` mode")
    args = AvgPoolArgs
    flags = {**_Pool.flags, "ceil": ("ceil", True), "count_pad": ("count_pad", True)}
    shape_rule = ("H'xW' by the window arithmetic; by default padding is left out of each average (the sum over "
                  "the real inputs divided by their number); `count_pad`: padding counts as zeros (the sum divided "
                  "by the window's taps inside the padded input: PyTorch's count_include_pad=True, TensorFlow's "
                  "and Keras's never); `ceil` as for `maxpool`, the overhang past the padding never counted; "
                  "C unchanged")
    examples = (("avgpool 2x2, stride=2", "56x56x256"), ("avgpool 3x3, stride=1, same", "28x28x192"),
                ("avgpool 3x3, stride=1, padding=1, count_pad", "35x35x192"),
                ("avgpool 3x3, stride=2, ceil", "28x28x64"))

    def resolve(self, args: AvgPoolArgs, in_shapes):
        if args.count_pad and args.dilation != (1, 1):
            raise RuleError("`count_pad` is not defined for dilated average pooling", code="A104",
                            help="leave `count_pad` out (padding not counted) or the dilation")
        return super().resolve(args, in_shapes)


class GlobalPoolArgs(OpArgs):
    keepdims: bool = False  # HxWxC to 1x1xC instead of C (torch's AdaptiveAvgPool2d(1), Keras's keepdims=True)


class _GlobalPool(Op):
    args = GlobalPoolArgs
    flags = {"keepdims": ("keepdims", True)}
    category = "pool"
    shape_rule = "HxWxC to C; with `keepdims`, to 1x1xC (a map a 1x1 conv can read: squeeze-excitation)"

    def label(self, args: GlobalPoolArgs) -> str:
        return self.name + (" keepdims" if args.keepdims else "")

    def shape(self, args: GlobalPoolArgs, in_shapes):
        c = _feature_map(in_shapes[0], self.name)[2]
        return (1, 1, c) if args.keepdims else (c,)


class GlobalAvgPool(_GlobalPool):
    name = "globalavgpool"
    prefix = "gap"
    summary = "global average pooling: HxWxC to C (`keepdims`: to 1x1xC)"
    examples = (("globalavgpool", "7x7x2048"), ("globalavgpool keepdims", "14x14x96"))


class GlobalMaxPool(_GlobalPool):
    name = "globalmaxpool"
    prefix = "gmp"
    summary = "global max pooling: HxWxC to C (`keepdims`: to 1x1xC)"
    examples = (("globalmaxpool", "7x7x512"), ("globalmaxpool keepdims", "7x7x512"))


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
                  "non-trainable (running mean and variance). `momentum` follows Keras and TensorFlow: it is the "
                  "weight of the old running value, running = momentum * running + (1 - momentum) * batch. "
                  "PyTorch's `momentum` is the batch's weight, 1 minus archc's: PyTorch's default 0.1 is archc's "
                  "default 0.9, and MnasNet's PyTorch 0.0003 (its paper's TensorFlow 0.9997) is written "
                  "`momentum=0.9997`; the torch backend writes `1 - momentum`. `epsilon` (default 1e-5, "
                  "PyTorch's; Keras's is 0.001) is added to the variance in every framework")
    examples = (("batchnorm", "56x56x64"), ("bn epsilon=0.001", "1024"),
                ("bn epsilon=0.001, momentum=0.9997", "112x112x32"))

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


def _activation(name: str, summary: str, *examples: tuple[str, str]) -> type[_Activation]:
    """An activation without arguments: a name, what it computes, worked rows (they differ in nothing else)."""
    return type(name, (_Activation,), {"name": name, "prefix": name, "summary": summary,
                                       "examples": examples or ((name, "8x8x3"),)})


ReLU = _activation("relu", "max(x, 0)")
ReLU6 = _activation("relu6", "min(max(x, 0), 6)")
Sigmoid = _activation("sigmoid", "1 / (1 + exp(-x))", ("sigmoid", "10"))
Tanh = _activation("tanh", "tanh(x)", ("tanh", "10"))


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
    same_shapes = keeps_order = commutes = True
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


# ---------------------------------------------------------------- resampling and U-Net's merge (issue 12)


class ConvTransposeArgs(OpArgs):
    """PyTorch's ConvTranspose2d: `padding` removes rows and columns from both sides of the full output, and
    `output_padding` adds them after it (on the bottom and right), to pick among the input sizes a strided
    conv maps to the same output."""

    kernel: tuple[int, int]
    filters: int
    stride: tuple[int, int] = (1, 1)
    padding: Literal["valid"] | tuple[int, int] = "valid"
    output_padding: tuple[int, int] = (0, 0)
    bias: bool = True

    @field_validator("kernel", "stride", mode="before")
    @classmethod
    def _positive(cls, v, info):
        pair = _pair(v, info.field_name)
        if min(pair) < 1:
            raise ValueError(f"{info.field_name} must be at least 1, not {v}")
        return pair

    @field_validator("padding", "output_padding", mode="before")
    @classmethod
    def _non_negative(cls, v, info):
        if v == "valid":
            return v if info.field_name == "padding" else (0, 0)
        pair = _pair(v, info.field_name)
        if min(pair) < 0:
            raise ValueError(f"{info.field_name} cannot be negative, not {v}")
        return pair

    def crop(self) -> tuple[int, int]:
        return (0, 0) if self.padding == "valid" else self.padding  # type: ignore[return-value]

    def canonical(self, in_shapes: list[Shape] | None = None) -> dict[str, Any]:
        return {**self.model_dump(), "padding": self.crop()}


class ConvTranspose(Op):
    name = "convtranspose"
    prefix = "upconv"
    summary = ("transposed convolution (\"up-convolution\", U-Net): kernel, filters; stride, padding, "
               "output_padding, bias")
    args = ConvTransposeArgs
    positional = ("kernel", "filters")
    flags = {"valid": ("padding", "valid"), "nobias": ("bias", False)}
    category = "conv"
    fresh_output = True
    shape_rule = ("H' = (H - 1) * stride - 2 * padding + kernel + output_padding (PyTorch's ConvTranspose2d), "
                  "W' alike; C' = `filters`; `output_padding` must be smaller than the stride")
    param_rule = ("C * filters * kh * kw weights, + filters biases unless `nobias`; "
                  "MACs H * W * C * kh * kw * filters (every input value times every kernel tap)")
    examples = (("convtranspose 2x2, 512, stride=2", "28x28x1024"), ("upconv 3x3, 32, stride=2, padding=1, "
                 "output_padding=1", "16x16x64"), ("upconv 4x4, 16, stride=2, padding=1, nobias", "8x8x32"))

    def label(self, args: ConvTransposeArgs) -> str:
        text = f"convtranspose {fmt_shape(args.kernel)}"
        if args.stride != (1, 1):
            text += f"/{_show(args.stride)}"
        if args.crop() != (0, 0):
            text += f" pad {_show(args.crop())}"
        if args.output_padding != (0, 0):
            text += f" outpad {_show(args.output_padding)}"
        return text + f", {args.filters}" + ("" if args.bias else " nobias")

    def resolve(self, args: ConvTransposeArgs, in_shapes):
        _feature_map(in_shapes[0], self.name)
        if args.filters < 1:
            raise RuleError("`convtranspose` needs at least 1 filter", code="A104")
        if any(o >= s for o, s in zip(args.output_padding, args.stride, strict=True)):
            raise RuleError(f"output_padding {_show(args.output_padding)} must be smaller than the stride "
                            f"{_show(args.stride)}", code="A104",
                            help="output_padding only picks among the sizes a stride rounds together")
        return args

    def shape(self, args: ConvTransposeArgs, in_shapes):
        h, w, _ = _feature_map(in_shapes[0], self.name)
        out = [(n - 1) * s - 2 * p + k + o for n, s, p, k, o in
               zip((h, w), args.stride, args.crop(), args.kernel, args.output_padding, strict=True)]
        if min(out) < 1:
            raise RuleError(f"padding {_show(args.crop())} crops the whole {fmt_shape(tuple(out))} output away",
                            help="use less padding", code="A201")
        return (out[0], out[1], args.filters)

    def weights(self, args: ConvTransposeArgs, in_shapes):
        # PyTorch's layout [in, out, kh, kw]; its default init takes fan_in from dim 1: out * kh * kw
        fan_in = args.filters * args.kernel[0] * args.kernel[1]
        out = {"weight": Weight((in_shapes[0][2], args.filters, *args.kernel), in_axis=0, fan_in=fan_in)}
        if args.bias:
            out["bias"] = Weight((args.filters,), role="bias", fan_in=fan_in)
        return out

    def macs(self, args: ConvTransposeArgs, in_shapes, out):
        h, w, c = in_shapes[0]
        return h * w * c * args.kernel[0] * args.kernel[1] * args.filters


class UpsampleArgs(OpArgs):
    scale: tuple[int, int] | None = None  # an integer factor per axis
    size: tuple[int, int] | None = None  # or the output's HxW
    mode: Literal["nearest", "bilinear"] = "nearest"
    align_corners: bool = False  # bilinear only; False is PyTorch's default (and TensorFlow's resize)

    @field_validator("scale", "size", mode="before")
    @classmethod
    def _positive(cls, v, info):
        if v is None:
            return v
        pair = _pair(v, info.field_name)
        if min(pair) < 1:
            raise ValueError(f"{info.field_name} must be at least 1, not {v}")
        return pair

    def source_index(self, out: int, size: int) -> list[tuple[int, int, float]]:
        """For each output position along an axis of `size` inputs and `out` outputs: the two inputs it reads
        and the weight of the second. Nearest: input floor(i * size / out) (PyTorch's `nearest`, ONNX's
        asymmetric/floor). Bilinear: the half-pixel source (i + 0.5) * size / out - 0.5, clamped at 0
        (PyTorch's align_corners=False, TensorFlow's resize), or i * (size - 1) / (out - 1) (align_corners)."""
        rows = []
        for i in range(out):
            if self.mode == "nearest":
                rows.append((min(i * size // out, size - 1), min(i * size // out, size - 1), 0.0))
                continue
            if self.align_corners:
                src = i * (size - 1) / (out - 1) if out > 1 else 0.0
            else:
                src = max((i + 0.5) * size / out - 0.5, 0.0)
            lo = min(int(src), size - 1)
            rows.append((lo, min(lo + 1, size - 1), src - lo))
        return rows


class Upsample(Op):
    name = prefix = "upsample"
    summary = ("resizing by an integer `scale` or to a `size`: `nearest` (default) or `bilinear` "
               "(align_corners false by default, as PyTorch's)")
    args = UpsampleArgs
    positional = ("scale",)
    flags = {"nearest": ("mode", "nearest"), "bilinear": ("mode", "bilinear")}
    category = "reshape"
    shape_rule = ("H'xW' = HxW times `scale`, or `size`; C unchanged. An output position i along an axis of n "
                  "inputs and n' outputs reads, `nearest`: input floor(i * n / n'); `bilinear`: the half-pixel "
                  "source (i + 0.5) * n / n' - 0.5 clamped at 0 (with `align_corners=true`: i * (n - 1) / "
                  "(n' - 1)), interpolating its two neighbours")
    examples = (("upsample 2", "14x14x256"), ("upsample 2, bilinear", "7x7x64"),
                ("upsample size=33x33, bilinear, align_corners=true", "17x17x21"), ("upsample scale=(2, 1)", "8x8x4"))

    def label(self, args: UpsampleArgs) -> str:
        how = f"x{_show(args.scale)}" if args.scale is not None else f"to {fmt_shape(args.size)}"
        return f"upsample {how} {args.mode}" + (" align_corners" if args.align_corners else "")

    def resolve(self, args: UpsampleArgs, in_shapes):
        _feature_map(in_shapes[0], self.name)
        if (args.scale is None) == (args.size is None):
            raise RuleError("`upsample` needs either a `scale` or a `size`, not " + (
                "both" if args.scale is not None else "neither"), code="A104",
                help="`upsample 2` doubles the height and width; `upsample size=56x56` resizes to 56x56")
        if args.align_corners and args.mode != "bilinear":
            raise RuleError("`align_corners` applies to `bilinear` upsampling only", code="A104",
                            help="add `bilinear`, or leave `align_corners` out")
        return args

    def shape(self, args: UpsampleArgs, in_shapes):
        h, w, c = _feature_map(in_shapes[0], self.name)
        if args.size is not None:
            return (*args.size, c)
        return (h * args.scale[0], w * args.scale[1], c)


class CropConcat(_Merge):
    name = prefix = "cropconcat"
    summary = ("concatenation along the channels after cropping every input to the smallest height and width, "
               "centred (U-Net's \"copy and crop\")")
    shortcut_first = joins = True  # `residual cropconcat:` puts the (larger) input first, as U-Net concatenates
    shape_rule = ("feature maps; H' and W' are the smallest height and width among the inputs, C' the sum of their "
                  "channels; an input of H x W keeps rows (H - H') // 2 to (H - H') // 2 + H' - 1 and columns "
                  "alike (an odd difference leaves the extra row at the bottom, the extra column at the right)")

    def shape(self, args, in_shapes):
        for s in in_shapes:
            if len(s) != 3:
                raise RuleError(f"`cropconcat` crops feature maps, but an input is a flat vector of {s[0]}",
                                help="use `concat` for flat vectors", code="A203")
        h = min(s[0] for s in in_shapes)
        w = min(s[1] for s in in_shapes)
        return (h, w, sum(s[2] for s in in_shapes))

    @staticmethod
    def crops(in_shapes: list[Shape], out: Shape) -> list[tuple[int, int]]:
        """Where each input's kept window starts: (top, left), each (size - kept) // 2."""
        return [((s[0] - out[0]) // 2, (s[1] - out[1]) // 2) for s in in_shapes]


# ---------------------------------------------------------------- channel split, channel shuffle, zero-padding
# shortcuts (ShuffleNet v2; He et al.'s option A). Kept together so that merges with other new kinds stay easy.


class SplitArgs(OpArgs):
    parts: int
    part: int


class ShuffleArgs(OpArgs):
    groups: int


class ZeroPadArgs(OpArgs):
    filters: int
    stride: tuple[int, int] = (1, 1)

    @field_validator("stride", mode="before")
    @classmethod
    def _stride(cls, v):
        pair = _pair(v, "stride")
        if min(pair) < 1:
            raise ValueError(f"stride must be at least 1, not {v}")
        return pair


class Split(Op):
    """Ma et al. 2018 (ShuffleNet v2), Fig. 3(c): "channel split". Written as the first layer of each branch,
    so a unit reads like the figure: one branch `split 2, part=0` (the identity on the first half), the other
    `split 2, part=1` followed by its convolutions. torch's `x.chunk(parts, dim=1)[part]`."""

    name = prefix = "split"
    summary = "channel split: the `part`-th (from 0) of `parts` equal slices of the channels"
    args = SplitArgs
    positional = ("parts",)
    category = "reshape"
    shape_rule = ("HxW unchanged; C' = C / `parts`, channels `part * C'` to `(part + 1) * C' - 1`; `parts` must "
                  "divide C and `part` be in [0, `parts`)")
    examples = (("split 2, part=0", "28x28x116"), ("split 2, part=1", "28x28x116"), ("split 3, part=2", "8x8x12"))

    def label(self, args: SplitArgs) -> str:
        return f"split {args.parts}, part={args.part}"

    def resolve(self, args: SplitArgs, in_shapes):
        _, _, c = _feature_map(in_shapes[0], "split")
        if args.parts < 1:
            raise RuleError(f"a split needs at least 1 part, not {args.parts}", code="A104")
        if not 0 <= args.part < args.parts:
            raise RuleError(f"part {args.part} does not exist in a split into {args.parts}",
                            help=f"parts are numbered from 0 to {args.parts - 1}", code="A104")
        if c % args.parts:
            raise RuleError(f"{c} channels do not split into {args.parts} equal parts",
                            help=f"the input's channels must be a multiple of {args.parts}", code="A206")
        return args

    def shape(self, args: SplitArgs, in_shapes):
        h, w, c = in_shapes[0]
        return (h, w, c // args.parts)


class Shuffle(Op):
    """Zhang et al. 2017 (ShuffleNet), Fig. 1(c), as ShuffleNet v2 uses it after each unit: torchvision's
    `channel_shuffle`, `x.view(n, groups, c // groups, h, w).transpose(1, 2)` flattened back to `c` channels."""

    name = prefix = "shuffle"
    summary = "channel shuffle: `groups` groups of channels interleaved (output channel j * groups + i is input " \
              "channel i * C / groups + j)"
    args = ShuffleArgs
    positional = ("groups",)
    category = "reshape"
    shape_rule = "unchanged; `groups` must divide C"
    examples = (("shuffle 2", "28x28x116"), ("shuffle 3", "4x4x12"))

    def label(self, args: ShuffleArgs) -> str:
        return f"shuffle {args.groups}"

    def resolve(self, args: ShuffleArgs, in_shapes):
        _, _, c = _feature_map(in_shapes[0], "shuffle")
        if args.groups < 1:
            raise RuleError(f"a shuffle needs at least 1 group, not {args.groups}", code="A104")
        if c % args.groups:
            raise RuleError(f"{args.groups} groups do not divide {c} channels evenly",
                            help=f"the input's channels must be a multiple of {args.groups}", code="A206")
        return args


class ZeroPad(Op):
    """He et al. 2015, Sec. 3.3 option (A) and Sec. 4.2: "the shortcut still performs identity mapping, with extra
    zero entries padded for increasing dimensions ... performed with a stride of 2". `residual shortcut=zeropad:`
    puts one where the body changes the shape; it can be written by hand under `shortcut:` too."""

    name = prefix = "zeropad"
    summary = ("zero-padding shortcut (He et al.'s option A): every `stride`-th row and column from the first, "
               "then zero channels up to `filters`, half before and half after")
    args = ZeroPadArgs
    positional = ("filters",)
    category = "reshape"
    shape_rule = ("H' = ceil(H / stride), W' = ceil(W / stride) (rows and columns 0, stride, 2 * stride, ...); "
                  "C' = `filters` >= C: the input's channels, with floor((filters - C) / 2) zero channels before "
                  "them and the rest after")
    examples = (("zeropad 32, stride=2", "32x32x16"), ("zeropad 64, stride=2", "16x16x32"), ("zeropad 7", "4x4x4"))

    def label(self, args: ZeroPadArgs) -> str:
        return f"zeropad{'/' + _show(args.stride) if args.stride != (1, 1) else ''}, {args.filters}"

    def resolve(self, args: ZeroPadArgs, in_shapes):
        _, _, c = _feature_map(in_shapes[0], "zeropad")
        if args.filters < c:
            raise RuleError(f"a zero-padding shortcut cannot take {c} channels down to {args.filters}",
                            help="it only adds channels; a shortcut that removes some needs a projection",
                            code="A104")
        return args

    def shape(self, args: ZeroPadArgs, in_shapes):
        h, w, _ = in_shapes[0]
        return (-(-h // args.stride[0]), -(-w // args.stride[1]), args.filters)

    @staticmethod
    def pads(args: ZeroPadArgs, channels: int) -> tuple[int, int]:
        """(before, after): how many zero channels go on each side of the input's."""
        extra = args.filters - channels
        return (extra // 2, extra - extra // 2)


def zero_padding(src: Shape, target: Shape, normalized: bool) -> list[tuple[str, OpArgs]] | None:
    """The shortcut of `residual shortcut=zeropad:` whose body changes the shape (He et al., option A): the
    input, subsampled by the stride that gives the body's size, padded with zero channels to the body's width.
    None when none gives `target` (fewer channels, or a size no stride reaches)."""
    if len(src) != 3 or len(target) != 3 or target[2] < src[2]:
        return None
    stride = (math.ceil(src[0] / target[0]), math.ceil(src[1] / target[1]))
    args = ZeroPadArgs(filters=target[2], stride=stride)
    if ZeroPad().shape(args, [src]) != target:
        return None
    return [("zeropad", args)]

# ---------------------------------------------------------------- squeeze-excitation and mobile activations
# (issue 12: MobileNet v3, EfficientNet, MnasNet, RegNetY). Each computes exactly what torch's module of the
# same name computes; Keras 3's `hard_sigmoid` is torch's too (relu6(x + 3) / 6; Keras 2's was 0.2x + 0.5).


SiLU = _activation("silu", "x * sigmoid(x), also called swish (EfficientNet)",
                   ("silu", "8x8x3"), ("conv 3x3, 16, same, bn, swish", "8x8x3"))
Hardswish = _activation("hardswish", "x * relu6(x + 3) / 6 (MobileNet v3)",
                        ("hardswish", "8x8x3"), ("conv 1x1, 16, hardswish", "8x8x3"))
Hardsigmoid = _activation("hardsigmoid", "relu6(x + 3) / 6, PyTorch's definition (MobileNet v3's gate)")


class Multiply(_Merge):
    name = prefix = "multiply"
    summary = ("element-wise product of its inputs, broadcasting a 1x1xC (or flat C) gate over HxWxC: "
               "`residual multiply:` over a body that computes the gate is squeeze-excitation")
    keeps_order = commutes = True
    shape_rule = ("the inputs broadcast: each size of an input is 1 or the output's (a flat C vector counts as 1x1xC "
                  "beside a map); the output has the largest size of each axis. `residual multiply:` scales its "
                  "input by the body's output, which the shortcut never projects")

    def shape(self, args, in_shapes):
        maps = [s for s in in_shapes if len(s) == 3]
        rank = 3 if maps else 1
        lifted = [(1, 1, *s) if len(s) < rank else s for s in in_shapes]
        out = tuple(max(sizes) for sizes in zip(*lifted, strict=True))
        for shape, full in zip(in_shapes, lifted, strict=True):
            if any(d not in (1, o) for d, o in zip(full, out, strict=True)):
                raise RuleError(
                    f"cannot multiply a {fmt_shape(shape)} tensor with a {fmt_shape(out)} one",
                    help="each size must be 1 or the other input's: a gate is 1x1xC (`globalavgpool keepdims`) "
                         "or a flat vector of C over an HxWxC map",
                    code="A202",
                )
        return out


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
    param_rule = ("C trainable: `weight`, C x 1 x 1 for a feature map (the shape of torchvision's "
                  "CNBlock.layer_scale), C for a vector. torchvision keeps it on the block module, before the block's "
                  "layers in its state_dict: pass the module to `archc.load_weights`, which matches through the "
                  "structure; a state dict copied by position needs it moved after them")
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
               ConvTranspose, Upsample, CropConcat, Split, Shuffle, ZeroPad,
               SiLU, Hardswish, Hardsigmoid, Multiply,
               GELU, LayerNorm, LayerScale, StochasticDepth)
}

# Other spellings a spec may use; each names a row above.
ALIASES: dict[str, str] = {
    "fc": "dense",
    "linear": "dense",
    "bn": "batchnorm",
    "gap": "globalavgpool",
    "gmp": "globalmaxpool",
    "upconv": "convtranspose",
    "swish": "silu",
    "drop_path": "stochastic_depth",
}

# Words that may trail a layer's arguments to append a layer: `conv 3x3, 64, bn, relu`.
POST_OPS: set[str] = {"bn"} | {name for name, op in OPS.items() if op.activation} | {
    alias for alias, name in ALIASES.items() if OPS[name].activation}  # `swish`

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


# What a residual's shortcut is when its body changes the shape and no `shortcut:` is written:
# `residual shortcut=NAME:` picks one (He et al.'s options: B, the default, and A).
SHORTCUTS = {"projection": projection, "zeropad": zero_padding}
