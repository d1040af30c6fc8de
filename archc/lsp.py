"""`archc lsp`: a language server (pygls) for `.arch` files, over standard input and output.

It publishes the diagnostics of `archc check` as you type (the unsaved text, with imports resolved against
the file's folder), and on hover over a layer it shows what inference computed: the layer's qualified
name, its kind, output size, parameters and MACs (every instance when a block's layer is used many
times); over a stage's header line, the stage's totals. Spans are 1-based with exclusive ends; LSP
positions are 0-based.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from . import __version__, ir
from .diagnostics import ArchcError, Diagnostic, Span
from .ops import fmt_shape
from .plan import Plan, PlanNode
from .render import human

MAX_HOVER_INSTANCES = 12


def _path_of(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def analyse(text: str, path: Path | None) -> tuple[ir.Spec | None, Plan | None, list[Diagnostic], str]:
    """Check unsaved text as if it were the file at `path`. -> (spec, plan, diagnostics, display name)."""
    from .infer import infer
    from .load import gc_paused, load_text

    display = str(path) if path is not None else "<spec>"
    spec = None
    try:
        with gc_paused():
            loaded = load_text(text, path)
        spec = loaded.spec
        if spec.input is None and not spec.body:
            return spec, None, [], display  # a file of blocks: parsing and imports are all there is to check
        return spec, infer(spec, loaded.blocks, {}, loaded.sources, display), [], display
    except ArchcError as e:
        return spec, None, e.diagnostics, display
    except RecursionError:
        return spec, None, [Diagnostic("A301", "the spec nests too deeply to process")], display


def _range(span: Span | None) -> types.Range:
    if span is None:
        return types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0))
    return types.Range(start=types.Position(line=span.line - 1, character=span.column - 1),
                       end=types.Position(line=span.end_line - 1, character=span.end_column - 1))


def to_lsp(diag: Diagnostic, display: str) -> types.Diagnostic:
    here = diag.span is not None and (diag.span.file or "<spec>") == display
    message = diag.message
    if diag.span is not None and not here:  # in an imported file: say where, at the top of this one
        message = f"{diag.span}: {message}"
    details = ([diag.label] if diag.label else []) + [f"note: {n}" for n in diag.notes] + (
        [f"help: {diag.help}"] if diag.help else [])
    return types.Diagnostic(
        range=_range(diag.span if here else None),
        message="\n".join([message, *details]),
        severity=types.DiagnosticSeverity.Error if diag.severity == "error" else types.DiagnosticSeverity.Warning,
        code=diag.code,
        source="archc",
    )


def _contains(span: Span, line: int, character: int) -> bool:
    """Whether the 0-based position lies inside the 1-based span (end exclusive, but the end itself counts so
    that hovering just after the last character still finds the layer)."""
    start, end = (span.line - 1, span.column - 1), (span.end_line - 1, span.end_column - 1)
    return start <= (line, character) <= end


def _describe(node: PlanNode) -> str:
    params = f"{node.params:,}"
    if node.non_trainable:
        params += f" ({node.trainable:,} trainable, {node.non_trainable:,} non-trainable)"
    return (f"**`{node.name}`** — `{node.opdef.label(node.args)}`\n\n"
            f"output **{fmt_shape(node.shape)}** · params {params} · MACs {node.macs:,} ({human(node.macs)})")


def hover_text(spec: ir.Spec | None, plan: Plan | None, display: str, line: int, character: int) -> str | None:
    if plan is None:
        return None
    hits = [n for n in plan.nodes if n.span is not None and (n.span.file or "<spec>") == display
            and _contains(n.span, line, character)]
    if hits:
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
    if spec is not None:  # a stage's header line: the stage's row of the table
        for item in spec.body:
            if getattr(item, "kind", "") == "scope" and item.span is not None and item.span.line - 1 == line:
                nodes = [n for n in plan.nodes if n.stage == item.name]
                if nodes:
                    return (f"**`{item.name}`** — {len(nodes)} layers\n\n"
                            f"output **{fmt_shape(nodes[-1].shape)}** · params {sum(n.params for n in nodes):,} · "
                            f"MACs {human(sum(n.macs for n in nodes))}")
    return None


class ArchServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("archc", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.results: dict[str, tuple[ir.Spec | None, Plan | None, str]] = {}

    def validate(self, uri: str) -> None:
        document = self.workspace.get_text_document(uri)
        spec, plan, diagnostics, display = analyse(document.source, _path_of(uri))
        self.results[uri] = (spec, plan, display)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, version=document.version, diagnostics=[to_lsp(d, display) for d in diagnostics]))


def make_server() -> ArchServer:
    server = ArchServer()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: ArchServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.validate(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: ArchServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.validate(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: ArchServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.validate(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: ArchServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.results.pop(params.text_document.uri, None)
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=params.text_document.uri,
                                                                            diagnostics=[]))

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: ArchServer, params: types.HoverParams) -> types.Hover | None:
        spec, plan, display = ls.results.get(params.text_document.uri, (None, None, ""))
        text = hover_text(spec, plan, display, params.position.line, params.position.character)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: ArchServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
        from .fmt import format_text

        document = ls.workspace.get_text_document(params.text_document.uri)
        try:
            formatted = format_text(document.source)
        except ArchcError:
            return None  # the diagnostics already say why
        if formatted == document.source:
            return []
        lines = document.source.splitlines()
        end = types.Position(line=len(lines), character=0)
        return [types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end),
                               new_text=formatted)]

    return server


def serve() -> None:
    make_server().start_io()
