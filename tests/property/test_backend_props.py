"""What `archc check` says is what every backend builds: per-layer shapes and parameter counts of the PyTorch
and Keras models equal the inferred ones, and after a weight transfer they and the ONNX model compute the same
function.

These properties run once the backends are in the tree (archc.backends.torch / archc.backends.keras).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from profiles import budget
from strategies import GeneratedSpec, specs

import archc

# Backend models are built per example: keep the specs a little smaller than the front-half properties use.
backend_specs = specs(max_depth=2, max_lines=3)


def _torch():
    pytest.importorskip("torch")  # the framework itself: archc's backend modules always import
    import archc.backends.torch as backend

    return backend


def _keras():
    pytest.importorskip("keras")
    import archc.backends.keras as backend

    return backend


def _torch_shape(plan_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (plan_shape[2], plan_shape[0], plan_shape[1]) if len(plan_shape) == 3 else plan_shape


def _torch_counts(module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    # Running statistics are the non-trainable parameters; the step counter (an integer buffer) is not one.
    non_trainable = sum(b.numel() for b in module.buffers() if b.is_floating_point())
    non_trainable += sum(p.numel() for p in module.parameters() if not p.requires_grad)
    return trainable, non_trainable


@budget(100)
@given(backend_specs)
def test_torch_model_matches_the_plan(generated: GeneratedSpec):
    _torch()
    import torch

    plan = archc.check(generated.text)
    model = archc.compile(plan, backend="torch").eval()
    modules = dict(model.named_modules())
    seen: dict[str, tuple[int, ...]] = {}
    hooks = []
    for node in plan.nodes:
        module = modules.get(node.name)
        if module is None:
            assert node.params == 0, f"`{node.name}` has {node.params} parameters but no module"
            continue
        assert _torch_counts(module) == (node.trainable, node.non_trainable), node.name
        hooks.append(module.register_forward_hook(
            lambda mod, args, out, name=node.name: seen.__setitem__(name, tuple(out.shape[1:]))))
    assert sum(p.numel() for p in model.parameters()) == plan.trainable_params
    x = torch.randn(2, *_torch_shape(plan.input_shape))
    with torch.no_grad():
        out = model(x)
    for hook in hooks:
        hook.remove()
    assert tuple(out.shape[1:]) == _torch_shape(plan.output_shape)
    for name, shape in seen.items():
        assert shape == _torch_shape(plan.node(name).shape), name


@budget(40)
@given(backend_specs)
def test_keras_model_matches_the_plan(generated: GeneratedSpec):
    _keras()
    from archc.backends import get_backend

    plan = archc.check(generated.text)
    model = archc.compile(plan, backend="keras")
    # The backend may fold an activation into its conv (`Conv2D(..., activation="relu")`); it then says which
    # layer computes a node. Without that hook every node is the layer of its name.
    layer_for = getattr(get_backend("keras"), "layer_for", None)
    checked = 0
    for node in plan.nodes:
        keras_name = node.name.replace(".", "_")
        computed_by = layer_for(model, node.name) if layer_for else keras_name
        if computed_by is not None:
            assert tuple(model.get_layer(computed_by).output.shape[1:]) == node.shape, node.name
            checked += 1
        if node.params:  # a layer with weights is always the layer of its own name
            layer = model.get_layer(keras_name)
            trainable = sum(math.prod(w.shape) for w in layer.trainable_weights)
            non_trainable = sum(math.prod(w.shape) for w in layer.non_trainable_weights)
            assert (trainable, non_trainable) == (node.trainable, node.non_trainable), node.name
    assert checked or not plan.nodes
    assert model.count_params() == plan.total_params


def _randomize_torch(model) -> None:
    """Fresh batchnorm layers are the identity; give every parameter and statistic a value worth comparing."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            values = torch.rand(tensor.shape, generator=generator)
            if name.endswith(("running_var", "weight")) and tensor.dim() == 1:
                tensor.copy_(0.5 + values)  # positive variances and scales
            else:
                tensor.copy_((values - 0.5) * 0.6)


def _torch_order(plan, keras_out: np.ndarray) -> np.ndarray:
    """Keras flattens channels-last and the weight transfer permutes the dense layer after; where no dense layer
    follows the last flatten, the output itself is in (H, W, C) order: put it in PyTorch's (C, H, W) order."""
    flattens = [i for i, n in enumerate(plan.nodes) if n.op == "flatten"]
    if not flattens or any(n.op == "dense" for n in plan.nodes[flattens[-1]:]):
        return keras_out
    h, w, c = plan.nodes[flattens[-1]].in_shapes[0]
    return keras_out.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(keras_out.shape)


@budget(40)
@given(backend_specs)
def test_torch_keras_and_onnx_agree_after_weight_transfer(generated: GeneratedSpec):
    _torch()
    _keras()
    ort = pytest.importorskip("onnxruntime")
    import torch

    plan = archc.check(generated.text)
    torch_model = archc.compile(plan, backend="torch").eval()
    keras_model = archc.compile(plan, backend="keras")
    _randomize_torch(torch_model)
    archc.transfer_weights(torch_model, keras_model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *plan.input_shape)).astype("float32")  # NHWC, or (N, features)
    torch_in = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.ndim == 4 else x))
    with torch.no_grad():
        torch_out = torch_model(torch_in).numpy()
    if torch_out.ndim == 4:
        torch_out = torch_out.transpose(0, 2, 3, 1)
    keras_out = np.asarray(keras_model(x, training=False))
    assert torch_out.shape == keras_out.shape
    keras_out = _torch_order(plan, keras_out)
    scale = max(1.0, float(np.abs(torch_out).max()))
    np.testing.assert_allclose(keras_out, torch_out, rtol=0, atol=1e-4 * scale)
    onnx_model = archc.transfer_weights(torch_model, archc.compile(plan, backend="onnx"))
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"input": torch_in.numpy()})[0]
    if onnx_out.ndim == 4:
        onnx_out = onnx_out.transpose(0, 2, 3, 1)
    assert onnx_out.shape == torch_out.shape
    np.testing.assert_allclose(onnx_out, torch_out, rtol=0, atol=1e-4 * scale)
