"""The result of inference: the flat graph of layers with names, shapes, parameters and MACs.

Backends read a Plan and nothing else; they never compute a shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Span
from .ops import OPS, Op, OpArgs, Shape, Weight

INPUT = "input"  # the name by which nodes refer to the network's input


@dataclass(frozen=True, slots=True)
class PlanNode:
    name: str  # qualified path from the spec's own names: `conv3_x.0.conv2`
    op: str  # a key of archc.ops.OPS
    args: OpArgs  # resolved: no argument depends on the input any more
    inputs: tuple[str, ...]  # producers' names, or INPUT
    in_shapes: tuple[Shape, ...]
    shape: Shape
    trainable: int
    non_trainable: int
    macs: int
    stage: str | None = None  # the top-level scope (the paper's row) it belongs to
    span: Span | None = None

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable

    @property
    def opdef(self) -> Op:
        return OPS[self.op]

    def weights(self) -> dict[str, Weight]:
        """The node's tensors by PyTorch name (`weight`, `bias`, ...), from its kind's definition."""
        return self.opdef.weights(self.args, list(self.in_shapes))

    @property
    def flat_name(self) -> str:
        """The name in frameworks whose layer names are flat (Keras, ONNX node names): dots become `_`."""
        return self.name.replace(".", "_")


@dataclass(frozen=True, slots=True)
class StageSource:
    """What a stage of the table was written as: its items and the names they saw (for its summary row)."""

    items: list
    env: dict[str, Any]


@dataclass(slots=True)
class Plan:
    name: str
    input_shape: Shape
    nodes: list[PlanNode]
    output: str  # the node whose result is the network's output
    description: str | None = None
    file: str | None = None
    params: dict[str, object] = field(default_factory=dict)  # network parameters after overrides
    stage_sources: dict[str, StageSource] = field(default_factory=dict)  # stage -> its items, for summaries
    blocks: dict[str, Any] = field(default_factory=dict, repr=False)  # the blocks it could call (ir.BlockDef)
    globals: dict[str, Any] = field(default_factory=dict, repr=False)  # network parameters as the walk saw them
    warnings: list = field(default_factory=list, repr=False)  # Diagnostics (severity "warning"): valid, but odd
    _index: dict[str, PlanNode] = field(init=False, repr=False, compare=False)
    _cache: dict[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {n.name: n for n in self.nodes}

    @property
    def output_shape(self) -> Shape:
        return self.node(self.output).shape if self.output != INPUT else self.input_shape

    def node(self, name: str) -> PlanNode:
        return self._index[name]

    @property
    def trainable_params(self) -> int:
        return sum(n.trainable for n in self.nodes)

    @property
    def non_trainable_params(self) -> int:
        return sum(n.non_trainable for n in self.nodes)

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    def stages(self) -> list[tuple[str, list[PlanNode]]]:
        """Consecutive nodes grouped by stage; a node outside every stage is a row of its own."""
        rows: list[tuple[str, list[PlanNode]]] = []
        for node in self.nodes:
            key = node.stage or node.name
            if rows and node.stage is not None and rows[-1][0] == key:
                rows[-1][1].append(node)
            else:
                rows.append((key, [node]))
        return rows

    def to_json(self) -> dict:
        """The `check --format json` object (archc.render.plan_json): every layer and every stage."""
        from .render import plan_json

        return plan_json(self)

    # ---- facts every backend needs, computed once here

    def consumers(self) -> dict[str, list[str]]:
        """For each node (and INPUT): the nodes that read it, in plan order."""
        return _consumers(self)

    def model_output(self, logits: bool) -> str:
        """The node a built model returns: the plan's output, or the scores under a final probability layer
        (`softmax`) that nothing else reads, when logits are asked for."""
        if not logits or self.output == INPUT:
            return self.output
        last = self.node(self.output)
        if last.opdef.probabilities and not self.consumers().get(last.name):
            return last.inputs[0]
        return self.output

    def flat_orders(self) -> dict[str, list[int] | None]:
        """For each node with a flat output: `order[i]` is the channels-first index (PyTorch, ONNX) of the
        channels-last (Keras) feature i, or None where both orders agree. A flatten of an HxWxC map makes
        them differ; kinds that keep feature order pass it on, and concat joins its inputs' orders."""
        return _flat_orders(self)


def _consumers(plan: Plan) -> dict[str, list[str]]:
    cached = plan._cache.get("consumers")
    if cached is None:
        cached = {}
        for node in plan.nodes:
            for name in node.inputs:
                cached.setdefault(name, []).append(node.name)
        plan._cache["consumers"] = cached
    return cached


def _flat_orders(plan: Plan) -> dict[str, list[int] | None]:
    orders: dict[str, list[int] | None] = {INPUT: None}
    for node in plan.nodes:
        order = _flat_order(node, [orders[name] for name in node.inputs])
        orders[node.name] = None if order is not None and order == list(range(len(order))) else order
    return orders


def _flat_order(node: PlanNode, ins: list[list[int] | None]) -> list[int] | None:
    """A node's output order from its inputs' (see Plan.flat_orders), by its kind's traits."""
    op = node.opdef
    if op.flattens and len(node.in_shapes[0]) == 3:
        h, w, c = node.in_shapes[0]
        return [k * h * w + i * w + j for i in range(h) for j in range(w) for k in range(c)]
    if all(o is None for o in ins):
        return None
    if op.joins and len(node.shape) == 1:
        order: list[int] = []
        for o, shape in zip(ins, node.in_shapes, strict=True):
            offset = len(order)  # the features of the inputs before this one
            order += [offset + i for i in (o if o is not None else range(shape[0]))]
        return order
    if op.keeps_order:
        if any(o != ins[0] for o in ins[1:]):
            raise _refuse(node, "merges flat vectors whose features are ordered differently in channels-first and "
                          "channels-last frameworks, so no weights make the models agree")
        return ins[0]
    if any(w.in_axis is not None for w in node.weights().values()):
        return None  # its weights take the order in (transfer permutes them)
    raise _refuse(node, "mixes neighbouring features of a flattened vector, and the neighbours differ between "
                  "channels-first and channels-last flattening", help=f"put the `{node.op}` before the `flatten`")


def _refuse(node: PlanNode, message: str, help: str | None = None):
    from .diagnostics import ArchcError, Diagnostic

    return ArchcError([Diagnostic("A413", f"`{node.name}` {message}", node.span, help=help)])
