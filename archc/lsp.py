"""`archc lsp`: a language server (pygls) for `.arch` files, over standard input and output.

What it offers an editor:
  * the diagnostics of `archc check` as you type (the unsaved text, imports resolved against the file's folder
    and the allowed import directories), and code actions that apply their `help: did you mean X?`;
  * hover: over a layer, what inference computed (qualified name, kind, output size, parameters, MACs; every
    instance when a block's layer is used many times); over a stage's header, the stage's totals; over `input`,
    a `param`, a block header or a block's parameter, what they are; over a layer kind or a block call, its
    signature. While the document has errors, a line that is unchanged since the last version that checked
    still shows that version's figures (and says so);
  * completion of layer kinds (from the registry, `archc.ops`), blocks in scope (imported ones too), the
    arguments and flags of the layer kind under the cursor, and block and network parameters;
  * go to definition (a block, also in an imported file; an import's file; a parameter), document symbols
    (network, input, params, imports, blocks, stages), formatting (`archc fmt`).

Hostile input stays bounded: a message's size is limited (a larger one is dropped unread and the client told),
only documents the client opened are served (nothing is read from a URI's path), and checking runs in a worker
process under a time limit, so a slow spec never blocks the message loop and is stopped when it runs too long.

Spans are 1-based with exclusive ends, columns in code points; LSP positions are 0-based, in the client's
units (UTF-16 by default): every position goes through pygls's position codec.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import multiprocessing
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from . import __version__, ir
from .diagnostics import ArchcError, Diagnostic, Span
from .loader import MAX_SPEC_BYTES
from .ops import ALIASES, MERGES, OPS, POST_OPS, SHORTCUTS, Op, fmt_shape, lookup
from .plan import Plan, PlanNode
from .render import human

log = logging.getLogger(__name__)

MAX_HOVER_INSTANCES = 12
# A JSON-RPC message carries one document at most: MAX_SPEC_BYTES characters, each up to 12 bytes once
# JSON-escaped (a character outside the BMP as two `\uXXXX`); anything larger is refused unread.
MAX_MESSAGE_BYTES = 12 * MAX_SPEC_BYTES + 64 * 1024
MAX_HEADER_BYTES = 4096
CHECK_SECONDS = 30.0  # a spec of MAX_SPEC_BYTES dense layers (174,000 `relu`s) checked in 22 s on a busy 2-core machine
START_SECONDS = 120.0  # for the worker process to start and import the pipeline (~1 s; a busy machine: more)
FRESH_WAIT_SECONDS = 1.0  # hover and friends wait this long for the check of the text they are asked about
MAX_MAPPED_LINES = 20_000  # beyond this, a stale result is not mapped onto edited text (difflib is quadratic)
MAX_RECOVERY_ROUNDS = 4

# The language's keywords (archc/grammar.lark; a test keeps this list equal to the grammar's quoted words).
TOP_KEYWORDS = ("network", "input", "param", "import", "block")
ITEM_KEYWORDS = ("residual", "shortcut")  # and the merges, registry rows: archc.ops.MERGES

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BLOCK_HEADER = re.compile(r"^block[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(([^)]*)\)", re.MULTILINE)
_PARAM_LINE = re.compile(r"^param[ \t]+(.*)$", re.MULTILINE)
_DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`\?")
_QUOTED = re.compile(r"`([^`]+)`")


# ---------------------------------------------------------------- analysis (runs in the worker process)


@dataclass
class Analysis:
    """What one check of a document's text found."""

    text: str
    display: str
    spec: ir.Spec | None = None  # the document's IR; statements with syntax errors left out when `partial`
    partial: bool = False
    blocks: dict[str, ir.BlockDef] = field(default_factory=dict)  # every block in scope, imported ones too
    plan: Plan | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    version: int | None = None


def _path_of(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def analyse(text: str, path: Path | None, allow: list[str] | None = None) -> Analysis:
    """Check unsaved text as if it were the file at `path`: the pipeline of `archc.check` (`load_text`, then
    `check`), and what remains usable of a document with errors."""
    from . import check
    from .loader import load_text, parse_source

    display = str(path) if path is not None else "<spec>"
    result = Analysis(text=text, display=display)
    try:
        loaded = load_text(text, path, allow)
        result.spec = loaded.spec
        result.blocks = {**loaded.blocks, **{b.name: b for b in loaded.spec.blocks}}
        if loaded.spec.input is None and not loaded.spec.body:
            return result  # a file of blocks: parsing and imports are all there is to check
        result.plan = check(loaded, allow=allow)
        return result
    except ArchcError as e:
        result.diagnostics = e.diagnostics
    except RecursionError:
        result.diagnostics = [Diagnostic("A301", "the spec nests too deeply to process")]
    if result.spec is None:  # the text did not load: parse it alone, or what parses of it
        try:
            result.spec = parse_source(text, display)
        except (ArchcError, RecursionError):
            recovered = _recover(text, display, result.diagnostics)
            if recovered is not None:
                result.partial = True
                try:
                    loaded = load_text(recovered, path, allow)
                    result.spec, result.blocks = loaded.spec, dict(loaded.blocks)
                except (ArchcError, RecursionError):
                    try:
                        result.spec = parse_source(recovered, display)
                    except (ArchcError, RecursionError):
                        result.spec = None
        if result.spec is not None and not result.blocks:
            result.blocks = {b.name: b for b in result.spec.blocks}
    return result


def _recover(text: str, display: str, diagnostics: list[Diagnostic]) -> str | None:
    """The text with the statements that hold syntax errors blanked out, line numbers kept, so that symbols,
    definitions and completion still see the rest. First only the bad line (and the lines indented under it),
    then the whole top-level statement around each error that remains. None if it still does not parse."""
    from .loader import parse_source

    if display.endswith(".json") or text.lstrip().startswith("{"):
        return None
    lines = text.split("\n")
    first = diagnostics
    diags = diagnostics
    for round_ in range(MAX_RECOVERY_ROUNDS):
        # round 0: the bad lines alone; round 1: the statements around them (a block whose only line was bad
        # is then bad at its header); later rounds: the statements around what is still bad
        diags = first if round_ == 1 else diags
        bad = sorted({d.span.line - 1 for d in diags if d.span is not None and (d.span.file or "<spec>") == display
                      and 0 < d.span.line <= len(lines)})
        if not bad:
            return None
        before = list(lines)
        for line in bad:
            start, end = _statement(lines, line) if round_ else _line_and_children(lines, line)
            lines[start:end] = [""] * (end - start)
        if lines == before and round_ != 0:
            return None
        recovered = "\n".join(lines)
        try:
            parse_source(recovered, display)
            return recovered
        except ArchcError as e:
            diags = e.diagnostics
        except RecursionError:
            return None
    return None


def _indent(line: str) -> int | None:
    stripped = line.lstrip(" \t")
    return None if not stripped or stripped.startswith("#") else len(line) - len(stripped)


def _depths(lines: list[str], upto: int) -> list[int]:
    """How many parentheses are open where each line starts (the indenter joins such lines to the one before)."""
    depth, starts = 0, []
    for text in lines[:upto + 1]:
        starts.append(depth)
        code = _code_part(text)
        depth = max(0, depth + code.count("(") - code.count(")"))
    return starts


def _line_and_children(lines: list[str], line: int) -> tuple[int, int]:
    """The bad line and the lines indented under it; or, when a parenthesis left open on an earlier line
    swallowed the bad line, that earlier line (the likely culprit: `conv (3, 3` typed a few lines up)."""
    starts = _depths(lines, line)
    if starts[line] > 0:
        start = line
        while start > 0 and starts[start] > 0:
            start -= 1
        return start, line
    own = _indent(lines[line]) or 0
    end = line + 1
    while end < len(lines) and (_indent(lines[end]) is None or _indent(lines[end]) > own):
        end += 1
    return line, end


def _statement(lines: list[str], line: int) -> tuple[int, int]:
    """The top-level statement around `line`: from the line that opened it (a parenthesis left open on an
    earlier line continues that line's statement) to the next line that starts at the margin."""
    starts = _depths(lines, line)
    start = line
    while start > 0 and not (_indent(lines[start]) == 0 and starts[start] == 0):
        start -= 1
    end = line + 1
    while end < len(lines) and _indent(lines[end]) != 0:
        end += 1
    return start, end


def _worker_main(conn: Any) -> None:
    """The worker process: check what the server sends, one job at a time, until the pipe closes."""
    os.dup2(2, 1)  # stdout is the server's channel to the editor: nothing of the worker's may land there
    sys.stdout = sys.stderr
    analyse("input 1\ndense 1\n", None)  # import and warm the pipeline before the first timed job
    conn.send(("ready", None))
    while True:
        try:
            job, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if job == "check":
                text, path, allow = args
                reply: tuple = ("ok", analyse(text, Path(path) if path else None, allow))
            else:  # "format"
                from .fmt import format_text

                try:
                    reply = ("ok", format_text(args))
                except (ArchcError, RecursionError):
                    reply = ("ok", None)  # the diagnostics already say why
        except Exception:  # a bug in archc: say so, keep the worker
            reply = ("bug", traceback.format_exc())
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


class _Timeout(Exception):
    pass


class Worker:
    """A worker process that runs checks and formatting for the server, under a time limit: a job that takes
    longer is stopped by ending the process (Python cannot stop a thread, and a long computation in C holds the
    interpreter's lock, so only a process keeps the message loop free). Jobs queue here; a new check of a
    document replaces its check still waiting. Results come back through each job's callback, on this thread."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._jobs: dict[Any, tuple[str, Any, Callable[[str, Any], None]]] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._process: Any = None
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="archc-worker", daemon=True)
        self._thread.start()

    def submit(self, key: Any, job: str, args: Any, done: Callable[[str, Any], None]) -> None:
        """`done(status, payload)`: status "ok", "timeout", "crash" or "bug"."""
        with self._cond:
            self._jobs.pop(key, None)  # keep the order of arrival; a resubmitted check goes last
            self._jobs[key] = (job, args, done)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._jobs.clear()
            self._cond.notify()
        self._end_process()

    def _run(self) -> None:
        try:
            self._start_process()  # now, so that the first check does not wait for the interpreter to start
        except OSError:
            log.exception("cannot start the worker process")
        while True:
            with self._cond:
                while not self._jobs and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                key = next(iter(self._jobs))
                job, args, done = self._jobs.pop(key)
            status, payload = self._call(job, args)
            try:
                done(status, payload)
            except Exception:
                log.exception("a worker callback failed")

    def _call(self, job: str, args: Any) -> tuple[str, Any]:
        try:
            if self._process is None or not self._process.is_alive():
                self._start_process()
            self._conn.send((job, args))
            if not self._conn.poll(self.timeout):
                raise _Timeout
            return self._conn.recv()
        except _Timeout:
            self._end_process()
            return "timeout", self.timeout
        except (EOFError, OSError):
            code = None
            if self._process is not None:
                self._process.join(5)  # reaped, so that its exit status is known
                code = self._process.exitcode
            self._end_process()
            return "crash", code

    def _start_process(self) -> None:
        context = multiprocessing.get_context("spawn")  # the server runs threads: no fork
        parent, child = context.Pipe()
        self._process = context.Process(target=_worker_main, args=(child,), name="archc-lsp-worker", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        try:  # its start is not the job's time
            ready = parent.poll(START_SECONDS) and parent.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._end_process()
            raise OSError("the worker process did not start")

    def _end_process(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is not None and process.is_alive():
            process.kill()
            process.join(5)
        if conn is not None:
            conn.close()


# ---------------------------------------------------------------- bounded message framing


_CONTENT_LENGTH = re.compile(rb"^Content-Length: ?(\d+)\r?\n$", re.IGNORECASE)
REFUSED_METHOD = "archc/refusedMessage"


class BoundedReader:
    """Standard input as pygls's message loop reads it, with every message's size bounded: a header line longer
    than MAX_HEADER_BYTES is skipped, and a message that declares more than `limit` bytes is dropped unread, in
    chunks (the declared length can be a lie: at a line that starts a new message's header, reading resumes
    there). pygls gets a small notification in its place, which the server answers with a log message."""

    def __init__(self, stream: Any, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.stream = stream
        self.limit = limit
        self._pending: bytes | None = None  # a header line found while dropping a message
        self._refused: int | None = None
        self._placeholder = b""

    def readline(self) -> bytes:
        if self._pending is not None:
            line, self._pending = self._pending, None
        else:
            line = self.stream.readline(MAX_HEADER_BYTES)
            if line and not line.endswith(b"\n"):  # an overlong header line: drop the rest of it
                while True:
                    more = self.stream.readline(MAX_HEADER_BYTES)
                    if not more or more.endswith(b"\n"):
                        break
                return b"X-Archc-Dropped: an overlong header line\r\n"
        match = _CONTENT_LENGTH.match(line)
        if match:
            declared = int(match.group(1))  # at most 4,096 digits: int() accepts them
            if declared > self.limit:
                self._refused = declared
                self._placeholder = (b'{"jsonrpc": "2.0", "method": "%s", "params": {"bytes": %d, "limit": %d}}'
                                     % (REFUSED_METHOD.encode(), min(declared, 10**18), self.limit))
                return b"Content-Length: %d\r\n" % len(self._placeholder)
            self._refused = None
            return b"Content-Length: %d\r\n" % declared  # pygls wants exactly this spelling
        return line

    def read(self, n: int) -> bytes:
        if self._refused is None:
            return self.stream.read(n)
        remaining, self._refused = self._refused, None
        at_line_start = True
        while remaining > 0:
            chunk = self.stream.readline(min(remaining, 64 * 1024))
            if not chunk:
                break
            if at_line_start and _CONTENT_LENGTH.match(chunk):  # the declared length was a lie: resynchronise
                self._pending = chunk
                break
            remaining -= len(chunk)
            at_line_start = chunk.endswith(b"\n")
        return self._placeholder


# ---------------------------------------------------------------- text helpers


def _lines(text: str) -> list[str]:
    """The lines as spans count them (and LSP does): split at `\\n`, a trailing `\\r` dropped."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _word_at(line: str, character: int) -> tuple[str, int, int] | None:
    for m in _WORD.finditer(line):
        if m.start() <= character <= m.end():
            return m.group(), m.start(), m.end()
    return None


def _contains(span: Span, line: int, character: int) -> bool:
    """Whether the 0-based position lies inside the 1-based span (end exclusive, but the end itself counts so
    that hovering just after the last character still finds the layer)."""
    start, end = (span.line - 1, span.column - 1), (span.end_line - 1, span.end_column - 1)
    return start <= (line, character) <= end


def _in_file(span: Span | None, display: str) -> bool:
    return span is not None and (span.file or "<spec>") == display


def _code_part(line: str) -> str:
    """The line without its comment (a `#` outside a string)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i]
    return line


def _line_map(old: str, new: str) -> dict[int, int]:
    """New line -> old line, for the lines that are unchanged between two versions of a document."""
    a, b = _lines(old), _lines(new)
    if len(a) > MAX_MAPPED_LINES or len(b) > MAX_MAPPED_LINES:
        return {}
    mapping: dict[int, int] = {}
    for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for i in range(block.size):
            mapping[block.b + i] = block.a + i
    return mapping


# ---------------------------------------------------------------- what the features say


def to_lsp(diag: Diagnostic, display: str, lines: list[str], codec: Any) -> types.Diagnostic:
    here = _in_file(diag.span, display)
    message = diag.message
    if diag.span is not None and not here:  # in an imported file: say where, at the top of this one
        message = f"{diag.span}: {message}"
    details = ([diag.label] if diag.label else []) + [f"note: {n}" for n in diag.notes] + (
        [f"help: {diag.help}"] if diag.help else [])
    return types.Diagnostic(
        range=_range(diag.span if here else None, lines, codec),
        message="\n".join([message, *details]),
        severity=types.DiagnosticSeverity.Error if diag.severity == "error" else types.DiagnosticSeverity.Warning,
        code=diag.code,
        source="archc",
    )


def _range(span: Span | None, lines: list[str], codec: Any) -> types.Range:
    if span is None:
        return types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0))
    return _client_range(lines, codec, span.line - 1, span.column - 1, span.end_line - 1, span.end_column - 1)


def _client_range(lines: list[str], codec: Any, line: int, column: int, end_line: int, end_column: int
                  ) -> types.Range:
    def position(ln: int, col: int) -> types.Position:
        if ln >= len(lines):
            return types.Position(line=len(lines), character=0)
        text = lines[ln]
        return types.Position(line=ln, character=codec.client_num_units(text[:max(0, col)]))

    return types.Range(start=position(line, column), end=position(end_line, end_column))


@dataclass
class Fix:
    """A did-you-mean of a diagnostic, ready to apply: replace `word` (0-based, code points) by `replacement`."""

    code: str
    line: int
    start: int
    end: int
    word: str
    replacement: str
    diagnostic_range: types.Range


def fixes_of(diag: Diagnostic, display: str, lines: list[str]) -> Fix | None:
    """The edit a diagnostic's `help: did you mean X?` proposes: the word of the message (in backticks) that
    occurs in the diagnostic's span and is the closest to X, replaced by X."""
    if not diag.help or not _in_file(diag.span, display):
        return None
    suggestion = _DID_YOU_MEAN.search(diag.help)
    if suggestion is None:
        return None
    replacement = suggestion.group(1)
    span = diag.span
    candidates = []
    for word in _QUOTED.findall(diag.message):
        for ln in range(span.line - 1, min(span.end_line, len(lines))):
            text = lines[ln]
            low = span.column - 1 if ln == span.line - 1 else 0
            high = span.end_column - 1 if ln == span.end_line - 1 else len(text)
            for m in re.finditer(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text):
                if low <= m.start() and m.end() <= max(high, low + 1):
                    ratio = difflib.SequenceMatcher(None, word, replacement).ratio()
                    candidates.append((ratio, ln, m.start(), m.end(), word))
                    break
    if not candidates:
        return None
    _, ln, start, end, word = max(candidates, key=lambda c: c[0])
    return Fix(diag.code, ln, start, end, word, replacement, types.Range(
        start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)))


def _describe(node: PlanNode) -> str:
    params = f"{node.params:,}"
    if node.non_trainable:
        params += f" ({node.trainable:,} trainable, {node.non_trainable:,} non-trainable)"
    return (f"**`{node.name}`** — `{node.opdef.label(node.args)}`\n\n"
            f"output **{fmt_shape(node.shape)}** · params {params} · MACs {node.macs:,} ({human(node.macs)})")


def _kind_doc(name: str, op: Op) -> str:
    """A layer kind as completion and hover show it: the registry's summary and how a spec writes it."""
    fields = op.args.model_fields
    parts = list(op.positional)
    parts += [f"{key}={fields[key].default!r}" for key in fields
              if key not in op.positional and not fields[key].is_required()]
    alias = f" (`{name}` is another name for `{op.name}`)" if name != op.name else ""
    lines = [f"**`{op.name}`**{alias} — {op.summary}", "", f"`{op.name} " + ", ".join(parts) + "`"]
    if op.flags:
        lines += ["", "flags: " + ", ".join(f"`{flag}` ({key}={value!r})" for flag, (key, value) in op.flags.items())]
    return "\n".join(lines)


def _block_sig(block: ir.BlockDef) -> str:
    from .fmt import expr

    params = ", ".join(p.name + (f"={expr(p.default)}" if p.default is not None else "") for p in block.params)
    return f"{block.name}({params})"


def _plan_hover(plan: Plan, spec: ir.Spec | None, display: str, line: int, character: int) -> str | None:
    """What inference says at a position: the layers a line makes, a stage's row, the whole network."""
    hits = [n for n in plan.nodes if _in_file(n.span, display) and _contains(n.span, line, character)]
    if hits:
        return _layers_hover(hits)
    if spec is None:
        return None
    for item, path in _scopes(spec.body, ""):  # a stage's header line (or a nested scope's): its row
        if _in_file(item.span, display) and item.span.line - 1 == line:
            nodes = [n for n in plan.nodes if n.name.startswith(path + ".")]
            if nodes:
                return (f"**`{path}`** — {len(nodes)} layers\n\n"
                        f"output **{fmt_shape(nodes[-1].shape)}** · params {sum(n.params for n in nodes):,} · "
                        f"MACs {human(sum(n.macs for n in nodes))}")
    if spec.input_span is not None and _contains(spec.input_span, line, character):
        return (f"**input** {fmt_shape(plan.input_shape)} → output **{fmt_shape(plan.output_shape)}**\n\n"
                f"{len(plan.nodes):,} layers · params {plan.total_params:,} · MACs {plan.macs:,} "
                f"({human(plan.macs)})")
    return None


def _layers_hover(hits: list[PlanNode]) -> str:
    """The innermost layers under the cursor: one described, or several (a block's call) listed."""
    def size(n: PlanNode) -> tuple[int, int]:
        return (n.span.end_line - n.span.line, n.span.end_column - n.span.column)

    smallest = min(size(n) for n in hits)
    nodes = [n for n in hits if size(n) == smallest]
    if len(nodes) == 1:
        return _describe(nodes[0])
    lines = [f"{len(nodes)} layers come from this line:", ""]
    lines += [f"- `{n.name}` → {fmt_shape(n.shape)}, {n.params:,} params" for n in nodes[:MAX_HOVER_INSTANCES]]
    if len(nodes) > MAX_HOVER_INSTANCES:
        lines.append(f"- ... and {len(nodes) - MAX_HOVER_INSTANCES} more")
    return "\n".join(lines)


def _scopes(items: list, prefix: str):
    """Every scope of a body with its qualified name (the prefix of its layers' names)."""
    for item in items:
        kind = getattr(item, "kind", "")
        if kind == "scope":
            path = f"{prefix}{item.name}"
            yield item, path
            yield from _scopes(item.body, path + ".")
        elif kind in ("group", "residual"):
            yield from _scopes(list(item.body) + list(getattr(item, "shortcut", None) or []), prefix)
        elif kind == "branches":
            for branch in item.branches:
                yield from _scopes(branch.body, prefix)


def _spec_hover(analysis: Analysis, plan: Plan | None, lines: list[str], line: int, character: int) -> str | None:
    """What the spec itself says at a position (no inference needed): params, blocks, kinds, calls."""
    spec, display = analysis.spec, analysis.display
    if spec is None:
        return None
    from .fmt import expr

    for param in spec.params:
        if _in_file(param.span, display) and _contains(param.span, line, character):
            value = plan.params.get(param.name) if plan is not None else None
            shown = f" = `{value}`" if value is not None else f" = `{expr(param.default)}`"
            return (f"**network parameter `{param.name}`**{shown}\n\n"
                    f"`--set {param.name}=...` (or `archc.check(..., {param.name}=...)`) overrides it")
    if spec.input_span is not None and _contains(spec.input_span, line, character) and spec.input is not None:
        return f"**input** `{expr(spec.input)}`: the size of one example (HxWxC, or a length)"
    for block in spec.blocks:
        if _in_file(block.span, display) and block.span.line - 1 == line:
            return _block_header_hover(block, plan, display, line, character)
    text = lines[line] if line < len(lines) else ""
    return _word_hover(analysis, text, character)


def _block_header_hover(block: ir.BlockDef, plan: Plan | None, display: str, line: int, character: int) -> str:
    """A block's header: one of its parameters, or the block with the layers it makes in the network."""
    from .fmt import expr

    for param in block.params:
        if param.span is not None and _contains(param.span, line, character):
            default = f", default `{expr(param.default)}`" if param.default is not None else " (required)"
            return f"**parameter `{param.name}`** of block `{block.name}`{default}"
    text = f"**block** `{_block_sig(block)}`"
    if plan is not None:
        nodes = [n for n in plan.nodes if _in_file(n.span, display) and block.span.line <= n.span.line
                 and n.span.line < block.span.end_line + (block.span.end_column > 1)]
        text += (f"\n\n{len(nodes):,} layers of the network come from it · params "
                 f"{sum(n.params for n in nodes):,} · MACs {human(sum(n.macs for n in nodes))}")
    return text


def _word_hover(analysis: Analysis, text: str, character: int) -> str | None:
    """The word under the cursor: a block called (`name(`) or a layer kind where an item starts."""
    hit = _word_at(_code_part(text), character)
    if hit is None:
        return None
    word, start, end = hit
    if text[end:].lstrip().startswith("("):
        block = analysis.blocks.get(word)
        if block is None:
            return None
        where = "" if _in_file(block.span, analysis.display) or block.span is None else f"\n\nfrom `{block.span.file}`"
        return f"**block** `{_block_sig(block)}`{where}"
    op = lookup(word)
    if op is not None and _is_item_start(text[:start]):
        return _kind_doc(word, op)
    return None


def _is_item_start(before: str) -> bool:
    """Whether a word that starts after `before` (its line up to it) stands where an item starts."""
    stripped = before.rstrip()
    return not stripped or stripped.endswith((":", ";", "(")) and not re.search(r"[A-Za-z0-9_]\($", stripped)


# ---------------------------------------------------------------- the server


@dataclass
class DocState:
    version: int | None = None  # of the latest text sent to the worker
    current: Analysis | None = None  # the latest check that finished
    good: Analysis | None = None  # the latest check that produced a plan
    fixes: list[Fix] = field(default_factory=list)
    _map_key: tuple = ()
    _map: dict[int, int] = field(default_factory=dict)

    def line_map(self, text: str) -> dict[int, int]:
        """Lines of `text` -> lines of the last text that checked, where they are unchanged (cached)."""
        key = (id(self.good), len(text), hash(text))
        if key != self._map_key:
            self._map_key, self._map = key, _line_map(self.good.text, text) if self.good is not None else {}
        return self._map


class ArchServer(LanguageServer):
    def __init__(self, allow: list[str] | None = None, timeout: float = CHECK_SECONDS) -> None:
        super().__init__("archc", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.cli_allow = [str(Path(a).resolve()) for a in allow or []]
        self.configured_allow: list[str] = []
        self.docs: dict[str, DocState] = {}
        self.worker = Worker(timeout)
        self.loop: asyncio.AbstractEventLoop | None = None

    # ---- configuration
    def configure(self, options: Any) -> None:
        """`initializationOptions` or `settings` of didChangeConfiguration: `{"allowImport": [DIR...],
        "checkTimeout": SECONDS}`, at the top or under `"archc"`."""
        if not isinstance(options, dict):
            return
        options = options.get("archc", options) if isinstance(options.get("archc", options), dict) else options
        allow = options.get("allowImport")
        if isinstance(allow, str):
            allow = [allow]
        if isinstance(allow, list):
            roots = self.folders()
            base = Path(roots[0]) if roots else Path.cwd()
            self.configured_allow = [str((base / a).resolve()) for a in allow if isinstance(a, str) and a]
        timeout = options.get("checkTimeout")
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout <= 3600:
            self.worker.timeout = float(timeout)

    def folders(self) -> list[str]:
        paths = []
        for folder in self.workspace.folders.values():
            path = _path_of(folder.uri)
            if path is not None:
                paths.append(str(path.resolve()))
        if not paths and self.workspace.root_uri:
            path = _path_of(self.workspace.root_uri)
            if path is not None:
                paths.append(str(path.resolve()))
        return paths

    def allowed(self) -> list[str]:
        """Where imports may come from besides a document's own folder: the workspace folders, the directories
        of `--allow-import` and of the `allowImport` setting."""
        return list(dict.fromkeys(self.folders() + self.cli_allow + self.configured_allow))

    # ---- documents
    def document(self, uri: str) -> Any:
        """The text of a document the client opened; None for any other URI (never read from its path)."""
        return self.workspace.text_documents.get(unquote(uri))

    def at_cursor(self, params: Any) -> tuple[str, int, int] | None:
        """(text, line, column) of a position request's opened document; None for a document never opened."""
        document = self.document(params.text_document.uri)
        if document is None:
            return None
        text = document.source
        line, column = _position(_lines(text), self.workspace.position_codec, params.position)
        return text, line, column

    def validate(self, uri: str) -> None:
        document = self.document(uri)
        if document is None:
            return
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        state = self.docs.setdefault(uri, DocState())
        version, text = document.version, document.source
        state.version = version
        path = _path_of(uri)
        loop = self.loop

        def done(status: str, payload: Any) -> None:
            loop.call_soon_threadsafe(self._checked, uri, version, text, status, payload)

        self.worker.submit(("check", uri), "check", (text, str(path) if path else None, self.allowed()), done)

    def _checked(self, uri: str, version: int | None, text: str, status: str, payload: Any) -> None:
        state = self.docs.get(uri)
        if state is None or self.document(uri) is None:
            return  # closed meanwhile
        display = str(_path_of(uri)) if _path_of(uri) is not None else "<spec>"
        if status == "ok":
            analysis = payload
        else:
            analysis = Analysis(text=text, display=display, diagnostics=[self._failure(status, payload)])
            if state.good is not None and state.good.text == text:
                analysis = state.good  # the same text checked before: keep its result
        analysis.version = version
        state.current = analysis
        if analysis.plan is not None:
            state.good = analysis
        lines = _lines(text)
        codec = self.workspace.position_codec
        published = []
        state.fixes = []
        for diag in analysis.diagnostics:
            lsp_diag = to_lsp(diag, analysis.display, lines, codec)
            published.append(lsp_diag)
            fix = fixes_of(diag, analysis.display, lines)
            if fix is not None:
                fix.diagnostic_range = lsp_diag.range
                state.fixes.append(fix)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, version=version, diagnostics=published))

    def _failure(self, status: str, payload: Any) -> Diagnostic:
        if status == "timeout":
            return Diagnostic("A301", f"checking this spec took longer than {payload:g} s; the language server "
                              "stopped it", help="`archc check FILE` shows what is slow; raise the limit with the "
                              "`checkTimeout` setting; hover shows the last version that checked")
        if status == "crash":
            return Diagnostic("A301", f"the checker stopped (exit status {payload}) while checking this spec",
                              help="it may have run out of memory; `archc check FILE` shows more")
        log.error("internal error in the checker:\n%s", payload)
        return Diagnostic("internal", "internal error while checking this spec: this is a bug in archc",
                          help="`archc check FILE` shows the traceback; please report it")

    async def analysis(self, uri: str) -> tuple[Any, DocState | None]:
        """The document and its latest check, having waited a moment for the check of its current text."""
        document = self.document(uri)
        state = self.docs.get(uri)
        if document is None or state is None:
            return document, state
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FRESH_WAIT_SECONDS
        while (state.current is None or state.current.version != document.version) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return document, state

    async def run_job(self, job: str, args: Any) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def done(status: str, payload: Any) -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result((status, payload)))

        self.worker.submit(("job", id(future)), job, args, done)
        return await future


def _position(lines: list[str], codec: Any, position: types.Position) -> tuple[int, int]:
    """A client position -> (line, column in code points)."""
    if position.line >= len(lines):
        return position.line, 0
    text = lines[position.line]
    units = 0
    for index, ch in enumerate(text):
        if units >= position.character:
            return position.line, index
        units += codec.client_num_units(ch)
    return position.line, len(text)


def hover_text(document_text: str, state: DocState, line: int, character: int) -> str | None:
    current = state.current
    if current is None:
        return None
    lines = _lines(document_text)
    fresh = current.text == document_text
    if fresh and current.plan is not None:
        return (_plan_hover(current.plan, current.spec, current.display, line, character)
                or _spec_hover(current, current.plan, lines, line, character))
    good = state.good  # the text has errors (or its check has not finished): the last version that checked
    if good is not None:
        old = line if good.text == document_text else state.line_map(document_text).get(line)
        if old is not None:  # the line is unchanged since then
            text = _plan_hover(good.plan, good.spec, good.display, old, character)
            if text is not None:
                return text if good.text == document_text else (
                    text + "\n\n*as of the last version that checked; the document has errors now*")
    return _spec_hover(current, None, lines, line, character) if fresh else None


# ---- completion


def _kind_items() -> list[types.CompletionItem]:
    items = []
    for name in list(OPS) + list(ALIASES):
        op = lookup(name)
        items.append(types.CompletionItem(
            label=name, kind=types.CompletionItemKind.Function, detail=op.summary,
            documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=_kind_doc(name, op)),
            sort_text=f"1{name}"))
    return items


@dataclass
class _Names:
    blocks: dict[str, tuple[list[str], str]]  # name -> (parameter names, signature)
    params: list[str]


def _names(text: str, state: DocState | None) -> _Names:
    """Blocks and network params in scope: the latest check's (imported blocks too), and what the current text
    declares (a block being written is not checked yet)."""
    blocks: dict[str, tuple[list[str], str]] = {}
    params: list[str] = []
    for analysis in ([state.good, state.current] if state is not None else []):
        if analysis is None:
            continue
        for name, block in analysis.blocks.items():
            blocks[name] = ([p.name for p in block.params], _block_sig(block))
        if analysis.spec is not None:
            params += [p.name for p in analysis.spec.params]
    for m in _BLOCK_HEADER.finditer(text):
        names = [p.split("=")[0].strip() for p in m.group(2).split(",") if p.strip()]
        blocks[m.group(1)] = (names, f"{m.group(1)}({m.group(2).strip()})")
    for m in _PARAM_LINE.finditer(text):
        params += [p.split("=")[0].strip() for p in _code_part(m.group(1)).split(",") if "=" in p]
    return _Names(blocks, [p for p in dict.fromkeys(params) if _WORD.fullmatch(p)])


def _enclosing_block(lines: list[str], line: int) -> list[str]:
    """The parameters of the block whose body holds `line` (from the text: it may not parse yet)."""
    for ln in range(min(line, len(lines) - 1), -1, -1):
        if _indent(lines[ln]) == 0:
            m = _BLOCK_HEADER.match(lines[ln])
            return [p.split("=")[0].strip() for p in m.group(2).split(",") if p.strip()] if m else []
    return []


def complete(text: str, state: DocState | None, line: int, character: int) -> list[types.CompletionItem]:
    """What may be written at the cursor, from the text before it on its line (the spec may not parse yet)."""
    lines = _lines(text)
    if line >= len(lines):
        return []
    before = lines[line][:character]
    if _code_part(before) != before or before.count('"') % 2:
        return []  # in a comment or a string
    return _Completion(before, _names(text, state), _enclosing_block(lines, line)).items()


class _Completion:
    """The completions of one cursor position: the statement keyword decides, then the innermost open
    parenthesis, then the item being written (`residual ...:`, a first word, a layer's arguments)."""

    def __init__(self, before: str, names: _Names, block_params: list[str]):
        self.before = before
        self.names = names
        self.values = names.params + [p for p in block_params if p not in names.params]

    def value_items(self, extra: Iterable[str] = ()) -> list[types.CompletionItem]:
        return ([types.CompletionItem(label=w, kind=types.CompletionItemKind.EnumMember, sort_text=f"0{w}")
                 for w in extra] +
                [types.CompletionItem(label=p, kind=types.CompletionItemKind.Variable, detail="parameter",
                                      sort_text=f"2{p}") for p in self.values])

    def items(self) -> list[types.CompletionItem]:
        statement = self.statement()
        if statement is not None:
            return statement
        segment_start, opened = self.segments()
        if opened is not None:
            inside = self.inside_parens(segment_start, *opened)
            if inside is not None:
                return inside
            segment_start = self.group_items_start(opened[0] + 1)
        segment = self.before[segment_start:].lstrip()
        residual = re.match(r"residual\s+(.*)$", segment)
        if residual and ":" not in residual.group(1):  # `residual [MERGE] [shortcut=KIND]:`
            return self.residual_header(residual.group(1))
        if _WORD.fullmatch(segment) or not segment:  # the first word of an item: a layer kind or a block
            at_top = segment_start == 0 and not self.before[:len(self.before) - len(segment)].strip()
            return self.first_words(at_top)
        return self.layer_arguments(segment)

    def statement(self) -> list[types.CompletionItem] | None:
        """Inside a `network`/`import`/`input`/`param`/`block` line; None elsewhere."""
        first = _WORD.match(self.before.lstrip())
        word = first.group() if first and self.before.startswith(first.group()) else None
        if word in ("network", "import", "input"):
            return []
        if word == "param" or (word == "block" and not re.search(r"\)\s*:", self.before)):
            return self.value_items() if "=" in self.before else []  # defaults of parameters
        return None

    def segments(self) -> tuple[int, tuple[int, str | None] | None]:
        """Where the current item starts (after `:` or `;` outside parentheses), and the innermost open
        parenthesis (its offset and the word before it) if any."""
        depth: list[tuple[int, str | None]] = []
        segment_start = 0
        for i, ch in enumerate(self.before):
            if ch == "(":
                m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)$", self.before[:i])
                depth.append((i, m.group(1) if m else None))
            elif ch == ")" and depth:
                depth.pop()
            elif ch in ":;" and not depth:
                segment_start = i + 1
        return segment_start, (depth[-1] if depth else None)

    def inside_parens(self, segment_start: int, opened_at: int, opener: str | None
                      ) -> list[types.CompletionItem] | None:
        """A block call's arguments, or a function's or tuple's values; None inside a group."""
        if opener is not None and opener in self.names.blocks:
            if "=" in self.before[opened_at + 1:].rsplit(",", 1)[-1]:
                return self.value_items()
            params, _ = self.names.blocks[opener]
            return [types.CompletionItem(label=f"{p}=", kind=types.CompletionItemKind.Property,
                                         detail=f"parameter of {opener}", sort_text=f"0{p}") for p in params
                    ] + self.value_items()
        if opener is not None or self.before[segment_start:opened_at].strip():
            return self.value_items()
        return None

    def group_items_start(self, start: int) -> int:
        """In a group `(...; ...)`, items start again after its parenthesis and each `;`."""
        last = self.before.rfind(";", start)
        return last + 1 if last >= 0 else start

    def residual_header(self, rest: str) -> list[types.CompletionItem]:
        if re.search(r"shortcut\s*=\s*\w*$", rest):
            return self.value_items(list(SHORTCUTS))
        return ([types.CompletionItem(label=m, kind=types.CompletionItemKind.Keyword, detail="the merge",
                                      sort_text=f"0{m}") for m in sorted(MERGES)]
                + [types.CompletionItem(label="shortcut=", kind=types.CompletionItemKind.Property,
                                        detail="where the shape changes: " + " or ".join(SHORTCUTS),
                                        sort_text="1shortcut")])

    def first_words(self, at_top: bool) -> list[types.CompletionItem]:
        items = _kind_items()
        items += [types.CompletionItem(label=name, kind=types.CompletionItemKind.Class, detail=sig,
                                       insert_text=f"{name}(", sort_text=f"0{name}")
                  for name, (_, sig) in self.names.blocks.items()]
        keywords = ITEM_KEYWORDS + (TOP_KEYWORDS if at_top else ())
        items += [types.CompletionItem(label=k, kind=types.CompletionItemKind.Keyword, sort_text=f"3{k}")
                  for k in keywords if lookup(k) is None]  # `add:`/`concat:` are kinds too: one item each
        return items

    def layer_arguments(self, segment: str) -> list[types.CompletionItem]:
        head = _WORD.match(segment)
        op = lookup(head.group()) if head else None
        if op is None:
            return self.value_items()
        current = segment[segment.rfind(",") + 1:] if "," in segment else segment[head.end():]
        if "=" in current:  # a named argument's value: the flags that set it, and parameters
            key = current.split("=")[0].strip()
            return self.value_items([flag for flag, (arg, _) in op.flags.items() if arg == key])
        given = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", segment))
        items = [types.CompletionItem(label=f"{key}=", kind=types.CompletionItemKind.Property,
                                      detail=f"argument of {op.name}", sort_text=f"0{key}")
                 for key in op.args.model_fields if key not in given]
        items += [types.CompletionItem(label=flag, kind=types.CompletionItemKind.EnumMember,
                                       detail=f"{key}={value!r}", sort_text=f"1{flag}")
                  for flag, (key, value) in op.flags.items()]
        if op.inputs == "one":
            items += [types.CompletionItem(label=word, kind=types.CompletionItemKind.Function,
                                           detail=f"appends a `{lookup(word).name}` layer", sort_text=f"1{word}")
                      for word in sorted(POST_OPS)]
        return items + self.value_items()


# ---- symbols and definitions


def _symbol(name: str, kind: types.SymbolKind, span: Span, lines: list[str], codec: Any, detail: str = "",
            children: list | None = None) -> types.DocumentSymbol:
    full = _range(span, lines, codec)
    line = span.line - 1
    column = span.column - 1
    text = lines[line] if line < len(lines) else ""
    found = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])").search(text, column)
    selection = (_client_range(lines, codec, line, found.start(), line, found.end()) if found
                 else types.Range(start=full.start, end=full.start))
    if (full.end.line, full.end.character) < (selection.end.line, selection.end.character):
        full = types.Range(start=full.start, end=selection.end)
    return types.DocumentSymbol(name=name, kind=kind, range=full, selection_range=selection, detail=detail or None,
                                children=children or None)


def _stage_symbols(items: list, display: str, lines: list[str], codec: Any) -> list[types.DocumentSymbol]:
    from .fmt import expr

    out = []
    for item in items:
        kind = getattr(item, "kind", "")
        nested: list = []
        if kind in ("scope", "group", "residual"):
            nested = list(item.body) + list(getattr(item, "shortcut", None) or [])
        elif kind == "branches":
            nested = [b for branch in item.branches for b in branch.body]
        children = _stage_symbols(nested, display, lines, codec)
        if kind == "scope" and _in_file(item.span, display):
            detail = expr(item.expect) if item.expect is not None else ""
            out.append(_symbol(item.name, types.SymbolKind.Namespace, item.span, lines, codec, detail, children))
        else:
            out += children
    return out


def document_symbols(analysis: Analysis, lines: list[str], codec: Any) -> list[types.DocumentSymbol]:
    from .fmt import expr

    spec, display = analysis.spec, analysis.display
    if spec is None:
        return []
    out = []
    if spec.name is not None:
        for ln, text in enumerate(lines):
            if re.match(rf"network\s+{re.escape(spec.name)}\b", text):
                span = Span(file=display, line=ln + 1, column=1, end_line=ln + 1, end_column=len(text) + 1)
                out.append(_symbol(spec.name, types.SymbolKind.Module, span, lines, codec, spec.description or ""))
                break
    if spec.input_span is not None and _in_file(spec.input_span, display):
        out.append(_symbol("input", types.SymbolKind.Variable, spec.input_span, lines, codec,
                           expr(spec.input) if spec.input is not None else ""))
    for imp in spec.imports:
        if _in_file(imp.span, display):
            out.append(_symbol(imp.path, types.SymbolKind.File, imp.span, lines, codec))
    for param in spec.params:
        if _in_file(param.span, display):
            out.append(_symbol(param.name, types.SymbolKind.Constant, param.span, lines, codec, expr(param.default)))
    for block in spec.blocks:
        if _in_file(block.span, display):
            params = [_symbol(p.name, types.SymbolKind.TypeParameter, p.span, lines, codec,
                              expr(p.default) if p.default is not None else "")
                      for p in block.params if _in_file(p.span, display)]
            out.append(_symbol(block.name, types.SymbolKind.Function, block.span, lines, codec, _block_sig(block),
                               params + _stage_symbols(block.body, display, lines, codec)))
    out += _stage_symbols(spec.body, display, lines, codec)
    return out


def definition(uri: str, text: str, state: DocState | None, line: int, character: int,
               codec: Any) -> types.Location | None:
    """Where the name under the cursor is defined: an imported file, a block, a parameter."""
    lines = _lines(text)
    if line >= len(lines):
        return None
    full = lines[line]
    m = re.match(r'\s*import\s+"([^"]*)"', full)
    if m and m.start(1) - 1 <= character <= m.end(1) + 1:
        path = _path_of(uri)
        return _location((path.parent / m.group(1)).resolve(), 1, 1) if path is not None else None
    hit = _word_at(_code_part(full), character)
    if hit is None:
        return None
    word, start, end = hit

    def here(ln: int, begin: int, stop: int) -> types.Location:
        return types.Location(uri=uri, range=_client_range(lines, codec, ln, begin, ln, stop))

    if full[end:].lstrip().startswith("("):  # a block call (or the block's own header)
        return _block_definition(word, lines, state, here)
    if word in _enclosing_block(lines, line):  # a parameter: the enclosing block's, then the network's
        found = _block_param_definition(word, lines, line)
        if found is not None:
            return here(*found)
    for ln, text_line in enumerate(lines):
        if re.match(r"param\s", text_line):
            found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}\s*=", text_line)
            if found:
                at_itself = (ln, found.start()) == (line, start)
                return None if at_itself else here(ln, found.start(), found.start() + len(word))
    return None


def _location(path: Path, line: int, column: int) -> types.Location:
    """A point in another file (an absolute path; 1-based line and column)."""
    point = types.Position(line=line - 1, character=column - 1)
    return types.Location(uri=path.as_uri(), range=types.Range(start=point, end=point))


def _block_definition(word: str, lines: list[str], state: DocState | None, here: Callable) -> types.Location | None:
    """A block's header in this text, or in the imported file the last checks found it in."""
    for ln, text_line in enumerate(lines):
        hm = _BLOCK_HEADER.match(text_line)
        if hm and hm.group(1) == word:
            return here(ln, hm.start(1), hm.end(1))
    for analysis in ([state.current, state.good] if state is not None else []):
        block = analysis.blocks.get(word) if analysis is not None else None
        if block is not None and block.span is not None and block.span.file:
            target = Path(block.span.file)  # an imported file: the loader resolved it to an absolute path
            if target.is_absolute():
                return _location(target, block.span.line, block.span.column)
    return None


def _block_param_definition(word: str, lines: list[str], line: int) -> tuple[int, int, int] | None:
    """(line, start, end) of `word` among the parameters of the block header above `line`."""
    here = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])")
    for ln in range(line, -1, -1):
        hm = _BLOCK_HEADER.match(lines[ln])
        if hm:
            pm = here.search(lines[ln], hm.start(2))
            return (ln, pm.start(), pm.end()) if pm else None
    return None


def make_server(allow: list[str] | None = None) -> ArchServer:
    server = ArchServer(allow)

    @server.feature(types.INITIALIZE)
    def initialize(ls: ArchServer, params: types.InitializeParams) -> None:
        ls.configure(params.initialization_options)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: ArchServer, params: types.DidChangeConfigurationParams) -> None:
        ls.configure(params.settings)
        for uri in list(ls.docs):
            ls.validate(uri)

    @server.feature(REFUSED_METHOD)
    def refused(ls: ArchServer, params: Any) -> None:
        size = params.get("bytes") if isinstance(params, dict) else getattr(params, "bytes", "?")
        ls.window_log_message(types.LogMessageParams(
            type=types.MessageType.Error,
            message=f"archc: refused a message of {size} bytes; a message may have at most {MAX_MESSAGE_BYTES:,} "
                    f"(a spec at most {MAX_SPEC_BYTES:,})"))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: ArchServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.docs[params.text_document.uri] = DocState()
        ls.validate(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: ArchServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.validate(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: ArchServer, params: types.DidSaveTextDocumentParams) -> None:
        if ls.document(params.text_document.uri) is None:
            return  # never opened: nothing is read from its path
        for uri in list(ls.docs):  # a saved file may be imported by the others
            ls.validate(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: ArchServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.docs.pop(params.text_document.uri, None)
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=params.text_document.uri,
                                                                            diagnostics=[]))

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: ArchServer, params: Any) -> None:
        ls.worker.stop()

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: ArchServer, params: types.HoverParams) -> types.Hover | None:
        document, state = await ls.analysis(params.text_document.uri)
        if document is None or state is None:
            return None
        text = document.source
        lines = _lines(text)
        line, column = _position(lines, ls.workspace.position_codec, params.position)
        value = hover_text(text, state, line, column)
        if value is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=value))

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=[" ", ",", "(", "=", ":", ";"]))
    def completion(ls: ArchServer, params: types.CompletionParams) -> types.CompletionList | None:
        found = ls.at_cursor(params)
        if found is None:
            return None
        text, line, column = found
        items = complete(text, ls.docs.get(params.text_document.uri), line, column)
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def goto_definition(ls: ArchServer, params: types.DefinitionParams) -> types.Location | None:
        found = ls.at_cursor(params)
        if found is None:
            return None
        text, line, column = found
        return definition(params.text_document.uri, text, ls.docs.get(params.text_document.uri), line, column,
                          ls.workspace.position_codec)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    async def symbols(ls: ArchServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        document, state = await ls.analysis(params.text_document.uri)
        if document is None or state is None or state.current is None:
            return []
        analysis = state.current
        if analysis.text != document.source:
            return []  # positions would be off; the client asks again after the next change
        return document_symbols(analysis, _lines(analysis.text), ls.workspace.position_codec)

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
    def code_action(ls: ArchServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        document, state = ls.document(uri), ls.docs.get(uri)
        if document is None or state is None or state.current is None or state.current.text != document.source:
            return []
        lines = _lines(document.source)
        codec = ls.workspace.position_codec
        wanted = params.range
        actions = []
        for fix in state.fixes:
            edit_range = _client_range(lines, codec, fix.line, fix.start, fix.line, fix.end)
            if not _overlaps(fix.diagnostic_range, wanted) and not _overlaps(edit_range, wanted):
                continue
            matching = [d for d in params.context.diagnostics
                        if d.code == fix.code and d.range == fix.diagnostic_range]
            actions.append(types.CodeAction(
                title=f"replace `{fix.word}` by `{fix.replacement}`", kind=types.CodeActionKind.QuickFix,
                diagnostics=matching or None, is_preferred=True,
                edit=types.WorkspaceEdit(changes={uri: [types.TextEdit(range=edit_range,
                                                                       new_text=fix.replacement)]})))
        return actions

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    async def formatting(ls: ArchServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
        document = ls.document(params.text_document.uri)
        if document is None:
            return None  # never opened: nothing is read from its path
        source = document.source
        status, formatted = await ls.run_job("format", source)
        if status != "ok" or formatted is None:
            return None
        if formatted == source:
            return []
        lines = _lines(source)
        end = types.Position(line=len(lines), character=0)
        return [types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end),
                               new_text=formatted)]

    return server


def _overlaps(a: types.Range, b: types.Range) -> bool:
    return (a.start.line, a.start.character) <= (b.end.line, b.end.character) and \
        (b.start.line, b.start.character) <= (a.end.line, a.end.character)


def serve(allow: list[str] | None = None) -> None:
    server = make_server(allow)
    try:
        server.start_io(BoundedReader(sys.stdin.buffer), sys.stdout.buffer)
    finally:
        server.worker.stop()
