"""What every backend implements. A backend reads the Plan and the layer definitions of archc.ops; it adds
only how to emit each layer kind (one `emit_<op>` per op) and never computes a shape."""

from __future__ import annotations

from typing import Any

from ..ops import OPS
from ..plan import Plan


class Backend:
    name: str = ""
    file_formats: tuple[str, ...] = ("py",)  # what `archc build --format` offers; the first is the default

    def build(self, plan: Plan, logits: bool = False) -> Any:
        """The model object, in memory."""
        raise NotImplementedError

    def write(self, plan: Plan, fmt: str, logits: bool = False) -> bytes:
        """The model as a file of format `fmt` (standalone Python source by default)."""
        raise NotImplementedError

    def owns(self, model: Any) -> bool:
        return False

    def load_weights(self, model: Any, source: Any) -> Any:
        raise NotImplementedError

    def transfer_weights(self, src: Any, dst: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def missing_emitters(cls) -> list[str]:
        """Layer kinds this backend cannot emit; the conformance tests require none."""
        return [op for op in OPS if not hasattr(cls, f"emit_{op}")]
