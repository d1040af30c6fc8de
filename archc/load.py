"""Reading specs: `.arch` text or JSON, imports of block files, and `--set` values.

Import rule: `import "file.arch"` is resolved against the directory of the file that imports it, and must
stay inside the directory of the spec being checked (or a directory the caller allows with
`allow=[...]`, the CLI's `--allow-import DIR`). Cycles are errors. Blocks a spec defines itself win
over imported ones of the same name, so a spec can adapt a shared block.
"""

from __future__ import annotations

import gc
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from json.decoder import scanstring
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import ir
from .diagnostics import ArchcError, Diagnostic, Span
from .parser import parse

MAX_SPEC_BYTES = 4 * 1024 * 1024  # far beyond any real spec; a bigger file is refused before it is read
MAX_NAME_LENGTH = 128


@contextmanager
def gc_paused():
    """Parsing and inference allocate many small objects and free none of them: the cyclic garbage collector
    would rescan them again and again (half the time of a 10,000-layer spec). Nested uses are harmless."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Loaded:
    spec: ir.Spec
    blocks: dict[str, ir.BlockDef] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    file: str | None = None


def _read(path: Path, display: str, span: Span | None, sources: dict[str, str]) -> str:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ArchcError([Diagnostic("A004", f"cannot read `{display}`: {e.strerror}", span)], sources) from None
    if size > MAX_SPEC_BYTES:
        raise ArchcError([Diagnostic("A301", f"`{display}` is {size:,} bytes; a spec may have at most "
                                     f"{MAX_SPEC_BYTES:,}", span)], sources)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ArchcError([Diagnostic("A002", f"`{display}` is not UTF-8 text (byte {e.start})", span,
                                     help="save the spec as UTF-8")], sources) from None
    except OSError as e:
        raise ArchcError([Diagnostic("A004", f"cannot read `{display}`: {e.strerror}", span)], sources) from None


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _json_positions(text: str) -> dict[tuple, tuple[int, int]]:
    """The start and end offsets of every value of a (valid) JSON text, by path: spans for JSON specs."""
    positions: dict[tuple, tuple[int, int]] = {}

    def value(i: int, path: tuple) -> int:
        i = _JSON_SPACE.match(text, i).end()
        start, ch = i, text[i]
        if ch == "{":
            i = _JSON_SPACE.match(text, i + 1).end()
            while text[i] != "}":
                key, i = scanstring(text, i + 1)
                i = _JSON_SPACE.match(text, i).end() + 1  # the colon
                i = _JSON_SPACE.match(text, value(i, path + (key,))).end()
                if text[i] == ",":
                    i = _JSON_SPACE.match(text, i + 1).end()
            i += 1
        elif ch == "[":
            i, index = _JSON_SPACE.match(text, i + 1).end(), 0
            while text[i] != "]":
                i = _JSON_SPACE.match(text, value(i, path + (index,))).end()
                index += 1
                if text[i] == ",":
                    i = _JSON_SPACE.match(text, i + 1).end()
            i += 1
        elif ch == '"':
            i = scanstring(text, i + 1)[1]
        elif text.startswith(("true", "null"), i):
            i += 4
        elif text.startswith("false", i):
            i += 5
        else:
            i = _JSON_NUMBER.match(text, i).end()
        positions[path] = (start, i)
        return i

    value(0, ())
    return positions


def _span_at(text: str, file: str | None, offsets: tuple[int, int]) -> dict:
    start, end = offsets
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    first_line_end = text.find("\n", start)
    end = min(end, first_line_end if first_line_end != -1 else len(text))  # carets stay on one line
    return {"file": file, "line": line, "column": column, "end_line": line, "end_column": column + max(1, end - start)}


def _add_spans(data, path: tuple, positions: dict, text: str, file: str | None) -> None:
    """Give every IR node of a JSON spec the position it has in the file, unless it carries one."""
    if isinstance(data, dict):
        for key, item in data.items():
            if key not in ("span", "input_span"):
                _add_spans(item, path + (key,), positions, text, file)
        if "line" not in data and "span" not in data and path in positions:  # a node, not a span
            data["span"] = _span_at(text, file, positions[path])
        if path == () and "input" in data and "input_span" not in data:
            data["input_span"] = _span_at(text, file, positions[("input",)])
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _add_spans(item, path + (index,), positions, text, file)


def _loc_path(data, loc: tuple) -> tuple:
    """Pydantic's error location without its union tags: the path into the JSON data."""
    path: tuple = ()
    for part in loc:
        if isinstance(data, dict) and part in data:
            data, path = data[part], path + (part,)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data, path = data[part], path + (part,)
    return path


def _is_file(text: str) -> bool:
    """Whether a one-line string names a file; one-line JSON text longer than a file name may be is not."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def parse_json(text: str, file: str | None = None) -> ir.Spec:
    """A JSON spec, in the IR's own schema (`archc schema`). Nothing in it is evaluated."""
    sources = {file or "": text}
    try:
        data = json.loads(text)
        positions = _json_positions(text)
    except json.JSONDecodeError as e:
        span = Span(file=file, line=e.lineno, column=e.colno, end_line=e.lineno, end_column=e.colno + 1)
        raise ArchcError([Diagnostic("A005", f"invalid JSON: {e.msg}", span)], sources) from None
    except RecursionError:
        raise ArchcError([Diagnostic("A301", "the JSON nests too deeply", None)], sources) from None
    if not isinstance(data, dict):
        raise ArchcError([Diagnostic("A005", "a JSON spec is an object", Span(**_span_at(text, file, positions[()])),
                                     help="`archc convert SPEC --to json` shows one")], sources)
    try:
        _add_spans(data, (), positions, text, file)
        return ir.Spec.model_validate(data)
    except RecursionError:
        raise ArchcError([Diagnostic("A301", "the JSON nests too deeply", None)], sources) from None
    except ValidationError as e:
        diags = []
        for err in e.errors()[:10]:
            path = _loc_path(data, err["loc"])
            where = ".".join(str(p) for p in err["loc"]) or "the top level"
            diags.append(Diagnostic("A005", f"`{where}` does not fit the spec schema: {err['msg'].lower()}",
                                    Span(**_span_at(text, file, positions[path])),
                                    help="`archc schema` prints the schema"))
        raise ArchcError(diags, sources) from None


def parse_source(text: str, file: str | None = None) -> ir.Spec:
    if (file or "").endswith(".json") or text.lstrip().startswith("{"):
        return parse_json(text, file)
    return parse(text, file)


def _check_names(spec: ir.Spec, sources: dict[str, str]) -> None:
    long = [b for b in spec.blocks if len(b.name) > MAX_NAME_LENGTH]
    if long:
        raise ArchcError([Diagnostic("A301", f"a name may have at most {MAX_NAME_LENGTH} characters", long[0].span)],
                         sources)


def load(source: Any, allow: list[str | Path] | None = None) -> Loaded:
    """A path, spec text, or an `ir.Spec` -> the spec with its imported blocks."""
    if isinstance(source, Loaded):
        return source
    if isinstance(source, ir.Spec):
        return Loaded(spec=source)
    sources: dict[str, str] = {}
    path: Path | None = None
    if isinstance(source, Path):
        path = source
    elif isinstance(source, str) and "\n" not in source and len(source) < 4096 and (
            source.endswith((".arch", ".json")) or _is_file(source)):
        path = Path(source)
    if path is not None:
        display = str(path)
        text = _read(path, display, None, sources)
        sources[display] = text
        spec = parse_source(text, display)
        root = path.resolve().parent
    else:
        display = "<spec>"
        text = str(source)
        sources[display] = text
        spec = parse_source(text, display)
        root = Path.cwd().resolve()
    _check_names(spec, sources)
    roots = [root] + [Path(a).resolve() for a in (allow or [])]
    blocks: dict[str, ir.BlockDef] = {}
    _load_imports(spec, root, roots, [display], blocks, sources)
    return Loaded(spec=spec, blocks=blocks, sources=sources, file=display if path is not None else None)


def _load_imports(spec: ir.Spec, here: Path, roots: list[Path], stack: list[str], blocks: dict[str, ir.BlockDef],
                  sources: dict[str, str]) -> None:
    for imp in spec.imports:
        target = (here / imp.path).resolve()
        display = imp.path
        if not any(target == r or r in target.parents for r in roots):
            raise ArchcError([Diagnostic("A107", f"`{imp.path}` is outside the spec's directory", imp.span,
                                         help="imports stay inside the directory of the spec; allow another "
                                         "directory with `--allow-import DIR`")], sources)
        key = str(target)
        if key in stack:
            raise ArchcError([Diagnostic("A107", f"`{imp.path}` imports itself through "
                                         + " -> ".join(Path(s).name for s in stack[1:] + [key]), imp.span,
                                         help="remove one of the imports of this cycle")], sources)
        text = _read(target, display, imp.span, sources)
        sources[str(target)] = text
        imported = parse_source(text, str(target))
        _check_names(imported, sources)
        if imported.body or imported.input is not None:
            raise ArchcError([Diagnostic("A107", f"`{imp.path}` is a network, not a block file", imp.span,
                                         help="an imported file holds only `block` definitions (and imports)")],
                             sources)
        _load_imports(imported, target.parent, roots, stack + [key], blocks, sources)
        for block in imported.blocks:
            blocks[block.name] = block


def parse_value(text: str, what: str = "value") -> Any:
    """A `--set name=value` value, in the spec language's expression syntax (`10`, `32x32x3`, `0.5`, `true`)."""
    from .infer import Symbol, evaluate

    spec = parse(f"param _={text}\n", f"<{what}>")
    value = evaluate(spec.params[0].default, {})
    return str(value) if isinstance(value, Symbol) else value
