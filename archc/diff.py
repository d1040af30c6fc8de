"""`archc diff A B`: what changed between two networks, stage by stage and layer by layer (docs/diff.md).

Each side is a spec's plan or a FlatNetwork (a model a reader turned into archc's vocabulary). Both become
graphs of every layer (archc.match.graph_of_plan / archc.flat.graph_of_flat with `every_layer`), paired by
archc.match's tolerant walk: the machinery of structural `load_weights`, which pairs through the structure,
never through names or line numbers. This module only reads the pairs: the arguments and sizes of paired
layers that differ, the layers left unpaired, and the stage table with its deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .match import Graph, match
from .ops import OPS, fmt_shape
from .plan import Plan
from .render import grid, human


@dataclass(slots=True)
class Side:
    """One network as `diff` reads it: its graph of every layer, and per layer (in graph order) its name, stage,
    output size (archc's layout, HxWxC), parameters and MACs."""

    title: str  # how the report names it: `resnet50 (specs/resnet50.arch, downsample_at=2)`
    name: str
    source: str  # the file or object it was read from
    sets: dict[str, Any]
    input_shape: tuple[int, ...]
    graph: Graph
    names: list[str]
    stages: list[str]
    shapes: list[tuple[int, ...]]
    in_shapes: list[tuple[int, ...] | None]  # the (first) input's size
    params: list[int]
    trainable: list[int]
    macs: list[int]

    def stage_rows(self) -> list[tuple[str, list[int]]]:
        """Consecutive layers grouped by stage (as Plan.stages groups them)."""
        rows: list[tuple[str, list[int]]] = []
        for i, stage in enumerate(self.stages):
            if rows and rows[-1][0] == stage:
                rows[-1][1].append(i)
            else:
                rows.append((stage, [i]))
        return rows

    def totals(self) -> dict[str, int]:
        return {"params": sum(self.params), "trainable_params": sum(self.trainable),
                "non_trainable_params": sum(self.params) - sum(self.trainable), "macs": sum(self.macs),
                "layers": len(self.names)}


def _title(name: str, source: str, sets: dict[str, Any]) -> str:
    extra = [source] if source else []
    extra += [f"{k}={v}" for k, v in sets.items()]
    return f"{name} ({', '.join(extra)})" if extra else name


def side_of_plan(plan: Plan, sets: dict[str, Any] | None = None, what: str = "A") -> Side:
    from .match import graph_of_plan

    sets = dict(sets or {})
    nodes = plan.nodes
    return Side(_title(plan.name, plan.file or "", sets), plan.name, plan.file or "", sets, tuple(plan.input_shape),
                graph_of_plan(plan, what, every_layer=True), [n.name for n in nodes],
                [n.stage or n.name for n in nodes], [tuple(n.shape) for n in nodes],
                [tuple(n.in_shapes[0]) if n.in_shapes else None for n in nodes], [n.params for n in nodes],
                [n.trainable for n in nodes], [n.macs for n in nodes])


def side_of_flat(net, what: str = "B") -> Side:
    """A FlatNetwork (archc.flat) as a side: its stages are the first part of its layers' paths (`layer3`)."""
    from .flat import graph_of_flat

    resolved = net.resolved()
    counts = [OPS[layer.op].params(args, ins) for layer, (args, ins, _) in zip(net.layers, resolved, strict=True)]
    names = [layer.path or f"{layer.op}{i}" for i, layer in enumerate(net.layers)]
    return Side(_title(net.name, net.source, {}), net.name, net.source, {}, tuple(net.input_shape),
                graph_of_flat(net, what, every_layer=True), names, [name.split(".")[0] for name in names],
                [tuple(shape) for _, _, shape in resolved], [tuple(ins[0]) if ins else None for _, ins, _ in resolved],
                [t + n for t, n in counts], [t for t, _ in counts],
                [OPS[layer.op].macs(args, ins, shape) for layer, (args, ins, shape) in zip(net.layers, resolved,
                                                                                           strict=True)])


def diff_specs(a: Any, b: Any, sets_a: dict[str, Any] | None = None, sets_b: dict[str, Any] | None = None) -> Diff:
    """Two specs (anything `archc.check` reads), each with its own overrides, compared: the API of `archc diff`."""
    from . import check

    sets_a, sets_b = dict(sets_a or {}), dict(sets_b or {})
    return diff(side_of_plan(check(a, **sets_a), sets_a, "A"), side_of_plan(check(b, **sets_b), sets_b, "B"))


# ---------------------------------------------------------------- the comparison


@dataclass(slots=True)
class LayerChange:
    a: int  # index of the layer in side A
    b: int
    changes: list[tuple[str, Any, Any]]  # (field, value in A, value in B); `kind`, an argument, `input`, `output`

    @property
    def arguments(self) -> bool:
        """Whether its kind or an argument changed (not only the sizes it reads and computes)."""
        return any(f not in SIZES for f, _, _ in self.changes)


SIZES = ("input", "output")  # the fields of a change that are sizes, not arguments


@dataclass(slots=True)
class StageRow:
    a: tuple[str, list[int]] | None  # (stage name, its layers) in A; None: only in B
    b: tuple[str, list[int]] | None


@dataclass(slots=True)
class Diff:
    a: Side
    b: Side
    pairs: list[int]  # for each layer of A its partner in B, -1: none
    layers: list[LayerChange]
    only_a: list[int]
    only_b: list[int]
    stages: list[StageRow] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.layers or self.only_a or self.only_b) and self.a.input_shape == self.b.input_shape


def diff(a: Side, b: Side) -> Diff:
    """Pair the two sides through their structure and collect what differs."""
    matching = match(a.graph, b.graph, tolerant=True)
    pairs = list(matching.pairs or [])
    changes = []
    for i, j in enumerate(pairs):
        if j < 0:
            continue
        la, lb = a.graph.layers[i], b.graph.layers[j]
        fields = [("kind", la.kind, lb.kind)] if la.kind != lb.kind else []
        args_b = dict(lb.args)  # kinds of one family (relu6, relu) may pair: compare the arguments both have
        fields += [(key, va, args_b[key]) for key, va in la.args if key in args_b and va != args_b[key]]
        if a.in_shapes[i] != b.in_shapes[j] and (a.shapes[i] == b.shapes[j] or a.params[i] != b.params[j]):
            # the input matters to the layer itself: its weights read it, or it alone changed
            fields.append(("input", a.in_shapes[i], b.in_shapes[j]))
        if a.shapes[i] != b.shapes[j]:
            fields.append(("output", a.shapes[i], b.shapes[j]))
        if fields:
            changes.append(LayerChange(i, j, fields))
    only_a = [i for i, j in enumerate(pairs) if j < 0]
    result = Diff(a, b, pairs, changes, only_a, list(matching.only_b))
    result.stages = _stage_rows(result)
    return result


def _stage_rows(d: Diff) -> list[StageRow]:
    """A's stages in order, each beside the stage of B that holds most partners of its layers; B's stages that
    no A stage took come in B's order, after the row of the B stage before them."""
    rows_a, rows_b = d.a.stage_rows(), d.b.stage_rows()
    stage_of_b = {}
    for k, (_, layers) in enumerate(rows_b):
        for j in layers:
            stage_of_b[j] = k
    taken: dict[int, int] = {}  # B stage -> A stage
    partner: list[int | None] = []
    for ka, (_, layers) in enumerate(rows_a):
        votes: dict[int, int] = {}
        for i in layers:
            if d.pairs[i] >= 0:
                kb = stage_of_b[d.pairs[i]]
                votes[kb] = votes.get(kb, 0) + 1
        free = [(-count, kb) for kb, count in votes.items() if kb not in taken]
        kb = min(free)[1] if free else None
        if kb is not None:
            taken[kb] = ka
        partner.append(kb)
    out: list[StageRow] = []
    b_done = -1
    for ka, kb in enumerate(partner):
        if kb is not None:  # B stages left unpaired before this one
            for k in range(b_done + 1, kb):
                if k not in taken:
                    out.append(StageRow(None, rows_b[k]))
            b_done = max(b_done, kb)
        out.append(StageRow(rows_a[ka], rows_b[kb] if kb is not None else None))
    out += [StageRow(None, rows_b[k]) for k in range(b_done + 1, len(rows_b)) if k not in taken]
    return out


# ---------------------------------------------------------------- rendering


def show(value: Any) -> str:
    """An argument's value as a spec writes it: 2 for (2, 2), 1x7 for (1, 7), true, none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if value and all(isinstance(v, int) for v in value):
            return fmt_shape(value) if len(set(value)) > 1 or len(value) == 3 else str(value[0])
        return "(" + ", ".join(show(v) for v in value) + ")"
    return "none" if value is None else str(value)


def _signed(n: int, text) -> str:
    return "0" if n == 0 else ("+" if n > 0 else "-") + text(abs(n))


def _stage_summary(side: Side, row: tuple[str, list[int]] | None) -> tuple[str, str, int, int]:
    if row is None:
        return "", "", 0, 0
    name, layers = row
    return name, fmt_shape(side.shapes[layers[-1]]), sum(side.params[i] for i in layers), \
        sum(side.macs[i] for i in layers)


def _pair_name(na: str, nb: str) -> str:
    return na if na == nb or not nb else nb if not na else f"{na} / {nb}"


def stage_table(d: Diff) -> str:
    rows = [["input", fmt_shape(d.a.input_shape), fmt_shape(d.b.input_shape), "", "", "", "", "", ""]]
    for row in d.stages:
        na, sa, pa, ma = _stage_summary(d.a, row.a)
        nb, sb, pb, mb = _stage_summary(d.b, row.b)
        rows.append([_pair_name(na, nb), sa or "-", sb or "-", f"{pa:,}" if row.a else "-",
                     f"{pb:,}" if row.b else "-", _signed(pb - pa, lambda n: f"{n:,}"),
                     human(ma) if row.a else "-", human(mb) if row.b else "-", _signed(mb - ma, human)])
    ta, tb = d.a.totals(), d.b.totals()
    rows.append(["total", fmt_shape(d.a.shapes[-1]) if d.a.shapes else "", fmt_shape(d.b.shapes[-1]) if d.b.shapes
                 else "", f"{ta['params']:,}", f"{tb['params']:,}", _signed(tb["params"] - ta["params"],
                                                                           lambda n: f"{n:,}"),
                 human(ta["macs"]), human(tb["macs"]), _signed(tb["macs"] - ta["macs"], human)])
    return grid(["stage", "output A", "output B", "params A", "params B", "delta", "MACs A", "MACs B", "delta"],
                rows, right={1, 2, 3, 4, 5, 6, 7, 8})


def _percent(a: int, b: int) -> str:
    return f", {100 * (b - a) / a:+.2f}%" if a and a != b else ""


def totals_line(d: Diff) -> str:
    ta, tb = d.a.totals(), d.b.totals()
    return (f"MACs {ta['macs']:,} -> {tb['macs']:,} ({_signed(tb['macs'] - ta['macs'], lambda n: f'{n:,}')}"
            f"{_percent(ta['macs'], tb['macs'])}); params {ta['params']:,} -> {tb['params']:,} "
            f"({_signed(tb['params'] - ta['params'], lambda n: f'{n:,}')}{_percent(ta['params'], tb['params'])}); "
            f"layers {ta['layers']} -> {tb['layers']}")


def change_text(field_name: str, va: Any, vb: Any) -> str:
    if field_name in SIZES:
        return f"{field_name} {fmt_shape(va)} -> {fmt_shape(vb)}"
    return f"{field_name} {show(va)} -> {show(vb)}"


def _groups(side: Side, indexes: list[int]) -> list[str]:
    """Unpaired layers in words: a whole block (every layer under one path) is one line, `conv2_x.2 (7 layers:
    conv, batchnorm, relu, ...)`; other layers one line each."""
    if not indexes:
        return []
    members: dict[str, list[int]] = {}
    for k, name in enumerate(side.names):
        members.setdefault(name.rpartition(".")[0], []).append(k)
    out: list[str] = []
    chosen = set(indexes)
    done: set[str] = set()
    for i in indexes:
        parent = side.names[i].rpartition(".")[0]
        if parent in done:
            continue
        block = members[parent] if parent else []
        if len(block) > 1 and all(k in chosen for k in block):  # the whole block is unpaired
            done.add(parent)
            kinds = ", ".join(side.graph.layers[k].kind for k in block)
            out.append(f"{parent} ({len(block)} layers: {kinds}; {_count(side, block)})")
        else:
            out.append(f"{side.names[i]} ({side.graph.layers[i].kind}, output {fmt_shape(side.shapes[i])}; "
                       f"{_count(side, [i])})")
    return out


def _count(side: Side, layers: list[int]) -> str:
    return f"{sum(side.params[k] for k in layers):,} params, {human(sum(side.macs[k] for k in layers))} MACs"


MAX_SIZE_ONLY = 12  # size-only changes shown at stage level; `--level layer` and the JSON list them all


def render_text(d: Diff, level: str = "stage") -> str:
    head = [f"A: {d.a.title}", f"B: {d.b.title}", ""]
    if d.same:
        ta = d.a.totals()
        return "\n".join(head + [f"A and B are the same network: {ta['layers']} layers, {ta['params']:,} params, "
                                 f"{ta['macs']:,} MACs ({human(ta['macs'])})", ""])
    lines = head + [stage_table(d), "", totals_line(d), ""]
    by_args = [c for c in d.layers if c.arguments]
    by_size = [c for c in d.layers if not c.arguments]
    if by_args:
        lines.append(f"layers whose arguments changed ({len(by_args)}):")
        lines += _change_lines(d, by_args)
        lines.append("")
    if by_size:
        lines.append(f"layers whose sizes changed with them ({len(by_size)}):")
        shown = by_size if level == "layer" or len(by_size) <= MAX_SIZE_ONLY else by_size[:MAX_SIZE_ONLY]
        lines += _change_lines(d, shown)
        if len(shown) < len(by_size):
            lines.append(f"  ... and {len(by_size) - len(shown)} more (--level layer lists them all)")
        lines.append("")
    for label, side, indexes in (("only in A", d.a, d.only_a), ("only in B", d.b, d.only_b)):
        if indexes:
            lines.append(f"{label} ({len(indexes)} layer{'' if len(indexes) == 1 else 's'}):")
            lines += [f"  {text}" for text in _groups(side, indexes)]
            lines.append("")
    return "\n".join(lines)


def _change_lines(d: Diff, changes: list[LayerChange]) -> list[str]:
    names = [_pair_name(d.a.names[c.a], d.b.names[c.b]) for c in changes]
    width = max(len(n) for n in names)
    return [f"  {name.ljust(width)}  " + "; ".join(change_text(*f) for f in c.changes)
            for name, c in zip(names, changes, strict=True)]


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def diff_json(d: Diff) -> dict:
    """The `diff --format json` object: a contract other tools read (keys only ever get added; docs/diff.md)."""

    def stage(side: Side, row) -> dict | None:
        if row is None:
            return None
        name, size, params, macs = _stage_summary(side, row)
        return {"name": name, "size": list(side.shapes[row[1][-1]]), "params": params, "macs": macs}

    def about(side: Side) -> dict:
        return {"name": side.name, "source": side.source, "sets": {k: str(v) for k, v in side.sets.items()},
                "input": list(side.input_shape)}

    ta, tb = d.a.totals(), d.b.totals()
    return {
        "a": about(d.a),
        "b": about(d.b),
        "same": d.same,
        "stages": [{"name": (row.a or row.b)[0], "a": stage(d.a, row.a), "b": stage(d.b, row.b)} for row in d.stages],
        "layers": [{"a": d.a.names[c.a], "b": d.b.names[c.b], "kind": d.a.graph.layers[c.a].kind,
                    "changes": [{"field": f, "a": _json_value(va), "b": _json_value(vb)} for f, va, vb in c.changes]}
                   for c in d.layers],
        "only_a": [d.a.names[i] for i in d.only_a],
        "only_b": [d.b.names[j] for j in d.only_b],
        "totals": {"a": ta, "b": tb, "delta": {k: tb[k] - ta[k] for k in ta}},
    }
