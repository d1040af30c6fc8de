"""Moving weights between the PyTorch and Keras models of one spec.

The walk follows the Plan, node by node, never the frameworks' layer order. Each node's weights come from its
kind's definition (`PlanNode.weights()`: PyTorch names and layout): the torch tensor is that attribute of the
submodule at the node's dotted path, the Keras variable is what `KerasBackend.variables` maps the name to on
the layer `conv3_x_0_conv2`, with the layout conversion both ways. Flat vectors: torch flattens NCHW maps
channel-first, Keras NHWC maps channel-last, so after a flatten the features come in different orders
(`Plan.flat_orders`); the axis of a weight that indexes input features (`Weight.in_axis`) is permuted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..plan import Plan, PlanNode
from .base import backend_error


def _error(message: str, node: PlanNode | None = None, help: str | None = None):
    return backend_error("A413", message, node, help=help)


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


def transfer_weights(src: Any, dst: Any) -> Any:
    """Copy every weight of `src` into `dst` (one PyTorch and one Keras model of the same spec); returns dst."""
    if _is_torch(src) and _is_keras(dst):
        to_keras, torch_model, keras_model = True, src, dst
    elif _is_keras(src) and _is_torch(dst):
        to_keras, torch_model, keras_model = False, dst, src
    else:
        raise _error(f"transfer_weights moves weights between a PyTorch and a Keras model, not from "
                     f"`{type(src).__name__}` to `{type(dst).__name__}`")
    from . import get_backend

    keras_backend = get_backend("keras")
    plan = _plan(keras_model, torch_model)
    orders = plan.flat_orders()
    for node in plan.nodes:
        weights = node.weights()
        if not weights:
            continue
        module = _part(torch_model.get_submodule, node.name, "PyTorch model has no module")
        layer = _part(keras_model.get_layer, node.flat_name, "Keras model has no layer")
        variables = keras_backend.variables(node, layer)
        order = orders.get(node.inputs[0])
        for name, weight in weights.items():
            tensor = getattr(module, name, None)
            if tensor is None or name not in variables:
                raise _error(f"`{node.name}` has no `{name}` weight in the "
                             f"{'PyTorch' if tensor is None else 'Keras'} model", node,
                             help="both models must be built from the same spec")
            variable, to_k, to_t = variables[name]
            axis = weight.in_axis if order is not None else None
            if to_keras:
                _assign_keras(node, variable, to_k(_permuted(tensor.detach().cpu().numpy(), order, axis)))
            else:
                _assign_torch(node, tensor, _permuted(to_t(np.asarray(variable.numpy())), order, axis, inverse=True))
    return dst


def _permuted(array: np.ndarray, order: list[int] | None, axis: int | None, inverse: bool = False) -> np.ndarray:
    """A PyTorch-layout weight with its input-feature axis in the Keras model's feature order (or back)."""
    if axis is None:
        return array
    index = np.argsort(order) if inverse else np.asarray(order)
    return np.take(array, index, axis=axis)


def _fits(node: PlanNode, value: np.ndarray, target: Any) -> None:
    if tuple(value.shape) != tuple(target.shape):
        raise _error(f"`{node.name}`: a {tuple(value.shape)} weight does not fit {tuple(target.shape)}", node)


def _assign_keras(node: PlanNode, variable: Any, value: np.ndarray) -> None:
    _fits(node, value, variable)
    variable.assign(value.astype(variable.dtype))


def _assign_torch(node: PlanNode, tensor: Any, value: np.ndarray) -> None:
    import torch

    _fits(node, value, tensor)
    with torch.no_grad():
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(tensor.dtype))


def _part(find, name: str, what: str):
    """The module or layer `name` of a model (`find` is get_submodule or get_layer), or a diagnostic that
    says `what` it lacks."""
    try:
        return find(name)
    except (AttributeError, ValueError):
        raise _error(f"the {what} `{name}`", help="both models must be built from the same spec") from None
