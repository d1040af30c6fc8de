"""torchvision's models for the tests that hold archc's specs to them (the same count, the same function).

torchvision's compiled operators (nms, roi_align...) are built against one PyTorch release; with another, its
import fails while registering their fake kernels (`operator torchvision::nms does not exist`), although its
classification models use none of them. `torchvision_or_skip` imports it anyway, leaving that registration out,
and skips the test where torchvision is not installed at all.
"""

from __future__ import annotations

import sys
import types

import pytest


def torchvision_or_skip():
    pytest.importorskip("torch")
    try:
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed")
    except RuntimeError:  # compiled for another PyTorch: import the models without their operators' kernels
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision
    return torchvision


def perturb(model, seed: int = 0) -> None:
    """Every tensor of `model` drawn afresh, so that a transfer that swaps or skips one shows in the outputs:
    weights from He et al.'s normal (the activations keep their scale through the depth), biases and batchnorm
    shifts around 0, batchnorm scales and running variances in [0.5, 1.5), running means around 0."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked") or not tensor.is_floating_point():
                continue
            if name.endswith(("running_var", "weight")) and tensor.dim() == 1:
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2 / tensor[0].numel()) ** 0.5)
