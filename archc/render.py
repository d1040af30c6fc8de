"""Tables for people: the `check` table that mirrors the paper's, and `archc list`.

Plain aligned columns rather than rich's tables: rich costs ~30 ms to import, a third of the
100 ms budget `archc check` has above the interpreter's own start-up (benchmarks/bench_check.py).
"""

from __future__ import annotations

from .ops import fmt_shape
from .plan import Plan, PlanNode


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
    """A short stage reads as its layers (`2 x conv 3x3 same, 64; maxpool 2x2/2`), a long one as the
    spec's row (`maxpool, bottleneck x 3 (33 layers)`)."""
    if len(nodes) == 1:
        return nodes[0].opdef.label(nodes[0].args)
    runs: list[list] = []  # consecutive equal layers, activations and batchnorm left out: [label, count]
    for n in nodes:
        if n.opdef.activation or n.op == "batchnorm":
            continue
        label = n.opdef.label(n.args)
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    if len(runs) <= 3:
        return "; ".join(label if count == 1 else f"{count} x {label}" for label, count in runs)
    summary = plan.stage_summaries.get(key) or ", ".join(dict.fromkeys(n.op for n in nodes))
    return f"{summary} ({len(nodes)} layers)"


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
