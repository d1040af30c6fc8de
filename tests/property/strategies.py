"""Hypothesis strategies that write random specs as TEXT, through the real grammar.

`specs()` draws a spec that is valid by construction: while it writes each line it tracks the current shape
with the language's arithmetic (archc/ops.py's docstring, restated independently here as the test oracle),
so every kernel fits, every group count divides its channels, every residual can be projected and every
branch of a merge agrees (or, for `cropconcat`, is cropped to the smallest). It writes `-> HxWxC` checks and
scope sizes from that arithmetic, which `check` then verifies: a disagreement between this oracle and the
compiler fails the property.

Sizes stay small (inputs 4..32, channels 1..16) so the models build and run in milliseconds. Every choice is
a hypothesis draw with the simplest option first, so failures shrink to short, readable specs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import strategies as st

Shape = tuple[int, ...]

# Words the valid generator never uses as names: the grammar's keywords, `in`, and the bare words a layer
# reads as flags (a parameter named `same` would shadow the flag). The mutation fuzzers use them freely.
RESERVED = {
    "network", "input", "param", "import", "block", "residual", "shortcut", "add", "concat", "x", "if", "else",
    "and", "or", "not", "true", "false", "in", "same", "valid", "dw", "nobias", "bn", "relu", "relu6", "leaky_relu",
    "elu", "sigmoid", "tanh", "softmax", "silu", "swish", "hardswish", "hardsigmoid", "multiply", "keepdims",
    "gelu", "call_index",
}
# Scope names: plain words, names of layer kinds (a scope `conv` beside a layer `conv` must get distinct node
# names), and names with underscores (Keras joins paths with `_`, so `a.b_c` and `a_b.c` are a trap).
SCOPE_NAMES = ["a", "b", "stem", "stage1", "conv", "fc", "pool", "a_b", "b_c", "conv_x", "head", "s_2", "dense"]
ACTIVATIONS = ["relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "silu", "swish", "hardswish", "hardsigmoid",
               "gelu"]


class Invalid(Exception):
    """The oracle's verdict: this layer does not fit the shape it would get."""


@dataclass
class GeneratedSpec:
    text: str
    output_shape: Shape
    features: set[str] = field(default_factory=set)  # which constructs it uses, for the statistics

    def __repr__(self) -> str:  # hypothesis prints the failing example: show the spec as written
        return f"GeneratedSpec(output_shape={self.output_shape}, text='''\n{self.text}''')"


# ---------------------------------------------------------------- the oracle's arithmetic


def window_out(n: int, kernel: int, stride: int, dilation: int, padding) -> int:
    effective = dilation * (kernel - 1) + 1
    if isinstance(padding, str):
        total = dilation * (kernel - 1) if padding == "same" else 0
    else:
        total = 2 * padding
    if n + total < effective:
        raise Invalid
    return (n + total - effective) // stride + 1


def fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


# A layer as the generator sees it: its text and its shape function (pure: repetition applies it again).
Layer = tuple[str, Callable[[Shape], Shape]]


def conv_layer(kh, kw, filters, stride=1, dilation=1, padding="valid", groups=1, depthwise=False, multiplier=1,
               bias=True, post=(), filters_text=None) -> Layer:
    parts = [f"conv {kh}x{kw}", "dw" if depthwise else (filters_text or str(filters))]
    if stride != 1:
        parts.append(f"stride={stride}")
    if padding == "same":
        parts.append("same")
    elif not isinstance(padding, str):
        parts.append(f"padding={padding}")
    if dilation != 1:
        parts.append(f"dilation={dilation}")
    if groups != 1:
        parts.append(f"groups={groups}")
    if multiplier != 1:
        parts.append(f"multiplier={multiplier}")
    if not bias:
        parts.append("nobias")
    parts.extend(post)

    def shape(s: Shape) -> Shape:
        if len(s) != 3:
            raise Invalid
        h, w, c = s
        out_c = c * multiplier if depthwise else filters
        g = c if depthwise else groups
        if c % g or out_c % g:
            raise Invalid
        return (window_out(h, kh, stride, dilation, padding), window_out(w, kw, stride, dilation, padding), out_c)

    return ", ".join(parts), shape


def pool_out(n: int, kernel: int, stride: int, padding, ceil: bool) -> int:
    """A pooling window's output size; `ceil` rounds up (PyTorch's ceil_mode), less one where the last window
    would start in the padding after the input."""
    if not ceil:
        return window_out(n, kernel, stride, 1, padding)
    total = (kernel - 1 if padding == "same" else 0) if isinstance(padding, str) else 2 * padding
    before = total // 2
    if n + total < kernel:
        raise Invalid
    out = -(-(n + total - kernel) // stride) + 1
    if (out - 1) * stride >= n + before:
        out -= 1
    return out


def pool_layer(kind, k, stride=None, padding="valid", ceil=False, count_pad=False) -> Layer:
    text = f"{kind} {k}x{k}" + (f", stride={stride}" if stride is not None else "") + \
        (f", {padding}" if padding == "same" else "") + \
        (f", padding={padding}" if not isinstance(padding, str) else "") + \
        (", ceil" if ceil else "") + (", count_pad" if count_pad else "")

    def shape(s: Shape) -> Shape:
        if len(s) != 3:
            raise Invalid
        h, w, c = s
        st_ = stride or k
        return (pool_out(h, k, st_, padding, ceil), pool_out(w, k, st_, padding, ceil), c)

    return text, shape


# Upsampling layers stay small: an output past this many rows or columns is not drawn (nor repeated into).
MAX_UP = 48


def convtranspose_layer(k, filters, stride=1, padding=0, output_padding=0, bias=True, post=(), filters_text=None,
                        word="convtranspose") -> Layer:
    parts = [f"{word} {k}x{k}", filters_text or str(filters)]
    if stride != 1:
        parts.append(f"stride={stride}")
    if padding:
        parts.append(f"padding={padding}")
    if output_padding:
        parts.append(f"output_padding={output_padding}")
    if not bias:
        parts.append("nobias")
    parts.extend(post)

    def up(n: int) -> int:
        out = (n - 1) * stride - 2 * padding + k + output_padding
        if not 1 <= out <= MAX_UP:
            raise Invalid
        return out

    def shape(s: Shape) -> Shape:
        if len(s) != 3:
            raise Invalid
        return (up(s[0]), up(s[1]), filters)

    return ", ".join(parts), shape


def upsample_layer(scale=None, size=None, mode="nearest", align_corners=False, scale_text=None) -> Layer:
    parts = ["upsample"]
    if size is not None:
        parts.append(f"size={fmt(size)}")
    elif scale_text is not None:
        parts.append(scale_text)
    if mode == "bilinear":
        parts.append("bilinear")
    if align_corners:
        parts.append("align_corners=true")
    text = parts[0] + (" " + ", ".join(parts[1:]) if len(parts) > 1 else "")

    def shape(s: Shape) -> Shape:
        if len(s) != 3:
            raise Invalid
        out = size if size is not None else (s[0] * scale[0], s[1] * scale[1])
        if max(out) > MAX_UP:
            raise Invalid
        return (*out, s[2])

    return text, shape


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's `_make_divisible`, restated: the oracle for `divisible(v, d)`."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def same_shape(text: str, feature_map_only: bool = False) -> Layer:
    def shape(s: Shape) -> Shape:
        if feature_map_only and len(s) != 3:
            raise Invalid
        return s

    return text, shape


# ---------------------------------------------------------------- the generator


class _Writer:
    """Draws one spec. Methods take the current shape and return (lines or text, output shape)."""

    def __init__(self, draw, max_depth: int):
        self.draw = draw
        self.max_depth = max_depth
        self.blocks: list[tuple[str, Callable]] = []  # (name, call writer)
        self.features: set[str] = set()
        self.params: dict[str, int] = {}
        self.names = 0

    def choice(self, options):
        return self.draw(st.sampled_from(options))

    def coin(self, p_true: float = 0.5) -> bool:
        # Shrinks towards False: every optional construct disappears first.
        return self.draw(st.integers(0, 99)) < int(p_true * 100)

    def channels(self) -> int:
        return self.draw(st.integers(1, 16))

    def filters_text(self, filters: int) -> str:
        """A channel count, sometimes written through a network parameter: `width`, `width*2`."""
        if "width" in self.params and self.coin(0.2):
            w = self.params["width"]
            if filters == w:
                return "width"
            if filters == 2 * w:
                return "width*2"
        return str(filters)

    def width(self) -> tuple[int, str]:
        """A channel count and how it is written: a number, a parameter, or through `ceil`, `round` or
        `divisible` (MobileNet's and EfficientNet's width rounding), whose values the oracle computes itself."""
        kind = self.choice(["plain", "plain", "plain", "ceil", "round", "divisible"])
        if kind == "plain":
            filters = self.channels()
            return filters, self.filters_text(filters)
        a = self.draw(st.integers(1, 16))
        factor = self.choice([0.25, 0.5, 0.75, 1.25, 1.5, 2.5])  # exact binary fractions: no rounding surprises
        width = self.params.get("width")
        a_text = f"{a}" if width is None or not self.coin(0.3) else "width"
        a = a if a_text != "width" else width
        self.features.add(f"expr_{kind}")
        if kind == "ceil":
            return max(1, math.ceil(a * factor)), f"max(1, ceil({a_text} * {factor}))"
        if kind == "round":  # halves to even, as Python's
            return max(1, round(a / factor)), f"max(1, round({a_text} / {factor}))"
        divisor = self.choice([2, 4, 8])
        return make_divisible(a * factor, divisor), f"divisible({a_text} * {factor}, {divisor})"

    # ---- layers on a feature map
    def conv(self, s: Shape, *, stride_ok=True, padding_ok=True) -> Layer:
        h, w, c = s
        kh = self.draw(st.integers(1, 5))
        kw = kh if self.coin(0.8) else self.draw(st.integers(1, 5))
        stride = self.choice([1, 2, 3]) if stride_ok else 1
        dilation = self.choice([1, 2])
        padding = self.choice(["same", "valid", 1, 2]) if padding_ok else "same"
        mode = self.choice(["plain", "groups", "dw"])
        groups, depthwise, multiplier = 1, False, 1
        filters, written = self.width()
        if mode == "groups":
            divisors = [g for g in range(2, c + 1) if c % g == 0]
            if divisors:
                groups = self.choice(divisors)
                filters = groups * self.draw(st.integers(1, max(1, 16 // groups)))
                self.features.add("groups")
        elif mode == "dw":
            depthwise, multiplier = True, self.choice([1, 2])
            self.features.add("depthwise")
        post = []
        if self.coin(0.3):
            post.append("bn")
        if self.coin(0.4):
            post.append(self.choice(ACTIVATIONS))
        bias = not self.coin(0.2)
        if mode != "plain":
            written = self.filters_text(filters)
        layer = conv_layer(kh, kw, filters, stride, dilation, padding, groups, depthwise, multiplier, bias, post,
                           written)
        try:
            layer[1](s)
        except Invalid:  # the kernel does not fit: `same` always does
            layer = conv_layer(kh, kw, filters, stride, dilation, "same", groups, depthwise, multiplier, bias, post,
                               written)
        self.features.add("conv")
        return layer

    def pool(self, s: Shape) -> Layer:
        kind = self.choice(["maxpool", "avgpool"])
        k = self.draw(st.integers(1, 3))
        stride = self.choice([None, 1, 2])
        pads = list(range(1, k // 2 + 1))  # PyTorch pads at most half a window
        padding = self.choice(["valid", "same", *pads] if kind == "maxpool" or not pads else [*pads, "valid", "same"])
        ceil = self.coin(0.2)
        count_pad = kind == "avgpool" and padding != "valid" and self.coin(0.6)
        layer = pool_layer(kind, k, stride, padding, ceil, count_pad)
        try:
            layer[1](s)
        except Invalid:
            layer = pool_layer(kind, k, stride, "same", ceil)
            count_pad = False
        self.features.add("pool")
        if ceil:
            self.features.add("pool_ceil")
        if count_pad:
            self.features.add("pool_count_pad")
        return layer

    def upconv(self, s: Shape) -> Layer:
        """A transposed convolution (U-Net's up-convolution) by PyTorch's size rule, or an upsample by a scale
        or to a size; both are left out (a conv instead) where the map would grow past MAX_UP."""
        if self.coin(0.5):
            k = self.draw(st.integers(1, 4))
            stride = self.choice([1, 2, 3])
            padding = self.draw(st.integers(0, k - 1))
            output_padding = self.draw(st.integers(0, stride - 1))
            filters, written = self.width()
            post = [self.choice(ACTIVATIONS)] if self.coin(0.3) else []
            layer = convtranspose_layer(k, filters, stride, padding, output_padding, not self.coin(0.2), post,
                                        written, self.choice(["convtranspose", "upconv"]))
            feature = "convtranspose"
        else:
            mode = self.choice(["nearest", "bilinear"])
            align = mode == "bilinear" and self.coin(0.3)
            if self.coin(0.5):
                size = (self.draw(st.integers(1, MAX_UP)),) * 2
                if self.coin(0.3):
                    size = (size[0], self.draw(st.integers(1, MAX_UP)))
                layer = upsample_layer(size=size, mode=mode, align_corners=align)
                feature = "upsample_size"
            else:
                a = self.choice([1, 2, 3])
                b = a if self.coin(0.7) else self.choice([1, 2, 3])
                text = self.choice([f"{a}", f"scale={a}"]) if a == b else f"scale=({a}, {b})"
                layer = upsample_layer(scale=(a, b), mode=mode, align_corners=align, scale_text=text)
                feature = "upsample_scale"
            self.features.add(f"upsample_{mode}")
        try:
            layer[1](s)
        except Invalid:
            return self.conv(s)
        self.features.add(feature)
        return layer

    def simple(self, s: Shape) -> Layer:
        kind = self.choice(["relu", "batchnorm", "act", "dropout", "lrn", "identity", "bn", "convnext"])
        if kind == "act":
            act = self.choice(ACTIVATIONS + ["leaky_relu negative_slope=0.2", "elu alpha=0.5", "gelu approximate=tanh"])
            return same_shape(act)
        if kind == "convnext":  # ConvNeXt's kinds: maps and flat vectors alike
            self.features.add("convnext")
            return same_shape(self.choice(["layernorm", "layernorm epsilon=1e-6", "layer_scale 0.5", "layer_scale",
                                           "stochastic_depth 0.1", "drop_path 20%"]))
        if kind == "dropout":
            return same_shape(self.choice(["dropout 0.5", "dropout 40%", "dropout 0.1"]))
        if kind == "lrn":
            self.features.add("lrn")
            return same_shape(self.choice(["lrn", "lrn size=3"]), feature_map_only=True)
        return same_shape(kind)

    def feature_layer(self, s: Shape) -> Layer:
        kind = self.choice(["conv", "conv", "pool", "simple", "channels", "up"])
        return {"conv": self.conv, "pool": self.pool, "simple": self.simple, "channels": self.channel_layer,
                "up": self.upconv}[kind](s)

    def channel_layer(self, s: Shape) -> Layer:
        """A channel split, a channel shuffle or a zero-padding shortcut (ShuffleNet v2, ResNet option A)."""
        if len(s) != 3:
            return self.simple(s)
        kind = self.choice(["split", "shuffle", "zeropad"])
        divisors = [n for n in (2, 3, 4) if s[2] % n == 0]
        if kind in ("split", "shuffle") and not divisors:
            kind = "zeropad"
        n = self.choice(divisors) if divisors else 1

        def divided(x: Shape) -> Shape:  # split and shuffle need a feature map whose channels `n` divides
            if len(x) != 3 or x[2] % n:
                raise Invalid
            return x

        if kind == "shuffle":
            self.features.add("shuffle")
            return f"shuffle {n}", divided
        if kind == "split":
            self.features.add("split")
            part = self.draw(st.integers(0, n - 1))
            return f"split {n}, part={part}", lambda x: (*divided(x)[:2], x[2] // n)
        extra, stride = self.draw(st.integers(0, 4)), self.choice([1, 1, 2, 3])
        self.features.add("zeropad")

        def zeropad_shape(x: Shape) -> Shape:  # a fixed width: a repetition keeps it only if it does not shrink
            if len(x) != 3 or x[2] > s[2] + extra:
                raise Invalid
            return (-(-x[0] // stride), -(-x[1] // stride), s[2] + extra)

        return f"zeropad {s[2] + extra}" + (f", stride={stride}" if stride > 1 else ""), zeropad_shape

    # ---- inline items: layers, calls, groups, with repetition and checked sizes
    def inline(self, s: Shape, depth: int) -> tuple[str, Shape]:
        kinds = ["layer", "layer"]
        if self.blocks:
            kinds.append("call")
        if depth < self.max_depth:
            kinds.append("group")
        kind = self.choice(kinds)
        if kind == "call":
            text, fn = self.call(s)
        elif kind == "group":
            text, fn = self.group(s, depth)
        else:
            text, fn = self.feature_layer(s)
        out = fn(s)
        if self.coin(0.05):  # left out: a count of 0, or a condition that is false
            text, out = f"{text} x {self.choice(['0', '(1 > 2)', 'false'])}", s
            self.features.add("repeat_none")
        elif self.coin(0.2):
            n = self.draw(st.integers(2, 3))
            try:
                repeated = s
                for _ in range(n):
                    repeated = fn(repeated)
            except Invalid:
                pass
            else:
                text, out = f"{text} x {n}", repeated
                self.features.add("repeat")
        if self.coin(0.15):
            text += f" -> {fmt(out)}"
            self.features.add("expect")
        return text, out

    def group(self, s: Shape, depth: int) -> Layer:
        """`( a; b )`: its own shape function replays the members, so `( ... ) x n` can be checked."""
        members = []
        cur = s
        for _ in range(self.draw(st.integers(1, 3))):
            text, fn = self.feature_layer(cur)
            cur = fn(cur)
            members.append((text, fn))

        def shape(x: Shape) -> Shape:
            for _, fn in members:
                x = fn(x)
            return x

        self.features.add("group")
        return "(" + "; ".join(t for t, _ in members) + ")", shape

    def line(self, s: Shape, depth: int) -> tuple[str, Shape]:
        parts = []
        for _ in range(self.draw(st.integers(1, 3))):
            text, s = self.inline(s, depth)
            parts.append(text)
        return "; ".join(parts), s

    # ---- compound items
    def suite(self, s: Shape, depth: int, indent: str, max_lines: int = 3) -> tuple[list[str], Shape]:
        lines = []
        for _ in range(self.draw(st.integers(1, max_lines))):
            more, s = self.statement(s, depth, indent)
            lines.extend(more)
        return lines, s

    def statement(self, s: Shape, depth: int, indent: str) -> tuple[list[str], Shape]:
        kinds = ["line", "line"]
        if depth < self.max_depth and len(s) == 3:
            kinds += ["scope", "residual", "branches"]
        kind = self.choice(kinds)
        if kind == "scope":
            return self.scope(s, depth, indent)
        if kind == "residual":
            return self.residual(s, depth, indent)
        if kind == "branches":
            return self.branches(s, indent)
        text, out = self.line(s, depth)
        return [indent + text], out

    def name(self) -> str:
        """A scope or branch name, unique in the spec (siblings must differ; the compiler checks that)."""
        self.names += 1
        return f"{self.choice(SCOPE_NAMES)}{self.names}"

    def size_label(self, out: Shape) -> str:
        if not self.coin(0.6):
            return ""
        return " " + fmt(out[:2] if self.coin() else out)

    def scope(self, s: Shape, depth: int, indent: str) -> tuple[list[str], Shape]:
        name = self.name()
        self.features.add("scope")
        if self.coin(0.5):  # one line: `name 8x8 : a; b`
            text, out = self.line(s, depth + 1)
            return [f"{indent}{name}{self.size_label(out)} : {text}"], out
        body, out = self.suite(s, depth + 1, indent + "  ")
        return [f"{indent}{name}{self.size_label(out)}:"] + body, out

    def residual_body(self, s: Shape, keep_size: bool) -> tuple[list[str], Shape]:
        """1-3 `same` convs, only the first strided: the automatic 1x1 projection always exists."""
        lines, cur = [], s
        for i in range(self.draw(st.integers(1, 3))):
            text, fn = self.conv(cur, stride_ok=(i == 0 and not keep_size), padding_ok=False)
            cur = fn(cur)
            lines.append(text)
        return lines, cur

    def residual(self, s: Shape, depth: int, indent: str) -> tuple[list[str], Shape]:
        merge = self.choice(["add", "add", "concat", "multiply", "cropconcat"])
        inner = indent + "  "
        if merge == "cropconcat":  # U-Net's copy and crop: the input, centre-cropped to the body's size, first
            body, out = self.chain(s, 3)
            self.features.add("residual_cropconcat")
            return [f"{indent}residual cropconcat:"] + [inner + b for b in body], self.cropped([s, out])
        if merge == "multiply":  # squeeze-excitation: a 1x1xC gate of 1x1 convs, or a flat C gate of dense layers
            squeeze, act, gate = self.draw(st.integers(1, 8)), self.choice(ACTIVATIONS), self.choice(ACTIVATIONS)
            if self.coin(0.5):
                body = ["globalavgpool keepdims", f"conv 1x1, {squeeze}, {act}", f"conv 1x1, {s[2]}, {gate}"]
            else:
                body = [self.choice(["globalavgpool", "gap", "globalmaxpool"]), f"dense {squeeze}, {act}",
                        f"dense {s[2]}, {gate}"]
            self.features.add("residual_multiply")
            return [f"{indent}residual multiply:"] + [inner + b for b in body], s
        if merge == "concat":
            body, out = self.residual_body(s, keep_size=True)
            self.features.add("residual_concat")
            return [f"{indent}residual concat:"] + [inner + b for b in body], (*out[:2], out[2] + s[2])
        body, out = self.residual_body(s, keep_size=False)
        lines = [f"{indent}residual:"] + [inner + b for b in body]
        if out != s and out[2] >= s[2] and self.coin(0.2):  # He et al.'s option A: subsample, zero channels
            self.features.add("zeropad_shortcut")
            self.features.add("residual")
            return [f"{indent}residual shortcut=zeropad:"] + lines[1:], out
        if out != s and self.coin(0.3):  # an explicit shortcut: a strided 1x1 conv gives the same size as `same`
            stride = math.ceil(s[0] / out[0])
            text, fn = conv_layer(1, 1, out[2], stride=stride)
            if stride == math.ceil(s[1] / out[1]) and fn(s) == out:
                self.features.add("shortcut")
                return lines + [f"{indent}shortcut:", inner + text], out
        if out != s:
            stride = (math.ceil(s[0] / out[0]), math.ceil(s[1] / out[1]))
            projected = (window_out(s[0], 1, stride[0], 1, "valid"), window_out(s[1], 1, stride[1], 1, "valid"))
            if projected != out[:2]:
                raise Invalid  # cannot happen with `same` convs; kept as the oracle's own check
            self.features.add("projection")
        self.features.add("residual")
        return lines, out

    def chain(self, s: Shape, most: int) -> tuple[list[str], Shape]:
        """1..`most` feature-map layers of any kind: they may shrink the map (valid convs, pools) or grow it."""
        texts, cur = [], s
        for _ in range(self.draw(st.integers(1, most))):
            text, fn = self.feature_layer(cur)
            cur = fn(cur)
            texts.append(text)
        return texts, cur

    @staticmethod
    def cropped(outs: list[Shape]) -> Shape:
        return (min(o[0] for o in outs), min(o[1] for o in outs), sum(o[2] for o in outs))

    def branches(self, s: Shape, indent: str) -> tuple[list[str], Shape]:
        merge = self.choice(["concat", "add", "cropconcat"])
        if merge == "cropconcat":  # branches of any sizes, each cropped to the smallest
            lines, outs = [f"{indent}cropconcat:"], []
            for _ in range(self.draw(st.integers(2, 3))):
                texts, out = self.chain(s, 2)
                outs.append(out)
                label = f"{self.name()}: " if self.coin(0.4) else ""
                lines.append(f"{indent}  {label}{'; '.join(texts)}")
            self.features.add("branches_cropconcat")
            return lines, self.cropped(outs)
        stride = self.choice([1, 2])
        common = self.channels()
        lines = [f"{indent}{merge}:"]
        outs = []
        for _ in range(self.draw(st.integers(2, 3))):
            if merge == "add" or self.coin(0.6):
                filters = common if merge == "add" else self.channels()
                k = self.choice([1, 3])
                text, fn = conv_layer(k, k, filters, stride=stride, padding="same",
                                      post=[self.choice(ACTIVATIONS)] if self.coin(0.3) else [])
            else:
                text, fn = pool_layer(self.choice(["maxpool", "avgpool"]), 3, stride, "same")
            outs.append(fn(s))
            label = f"{self.name()}: " if self.coin(0.4) else ""
            lines.append(f"{indent}  {label}{text}")
        self.features.add(f"branches_{merge}")
        if merge == "add":
            return lines, outs[0]
        return lines, (*outs[0][:2], sum(o[2] for o in outs))

    # ---- blocks
    def block_def(self, index: int) -> list[str]:
        """A block whose body is written in its parameters: `w` channels, `s` stride on the first conv."""
        name = f"blk{index}"
        k = self.choice([1, 3])
        use_residual = self.coin(0.5)
        tail = self.choice(["relu", "bn", "conv 1x1, in.c", "conv 3x3, in.c // 2 + 1, same",
                            "maxpool 3x3, stride=1, same", "stochastic_depth 0.5 * call_index / (call_index + 1)"])
        callee = self.blocks[-1] if self.blocks and self.coin(0.3) else None
        body_first = f"conv {k}x{k}, w, stride=s, same, bn, relu"
        if use_residual:
            lines = [f"block {name}(w, s=1):", "  residual:", f"    {body_first}", "    conv 3x3, w, same, bn"]
        else:
            lines = [f"block {name}(w, s=1):", f"  {body_first}"]
        lines.append(f"  {tail}")
        if callee is not None:
            lines.append(f"  {callee[0]}(w)")

        def apply(shape: Shape, w: int, stride: int) -> Shape:
            if len(shape) != 3:
                raise Invalid
            h, wd, c = shape
            out = (window_out(h, k, stride, 1, "same"), window_out(wd, k, stride, 1, "same"), w)
            if tail == "conv 1x1, in.c":
                out = (*out[:2], c)
            elif tail.startswith("conv 3x3, in.c"):
                out = (*out[:2], c // 2 + 1)
            if callee is not None:
                out = callee[1](out, w, 1)
            return out

        self.blocks.append((name, apply))
        self.features.add("block")
        return lines

    def call(self, s: Shape) -> Layer:
        name, apply = self.choice(self.blocks)
        w = self.channels()
        stride = self.choice([1, 2])
        w_text = self.filters_text(w)
        args = self.choice([f"{w_text}", f"w={w_text}"]) + (f", s={stride}" if stride != 1 else "")
        self.features.add("call")
        return f"{name}({args})", lambda shape: apply(shape, w, stride)

    # ---- the network
    def head(self, s: Shape) -> tuple[list[str], Shape]:
        lines = []
        if len(s) == 3:
            kind = self.choice(["globalavgpool", "flatten", "gap", "globalmaxpool"])
            lines.append(kind)
            s = (s[0] * s[1] * s[2],) if kind == "flatten" else (s[2],)
        for _ in range(self.draw(st.integers(0, 2))):
            units = self.channels()
            extra = self.choice(["", ", relu", ", nobias", ""])
            lines.append(self.choice(["dense", "fc", "linear"]) + f" {units}{extra}")
            s = (units,)
            if self.coin(0.3):
                lines.append(self.choice(["dropout 0.5", "batchnorm", "relu"]))
        if self.coin(0.3):
            lines.append("softmax")
        self.features.add("head")
        return lines, s


@st.composite
def specs(draw, max_depth: int = 2, max_lines: int = 4) -> GeneratedSpec:
    writer = _Writer(draw, max_depth)
    h = draw(st.integers(4, 32))
    w = h if draw(st.integers(0, 9)) < 7 else draw(st.integers(4, 32))
    c = draw(st.integers(1, 16))
    lines = []
    if draw(st.booleans()):
        lines.append(f"network net{draw(st.integers(0, 99))}" + (' "a generated spec"' if draw(st.booleans()) else ""))
    lines.append(f"input {h}x{w}x{c}")
    if draw(st.booleans()):
        writer.params["width"] = draw(st.integers(1, 8))
        lines.append(f"param width={writer.params['width']}")
    for i in range(draw(st.integers(0, 2))):
        lines.extend(writer.block_def(i))
    shape: Shape = (h, w, c)
    for _ in range(draw(st.integers(1, max_lines))):
        more, shape = writer.statement(shape, 0, "")
        lines.extend(more)
    if draw(st.booleans()):
        more, shape = writer.head(shape)
        lines.extend(more)
    return GeneratedSpec("\n".join(lines) + "\n", shape, writer.features)
