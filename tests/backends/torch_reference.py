"""A plain PyTorch reading of a Plan, written from the language's definitions in archc/ops.py and nothing else:
the yardstick the Keras backend's numerics are held to until (and besides) the PyTorch backend.

Modules nest along the plan's dotted names, as the PyTorch backend's do, so `archc.transfer_weights`
finds them the same way.
"""

from __future__ import annotations

import math

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
            elif node.op == "dense":
                module = nn.Linear(node.in_shapes[0][0], a.units, bias=a.bias)
            elif node.op == "batchnorm":
                kind = nn.BatchNorm2d if len(node.shape) == 3 else nn.BatchNorm1d
                # the spec's momentum is Keras's (weight of the old statistics); torch's is the new batch's weight
                module = kind(node.shape[-1], eps=a.epsilon, momentum=1 - a.momentum, affine=a.scale)
            elif node.op in ("layernorm", "layer_scale"):  # ConvNeXt's kinds: their weights, in the plan's shapes
                module = nn.Module()
                for name, weight in node.weights().items():
                    value = torch.ones(weight.shape) if weight.init == "ones" else torch.zeros(weight.shape)
                    if not isinstance(weight.init, str):
                        value = torch.full(weight.shape, weight.init)
                    module.register_parameter(name, nn.Parameter(value))
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
        if op == "conv":
            conv = self.get_submodule(node.name)
            return F.conv2d(F.pad(x, widths), conv.weight, conv.bias, a.stride, 0, a.dilation, a.groups)
        if op == "maxpool":
            return F.max_pool2d(F.pad(x, widths, value=float("-inf")), a.kernel, a.stride, dilation=a.dilation)
        if op == "avgpool":  # window sums over counts of real inputs; unfold, as avg_pool2d has no dilation

            def window_sums(t):
                taps = F.unfold(F.pad(t, widths), a.kernel, dilation=a.dilation, stride=a.stride)
                return taps.reshape(t.shape[0], t.shape[1], -1, taps.shape[-1]).sum(2).reshape(
                    t.shape[0], t.shape[1], *node.shape[:2])

            return window_sums(x) / window_sums(torch.ones_like(x[:, :1]))
        if op == "globalavgpool":
            return x.mean(dim=(2, 3))
        if op == "globalmaxpool":
            return x.amax(dim=(2, 3))
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
        # ConvNeXt's kinds (issue 12)
        if op == "gelu":
            if a.approximate == "tanh":
                return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
            return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
        if op == "layernorm":  # over the channels of each position: dim 1 of N x C x H x W, or of N x C
            m = self.get_submodule(node.name)
            mean = x.mean(1, keepdim=True)
            var = ((x - mean) ** 2).mean(1, keepdim=True)
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return (x - mean) / torch.sqrt(var + a.epsilon) * m.weight.reshape(shape) + m.bias.reshape(shape)
        if op == "layer_scale":
            return x * self.get_submodule(node.name).weight.reshape((1, -1) + (1,) * (x.dim() - 2))
        if op == "stochastic_depth":  # one keep-or-drop draw per sample, kept samples scaled by 1 / (1 - rate)
            if not self.training or a.rate == 0:
                return x
            keep = (torch.rand((x.shape[0],) + (1,) * (x.dim() - 1)) >= a.rate).to(x.dtype)
            return x * keep / (1 - a.rate)
        raise NotImplementedError(op)
