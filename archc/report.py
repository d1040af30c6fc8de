"""One self-contained HTML page per spec: the totals, the picture and the table (`archc check --format html`,
`archc report`). Self-contained: inline CSS and an inline SVG, no script and nothing fetched. The picture is
Graphviz's SVG when Graphviz (its `dot` program and the `graphviz` package) works; otherwise archc's own
plain SVG (archc.graph.to_svg), so a page never needs anything installed."""

from __future__ import annotations

import html
import re

from .ops import fmt_shape
from .plan import Plan
from .render import human, table_rows

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .description { color: #555; margin-top: 0; }
.totals { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1.5rem 0; }
.totals div { background: #f4f6f8; border-radius: 6px; padding: 0.6rem 1rem; }
.totals b { display: block; font-size: 1.3rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 1rem 0; }
th, td { padding: 0.25rem 0.8rem; border-bottom: 1px solid #e3e3e3; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f6f8; } code, pre { font-family: Menlo, Consolas, monospace; font-size: 0.85rem; }
.picture { overflow: auto; border: 1px solid #e3e3e3; border-radius: 6px; padding: 0.5rem; margin: 1rem 0; }
.picture svg { max-width: 100%; height: auto; }
pre { background: #f7f7f7; padding: 0.8rem; overflow: auto; }
details { margin: 1rem 0; } summary { cursor: pointer; font-weight: 600; }
"""


def _table(plan: Plan, level: str) -> str:
    head = ("stage", "layers") if level == "stage" else ("layer", "kind")
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head)
           + '<th class="num">output</th><th class="num">params</th><th class="num">MACs</th></tr>']
    for name, kind, shape, params, macs in table_rows(plan, level):
        out.append(f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(kind)}</td>"
                   f'<td class="num">{shape}</td><td class="num">{params}</td><td class="num">{macs}</td></tr>')
    out.append("</table>")
    return "\n".join(out)


MAX_GRAPHVIZ_NODES = 1_000  # a page's picture of more nodes is archc's own SVG (a 4,990-branch concat: dot took
# minutes)


def _svg(plan: Plan, level: str) -> str | None:
    """Graphviz's SVG, or None where Graphviz cannot draw it: `dot` missing, the `graphviz` package missing
    (either alone happens), or `dot` failing."""
    from .diagnostics import ArchcError
    from .graph import MAX_DRAWN_STAGES, have_dot, render, to_dot

    if not have_dot():
        return None
    drawn = len(plan.nodes) if level == "layer" else min(len(plan.stages()), MAX_DRAWN_STAGES)
    if drawn > MAX_GRAPHVIZ_NODES:  # dot's layout of thousands of nodes side by side takes minutes
        return None
    try:
        svg = render(to_dot(plan, level), "svg").decode("utf-8")
    except (ArchcError, RuntimeError, OSError):
        return None
    svg = re.sub(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", "", svg)  # inline: no XML prolog
    return re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)  # Graphviz's comments name its version and input


def _picture(plan: Plan, level: str) -> str:
    from .graph import MAX_DRAWN_NODES, to_svg

    if level == "layer" and len(plan.nodes) > MAX_DRAWN_NODES:
        return f"<p>{len(plan.nodes):,} layers are too many to draw one node each.</p>"
    svg = _svg(plan, level)
    if svg is None:
        svg = to_svg(plan, level)
    return f'<div class="picture">{svg}</div>'


def _shown_file(file: str | None) -> str | None:
    """The spec's file as the page shows it: its name only, so a page made on one machine names no folder of
    it (`/home/someone/...`)."""
    if not file:
        return None
    return file.replace("\\", "/").rsplit("/", 1)[-1]


def index_page(pages: list[tuple[str, Plan]]) -> str:
    """`archc report` of several specs: a page linking each spec's page, with its totals."""
    rows = "\n".join(
        f'<tr><td><a href="{html.escape(href)}"><code>{html.escape(plan.name)}</code></a></td>'
        f"<td>{html.escape(plan.description or '')}</td>"
        f'<td class="num">{fmt_shape(plan.input_shape)}</td><td class="num">{plan.total_params:,}</td>'
        f'<td class="num">{human(plan.macs)}</td></tr>'
        for href, plan in pages)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>archc report</title><style>{_CSS}</style></head><body>",
        "<h1>Networks</h1>",
        '<table><tr><th>network</th><th>description</th><th class="num">input</th><th class="num">parameters</th>'
        '<th class="num">MACs</th></tr>',
        rows, "</table>", "<footer><p>Written by archc.</p></footer>", "</body></html>"]) + "\n"


def html_report(plan: Plan) -> str:
    title = html.escape(plan.name)
    totals = [
        ("input → output", f"{fmt_shape(plan.input_shape)} → {fmt_shape(plan.output_shape)}"),
        ("parameters", f"{plan.total_params:,}"),
        ("trainable", f"{plan.trainable_params:,}"),
        ("non-trainable", f"{plan.non_trainable_params:,}"),
        ("MACs", f"{plan.macs:,} ({human(plan.macs)})"),
        ("layers", f"{len(plan.nodes):,}"),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title} — archc</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
    ]
    if plan.description:
        parts.append(f'<p class="description">{html.escape(plan.description)}</p>')
    if _shown_file(plan.file):
        parts.append(f"<p><code>{html.escape(_shown_file(plan.file))}</code></p>")
    parts.append('<div class="totals">' + "".join(f"<div>{k}<b>{v}</b></div>" for k, v in totals) + "</div>")
    parts += ["<h2>Stages</h2>", _picture(plan, "stage"), _table(plan, "stage"),
              "<details><summary>Every layer</summary>", _picture(plan, "layer"), _table(plan, "layer"),
              "</details>", "<footer><p>Written by archc.</p></footer>", "</body></html>"]
    return _SURROGATES.sub("\ufffd", "\n".join(parts) + "\n")


# A file name that is not UTF-8 reaches Python as lone surrogates (PEP 383), which no UTF-8 page can hold.
_SURROGATES = re.compile("[\ud800-\udfff]")
