"""Reading specs: `.arch` text or JSON, imports of block files, and `--set` values.

Import rule: `import "file.arch"` is resolved against the directory of the file that imports it, and must
stay inside the directory of the spec being checked (or a directory the caller allows with
`allow=[...]`, the CLI's `--allow-import DIR`). A path that starts with `archc/` names the shipped spec
library instead (`import "archc/blocks.arch"`), from any directory. Cycles are errors. Blocks a spec defines itself win
over imported ones of the same name, so a spec can adapt a shared block.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from json.decoder import scanstring
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import ir, parsecache
from .diagnostics import ArchcError, Diagnostic, Span
from .ir import MAX_INT, MAX_NAME_LENGTH, MAX_NESTING_DEPTH  # noqa: F401 - re-exported: the loader's limits

# Far beyond any real spec (the shipped ones are under 2 KB); a bigger file is refused before it is read. Parsing
# and checking run at about 50 KiB/s of the densest text (one layer per 5 bytes: 1 MiB of `relu` lines took 19-20 s
# of CPU, 530 MB, on a loaded 2-core machine; two thirds of it parsing), so the limit, with the layer limit, bounds
# the time a hostile spec can take to about 20 s.
MAX_SPEC_BYTES = 1024 * 1024
# JSON nests about twice as deep as the text it mirrors (an item, then its list of items), so every spec the
# text grammar accepts loads as JSON; the limit also stays below pydantic-core's own recursion guard (255).
MAX_JSON_DEPTH = 2 * MAX_NESTING_DEPTH + 50
# One budget for a spec and everything it imports (each file counted once): six 1 MiB imports would otherwise
# cost six times the worst single file. The shipped specs and their blocks.arch are under 10 KB together.
MAX_TOTAL_BYTES = MAX_SPEC_BYTES
# Files importing files: far deeper than any library needs, and shallow enough to stay clear of Python's stack.
MAX_IMPORT_DEPTH = 50
SPEC_SUFFIXES = (".arch", ".json")  # the only files an import reads


class Blocks(MutableMapping):
    """Block definitions by name, as a spec's imports give them. The blocks of a file that came from the parse
    cache stay pickled until a lookup asks for one: a spec calls a few of the shipped blocks.arch's 34 (ResNet-152
    two), and unpickling all of them was most of loading it (15 of 17 ms). Iterating names unpickles nothing."""

    def __init__(self) -> None:
        self._entries: dict[str, ir.BlockDef | _BlockFile] = {}  # a block, or the file that keeps it pickled

    def __getitem__(self, name: str) -> ir.BlockDef:
        entry = self._entries[name]
        return entry.block(name) if isinstance(entry, _BlockFile) else entry

    def __setitem__(self, name: str, block: ir.BlockDef) -> None:
        self._entries[name] = block

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def update(self, other=(), /, **more) -> None:  # another Blocks is taken as it is: nothing unpickled
        if isinstance(other, Blocks) and not more:
            self._entries.update(other._entries)
        else:
            super().update(other, **more)

    def add_file(self, file: _BlockFile) -> None:
        for name in file.names:
            self._entries[name] = file

    def __repr__(self) -> str:
        return f"Blocks({list(self._entries)})"


class _BlockFile:
    """An imported file's parse: the file without its blocks (its imports), and its blocks by name. As the parse
    cache keeps it, each block is pickled on its own, and unpickled once when first asked for."""

    def __init__(self, header: ir.Spec, blocks: dict[str, ir.BlockDef], pickled: dict[str, bytes] | None = None):
        self.header = header
        self.blocks = blocks  # those unpickled so far (all of them, after a parse)
        self.pickled = pickled or {}
        self.names = list(self.pickled or self.blocks)

    @classmethod
    def of(cls, spec: ir.Spec) -> _BlockFile:
        blocks = {block.name: block for block in spec.blocks}  # a name defined twice: the last one, as before
        return cls(spec.model_copy(update={"blocks": []}), blocks)

    def block(self, name: str) -> ir.BlockDef:
        block = self.blocks.get(name)
        if block is None:
            block = self.blocks[name] = pickle.loads(self.pickled[name])
        return block

    def __getstate__(self) -> tuple:
        pickled = {name: self.pickled.get(name) or pickle.dumps(self.blocks[name], protocol=pickle.HIGHEST_PROTOCOL)
                   for name in self.names}
        return self.header, pickled

    def __setstate__(self, state: tuple) -> None:
        header, pickled = state
        self.__init__(header, {}, pickled)


@dataclass
class Loaded:
    spec: ir.Spec
    blocks: Blocks | dict[str, ir.BlockDef] = field(default_factory=Blocks)
    sources: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    files: list[Path] = field(default_factory=list)  # every file read, resolved: the spec's, then its imports


def _read(path: Path, display: str, span: Span | None, sources: dict[str, str]) -> str:
    try:
        info = path.stat()
    except OSError as e:
        raise ArchcError([Diagnostic("A004", f"cannot read `{display}`: {e.strerror}", span)], sources) from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        raise ArchcError([Diagnostic("A004", f"cannot read `{display}`: not a regular file", span)], sources)
    size = info.st_size
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


def parse_json(text: str, file: str | None = None) -> ir.Spec:
    """A JSON spec, in the IR's own schema (`archc schema`). Nothing in it is evaluated."""
    sources = {file or "": text}
    top = Span(file=file, line=1, column=1, end_line=1, end_column=2)
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        span = Span(file=file, line=e.lineno, column=e.colno, end_line=e.lineno, end_column=e.colno + 1)
        raise ArchcError([Diagnostic("A005", f"invalid JSON: {e.msg}", span)], sources) from None
    except _JSONProblem as e:
        raise ArchcError([Diagnostic("A005", str(e), top)], sources) from None
    except RecursionError:
        raise ArchcError([Diagnostic("A301", f"the JSON nests more than {MAX_JSON_DEPTH} levels deep", top)],
                         sources) from None
    except ValueError as e:  # an integer of more than 4,300 digits
        raise ArchcError([Diagnostic("A301", f"a number in the JSON is too large: {e}", top)], sources) from None
    problem = _json_limits(data)
    if problem:
        raise ArchcError([Diagnostic("A301", problem, top)], sources)
    positions = _json_positions(text)  # recursive, but only as deep as _json_limits allowed
    if not isinstance(data, dict):
        raise ArchcError([Diagnostic("A005", "a JSON spec is an object", Span(**_span_at(text, file, positions[()])),
                                     help="`archc convert SPEC --to json` shows one")], sources)
    try:
        _add_spans(data, (), positions, text, file)
        # strict: JSON says what it means, so "64" is a string, never quietly the number 64
        return ir.Spec.model_validate(data, strict=True)
    except RecursionError:
        raise ArchcError([Diagnostic("A301", "the JSON nests too deeply", top)], sources) from None
    except ValidationError as e:
        raise ArchcError(_schema_diagnostics(e.errors(), data, text, file, positions), sources) from None


def _schema_diagnostics(errors: list[dict], data: Any, text: str, file: str | None, positions: dict) -> list:
    """Pydantic's errors as the spec's writer reads them: the JSON path of the value (`body[3].args[0].value`),
    what fits there, what is there. A value that fits no member of a union fails once per member, at several
    depths of pydantic's own location (`tagged-union[...]`, `int`): the failures are grouped by the place in
    the JSON, the deepest place is the telling one, and the alternatives of one place are said together."""
    groups: dict[tuple, list[dict]] = {}
    for err in errors:
        groups.setdefault(_loc_path(data, err["loc"]), []).append(err)
    reported: list[tuple] = []
    diags = []
    for path in sorted(groups, key=len, reverse=True):
        if any(path == done[:len(path)] for done in reported):
            continue  # an outer alternative of a failure already reported deeper inside it
        reported.append(path)
        diags.append(Diagnostic("A005", _schema_message(path, groups[path]),
                                Span(**_span_at(text, file, positions[path])),
                                help="`archc schema` prints the schema; `archc convert SPEC --to json` shows a "
                                     "spec written as JSON"))
        if len(diags) == 10:
            break
    return diags


_EXPECTED = {
    "bool_type": "true or false", "int_type": "an integer", "float_type": "a number", "string_type": "a string",
    "list_type": "a list", "dict_type": "an object", "model_type": "an object",
    "model_attributes_type": "an object with a `kind` (an expression such as {\"kind\": \"name\", \"id\": \"w\"})",
    "none_required": "null", "int_from_float": "an integer",
}


def _json_path(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _found(value: Any) -> str:
    if isinstance(value, str):
        return f"{json.dumps(value)[:60]} (a string)"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    return "a list" if isinstance(value, list) else "an object"


def _schema_message(path: tuple, errors: list[dict]) -> str:
    where = _json_path(path)
    first = errors[0]
    kind = first["type"]
    if kind == "missing":
        return f"`{where}` lacks the field `{first['loc'][-1]}`"
    if kind == "extra_forbidden":
        return f"`{_json_path(path[:-1])}`: `{first['loc'][-1]}` is not a field of this object"
    if kind == "union_tag_invalid":
        return (f"`{where}.kind` is {json.dumps(first['ctx']['tag'])}, which is none of "
                f"{first['ctx']['expected_tags']}")
    if kind == "union_tag_not_found":
        return f"`{where}` needs a `{first['ctx']['discriminator'].strip(chr(39))}` field"
    if kind == "string_pattern_mismatch":
        if first["ctx"]["pattern"] == ir.TEXT_PATTERN:
            return f"`{where}`: a string cannot hold a line break or another control character"
        return (f"`{where}`: {json.dumps(first['input'])[:60]} is not a name: letters, digits and `_`, not starting "
                f"with a digit, at most {MAX_NAME_LENGTH} characters")
    if kind == "literal_error":
        return f"`{where}`: expected {first['ctx']['expected']}, found {_found(first['input'])}"
    expected = []
    for err in errors:
        what = _EXPECTED.get(err["type"], err["msg"][0].lower() + err["msg"][1:])
        if what not in expected:
            expected.append(what)
    if "a number" in expected and "an integer" in expected:
        expected.remove("an integer")
    listed = expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
    unquote = "; a number is written without quotes" if isinstance(first["input"], str) and \
        _JSON_NUMBER.fullmatch(first["input"].strip()) and ("a number" in expected or "an integer" in expected) else ""
    return f"`{where}`: expected {listed}, found {_found(first['input'])}{unquote}"


class _JSONProblem(ValueError):
    pass


def _refuse_constant(name: str):
    raise _JSONProblem(f"`{name}` is not a JSON number")


def _json_limits(data: Any) -> str | None:
    """Depth and number sizes of decoded JSON, walked without recursion (validation and inference recurse)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"the JSON nests more than {MAX_JSON_DEPTH} levels deep"
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            return f"a number in the JSON is larger than {MAX_INT:,}"
    return None


def parse_source(text: str, file: str | None = None) -> ir.Spec:
    if (file or "").endswith(".json") or text.lstrip().startswith("{"):
        return parse_json(text, file)
    from .parser import parse  # here, not above: a run whose specs all come from the parse cache never imports lark

    return parse(text, file)


def load(source: Any = None, allow: list[str | Path] | None = None, *, text: str | None = None) -> Loaded:
    """A path, spec text, or an `ir.Spec` -> the spec with its imported blocks.

    A `Path` is always a path and `text=` always text. A plain string is a path when it names something that
    exists (whatever characters its name holds, line breaks included), or when it is one line ending in
    `.arch` or `.json` (a missing file is then "cannot read", not a syntax error); otherwise it is spec text.
    Programs that must not depend on that rule call `load_path` or `load_text`."""
    if text is not None:
        if source is not None:
            raise TypeError("pass either a spec or text=, not both")
        return load_text(text, None, allow)
    if isinstance(source, Loaded):
        return source
    if isinstance(source, ir.Spec):
        return Loaded(spec=source)
    if isinstance(source, Path):
        return load_path(source, allow)
    if isinstance(source, str):
        return load_path(Path(source), allow) if _names_a_path(source) else load_text(source, None, allow)
    if isinstance(source, os.PathLike):
        return load_path(Path(source), allow)
    raise TypeError(f"a spec is a path, spec text or an archc.ir.Spec, not {type(source).__name__}")


def _names_a_path(source: str) -> bool:
    try:
        os.lstat(source)
        return True
    except (OSError, ValueError):  # no such file, a name too long, a NUL character
        pass
    return "\n" not in source and source.endswith((".arch", ".json"))


def load_path(path: str | os.PathLike, allow: list[str | Path] | None = None) -> Loaded:
    """The spec file at `path` (never read as spec text, whatever its name) with its imported blocks. A file's
    parse is kept in the parse cache, as its imports' are; text (an editor's buffer) is parsed each time."""
    path = Path(path)
    return load_text(_read(path, str(path), None, {}), path, allow, cached=True)


def read_stream(stream, display: str = "<stdin>") -> str:
    """Spec text from a stream (standard input), held to the same size limit as a file: at most the limit and
    one byte are read, so an endless or huge stream is refused without being read to its end."""
    binary = getattr(stream, "buffer", stream)
    data = binary.read(MAX_SPEC_BYTES + 1)
    if isinstance(data, str):  # a text stream without a buffer (an editor's or a test's)
        data = data.encode("utf-8", "surrogateescape")
    if len(data) > MAX_SPEC_BYTES:
        raise ArchcError([Diagnostic("A301", f"`{display}` holds more than {MAX_SPEC_BYTES:,} bytes; a spec may "
                                     f"have at most {MAX_SPEC_BYTES:,}", None)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArchcError([Diagnostic("A002", f"`{display}` is not UTF-8 text (byte {e.start})", None,
                                     help="save the spec as UTF-8")]) from None


def text_bytes(text: str) -> int:
    """The size of spec text as a file holds it, in UTF-8 bytes: every size limit counts this, whatever way the
    text came in (a file, standard input, an editor's buffer), so `é` counts 2 wherever it is."""
    return len(text.encode("utf-8", "surrogatepass"))


def load_text(text: str, path: Path | None = None, allow: list[str | Path] | None = None, *,
              cached: bool = False) -> Loaded:
    """Spec text as if it were the file at `path` (None: no file, imports resolve against the working
    directory). An editor's unsaved buffer is checked this way. `cached`: the text is the file's own, so its
    parse may come from, and go to, the parse cache (an unsaved buffer's every version would only churn it)."""
    display = str(path) if path is not None else "<spec>"
    sources = {display: text}
    size = text_bytes(text)
    if size > MAX_SPEC_BYTES:
        raise ArchcError([Diagnostic("A301", f"the spec is {size:,} bytes; a spec may have at most "
                                     f"{MAX_SPEC_BYTES:,}")], sources)
    spec = parsecache.parsed(display, text, parse_source) if cached else parse_source(text, display)
    root = path.resolve().parent if path is not None else Path.cwd().resolve()
    roots = [root] + [Path(a).resolve() for a in (allow or [])]
    state = _Imports(sources=sources, total=size)
    if path is not None and path.exists():  # not `<stdin>`
        state.files.append(path.resolve())
    blocks = _load_imports(spec, root, roots, [display], state)
    return Loaded(spec=spec, blocks=blocks, sources=sources, file=display if path is not None else None,
                  files=state.files)


_BLOCK_FILES: dict[tuple[str, str], _BlockFile] = {}  # (file, text) -> its IR; the IR is immutable, so shared
_BLOCK_FILES_KEPT = 32


def _parse_block_file(text: str, file: str) -> _BlockFile:
    """Parse an imported file once per process and content (`archc check specs/*.arch` and a program compiling
    several specs read the shared blocks.arch again for each), and once per content between runs (parsecache)."""
    key = (file, text)
    parsed = _BLOCK_FILES.get(key)
    if parsed is None:
        parsed = parsecache.parsed(file, text, lambda text, file: _BlockFile.of(parse_source(text, file)), "blocks")
        if len(_BLOCK_FILES) >= _BLOCK_FILES_KEPT:
            _BLOCK_FILES.pop(next(iter(_BLOCK_FILES)))
        _BLOCK_FILES[key] = parsed
    return parsed


def clear_cache() -> None:
    """Forget the parsed block files (benchmarks measure a cold start with it)."""
    _BLOCK_FILES.clear()


LIBRARY_PREFIX = "archc/"  # `import "archc/blocks.arch"`: the shipped spec library, wherever the spec is


def library_dir() -> Path | None:
    """The shipped spec library: installed beside the package (archc/specs), or the repository's specs/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "specs", here.parent / "specs"):
        if candidate.is_dir():
            return candidate
    return None


def _library_target(imp: ir.Import, sources: dict[str, str]) -> Path:
    library = library_dir()
    name = imp.path[len(LIBRARY_PREFIX):]
    target = (library / name).resolve() if library is not None else None
    if target is None or library.resolve() not in target.parents:
        raise ArchcError([Diagnostic("A107", f"`{imp.path}` is not in archc's spec library", imp.span,
                                     help="`archc list` shows the library; its block file is `archc/blocks.arch`")],
                         sources)
    return target


@dataclass
class _Imports:
    """What one load has read so far: each file once, however many files import it."""

    sources: dict[str, str]
    total: int  # characters of the spec and bytes of every distinct file it imports
    files: list[Path] = field(default_factory=list)
    done: dict[str, Blocks] = field(default_factory=dict)  # file -> the blocks importing it gives


def _load_imports(spec: ir.Spec, here: Path, roots: list[Path], stack: list[str], state: _Imports) -> Blocks:
    """The blocks `spec`'s imports give, later imports winning over earlier ones (a file's own blocks over those
    it imports). Each file is read and walked once per load: a diamond of imports costs its number of files,
    not its number of paths; a file imported again gives the same blocks, as if it were walked again."""
    blocks = Blocks()
    sources = state.sources
    for imp in spec.imports:
        library = imp.path.startswith(LIBRARY_PREFIX)
        target = _library_target(imp, sources) if library else (here / imp.path).resolve()
        if library:
            roots = roots + [target.parent]  # what the library imports stays in the library
        elif not any(target == r or r in target.parents for r in roots):
            raise ArchcError([Diagnostic("A107", f"`{imp.path}` is outside the spec's directory", imp.span,
                                         help="imports stay inside the directory of the spec; allow another "
                                         "directory with `--allow-import DIR`; `import \"archc/blocks.arch\"` "
                                         "imports the shipped blocks from anywhere")], sources)
        if not imp.path.endswith(SPEC_SUFFIXES) or not target.name.endswith(SPEC_SUFFIXES):
            # refused before it is read, so no diagnostic can ever quote a line of it
            raise ArchcError([Diagnostic("A107", f"`{imp.path}` is not a spec file", imp.span,
                                         help="an import names a `.arch` or `.json` file of block definitions")],
                             sources)
        key = str(target)
        if key in stack:
            raise ArchcError([Diagnostic("A107", f"`{imp.path}` imports itself through "
                                         + " -> ".join(Path(s).name for s in stack[1:] + [key]), imp.span,
                                         help="remove one of the imports of this cycle")], sources)
        given = state.done.get(key)
        if given is None:
            if len(stack) > MAX_IMPORT_DEPTH:
                raise ArchcError([Diagnostic("A301", f"imports nest more than {MAX_IMPORT_DEPTH} files deep",
                                             imp.span)], sources)
            size = _size(target)
            if size is not None and state.total + size > MAX_TOTAL_BYTES:
                raise ArchcError([Diagnostic("A301", f"with `{imp.path}` ({size:,} bytes) the spec and its imports "
                                             f"exceed {MAX_TOTAL_BYTES:,} bytes together", imp.span,
                                             help="a spec and every file it imports may hold at most "
                                             f"{MAX_TOTAL_BYTES:,} bytes in all")], sources)
            text = _read(target, imp.path, imp.span, sources)
            state.total += text_bytes(text)
            state.files.append(target)
            sources[key] = text
            imported = _parse_block_file(text, key)
            if imported.header.body or imported.header.input is not None:
                raise ArchcError([Diagnostic("A107", f"`{imp.path}` is a network, not a block file", imp.span,
                                             help="an imported file holds only `block` definitions (and imports)")],
                                 sources)
            given = _load_imports(imported.header, target.parent, roots, stack + [key], state)
            given.add_file(imported)
            state.done[key] = given
        blocks.update(given)
    return blocks


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None  # `_read` says why


# A whole number, or whole numbers joined by `x`, of at most 18 digits each (so never above MAX_INT): the `--set`
# values written most, read as the parser reads them (tests/test_loader.py compares the two).
_PLAIN_VALUE = re.compile(r"[0-9]{1,18}(?:x[0-9]{1,18})*")


def parse_value(text: str, what: str = "value") -> Any:
    """A `--set name=value` value, in the spec language's expression syntax (`10`, `32x32x3`, `0.5`, `true`)."""
    from .diagnostics import RuleError
    from .exprs import Symbol, evaluate

    if _PLAIN_VALUE.fullmatch(text):  # `10`, `224x224x3`: what the parser makes of them, without importing it
        sides = tuple(int(side) for side in text.split("x"))
        return sides[0] if len(sides) == 1 else sides
    from .parser import parse

    spec = parse(f"param _={text}\n", f"<{what}>")
    default = spec.params[0].default
    if _reads_the_input(default):  # `in.c` has no input to read on the command line
        raise ArchcError([Diagnostic("A103", f"the value of `{what}` reads the input's shape (`in.h`, `in.w`, "
                                     "`in.c`, `in.n`), which a command-line value cannot", None,
                                     help=f"give `{what}` a number or a size, such as 10 or 32x32x3")])
    try:
        value = evaluate(default, {})
    except RuleError as e:  # `1/0`, an overflow, an unknown function
        raise ArchcError([Diagnostic(e.code, f"the value of `{what}`: {e.message}", None, help=e.help)]) from None
    return str(value) if isinstance(value, Symbol) else value


def _reads_the_input(expr: Any) -> bool:
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, BaseModel):
            if getattr(node, "kind", None) == "name" and str(getattr(node, "id", "")).startswith("in."):
                return True
            stack.extend(getattr(node, name) for name in type(node).model_fields if name != "span")
    return False
