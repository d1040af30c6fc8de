"""Tables for people: the `check` table that mirrors the paper's, and `archc list`."""

from __future__ import annotations

from collections import Counter

from .ops import fmt_shape
from .plan import Plan, PlanNode


def human(n: int) -> str:
    """3857973248 -> 3.86G: MACs the way the papers write them."""
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit}" if n < 100 * size else f"{n / size:.0f}{unit}"
    return str(n)


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _stage_summary(nodes: list[PlanNode]) -> str:
    """A short stage reads as its layers (`conv 3x3 same, 64; maxpool 2x2`), a long one as counts."""
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
    counts = Counter(n.op for n in nodes)
    parts = [f"{counts[op]} {op}" for op in ("conv", "dense") if counts[op]]
    return f"{len(nodes)} layers" + (f" ({', '.join(parts)})" if parts else "")


def table_rows(plan: Plan, level: str) -> list[tuple[str, str, str, str, str]]:
    rows = []
    if level == "stage":
        for key, nodes in plan.stages():
            rows.append((key, _stage_summary(nodes), fmt_shape(nodes[-1].shape),
                         f"{sum(n.params for n in nodes):,}", human(sum(n.macs for n in nodes))))
    else:
        for n in plan.nodes:
            rows.append((n.name, n.opdef.label(n.args), fmt_shape(n.shape), f"{n.params:,}", human(n.macs)))
    return rows


def print_table(plan: Plan, level: str) -> None:
    from rich.table import Table

    title = f"{plan.name}" + (f" — {plan.description}" if plan.description else "")
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("stage" if level == "stage" else "layer")
    table.add_column("layers" if level == "stage" else "kind")
    table.add_column("output", justify="right")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_row("input", "", fmt_shape(plan.input_shape), "", "")
    for row in table_rows(plan, level):
        table.add_row(*row)
    console = _console()
    console.print(table)
    console.print(totals(plan))


def totals(plan: Plan) -> str:
    """The line under the `check` table."""
    return (f"total params {plan.total_params:,} (trainable {plan.trainable_params:,}, non-trainable "
            f"{plan.non_trainable_params:,}); MACs {plan.macs:,} ({human(plan.macs)}); {len(plan.nodes)} layers")


def markdown_table(plan: Plan, level: str) -> str:
    """The `check` table as Markdown (the same rows and totals as the terminal's), for generated docs."""
    lines = [f"| {'stage' if level == 'stage' else 'layer'} | {'layers' if level == 'stage' else 'kind'} "
             "| output | params | MACs |", "|---|---|--:|--:|--:|",
             f"| input | | {fmt_shape(plan.input_shape)} | | |"]
    for row in table_rows(plan, level):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n\n" + totals(plan) + "\n"


def print_list(rows: list[tuple[str, Plan | str]]) -> None:
    """One row per spec: its description, parameters and MACs, or (a string) why it does not check."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(header_style="bold")
    for column, justify in (("spec", "left"), ("description", "left"), ("params", "right"), ("MACs", "right")):
        table.add_column(column, justify=justify)
    for stem, plan in rows:  # escape: descriptions and messages are text, not rich markup (`error[A201]`)
        if isinstance(plan, str):
            table.add_row(escape(stem), escape(plan), "", "")
        else:
            table.add_row(escape(stem), escape(plan.description or ""), f"{plan.total_params:,}", human(plan.macs))
    _console().print(table)
