"""Pictures of a Plan: Graphviz DOT and Mermaid text written here, SVG and PNG rendered by Graphviz's `dot`.

Layer level: one node per layer, labelled with its name, its kind and key arguments (the `check` table's
label) and its output size, inside nested boxes for the stages and block calls of its name
(`conv3_x` > `conv3_x.0` > `conv3_x.0.shortcut`). Stage level: one node per stage of the table.

Skip connections are dashed, as the papers draw them: an edge into a merge (`add`, `concat`) whose source
also feeds another input of that merge (an identity shortcut, DenseNet's concatenation), and every edge of
a `shortcut` path (the 1x1 projection). Parallel branches (Inception) stay solid: none feeds another, and
they stand left to right in the order the spec writes them (the order of the merge's inputs), in every version
of Graphviz (see `_order_guides`).
"""

from __future__ import annotations

import json
from typing import NamedTuple

from .diagnostics import ArchcError, Diagnostic
from .ops import OPS, fmt_shape
from .plan import INPUT, Plan, PlanNode
from .render import human

MAX_DRAWN_NODES = 5_000  # dot takes minutes beyond this; the stage level still draws any network
MAX_DRAWN_STAGES = 500  # rows of the stage table drawn; the rest are one node (a stage-less network has a row
# per layer, and dot fails on 199,000 nodes)
REST = "(more)"  # the node of the rows not drawn: not an identifier, so no stage has this name
MAX_LR_NODES = 80  # a left-to-right drawing of more layers is metres wide: drawn top to bottom instead
LEVELS = ("layer", "stage")
FORMATS = ("dot", "mermaid", "svg", "png")

# Fill colours by family (archc.ops categories), light enough for black text (conv blue, pool orange, dense green,
# merges yellow); activations and anything new are white.
_FILL = {
    "conv": "#cfe2f3", "pool": "#fce5cd", "dense": "#d9ead3", "merge": "#fff2cc", "norm": "#eeeeee",
    "regularization": "#f4f4f4", "reshape": "#f4f4f4",
}
_ACTIVATION_FILL = "#ffffff"


# ---------------------------------------------------------------- the graph, independent of the syntax


class Drawing:
    """Nodes, edges and clusters of one picture; DOT and Mermaid are two spellings of it."""

    def __init__(self, title: str):
        self.title = title
        self.nodes: list[tuple[str, list[str], str, str]] = []  # (id, label lines, fill, shape)
        self.edges: list[tuple[str, str, bool]] = []  # (from, to, skip)
        self.clusters: dict[str, list[str]] = {}  # cluster path -> its own node ids (not its sub-clusters')
        self.output: str | None = None
        self.orders: list[BranchOrder] = []  # the parallel branches of each merge, left to right


class BranchOrder(NamedTuple):
    """The parallel branches of one merge, in the order of its inputs (the spec's order): `heads[i]` are the
    layers of branch i that read the common input `fork`; `scope` is where the merge is (`inception_3a`)."""

    scope: str
    merge: str
    fork: str
    heads: list[list[str]]


def _skip_edges(plan: Plan) -> set[tuple[str, str]]:
    """Edges (src, dst) drawn dashed: shortcuts into merges and every edge of a `shortcut` path."""
    index = {n.name: i for i, n in enumerate(plan.nodes)}
    index[INPUT] = -1
    skips: set[tuple[str, str]] = set()
    for node in plan.nodes:
        if "shortcut" in node.name.split("."):
            skips.update((src, node.name) for src in node.inputs)
        for src in node.inputs:
            if src != INPUT and "shortcut" in src.split("."):
                skips.add((src, node.name))
        if node.opdef.inputs == "many" and len(node.inputs) > 1:
            skips.update((src, node.name) for src in _feeding_others(plan, index, node.inputs))
    return skips


def _feeding_others(plan: Plan, index: dict[str, int], inputs: tuple[str, ...]) -> set[str]:
    """The inputs of a merge that are ancestors of another of its inputs (a shortcut beside the body). One search
    up from all the inputs at once, not one per pair: a concat of 5,000 branches took 30 s pairwise. An input
    found above the inputs is an ancestor of some other input (the graph has no cycles); the topological
    order bounds the search at the earliest input."""
    wanted = set(inputs)
    limit = min(index[name] for name in inputs)
    stack = [src for name in inputs if name != INPUT for src in plan.node(name).inputs]
    seen: set[str] = set()
    found: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or index[name] < limit:
            continue
        seen.add(name)
        if name in wanted:
            found.add(name)
        if name != INPUT:
            stack.extend(plan.node(name).inputs)
    return found


def _branch_orders(plan: Plan) -> list[BranchOrder]:
    """Each merge whose inputs end parallel branches: every input in its own part of the merge's scope (the
    `branch2` of `inception_3a.branch2.relu2`), and the parts read one common input from outside them. A
    residual's identity input is above its body, not beside it: that merge has none."""
    members = _scope_members(plan)
    orders = []
    for node in plan.nodes:
        if node.opdef.inputs != "many" or len(node.inputs) < 2:
            continue
        scope = node.name.rpartition(".")[0]
        parts = _branch_parts(scope, node.inputs)
        if parts is None:
            continue
        heads, forks = _branch_heads(parts, members)
        if len(forks) == 1 and all(heads):
            orders.append(BranchOrder(scope, node.name, forks.pop(), heads))
    return orders


def _scope_members(plan: Plan) -> dict[str, list[PlanNode]]:
    """A part of a scope -> its layers (the layer of that name, or under it)."""
    members: dict[str, list[PlanNode]] = {}
    for n in plan.nodes:
        parts = n.name.split(".")
        for depth in range(1, len(parts) + 1):
            members.setdefault(".".join(parts[:depth]), []).append(n)
    return members


def _branch_parts(scope: str, inputs: tuple[str, ...]) -> list[str] | None:
    """The part of `scope` each merge input lies in, or None unless every input lies in a part of its own."""
    prefix = scope + "." if scope else ""
    parts = []
    for src in inputs:
        if src == INPUT or not src.startswith(prefix):
            return None
        parts.append(prefix + src[len(prefix):].split(".")[0])
    return parts if len(set(parts)) == len(parts) else None


def _branch_heads(parts: list[str], members: dict[str, list[PlanNode]]) -> tuple[list[list[str]], set[str]]:
    """Per part, the layers that read from outside it (the branch's head); and the names they read there."""
    heads: list[list[str]] = []
    forks: set[str] = set()
    for part in parts:
        inside = part + "."
        own = [n for n in members.get(part, [])
               if any(src != part and not src.startswith(inside) for src in n.inputs)]
        forks.update(src for n in own for src in n.inputs if src != part and not src.startswith(inside))
        heads.append([n.name for n in own])
    return heads, forks


def _fill(op: str) -> str:
    return _FILL.get(OPS[op].category, _ACTIVATION_FILL)


def layer_drawing(plan: Plan) -> Drawing:
    if len(plan.nodes) > MAX_DRAWN_NODES:
        raise ArchcError([Diagnostic("A420", f"`{plan.name}` has {len(plan.nodes):,} layers, too many to draw one "
                                     f"node each (at most {MAX_DRAWN_NODES:,})", None,
                                     help="draw one node per stage with `--level stage`")])
    drawing = Drawing(_title(plan))
    drawing.nodes.append((INPUT, ["input", fmt_shape(plan.input_shape)], "#ffffff", "ellipse"))
    skips = _skip_edges(plan)
    for node in plan.nodes:
        drawing.nodes.append((node.name, _layer_label(node), _fill(node.op), "box"))
        for src in node.inputs:
            drawing.edges.append((src, node.name, (src, node.name) in skips))
        parts = node.name.split(".")
        cluster = ".".join(parts[:-1])
        drawing.clusters.setdefault(cluster, []).append(node.name)
    drawing.output = plan.output
    drawing.orders = _branch_orders(plan)
    return drawing


def _layer_label(node: PlanNode) -> list[str]:
    lines = [node.opdef.label(node.args), fmt_shape(node.shape)]
    own = node.name.rsplit(".", 1)[-1]
    if own != lines[0] and not lines[0].startswith(own + " "):
        lines.insert(0, own)  # the layer's name (`conv2`, its state_dict key's last part), unless the label says it
    if node.params:
        lines[-1] += f"  ({human(node.params)} params)"
    return lines


def stage_drawing(plan: Plan) -> Drawing:
    drawing = Drawing(_title(plan))
    drawing.nodes.append((INPUT, ["input", fmt_shape(plan.input_shape)], "#ffffff", "ellipse"))
    owner: dict[str, str] = {INPUT: INPUT}
    from .render import stage_summary

    rows = plan.stages()
    drawn, rest = rows, []
    if len(rows) > MAX_DRAWN_STAGES:  # a network without stages has a row per layer: Graphviz gives up
        drawn, rest = rows[:MAX_DRAWN_STAGES - 1], rows[MAX_DRAWN_STAGES - 1:]
    for key, nodes in drawn:
        ops = {n.op for n in nodes}
        conv = next((op for op in ops if OPS[op].category == "conv"), None)  # a stage with convs is a conv stage
        fill = _fill(nodes[0].op) if len(ops) == 1 else _fill(conv or nodes[0].op)
        params = sum(n.params for n in nodes)
        lines = [key, stage_summary(plan, key, nodes), fmt_shape(nodes[-1].shape)]
        if params:
            lines[-1] += f"  ({human(params)} params)"
        drawing.nodes.append((key, lines, fill, "box"))
        for n in nodes:
            owner[n.name] = key
    if rest:
        layers = sum(len(nodes) for _, nodes in rest)
        drawing.title += f"\nthe first {len(drawn):,} of {len(rows):,} rows drawn (at most {MAX_DRAWN_STAGES:,})"
        drawing.nodes.append((REST, [f"{len(rest):,} more rows", f"{layers:,} layers",
                                     fmt_shape(rest[-1][1][-1].shape)], _ACTIVATION_FILL, "box"))
        owner.update((n.name, REST) for _, nodes in rest for n in nodes)
    seen: set[tuple[str, str]] = set()
    for node in plan.nodes:
        for src in node.inputs:
            edge = (owner[src], owner[node.name])
            if edge[0] != edge[1] and edge not in seen:
                seen.add(edge)
                drawing.edges.append((*edge, False))
    drawing.output = owner.get(plan.output, INPUT)
    return drawing


def _title(plan: Plan) -> str:
    title = plan.name + (f": {plan.description}" if plan.description else "")
    return f"{title}\n{fmt_shape(plan.input_shape)} -> {fmt_shape(plan.output_shape)}, " \
           f"{plan.total_params:,} params, {human(plan.macs)} MACs"


def drawing(plan: Plan, level: str = "layer") -> Drawing:
    return stage_drawing(plan) if level == "stage" else layer_drawing(plan)


def _cluster_items(d: Drawing) -> dict[str, list[tuple[bool, str]]]:
    """Cluster path -> its layers and sub-clusters, (is_cluster, id), in the order the spec writes them ("" is
    the root). Graphviz places what comes first to the left, so this order keeps branches as written."""
    items: dict[str, list[tuple[bool, str]]] = {"": []}
    for node_id, *_ in d.nodes[1:]:
        parts = node_id.split(".")
        for depth in range(1, len(parts)):
            here, parent = ".".join(parts[:depth]), ".".join(parts[: depth - 1])
            if here not in items:
                items[here] = []
                items[parent].append((True, here))
        items[".".join(parts[:-1])].append((False, node_id))
    return items


def _boxed(items: dict[str, list[tuple[bool, str]]], path: str) -> bool:
    """A cluster is drawn as a box when it is a stage (a name of the paper's table, even of one layer) or holds
    more than one thing (a one-layer box deeper down only adds clutter)."""
    return bool(path) and ("." not in path or len(items.get(path, [])) > 1)


def cluster_label(path: str) -> str:
    """A box's name: a stage's own; a numbered block call says which of its stage's blocks it is
    (`conv3_x.0` -> `conv3_x block 1`); a named part keeps its name (`shortcut`, `branch2`)."""
    parts = path.split(".")
    own = parts[-1]
    if own.isdigit() and len(parts) > 1:
        return f"{parts[-2]} block {int(own) + 1}"
    return own


def _nodes_in_clusters(d: Drawing, level: str, out: list[str], node_line, open_cluster, close_cluster,
                       first: dict[str, list[str]] | None = None) -> None:
    """The node lines, nested in the boxes of their stages and block calls (DOT and Mermaid alike); `first`:
    lines written first in a scope's box (or where its layers go when it has none)."""
    items = _cluster_items(d)
    first = first or {}

    def emit(path: str, indent: str) -> None:
        boxed = _boxed(items, path)
        inner = indent + "  " if boxed else indent
        if boxed:
            out.extend(open_cluster(path, indent))
        out.extend(inner + line for line in first.get(path, []))
        for is_cluster, item in items.get(path, []):
            if is_cluster:
                emit(item, inner)
            else:
                out.append(node_line(item, inner))
        if boxed:
            out.append(close_cluster(indent))

    out.append(node_line(INPUT, "  "))
    if level == "stage":
        for node_id, *_ in d.nodes[1:]:
            out.append(node_line(node_id, "  "))
    else:
        emit("", "  ")


# ---------------------------------------------------------------- DOT


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(plan: Plan, level: str = "layer", direction: str = "TB") -> str:
    d = drawing(plan, level)
    out = [
        f"digraph {_dot_quote(plan.name)} {{",
        # newrank: ranks assigned over the whole graph, boxes included (what _order_guides relies on)
        f"  graph [rankdir={direction}, label={_dot_quote(d.title)}, labelloc=t, fontname=Helvetica, "
        "fontsize=14, nodesep=0.25, ranksep=0.3, newrank=true];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10, margin="0.12,0.04"];',
        "  edge [arrowsize=0.6, color=\"#555555\"];",
    ]
    nodes = {n[0]: n for n in d.nodes}

    def node_line(node_id: str, indent: str) -> str:
        _, lines, fill, shape = nodes[node_id]
        extra = ", penwidth=2" if node_id == d.output else ""
        return f"{indent}{_dot_quote(node_id)} [label={_dot_quote(chr(10).join(lines))}, " \
               f"tooltip={_dot_quote(node_id)}, fillcolor=\"{fill}\", shape={shape}{extra}];"

    def open_cluster(path: str, indent: str) -> list[str]:
        return [f"{indent}subgraph {_dot_quote('cluster_' + path)} {{",
                f"{indent}  label={_dot_quote(cluster_label(path))}; "
                f"style=\"rounded,dashed\"; color=\"#999999\"; fontsize=11;"]

    guides, guide_edges = _order_guides(d)
    _nodes_in_clusters(d, level, out, node_line, open_cluster, lambda indent: f"{indent}}}", guides)
    for src, dst, skip in d.edges:
        style = ' [style=dashed, color="#888888"]' if skip else ""
        out.append(f"  {_dot_quote(src)} -> {_dot_quote(dst)}{style};")
    out.extend(guide_edges)
    out.append("}")
    return "\n".join(out) + "\n"


def _order_guides(d: Drawing) -> tuple[dict[str, list[str]], list[str]]:
    """What keeps parallel branches left to right in the spec's order in dot: per merge, an invisible point in
    the merge's box, below the common input, with an edge to each branch's first layers in order.

    `ordering=out` cannot do it: dot orders only edges inside one box (the branches are boxes of their own, and
    their common input is in the box of the stage before), and it may swap whole boxes while it removes
    crossings, so the branches came out in any order (3, 2, 4, 1 in GoogLeNet). Laid out with `newrank`, each box
    starts from the nodes no edge in the box enters, in the order of its node list, which dot walked backwards
    before Graphviz 2.44 (the branches came out reversed) and forwards since: a single such node, this point,
    makes both follow its edges' order. It costs one thin row above each merge's branches."""
    guides: dict[str, list[str]] = {}
    edges: list[str] = []
    for order in d.orders:
        own = order.merge.rpartition(".")[2]
        guide = _dot_quote(f"{order.scope}.(order of {own})" if order.scope else f"(order of {own})")
        guides.setdefault(order.scope, []).append(f"{guide} [shape=point, style=invis, width=0, height=0, "
                                                   'label=""];')
        edges.append(f"  {_dot_quote(order.fork)} -> {guide} [style=invis];")
        edges.extend(f"  {guide} -> {_dot_quote(head)} [style=invis];" for heads in order.heads for head in heads)
    return guides, edges


# ---------------------------------------------------------------- Mermaid


def _mermaid_text(text: str) -> str:
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(plan: Plan, level: str = "layer", direction: str = "TB") -> str:
    d = drawing(plan, level)
    ids = {node[0]: f"n{i}" for i, node in enumerate(d.nodes)}
    nodes = {n[0]: n for n in d.nodes}
    title = json.dumps(d.title.splitlines()[0])  # a JSON string is a YAML string: the title may hold `: `
    out = [f"---\ntitle: {title}\n---", f"flowchart {direction}"]

    def node_line(node_id: str, indent: str) -> str:
        _, lines, fill, shape = nodes[node_id]
        label = "<br/>".join(_mermaid_text(line) for line in lines)
        opened, closed = ("([", "])") if shape == "ellipse" else ("[", "]")
        return f"{indent}{ids[node_id]}{opened}\"{label}\"{closed}"

    cluster_ids: dict[str, str] = {}

    def open_cluster(path: str, indent: str) -> list[str]:
        cluster_ids[path] = f"c{len(cluster_ids)}"
        return [f"{indent}subgraph {cluster_ids[path]}[\"{_mermaid_text(cluster_label(path))}\"]"]

    _nodes_in_clusters(d, level, out, node_line, open_cluster, lambda indent: f"{indent}end")
    for src, dst, skip in d.edges:
        out.append(f"  {ids[src]} {'-.->' if skip else '-->'} {ids[dst]}")
    fills: dict[str, list[str]] = {}
    for node_id, _, fill, _ in d.nodes:
        fills.setdefault(fill, []).append(ids[node_id])
    for number, (fill, members) in enumerate(sorted(fills.items())):
        out.append(f"  classDef k{number} fill:{fill},stroke:#555555")
        out.append(f"  class {','.join(members)} k{number}")
    if d.output is not None:
        out.append(f"  style {ids[d.output]} stroke-width:3px")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- rendering with Graphviz


GRAPHVIZ_HELP = ("install Graphviz, which provides `dot`: `apt-get install graphviz` (Debian, Ubuntu), "
                 "`brew install graphviz` (macOS), `conda install graphviz`; or write `--format dot` or "
                 "`--format mermaid`, which need nothing")


def render(dot_text: str, fmt: str) -> bytes:
    """DOT text -> SVG or PNG bytes through Graphviz's `dot` (found on PATH by the `graphviz` package)."""
    try:
        import graphviz
    except ImportError:
        from .codes import install_hint

        raise ArchcError([Diagnostic("A403", f"drawing {fmt.upper()} needs the `graphviz` Python package", None,
                                     help=install_hint("graph") + "; and " + GRAPHVIZ_HELP)]) from None
    try:
        return graphviz.Source(dot_text).pipe(format=fmt, engine="dot")
    except graphviz.ExecutableNotFound:
        raise ArchcError([Diagnostic("A421", f"drawing {fmt.upper()} needs Graphviz's `dot` program, which is "
                                     "not on PATH", None, help=GRAPHVIZ_HELP)]) from None
    except graphviz.CalledProcessError as e:  # pragma: no cover - archc writes the DOT; a failure is a bug
        raise RuntimeError(f"dot failed: {e.stderr!r}") from None


def have_dot() -> bool:
    import shutil

    return shutil.which("dot") is not None


def picture(plan: Plan, fmt: str, level: str = "layer", direction: str = "TB") -> bytes:
    """The picture of `plan` in `fmt` (dot, mermaid, svg, png)."""
    if direction == "LR" and level == "layer" and len(plan.nodes) > MAX_LR_NODES:
        raise ArchcError([Diagnostic("A420", f"`{plan.name}` has {len(plan.nodes):,} layers, too many to draw left "
                                     f"to right (at most {MAX_LR_NODES}): the picture would be unreadably wide",
                                     None, help="draw it top to bottom (leave out `--direction LR`), or one node "
                                     "per stage with `--level stage`")])
    if fmt == "mermaid":
        return to_mermaid(plan, level, direction).encode("utf-8")
    dot_text = to_dot(plan, level, direction)
    if fmt == "dot":
        return dot_text.encode("utf-8")
    return render(dot_text, fmt)


# ---------------------------------------------------------------- SVG without Graphviz


def to_svg(plan: Plan, level: str = "layer") -> str:
    """A plain SVG of the drawing, laid out here (no Graphviz): the pages of `archc report` always have a
    picture. Layers sit in rows by their depth from the input, side by side in the spec's order (branches
    left to right as written); stages are boxes with their names; skip connections bow out to the right."""
    d = drawing(plan, level)
    page = _SvgPage(d)
    out = page.header()
    if level == "layer":  # a box per stage (the first part of the layer names), named at its top left
        out += page.stage_frames()
    out += [page.edge(src, dst, skip) for src, dst, skip in d.edges]
    out += [page.node(node_id) for node_id in page.box]
    out.append("</svg>")
    return "\n".join(out) + "\n"


class _SvgPage:
    """Where each node of a drawing sits on the page (rows by depth from the input), and the SVG of each part."""

    CHAR_W, LINE_H, PAD, GAP_X, GAP_Y, MARGIN = 6.6, 14, 8, 18, 26, 20
    SKIP_ROOM = 60  # on the right, for the skip curves

    def __init__(self, d: Drawing):
        self.d = d
        self.info = {n[0]: n for n in d.nodes}
        self.rank = self._ranks()
        self.box: dict[str, tuple[float, float, float, float]] = {}  # x, y, w, h
        self.width, self.height = self._lay_out()

    def _ranks(self) -> dict[str, int]:
        """Each node's row: one below the deepest of its inputs."""
        rank: dict[str, int] = {INPUT: 0}
        inputs: dict[str, list[str]] = {}
        for src, dst, _ in self.d.edges:
            inputs.setdefault(dst, []).append(src)
        for node_id, *_ in self.d.nodes[1:]:
            rank[node_id] = 1 + max((rank[s] for s in inputs.get(node_id, []) if s in rank), default=0)
        return rank

    def _lay_out(self) -> tuple[float, float]:
        """Fill `box` row by row, each row centred; the page's width and the height its rows take."""
        rows: dict[int, list[str]] = {}
        for node_id, *_ in self.d.nodes:
            rows.setdefault(self.rank[node_id], []).append(node_id)
        size = {i: (max(len(t) for t in lines) * self.CHAR_W + 2 * self.PAD, len(lines) * self.LINE_H + self.PAD)
                for i, lines, *_ in self.d.nodes}
        widths = {r: sum(size[i][0] for i in ids) + self.GAP_X * (len(ids) - 1) for r, ids in rows.items()}
        width = max(widths.values()) + 2 * self.MARGIN + self.SKIP_ROOM
        y = self.MARGIN + self.LINE_H * len(self.d.title.splitlines()) + 10
        for r in sorted(rows):
            x = self.MARGIN + (width - self.SKIP_ROOM - 2 * self.MARGIN - widths[r]) / 2
            height = max(size[i][1] for i in rows[r])
            for node_id in rows[r]:
                w, h = size[node_id]
                self.box[node_id] = (x, y + (height - h) / 2, w, h)
                x += w + self.GAP_X
            y += height + self.GAP_Y
        return width, y

    def header(self) -> list[str]:
        from html import escape

        width, bottom = self.width, self.height + self.MARGIN
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{bottom:.0f}" '
               f'viewBox="0 0 {width:.0f} {bottom:.0f}" font-family="Helvetica, Arial, sans-serif" font-size="11">',
               '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" markerHeight="6" '
               'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#555555"/></marker></defs>']
        out += [f'<text x="{width / 2:.0f}" y="{self.MARGIN + self.LINE_H * k:.0f}" text-anchor="middle" '
                f'font-size="13">{escape(t)}</text>' for k, t in enumerate(self.d.title.splitlines(), 1)]
        return out

    def stage_frames(self) -> list[str]:
        """A dashed box around each stage's layers (those named `stage.`...), its name at the top left."""
        from html import escape

        stages: dict[str, list[str]] = {}
        for node_id, *_ in self.d.nodes[1:]:
            if "." in node_id:
                stages.setdefault(node_id.split(".")[0], []).append(node_id)
        out = []
        for name, members in stages.items():
            x0 = min(self.box[m][0] for m in members) - 6
            y0 = min(self.box[m][1] for m in members) - 16
            x1 = max(self.box[m][0] + self.box[m][2] for m in members) + 6
            y1 = max(self.box[m][1] + self.box[m][3] for m in members) + 6
            out.append(f'<g><rect x="{x0:.0f}" y="{y0:.0f}" width="{x1 - x0:.0f}" height="{y1 - y0:.0f}" rx="6" '
                       f'fill="none" stroke="#999999" stroke-dasharray="4 3"/><text x="{x0 + 6:.0f}" '
                       f'y="{y0 + 11:.0f}" fill="#555555">{escape(name)}</text></g>')
        return out

    def edge(self, src: str, dst: str, skip: bool) -> str:
        sx, sy, sw, sh = self.box[src]
        tx, ty, tw, _ = self.box[dst]
        x1, y1, x2, y2 = sx + sw / 2, sy + sh, tx + tw / 2, ty
        if self.rank[dst] - self.rank[src] > 1:  # around the layers in between, on the right
            bow = max(sx + sw, tx + tw) + 30 - min(x1, x2)
            path = f"M{x1:.0f},{y1:.0f} C{x1 + bow:.0f},{y1 + 20:.0f} {x2 + bow:.0f},{y2 - 20:.0f} {x2:.0f},{y2:.0f}"
        else:
            path = f"M{x1:.0f},{y1:.0f} L{x2:.0f},{y2:.0f}"
        dash = ' stroke-dasharray="5 3"' if skip else ""
        return f'<path d="{path}" fill="none" stroke="#555555"{dash} marker-end="url(#arrow)"/>'

    def node(self, node_id: str) -> str:
        from html import escape

        x, top, w, h = self.box[node_id]
        _, lines, fill, shape = self.info[node_id]
        stroke = ' stroke-width="2"' if node_id == self.d.output else ""
        if shape == "ellipse":
            body = f'<ellipse cx="{x + w / 2:.0f}" cy="{top + h / 2:.0f}" rx="{w / 2:.0f}" ry="{h / 2:.0f}" '
        else:
            body = f'<rect x="{x:.0f}" y="{top:.0f}" width="{w:.0f}" height="{h:.0f}" rx="5" '
        text = "".join(f'<text x="{x + w / 2:.0f}" y="{top + self.PAD / 2 + self.LINE_H * (k + 1) - 3:.0f}" '
                       f'text-anchor="middle">{escape(t)}</text>' for k, t in enumerate(lines))
        return f"<g><title>{escape(node_id)}</title>{body}fill=\"{fill}\" stroke=\"#555555\"{stroke}/>{text}</g>"
