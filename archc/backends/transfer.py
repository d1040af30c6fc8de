"""Moving weights between the PyTorch and Keras models of one spec.

The walk follows the Plan, node by node, never the frameworks' layer order: a node `conv3_x.0.conv2` is the
torch submodule of that dotted path and the Keras layer `conv3_x_0_conv2`. Layout differences handled here:
  * conv kernels: torch [out, in/groups, kh, kw], Keras [kh, kw, in/groups, out]; depthwise Keras
    [kh, kw, in, multiplier], whose output order (channel-major) is torch's.
  * flat vectors: torch flattens NCHW maps channel-first, Keras NHWC maps channel-last, so the features
    of a vector after a flatten come in different orders. Each flat node's order is tracked through the
    plan (dropout, activations, batchnorm, add and concat keep or combine it) and the dense or batchnorm
    that reads such a vector gets its weights permuted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..diagnostics import ArchcError, Diagnostic
from ..plan import INPUT, Plan, PlanNode
from .keras import keras_name

# Layer kinds whose output keeps each input feature in its place (so a flat vector keeps its order).
_ELEMENTWISE = {"dropout", "identity", "relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "softmax",
                "batchnorm"}


def _error(message: str, help: str | None = None) -> ArchcError:
    return ArchcError([Diagnostic("A413", message, None, help=help)])


def _is_torch(model: Any) -> bool:
    return hasattr(model, "state_dict") and hasattr(model, "get_submodule")


def _is_keras(model: Any) -> bool:
    return hasattr(model, "get_layer") and hasattr(model, "get_weights")


def is_torch_keras_pair(src: Any, dst: Any) -> bool:
    return (_is_torch(src) and _is_keras(dst)) or (_is_keras(src) and _is_torch(dst))


def _plan(*models: Any) -> Plan:
    for model in models:
        plan = getattr(model, "archc_plan", None)
        if plan is not None:
            return plan
    raise _error("neither model carries its archc plan",
                 help="build both models with `archc.compile` from the same spec")


def flat_orders(plan: Plan) -> dict[str, np.ndarray | None]:
    """For each node with a flat output: `order[i]` is the torch index of the Keras model's feature i
    (None where both agree)."""
    orders: dict[str, np.ndarray | None] = {INPUT: None}
    for node in plan.nodes:
        ins = [orders[name] for name in node.inputs]
        order: np.ndarray | None = None
        if node.op == "flatten" and len(node.in_shapes[0]) == 3:
            h, w, c = node.in_shapes[0]
            order = np.arange(h * w * c).reshape(c, h, w).transpose(1, 2, 0).ravel()
        elif node.op in _ELEMENTWISE:
            order = ins[0]
        elif node.op == "add":
            order = ins[0]
            if any((o is None) != (order is None) or (o is not None and not np.array_equal(o, order)) for o in ins):
                raise _error(f"`{node.name}` adds flat vectors whose features are ordered differently in the "
                             "two backends, so no weights make the models agree")
        elif node.op == "concat" and len(node.shape) == 1 and any(o is not None for o in ins):
            parts, offset = [], 0
            for o, shape in zip(ins, node.in_shapes, strict=True):
                parts.append((o if o is not None else np.arange(shape[0])) + offset)
                offset += shape[0]
            order = np.concatenate(parts)
        elif node.op == "lrn" and ins[0] is not None:
            raise _error(f"`{node.name}` normalises across a flattened vector's neighbours, which differ between "
                         "channel-first and channel-last flattening", help="put the `lrn` before the `flatten`")
        if order is not None and np.array_equal(order, np.arange(order.size)):
            order = None
        orders[node.name] = order
    return orders


def transfer_weights(src: Any, dst: Any) -> Any:
    """Copy every weight of `src` into `dst` (one PyTorch and one Keras model of the same spec); returns dst."""
    if _is_torch(src) and _is_keras(dst):
        to_keras = True
        torch_model, keras_model = src, dst
    elif _is_keras(src) and _is_torch(dst):
        to_keras = False
        torch_model, keras_model = dst, src
    else:
        raise _error(f"transfer_weights moves weights between a PyTorch and a Keras model, not from "
                     f"`{type(src).__name__}` to `{type(dst).__name__}`")
    plan = _plan(keras_model, torch_model)
    orders = flat_orders(plan)
    for node in plan.nodes:
        if node.op not in ("conv", "dense", "batchnorm"):
            continue
        tmod = _torch_module(torch_model, node)
        klayer = _keras_layer(keras_model, node)
        pairs = _pairs(node, tmod, klayer, orders.get(node.inputs[0]))
        for tensor, variable, to_k, to_t in pairs:
            if to_keras:
                value = to_k(tensor.detach().cpu().numpy())
                if tuple(value.shape) != tuple(variable.shape):
                    raise _error(f"`{node.name}`: a {tuple(value.shape)} weight does not fit {tuple(variable.shape)}")
                variable.assign(value.astype(variable.dtype))
            else:
                import torch

                value = to_t(np.asarray(variable.numpy()))
                if tuple(value.shape) != tuple(tensor.shape):
                    raise _error(f"`{node.name}`: a {tuple(value.shape)} weight does not fit {tuple(tensor.shape)}")
                with torch.no_grad():
                    tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(tensor.dtype))
    return dst


def _torch_module(model: Any, node: PlanNode):
    try:
        module = model.get_submodule(node.name)
    except AttributeError:
        raise _error(f"the PyTorch model has no module `{node.name}`",
                     help="both models must be built from the same spec") from None
    want = {"conv": "Conv", "dense": "Linear", "batchnorm": "BatchNorm"}[node.op]
    if want in type(module).__name__:
        return module
    inner = [m for m in module.modules() if want in type(m).__name__]  # e.g. a conv wrapped with its padding
    if len(inner) != 1:
        raise _error(f"the PyTorch module `{node.name}` is a {type(module).__name__}, not a {want} layer")
    return inner[0]


def _keras_layer(model: Any, node: PlanNode):
    try:
        return model.get_layer(keras_name(node.name))
    except ValueError:
        raise _error(f"the Keras model has no layer `{keras_name(node.name)}`",
                     help="both models must be built from the same spec") from None


def _pairs(node: PlanNode, tmod: Any, klayer: Any, order: np.ndarray | None) -> list[tuple]:
    """(torch tensor, Keras variable, torch->Keras layout, Keras->torch layout) for each weight of a node."""
    same = (lambda a: a, lambda a: a)
    pairs: list[tuple] = []
    if node.op == "conv":
        if type(klayer).__name__ == "DepthwiseConv2D":
            c = node.in_shapes[0][2]
            m = node.args.filters // c
            kh, kw = node.args.kernel
            # torch [c*m, 1, kh, kw] (channel-major) <-> Keras [kh, kw, c, m]
            to_k = lambda a: a.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)
            to_t = lambda a: a.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
            pairs.append((tmod.weight, klayer.kernel, to_k, to_t))
        else:
            pairs.append((tmod.weight, klayer.kernel, lambda a: a.transpose(2, 3, 1, 0),
                          lambda a: a.transpose(3, 2, 0, 1)))
        if node.args.bias:
            pairs.append((tmod.bias, klayer.bias, *same))
    elif node.op == "dense":
        if order is None:
            pairs.append((tmod.weight, klayer.kernel, lambda a: a.T, lambda a: a.T))
        else:
            def to_t(a, order=order):
                out = np.empty_like(a.T)
                out[:, order] = a.T
                return out

            pairs.append((tmod.weight, klayer.kernel, lambda a: a[:, order].T, to_t))
        if node.args.bias:
            pairs.append((tmod.bias, klayer.bias, *same))
    elif node.op == "batchnorm":
        if order is None:
            perm = same
        else:
            inverse = np.argsort(order)
            perm = (lambda a: a[order], lambda a: a[inverse])
        if node.args.scale:
            pairs.append((tmod.weight, klayer.gamma, *perm))
        if node.args.center:
            pairs.append((tmod.bias, klayer.beta, *perm))
        pairs.append((tmod.running_mean, klayer.moving_mean, *perm))
        pairs.append((tmod.running_var, klayer.moving_variance, *perm))
    return pairs
