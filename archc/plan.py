"""The result of inference: the flat graph of layers with names, shapes, parameters and MACs.

Backends read a Plan and nothing else; they never compute a shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Span
from .ops import OPS, Op, OpArgs, Shape, fmt_shape

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


@dataclass(slots=True)
class Plan:
    name: str
    input_shape: Shape
    nodes: list[PlanNode]
    output: str  # the node whose result is the network's output
    description: str | None = None
    file: str | None = None
    params: dict[str, object] = field(default_factory=dict)  # network parameters after overrides
    stage_summaries: dict[str, str] = field(default_factory=dict)  # stage -> `maxpool, bottleneck x 3`
    _index: dict[str, PlanNode] = field(init=False, repr=False, compare=False)

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

    def to_json(self, level: str = "layer") -> dict:
        """The `check --format json` object: a contract other tools read (keys only ever get added)."""
        def shape(s: Shape) -> list[int]:
            return list(s)

        layers = [
            {
                "name": n.name,
                "op": n.op,
                "stage": n.stage,
                "inputs": list(n.inputs),
                "shape": shape(n.shape),
                "params": n.params,
                "trainable_params": n.trainable,
                "non_trainable_params": n.non_trainable,
                "macs": n.macs,
                "args": n.args.model_dump(mode="json"),
                "span": {"file": n.span.file, "line": n.span.line, "column": n.span.column} if n.span else None,
            }
            for n in self.nodes
        ]
        out = {
            "name": self.name,
            "description": self.description,
            "file": self.file,
            "input": shape(self.input_shape),
            "output": shape(self.output_shape),
            "params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "macs": self.macs,
            "layers": layers,
            "stages": [
                {
                    "name": key,
                    "summary": self.stage_summaries.get(key, nodes[0].opdef.label(nodes[0].args)),
                    "shape": shape(nodes[-1].shape),
                    "params": sum(n.params for n in nodes),
                    "macs": sum(n.macs for n in nodes),
                    "layers": [n.name for n in nodes],
                }
                for key, nodes in self.stages()
            ],
        }
        return out

    def describe(self) -> str:
        return f"{self.name}: {fmt_shape(self.input_shape)} -> {fmt_shape(self.output_shape)}"
