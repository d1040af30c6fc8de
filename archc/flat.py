"""A network as a flat list of layers in archc's vocabulary: what every reader of a foreign model produces
(archc.readers.torch / onnx / keras) and what `archc import` turns back into a spec (archc.decompile).

It is a Plan without the spec: each layer is a registered kind (archc.ops) with that kind's arguments by
field name, its producers by index, and where it sits in the source (a module path, an ONNX node name, a Keras
layer name) so that names and diagnostics can say it. `flat_of_plan` gives the same thing for a spec's plan,
so a round trip (spec -> backend -> reader -> flat) can be compared layer for layer with `same_layers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ops import OPS, OpArgs, Shape
from .plan import INPUT as PLAN_INPUT
from .plan import Plan

INPUT = -1  # a layer's producer that is the network's input


@dataclass(slots=True)
class FlatLayer:
    op: str  # a key of archc.ops.OPS
    args: dict[str, Any]  # the kind's arguments by field name (what its OpArgs model accepts); others default
    inputs: tuple[int, ...]  # producers: indexes of earlier layers, or INPUT
    path: str = ""  # where it sits in the source: `layer3.0.conv1`, an ONNX node name, a Keras layer name
    # optional: its weights by PyTorch name (numpy arrays; a mapping may convert each when first asked for)
    tensors: dict[str, Any] = field(default_factory=dict)


class Resolutions:
    """Layers' resolutions (resolved arguments, output shape), each kept for its layer object while that layer is
    unchanged (its kind, its arguments, its input shapes): one import resolves its network several times
    (archc.decompile), and a reader or a plan has resolved each layer already."""

    __slots__ = ("_kept",)

    def __init__(self):
        self._kept: dict[int, tuple] = {}

    def keep(self, layer: FlatLayer, in_shapes: list[Shape], args: OpArgs, shape: Shape) -> None:
        self._kept[id(layer)] = (layer, layer.op, layer.args, dict(layer.args), list(in_shapes), args, shape)

    def get(self, layer: FlatLayer, in_shapes: list[Shape]) -> tuple[OpArgs, Shape] | None:
        entry = self._kept.get(id(layer))
        if entry is None or entry[0] is not layer or entry[1] != layer.op or entry[2] is not layer.args \
                or entry[3] != layer.args or entry[4] != in_shapes:  # another layer, or this one edited
            return None
        return entry[5], entry[6]


@dataclass(slots=True)
class FlatNetwork:
    input_shape: Shape  # archc's layout: H x W x C (or a vector's length)
    layers: list[FlatLayer]  # in data-flow order: every layer after its producers
    output: int  # the layer whose result is the network's output
    name: str = "imported"
    source: str = ""  # what it was read from, for the spec's header and messages
    # what resolved() found, or a reader knew; a network derived from this one (the same layers) may share it
    resolutions: Resolutions = field(default_factory=Resolutions, repr=False, compare=False)

    def resolved(self) -> list[tuple[OpArgs, list[Shape], Shape]]:
        """Each layer's resolved arguments, input shapes and output shape, by archc's own rules.
        Raises archc.ops.RuleError (or pydantic's ValidationError) where a layer does not fit its input."""
        out: list[tuple[OpArgs, list[Shape], Shape]] = []
        kept = self.resolutions
        for layer in self.layers:
            in_shapes = [self.input_shape if i == INPUT else out[i][2] for i in layer.inputs]
            hit = kept.get(layer, in_shapes)
            if hit is None:
                op = OPS[layer.op]
                args = op.resolve(op.args(**layer.args), in_shapes)  # OpArgs are frozen: shared safely
                hit = (args, op.shape(args, in_shapes))
                kept.keep(layer, in_shapes, *hit)
            out.append((hit[0], in_shapes, hit[1]))
        return out


def flat_of_plan(plan: Plan) -> FlatNetwork:
    """A spec's plan as a FlatNetwork: paths are the plan's qualified names, arguments its resolved ones."""
    index = {node.name: i for i, node in enumerate(plan.nodes)}
    layers = [FlatLayer(node.op, node.args.model_dump(), tuple(INPUT if src == PLAN_INPUT else index[src]
                                                               for src in node.inputs), node.name)
              for node in plan.nodes]
    output = INPUT if plan.output == PLAN_INPUT else index[plan.output]
    net = FlatNetwork(plan.input_shape, layers, output, plan.name, plan.file or "")
    for layer, node in zip(layers, plan.nodes, strict=True):  # the plan's arguments are resolved already, and
        # resolving them again gives them back (tests/test_flat.py): its own resolution is the network's
        net.resolutions.keep(layer, list(node.in_shapes), node.args, node.shape)
    return net


def layer_signature(net: FlatNetwork) -> list[tuple[str, dict[str, Any], tuple[int, ...], Shape]]:
    """What two flat networks must agree on to be the same model: per layer its kind, resolved arguments,
    producers and output shape (paths and tensors left out); arguments in one spelling for each meaning
    (`same` padding as its amounts: archc.ops.OpArgs.canonical), producers in order only for a merge that lays
    them side by side (a sum or a product is the same whichever input comes first)."""
    return [(layer.op, args.canonical(in_shapes),
             layer.inputs if OPS[layer.op].inputs == "one" or OPS[layer.op].joins else tuple(sorted(layer.inputs)),
             shape)
            for layer, (args, in_shapes, shape) in zip(net.layers, net.resolved(), strict=True)]


def same_layers(a: FlatNetwork, b: FlatNetwork) -> str | None:
    """None when a and b are the same network layer for layer; else the first difference, described."""
    if a.input_shape != b.input_shape:
        return f"inputs differ: {a.input_shape} and {b.input_shape}"
    sa, sb = layer_signature(a), layer_signature(b)
    for i, (x, y) in enumerate(zip(sa, sb, strict=False)):
        if x != y:
            return f"layer {i} differs: {a.layers[i].path} {x} and {b.layers[i].path} {y}"
    if len(sa) != len(sb):
        return f"{len(sa)} layers and {len(sb)} layers"
    if a.output != b.output:
        return f"outputs differ: layer {a.output} and layer {b.output}"
    return None


class Unsupported(Exception):
    """A source holds something the language cannot express (yet). Readers raise it at the first such
    operation; `archc import` turns it into a diagnostic naming the operation and where it sits, and with
    `--partial` writes what came before it (`partial`, the layers read up to the gap)."""

    def __init__(self, what: str, where: str, help: str = "", partial: FlatNetwork | None = None):
        super().__init__(f"{what} at {where}")
        self.what = what  # the operation as the source names it: `torch.nn.functional.interpolate(mode='area')`
        self.where = where  # its module path, ONNX node name or Keras layer name
        self.help = help
        self.partial = partial


def graph_of_flat(net: FlatNetwork, what: str = "the source", every_layer: bool = False):
    """The weighted layers of a flat network as an archc.match.Graph (what structural load_weights matches),
    each with its FlatLayer as `ref`, so its `tensors` can be copied: readers of ONNX and Keras models fill
    `tensors` by PyTorch name and layout, the names the kind's `weights()` gives. With `every_layer`, every layer
    is one, with its kind and arguments (what `archc diff` matches, as archc.match.graph_of_plan does)."""
    from .match import GraphBuilder, arg_items, channels_first

    builder = GraphBuilder(what)
    builder.input(INPUT, channels_first(net.input_shape))
    for i, (layer, (args, in_shapes, shape)) in enumerate(zip(net.layers, net.resolved(), strict=True)):
        if every_layer:  # as graph_of_plan's: kinds and arguments, no tensors
            builder.layer(i, layer.inputs, channels_first(shape), layer.path, (), None, layer, layer.op,
                          arg_items(args))
            continue
        weights = OPS[layer.op].weights(args, in_shapes)
        if weights:
            builder.layer(i, layer.inputs, channels_first(shape), layer.path,
                          [(name, w.shape) for name, w in weights.items()], None, layer)
        else:
            builder.op(i, layer.inputs, channels_first(shape))
    return builder.graph


def network_digests(net: FlatNetwork, table: dict | None = None) -> list[int]:
    """Each layer's structural number: its kind, resolved arguments and output shape, and the numbers of its
    producers in order (in any order for a merge that `commutes`), numbered in `table`, one number for each
    distinct computation (hash-consing: exact, and cheaper than hashing a text per layer). Two networks numbered
    in one table whose outputs share a number are the same computation whatever order their layers are listed in."""
    table = {} if table is None else table
    out: list[int] = []
    source = table.setdefault(("input", tuple(net.input_shape)), len(table))
    own: dict[tuple, str] = {}  # a layer's own part by its resolved arguments (equal layers may share one
    # object: Resolutions) and shapes: networks repeat layers
    commutes: dict[str, bool] = {}
    for layer, (args, in_shapes, shape) in zip(net.layers, net.resolved(), strict=True):
        ins = tuple([source if i == INPUT else out[i] for i in layer.inputs])
        swaps = commutes.get(layer.op)
        if swaps is None:
            swaps = commutes[layer.op] = OPS[layer.op].commutes
        if swaps:  # a sum or a product: the inputs' order is no part of the computation
            ins = tuple(sorted(ins))
        key: tuple | None = (layer.op, id(args), tuple(shape), *in_shapes)
        try:
            part = own.get(key)
        except TypeError:  # a shape given as a list: not kept
            part, key = None, None
        if part is None:  # one spelling a meaning
            part = repr((layer.op, sorted(args.canonical(in_shapes).items()), tuple(shape)))
            if key is not None:
                own[key] = part
        out.append(table.setdefault((part, ins), len(table)))
    return out


def same_network(a: FlatNetwork, b: FlatNetwork) -> str | None:
    """None when a and b compute the same thing: the same layers (kind, resolved arguments, shapes) with the
    same producers, in any order; else what differs. Layer for layer in the same order is `same_layers`."""
    if a.input_shape != b.input_shape:
        return f"inputs differ: {a.input_shape} and {b.input_shape}"
    table: dict = {}  # one numbering for both
    da, db = network_digests(a, table), network_digests(b, table)
    if len(da) != len(db):
        return f"{len(da)} layers and {len(db)} layers"
    if sorted(da) != sorted(db):
        in_b = set(db)
        extra = [i for i, d in enumerate(da) if d not in in_b]
        first = a.layers[extra[0]] if extra else None
        return f"the layers differ, first at {first.path if first else '?'} ({first.op if first else '?'})"
    out_a = "input" if a.output == INPUT else da[a.output]
    out_b = "input" if b.output == INPUT else db[b.output]
    if out_a != out_b:
        return "the outputs differ"
    return None


def upstream(net: FlatNetwork, output: int | None = None) -> FlatNetwork:
    """The network up to `output` (default: its last layer): that layer and every layer it reads from,
    renumbered; what `archc import --partial` writes of a network read up to a gap."""
    out = len(net.layers) - 1 if output is None else output
    keep: set[int] = set()
    stack = [out] if out != INPUT else []
    while stack:
        i = stack.pop()
        if i in keep:
            continue
        keep.add(i)
        stack.extend(p for p in net.layers[i].inputs if p != INPUT)
    index = {old: new for new, old in enumerate(sorted(keep))}
    index[INPUT] = INPUT
    layers = [FlatLayer(net.layers[i].op, net.layers[i].args, tuple(index[p] for p in net.layers[i].inputs),
                        net.layers[i].path, net.layers[i].tensors) for i in sorted(keep)]
    return FlatNetwork(net.input_shape, layers, index[out], net.name, net.source)
