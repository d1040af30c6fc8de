"""The generated parts of docs/language.md, and the runner of its examples.

    python tests/docgen.py            # rewrite the generated sections and example outputs in place
    python tests/docgen.py --check    # exit 1 if the document is stale (tests/test_docs.py does this too)

Generated, so they cannot drift: the layer-kind reference (arguments, defaults, flags, aliases, rules in words
and worked examples, all from each kind's entry in archc/ops.py, the rows computed by inference), the limits
(from the constants that enforce them), the layer listings under ```arch show=layers examples, and the
diagnostic printed under each
```arch error=CODE example (run through the CLI as a user would).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
sys.path.insert(0, str(ROOT))

from archc.ops import ALIASES, OPS, POST_OPS, fmt_shape  # noqa: E402

_TYPES = {  # argument types whose annotation reads badly in a table
    "padding": "`same`, `valid`, `p`, `(ph, pw)` or `(top, bottom, left, right)`",
    "filters": "int (default: depthwise needs none)",
}


def _type(key: str, annotation) -> str:
    if key in _TYPES:
        return _TYPES[key]
    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    text = text.replace("tuple[int, int] | None", "int or HxW (default: the kernel)")
    return text.replace("tuple[int, int]", "int or HxW").replace(" | ", " or ")


def op_reference() -> str:
    import archc

    lines = ["| kind | also | summary |", "| --- | --- | --- |"]
    for name, op in OPS.items():
        aliases = ", ".join(f"`{a}`" for a, target in ALIASES.items() if target == name)
        lines.append(f"| [`{name}`](#{name}) | {aliases} | {op.summary} |")
    lines.append("")
    for name, op in OPS.items():
        lines += [f"### {name}", "", op.summary[0].upper() + op.summary[1:] + ".", ""]
        facts = []
        if op.positional:
            facts.append("positional arguments, in order: " + ", ".join(f"`{p}`" for p in op.positional))
        if op.flags:
            facts.append("flags: " + ", ".join(f"`{w}` (`{k}={_show(v)}`)" for w, (k, v) in op.flags.items()))
        for word in sorted(w for w in POST_OPS if ALIASES.get(w, w) == name):
            facts.append(f"may trail another layer's arguments: `conv 3x3, 64, {word}`")
        if op.inputs == "many":
            facts.append(f"merges several inputs; written `residual {name}:` over a body or `{name}:` over one "
                         "branch a line, not as a layer line")
        facts.append(f"default name in its scope: `{op.prefix}` (`{op.prefix}1`, `{op.prefix}2`, ... when repeated)")
        lines += [f"- {f}" for f in facts]
        fields = op.args.model_fields
        if fields:
            lines += ["", "| argument | type | default |", "| --- | --- | --- |"]
            for key, info in fields.items():
                default = "required" if info.is_required() else \
                    "—" if info.default is None else f"`{_show(info.default)}`"
                lines.append(f"| `{key}` | {_type(key, info.annotation)} | {default} |")
        lines += ["", f"Shape: {op.shape_rule}. Parameters: {op.param_rule}.", ""]
        rows = op.examples
        if rows:
            lines += ["| spec line | input | output | parameters (trainable + non-trainable) | MACs |",
                      "| --- | --- | --- | --- | --- |"]
            for text, size in rows:
                plan = archc.check(f"input {size}\n{text}\n")
                node = plan.nodes[0]
                lines.append(f"| `{text}` | {size} | {fmt_shape(node.shape)} | {node.trainable:,} + "
                             f"{node.non_trainable:,} | {node.macs:,} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return fmt_shape(value) if len(value) > 1 else str(value[0])
    return str(value)


def _codes(codes: str) -> str:
    return ", ".join(f"[{c}](#{c.lower()})" for c in codes.split(", ")) if codes else ""


def limits() -> str:
    from archc.backends.base import MAX_ONNX_PARAMS
    from archc.cli import MAX_BUILD_PARAMS
    from archc.diagnostics import MAX_SHOWN_LINE, MAX_SUGGESTION_CANDIDATES
    from archc.exprs import MAX_ROUND_DIGITS
    from archc.graph import MAX_DRAWN_NODES, MAX_DRAWN_STAGES
    from archc.infer import MAX_CALL_DEPTH, MAX_LAYERS
    from archc.loader import MAX_IMPORT_DEPTH, MAX_NAME_LENGTH, MAX_SPEC_BYTES, MAX_TOTAL_BYTES
    from archc.ops import MAX_DIM, MAX_ELEMENTS, MAX_LRN_SIZE, MAX_REAL, MIN_EPSILON
    from archc.report import MAX_GRAPHVIZ_NODES

    rows = [
        ("size of a spec file", f"{MAX_SPEC_BYTES:,} bytes", "A301", "refused before it is read"),
        ("size of a spec from standard input (`-`) or as text", f"{MAX_SPEC_BYTES:,} bytes", "A301",
         "refused after reading one byte more"),
        ("size of a spec and every file it imports, together", f"{MAX_TOTAL_BYTES:,} bytes", "A301",
         "each file counted once"),
        ("files importing files", f"{MAX_IMPORT_DEPTH}", "A301", ""),
        ("length of a block name", f"{MAX_NAME_LENGTH} characters", "A301", ""),
        ("layers after expansion", f"{MAX_LAYERS:,}", "A301", "`--max-layers N`, `archc.check(..., max_layers=N)`"),
        ("nested block calls", f"{MAX_CALL_DEPTH}", "A301", ""),
        ("parameters `archc build` writes", f"{MAX_BUILD_PARAMS:,}", "A302", "`--max-params N`"),
        ("layers `archc graph` draws one node each", f"{MAX_DRAWN_NODES:,}", "A420", "`--level stage`"),
        ("a size (kernel, stride, dilation, padding, filters, units, a tensor's side)", f"{MAX_DIM:,}",
         "A104, A301", ""),
        ("values in one example's tensor (H x W x C)", f"{MAX_ELEMENTS:,}", "A301", ""),
        ("magnitude of a real argument (slopes, alpha, beta, k, epsilon)", f"{MAX_REAL:,.0f}", "A104", ""),
        ("least epsilon, lrn alpha, beta, k", f"{MIN_EPSILON:g}", "A104", ""),
        ("`lrn` size (odd)", f"{MAX_LRN_SIZE:,}", "A104", ""),
        ("digits of `round(x, n)`", f"-{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}", "A115", ""),
        ("parameters of an ONNX file (protobuf's 2 GiB)", f"{MAX_ONNX_PARAMS:,}", "A302",
         "`--backend torch` or `keras`"),
        ("rows a stage picture draws (the rest are one node)", f"{MAX_DRAWN_STAGES:,}", "", "drawn, and said"),
        ("nodes a report page draws with Graphviz", f"{MAX_GRAPHVIZ_NODES:,}", "", "archc's own SVG above"),
        ("characters of a source line a diagnostic shows", f"{MAX_SHOWN_LINE:,}", "", "a window around the caret"),
        ("names a did-you-mean scores", f"{MAX_SUGGESTION_CANDIDATES:,}", "", "those sharing the longest start or end"),
    ]
    lines = ["| limit | value | diagnostic | raised by |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {_codes(c)} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- examples


@dataclass
class Example:
    lang: str  # arch or json
    attrs: dict[str, str]
    code: str
    line: int  # where the block starts in the document
    output: str | None = None  # the ```text block right after it, if any
    output_span: tuple[int, int] | None = None  # character offsets of that block's body


_FENCE = re.compile(r"^```([a-z]+)([^\n]*)\n(.*?)^```\n", re.M | re.S)


def examples(text: str) -> list[Example]:
    found: list[Example] = []
    previous: Example | None = None
    previous_end = -1
    for m in _FENCE.finditer(text):
        lang, info, body = m.group(1), m.group(2).strip(), m.group(3)
        if lang == "text" and previous is not None and text[previous_end:m.start()].strip() == "":
            previous.output = body
            previous.output_span = (m.start(3), m.end(3))
            previous = None
            continue
        previous = None
        if lang in ("arch", "json"):
            attrs = {k: a or b for k, a, b in re.findall(r'(\w+)=(?:"([^"]*)"|(\S+))', info)}
            previous = Example(lang, attrs, body, text.count("\n", 0, m.start()) + 1)
            found.append(previous)
            previous_end = m.end()
    return found


def run_example(example: Example) -> tuple[int, str]:
    """Run an example as a user would, in a scratch directory holding it and the shipped blocks.arch.
    -> (exit status, what archc printed, or the generated listing for show=layers)."""
    from click.testing import CliRunner

    import archc
    from archc.cli import main

    name = "example." + example.lang
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "specs" / "blocks.arch", Path(tmp) / "blocks.arch")
        (Path(tmp) / name).write_text(example.code, encoding="utf-8")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            if example.attrs.get("show") == "layers":
                plan = archc.check(name)
                rows = [(n.name, n.opdef.label(n.args), fmt_shape(n.shape), f"{n.params:,}") for n in plan.nodes]
                widths = [max(len(r[i]) for r in rows) for i in range(3)]
                listing = "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}".rstrip()
                                    for a, b, c, d in rows)
                return 0, listing + "\n"
            command = example.attrs.get("command", "check {file}").format(file=name)
            result = CliRunner().invoke(main, shlex.split(command), prog_name="archc",
                                       env={"NO_COLOR": "1", "COLUMNS": "120"})
            return result.exit_code, result.output
        finally:
            os.chdir(cwd)


def regenerate(text: str) -> str:
    """The document with every generated part brought up to date."""
    for marker, content in (("ops", op_reference()), ("limits", limits())):
        pattern = re.compile(rf"(<!-- generated:{marker} -->\n).*?(<!-- /generated:{marker} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"docs/language.md has no generated:{marker} section")
        text = pattern.sub(lambda m, c=content: m.group(1) + "\n" + c + "\n" + m.group(2), text)
    # outputs of examples, last first so that earlier offsets stay valid
    for example in reversed(examples(text)):
        wants = "error" in example.attrs or example.attrs.get("show") == "layers"
        if not wants or example.output_span is None:
            continue
        _, output = run_example(example)
        start, end = example.output_span
        text = text[:start] + output + text[end:]
    return text


if __name__ == "__main__":
    current = DOC.read_text(encoding="utf-8")
    fresh = regenerate(current)
    if "--check" in sys.argv:
        sys.exit(0 if fresh == current else 1)
    DOC.write_text(fresh, encoding="utf-8")
    print("docs/language.md is up to date" if fresh == current else "docs/language.md regenerated")
