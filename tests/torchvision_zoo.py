"""torchvision's models as the zoo's references: importing them, and their state dicts in a spec's order.

torchvision's compiled operators may not load beside a CPU-only torch (a CUDA build of torchvision, or another
torch version): `import torchvision` then fails registering fake kernels for `torchvision::nms` and its kin.
The classification models are plain Python and need none of those operators, so `torchvision_models()` imports
torchvision with that registration skipped when the plain import fails.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any


def torchvision_models() -> Any:
    """`torchvision.models`, importable even where torchvision's compiled operators are not."""
    import torch

    try:
        import torchvision
    except RuntimeError:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        real = torch.library.register_fake
        torch.library.register_fake = lambda *args, **kwargs: (lambda fn: fn)
        try:
            import torchvision
        finally:
            torch.library.register_fake = real
    return torchvision.models


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
