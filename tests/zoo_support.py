"""Shared by the zoo's same-function tests: torchvision's models, perturbed weights, relative differences."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest


def torchvision_models():
    """`torchvision.models`, or a skip without torchvision.

    A torchvision wheel built for another torch (a CUDA build beside the CPU torch, as on the development
    machines) cannot load its C operators (nms, roi_align...), and its `__init__` fails registering their fake
    kernels. The classification models are plain Python and need none of them, so the two modules that register
    those kernels are stubbed out and the import tried again."""
    pytest.importorskip("torch")
    try:
        import torchvision.models as models
    except ModuleNotFoundError:
        pytest.skip("torchvision is not installed")
    except RuntimeError:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[name] = types.ModuleType(name)
        import torchvision.models as models
    return models


def perturb(model, seed: int = 0):
    """Every weight and every batchnorm statistic away from its initial value (random means, variances in
    [0.5, 1.5]), so that a copy that misses or misplaces any tensor shows in the outputs."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            else:
                tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.05)
    return model


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def relative_difference(got, want) -> float:
    """max |got - want| over max |want|: the tests' measure of "the same function"."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
