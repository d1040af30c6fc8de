"""Matching two networks through their structure: which layer of one is which layer of the other.

`archc.load_weights` uses it to copy a reference implementation's weights into a compiled spec whatever order
either registers its modules in (torchvision's RegNet creates a block's shortcut before its body); `archc diff`
and `archc import` (docs/matching.md) are to use the same machinery. It knows no framework: a reader turns a
model into a `Graph` (archc.match.graph_of_plan for a spec's plan, archc.readers.torch for a PyTorch module)
and `match` pairs the two graphs' layers.

A `Graph` keeps only the layers that hold weights (conv, dense, batchnorm, ...), each with
  * its tensors by name and shape (PyTorch's layout: `weight` 64x3x7x7, `running_mean` 64),
  * its input and output shapes, channels first, batch left out (`64x112x112`, `1000`),
  * its sources: for each input, the weighted layers (or the network's input) its values come from through
    layers without weights, with the channel offset at which each arrives. `concat` shifts offsets, a sum or an
    activation keeps them, a flatten scales them by the positions per channel: so DenseNet's running
    concatenation or an Inception block's branch order is part of the structure, and so is a shortcut.

`match` walks the first graph in its data-flow order and pairs each layer with a layer of the second that has
the same shapes and reads from the partners of its own sources at the same offsets. Where several layers of
the second graph fit at that point (two parallel branches that begin alike), it tries them in an order that
prefers the one whose layers downstream look alike (a few rounds of colour refinement, Weisfeiler-Lehman
style) and backtracks when a choice fails later; the search is bounded. Either every layer finds its partner
and every layer of the second graph is used, or the answer is the first point where they part, described.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]
INPUT = -1  # the network's input, as a source
Source = tuple[int, int]  # (index of the producing layer or INPUT, channel offset at which its values arrive)


@dataclass(slots=True)
class Layer:
    """One layer that holds weights."""

    label: str  # how a person names it: the spec's layer path, the source's module path
    tensors: tuple[tuple[str, Shape], ...]  # (name, shape) in the framework's order; PyTorch's names and layout
    in_shape: Shape | None  # its (first) input's shape, channels first, batch left out
    out_shape: Shape | None
    sources: tuple[frozenset[Source], ...]  # per input: where its values come from (see the module's docstring)
    span: Any = None  # where the spec writes it (an archc Span), for diagnostics
    ref: Any = None  # what the reader needs to find the tensors again (a plan node, a module path)
    kind: str = ""  # its archc layer kind (archc.ops.OPS key), where the reader knows it (graphs of every layer)
    args: tuple[tuple[str, Any], ...] = ()  # its resolved arguments, (field, value) in the kind's order

    def describe(self) -> str:
        held = ", ".join(f"{name} {fmt(shape)}" for name, shape in self.tensors) or "no tensors"
        return f"{held}; output {fmt(self.out_shape)}"


@dataclass(slots=True)
class Graph:
    layers: list[Layer]  # in an order where every layer comes after its sources (data-flow order)
    what: str = "the model"  # how messages name the whole: "the spec", "the source"
    _succ: list[list[tuple[int, int]]] | None = field(default=None, repr=False)

    def successors(self) -> list[list[tuple[int, int]]]:
        """For each layer: (reader, offset) of the layers that read it."""
        if self._succ is None:
            succ: list[list[tuple[int, int]]] = [[] for _ in self.layers]
            for i, layer in enumerate(self.layers):
                for operand in layer.sources:
                    for src, offset in operand:
                        if src != INPUT:
                            succ[src].append((i, offset))
            self._succ = succ
        return self._succ


def fmt(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape) if shape else "a scalar"


def squeezed(shape: Shape) -> Shape:
    """A tensor's shape without its sizes of 1: a per-channel scale held as C, 1x1xC or Cx1x1 is one thing."""
    return tuple(d for d in shape if d != 1)


# ---------------------------------------------------------------- building graphs


class GraphBuilder:
    """Builds a Graph from a stream of values in data-flow order, each made by a layer with weights or by an
    operation without (whose effect on the sources is read off the shapes alone, the same way for every
    framework: see `combine`)."""

    def __init__(self, what: str = "the model"):
        self.graph = Graph([], what)
        self._sources: dict[Hashable, frozenset[Source]] = {}
        self._shapes: dict[Hashable, Shape | None] = {}

    def input(self, key: Hashable, shape: Shape | None) -> None:
        self._sources[key] = frozenset({(INPUT, 0)})
        self._shapes[key] = shape

    def known(self, key: Hashable) -> bool:
        return key in self._sources

    def op(self, key: Hashable, inputs: Sequence[Hashable], shape: Shape | None) -> None:
        """A value computed without weights from `inputs` (keys of earlier values; unknown keys, constants,
        are left out)."""
        ins = [(self._sources[k], self._shapes.get(k)) for k in inputs if k in self._sources]
        self._sources[key] = combine(ins, shape)
        self._shapes[key] = shape

    def layer(self, key: Hashable, inputs: Sequence[Hashable], shape: Shape | None, label: str,
              tensors: Iterable[tuple[str, Shape]], span: Any = None, ref: Any = None, kind: str = "",
              args: tuple[tuple[str, Any], ...] = ()) -> int:
        known = [k for k in inputs if k in self._sources]
        index = len(self.graph.layers)
        self.graph.layers.append(Layer(label, tuple(tensors), self._shapes.get(known[0]) if known else None, shape,
                                       tuple(self._sources[k] for k in known), span, ref, kind, args))
        self._sources[key] = frozenset({(index, 0)})
        self._shapes[key] = shape
        return index


def combine(ins: list[tuple[frozenset[Source], Shape | None]], out: Shape | None) -> frozenset[Source]:
    """The sources of a value computed without weights from values with these sources and shapes.

    Read off the shapes, so both sides of a match agree whatever their operations are called: inputs whose
    channels add up to the output's were laid side by side (a concatenation: later inputs' offsets shift by the
    channels before them); a feature map that became a vector of k features per channel (a flatten: k = H*W,
    a global pooling: k = 1) scales offsets by k; anything else (a sum, an activation, pooling) keeps them."""
    if not ins:
        return frozenset()
    if _concatenates(ins, out):
        return _side_by_side(ins)
    if len(ins) == 1:
        per_channel = _features_per_channel(ins[0][1], out)
        if per_channel is not None:
            return frozenset((src, off * per_channel) for src, off in ins[0][0])
        return ins[0][0]
    return frozenset().union(*(sources for sources, _ in ins))


def _concatenates(ins: list[tuple[frozenset[Source], Shape | None]], out: Shape | None) -> bool:
    """Several inputs of the output's rank whose channels add up to the output's."""
    shapes = [shape for _, shape in ins]
    return len(ins) > 1 and bool(out) and all(s and len(s) == len(out) for s in shapes) \
        and sum(s[0] for s in shapes) == out[0]  # type: ignore[index,arg-type]


def _side_by_side(ins: list[tuple[frozenset[Source], Shape | None]]) -> frozenset[Source]:
    """The sources of a concatenation: each input's offsets shifted by the channels of the inputs before it."""
    result: set[Source] = set()
    offset = 0
    for sources, shape in ins:
        result.update((src, off + offset) for src, off in sources)
        offset += shape[0]  # type: ignore[index]
    return frozenset(result)


def _features_per_channel(shape: Shape | None, out: Shape | None) -> int | None:
    """k where a CxHxW feature map became a vector of C*k features (a flatten or a global pooling), else None."""
    if out and shape and len(shape) == 3 and len(out) == 1 and out[0] % shape[0] == 0 and out[0] != shape[0]:
        return out[0] // shape[0]
    return None


def channels_first(shape: Shape) -> Shape:
    """A plan's shape (H, W, C) the way PyTorch holds it: (C, H, W); vectors unchanged."""
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def graph_of_plan(plan: Any, what: str = "the spec", every_layer: bool = False) -> Graph:
    """The weighted layers of an archc Plan, each with its PlanNode as `ref` and its spec span. With
    `every_layer`, every node is a layer (pools, activations, merges too), in plan order, with its kind and
    arguments and without tensors (which those and the input's size determine): the graph `archc diff` matches
    tolerantly."""
    from .plan import INPUT as PLAN_INPUT

    builder = GraphBuilder(what)
    builder.input(PLAN_INPUT, channels_first(plan.input_shape))
    for node in plan.nodes:
        shape = channels_first(node.shape)
        if every_layer:  # no tensors: the kind, its arguments and the input's size say them all
            builder.layer(node.name, node.inputs, shape, node.name, (), node.span, node, node.op,
                          arg_items(node.args))
            continue
        weights = node.weights()
        if weights:
            builder.layer(node.name, node.inputs, shape, node.name,
                          [(name, w.shape) for name, w in weights.items()], node.span, node)
        else:
            builder.op(node.name, node.inputs, shape)
    return builder.graph


def arg_items(args: Any) -> tuple[tuple[str, Any], ...]:
    """A kind's resolved arguments (a pydantic OpArgs) as hashable (field, value) pairs in the kind's order."""
    items = tuple((key, getattr(args, key)) for key in type(args).model_fields)
    try:
        hash(items)  # the usual case: numbers, strings, tuples
        return items
    except TypeError:
        return tuple((key, _hashable(value)) for key, value in items)


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


# ---------------------------------------------------------------- matching


@dataclass(slots=True)
class Mismatch:
    """Where two graphs part: a layer of the first (None: the first ran out) and the second's layer found at
    that place (None: nothing there), and what differs, in words."""

    a: Layer | None
    b: Layer | None
    message: str
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Matching:
    a: Graph
    b: Graph
    pairs: list[int] | None  # for each layer of `a`, the index of its partner in `b`; None when they part
    # (a tolerant match never parts: a layer without a partner has -1)
    mismatch: Mismatch | None = None
    steps: int = 0  # pairings tried, backtracking included
    only_b: list[int] = field(default_factory=list)  # tolerant matches: the layers of `b` left unpaired

    def tensor_pairs(self) -> list[tuple[Layer, str, Layer, str]]:
        """(a's layer, a's tensor name, b's layer, b's tensor name) for every tensor of `a`."""
        assert self.pairs is not None
        out = []
        for i, j in enumerate(self.pairs):
            la, lb = self.a.layers[i], self.b.layers[j]
            out.extend((la, na, lb, nb) for na, nb in pair_tensors(la, lb))
        return out


def signature(layer: Layer) -> Hashable:
    """What two partners must share: their tensors' shapes, and their input's and output's sizes. Sizes are
    compared as sets of numbers without the 1s, so that the layout does not matter: torchvision's ConvNeXt
    runs its 1x1 convolutions as Linear layers on HxWxC tensors, squeeze-excitation sees Cx1x1 where a spec may
    see a vector of C."""
    return (tuple(sorted(squeezed(s) for _, s in layer.tensors)), _sizes(layer.in_shape), _sizes(layer.out_shape))


def _sizes(shape: Shape | None) -> Shape | None:
    return None if shape is None else tuple(sorted(squeezed(shape)))


def pair_tensors(a: Layer, b: Layer) -> list[tuple[str, str]]:
    """Which tensor of b each tensor of a is: by name where both layers use the same names (PyTorch's
    `weight`, `bias`, `running_mean`...), else by position. Assumes equal signatures."""
    names_a = [n for n, _ in a.tensors]
    names_b = [n for n, _ in b.tensors]
    if sorted(names_a) == sorted(names_b):
        return [(n, n) for n in names_a]
    return list(zip(names_a, names_b, strict=True))


def _tensors_fit(a: Layer, b: Layer) -> bool:
    shapes_b = dict(b.tensors)
    return len(a.tensors) == len(b.tensors) and all(
        squeezed(shape) == squeezed(shapes_b[nb]) for (na, nb), (_, shape) in zip(pair_tensors(a, b), a.tensors,
                                                                                  strict=True))


def _refine(graph: Graph, rounds: int) -> list[str]:
    """Colours of the layers from their own shapes and, round by round, those of the layers they feed: equal
    colours are a hint that two layers play the same part (used only to order the candidates tried)."""
    colours = [_digest(repr(signature(layer))) for layer in graph.layers]
    succ = graph.successors()
    for _ in range(rounds):
        colours = [_digest(colours[i] + "|" + ",".join(sorted(f"{colours[r]}@{off}" for r, off in succ[i])))
                   for i in range(len(colours))]
    return colours


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def match(a: Graph, b: Graph, max_steps: int | None = None, rounds: int = 3, tolerant: bool = False) -> Matching:
    """Pair every layer of `a` with one of `b` (see the module's docstring). `tolerant`: pair what sits at the
    same place even where arguments or sizes differ, and leave the rest unpaired (see `match_tolerant`)."""
    if tolerant:
        return match_tolerant(a, b, rounds=rounds)
    max_steps = max_steps if max_steps is not None else 20 * (len(a.layers) + len(b.layers)) + 1000
    return _Search(a, b, max_steps, rounds).run()


class _Search:
    """`match`'s depth-first walk over a's layers in data-flow order: the pairs so far and, for each layer
    reached, the candidates of b not yet tried, so that a choice that fails further down can be undone."""

    def __init__(self, a: Graph, b: Graph, max_steps: int, rounds: int):
        self.a, self.b, self.max_steps = a, b, max_steps
        # b's layers by what a partner must have: the same signature, and sources at the same places
        self.by_place: dict[Hashable, list[int]] = {}
        for j, layer in enumerate(b.layers):
            self.by_place.setdefault((signature(layer), layer.sources), []).append(j)
        self.colours_a, self.colours_b = _refine(a, rounds), _refine(b, rounds)
        self.pairs: list[int] = [-1] * len(a.layers)
        self.used = [False] * len(b.layers)
        self.choices: list[list[int]] = []  # per layer of a reached: the candidates still to try
        self.failed: tuple[int, list[int]] = (-1, [])  # the furthest layer that ran out, and the pairs before it
        self.steps = 0

    def run(self) -> Matching:
        i = 0
        while i < len(self.pairs):
            if self.advance(i):
                i += 1
                continue
            # no (further) candidate: undo the previous choice and try its next candidate
            self.retreat(i)
            if i == 0 or self.steps >= self.max_steps:
                return self.gave_up()
            i -= 1
            self.used[self.pairs[i]] = False
            self.pairs[i] = -1
        left = [j for j in range(len(self.b.layers)) if not self.used[j]]
        if left:
            return Matching(self.a, self.b, None, _explain_left(self.a, self.b, left[0], self.pairs), self.steps)
        return Matching(self.a, self.b, self.pairs, None, self.steps)

    def advance(self, i: int) -> bool:
        """Pair layer i with its next candidate, if it has one and the search has steps left."""
        if len(self.choices) == i:  # arriving at layer i: its candidates
            self.choices.append(self.candidates(i))
        if not self.choices[i] or self.steps >= self.max_steps:
            return False
        j = self.choices[i].pop(0)
        self.pairs[i], self.used[j] = j, True
        self.steps += 1
        return True

    def candidates(self, i: int) -> list[int]:
        """The unused layers of b that fit layer i where its sources' partners are, likeliest first (equal
        colours, then b's order)."""
        layer = self.a.layers[i]
        key = (signature(layer), tuple(frozenset((self.pairs[s] if s != INPUT else INPUT, off) for s, off in operand)
                                       for operand in layer.sources))
        found = [j for j in self.by_place.get(key, ()) if not self.used[j] and _tensors_fit(layer, self.b.layers[j])]
        found.sort(key=lambda j: (self.colours_b[j] != self.colours_a[i], j))
        return found

    def retreat(self, i: int) -> None:
        """Leave layer i, out of candidates, remembering it if no layer before it got this far."""
        if i > self.failed[0]:
            self.failed = (i, self.pairs[:i])  # copied only at a new furthest point: rare
        self.choices.pop()

    def gave_up(self) -> Matching:
        mismatch = _explain(self.a, self.b, *self.failed)
        if self.steps >= self.max_steps:
            mismatch.notes.append(f"the search gave up after {self.steps} pairings")
        return Matching(self.a, self.b, None, mismatch, self.steps)


WINDOW = 256  # how many layers a tolerant search looks ahead for the same layer after an insertion
RUN = 6  # how many identical layers in a row (at most) make a step over an insertion believable


def _exact(layer: Layer) -> Hashable:
    """What makes two layers the same layer for `archc diff`: kind, arguments, tensors, input and output sizes."""
    return (layer.kind, layer.args, layer.tensors, layer.in_shape, layer.out_shape, len(layer.sources))


def _likeness(x: Layer, y: Layer) -> int:
    """How many of their arguments and sizes two layers of one kind share (which of several partners is closer)."""
    args_y = dict(y.args)
    return (sum(key in args_y and v == args_y[key] for key, v in x.args) + (x.in_shape == y.in_shape)
            + (x.out_shape == y.out_shape) + (x.tensors == y.tensors))


def family(kind: str) -> str:
    """The family of a layer kind (archc.ops' `category`: conv, pool, activation, merge, ...): layers of one
    family may stand in for each other in a tolerant match (a relu6 where the other has a relu)."""
    found = _FAMILIES.get(kind)
    if found is None:
        from .ops import OPS

        op = OPS.get(kind)
        found = _FAMILIES[kind] = op.category if op is not None and op.category != "other" else kind
    return found


_FAMILIES: dict[str, str] = {}


def _refine_kinds(graph: Graph, rounds: int) -> list[int]:
    """`_refine`, from the layers' families alone: the colour says what a layer is and what follows it, whatever
    its sizes (a layer whose width changed keeps its colour)."""
    colours = [hash((family(layer.kind), len(layer.sources))) for layer in graph.layers]
    succ = graph.successors()
    for _ in range(rounds):  # Python's hash: colours are only compared within one run
        colours = [hash((colour, tuple(sorted([(colours[r], off) for r, off in readers]) if len(readers) > 1
                                       else [(colours[r], off) for r, off in readers])))
                   for colour, readers in zip(colours, succ, strict=True)]
    return colours


def match_tolerant(a: Graph, b: Graph, rounds: int = 3, window: int = WINDOW) -> Matching:
    """Pair the layers of two graphs of every layer (`graph_of_plan(..., every_layer=True)`) that sit at the same
    place, even where their arguments or sizes differ; what has no partner stays unpaired (`pairs[i] == -1`,
    and `Matching.only_b`). What `archc diff` reads (docs/diff.md).

    The same walk as `match`: the first graph in data-flow order, each layer's candidates found from the
    partners of its sources. The differences: a candidate needs only the same family of kinds (`family`: an
    identical layer is preferred, then one of the same kind); the partners' readers are searched through layers
    of the second graph not yet paired, so that a layer inserted there is stepped over; and a layer with no candidate,
    or whose nearest candidate is the very same as a layer further down its own graph (a block removed: the
    next block is what follows), is left unpaired and passes its sources on to its readers. A layer is stepped
    over (either way) only where the place it sits is itself unchanged (past a changed layer, sizes differ
    downstream and a far look-alike would be a coincidence), where the layers after the look-alike are identical
    too, and where pairing the nearest instead would not meet an identical pair again soon after (then the
    layer changed). Greedy, no backtracking: O(layers x window)."""
    return _TolerantWalk(a, b, rounds, window).run()


class _TolerantWalk:
    """`match_tolerant`'s greedy walk over a's layers: what is paired so far, and for each layer of a the layers
    of b that stand for its output (its partner, or, when it has none, its own sources' stand-ins)."""

    def __init__(self, a: Graph, b: Graph, rounds: int, window: int):
        self.a, self.b, self.window = a, b, window
        numbers: dict[Hashable, int] = {}  # each distinct layer a number: comparing them is comparing ints
        self.key_a = [numbers.setdefault(_exact(x), len(numbers)) for x in a.layers]
        self.key_b = [numbers.setdefault(_exact(y), len(numbers)) for y in b.layers]
        self.fam_a, self.fam_b = [family(x.kind) for x in a.layers], [family(y.kind) for y in b.layers]
        self.colours_a, self.colours_b = _refine_kinds(a, rounds), _refine_kinds(b, rounds)
        self.succ_a, self.succ_b = a.successors(), b.successors()
        self.readers_b = [[r for r, _ in succ] for succ in self.succ_b]  # the walks below step through these
        self.operands_a, self.operands_b = [len(x.sources) for x in a.layers], [len(y.sources) for y in b.layers]
        self.readers_of_input = [j for j, y in enumerate(b.layers)
                                 if any(src == INPUT for op in y.sources for src, _ in op)]
        self.pairs = [-1] * len(a.layers)
        self.partner_of_b = [-1] * len(b.layers)
        self.image: list[frozenset[int]] = []  # per layer of a: the layers of b (or INPUT) that stand for its output
        self.steps = 0

    def run(self) -> Matching:
        for i in range(len(self.a.layers)):
            self.place(i)
        only_b = [j for j in range(len(self.b.layers)) if self.partner_of_b[j] < 0]
        return Matching(self.a, self.b, self.pairs, None, self.steps, only_b=only_b)

    def place(self, i: int) -> None:
        """Pair layer i of a with its partner in b, or leave it unpaired standing for its sources' stand-ins."""
        operands = [frozenset().union(*(self.image[s] if s != INPUT else frozenset({INPUT}) for s, _ in operand))
                    for operand in self.a.layers[i].sources] or [frozenset()]
        roots = frozenset().union(*operands)
        kept = self.same_kept(roots)
        chosen = self.choose(i, *self.nearest(i, operands, kept), kept)
        if chosen >= 0:
            self.pairs[i], self.partner_of_b[chosen] = chosen, i
            self.image.append(frozenset({chosen}))
        else:
            self.image.append(roots)

    def nearest(self, i: int, operands: list[frozenset[int]], kept: bool) -> tuple[tuple | None, tuple | None]:
        """The nearest identical candidate, (distance, colour differs, j), and the nearest other one of i's family,
        (distance, kind differs, colour differs, unlikeness, j); None where there is none."""
        layer = self.a.layers[i]
        exact: tuple | None = None
        near: tuple | None = None
        for j, distance in self.reached_b(i, operands):
            if (exact is not None and distance > exact[0]) or (not kept and near is not None and distance > near[0]):
                break  # nothing further away can be preferred
            self.steps += 1
            other = self.b.layers[j]
            colour_differs = self.colours_b[j] != self.colours_a[i]
            if self.identical_here(i, j, distance, kept):
                exact = min(exact or (distance, True, j), (distance, colour_differs, j))
            else:
                rank = (distance, other.kind != layer.kind, colour_differs, -_likeness(layer, other), j)
                near = min(near or rank, rank)
        return exact, near

    def identical_here(self, i: int, j: int, distance: int, kept: bool) -> bool:
        """Is b's layer j the same as a's layer i? Further away than i's own place, only where that place is
        unchanged and what follows j is identical too: only then is stepping over the layers between believable."""
        if self.key_b[j] != self.key_a[i]:
            return False
        return distance == 0 or (kept and self.alike_for(i, j, min(distance + 1, RUN)))

    def choose(self, i: int, exact: tuple | None, near: tuple | None, kept: bool) -> int:
        """Layer i's partner among the nearest candidates, or -1."""
        if exact is not None and exact[0] > 0 and near is not None and near[0] == 0 \
                and self.meets_again(i, near[-1], 2 * RUN):
            exact = None  # the layer here changed and the two meet again just after: a change, not an insertion
        chosen = exact[-1] if exact is not None else near[-1] if near is not None else -1
        if exact is None and near is not None and kept and self.ahead_in_a(i, chosen):
            chosen = -1  # b's nearest is a layer further down a, and so is what follows: this one was removed
        return chosen

    def same_kept(self, roots: frozenset[int]) -> bool:
        """Is every root the input, or paired with an identical layer?"""
        return all(r == INPUT or (self.partner_of_b[r] >= 0 and self.key_a[self.partner_of_b[r]] == self.key_b[r])
                   for r in roots)

    def from_roots(self, roots: frozenset[int]) -> Iterator[tuple[int, int]]:
        """(layer, distance) of b's layers reading a root, through layers not yet paired, nearest first."""
        seen: set[int] = set()
        readers, partner_of_b = self.readers_b, self.partner_of_b
        frontier: list[int] = []
        for r in sorted(roots):
            frontier.extend(self.readers_of_input if r == INPUT else readers[r])
        distance = 0
        while frontier and len(seen) < self.window:
            nxt: list[int] = []
            for j in frontier:
                if j in seen or partner_of_b[j] >= 0:
                    continue
                seen.add(j)
                yield j, distance
                nxt.extend(readers[j])
            frontier, distance = nxt, distance + 1

    def reads(self, j: int, roots: frozenset[int]) -> bool:
        """Does b's layer j read a root, through unpaired layers?"""
        frontier, seen = [j], {j}
        while frontier and len(seen) < self.window:
            nxt = []
            for x in frontier:
                for operand in self.b.layers[x].sources:
                    for src, _ in operand:
                        if src in roots:
                            return True
                        if src != INPUT and self.partner_of_b[src] < 0 and src not in seen:
                            seen.add(src)
                            nxt.append(src)
            frontier = nxt
        return False

    def reached_b(self, i: int, operands: list[frozenset[int]]) -> Iterator[tuple[int, int]]:
        """b's layers of i's family that each operand's roots reach (a merge reads all its inputs)."""
        first, *others = operands
        family_i, operands_i, fam_b, operands_b = self.fam_a[i], self.operands_a[i], self.fam_b, self.operands_b
        for j, distance in self.from_roots(first):
            if fam_b[j] == family_i and operands_b[j] == operands_i and all(self.reads(j, roots) for roots in others):
                yield j, distance

    def ahead_in_a(self, i: int, j: int) -> bool:
        """Is b's layer j one further down a from layer i, with what follows?"""
        key = self.key_b[j]
        seen: set[int] = set()
        frontier = [x for x, _ in self.succ_a[i]]
        while frontier and len(seen) < self.window:
            nxt = []
            for k in frontier:
                if k in seen or k <= i:
                    continue
                seen.add(k)
                if self.key_a[k] == key and self.alike_for(k, j, min(k - i, RUN)):
                    return True
                nxt.extend(x for x, _ in self.succ_a[k])
            frontier = nxt
        return False

    def alike_for(self, k: int, j: int, length: int) -> bool:
        """Are a's layers from k and b's from j, walked side by side, identical for `length` layers (or to the end)?"""
        frontier, seen, count = [(k, j)], set(), 0
        while frontier and count < length:
            x, y = frontier.pop(0)
            if (x, y) in seen:
                continue
            seen.add((x, y))
            if self.key_a[x] != self.key_b[y]:
                return False
            count += 1
            after = self._readers_side_by_side(x, y)
            if after is None:
                return False
            frontier.extend(after)
        return count >= length or not frontier

    def meets_again(self, k: int, j: int, length: int) -> bool:
        """Walked side by side from (k, j), do a and b meet an identical pair soon?"""
        frontier, seen = [(k, j)], set()
        while frontier and len(seen) < length:
            x, y = frontier.pop(0)
            if (x, y) in seen:
                continue
            seen.add((x, y))
            if self.key_a[x] == self.key_b[y] and (x, y) != (k, j):
                return True
            after = self._readers_side_by_side(x, y)
            if after is None or any(self.b.layers[r].kind != self.a.layers[q].kind for q, r in after):
                return False  # the structures part: no substitution explains it
            frontier.extend(after)
        return False

    def _readers_side_by_side(self, x: int, y: int) -> list[tuple[int, int]] | None:
        """The readers of a's layer x and of b's layer y, paired in order; None where their numbers differ."""
        after_a, after_b = sorted(r for r, _ in self.succ_a[x]), sorted(r for r, _ in self.succ_b[y])
        if len(after_a) != len(after_b):
            return None
        return list(zip(after_a, after_b, strict=True))


def _explain(a: Graph, b: Graph, i: int, pairs: list[int]) -> Mismatch:
    """Why layer i of a has no partner in b, given the pairs of the layers before it."""
    layer = a.layers[i]
    used = set(pairs)
    free = [j for j in range(len(b.layers)) if j not in used]
    wanted = tuple(frozenset((pairs[s] if s != INPUT else INPUT, off) for s, off in operand)
                   for operand in layer.sources)
    name_a = f"{a.what}'s `{layer.label}`"
    same_place = [j for j in free if b.layers[j].sources == wanted]
    if same_place:
        other = b.layers[same_place[0]]
        return Mismatch(layer, other, f"{name_a} does not match {b.what}'s `{other.label}`: "
                        + _difference(layer, other, a.what, b.what),
                        [f"{a.what}: {layer.describe()}", f"{b.what}: {other.describe()}"])
    alike = [j for j in free if signature(b.layers[j]) == signature(layer)]
    reads = _reads(a, layer, pairs, b)
    if alike:
        other = b.layers[alike[0]]
        return Mismatch(layer, other, f"{name_a} is connected differently from {b.what}'s `{other.label}`: "
                        f"`{layer.label}` reads {reads}; `{other.label}` reads {_reads(b, other, None, None)}",
                        [f"both: {layer.describe()}"])
    if not free:
        return Mismatch(layer, None, f"{name_a} has no counterpart: {b.what} has only {len(b.layers)} layers with "
                        f"weights, and the {len(pairs)} before this one took them all",
                        [f"{a.what}: {layer.describe()}"])
    other = b.layers[free[0]]
    return Mismatch(layer, other, f"{name_a} has no counterpart in {b.what}, whose next layer `{other.label}` is "
                    "different: " + _difference(layer, other, a.what, b.what),
                    [f"{a.what}: {layer.describe()}, reading {reads}",
                     f"{b.what}: {other.describe()}, reading {_reads(b, other, None, None)}"])


def _explain_left(a: Graph, b: Graph, j: int, pairs: list[int]) -> Mismatch:
    other = b.layers[j]
    return Mismatch(None, other, f"{b.what}'s `{other.label}` has no counterpart in {a.what}: {b.what} has "
                    f"{len(b.layers)} layers with weights, {a.what} {len(a.layers)}", [f"{b.what}: {other.describe()}"])


def _reads(graph: Graph, layer: Layer, pairs: list[int] | None, other: Graph | None) -> str:
    """The layer's sources in words: `conv1.bn` (the other's `bn1`) at channel 64."""
    parts = []
    for operand in layer.sources:
        for src, off in sorted(operand):
            if src == INPUT:
                text = "the input"
            else:
                text = f"`{graph.layers[src].label}`"
                if pairs is not None and other is not None and 0 <= src < len(pairs) and pairs[src] >= 0:
                    text += f" (`{other.layers[pairs[src]].label}`)"
            parts.append(text + (f" at channel {off}" if off else ""))
    return ", ".join(parts) if parts else "nothing"


def _difference(x: Layer, y: Layer, what_x: str, what_y: str) -> str:
    if _sizes(x.out_shape) != _sizes(y.out_shape) and signature(x)[0] == signature(y)[0]:
        return f"output {fmt(x.out_shape)} in {what_x}, {fmt(y.out_shape)} in {what_y}"
    if _sizes(x.in_shape) != _sizes(y.in_shape) and signature(x)[0] == signature(y)[0]:
        return f"input {fmt(x.in_shape)} in {what_x}, {fmt(y.in_shape)} in {what_y}"
    if signature(x)[0] != signature(y)[0]:
        if len(x.tensors) == len(y.tensors):  # the first tensor that differs, by its full name
            shapes_y = dict(y.tensors)
            for (nx, ny), (_, shape) in zip(pair_tensors(x, y), x.tensors, strict=True):
                if squeezed(shape) != squeezed(shapes_y[ny]):
                    return (f"`{x.label}.{nx}` is {fmt(shape)} in {what_x}, `{y.label}.{ny}` is "
                            f"{fmt(shapes_y[ny])} in {what_y}")
        return (f"{', '.join(f'{n} {fmt(s)}' for n, s in x.tensors) or 'no tensors'} in {what_x}, "
                f"{', '.join(f'{n} {fmt(s)}' for n, s in y.tensors) or 'no tensors'} in {what_y}")
    if not _tensors_fit(x, y):
        return "their tensors have the same shapes but not under the same names"
    return "they read from different layers"
