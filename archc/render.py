"""Tables for people: the `check` table that mirrors the paper's, and `archc list`.

Plain aligned columns rather than rich's tables: rich costs ~30 ms to import, a third of the
100 ms budget `archc check` has above the interpreter's own start-up (benchmarks/bench_check.py).
"""

from __future__ import annotations

from .binding import bind_call
from .diagnostics import RuleError
from .exprs import Unknown, evaluate
from .ops import fmt_shape
from .plan import Plan, PlanNode, StageSource


def human(n: int) -> str:
    """3857973248 -> 3.86G: MACs the way the papers write them."""
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit}" if n < 100 * size else f"{n / size:.0f}{unit}"
    return str(n)


def grid(header: list[str], rows: list[list[str]], right: set[int] = frozenset(), bold: bool = False) -> str:
    """Columns padded to their widest cell, a rule under the header; `right` columns are right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    head = line(header)
    out = [f"\x1b[1m{head}\x1b[0m" if bold else head, "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def stage_summary(plan: Plan, key: str, nodes: list[PlanNode]) -> str:
    """A stage's row, the same in the table, the JSON and the pictures. A short stage reads as its layers
    (`2 x conv 3x3 same, 64; maxpool 2x2/2`), a long one as the spec's row (`maxpool, bottleneck x 3 (33 layers)`)."""
    if len(nodes) == 1:
        return nodes[0].opdef.label(nodes[0].args)
    runs: list[list] = []  # consecutive equal layers, activations and normalisations left out: [label, count]
    shown = [n for n in nodes if not (n.opdef.activation or n.opdef.normalizes)] or nodes  # all: nothing else
    for n in shown:
        label = n.opdef.label(n.args)
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    if len(runs) <= 3:
        return "; ".join(label if count == 1 else f"{count} x {label}" for label, count in runs)
    source = plan.stage_sources.get(key)
    summary = spec_row(plan, source) if source else ", ".join(dict.fromkeys(n.op for n in nodes))
    return f"{summary} ({len(nodes)} layers)"


MAX_ROW_PARTS = 8  # a spec row longer than this is cut with `...`: nobody reads more in a table cell
MAX_WRAPPER_DEPTH = 8  # how deep a row looks through blocks made only of block calls


def spec_row(plan: Plan, source: StageSource) -> str:
    """A stage's row as the paper's table writes it: `maxpool, bottleneck x 3`. A stage that is one call of a
    block made of block calls (`bottleneck_stage(512, 3)`) reads as that block's body.

    Counted, not enumerated: a wrapper's row is computed once per block and arguments and its runs are added
    up, so wrappers that call wrappers ten times over eight levels (10^8 calls) cost a few dozen steps."""
    parts, cut = _row_parts(plan, source.items, source.env, 0, {})
    text = ", ".join(word if count == 1 else f"{word} x {count}" for word, count in parts)
    return text + (", ..." if cut else "")


def _row_parts(plan: Plan, items: list, env: dict, depth: int, memo: dict) -> tuple[list[list], bool]:
    """-> ([[word, count], ...] with equal neighbours merged, whether it was cut at MAX_ROW_PARTS)."""
    parts: list[list] = []
    for item in items:
        inner = _wrapper_body(plan, item, env, depth)
        if inner is not None:
            block, bound = inner
            key = (block.name, tuple(sorted(bound.items(), key=lambda kv: kv[0])))
            if key not in memo:
                memo[key] = _row_parts(plan, block.body, dict(plan.globals, **bound), depth + 1, memo)
            sub, cut = memo[key]
        else:
            sub, cut = [_row_part(item, env)], False
        for word, count in sub:
            if parts and parts[-1][0] == word and isinstance(count, int) and isinstance(parts[-1][1], int):
                parts[-1][1] += count
            else:
                parts.append([word, count])
        if cut or len(parts) > MAX_ROW_PARTS:
            return parts[:MAX_ROW_PARTS], True
    return parts, False


def _row_part(item, env: dict) -> list:
    word = {"layer": getattr(item, "op", ""), "call": getattr(item, "block", ""), "group": "(...)",
            "residual": "residual", "branches": getattr(item, "merge", ""), "scope": getattr(item, "name", "")
            }[item.kind]
    try:
        count = evaluate(item.repeat, env) if getattr(item, "repeat", None) is not None else 1
    except (RuleError, Unknown):
        count = "n"
    return [word, count]


def _wrapper_body(plan: Plan, item, env: dict, depth: int):
    """(block, bound arguments) when `item` is one call of a block made only of block calls, else None."""
    block = plan.blocks.get(item.block) if item.kind == "call" and item.repeat is None else None
    if block is None or depth >= MAX_WRAPPER_DEPTH or not block.body or any(i.kind != "call" for i in block.body):
        return None
    try:
        bound = bind_call(block, item, env, plan.globals)
    except (RuleError, Unknown):
        return None
    try:
        hash(tuple(bound.values()))
    except TypeError:
        return None
    return block, bound


def plan_json(plan: Plan) -> dict:
    """The `check --format json` object: a contract other tools read (keys only ever get added)."""
    layers = [
        {
            "name": n.name,
            "op": n.op,
            "stage": n.stage,
            "inputs": list(n.inputs),
            "shape": list(n.shape),
            "params": n.params,
            "trainable_params": n.trainable,
            "non_trainable_params": n.non_trainable,
            "macs": n.macs,
            "args": n.args.model_dump(mode="json"),
            "span": {"file": n.span.file, "line": n.span.line, "column": n.span.column} if n.span else None,
        }
        for n in plan.nodes
    ]
    return {
        "name": plan.name,
        "description": plan.description,
        "file": plan.file,
        "input": list(plan.input_shape),
        "output": list(plan.output_shape),
        "params": plan.total_params,
        "trainable_params": plan.trainable_params,
        "non_trainable_params": plan.non_trainable_params,
        "macs": plan.macs,
        "layers": layers,
        "stages": [
            {
                "name": key,
                "summary": stage_summary(plan, key, nodes),
                "shape": list(nodes[-1].shape),
                "params": sum(n.params for n in nodes),
                "macs": sum(n.macs for n in nodes),
                "layers": [n.name for n in nodes],
            }
            for key, nodes in plan.stages()
        ],
    }


def table_rows(plan: Plan, level: str) -> list[list[str]]:
    rows = [["input", "", fmt_shape(plan.input_shape), "", ""]]
    if level == "stage":
        for key, nodes in plan.stages():
            rows.append([key, stage_summary(plan, key, nodes), fmt_shape(nodes[-1].shape),
                         f"{sum(n.params for n in nodes):,}", human(sum(n.macs for n in nodes))])
    else:
        for n in plan.nodes:
            rows.append([n.name, n.opdef.label(n.args), fmt_shape(n.shape), f"{n.params:,}", human(n.macs)])
    return rows


def totals(plan: Plan) -> str:
    """The line under the `check` table."""
    return (f"total params {plan.total_params:,} (trainable {plan.trainable_params:,}, non-trainable "
            f"{plan.non_trainable_params:,}); MACs {plan.macs:,} ({human(plan.macs)}); {len(plan.nodes)} layers")


def _header(level: str) -> list[str]:
    return ["stage" if level == "stage" else "layer", "layers" if level == "stage" else "kind", "output", "params",
            "MACs"]


def check_table(plan: Plan, level: str, bold: bool = False) -> str:
    """The `archc check` report of one spec: title, table, totals."""
    title = plan.name + (f" - {plan.description}" if plan.description else "")
    table = grid(_header(level), table_rows(plan, level), right={2, 3, 4}, bold=bold)
    return "\n".join([title, "", table, "", totals(plan), ""])


def markdown_table(plan: Plan, level: str) -> str:
    """The `check` table as Markdown (the same rows and totals as the terminal's), for generated docs."""
    lines = ["| " + " | ".join(_header(level)) + " |", "|---|---|--:|--:|--:|"]
    for row in table_rows(plan, level):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n\n" + totals(plan) + "\n"


def list_table(rows: list[tuple[str, Plan | str]], bold: bool = False) -> str:
    """One row per spec: its description, parameters and MACs, or (a string) why it does not check."""
    body = [[stem, plan, "", ""] if isinstance(plan, str)
            else [stem, plan.description or "", f"{plan.total_params:,}", human(plan.macs)] for stem, plan in rows]
    return grid(["spec", "description", "params", "MACs"], body, right={2, 3}, bold=bold)
