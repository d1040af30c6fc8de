"""torchvision's models as the zoo's references, for every test (and benchmarks/bench_zoo.py) that holds archc's
specs to them: importing torchvision, drawing their weights afresh, comparing outputs, and ConvNeXt's state dict in
the spec's order. The one place that knows how to import torchvision here; tests import it, never copy it.

torchvision's compiled operators (nms, roi_align...) are built against one PyTorch release: beside another (a CUDA
build of torchvision next to a CPU torch, as on the development machines) `import torchvision` fails registering
their fake kernels (`operator torchvision::nms does not exist`). The classification models are plain Python and
use none of those operators, so where the plain import fails the two modules that register those kernels are
replaced by empty ones and the import is tried again.
"""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from typing import Any

import numpy as np

# torchvision modules that only register kernels of its compiled operators, which the models never call
_OPERATOR_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def import_torchvision() -> Any:
    """The `torchvision` package, importable even where its compiled operators are not; ImportError where it is
    not installed (benchmarks call this; tests call `torchvision_or_skip`)."""
    try:
        import torchvision
    except RuntimeError:  # compiled for another PyTorch: import the models without their operators' kernels
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        for name in _OPERATOR_REGISTRATIONS:
            sys.modules[name] = types.ModuleType(name)
        import torchvision
    return torchvision


def torchvision_or_skip() -> Any:
    """`torchvision`, or a skip of the calling test where torch or torchvision is not installed."""
    import pytest

    pytest.importorskip("torch")
    try:
        return import_torchvision()
    except ImportError:
        pytest.skip("torchvision is not installed")


def torchvision_models() -> Any:
    """`torchvision.models`, or a skip of the calling test where torchvision is not installed."""
    return torchvision_or_skip().models


def perturb(model: Any, seed: int = 0) -> Any:
    """Every tensor of `model` drawn afresh, so that a transfer that swaps or skips one shows in the outputs:
    weights from He et al.'s normal (the activations keep their scale through the depth), biases, batchnorm shifts
    and running means around 0, batchnorm scales and running variances in [0.5, 1.5), layer scales in [0.1, 0.5).
    Returns `model`."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():  # num_batches_tracked
                continue
            if "layer_scale" in name:  # a per-channel gain (ConvNeXt's, from 1e-6): every block's branch counts
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.4 + 0.1)
            elif tensor.dim() == 1 and name.endswith(("running_var", "weight")):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.dim() == 1:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2 / tensor[0].numel()) ** 0.5)
    return model


def trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def relative_difference(got: Any, want: Any) -> float:
    """max |got - want| over max |want|: the tests' measure of "the same function"."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def convnext_state_dict(model: Any) -> OrderedDict:
    """A torchvision ConvNeXt's state dict in specs/convnext_tiny.arch's order and shapes, for the positional
    `archc.load_weights`. Two differences, both of layout only:
      * CNBlock holds `layer_scale` (C x 1 x 1) as its own parameter, which state_dict lists before the block's
        layers; the spec applies it after them, so it moves after the block's last Linear (`block.5.bias`);
      * CNBlock's pointwise layers are nn.Linear over channels-last maps ([out, in]); the spec's are 1x1 convs
        ([out, in, 1, 1], the same numbers)."""
    out: OrderedDict = OrderedDict()
    pending = None
    for key, value in model.state_dict().items():
        if key.endswith(".layer_scale"):
            pending = (key, value)
            continue
        if ".block." in key and value.dim() == 2:
            value = value[:, :, None, None]
        out[key] = value
        if pending is not None and key.endswith(".block.5.bias"):
            out[pending[0]] = pending[1]
            pending = None
    assert pending is None, "a CNBlock without its block.5 Linear: not torchvision's ConvNeXt"
    return out


def assert_training_works(model: Any, x: Any, y: Any, steps: int = 4) -> list[float]:
    """Train mode at a small size: Adam on one batch lowers the loss (each step draws the same dropout and drop-path
    masks, so the loss it lowers is one function) and batchnorm updates its statistics. Returns the losses."""
    import torch

    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(steps):
        torch.manual_seed(1)
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert not torch.equal(bn.running_mean, before), "batchnorm did not update its statistics"
    return losses
