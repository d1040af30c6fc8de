"""Text to IR: Lark's LALR parser over grammar.lark, then a structural transformer into archc.ir.

No checks happen here beyond syntax: names, arguments and shapes are the inference pass's business.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.indenter import Indenter

from . import ir
from .diagnostics import ArchcError, Diagnostic, Span
from .ir import MAX_INT, MAX_NAME_LENGTH, MAX_NESTING_DEPTH
from .ops import MERGES
from .speedups import fast_construct, fast_span, hook_rule_builders


def _new(cls, **fields):
    return fast_construct(cls, fields)

GRAMMAR = Path(__file__).with_name("grammar.lark")

# How the parser's terminal names read in a diagnostic.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "CALL_NAME": "a block call",
    "INT": "an integer",
    "FLOAT": "a number",
    "PERCENT": "a percentage",
    "DIMS": "a size like `3x3`",
    "STRING": 'a string in "double quotes"',
    "MERGE": "a merge (" + ", ".join(f"`{m}`" for m in sorted(MERGES)) + ")",
    "_NL": "a new line",
    "_INDENT": "an indented block",
    "_DEDENT": "the end of the indented block",
    "COMP_OP": "a comparison",
    "PLUS": "`+`",
    "MINUS": "`-`",
    "MUL_OP": "`*`, `/` or `//`",
    "$END": "the end of the file",
}


class IndentationError_(Exception):
    def __init__(self, message: str, token: Token, help: str = "indent every line of a block by the same amount"):
        super().__init__(message)
        self.token = token
        self.help = help


class ArchIndenter(Indenter):
    """Python-style blocks; newlines inside parentheses are ignored. Raises positioned errors."""

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR"]
    CLOSE_PAREN_types = ["RPAR"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def handle_NL(self, token):
        if self.paren_level > 0:
            return
        yield token
        indent_str = token.rsplit("\n", 1)[1]
        indent = indent_str.count(" ") + indent_str.count("\t") * self.tab_len
        self.tabs = self.tabs or "\t" in indent_str  # a tab so far: the likely culprit
        if indent > self.indent_level[-1]:
            self.indent_level.append(indent)
            yield Token.new_borrow_pos(self.INDENT_type, indent_str, token)
            return
        while indent < self.indent_level[-1]:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, indent_str, token)
        if indent != self.indent_level[-1]:
            tabs = "\t" in indent_str
            raise IndentationError_(
                f"this line is indented by {indent}{' (its tabs count 8 columns each)' if tabs else ''}, which "
                f"matches no enclosing block (expected {self.indent_level[-1]})",
                token,
                help="indent with spaces only: tabs and spaces are mixed here, and a tab counts as 8 columns"
                if self.tabs else "indent every line of a block by the same amount",
            )

    def process(self, stream):
        """Lark's public post-lexer entry point (its own `process` resets this state, then runs `_process`)."""
        self.paren_level = 0
        self.indent_level = [0]
        self.tabs = False  # the indenter is shared by every parse
        return self._tokens(stream)

    def _tokens(self, stream):
        token = None
        for token in _merges_retyped(stream):
            if token.type == self.NL_type:
                yield from self.handle_NL(token)
            else:
                yield token
            if token.type in self.OPEN_PAREN_types:
                self.paren_level += 1
            elif token.type in self.CLOSE_PAREN_types:
                if self.paren_level == 0:
                    raise IndentationError_("unmatched `)`", token)
                self.paren_level -= 1
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, "", token) if token else Token(self.DEDENT_type, "")


def _merges_retyped(stream):
    """A NAME that names a merge kind (archc.ops.MERGES) and is followed by `:` becomes a MERGE token:
    `residual concat:`, `add:` over branches. One token of look-ahead; every other token passes unchanged."""
    held = None
    after_residual = False  # `residual add shortcut=zeropad:`: a merge right after `residual` is one too
    for token in stream:
        if held is not None:
            yield Token.new_borrow_pos("MERGE", held.value, held) if token.type == "COLON" else held
            held = None
        if token.type == "NAME" and token.value in MERGES and after_residual:
            yield Token.new_borrow_pos("MERGE", token.value, token)
        elif token.type == "NAME" and token.value in MERGES:
            held = token
        else:
            yield token
        after_residual = token.type == "RESIDUAL"
    if held is not None:
        yield held


class _Tree(Tree):
    """A parse tree node with the positions archc reads. `start`/`end`: the first and last token of its own text;
    `outer_start`/`outer_end`: with what an inlined rule wrapped around it too (the parentheses of `(a + b)`)."""

    __slots__ = ("start", "end", "outer_start", "outer_end")

    def __init__(self, data, children, meta=None):
        super().__init__(data, children, meta)
        self.start = None


class _Positions:
    """Lark's `propagate_positions`, cut down to the four tokens above: the same extents (keywords and
    punctuation included) at half the cost; Lark's own was half the time of parsing a long spec."""

    __slots__ = ("build",)

    def __init__(self, build):
        self.build = build

    def __call__(self, children):
        result = self.build(children)
        if type(result) is _Tree:
            first = last = None
            for child in children:
                first = child.outer_start if type(child) is _Tree else child
                if first is not None:
                    break
            for child in reversed(children):
                last = child.outer_end if type(child) is _Tree else child
                if last is not None:
                    break
            if result.start is None:  # a new node; else an inlined rule handed a child through
                result.start, result.end = first, last
            result.outer_start, result.outer_end = first, last
        return result


@lru_cache(maxsize=2)
def _lark(fast: bool = True) -> Lark:
    """The parser. Its rules' tree builders get archc's position pass (archc.speedups); where this lark's
    internals are not the tested ones, Lark's own `propagate_positions` and the tree's `meta` give the spans."""
    options = dict(parser="lalr", lexer="basic", postlex=ArchIndenter(), tree_class=_Tree, maybe_placeholders=False,
                   cache=True)
    parser = Lark(GRAMMAR.read_text(encoding="utf-8"), **options)
    parser.archc_meta_positions = not (fast and hook_rule_builders(parser, _Positions))  # tests/test_parser.py
    if parser.archc_meta_positions:  # pins the spans of the fast pass; test_speedups.py compares the fallback's
        parser = Lark(GRAMMAR.read_text(encoding="utf-8"), propagate_positions=True, **options)
        parser.archc_meta_positions = True
    return parser


def _positions_from_meta(node: _Tree) -> None:
    """The public fallback of the position pass: the extent lark's propagate_positions recorded."""
    meta = node.meta
    node.start = node.end = node.outer_start = node.outer_end = None if meta.empty else meta


def _span(token: Token, file: str | None) -> Span | None:
    if token.line is None:
        return None
    return fast_span(Span, file, token.line, token.column, token.end_line, token.end_column)


def _dims_of(text: str) -> list[int]:
    return [int(part) for part in text.replace("×", "x").split("x")]


class _ToIR:
    """Structural: each grammar rule becomes the IR node it names, with its span.

    A loop over the tree rather than lark's Transformer: no recursion (deep nesting cannot overflow the
    stack) and no per-node wrapper objects (a third of the time on a 10,000-layer spec).
    """

    def __init__(self, file: str | None, meta_positions: bool = False):
        self.file = file
        self.meta_positions = meta_positions  # positions in each tree's `meta` (lark's propagate_positions)

    def transform(self, tree: Tree):
        """Also enforces the limits (nesting depth, name lengths, number sizes) on the way down, so that no
        later pass meets a tree it cannot handle."""
        results: list = []
        work: list = [(tree, 1)]  # (tree to open, its depth) or (tree whose children are built, 0)
        while work:
            node, depth = work.pop()
            if not isinstance(node, Tree):
                if node.type in _LIMITED_TOKENS:
                    _check_token(node, self.file)
                results.append(node)
            elif depth == 0:
                n = len(node.children)
                children = results[len(results) - n:]
                del results[len(results) - n:]
                results.append(getattr(self, node.data)(node, children))
            else:
                if self.meta_positions:
                    _positions_from_meta(node)
                if depth > MAX_NESTING_DEPTH:
                    raise _SyntaxProblem(f"the spec nests more than {MAX_NESTING_DEPTH} levels deep here",
                                         self._s(node),
                                         "flatten the nesting: define a block, or split a long chain of operators",
                                         code="A301")
                work.append((node, 0))
                if node.data == "chain":  # each operator of a flat chain becomes one level of the expression
                    depth += sum(1 for child in node.children if isinstance(child, Token))
                work.extend((child, depth + 1) for child in reversed(node.children))
        return results[0]

    def _s(self, node: _Tree) -> Span | None:
        return None if node.start is None else self._between(node.start, node.end)

    # ---- expressions
    def int_(self, node, c):
        return int(c[0])

    def float_(self, node, c):
        return float(c[0])

    def percent(self, node, c):
        return _new(ir.Percent, value=float(c[0][:-1]) / 100, span=self._s(node))

    def dims(self, node, c):
        return _new(ir.Dims, dims=_dims_of(str(c[0])), span=self._s(node))

    def true(self, node, c):
        return True

    def false(self, node, c):
        return False

    def string(self, node, c):
        return _new(ir.Str, value=str(c[0])[1:-1], span=self._s(node))

    def name(self, node, c):
        return _new(ir.Name, id=str(c[0]), span=self._s(node))

    def attr(self, node, c):
        return _new(ir.Name, id=f"{c[0]}.{c[1]}", span=self._s(node))

    def func(self, node, c):
        return _new(ir.Func, func=str(c[0]), args=list(c[1:]), span=self._s(node))

    def tuple(self, node, c):
        return _new(ir.Dims, dims=list(c), span=self._s(node))

    def chain(self, node, c):
        """A flat run of operands and operators (tokens) -> nested IR, by precedence climbing."""
        parts = list(zip(node.children, c, strict=True))
        position = 0

        def climb(min_level: int):
            nonlocal position
            raw, value = parts[position]
            position += 1
            if isinstance(raw, Token):  # a prefix operator
                if raw.type == "NOT" and min_level > _NOT_LEVEL:
                    raise _SyntaxProblem("`not` cannot stand here without parentheses", _span(raw, self.file),
                                         "write `(not ...)`")
                operand, _, end = climb(_NOT_LEVEL if raw.type == "NOT" else _NEG_LEVEL)
                start = raw
                if raw.type == "MINUS" and isinstance(operand, (int, float)) and not isinstance(operand, bool):
                    left = -operand  # `-1` is a number, not an operation
                else:
                    left = _new(ir.UnaryOp, op=str(raw), operand=operand, span=self._between(start, end))
            else:
                left, start, end = value, raw.outer_start, raw.outer_end
            compared = False
            while position < len(parts):
                op = parts[position][0]
                level = _BINARY_LEVEL[op.type]
                if level < min_level:
                    break
                if op.type == "COMP_OP" and compared:
                    raise _SyntaxProblem("comparisons do not chain", _span(op, self.file),
                                         "join them with `and`: `a < b and b < c`")
                compared = op.type == "COMP_OP"
                position += 1
                right, _, end = climb(level + 1)
                left = _new(ir.BinOp, op=str(op), left=left, right=right, span=self._between(start, end))
            return left, start, end

        return climb(0)[0]

    def _between(self, start, end) -> Span:
        return fast_span(Span, self.file, start.line, start.column, end.end_line, end.end_column)

    def cond(self, node, c):
        return _new(ir.Cond, then=c[0], test=c[1], orelse=c[2], span=self._s(node))

    # ---- items
    def arg(self, node, c):
        return _new(ir.Arg, value=c[0], span=self._s(node))

    def kwarg(self, node, c):
        return _new(ir.Arg, name=str(c[0]), value=c[1], span=self._s(node))

    def repeat(self, node, c):
        return ("repeat", c[0])

    def expect(self, node, c):
        return ("expect", c[0])

    def layer(self, node, c):
        return dict(kind="layer", op=str(c[0]), args=list(c[1:]), span=self._s(node))

    def call(self, node, c):
        return dict(kind="call", block=str(c[0]), args=list(c[1:]), span=self._s(node))

    def group(self, node, c):
        return dict(kind="group", body=list(c), span=self._s(node))

    def item(self, node, c):
        fields = dict(c[0])
        for extra in c[1:]:
            fields[extra[0]] = extra[1]
        fields["span"] = self._s(node)  # the whole item, repetition and expectation included
        cls = {"layer": ir.Layer, "call": ir.Call, "group": ir.Group}[fields.pop("kind")]
        return _new(cls, **fields)

    def suite(self, node, c):
        return list(c)

    def scope(self, node, c):
        name, rest = c[0], c[1:]
        expect = None
        if len(rest) == 2:
            tok = rest[0]
            expect = (_new(ir.Dims, dims=_dims_of(str(tok)), span=_span(tok, self.file)) if tok.type == "DIMS"
                      else int(tok))
        return _new(ir.Scope, name=str(name), expect=expect, body=rest[-1], span=self._s(node))

    def merge(self, node, c):
        return str(c[0])

    def shortcut(self, node, c):
        return ("shortcut", c[0])

    def auto_shortcut(self, node, c):
        return ("auto_shortcut", str(c[0]))

    def residual(self, node, c):
        fields = {"merge": "add", "shortcut": None}
        for child in c:
            if isinstance(child, str):
                fields["merge"] = child
            elif isinstance(child, tuple):
                fields[child[0]] = child[1]
            else:
                fields["body"] = child
        return _new(ir.Residual, **fields, span=self._s(node))

    def branch(self, node, c):
        return _new(ir.Branch, body=list(c), span=self._s(node))

    def branches(self, node, c):
        branches = [
            b if isinstance(b, ir.Branch) else _new(ir.Branch, name=b.name, body=b.body, span=b.span) for b in c[1:]
        ]
        expects = [b for b in c[1:] if isinstance(b, ir.Scope) and b.expect is not None]
        if expects:
            raise _SyntaxProblem("a branch cannot check its own size here", expects[0].span,
                                 "write `-> SIZE` after the branch's last item instead")
        return _new(ir.Branches, merge=c[0], branches=branches, span=self._s(node))

    # ---- top level
    def network(self, node, c):
        return ("network", str(c[0]), str(c[1])[1:-1] if len(c) > 1 else None)

    def input(self, node, c):
        return ("input", c[0], self._s(node))

    def param(self, node, c):
        return _new(ir.Param, name=str(c[0]), default=c[1], span=self._s(node))

    def params(self, node, c):
        return ("params", list(c))

    def import_(self, node, c):
        return _new(ir.Import, path=str(c[0])[1:-1], span=self._s(node))

    def block_param(self, node, c):
        return _new(ir.BlockParam, name=str(c[0]), default=c[1] if len(c) > 1 else None, span=self._s(node))

    def block_def(self, node, c):
        return _new(ir.BlockDef, name=str(c[0]), params=list(c[1:-1]), body=c[-1], span=self._s(node))

    def start(self, node, c):
        fields: dict = {"params": [], "imports": [], "blocks": [], "body": []}
        for stmt in c:
            if isinstance(stmt, tuple) and stmt[0] == "network":
                fields["name"], fields["description"] = stmt[1], stmt[2]
            elif isinstance(stmt, tuple) and stmt[0] == "input":
                fields["input"], fields["input_span"] = stmt[1], stmt[2]
            elif isinstance(stmt, tuple) and stmt[0] == "params":
                fields["params"].extend(stmt[1])
            elif isinstance(stmt, ir.Import):
                fields["imports"].append(stmt)
            elif isinstance(stmt, ir.BlockDef):
                fields["blocks"].append(stmt)
            else:
                fields["body"].append(stmt)
        return _new(ir.Spec, **fields)


# Precedence of the binary operators of an expression chain (higher binds tighter), as in Python.
_BINARY_LEVEL = {"OR": 1, "AND": 2, "COMP_OP": 4, "PLUS": 5, "MINUS": 5, "MUL_OP": 6}
_NOT_LEVEL = 3  # `not a == b` is `not (a == b)`; `not a and b` is `(not a) and b`
_NEG_LEVEL = 7  # `-a * b` is `(-a) * b`


class _SyntaxProblem(Exception):
    def __init__(self, message: str, span: Span | None, help: str | None = None, code: str = "A001"):
        super().__init__(message)
        self.message, self.span, self.help, self.code = message, span, help, code


def _describe_expected(expected: set[str]) -> str:
    lark = _lark()
    words = []
    for name in sorted(expected):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
            continue
        try:
            pattern = lark.get_terminal(name).pattern
        except KeyError:
            continue
        words.append(f"`{pattern.value}`" if pattern.type == "str" else name.lower())
    words = sorted(set(words))
    if not words:
        return ""
    if len(words) > 8:
        words = words[:8] + ["..."]
    return "expected " + (words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1])


def _token_text(token: Token) -> str:
    if token.type == "_NL":
        return "end of line"
    if token.type in ("_INDENT",):
        return "indented block"
    if token.type == "$END" or (token.type == "_DEDENT" and not token.value):
        return "end of file"
    if token.type == "_DEDENT":
        return "end of block"
    return f"`{token}`"


_LIMITED_TOKENS = {"NAME", "CALL_NAME", "INT", "DIMS", "FLOAT", "PERCENT"}


def _check_token(token: Token, file: str | None) -> None:
    if token.type in ("NAME", "CALL_NAME") and len(token) > MAX_NAME_LENGTH:
        raise _SyntaxProblem(f"this name has {len(token):,} characters; a name may have at most {MAX_NAME_LENGTH}",
                             _span(token, file), code="A301")
    if token.type in ("INT", "DIMS"):
        # Measure digits before converting: int() refuses strings over 4,300 digits with a ValueError.
        for digits in str(token).replace("×", "x").split("x"):
            if len(digits) > len(str(MAX_INT)) or int(digits) > MAX_INT:
                raise _SyntaxProblem(f"`{digits[:24]}{'...' if len(digits) > 24 else ''}` is too large; numbers in "
                                     f"a spec are at most {MAX_INT:,}", _span(token, file), code="A301")
    elif token.type in ("FLOAT", "PERCENT") and not math.isfinite(float(str(token).rstrip("%"))):
        raise _SyntaxProblem(f"`{str(token)[:24]}{'...' if len(token) > 24 else ''}` is too large for a number",
                             _span(token, file), code="A301")


# How many syntax errors one run reports. After an error the parser resumes at the next top-level statement.
MAX_SYNTAX_ERRORS = 20


def parse(text: str, file: str | None = None) -> ir.Spec:
    """Parse spec text. Raises ArchcError with positioned syntax diagnostics: the first error, and then one for
    each other top-level statement that fails on its own (every independent error of a file in one run)."""
    source = text if text.endswith("\n") else text + "\n"
    try:
        return _parse_once(source, file)
    except _PARSE_ERRORS as e:
        recovery = _Recovery(source, file)
        recovery.run(1, len(recovery.lines), e)
        raise ArchcError(recovery.diagnostics, {file or "": text}) from None


def _parse_once(source: str, file: str | None) -> ir.Spec:
    parser = _lark()
    return _ToIR(file, parser.archc_meta_positions).transform(parser.parse(source))


class _Recovery:
    """After a failed parse: the failures of each top-level statement, in order. A syntax error ends the parse
    where it stands, so the statements before it are parsed again to find what only the walk into IR reports
    (a number too large, `a < b < c`), and parsing resumes at the statement after it. Each attempt parses a
    run of whole statements, the lines before it left blank so that positions stay true."""

    def __init__(self, source: str, file: str | None):
        self.lines = source.splitlines(keepends=True)
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        # what reparsing may cost: errors found only after a whole parse would otherwise cost a parse each
        self.budget = 2 * len(source)

    def run(self, first: int, last: int, error: Exception, syntax_errors: bool = True) -> None:
        """Report `error`, raised by parsing lines first..last, and the failures of the rest of those lines."""
        while len(self.diagnostics) < MAX_SYNTAX_ERRORS:
            is_syntax = not isinstance(error, _SyntaxProblem)
            if is_syntax and not syntax_errors:
                return  # a run cut short of its statement's end fails where the cut is: not the spec's error
            diagnostic = _diagnose(error, self._text(first, last), self.file)
            line = diagnostic.span.line if diagnostic.span is not None else None
            if is_syntax and line is not None:
                start = _statement_start(self.lines, line)
                if start > first:
                    self.check(first, start - 1)
            if len(self.diagnostics) >= MAX_SYNTAX_ERRORS:
                return
            self.diagnostics.append(diagnostic)
            resume = _next_statement(self.lines, line, last) if line is not None else None
            if resume is None or self.budget <= 0:
                return
            first = resume
            try:
                self._parse(first, last)
                return
            except _PARSE_ERRORS as e:
                error = e

    def check(self, first: int, last: int) -> None:
        """The failures of lines first..last, which parsed; only the walk into IR can still fail."""
        try:
            self._parse(first, last)
        except _PARSE_ERRORS as e:
            self.run(first, last, e, syntax_errors=False)

    def _parse(self, first: int, last: int) -> None:
        """Parse lines first..last, charging the budget with the lines the parser read."""
        read = last
        try:
            _parse_once(self._text(first, last), self.file)
        except (UnexpectedInput, IndentationError_) as e:
            line = e.token.line if isinstance(e, IndentationError_) else getattr(e, "line", None)
            read = line if isinstance(line, int) and first <= line <= last else last
            raise
        finally:
            self.budget -= sum(len(line) for line in self.lines[first - 1:read])

    def _text(self, first: int, last: int) -> str:
        return "\n" * (first - 1) + "".join(self.lines[first - 1:last])


_PARSE_ERRORS = (_SyntaxProblem, UnexpectedInput, IndentationError_)


def _is_statement_start(line: str) -> bool:
    """A top-level statement starts in column 1 and is no blank line, comment, or `shortcut:` (which belongs
    to the `residual:` above it)."""
    return line[:1] not in ("", " ", "\t", "#", "\n", "\r") and not line.startswith("shortcut")


def _next_statement(lines: list[str], after: int, last: int) -> int | None:
    """The line number of the first top-level statement after line `after` and up to line `last`."""
    return next((n for n in range(after + 1, last + 1) if _is_statement_start(lines[n - 1])), None)


def _statement_start(lines: list[str], line: int) -> int:
    """The line number where the top-level statement holding line `line` starts."""
    return next((n for n in range(min(line, len(lines)), 0, -1) if _is_statement_start(lines[n - 1])), 1)


def _diagnose(e: Exception, source: str, file: str | None) -> Diagnostic:
    """A parse failure as a diagnostic; `source` is the text that was parsed."""
    for kind, diagnose in _DIAGNOSERS:
        if isinstance(e, kind):
            return diagnose(e, source, file)
    return Diagnostic("A001", f"syntax error: {e}")  # pragma: no cover - the kinds below are all Lark raises


def _syntax_problem(e: _SyntaxProblem, source: str, file: str | None) -> Diagnostic:
    return Diagnostic(e.code, e.message, e.span, help=e.help)


def _unexpected_character(e: UnexpectedCharacters, source: str, file: str | None) -> Diagnostic:
    span = Span(file=file, line=e.line, column=e.column, end_line=e.line, end_column=e.column + 1)
    char = source[e.pos_in_stream] if e.pos_in_stream < len(source) else ""
    expected = _describe_expected(set(e.allowed or ()))
    return Diagnostic("A002", f"unexpected character `{char}`", span, label=expected or "not allowed here",
                      help="indent with spaces" if char == "\t" else None)


def _unexpected_end(e: UnexpectedEOF, source: str, file: str | None) -> Diagnostic:
    lines = source.splitlines() or [""]
    span = Span(file=file, line=len(lines), column=len(lines[-1]) + 1, end_line=len(lines),
                end_column=len(lines[-1]) + 2)
    return Diagnostic("A001", "unexpected end of file", span, label=_describe_expected(set(e.expected)))


def _unexpected_token(e: UnexpectedToken, source: str, file: str | None) -> Diagnostic:
    token = e.token
    expected = set(e.expected)
    label = "expected `,` between arguments" if "COMMA" in expected and token.type in _VALUE_TOKENS \
        else _describe_expected(expected)
    return Diagnostic("A001", f"unexpected {_token_text(token)}", _token_span(token, source, file), label=label,
                      help=_syntax_help(token, expected))


def _token_span(token: Token, source: str, file: str | None) -> Span:
    """Where an unexpected token is shown: the end of the line for a line break or the end of the file,
    the indented line itself for an indent."""
    if token.type in ("$END", "_DEDENT") or token.line is None or token.line < 1:
        lines = source.rstrip("\n").splitlines() or [""]
        line = len(lines) if token.line in (None, 0) or token.type == "$END" else token.line
        line = min(max(line, 1), len(lines))
        return Span(file=file, line=line, column=len(lines[line - 1]) + 1, end_line=line,
                    end_column=len(lines[line - 1]) + 2)
    if token.type == "_INDENT":  # the indented line itself, not the line break before it
        line = token.end_line
        return Span(file=file, line=line, column=len(token.value) + 1, end_line=line,
                    end_column=len(source.splitlines()[line - 1]) + 1)
    if token.type == "_NL":  # point at the end of the line, not at the next one
        lines = source.splitlines()
        return Span(file=file, line=token.line, column=len(lines[token.line - 1]) + 1, end_line=token.line,
                    end_column=len(lines[token.line - 1]) + 2)
    return _span(token, file)


def _indentation(e: IndentationError_, source: str, file: str | None) -> Diagnostic:
    tok = e.token
    lines = source.splitlines()
    line = tok.end_line if tok.end_line else 1
    line = min(max(line, 1), len(lines))
    span = Span(file=file, line=line, column=1, end_line=line, end_column=len(lines[line - 1]) + 1)
    return Diagnostic("A003", str(e), span, help=e.help)


_DIAGNOSERS = ((_SyntaxProblem, _syntax_problem), (UnexpectedCharacters, _unexpected_character),
               (UnexpectedEOF, _unexpected_end), (UnexpectedToken, _unexpected_token),
               (IndentationError_, _indentation))


_VALUE_TOKENS = {"NAME", "INT", "FLOAT", "DIMS", "PERCENT", "STRING", "CALL_NAME"}


def _syntax_help(token: Token, expected: set[str]) -> str | None:
    if token.type == "_INDENT":
        tabs = " (its indentation holds a tab, which counts as 8 columns: indent with spaces only)" \
            if "\t" in str(token) else ""
        return f"this line is indented more than the one before it{tabs}; only a line ending in `:` opens a block"
    if token.type in _VALUE_TOKENS and "COMMA" in expected:
        return "separate a layer's arguments with commas: `conv 3x3, 64, relu`"
    if token.type == "_NL" and "_INDENT" in expected:
        return "indent the lines of the block under the line ending in `:`"
    if token.type == "NAME" and str(token) == "x":
        return "`x` repeats an item (`conv 3x3, 64 x 2`); write sizes without spaces: `3x3`"
    return None
