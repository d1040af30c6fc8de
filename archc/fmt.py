"""Canonical `.arch` text: `archc fmt` (text -> text, comments kept) and `archc convert --to arch` (IR -> text).

One printer serves both. Given the source a spec was parsed from, the printer keeps the author's layout
decisions, read back from the IR's spans: the order of top-level statements, which items share a line
(`bn; relu; conv 1x1, 4*k`), which suites stay on their header's line, blank lines between paragraphs, and
every comment (reattached to the line it was written on, or put before the line that follows it).
Everything else is canonical: spacing, `x` for repetition, sizes as `3x3`, minimal parentheses, and
consecutive stage rows aligned into columns the way the paper's table is (names left, sizes centred):

    conv1   112x112 : conv 7x7, 64, stride=2, same, bn, relu
    conv2_x  56x56  : maxpool 3x3, stride=2, same; bottleneck(64) x 3

Without a source (a JSON spec) the layout is canonical too: one item a line in blocks, stage bodies on their
header's line when they fit. Either way the result parses back to the same IR (spans aside); `format_text`
checks that before it returns, so a printer bug can never rewrite a spec into a different network.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from . import ir
from .diagnostics import ArchcError, Diagnostic, source_lines

INDENT = "  "
INLINE_WIDTH = 100  # without a source, a stage body stays on its header's line up to this width

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_EXPR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
# Words the lexer reads as keywords wherever an expression may stand.
_EXPR_KEYWORDS = {"true", "false", "if", "else", "and", "or", "not"}
_COMPOUND = ("scope", "residual", "branches")

# Expression precedence, loosest first, as grammar.lark nests its rules.
_COND, _OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _UNARY, _ATOM = range(9)
_BINOP_LEVEL = {"or": _OR, "and": _AND, "+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "//": _PRODUCT,
                **{op: _COMPARE for op in ("==", "!=", "<", "<=", ">", ">=")}}


class Unwritable(Exception):
    """The IR holds something the text syntax cannot say (possible only for IR that did not come from text)."""


# ---------------------------------------------------------------- expressions


def expr(value: Any, level: int = _COND) -> str:
    """An expression's canonical text, parenthesised if it binds looser than `level` needs."""
    text, own = _expr(value)
    return f"({text})" if own < level else text


def _float(value: float) -> str:
    """The shorter of `0.75` and `1e-4`, as papers write their constants; both read back as `value`."""
    plain = repr(value)
    mantissa, _, exponent = f"{value:e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    scientific = f"{mantissa}e{int(exponent)}"
    if float(scientific) != value:
        return plain
    if "e" in plain:  # repr's own exponent form, `1e-06`: the papers' `1e-6`
        return scientific
    return scientific if len(scientific) + 1 < len(plain) else plain


def _expr(e: Any) -> tuple[str, int]:
    """(text, binding level) of an expression: a number, or an IR node written by its kind's writer."""
    if isinstance(e, bool):
        return ("true" if e else "false"), _ATOM
    if isinstance(e, int):
        return str(e), (_ATOM if e >= 0 else _UNARY)
    if isinstance(e, float):
        if not math.isfinite(e):
            raise Unwritable(f"the number {e} has no literal")
        return _float(e), (_ATOM if e >= 0 else _UNARY)
    writer = _WRITERS.get(e.kind)
    if writer is None:  # pragma: no cover - the IR's union is closed
        raise Unwritable(f"unknown expression kind `{e.kind}`")
    return writer(e)


def _name(e: ir.Name) -> tuple[str, int]:
    if not _NAME_EXPR.fullmatch(e.id) or e.id in _EXPR_KEYWORDS:
        raise Unwritable(f"`{e.id}` is not a name the text syntax can write")
    return e.id, _ATOM


def _dims(e: ir.Dims) -> tuple[str, int]:
    # `3x3`, `224x224x3` for sizes; a tuple for anything else, such as paddings `(1, 1, 0, 0)`
    literal = all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in e.dims)
    if literal and 2 <= len(e.dims) <= 3:
        return "x".join(str(d) for d in e.dims), _ATOM
    if len(e.dims) < 2:
        raise Unwritable("a size needs at least two dimensions")
    return "(" + ", ".join(expr(d) for d in e.dims) + ")", _ATOM


def _str(e: ir.Str) -> tuple[str, int]:
    if '"' in e.value or "\n" in e.value or "\r" in e.value:
        raise Unwritable("a string cannot hold a double quote or a line break")
    return f'"{e.value}"', _ATOM


def _binop(e: ir.BinOp) -> tuple[str, int]:
    level = _BINOP_LEVEL[e.op]
    if level == _COMPARE:  # comparisons do not chain: both sides are sums
        left, right = expr(e.left, _SUM), expr(e.right, _SUM)
    else:  # left-associative
        left, right = expr(e.left, level), expr(e.right, level + 1)
    if e.op == "*" and _coefficient(e.left) and _expr(e.right)[1] == _ATOM:
        return f"{left}*{right}", level  # `4*w`: a coefficient, as the papers write 4w
    return f"{left} {e.op} {right}", level


def _unary(e: ir.UnaryOp) -> tuple[str, int]:
    if e.op == "not":
        return f"not {expr(e.operand, _NOT)}", _NOT
    operand = expr(e.operand, _UNARY)
    return ("- " if operand.startswith("-") else "-") + operand, _UNARY


def _func(e: ir.Func) -> tuple[str, int]:
    if not _IDENT.fullmatch(e.func):
        raise Unwritable(f"`{e.func}` is not a function name")
    return f"{e.func}(" + ", ".join(expr(a) for a in e.args) + ")", _ATOM


_WRITERS = {
    "name": _name,
    "dims": _dims,
    "str": _str,
    "percent": lambda e: (_percent(e.value), _ATOM),
    "binop": _binop,
    "unary": _unary,
    "func": _func,
    "cond": lambda e: (f"{expr(e.then, _OR)} if {expr(e.test, _OR)} else {expr(e.orelse, _COND)}", _COND),
}


def _coefficient(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _percent(value: float) -> str:
    """The shortest `N%` whose value is exactly `value` (the parser divides the written number by 100)."""
    if math.isfinite(value) and value >= 0:
        for digits in range(0, 18):
            text = f"{value * 100:.{digits}f}"
            if float(text) / 100 == value:
                return text + "%"
    raise Unwritable(f"{value} cannot be written as a percentage")


def _ident(name: str, what: str) -> str:
    if not _IDENT.fullmatch(name):
        raise Unwritable(f"`{name}` is not a valid {what} name")
    return name


# ---------------------------------------------------------------- items


def item_text(it: Any) -> str:
    """One simple item (layer, call or group) with its repetition and expected size."""
    if it.kind == "layer":
        text = _ident(it.op, "layer kind") + (" " + ", ".join(_arg(a) for a in it.args) if it.args else "")
    elif it.kind == "call":
        text = _ident(it.block, "block") + "(" + ", ".join(_arg(a) for a in it.args) + ")"
    elif it.kind == "group":
        if not it.body or any(x.kind in _COMPOUND for x in it.body):
            raise Unwritable("a group `( ... )` holds one or more layers, calls or groups")
        text = "(" + "; ".join(item_text(x) for x in it.body) + ")"
    else:  # pragma: no cover - callers route compound items elsewhere
        raise Unwritable(f"`{it.kind}` cannot stand in a line of items")
    if it.repeat is not None:
        text += " x " + expr(it.repeat, _ATOM)
    if it.expect is not None:
        text += " -> " + expr(it.expect)
    return text


def _arg(arg: ir.Arg) -> str:
    return (f"{_ident(arg.name, 'argument')}=" if arg.name is not None else "") + expr(arg.value)


def _scope_size(value: Any) -> str:
    """A scope's checked size is a literal (`28x28`, `7`), unlike an item's `-> expr`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if getattr(value, "kind", None) == "dims" and len(value.dims) >= 2 and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value.dims):
        return "x".join(str(d) for d in value.dims)
    raise Unwritable("a stage's size is written as a literal like `28x28`")


# ---------------------------------------------------------------- layout


@dataclass
class _Line:
    depth: int
    text: str
    src: tuple[int, int] | None = None  # the source lines this output line stands for
    row: tuple[str, str, str] | None = None  # (name, size, body) of a stage row, aligned with its neighbours
    arrow: tuple[str, str] | None = None  # (items, size) of a line ending in `-> SIZE`, aligned likewise
    blank: bool = False  # a blank line before it (canonical layout; with a source, the source decides)
    comments: list[str] = field(default_factory=list)  # trailing


@dataclass
class _Comment:
    line: int
    text: str
    standalone: bool


def comments_of(source: str) -> list[_Comment]:
    """Every `# ...` comment of a spec. Exact without a lexer: only strings and comments can hold `#`, and a
    string never spans lines. A comment runs to the line break, whatever it holds (a form feed, U+2028); only
    the spaces and tabs that end it are layout."""
    found = []
    for number, line in enumerate(source_lines(source), 1):
        in_string = False
        for col, ch in enumerate(line):
            if ch == '"':
                in_string = not in_string
            elif ch == "#" and not in_string:
                found.append(_Comment(number, line[col:].rstrip(" \t"), not line[:col].strip()))
                break
    return found


_Statement = tuple[float, int, list]  # (source line, canonical rank, lines or top-level items)
_BODY = 5  # the rank of the network's own items: after network, imports, input, params and blocks


class _Printer:
    def __init__(self, source: str | None):
        self.source = source
        self.lines = source_lines(source) if source is not None else []

    # ---- where things were in the source (only with a source)
    @staticmethod
    def first_line(node: Any) -> int | None:
        return node.span.line if node.span is not None else None

    def item_range(self, items: list) -> tuple[int, int] | None:
        spans = [it.span for it in items if it.span is not None]
        if self.source is None or not spans:
            return None
        return (min(s.line for s in spans), max(s.end_line for s in spans))

    def same_line(self, header: int | None, items: list) -> bool:
        return header is not None and bool(items) and items[0].span is not None and items[0].span.line == header

    def code_line_before(self, line: int) -> int:
        """The nearest line above `line` that holds code (not blank, not only a comment)."""
        for number in range(line - 1, 0, -1):
            text = self.lines[number - 1].strip()
            if text and not text.startswith("#"):
                return number
        return line

    # ---- bodies
    def body(self, items: list, depth: int) -> list[_Line]:
        out: list[_Line] = []
        pending: list = []

        def flush() -> None:
            if pending:
                text = "; ".join(item_text(x) for x in pending)
                arrow = None
                if pending[-1].expect is not None:
                    cut = text.rfind(" -> ")
                    arrow = (text[:cut], text[cut + 4:])
                out.append(_Line(depth, text, self.item_range(pending), arrow=arrow))
                pending.clear()

        for it in items:
            if it.kind in _COMPOUND:
                flush()
                out.extend(self.compound(it, depth))
                continue
            if pending and (self.source is None or it.span is None or pending[-1].span is None
                            or it.span.line != pending[-1].span.line):
                flush()
            pending.append(it)
        flush()
        return out

    def suite(self, header: str, line: int | None, items: list, depth: int, inline: bool) -> list[_Line]:
        """`header:` followed by its items, on the same line or indented below."""
        if not items:
            raise Unwritable(f"`{header}` needs at least one item")
        if inline and all(it.kind not in _COMPOUND for it in items):
            rng = self.item_range(items)
            src = (line, rng[1]) if line is not None and rng is not None else rng
            return [_Line(depth, f"{header}: " + "; ".join(item_text(x) for x in items), src)]
        return [_Line(depth, f"{header}:", (line, line) if line is not None else None), *self.body(items, depth + 1)]

    def wants_inline(self, line: int | None, items: list, width_text: str) -> bool:
        if self.source is not None:
            return self.same_line(line, items)
        return all(it.kind not in _COMPOUND for it in items) and len(width_text) <= INLINE_WIDTH

    def scope(self, name: str, size: str, body: list, line: int | None, depth: int) -> list[_Line]:
        simple = all(it.kind not in _COMPOUND for it in body)
        text = "; ".join(item_text(x) for x in body) if simple and body else ""
        if body and simple and self.wants_inline(line, body, INDENT * depth + f"{name} {size} : {text}"):
            rng = self.item_range(body)
            src = (line, rng[1]) if line is not None and rng is not None else None
            return [_Line(depth, "", src, row=(name, size, text))]
        header = name + (f" {size}" if size else "")
        return self.suite(header, line, body, depth, inline=False)

    def compound(self, it: Any, depth: int) -> list[_Line]:
        line = self.first_line(it) if self.source is not None else None
        if it.kind == "scope":
            size = _scope_size(it.expect) if it.expect is not None else ""
            return self.scope(_ident(it.name, "stage"), size, it.body, line, depth)
        if it.kind == "residual":
            header = "residual" if it.merge == "add" else f"residual {it.merge}"
            auto = getattr(it, "auto_shortcut", "projection")
            if auto != "projection":
                header += f" shortcut={_ident(auto, 'shortcut')}"
            inline = self.same_line(line, it.body) if self.source is not None else False
            out = self.suite(header, line, it.body, depth, inline)
            if it.shortcut is not None:
                out.extend(self.shortcut(it.shortcut, depth))
            return out
        # branches
        out = [_Line(depth, f"{it.merge}:", (line, line) if line is not None else None)]
        if len(it.branches) < 1:
            raise Unwritable(f"`{it.merge}:` needs at least one branch")
        for branch in it.branches:
            if branch.name is not None:
                first = self.first_line(branch) if self.source is not None else None
                out.extend(self.scope(_ident(branch.name, "branch"), "", branch.body, first, depth + 1))
            else:
                if not branch.body or any(x.kind in _COMPOUND for x in branch.body):
                    raise Unwritable("an unnamed branch is one line of layers, calls or groups; name it to nest")
                out.append(_Line(depth + 1, "; ".join(item_text(x) for x in branch.body),
                                 self.item_range(branch.body)))
        return out

    def shortcut(self, items: list, depth: int) -> list[_Line]:
        if self.source is None or not items or items[0].span is None:
            simple = all(it.kind not in _COMPOUND for it in items)
            return self.suite("shortcut", None, items, depth, inline=simple and self.source is None)
        first = items[0].span
        before = self.lines[first.line - 1][: first.column - 1]
        if re.fullmatch(r"\s*shortcut\s*:\s*", before):
            return self.suite("shortcut", first.line, items, depth, inline=True)
        return self.suite("shortcut", self.code_line_before(first.line), items, depth, inline=False)

    # ---- the file
    def spec(self, spec: ir.Spec) -> list[_Line]:
        """Top-level statements in source order (canonical order without a source)."""
        stmts = self.header_statements(spec) + self.block_statements(spec) + self.body_statements(spec)
        stmts.sort(key=lambda s: (s[0], s[1]))
        out: list[_Line] = []
        run: list = []  # consecutive top-level items: they share lines by the body rule
        for _, rank, payload in stmts:
            if rank == _BODY and self.source is not None:
                run.extend(payload)
                continue
            if run:
                out.extend(self.body(run, 0))
                run = []
            out.extend(payload)
        if run:
            out.extend(self.body(run, 0))
        return out

    def statement(self, line: int | None, rank: int, lines: list) -> _Statement:
        return (line if line is not None else math.inf, rank, lines)

    def one_line(self, node: Any, rank: int, text: str, line: int | None = None) -> _Statement:
        if line is None and node is not None and self.source is not None:
            line = self.first_line(node)
        return self.statement(line, rank, [_Line(0, text, (line, line) if line else None)])

    def header_statements(self, spec: ir.Spec) -> list[_Statement]:
        """`network`, `import`, `input` and `param` lines."""
        stmts = []
        if spec.name is not None:
            text = "network " + _ident(spec.name, "network")
            if spec.description is not None:
                text += " " + expr(ir.Str(value=spec.description))
            stmts.append(self.one_line(None, 0, text, self.network_line()))
        stmts += [self.one_line(imp, 1, "import " + expr(ir.Str(value=imp.path))) for imp in spec.imports]
        if spec.input is not None:
            line = spec.input_span.line if self.source is not None and spec.input_span is not None else None
            stmts.append(self.one_line(None, 2, "input " + expr(spec.input), line))
        for params in self.param_lines(spec.params):
            text = "param " + ", ".join(f"{_ident(p.name, 'parameter')}={expr(p.default)}" for p in params)
            stmts.append(self.one_line(params[0], 3, text))
        return stmts

    def block_statements(self, spec: ir.Spec) -> list[_Statement]:
        stmts = []
        for block in spec.blocks:
            line = self.first_line(block) if self.source is not None else None
            params = ", ".join(_ident(p.name, "parameter") + (f"={expr(p.default)}" if p.default is not None else "")
                               for p in block.params)
            header = f"block {_ident(block.name, 'block')}({params})"
            inline = self.same_line(line, block.body) if self.source is not None else False
            lines = self.suite(header, line, block.body, 0, inline)
            lines[0].blank = True
            stmts.append(self.statement(line, 4, lines))
        return stmts

    def body_statements(self, spec: ir.Spec) -> list[_Statement]:
        if not spec.body:
            return []
        if self.source is not None:  # each top-level item its own statement, to sort among blocks and params
            return [self.statement(self.first_line(it), _BODY, [it]) for it in spec.body]
        lines = self.body(spec.body, 0)
        lines[0].blank = True
        return [self.statement(None, _BODY, lines)]

    def param_lines(self, params: list[ir.Param]) -> list[list[ir.Param]]:
        if not params:
            return []
        if self.source is None:
            return [list(params)]
        groups: list[list[ir.Param]] = []
        for p in params:
            if groups and p.span is not None and groups[-1][-1].span is not None \
                    and p.span.line == groups[-1][-1].span.line:
                groups[-1].append(p)
            else:
                groups.append([p])
        return groups

    def network_line(self) -> int | None:
        found = None
        for number, text in enumerate(self.lines, 1):
            if re.match(r"network\b", text):
                found = number
        return found


# ---------------------------------------------------------------- assembly


def _place_comments(lines: list[_Line], comments: list[_Comment]) -> list[tuple[int, _Line | str, int | None]]:
    """Interleave standalone comments with code lines: -> (depth, line or comment text, source line)."""
    before: dict[int, list[_Comment]] = {}
    tail: list[_Comment] = []
    for c in comments:
        owner = None
        for index, line in enumerate(lines):
            if line.src is not None and line.src[0] <= c.line <= line.src[1]:
                owner = index  # the innermost (last) line that stands for the comment's line
        if owner is not None:
            lines[owner].comments.append(c.text)
            continue
        following = next((i for i, line in enumerate(lines) if line.src is not None and line.src[0] > c.line), None)
        if following is None:
            tail.append(c)
        else:
            before.setdefault(following, []).append(c)
    out: list[tuple[int, _Line | str, int | None]] = []
    for index, line in enumerate(lines):
        for c in before.get(index, []):
            out.append((line.depth, c.text, c.line))
        out.append((line.depth, line, line.src[0] if line.src else None))
    out.extend((0, c.text, c.line) for c in tail)
    return out


def _runs(entries: list[tuple[int, _Line | str, int | None]], blanks: list[bool], field: str) -> list[list[_Line]]:
    """Runs of consecutive lines at one depth that have `field` set; a blank line or other code ends a run."""
    runs: list[list[_Line]] = []
    current: list[_Line] = []
    depth = None
    for (d, entry, _), blank in zip(entries, blanks, strict=True):
        if isinstance(entry, str):
            if blank:
                current, depth = [], None
            continue
        if getattr(entry, field) is None or blank or d != depth:
            current, depth = [], None
        if getattr(entry, field) is not None:
            if not current:
                runs.append(current)
                depth = d
            current.append(entry)
    return runs


def _align(entries: list[tuple[int, _Line | str, int | None]], blanks: list[bool]) -> None:
    """Give each run of stage rows, and each run of lines ending in `-> SIZE`, the same columns."""
    for run in _runs(entries, blanks, "arrow"):
        width = max(len(r.arrow[0]) for r in run)
        for r in run:
            r.text = f"{r.arrow[0].ljust(width)}  -> {r.arrow[1]}"
    for run in _runs(entries, blanks, "row"):
        names = max(len(r.row[0]) for r in run)
        sizes = max(len(r.row[1]) for r in run)
        for r in run:
            name, size, body = r.row
            if sizes:
                pad = sizes - len(size)
                cell = " " * (pad // 2) + size + " " * (pad - pad // 2)
                r.text = f"{name.ljust(names)} {cell} : {body}"
            else:
                r.text = f"{(name + ':').ljust(names + 1)} {body}"


def render(spec: ir.Spec, source: str | None = None) -> str:
    """The spec as canonical text. With `source` (the text it was parsed from), layout and comments follow it."""
    printer = _Printer(source)
    lines = printer.spec(spec)
    comments = comments_of(source) if source is not None else []
    entries = _place_comments(lines, comments)
    blanks = []
    for index, (_, entry, at) in enumerate(entries):
        if index == 0:
            blanks.append(False)
        elif source is not None and at is not None:
            blanks.append(at >= 2 and not printer.lines[at - 2].strip())
        else:
            blanks.append(isinstance(entry, _Line) and entry.blank)
    _align(entries, blanks)
    out = []
    for (depth, entry, _), blank in zip(entries, blanks, strict=True):
        if blank:
            out.append("")
        if isinstance(entry, str):
            out.append(INDENT * depth + entry)
        else:
            text = INDENT * depth + entry.text
            out.append(text + "".join("  " + c for c in entry.comments))
    return "\n".join(out) + "\n" if out else ""


# ---------------------------------------------------------------- entry points


def strip_spans(data: Any) -> Any:
    """A dumped IR without positions: what two specs must share to be the same spec."""
    if isinstance(data, dict):
        return {k: strip_spans(v) for k, v in data.items() if k not in ("span", "input_span")}
    if isinstance(data, list):
        return [strip_spans(v) for v in data]
    return data


def same_spec(a: ir.Spec, b: ir.Spec) -> bool:
    return strip_spans(a.model_dump(mode="json")) == strip_spans(b.model_dump(mode="json"))


def _without_spans(spec: ir.Spec) -> ir.Spec:
    return ir.Spec.model_validate(strip_spans(spec.model_dump(mode="json")))


def format_spec(spec: ir.Spec, file: str | None = None) -> str:
    """IR (from JSON, or built in Python) -> canonical text, checked to parse back to the same IR."""
    text = render_spec(spec)
    check_written(text, spec, file)
    return text


def render_spec(spec: ir.Spec) -> str:
    """IR -> canonical text, unchecked: `format_spec` is this and `check_written`."""
    try:
        return render(_without_spans(spec))
    except Unwritable as e:
        raise ArchcError([Diagnostic("A006", f"this spec cannot be written as `.arch` text: {e}", None,
                                     help="keep it as JSON, or change that part of the spec")]) from None


def check_written(text: str, spec: ir.Spec, file: str | None = None, back: ir.Spec | None = None) -> None:
    """Raise ArchcError A006 unless `text` (rendered from `spec`) parses back to the same IR. `back`: the text's
    IR where the caller has parsed it already (archc.decompile parses the text it writes once, to check it
    twice: as this IR, and as the same network)."""
    from .parser import parse

    display = file or "<spec>"
    if back is None:
        try:
            back = parse(text, "<formatted>")
        except ArchcError as e:
            raise ArchcError([Diagnostic("A006", "this spec cannot be written as `.arch` text: its text would not "
                                         f"parse ({e.diagnostics[0].message})", None,
                                         help="a name may be a keyword of the language; rename it")]) from None
    if not same_spec(back, spec):
        raise ArchcError([Diagnostic("A006", f"`{display}` cannot be written as `.arch` text without changing "
                                     "its meaning", None,
                                     help="some value has no literal in the text syntax; keep the spec as JSON")])


def format_text(text: str, file: str | None = None) -> str:
    """`.arch` text -> its canonical form, comments kept. Raises ArchcError on a syntax error."""
    from .parser import parse

    spec = parse(text, file)
    try:
        out = render(spec, text)
    except Unwritable as e:  # pragma: no cover - parsed IR is always writable
        raise ArchcError([Diagnostic("A006", f"cannot format `{file or '<spec>'}`: {e}", None)]) from None
    back = parse(out, file)
    if not same_spec(back, spec) or not _same_comments(text, out):
        raise AssertionError(f"archc fmt would change the meaning or the comments of `{file or '<spec>'}`")
    return out


def _same_comments(before: str, after: str) -> bool:
    """Every comment, character for character and in order. The printer may join the trailing comments of lines
    it joins (`relu  # a  # b`), always with two spaces, so both sides are compared as one joined string."""
    return "  ".join(c.text for c in comments_of(before)) == "  ".join(c.text for c in comments_of(after))
