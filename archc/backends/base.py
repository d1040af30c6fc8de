"""What every backend implements, and the one place a plan node is dispatched to its emitter.

A backend reads the Plan and the layer definitions of archc.ops; it adds only how to emit each layer kind,
after sqlglot's generators: a table of one-liners (`TABLE`, an activation is one entry) and an
`emit_<kind>(node, inputs, ctx)` method for what needs code. `Backend.emit` looks the node up once: the
table, then the method, then a positioned diagnostic naming the backend and the kind. A backend never
computes a shape: emitters read `node.args`, `node.in_shapes`, `node.shape` and `node.weights()`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..diagnostics import ArchcError, Diagnostic
from ..ops import OPS
from ..plan import Plan, PlanNode

# An ONNX file is one protobuf message, and protobuf refuses to write one of 2 GiB or more; the margin holds the
# graph itself (nodes, names), a few hundred bytes a layer. Here, not in onnx.py: the docs read it without onnx.
MAX_ONNX_BYTES = 2**31 - 1
MAX_ONNX_PARAMS = (MAX_ONNX_BYTES - 64 * 2**20) // 4  # float32 weights


def backend_error(code: str, message: str, node: PlanNode | None = None, help: str | None = None) -> ArchcError:
    """A diagnostic from a backend, positioned at the node's spec line when there is one."""
    return ArchcError([Diagnostic(code, message, node.span if node is not None else None, help=help)])


class Backend:
    name: str = ""
    file_formats: tuple[str, ...] = ("py",)  # what `archc build --format` offers; the first is the default
    cannot_emit_code: ClassVar[str] = "A404"  # the diagnostic code for a kind this backend cannot build
    # One-liners: kind -> what `emit_table` turns into code (a constructor template, an operator name...).
    TABLE: ClassVar[dict[str, Any]] = {}

    # ------------------------------------------------------------ the model

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

    # ------------------------------------------------------------ emitting

    def emit(self, node: PlanNode, inputs: list[str], ctx: Any) -> Any:
        """The code (or graph nodes) of one plan node: its table line, else its `emit_<kind>` method."""
        entry = self.TABLE.get(node.op)
        if entry is not None:
            return self.emit_table(entry, node, inputs, ctx)
        method = getattr(self, f"emit_{node.op}", None)
        if method is None:
            raise backend_error(self.cannot_emit_code, f"the {self.name} backend cannot build `{node.op}` layers",
                                node, help="`archc ops` lists the kinds; the other backends may build this one")
        return method(node, inputs, ctx)

    def emit_table(self, entry: Any, node: PlanNode, inputs: list[str], ctx: Any) -> Any:
        """How a `TABLE` entry becomes code, for backends that have a table."""
        raise NotImplementedError

    @classmethod
    def missing_emitters(cls) -> list[str]:
        """Layer kinds this backend cannot emit; tests/test_registry.py requires none."""
        return [op for op in OPS if op not in cls.TABLE and not hasattr(cls, f"emit_{op}")]
