"""A plain PyTorch reading of a Plan, written from the language's definitions in archc/ops.py and nothing else:
the yardstick the Keras backend's numerics are held to until (and besides) the PyTorch backend.

Modules nest along the plan's dotted names, as the PyTorch backend's do, so `archc.transfer_weights`
finds them the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archc.plan import INPUT, Plan


def _place(root: nn.Module, dotted: str, module: nn.Module) -> None:
    *scopes, leaf = dotted.split(".")
    parent = root
    for scope in scopes:
        if not hasattr(parent, scope):
            parent.add_module(scope, nn.Module())
        parent = getattr(parent, scope)
    parent.add_module(leaf, module)


class ReferenceModel(nn.Module):
    def __init__(self, plan: Plan, logits: bool = False):
        super().__init__()
        self.archc_plan = plan
        self.logits = logits
        for node in plan.nodes:
            a = node.args
            if node.op == "conv":
                module = nn.Conv2d(node.in_shapes[0][2], a.filters, a.kernel, stride=a.stride, dilation=a.dilation,
                                   groups=a.groups, bias=a.bias)
            elif node.op == "convtranspose":
                module = nn.ConvTranspose2d(node.in_shapes[0][2], a.filters, a.kernel, stride=a.stride,
                                            bias=a.bias)
            elif node.op == "dense":
                module = nn.Linear(node.in_shapes[0][0], a.units, bias=a.bias)
            elif node.op == "batchnorm":
                kind = nn.BatchNorm2d if len(node.shape) == 3 else nn.BatchNorm1d
                # the spec's momentum is Keras's (weight of the old statistics); torch's is the new batch's weight
                module = kind(node.shape[-1], eps=a.epsilon, momentum=1 - a.momentum, affine=a.scale)
            else:
                continue
            _place(self, node.name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.archc_plan
        values = {INPUT: x}
        for node in plan.nodes:
            ins = [values[name] for name in node.inputs]
            values[node.name] = self._apply(node, ins)
        out = plan.output
        if self.logits and out != INPUT and plan.node(out).op == "softmax":
            out = plan.node(out).inputs[0]
        return values[out]

    def _apply(self, node, ins):
        a, x, op = node.args, ins[0], node.op
        if op in ("conv", "maxpool", "avgpool"):
            top, bottom, left, right = a.pads()
            widths = (left, right, top, bottom)
        if op in ("maxpool", "avgpool"):  # ceil mode: the last windows run past the padding, over nothing
            (oh, ow), (h, w) = node.shape[:2], x.shape[2:]
            over_h = max(0, (oh - 1) * a.stride[0] + a.dilation[0] * (a.kernel[0] - 1) + 1 - (h + top + bottom))
            over_w = max(0, (ow - 1) * a.stride[1] + a.dilation[1] * (a.kernel[1] - 1) + 1 - (w + left + right))
            counted = widths  # the padding an average counts: none, or all of it with `count_pad`
            widths = (left, right + over_w, top, bottom + over_h)
        if op == "conv":
            conv = self.get_submodule(node.name)
            return F.conv2d(F.pad(x, widths), conv.weight, conv.bias, a.stride, 0, a.dilation, a.groups)
        if op == "maxpool":
            return F.max_pool2d(F.pad(x, widths, value=float("-inf")), a.kernel, a.stride, dilation=a.dilation)
        if op == "avgpool":  # window sums over counts of real inputs; unfold, as avg_pool2d has no dilation

            def window_sums(t, pads=widths):
                taps = F.unfold(F.pad(t, pads), a.kernel, dilation=a.dilation, stride=a.stride)
                return taps.reshape(t.shape[0], t.shape[1], -1, taps.shape[-1]).sum(2).reshape(
                    t.shape[0], t.shape[1], *node.shape[:2])

            if getattr(a, "count_pad", False):
                real = x.new_ones((1, 1, h + top + bottom, w + left + right))  # every position counts
                overhang = (0, over_w, 0, over_h)
                return window_sums(F.pad(x, counted), overhang) / window_sums(real, overhang)
            return window_sums(x) / window_sums(torch.ones_like(x[:, :1]))
        if op == "convtranspose":  # the full transposed conv, its output_padding rows, then the crop
            conv = self.get_submodule(node.name)
            full = F.conv_transpose2d(x, conv.weight, conv.bias, a.stride, 0, a.output_padding)
            ph, pw = a.crop()
            return full[:, :, ph:ph + node.shape[0], pw:pw + node.shape[1]]
        if op == "upsample":
            corners = a.align_corners if a.mode == "bilinear" else None
            return F.interpolate(x, size=tuple(node.shape[:2]), mode=a.mode, align_corners=corners)
        if op == "cropconcat":  # each input cropped to the smallest, starting (H - h) // 2 rows down
            h, w = node.shape[:2]
            return torch.cat([t[:, :, (t.shape[2] - h) // 2:(t.shape[2] - h) // 2 + h,
                                 (t.shape[3] - w) // 2:(t.shape[3] - w) // 2 + w] for t in ins], dim=1)
        if op == "globalavgpool":
            return x.mean(dim=(2, 3), keepdim=a.keepdims)
        if op == "globalmaxpool":
            return x.amax(dim=(2, 3), keepdim=a.keepdims)
        if op == "flatten":
            return x.flatten(1)
        if op in ("dense", "batchnorm"):
            return self.get_submodule(node.name)(x)
        if op == "lrn":
            # b = a / (k + alpha * sum over `size` centred channels of a^2) ** beta; torch divides alpha by size
            return F.local_response_norm(x, a.size, a.alpha * a.size, a.beta, a.k)
        if op == "dropout":
            return F.dropout(x, a.rate, self.training)
        if op == "identity":
            return x
        if op == "relu":
            return F.relu(x)
        if op == "relu6":
            return F.relu6(x)
        if op == "leaky_relu":
            return F.leaky_relu(x, a.negative_slope)
        if op == "elu":
            return F.elu(x, a.alpha)
        if op == "sigmoid":
            return torch.sigmoid(x)
        if op == "tanh":
            return torch.tanh(x)
        if op == "softmax":
            return F.softmax(x, dim=1)
        if op == "add":
            return sum(ins[1:], ins[0])
        if op == "concat":
            return torch.cat(ins, dim=1)
        # channel split, channel shuffle, zero-padding shortcuts
        if op == "split":  # the `part`-th of `parts` equal slices of the channels
            size = x.shape[1] // a.parts
            return x[:, a.part * size:(a.part + 1) * size]
        if op == "shuffle":  # output channel j * groups + i is input channel i * (C / groups) + j
            per_group = x.shape[1] // a.groups
            return x[:, [i * per_group + j for j in range(per_group) for i in range(a.groups)]]
        if op == "zeropad":  # rows and columns 0, s, 2s, ...; floor(extra / 2) zero channels before, the rest after
            sub = x[:, :, ::a.stride[0], ::a.stride[1]]
            extra = a.filters - x.shape[1]
            zeros = sub.new_zeros((sub.shape[0], 1, *sub.shape[2:]))
            return torch.cat([zeros.expand(-1, extra // 2, -1, -1), sub,
                              zeros.expand(-1, extra - extra // 2, -1, -1)], dim=1)

        if op == "silu":  # x * sigmoid(x)
            return x * torch.sigmoid(x)
        if op == "hardswish":  # x * relu6(x + 3) / 6
            return x * F.relu6(x + 3) / 6
        if op == "hardsigmoid":  # relu6(x + 3) / 6
            return F.relu6(x + 3) / 6
        if op == "multiply":  # broadcast; a flat N x C input beside maps is N x C x 1 x 1
            out = torch.ones(())
            for t in ins:
                out = out * (t[:, :, None, None] if t.dim() == 2 and len(node.shape) == 3 else t)
            return out
        raise NotImplementedError(op)
