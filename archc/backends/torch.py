"""The PyTorch backend: a Plan becomes readable, standalone Python source that defines the network as an
`nn.Module` class; `build` executes that same source, so the written file and the in-memory model can never
differ (same module tree, same `state_dict` keys, same weights for the same seed).

What the generated code looks like:
  * `__init__` creates one submodule per plan node, nested along the node's dotted name
    (`conv3_x.0.conv2` -> `self.conv3_x[0].conv2`), in plan order; `Scope` is the plain container of a stage,
    a block call or a branch. A run of equal numbered scopes (`bottleneck(256) x 35`) is built in one loop.
    Weights get PyTorch's default initialisation for each layer kind.
  * `forward` is straight-line code, one statement per node, with no loop or lookup table on the hot path;
    variables are reused once a value is dead so intermediate activations are freed as in hand-written code.
  * `torch.jit.script` compiles it: a merge's forward takes one list (`self.concat([x1, x2])`), no helper
    uses `*args` or `super()`, and a scope that is no attribute name (`conv2_x.0`) is fetched once into a local
    with `getattr`, which TorchScript compiles where it subscripts only its own containers.
  * `torch.save(model)` loads in a fresh process: the built module's classes pickle with its source
    (`unpickle_generated` executes it again there; the written `py` file needs no such help).
  * ReLU and the residual `add` work in place where that is safe (their input has no other reader and its
    producer does not need its own output for backward), as torchvision's models do.

The language's definitions (archc/ops.py) are realised exactly: asymmetric `same` padding pads explicitly,
max pooling pads with -inf, average pooling leaves padding out of the average, batchnorm momentum is
converted from the spec's Keras sense (torch momentum = 1 - spec momentum), LRN passes alpha * size because
torch divides alpha by the size. Tensors are NCHW; `flatten` flattens in (C, H, W) order, which differs from
Keras's (H, W, C): archc.transfer_weights permutes the first dense layer after a flatten.

Nothing here computes a shape: emitters read `node.args`, `node.in_shapes` and `node.shape` from the Plan.
"""

from __future__ import annotations

import functools
import hashlib
import io
import keyword
import linecache
import os
import re
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

try:
    import torch
    from torch import nn
except ImportError:  # writing the `py` source needs no torch; building, pt2 and weights do (they import it)
    torch = nn = None

from .._version import __version__
from ..diagnostics import ArchcError, Diagnostic
from ..ops import OPS, fmt_shape
from ..plan import INPUT, Plan, PlanNode
from .base import Backend, backend_error

# Helper classes the generated file defines when it uses them; they hold no parameters of their own.
HELPERS: dict[str, str] = {
    "Scope": '''
class Scope(nn.Module):
    """A named part of the spec (a stage, a block call, a branch): holds its layers under their spec names."""

    def __getitem__(self, name):
        return self._modules[str(name)]
''',
    "PaddedConv2d": '''
class PaddedConv2d(nn.Conv2d):
    """A convolution whose padding differs before and after (`same` with an even kernel): pads explicitly."""

    def __init__(self, *args, pads, **kwargs):
        super().__init__(*args, **kwargs)
        self.pads = pads  # F.pad order: left, right, top, bottom

    def forward(self, x):
        return self._conv_forward(F.pad(x, self.pads), self.weight, self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", pads={self.pads}"
''',
    "PaddedMaxPool2d": '''
class PaddedMaxPool2d(nn.MaxPool2d):
    """Max pooling with explicit padding by -inf (asymmetric, or more than half the kernel)."""

    def __init__(self, *args, pads, **kwargs):
        super().__init__(*args, **kwargs)
        self.pads = pads  # F.pad order: left, right, top, bottom

    def forward(self, x):
        return F.max_pool2d(F.pad(x, self.pads, value=float("-inf")), self.kernel_size, self.stride, self.padding,
                            self.dilation, ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return super().extra_repr() + f", pads={self.pads}"
''',
    "ExactAvgPool2d": '''
class ExactAvgPool2d(nn.Module):
    """Average pooling over real inputs only, for padding nn.AvgPool2d cannot express (asymmetric, more than
    half the kernel) and for dilated windows: the sum of each window divided by how many real inputs it covers."""

    def __init__(self, kernel_size, stride, pads, dilation):
        super().__init__()
        self.kernel_size, self.stride, self.pads, self.dilation = kernel_size, stride, pads, dilation

    def forward(self, x):
        kh, kw = self.kernel_size
        ones = x.new_ones((1, 1, x.shape[2], x.shape[3]))
        window = x.new_ones((1, 1, kh, kw))
        counts = F.conv2d(F.pad(ones, self.pads), window, stride=self.stride, dilation=self.dilation)
        channels = x.shape[1]
        sums = F.conv2d(F.pad(x, self.pads), window.expand(channels, 1, kh, kw), stride=self.stride,
                        dilation=self.dilation, groups=channels)
        return sums / counts

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, pads={self.pads}, dilation={self.dilation}"
''',
    "CountingAvgPool2d": '''
class CountingAvgPool2d(nn.Module):
    """Average pooling that counts zero padding (`count_pad`) for padding nn.AvgPool2d cannot express
    (asymmetric, more than half the kernel); ceil mode's `overhang` past the padding is not counted."""

    def __init__(self, kernel_size, stride, pads, overhang):
        super().__init__()
        self.kernel_size, self.stride, self.pads, self.overhang = kernel_size, stride, pads, overhang

    def forward(self, x):
        x = F.pad(x, self.pads)
        ones = x.new_ones((1, 1, x.shape[2], x.shape[3]))
        beyond = (0, self.overhang[1], 0, self.overhang[0])
        counts = F.avg_pool2d(F.pad(ones, beyond), self.kernel_size, self.stride)
        return F.avg_pool2d(F.pad(x, beyond), self.kernel_size, self.stride) / counts

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, pads={self.pads}, overhang={self.overhang}"
''',
    "CropConcat": '''
class CropConcat(nn.Module):
    """Concatenation along the channels of inputs cropped to the smallest height and width, centred: an input
    of height H keeps rows (H - h) // 2 onwards (U-Net's copy and crop)."""

    def forward(self, xs: list[torch.Tensor]):
        h = min([x.shape[2] for x in xs])
        w = min([x.shape[3] for x in xs])
        return torch.cat([x[:, :, (x.shape[2] - h) // 2:(x.shape[2] - h) // 2 + h,
                            (x.shape[3] - w) // 2:(x.shape[3] - w) // 2 + w] for x in xs], 1)
''',
    "GlobalAvgPool2d": '''
class GlobalAvgPool2d(nn.Module):
    """N x C x H x W -> N x C: the mean over each channel."""

    def forward(self, x):
        return x.mean((2, 3))
''',
    "GlobalMaxPool2d": '''
class GlobalMaxPool2d(nn.Module):
    """N x C x H x W -> N x C: the maximum over each channel."""

    def forward(self, x):
        return x.amax((2, 3))
''',
    "FlatLocalResponseNorm": '''
class FlatLocalResponseNorm(nn.LocalResponseNorm):
    """Local response normalisation of flat N x C vectors (torch's needs a spatial dimension)."""

    def forward(self, x):
        return F.local_response_norm(x.unsqueeze(-1), self.size, self.alpha, self.beta, self.k).squeeze(-1)
''',
    "Add": '''
class Add(nn.Module):
    """The element-wise sum of its inputs; `inplace` adds into the first (the code generator sets it only when
    nothing else reads that tensor)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, xs: list[torch.Tensor]):
        x = xs[0]
        for other in xs[1:]:
            x = x.add_(other) if self.inplace else x + other
        return x

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""
''',
    "Concat": '''
class Concat(nn.Module):
    """Concatenation of its inputs along the channels."""

    def forward(self, xs: list[torch.Tensor]):
        return torch.cat(xs, 1)
''',
    # channel split, channel shuffle, zero-padding shortcuts (ShuffleNet v2; He et al.'s option A)
    "ChannelSplit": '''
class ChannelSplit(nn.Module):
    """Part `part` (from 0) of `parts` equal slices of the channels: `x.chunk(parts, 1)[part]` (a view)."""

    def __init__(self, parts, part):
        super().__init__()
        self.parts, self.part = parts, part

    def forward(self, x):
        return x.chunk(self.parts, 1)[self.part]

    def extra_repr(self):
        return f"parts={self.parts}, part={self.part}"
''',
    "ChannelShuffle": '''
class ChannelShuffle(nn.Module):
    """torchvision's channel_shuffle: `groups` groups of channels interleaved."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w)
        return torch.transpose(x, 1, 2).contiguous().view(n, c, h, w)

    def extra_repr(self):
        return f"groups={self.groups}"
''',
    "ZeroPadShortcut": '''
class ZeroPadShortcut(nn.Module):
    """He et al.'s option A shortcut: every `stride`-th row and column, then `pads` = (before, after) zero
    channels around the input's."""

    def __init__(self, stride, pads):
        super().__init__()
        self.stride, self.pads = stride, pads

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride[0], ::self.stride[1]], (0, 0, 0, 0, self.pads[0], self.pads[1]))

    def extra_repr(self):
        return f"stride={self.stride}, pads={self.pads}"
''',
    "Multiply": '''
class Multiply(nn.Module):
    """The element-wise product of its inputs, broadcast: an N x C x 1 x 1 gate scales an N x C x H x W map
    (squeeze-excitation); `flat` lists the inputs that are N x C vectors beside maps (viewed as N x C x 1 x 1)."""

    def __init__(self, flat=()):
        super().__init__()
        self.flat = tuple(flat)

    def forward(self, xs: list[torch.Tensor]):
        x = xs[0][:, :, None, None] if 0 in self.flat else xs[0]
        for j, other in enumerate(xs):
            if j > 0:
                x = x * (other[:, :, None, None] if j in self.flat else other)
        return x

    def extra_repr(self):
        return f"flat={self.flat}" if self.flat else ""
''',
    # ConvNeXt's kinds (issue 12)
    "LayerNorm2d": '''
class LayerNorm2d(nn.LayerNorm):
    """Layer normalisation over the channels of each position of an N x C x H x W map (torchvision's ConvNeXt)."""

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
''',
    "PointwiseConv2d": '''
class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution computed as a matrix product over each position's channels (nn.Linear's), used where
    its input is laid out channels-last in memory (after a layernorm), as torchvision's ConvNeXt computes it:
    the convolution would copy that layout back. Same weights, same state_dict, NCHW in and out."""

    def forward(self, x):
        y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 3, 1, 2)
''',
    "ChannelsLastGELU": '''
class ChannelsLastGELU(nn.GELU):
    """GELU of an N x C x H x W view of channels-last memory (between a ConvNeXt block's pointwise layers), computed
    on the N x H x W x C tensor itself: element-wise kernels run measurably slower over the permuted view."""

    def forward(self, x):
        return F.gelu(x.permute(0, 2, 3, 1), approximate=self.approximate).permute(0, 3, 1, 2)
''',
    "LayerScale": '''
class LayerScale(nn.Module):
    """A learnable scale per channel, `weight` of shape C x 1 x 1 for maps (torchvision's CNBlock.layer_scale)."""

    def __init__(self, shape, init):
        super().__init__()
        self.weight = nn.Parameter(torch.full(shape, init))

    def forward(self, x):
        return x * self.weight
''',
    "StochasticDepth": '''
class StochasticDepth(nn.Module):
    """Drop path, torchvision.ops.StochasticDepth in "row" mode: in training each sample is zeroed with
    probability p and kept ones are scaled by 1 / (1 - p); the identity in evaluation."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * noise.div_(keep)

    def extra_repr(self):
        return f"p={self.p}"
''',
}

_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


def _comment(text: Any) -> str:
    """Text safe to put in a `#` comment: no line breaks or other unprintable characters."""
    return "".join(c if c.isprintable() else " " for c in str(text))


def class_name(network: str) -> str:
    """`resnet50` -> `Resnet50`, `mobilenet_v2` -> `MobilenetV2`: a CamelCase identifier made of the network's
    letters and digits only, never one of the helper classes' names."""
    words = re.findall(r"[A-Za-z0-9]+", network)
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Network"
    if not name[0].isalpha():
        name = "Net" + name
    if name in HELPERS or keyword.iskeyword(name) or name in {"F", "nn", "torch", "INPUT_SHAPE"}:
        name += "Net"
    return name


def _int_or_pair(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else repr(tuple(pair))


def _pad_order(pads: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """archc's (top, bottom, left, right) -> F.pad's (left, right, top, bottom)."""
    top, bottom, left, right = pads
    return (left, right, top, bottom)


def _nchw(shape: tuple[int, ...]) -> str:
    """A plan shape written the way torch holds it, batch left out (a comment in the generated code)."""
    return fmt_shape((shape[2], shape[0], shape[1]) if len(shape) == 3 else shape)


@dataclass
class _Context:
    """What an emitter may ask about the graph around its node."""

    plan: Plan
    output: str  # the node the forward returns (the final softmax's input when logits drop it)
    uses: dict[str, int]
    helpers: set[str] = field(default_factory=set)
    after: list[str] = field(default_factory=list)  # statements run after the module is created ({m}: its path)

    def helper(self, name: str) -> str:
        self.helpers.add(name)
        return name

    def channels_last(self, name: str) -> bool:
        """Whether the node's tensor is an N x C x H x W view of channels-last memory in the generated code."""
        if "channels_last" not in self.plan._cache:
            self.plan._cache["channels_last"] = _channels_last(self.plan)
        return name in self.plan._cache["channels_last"]

    def overwritable(self, name: str) -> bool:
        """Whether an op may write its result into `name`'s output: nothing else reads that tensor, and its
        producer neither aliases another tensor nor needs its output for backward."""
        if name == INPUT or name == self.output or self.uses.get(name, 0) != 1:
            return False
        node = self.plan.node(name)
        if node.opdef.passes_input:  # its output may be its input (drop path in eval: ConvNeXt's `result += input`)
            return self.overwritable(node.inputs[0])
        return node.opdef.fresh_output


class TorchBackend(Backend):
    name = "torch"
    file_formats = ("py", "pt2")

    # ------------------------------------------------------------ public interface

    def build(self, plan: Plan, logits: bool = False) -> nn.Module:
        import torch  # noqa: F401 - without torch: ImportError here, not a NameError later
        source = self.source(plan, logits)
        module = _load_source(source, plan.name)
        model = getattr(module, class_name(plan.name))()
        model.archc_plan = plan  # transfer_weights walks the plan's nodes (a plain attribute: not in state_dict)
        model.archc_logits = logits
        return model

    def write(self, plan: Plan, fmt: str, logits: bool = False) -> bytes:
        if fmt == "py":
            return self.source(plan, logits).encode("utf-8")
        if fmt == "pt2":
            return self._export(plan, logits)
        raise backend_error("A404", f"the torch backend writes py or pt2, not `{fmt}`")

    def owns(self, model: Any) -> bool:
        return nn is not None and isinstance(model, nn.Module)

    def load_weights(self, model: nn.Module, source: Any) -> nn.Module:
        """Copy parameters and buffers from `source` into `model`, checking everything before copying anything.

        A compiled spec and a source module are matched through their structure (archc.match,
        docs/matching.md): each layer with weights pairs with the source's layer at the same place in the data
        flow with the same shapes, whatever order either creates its modules in. Otherwise (a state dict, a path
        to a saved one, or a model that is not a compiled spec) tensors are copied by position, in the order of
        `state_dict()`. `num_batches_tracked` is skipped on both sides: it is batchnorm bookkeeping, not a weight
        (used only when momentum is None, which archc never emits), and reference implementations differ in
        whether they keep it.
        """
        plan = getattr(model, "archc_plan", None)
        if plan is not None and isinstance(source, nn.Module):
            return _load_by_structure(model, plan, source)
        if plan is not None and _is_onnx(source):  # read into a flat network (archc.readers.onnx)
            return _load_by_structure(model, plan, source, _onnx_graph(source, plan))
        if plan is not None and _is_keras_source(source):  # read into a flat network (archc.readers.keras)
            return _load_by_structure(model, plan, source, _keras_graph(source, plan))
        ours = _weights(model.state_dict())
        theirs = _weights(_state_dict_of(source))
        for i, ((name, mine), (their_name, tensor)) in enumerate(zip(ours, theirs, strict=False)):
            if tuple(mine.shape) != tuple(tensor.shape):
                raise backend_error("A406", f"weight {i + 1} of {len(ours)} does not fit: `{name}` is "
                             f"{_show_shape(mine)} but the source's `{their_name}` is {_show_shape(tensor)}",
                             _node_of(plan, name), help=_POSITIONAL_HELP)
        if len(ours) != len(theirs):
            longer, which = (ours, "the model") if len(ours) > len(theirs) else (theirs, "the source")
            first_extra = longer[min(len(ours), len(theirs))][0]
            raise backend_error("A406", f"the model has {len(ours)} weight tensors but the source has {len(theirs)}; "
                         f"{which} goes on with `{first_extra}`",
                         _node_of(plan, first_extra) if which == "the model" else None, help=_POSITIONAL_HELP)
        with torch.no_grad():
            for (_, mine), (_, tensor) in zip(ours, theirs, strict=True):
                mine.copy_(tensor)
        return model

    def transfer_weights(self, src: Any, dst: nn.Module) -> nn.Module:
        if isinstance(src, (nn.Module, Mapping)):
            return self.load_weights(dst, src)
        from . import transfer

        if transfer.is_torch_keras_pair(src, dst):
            return transfer.transfer_weights(src, dst)
        raise backend_error("A405", f"the torch backend cannot read weights from a `{type(src).__name__}`",
                     help="pass a PyTorch module or state dict; moving weights from Keras is the keras backend's")

    # ------------------------------------------------------------ code generation

    def source(self, plan: Plan, logits: bool = False) -> str:
        """The standalone Python module that defines the plan's network."""
        output = plan.model_output(logits)
        nodes = [n for n in plan.nodes if n.name != plan.output or output == plan.output]
        for node in nodes:
            _check_name(node)
        uses: dict[str, int] = {}
        for node in nodes:
            for name in node.inputs:
                uses[name] = uses.get(name, 0) + 1
        ctx = _Context(plan, output, uses)
        init_lines = self._init_lines(nodes, ctx)
        forward_lines = _forward_lines(nodes, output, ctx)
        cls = class_name(plan.name)
        helpers = ["Scope"] + [h for h in HELPERS if h in ctx.helpers and h != "Scope"]
        header = self._header(plan, output)
        parts = [header, "import torch", "import torch.nn.functional as F", "from torch import nn", "",
                 f"INPUT_SHAPE = {_input_shape(plan)!r}  # one example, batch left out", ""]
        for h in helpers:
            parts += ["", HELPERS[h].strip(), ""]
        parts += ["", f"class {cls}(Scope):"]
        parts.append(f"    {_comment(plan.description or plan.name)!r}")
        parts.append("")
        parts.append("    def __init__(self):")
        parts.append("        super().__init__()")
        parts.extend("        " + line for line in init_lines)
        parts.append("")
        parts.append("    def forward(self, x):")
        parts.extend("        " + line for line in forward_lines)
        parts.append("")
        parts.append("")
        parts.append('if __name__ == "__main__":')
        parts.append(f"    model = {cls}().eval()")
        parts.append("    with torch.no_grad():")
        parts.append("        print(tuple(model(torch.zeros(1, *INPUT_SHAPE)).shape))")
        return "\n".join(parts) + "\n"

    def _header(self, plan: Plan, output: str) -> str:
        origin = plan.file or "a spec given as text"
        params = ", ".join(f"{k}={v}" for k, v in plan.params.items() if k != "in")
        out_shape = plan.input_shape if output == INPUT else plan.node(output).shape
        lines = [
            f"# {_comment(plan.name)}: a PyTorch model generated by archc {__version__} from {_comment(origin)}",
        ]
        if plan.description:
            lines.append(f"# {_comment(plan.description)}")
        if params:
            lines.append(f"# Network parameters: {_comment(params)}")
        lines += [
            f"# Input N x {_nchw(plan.input_shape)}, output N x {_nchw(out_shape)}"
            + (" (logits: the final softmax is left out)" if output != plan.output else ""),
            f"# {plan.trainable_params:,} trainable parameters, {plan.non_trainable_params:,} non-trainable "
            "(batchnorm statistics)",
            "# Tensors are NCHW; `flatten` flattens in (C, H, W) order. Needs PyTorch only.",
            "",
        ]
        return "\n".join(lines)

    def _init_lines(self, nodes: list[PlanNode], ctx: _Context) -> list[str]:
        lines: list[str] = []
        scopes: set[str] = set()
        leaves: set[str] = set()
        for node in nodes:
            if node.name in leaves:
                raise backend_error("A404", f"two layers are named `{node.name}`", node,
                             help="a name with a dot in it can collide with a nested scope's; rename one")
            leaves.add(node.name)
        units: list[_Unit | None] = []  # the numbered scope each line builds part of
        for node in nodes:
            parts = node.name.split(".")
            for depth in range(1, len(parts)):
                path = ".".join(parts[:depth])
                if path in leaves:
                    raise backend_error("A404", f"`{path}` is both a layer and a scope holding `{node.name}`", node,
                                 help="rename one of them")
                if path not in scopes:
                    scopes.add(path)
                    lines.append(_register(parts[:depth - 1], parts[depth - 1], "Scope()"))
                    units.append(_unit_of(parts[:depth]))
            ctx.after = []
            ctor = self.emit(node, [], ctx)
            lines.append(_register(parts[:-1], parts[-1], ctor))
            module = _path(parts)
            lines.extend(line.format(m=module) for line in ctx.after)
            units.extend([_unit_of(parts)] * (1 + len(ctx.after)))
        return _fold_repeats(lines, units)

    def _export(self, plan: Plan, logits: bool) -> bytes:
        model = self.build(plan, logits).eval()
        # export traces with fake tensors and reads only the example's shape: a zero-stride view of one number
        # stands for a batch of any size (a 20000x20000 input would otherwise allocate 9.6 GB for nothing)
        example = torch.zeros(()).expand(2, *_input_shape(plan))
        try:
            program = torch.export.export(model, (example,),
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
        except Exception as e:  # noqa: BLE001 - torch.export raises many kinds; each means "not exportable"
            raise backend_error("A405", f"`{plan.name}` cannot be exported with torch.export: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                         help="build the `py` format instead") from None
        return buffer.getvalue()

    # ------------------------------------------------------------ one emitter per layer kind

    # One-liners: the module's constructor, formatted with the node's arguments as `a`.
    TABLE = {
        "flatten": "nn.Flatten()",  # (C, H, W) order
        "dropout": "nn.Dropout(p={a.rate!r})",
        "identity": "nn.Identity()",
        "relu6": "nn.ReLU6()",
        "leaky_relu": "nn.LeakyReLU(negative_slope={a.negative_slope!r})",
        "elu": "nn.ELU(alpha={a.alpha!r})",
        "sigmoid": "nn.Sigmoid()",
        "tanh": "nn.Tanh()",
        "hardsigmoid": "nn.Hardsigmoid()",
    }

    def emit_table(self, entry: str, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return entry.format(a=node.args)

    def emit_conv(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        a = node.args
        top, bottom, left, right = a.pads()
        common = (f"{node.in_shapes[0][2]}, {a.filters}, kernel_size={_int_or_pair(a.kernel)}"
                  + (f", stride={_int_or_pair(a.stride)}" if a.stride != (1, 1) else "")
                  + (f", dilation={_int_or_pair(a.dilation)}" if a.dilation != (1, 1) else "")
                  + (f", groups={a.groups}" if a.groups != 1 else ""))
        nobias = "" if a.bias else ", bias=False"
        if _pointwise(node) and ctx.channels_last(node.inputs[0]):
            return f"{ctx.helper('PointwiseConv2d')}({common}{nobias})"
        if top == bottom and left == right:
            padding = f", padding={_int_or_pair((top, left))}" if top or left else ""
            return f"nn.Conv2d({common}{padding}{nobias})"
        return f"{ctx.helper('PaddedConv2d')}({common}{nobias}, pads={_pad_order(a.pads())!r})"

    def emit_maxpool(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        a = node.args
        top, bottom, left, right = a.pads()
        common = f"kernel_size={_int_or_pair(a.kernel)}, stride={_int_or_pair(a.stride)}" + (
            f", dilation={_int_or_pair(a.dilation)}" if a.dilation != (1, 1) else "")
        # nn.MaxPool2d pads by -inf itself, but only symmetrically and by at most half the kernel; its ceil_mode
        # is the language's `ceil`. Otherwise pad explicitly, ceil mode's overhang included (never the max).
        if top == bottom and left == right and 2 * top <= a.kernel[0] and 2 * left <= a.kernel[1]:
            padding = f", padding={_int_or_pair((top, left))}" if top or left else ""
            return f"nn.MaxPool2d({common}{padding}{', ceil_mode=True' if a.ceil else ''})"
        pads = a.ceil_pads(*node.in_shapes[0][:2])
        return f"{ctx.helper('PaddedMaxPool2d')}({common}, pads={_pad_order(pads)!r})"

    def emit_avgpool(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        a = node.args
        top, bottom, left, right = a.pads()
        common = f"kernel_size={_int_or_pair(a.kernel)}, stride={_int_or_pair(a.stride)}"
        ceil = ", ceil_mode=True" if a.ceil else ""
        if a.dilation == (1, 1) and top == bottom and left == right and 2 * top <= a.kernel[0] \
                and 2 * left <= a.kernel[1]:
            # nn.AvgPool2d's ceil_mode and count_include_pad are the language's `ceil` and `count_pad`
            if top or left:
                return (f"nn.AvgPool2d({common}, padding={_int_or_pair((top, left))}{ceil}"
                        f"{'' if a.count_pad else ', count_include_pad=False'})")
            return f"nn.AvgPool2d({common}{ceil})"
        pads = a.ceil_pads(*node.in_shapes[0][:2])  # ceil mode's overhang after the padding: never counted
        if a.count_pad:  # (never dilated: the registry refuses that)
            overhang = (pads[1] - bottom, pads[3] - right)
            return (f"{ctx.helper('CountingAvgPool2d')}(kernel_size={a.kernel!r}, stride={a.stride!r}, "
                    f"pads={_pad_order(a.pads())!r}, overhang={overhang!r})")
        return (f"{ctx.helper('ExactAvgPool2d')}(kernel_size={a.kernel!r}, stride={a.stride!r}, "
                f"pads={_pad_order(pads)!r}, dilation={a.dilation!r})")

    def emit_globalavgpool(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        if node.args.keepdims:  # N x C x 1 x 1, torchvision's squeeze-excitation pooling
            return "nn.AdaptiveAvgPool2d(1)"
        return f"{ctx.helper('GlobalAvgPool2d')}()"

    def emit_globalmaxpool(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        if node.args.keepdims:
            return "nn.AdaptiveMaxPool2d(1)"
        return f"{ctx.helper('GlobalMaxPool2d')}()"

    def emit_dense(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        a = node.args
        return f"nn.Linear({node.in_shapes[0][0]}, {a.units}" + ("" if a.bias else ", bias=False") + ")"

    def emit_batchnorm(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        a = node.args
        shape = node.in_shapes[0]
        kind = "nn.BatchNorm2d" if len(shape) == 3 else "nn.BatchNorm1d"
        # The spec's momentum is Keras's (weight of the old running value); torch's is the new batch's weight.
        momentum = round(1.0 - a.momentum, 12)
        options = (("" if a.epsilon == 1e-5 else f", eps={a.epsilon!r}")  # torch's defaults are left out
                   + ("" if momentum == 0.1 else f", momentum={momentum!r}")
                   + ("" if (a.scale or a.center) else ", affine=False"))
        if a.scale != a.center:  # torch's affine is both or neither: drop the one the spec leaves out
            ctx.after.append(f"{{m}}.register_parameter({'weight' if not a.scale else 'bias'!r}, None)")
        return f"{kind}({shape[-1]}{options})"

    def emit_lrn(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        a = node.args
        kind = "nn.LocalResponseNorm" if len(node.in_shapes[0]) == 3 else ctx.helper("FlatLocalResponseNorm")
        # Krizhevsky's alpha multiplies the plain sum; torch's is divided by the size first.
        return f"{kind}({a.size}, alpha={a.alpha * a.size!r}, beta={a.beta!r}, k={a.k!r})"

    def emit_relu(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return "nn.ReLU(inplace=True)" if ctx.overwritable(node.inputs[0]) else "nn.ReLU()"

    def emit_softmax(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return f"nn.Softmax(dim={1 if len(node.in_shapes[0]) == 3 else -1})"  # over the channels

    def emit_add(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        # The forward passes an overwritable input first (see _forward_lines), so the sum can go into it.
        return f"{ctx.helper('Add')}(inplace=True)" if _inplace_add_target(node, ctx) is not None \
            else f"{ctx.helper('Add')}()"

    def emit_concat(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return f"{ctx.helper('Concat')}()"

    # ---- resampling and U-Net's merge (issue 12)

    def emit_convtranspose(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        a = node.args
        options = ((f", stride={_int_or_pair(a.stride)}" if a.stride != (1, 1) else "")
                   + (f", padding={_int_or_pair(a.crop())}" if a.crop() != (0, 0) else "")
                   + (f", output_padding={_int_or_pair(a.output_padding)}" if a.output_padding != (0, 0) else "")
                   + ("" if a.bias else ", bias=False"))
        return (f"nn.ConvTranspose2d({node.in_shapes[0][2]}, {a.filters}, kernel_size={_int_or_pair(a.kernel)}"
                f"{options})")

    def emit_upsample(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        a = node.args
        # a scale keeps the model usable at other input sizes; an integer scale reads the same inputs as a size
        how = f"scale_factor={_int_or_pair(a.scale)}" if a.scale is not None else f"size={tuple(a.size)!r}"
        corners = f", align_corners={a.align_corners}" if a.mode == "bilinear" else ""
        return f"nn.Upsample({how}, mode={a.mode!r}{corners})"

    def emit_cropconcat(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return f"{ctx.helper('CropConcat')}()"

    # ---- channel split, channel shuffle, zero-padding shortcuts

    def emit_split(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return f"{ctx.helper('ChannelSplit')}({node.args.parts}, {node.args.part})"

    def emit_shuffle(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return f"{ctx.helper('ChannelShuffle')}({node.args.groups})"

    def emit_zeropad(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        pads = OPS["zeropad"].pads(node.args, node.in_shapes[0][2])
        return f"{ctx.helper('ZeroPadShortcut')}({node.args.stride!r}, {pads!r})"

    # squeeze-excitation and mobile activations (issue 12)

    def emit_silu(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return "nn.SiLU(inplace=True)" if ctx.overwritable(node.inputs[0]) else "nn.SiLU()"

    def emit_hardswish(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return "nn.Hardswish(inplace=True)" if ctx.overwritable(node.inputs[0]) else "nn.Hardswish()"

    def emit_multiply(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        flat = tuple(i for i, s in enumerate(node.in_shapes) if len(s) < len(node.shape))
        return f"{ctx.helper('Multiply')}({f'flat={flat!r}' if flat else ''})"

    # ---- ConvNeXt's kinds (issue 12)

    def emit_gelu(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        kind = ctx.helper("ChannelsLastGELU") if ctx.channels_last(node.inputs[0]) else "nn.GELU"
        return f"{kind}()" if node.args.approximate == "none" else f"{kind}(approximate={node.args.approximate!r})"

    def emit_layernorm(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        shape = node.in_shapes[0]
        kind = ctx.helper("LayerNorm2d") if len(shape) == 3 else "nn.LayerNorm"
        return f"{kind}({shape[-1]}" + ("" if node.args.epsilon == 1e-5 else f", eps={node.args.epsilon!r}") + ")"

    def emit_layer_scale(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return f"{ctx.helper('LayerScale')}({node.weights()['weight'].shape!r}, {node.args.init!r})"

    def emit_stochastic_depth(self, node: PlanNode, inputs: list[str], ctx: _Context) -> str:
        return f"{ctx.helper('StochasticDepth')}({node.args.rate!r})"


# ---------------------------------------------------------------- memory layout


def _pointwise(node: PlanNode) -> bool:
    """A 1x1 conv that mixes each position's channels and nothing else: a matrix product over the channels."""
    a = node.args
    return (node.op == "conv" and a.kernel == (1, 1) and a.stride == (1, 1) and a.groups == 1
            and a.pads() == (0, 0, 0, 0))


def _channels_last(plan: Plan) -> set[str]:
    """The nodes whose tensor the generated code holds channels-last in memory: a map's layernorm (LayerNorm2d
    normalises N x H x W x C data and returns its N x C x H x W view), the 1x1 convs that read such a tensor
    (PointwiseConv2d), and single-input kinds that keep each position's features in place (activations, layer
    scale, drop path, batchnorm: element-wise ops keep their input's memory layout). A 1x1 conv after a
    layernorm, and after GELU after that, is then one matrix product with no copy, as in torchvision's ConvNeXt."""
    out: set[str] = set()
    for node in plan.nodes:
        if len(node.shape) != 3:
            continue
        if node.op == "layernorm":
            out.add(node.name)
        elif node.inputs[0] in out and (_pointwise(node) or (node.opdef.keeps_order and node.opdef.inputs == "one")):
            out.add(node.name)
    return out


# ---------------------------------------------------------------- generated code pieces


def _check_name(node: PlanNode) -> None:
    """Every part of a node's name becomes a module name (a state_dict key): it must be an identifier or a
    number, and must not shadow an attribute every nn.Module has (`forward`, `training`, `eval`...)."""
    for part in node.name.split("."):
        if part in _GOOD_PARTS:
            continue
        if not _PART.fullmatch(part):
            raise backend_error("A404", f"`{node.name}` cannot name a PyTorch module: `{part}` is not an identifier",
                         node, help="use letters, digits and underscores in names")
        if hasattr(_probe(), part):
            raise backend_error("A404", f"`{node.name}` cannot name a PyTorch module: `{part}` is an attribute of "
                                "every nn.Module", node, help=f"rename `{part}`")
        if len(_GOOD_PARTS) < 100_000:
            _GOOD_PARTS.add(part)


@functools.cache
def _probe() -> Any:
    """An object with the attributes of a generated module; without torch, those torch_names.py recorded."""
    if nn is None:
        from .torch_names import MODULE_ATTRIBUTES

        return types.SimpleNamespace(**dict.fromkeys(MODULE_ATTRIBUTES))

    class _Probe(nn.Module):
        def __getitem__(self, name):  # the generated Scope's one method
            return self._modules[str(name)]

    return _Probe()

_GOOD_PARTS: set[str] = set()  # parts already checked (the check asks torch, which is slow for misses)


@functools.lru_cache(maxsize=65536)
def _access(part: str) -> str:
    if part.isdigit():
        return f"[{int(part)}]" if str(int(part)) == part else f"[{part!r}]"
    # `self.__debug__ = ...` does not compile and `self.__x` is renamed `self._Net__x` in a class body
    if keyword.iskeyword(part) or keyword.issoftkeyword(part) or part.startswith("__"):
        return f"[{part!r}]"
    return f".{part}"


def _path(parts: list[str]) -> str:
    return "self" + "".join(_access(p) for p in parts)


def _register(parent: list[str], part: str, ctor: str) -> str:
    if _access(part).startswith("."):
        return f"{_path(parent + [part])} = {ctor}"
    return f"{_path(parent)}.add_module({part!r}, {ctor})"


_Unit = tuple[tuple[str, ...], int]  # a numbered scope: its parent's path and its number (`conv4_x`, 3)


def _unit_of(parts: list[str]) -> _Unit | None:
    """The first numbered scope on a path (`conv4_x.3` of `conv4_x.3.conv1`): what a repetition made."""
    for depth, part in enumerate(parts):
        if part.isdigit() and str(int(part)) == part:
            return tuple(parts[:depth]), int(part)
    return None


def _fold_repeats(lines: list[str], units: list[_Unit | None]) -> list[str]:
    """Consecutive numbered scopes built by the same lines (`bottleneck(256) x 35`) become one loop, as a person
    would write it: the module tree and its registration order are unchanged, and Python compiles a ResNet-152
    five times less `__init__` (compiling the generated module was a third of what `archc.compile` adds)."""
    segments: list[tuple[_Unit | None, list[str]]] = []
    for line, unit in zip(lines, units, strict=True):
        if segments and segments[-1][0] == unit:
            segments[-1][1].append(line)
        else:
            segments.append((unit, [line]))
    seen: set[_Unit] = set()
    split = {unit for unit, _ in segments if unit is not None and (unit in seen or seen.add(unit))}
    out: list[str] = []
    i = 0
    while i < len(segments):
        unit, body = segments[i]
        template = _loop_body(unit, body) if unit is not None and unit not in split else None
        end = i + 1
        while template is not None and end < len(segments):
            next_unit, next_body = segments[end]
            if next_unit is None or next_unit in split or next_unit != (unit[0], unit[1] + end - i) \
                    or _loop_body(next_unit, next_body) != template:
                break
            end += 1
        if end - i < 2:
            out.extend(body)
            i += 1
            continue
        parent = ".".join(unit[0])
        out.append(f"for i in range({unit[1]}, {unit[1] + end - i}):  # {parent}.{unit[1]} to "
                   f"{parent}.{unit[1] + end - i - 1}: the same layers")
        out.extend("    " + line for line in template)
        i = end
    return out


def _loop_body(unit: _Unit, body: list[str]) -> list[str] | None:
    """The lines of one numbered scope with its number as the loop variable `i`; None if a line does not
    start with the scope's path (then the scope is written out as it is)."""
    parent = _path(list(unit[0]))
    own = f"{parent}[{unit[1]}]"
    registered = f"{parent}.add_module({str(unit[1])!r}, "
    template = []
    for line in body:
        if line.startswith(registered):
            template.append(f"{parent}.add_module(str(i), " + line[len(registered):])
        elif line.startswith(own) and line[len(own):len(own) + 1] in (".", "["):
            template.append(f"{parent}[i]" + line[len(own):])
        else:
            return None
    return template


def _inplace_add_target(node: PlanNode, ctx: _Context) -> int | None:
    for i, name in enumerate(node.inputs):
        if ctx.overwritable(name):
            return i
    return None


def _forward_lines(nodes: list[PlanNode], output: str, ctx: _Context) -> list[str]:
    """One statement per node. A value's variable is reused once its last reader has run, so dead
    activations are freed as they would be in hand-written code."""
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node.inputs:
            last_use[name] = i
    last_use[output] = len(nodes)
    var = {INPUT: "x"}
    free: list[str] = []
    fresh = iter(f"x{i}" for i in range(1, 1 << 30))
    lines: list[str] = []
    blocks = _Blocks(lines)
    for i, node in enumerate(nodes):
        inputs = list(node.inputs)
        target_index = _inplace_add_target(node, ctx) if node.op == "add" else None
        if target_index:  # an in-place add writes into its first argument: put the overwritable one first
            inputs.insert(0, inputs.pop(target_index))
        args = ", ".join(var[name] for name in inputs)
        if node.opdef.inputs == "many":  # a merge takes one list (TorchScript compiles no `*args`)
            args = f"[{args}]"
        dying = [var[name] for name in dict.fromkeys(inputs) if last_use.get(name) == i]
        target = dying[0] if dying else (free.pop(0) if free else next(fresh))
        free.extend(v for v in dying[1:])
        free.sort(key=lambda v: (len(v), v))
        if node.name not in last_use:  # nothing reads it: the module still runs, as the spec asks
            free.append(target)
        var[node.name] = target
        module = blocks.path(node.name.split("."))
        lines.append(f"{target} = {module}({args})  # {_nchw(node.shape)}")
    lines.append(f"return {var[output]}")
    return lines


class _Blocks:
    """How `forward` reaches a module. TorchScript subscripts only its own containers (ModuleList...), so a scope
    that is no attribute name (`conv2_x.0`, `__debug__`) is fetched once with `getattr`, which it compiles, into a
    local named after its path, before the first statement that uses it: `conv2_x_0 = getattr(self.conv2_x, '0')`,
    then `conv2_x_0.conv1(x)`. (Python reads a local faster than it indexes a scope, too.)"""

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.names: dict[tuple[str, ...], str] = {}
        self.taken: set[str] = set()

    def path(self, parts: list[str]) -> str:
        cut = max((k for k in range(1, len(parts) + 1) if not _access(parts[k - 1]).startswith(".")), default=0)
        head = self.local(tuple(parts[:cut])) if cut else "self"
        return head + "".join(_access(p) for p in parts[cut:])

    def local(self, parts: tuple[str, ...]) -> str:
        if parts not in self.names:
            name = "_".join(parts)
            if name.startswith("__"):  # `__debug__` cannot be assigned; `__x` would be renamed `_Net__x`
                name = "scope" + name
            elif not name.isidentifier() or keyword.iskeyword(name):
                name = "_" + name if name[0].isdigit() else name + "_"
            while name in self.taken or name in ("self", "torch", "nn", "F") or re.fullmatch(r"x\d*", name):
                name += "_"
            self.taken.add(name)
            self.lines.append(f"{name} = getattr({self.path(list(parts[:-1]))}, {parts[-1]!r})")
            self.names[parts] = name
        return self.names[parts]


def _input_shape(plan: Plan) -> tuple[int, ...]:
    s = plan.input_shape
    return (s[2], s[0], s[1]) if len(s) == 3 else tuple(s)


def _load_source(source: str, network: str) -> types.ModuleType:
    """Execute generated source as a module. Modules are cached by the source's hash, so building a spec twice
    gives models of one class (pickle and deepcopy need that) and tracebacks show the generated lines."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    return _module_named(f"archc_generated_{re.sub(r'[^A-Za-z0-9_]', '_', network)[:64]}_{digest}", source)


def _module_named(name: str, source: str) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    filename = f"<archc {name}>"
    module = types.ModuleType(name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own generated source
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == name:
            value.__reduce_ex__ = _reduce_generated  # what pickle saves: see unpickle_generated
    module.__archc_source__ = source
    sys.modules[name] = module
    return module


def _reduce_generated(obj: Any, protocol: int) -> tuple:
    """pickle's recipe for an instance of a class of a built module (`torch.save(model)`): the module's name and
    source with the object, so that a fresh process with archc rebuilds the module before the object's state
    (whose submodules are of the same module's classes) is read. The source is one string: pickle stores it once
    however many of the module's objects the file holds."""
    cls = type(obj)
    module = sys.modules[cls.__module__]
    _, _, *rest = object.__reduce_ex__(obj, protocol)  # the default recipe's state, as nn.Module pickles it
    return (unpickle_generated, (cls.__module__, module.__archc_source__, cls.__qualname__), *rest)


def unpickle_generated(module: str, source: str, qualname: str) -> Any:
    """A bare instance of class `qualname` of the built module `module`, executing its `source` first in a
    process that has not built it. Saved models name this function: it keeps its name and place."""
    if not re.fullmatch(r"archc_generated_\w+_[0-9a-f]{16}", module):
        raise ValueError(f"`{module}` is not the name of a module archc built")
    cls = getattr(_module_named(module, source), qualname)
    return cls.__new__(cls)


# ---------------------------------------------------------------- load_weights helpers


def _state_dict_of(source: Any) -> Mapping[str, Any]:
    if isinstance(source, nn.Module):
        return source.state_dict()
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        try:
            loaded = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure to read is the user's file's problem
            raise backend_error("A405", f"cannot read weights from `{source}`: {e}") from None
        if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
            loaded = loaded["state_dict"]  # training checkpoints often wrap it
        return _state_dict_of(loaded)
    if isinstance(source, Mapping):
        bad = [k for k, v in source.items() if not isinstance(v, torch.Tensor)]
        if bad:
            what = type(source[bad[0]]).__name__
            raise backend_error("A405", f"the state dict's `{bad[0]}` is a {what}, not a tensor")
        return source
    raise backend_error("A405", f"cannot load weights from a `{type(source).__name__}`",
                 help="pass a PyTorch module, a state dict, or the path of a saved state dict")


def _weights(state: Mapping[str, Any]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def _show_shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) if t.dim() else "a scalar"


_POSITIONAL_HELP = ("a state dict is copied by position: the source must be the same architecture, its tensors in "
                    "the same order; pass the source module itself to match through the structure")


def _node_of(plan: Plan | None, key: str) -> PlanNode | None:
    """The plan node that holds the state_dict entry `key` (`conv1.conv.weight`), for its spec line."""
    if plan is None:
        return None
    name = key.rpartition(".")[0]
    try:
        return plan.node(name)
    except KeyError:
        return None


def _is_keras_source(source: Any) -> bool:
    """A Keras model, or the path of a `.keras` file."""
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return str(source if not isinstance(source, bytes) else source.decode()).endswith(".keras")
    return hasattr(source, "get_layer") and any((c.__module__ or "").startswith("keras") for c in type(source).__mro__)


def _keras_graph(source: Any, plan: Plan):
    """A Keras source's graph, its layers' `ref` each a FlatLayer holding its tensors (PyTorch layout)."""
    from ..flat import Unsupported, graph_of_flat
    from ..readers.keras import read_flat

    try:  # a source it cannot walk is A540 (archc.readers.keras raises it)
        return graph_of_flat(read_flat(source, plan.input_shape), "the source")
    except Unsupported as e:
        raise backend_error("A541", f"the Keras source holds {e.what} at `{e.where}`, which archc cannot express",
                            help=e.help or None) from None


def _load_by_structure(model: nn.Module, plan: Plan, source: Any, graph: Any = None) -> nn.Module:
    import numpy

    from ..flat import FlatLayer
    from ..match import graph_of_plan
    from ..readers.torch import ReadError, read_module, tensor_of

    try:
        # A compiled spec (or anything carrying its plan) needs no tracing: its plan is its structure.
        source_plan = getattr(source, "archc_plan", None)
        theirs = graph if graph is not None else graph_of_plan(source_plan, "the source") \
            if isinstance(source_plan, Plan) else read_module(source, _input_shape(plan), what="the source")
    except ReadError as e:
        raise backend_error("A405", f"cannot read the structure of the source `{type(source).__name__}` by running "
                            f"it on a {'x'.join(map(str, _input_shape(plan)))} input: {e}",
                            help="pass its `state_dict()` to copy the tensors by position instead") from None
    result = _match(plan, theirs)
    ours = model.state_dict(keep_vars=True)
    copies = []
    for layer, name, their_layer, their_name in result.tensor_pairs():
        mine = ours[f"{layer.label}.{name}"]
        ref = their_layer.ref  # a reader's {name: qualified name}, a plan node named like its module, or a
        if isinstance(ref, FlatLayer):  # flat network's layer holding its tensors (numpy, PyTorch layout)
            copies.append((mine, torch.tensor(numpy.asarray(ref.tensors[their_name]))))  # copied: may be read-only
            continue
        qualified = ref[their_name] if isinstance(ref, dict) else f"{their_layer.label}.{their_name}"
        copies.append((mine, tensor_of(source, qualified)))
    with torch.no_grad():
        for mine, tensor in copies:
            mine.copy_(tensor.reshape(mine.shape))
    return model


def _match(plan: Plan, theirs: Any):
    """The spec's plan matched against a source's graph; A406 where they part."""
    from ..match import graph_of_plan, match

    result = match(graph_of_plan(plan, "the spec"), theirs)
    if result.pairs is None:
        miss = result.mismatch
        node = miss.a.ref if miss.a is not None else None
        span = node.span if node is not None else None
        raise ArchcError([Diagnostic("A406", miss.message, span, notes=miss.notes, help=_STRUCTURE_HELP)],
                         _source_text(span))
    return result


def _is_onnx(source: Any) -> bool:
    """An onnx.ModelProto (without importing onnx here) or the path of an `.onnx` file."""
    if type(source).__name__ == "ModelProto" and type(source).__module__.startswith("onnx"):
        return True
    return isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".onnx")


def _onnx_graph(source: Any, plan: Plan):
    """An ONNX source's graph, its layers' `ref` each a FlatLayer holding its tensors (PyTorch layout)."""
    from ..flat import Unsupported, graph_of_flat
    from ..readers.onnx import read_flat

    try:
        return graph_of_flat(read_flat(source, input_shape=plan.input_shape), "the source")
    except Unsupported as e:
        raise backend_error("A530", f"cannot read the ONNX source: {e.what} at `{e.where}`",
                            help=e.help or None) from None
    except (OSError, ValueError) as e:  # not a file, or not an ONNX model (protobuf's DecodeError is a ValueError)
        raise backend_error("A530", f"cannot read the ONNX source `{source}`: {e}") from None


def _source_text(span: Any) -> dict[str, str]:
    """The spec file a span points into, so the diagnostic shows the line (the plan keeps no source text)."""
    if span is None or not span.file:
        return {}
    try:
        with open(span.file, encoding="utf-8") as f:
            return {span.file: f.read()}
    except OSError:
        return {}


_STRUCTURE_HELP = ("layers are paired by their place in the data flow and their shapes (docs/matching.md): the spec "
                   "must describe the source's architecture at this input size")

