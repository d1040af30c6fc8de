"""The `archc` command: thin. It parses arguments, calls the API, renders, and sets the exit status:
0 fine, 1 the spec is wrong, 2 usage error, 3 an internal error (a bug in archc).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

# archc uses no pydantic plugins; looking for them costs ~9 ms of entry-point scanning per run
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from . import __version__
from .diagnostics import ArchcError, Diagnostic, render_json

EXIT_SPEC, EXIT_INTERNAL = 1, 3  # usage errors exit 2 through click


def _color(stream) -> bool:
    """NO_COLOR (any value) turns colour off, FORCE_COLOR (any value) on even through a pipe, as
    no-color.org and force-color.org say; otherwise a terminal gets colour. Every `click.echo` of coloured text
    passes `color=` explicitly: left alone, click strips the escape codes whenever the stream is not a TTY."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or stream.isatty()


def _report(error: ArchcError, fmt: str = "text") -> None:
    if fmt in ("json", "jsonl"):
        click.echo(render_json(error.diagnostics), err=True)
    else:
        color = _color(sys.stderr)
        click.echo(error.render(color=color), err=True, nl=False, color=color)


def _warnings(plan, sources: dict[str, str] | None = None) -> None:
    """What checks but is likely a mistake (a plan's warnings), on standard error; the exit status stays 0."""
    if plan.warnings:
        from .diagnostics import render_text

        color = _color(sys.stderr)
        click.echo(render_text(plan.warnings, sources or {}, color=color), err=True, nl=False, color=color)


def _parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    """`--set NAME=VALUE` options: each value is parsed here, so a malformed one is a usage error that names
    the option (not a syntax error in a wrapper line of spec text that the user never wrote)."""
    from .loader import parse_value

    out: dict[str, Any] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got `{item}`", param_hint="--set NAME=VALUE")
        try:
            parse_value(value.strip(), name.strip())
        except ArchcError as e:
            first = e.diagnostics[0]
            raise click.BadParameter(f"`{item}`: the value `{value.strip()}` is not a value of the spec language "
                                     f"({first.message}); write a number, a size such as 32x32x3, or a name",
                                     param_hint="--set NAME=VALUE") from None
        out[name.strip()] = value.strip()
    return out


def _check(spec, sets: dict[str, Any], max_layers: int | None, allow: tuple[str, ...], reads: list | None = None):
    """`reads`, when given, receives every file the spec reads (its own and its imports): outputs never go there."""
    from . import check
    from .loader import Loaded, load_path

    try:
        if not isinstance(spec, Loaded):
            spec = load_path(spec, list(allow))  # a command-line argument is a path, whatever its characters
        if reads is not None:
            reads.extend(spec.files)
        return check(spec, max_layers=max_layers, allow=list(allow), **sets)
    except ArchcError as e:
        if any(d.code == "A108" for d in e.diagnostics):
            raise click.UsageError(e.diagnostics[0].message + (f" ({e.diagnostics[0].help})"
                                                               if e.diagnostics[0].help else "")) from None
        _blame_sets(e, sets)
        raise


def _blame_sets(error: ArchcError, sets: dict[str, Any]) -> None:
    """A diagnostic on a spec line that uses a parameter given by `--set` says where its value came from: the
    spec line is where the value failed, the option is where it was written."""
    import re

    from .diagnostics import source_lines

    for i, diag in enumerate(error.diagnostics):
        span = diag.span
        lines = source_lines(error.sources.get(span.file or "", "")) if span is not None else []
        line = lines[span.line - 1] if span is not None and 0 < span.line <= len(lines) else ""
        notes = [f"`{name}` is `{value}` here, from the command line's `--set {name}={value}`"
                 for name, value in sets.items() if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", line)]
        error.diagnostics[i] = diag.with_notes(after=notes)


class _Group(click.Group):
    """Turns every ArchcError into diagnostics with exit 1, and anything unexpected into a bug report."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ArchcError as e:
            _report(e, getattr(ctx, "obj", None) or "text")
            ctx.exit(EXIT_SPEC)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # `archc check ... | head`: the reader has all it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except RecursionError:
            click.echo("error[A301]: the spec nests too deeply to process", err=True)
            ctx.exit(EXIT_SPEC)
        except OSError as e:  # the user's environment (a full disk, a vanished directory), not a bug in archc
            where = f" `{e.filename}`" if e.filename else ""
            click.echo(f"error[A401]: cannot access{where}: {e.strerror or e}", err=True)
            ctx.exit(EXIT_SPEC)
        except Exception as e:  # noqa: BLE001 - the last line of defence: never a bare traceback
            import traceback

            click.echo(f"internal error: {type(e).__name__}: {e}\n"
                       "This is a bug in archc; please report it with the spec that caused it.", err=True)
            if os.environ.get("ARCHC_DEBUG"):
                traceback.print_exc()
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Shell completion (commands, options, backends, formats): add "
                    "`eval \"$(_ARCHC_COMPLETE=bash_source archc)\"` to ~/.bashrc (zsh: zsh_source, "
                    "fish: fish_source). `archc explain CODE` explains a diagnostic.")
@click.version_option(__version__, "-V", "--version", prog_name="archc", message="%(prog)s %(version)s")
def main() -> None:
    """archc: architecture specs for convolutional networks, checked and compiled to PyTorch or Keras.

    \b
    Example:
      archc check specs/resnet50.arch
    """


_set_option = click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
                           help="Override a network parameter, e.g. --set classes=10 --set input=32x32x3.")
_allow_option = click.option("--allow-import", "allow", multiple=True, metavar="DIR",
                             type=click.Path(file_okay=False), help="Also allow imports from DIR.")
_max_layers_option = click.option("--max-layers", type=click.IntRange(min=1), default=None,
                                  help="Refuse specs that expand to more layers (default 200,000).")


def _limit_options(command):
    """--max-layers and --allow-import: the limits on loading a spec (`diff` takes its own --set variants)."""
    return _max_layers_option(_allow_option(command))


def _load_options(command):
    """--set, --max-layers and --allow-import: what every command that loads a spec takes, in this order."""
    return _set_option(_limit_options(command))


@main.command(short_help="Validate specs and print their table of sizes, parameters and MACs.")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--level", type=click.Choice(["stage", "layer"]), default="stage", show_default=True,
              help="One row per stage of the table, or per layer.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl", "html"]), default="text",
              show_default=True,
              help="json: one JSON document (an array for several specs); jsonl: one JSON object per line and "
                   "spec; html: a page per spec (the table, the picture, the totals).")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="With --format html: an .html file (one spec) or a directory (default: SPEC_NAME.html here).")
@_load_options
@click.pass_context
def check(ctx, specs, level, fmt, output, sets, max_layers, allow) -> None:
    """Validate specs and print their layer table: output sizes, parameters, MACs. `-` reads a spec from
    standard input. Exit status 0 valid, 1 a spec is wrong, 2 a usage error.

    \b
    Examples:
      archc check specs/resnet50.arch
      archc check specs/*.arch --format json
      archc check specs/resnet50.arch --set classes=10 --set input=32x32x3
      cat my.arch | archc check -
    """
    ctx.obj = fmt
    if output is not None and fmt != "html":
        raise click.BadParameter("only --format html writes files; redirect standard output for text and json",
                                 param_hint="-o")
    overrides = _parse_sets(sets)
    if fmt == "html":
        _check_output_paths(specs, output)
    documents: list[dict | None] = [_check_one(spec, fmt, level, output, overrides, max_layers, allow)
                                    for spec in specs]
    failed = any(doc is None or doc.get("ok") is False for doc in documents)
    documents = [doc for doc in documents if doc]  # text and html print as they go
    if fmt == "jsonl":
        for doc in documents:
            click.echo(json.dumps(doc))
    elif fmt == "json" and documents:
        click.echo(json.dumps(documents[0] if len(specs) == 1 else documents))
    if failed:
        ctx.exit(EXIT_SPEC)


def _check_one(spec: str, fmt: str, level: str, output, overrides: dict, max_layers, allow) -> dict | None:
    """Check one spec and print or write its result; for json and jsonl, the document to print (`ok` says
    whether it checked). For text and html: {} when it checked, None when it failed (reported already)."""
    if spec != "-" and not Path(spec).is_file():
        raise click.BadParameter(f"no such file: {spec}", param_hint="SPECS")
    try:
        from .loader import load_path, load_text

        # a command-line argument is a path, whatever its characters
        loaded = load_text(_stdin_text(), Path("<stdin>"), list(allow)) if spec == "-" \
            else load_path(spec, list(allow))
        if loaded.spec.input is None and not loaded.spec.body and loaded.spec.blocks:
            return _report_block_file(loaded, fmt)
        plan = _check(loaded, overrides, max_layers, allow)
    except ArchcError as e:
        if fmt in ("json", "jsonl"):  # a tool reads one stream: the diagnostics take the spec's place
            return {"file": spec, "ok": False, "diagnostics": [d.to_dict() for d in e.diagnostics]}
        _report(e, fmt)
        return None
    notes = _notes(loaded, overrides)
    if fmt in ("json", "jsonl"):
        return dict(plan.to_json(), ok=True, notes=notes, warnings=[d.to_dict() for d in plan.warnings])
    if fmt == "html":
        _write_report(plan, _report_target(spec, output), loaded.files)
    else:
        from .render import check_table

        bold = _color(sys.stdout)
        click.echo(check_table(plan, level, bold=bold), color=bold)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    _warnings(plan, loaded.sources)
    return {}


def _stdin_text() -> str:
    """A spec from standard input (`archc check -`, `archc fmt -`), held to the size limit of a spec file: at
    most the limit and one byte are read."""
    from .loader import read_stream

    return read_stream(sys.stdin, "<stdin>")


def _notes(loaded, overrides: dict[str, Any]) -> list[str]:
    """What the output leaves unchecked: `--set input=...` turns the spec's expected sizes off (they are the
    paper's, for the spec's own input size)."""
    if "input" in overrides and _expects_sizes(loaded.spec):
        return [f"the stage sizes the spec states were not checked: --set input={overrides['input']} changes "
                "the input size they were written for"]
    return []


def _expects_sizes(node) -> bool:
    """Whether a spec (or any IR node below it) states an expected size: `conv3_x 28x28 :` or `-> 28x28x512`."""
    from pydantic import BaseModel

    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseModel):
            if getattr(item, "expect", None) is not None:
                return True
            stack.extend(getattr(item, f) for f in type(item).model_fields)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _report_target(spec: str, output: str | None) -> Path:
    """Where the page of `spec` goes: `-o page.html`, or SPEC_NAME.html in `-o DIR` (default: here)."""
    if output and output.endswith(".html"):
        return Path(output)
    return Path(output or ".") / f"{'stdin' if spec == '-' else Path(spec).stem}.html"


def _check_output_paths(specs: tuple[str, ...], output: str | None) -> None:
    """Two specs of one name (`a/net.arch`, `b/net.arch`) would write one page, the second over the first:
    refused before anything is written."""
    if output and output.endswith(".html") and len(specs) > 1:
        raise click.BadParameter("one .html file holds one spec; give a directory", param_hint="-o")
    by_target: dict[Path, dict] = {}
    for spec in specs:  # one file named twice is one page
        by_target.setdefault(_report_target(spec, output), {})[spec if spec == "-" else Path(spec).resolve()] = spec
    if len(specs) > 1:  # several specs also get an index page
        by_target.setdefault(Path(output or ".") / "index.html", {})["index"] = "the index page"
    for target, names in by_target.items():
        if len(names) > 1:
            raise ArchcError([Diagnostic("A401", " and ".join(f"`{n}`" for n in names.values())
                                         + f" would both write `{target}`", None,
                                         help="report specs of the same name one at a time, each with its own -o")])


def _report_block_file(loaded, fmt: str) -> dict:
    """A file of block definitions has no network to check; its blocks are checked where networks call them."""
    names = [b.name for b in loaded.spec.blocks]
    if fmt not in ("json", "jsonl"):
        click.echo(f"{loaded.file}: a block file ({', '.join(names)}); "
                   "its blocks are checked where a network calls them\n")
    return {"name": Path(loaded.file).stem, "file": loaded.file, "blocks": names, "ok": True}


MAX_BUILD_PARAMS = 2_000_000_000  # `build` refuses bigger models unless --max-params raises the limit


class _Completed(click.ParamType):
    """A free-form value whose shell completion offers the known ones. The backends are found lazily (entry
    points cost ~9 ms to scan), so a click.Choice built at import would slow every `archc` run; an unknown
    value is refused later, with a did-you-mean."""

    name = "text"

    def __init__(self, values) -> None:
        self.values = values

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(v) for v in self.values() if v.startswith(incomplete)]


def _backend_names() -> list[str]:
    from .backends import available

    return sorted(available())


# What an output file's extension says about `build`: (backend or None for any, format).
BUILD_EXTENSIONS = {".py": (None, "py"), ".pt2": ("torch", "pt2"), ".keras": ("keras", "keras"),
                    ".onnx": ("onnx", "onnx")}


def _build_target(output: str | None, backend: str | None, fmt: str | None) -> tuple[str, str | None]:
    """The backend and format of `archc build`, from the options and the output's extension: an unambiguous
    extension decides what was left out, and a contradiction is a usage error, never a file of the wrong kind
    under a misleading name."""
    suffix = Path(output).suffix.lower() if output else ""
    if not suffix:
        return backend or "torch", fmt
    if suffix not in BUILD_EXTENSIONS:
        if fmt is not None:  # the extension says nothing and --format says it all (a plug-in's own format too)
            return backend or "torch", fmt
        known = ", ".join(BUILD_EXTENSIONS)
        raise click.BadParameter(f"cannot tell what to write from the extension of `{output}`: archc writes "
                                 f"{known}, or give --format", param_hint="-o")
    ext_backend, ext_fmt = BUILD_EXTENSIONS[suffix]
    if backend is not None and ext_backend is not None and backend != ext_backend:
        raise click.BadParameter(f"`{output}` is a {ext_backend} file ({suffix}), but --backend {backend} was "
                                 f"asked for; name the file for the {backend} backend or drop --backend",
                                 param_hint="--backend / -o")
    if fmt is not None and fmt != ext_fmt:
        raise click.BadParameter(f"`{output}` ends in {suffix} but --format {fmt} was asked for; make them agree",
                                 param_hint="--format / -o")
    return backend or ext_backend or "torch", ext_fmt


@main.command(short_help="Compile a spec into a PyTorch, Keras or ONNX model file.")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", "-b", type=_Completed(_backend_names), default=None,
              help="torch (default), keras, onnx, or a plug-in backend; -o's extension can say it.")
@click.option("--format", "fmt", type=_Completed(lambda: ["py", "pt2", "keras", "onnx"]), default=None,
              help="py (standalone source, every backend), pt2 (torch.export archive), keras (Keras archive), "
                   "onnx; default: -o's extension, else the backend's first.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output path; .py, .pt2, .keras and .onnx say the format (default: NAME_BACKEND.EXT).")
@click.option("--logits", is_flag=True, help="Leave out a final softmax (losses such as CrossEntropyLoss want logits).")
@click.option("--max-params", type=click.IntRange(min=1), default=MAX_BUILD_PARAMS, show_default=True,
              help="Refuse to build models with more parameters.")
@_load_options
def build(spec, backend, fmt, output, logits, max_params, sets, max_layers, allow) -> None:
    """Compile a spec into a model file: standalone Python source (which needs no framework to be written),
    or a framework's archive. The message reports the trainable parameters the framework will count.

    \b
    Examples:
      archc build specs/resnet50.arch                      # resnet50_torch.py
      archc build specs/resnet50.arch -o resnet50.onnx     # the extension picks the ONNX backend
      archc build specs/vgg16.arch --backend keras --format keras --logits
    """
    gc.enable()  # a framework builds and drops much of its own: let the collector run (see `run`)
    from .backends import get_backend

    backend, fmt = _build_target(output, backend, fmt)
    reads: list[Path] = []
    plan = _check(spec, _parse_sets(sets), max_layers, allow, reads)
    _warnings(plan)
    if plan.total_params > max_params:
        raise ArchcError([Diagnostic("A302", f"`{plan.name}` has {plan.total_params:,} parameters, more than the "
                                     f"build limit of {max_params:,}", None,
                                     help="raise the limit with --max-params if you mean it")])
    impl = get_backend(backend)
    fmt = fmt or impl.file_formats[0]
    if fmt not in impl.file_formats:
        raise click.BadParameter(f"the {backend} backend writes {', '.join(impl.file_formats)}, not {fmt}",
                                 param_hint="--format")
    target = Path(output) if output else Path(f"{plan.name}_{backend}.{fmt}")
    with _progress(f"building {target.name} ({backend}, {fmt})", slow=fmt != "py"):
        data = _write_model(impl, backend, plan, fmt, logits)
    from .files import write_atomic

    write_atomic(target, data, protect=[Path(spec), *reads])
    click.echo(f"wrote {target} ({backend}, {fmt}): {plan.trainable_params:,} trainable parameters"
               + (f" (+ {plan.non_trainable_params:,} non-trainable: batchnorm statistics)"
                  if plan.non_trainable_params else ""), err=True)


def _write_model(impl, backend: str, plan, fmt: str, logits: bool) -> bytes:
    """The backend's file. A framework missing at this point (the `.py` source needs none; archives and
    in-memory models do) is the user's environment, reported with the line that installs it."""
    try:
        return impl.write(plan, fmt, logits=logits)
    except ImportError as e:
        from .codes import install_hint

        extra = backend if backend in ("torch", "keras", "onnx") else "all"
        raise ArchcError([Diagnostic("A403", f"writing {fmt} with the `{backend}` backend needs a package that is "
                                     f"not installed: {e.name or e}", None,
                                     help=f"{install_hint(extra)}; the `py` format needs no framework")]) from None


@contextmanager
def _progress(what: str, slow: bool):
    """A ticking `building ... 12s` line on a terminal's stderr while a framework builds (Keras and pt2
    archives take 10-25 s). click has no spinner and this one line does not justify a dependency."""
    if not slow or not sys.stderr.isatty():
        yield
        return
    import threading
    import time

    done = threading.Event()
    start = time.monotonic()

    def tick() -> None:
        while not done.wait(0.5):
            click.echo(f"\r{what}... {time.monotonic() - start:.0f}s", err=True, nl=False)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        click.echo("\r\x1b[2K", err=True, nl=False)  # erase the line


@main.command("import", short_help="Read a model (PyTorch, ONNX, Keras) and write it as a spec.")
@click.argument("source")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the spec here (default: standard output).")
@click.option("--input", "input_size", metavar="HxWxC", default=None,
              help="The input's size, where the model does not say it (default for PyTorch modules: 224x224x3).")
@click.option("--partial", is_flag=True,
              help="At an operation the language cannot express, write the layers before it, with a comment at "
                   "the gap.")
def import_command(source, output, input_size, partial) -> None:
    """Read a model and write the spec a person would have written: repeated structures as blocks called
    with `x N`, stage rows with their checked sizes, names from the model's own module paths. The spec is
    checked to be the same network before it is written (docs/importing.md).

    SOURCE is `module:callable` (imported, then called with no arguments: a PyTorch module or a Keras model),
    an `.onnx`, `.keras` or `.h5` file, or a spec (`.arch`, `.json`: how archc would write it back).

    \b
    Examples:
      archc import torchvision.models:resnet50 -o resnet50.arch
      archc import model.onnx
      archc import specs/densenet121.arch --input 112x112x3
    """
    # frameworks build and drop much of their own: let the collector run (see `run`); an ONNX file (one protobuf
    # message) or a spec builds no framework model, and one full collection costs a tenth to a third of its import
    if Path(source).suffix.lower() not in (".onnx", ".arch", ".json"):
        gc.enable()
    shape = _input_size(input_size)
    from .decompile import import_model

    with _progress(f"importing {source}", slow=True):
        text = import_model(source, shape, partial=partial)
    protect = [Path(source)] if Path(source).is_file() else []
    _write_or_echo(text, output, protect)
    if output is not None:
        click.echo(f"wrote {output} ({len(text.splitlines())} lines)", err=True)


def _input_size(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    from .loader import parse_value

    try:
        value = parse_value(text, "input")
    except ArchcError as e:
        raise click.BadParameter(f"`{text}` is not a size ({e.diagnostics[0].message}); write HxWxC, such as "
                                 "224x224x3", param_hint="--input") from None
    value = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(value, tuple) and len(value) in (1, 3)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value)):
        raise click.BadParameter(f"`{text}` is not a size; write HxWxC, such as 224x224x3", param_hint="--input")
    return value


@main.command(short_help="List the layer kinds, or show one in detail.")
@click.argument("kind", required=False)
def ops(kind) -> None:
    """List the layer kinds a spec can use; with KIND, that kind's arguments, defaults, flags and rules.

    \b
    Examples:
      archc ops
      archc ops conv
    """
    from .ops import ALIASES, OPS

    if kind is not None:
        click.echo(_op_detail(kind))
        return
    for name, op in OPS.items():
        aliases = [a for a, target in ALIASES.items() if target == name]
        extra = f" (also {', '.join(aliases)})" if aliases else ""
        click.echo(f"{name:<14} {op.summary}{extra}")


def _op_detail(kind: str) -> str:
    """`archc ops KIND`: everything the ops table says about one kind."""
    from .ops import lookup

    op = lookup(kind)
    if op is None:
        raise _unknown_kind(kind)
    lines = _op_names(op) + _op_arguments(op) + _op_flags(op) + _op_usage(op) + _op_rules(op) + _op_examples(op)
    lines += ["", f"docs/language.md#{op.name}: the shape and parameter rules with worked examples"]
    return "\n".join(lines)


def _unknown_kind(kind: str) -> click.BadParameter:
    from .diagnostics import did_you_mean
    from .ops import ALIASES, OPS

    suggestion = did_you_mean(kind, list(OPS) + list(ALIASES))
    return click.BadParameter(f"unknown layer kind `{kind}`"
                              + (f"; {suggestion}" if suggestion else "; `archc ops` lists them"),
                              param_hint="KIND")


def _show_value(value) -> str:
    """A default or flag value as a spec writes it (`true`, `3` for 3x3, `1x7`, `none`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(map(str, value)) if len(set(value)) > 1 else str(value[0])
    return "none" if value is None else str(value)


def _op_names(op) -> list[str]:
    """The kind's summary, the other names it is written with, and the names its layers get."""
    from .ops import ALIASES

    aliases = [a for a, target in ALIASES.items() if target == op.name]
    lines = [f"{op.name}: {op.summary}"]
    if aliases:
        lines.append(f"  also written: {', '.join(aliases)}")
    lines.append(f"  example name in a scope: {op.prefix}, {op.prefix}1, {op.prefix}2, ...")
    return lines


def _op_arguments(op) -> list[str]:
    """One line per argument, in the order a spec line may give them."""
    fields = op.args.model_fields
    if not fields:
        return []
    lines = ["", "arguments (positional first, in order; the rest as name=value):"]
    order = list(op.positional) + [k for k in fields if k not in op.positional]
    for key in order:
        info = fields[key]
        default = "required" if info.is_required() else f"default {_show_value(info.default)}"
        where = "positional" if key in op.positional else "keyword"
        lines.append(f"  {key:<16} {where:<10} {default}")
    return lines


def _op_flags(op) -> list[str]:
    if not op.flags:
        return []
    return ["", "flags (bare words):"] + [f"  {word:<16} means {arg}={_show_value(value)}"
                                          for word, (arg, value) in op.flags.items()]


def _op_usage(op) -> list[str]:
    """Where the kind may be written other than as a layer line of its own."""
    from .ops import ALIASES, POST_OPS

    lines = []
    trailing = sorted(w for w in POST_OPS if ALIASES.get(w, w) == op.name)
    if trailing:
        lines += ["", f"may trail another layer's arguments: conv 3x3, 64, {trailing[0]}"]
    if op.inputs == "many":
        lines += ["", f"takes several inputs: written `residual {op.name}:` over a body or `{op.name}:` over one "
                  "branch a line, not as a layer line"]
    return lines


def _op_rules(op) -> list[str]:
    """The shape and parameter rules: the entry's own words, else the docstring of the method that computes them."""
    rules = [(label, getattr(op, attr, None))
             for label, attr in (("shape", "shape_rule"), ("parameters", "param_rule"))]
    rules += [(label, " ".join((getattr(type(op), method).__doc__ or "").split()))
              for label, method in (("shape", "shape"), ("parameters", "params")) if not dict(rules).get(label)]
    rules = [(label, text) for label, text in rules if text]
    return [""] + [f"{label}: {text}" for label, text in rules] if rules else []


def _op_examples(op) -> list[str]:
    """The registry's worked rows, computed by inference as docs/language.md shows them."""
    if not op.examples:
        return []
    import archc

    from .ops import fmt_shape

    lines = ["", "examples (spec line, input -> output, parameters trainable + non-trainable, MACs):"]
    width = max(len(text) for text, _ in op.examples)
    for text, size in op.examples:
        node = archc.check(text=f"input {size}\n{text}\n").nodes[0]
        lines.append(f"  {text:<{width}}  {size} -> {fmt_shape(node.shape)}, {node.trainable:,} + "
                     f"{node.non_trainable:,} params, {node.macs:,} MACs")
    return lines


@main.command(short_help="Explain a diagnostic code, e.g. `archc explain A204`.")
@click.argument("code")
def explain(code) -> None:
    """Explain a diagnostic code: what it means and which phase reports it.

    \b
    Example:
      archc explain A204
    """
    from .codes import CODES
    from .codes import explain as explanation

    text = explanation(code)
    if text is None:
        from .diagnostics import did_you_mean

        raise click.BadParameter(f"no diagnostic is called `{code}`; "
                                 + (did_you_mean(code.upper(), CODES) or f"codes run {min(CODES)} to {max(CODES)}"),
                                 param_hint="CODE")
    click.echo(text, nl=False)


@main.command(short_help="Convert a spec between its text and JSON forms.")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "target", type=click.Choice(["json", "arch"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.option("--spans/--no-spans", default=False, help="Keep source positions in the JSON.")
def convert(spec, target, output, spans) -> None:
    """Convert a spec between its text and JSON forms (the same structure: blocks, calls, stages).

    \b
    Examples:
      archc convert specs/resnet50.arch --to json -o resnet50.json
      archc convert resnet50.json --to arch
    """
    from .loader import load_path

    if target == "arch":
        _write_or_echo(_to_arch(spec), output, [Path(spec)])
        return
    loaded = load_path(spec)
    _write_or_echo(spec_to_json(loaded.spec, spans), output, [Path(spec), *loaded.files])


def spec_to_json(spec, spans: bool = False) -> str:
    data = spec.model_dump(mode="json", exclude_none=True)
    if not spans:
        data = _strip_spans(data)
    return json.dumps(data, indent=2) + "\n"


def _strip_spans(data):
    if isinstance(data, dict):
        return {k: _strip_spans(v) for k, v in data.items() if k not in ("span", "input_span")}
    if isinstance(data, list):
        return [_strip_spans(v) for v in data]
    return data


def _write_or_echo(text: str, output: str | None, protect: list[Path] = ()) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    from .files import write_atomic

    write_atomic(Path(output), text.encode("utf-8"), protect=protect)


@main.command(short_help="Print the JSON Schema of JSON specs.")
def schema() -> None:
    """Print the JSON Schema of the spec IR (what a JSON spec must look like).

    \b
    Example:
      archc schema > archc-spec.schema.json
    """
    from .ir import Spec

    click.echo(json.dumps(Spec.model_json_schema(), indent=2))


@main.command("list", short_help="List the shipped specs with parameters and MACs.")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@click.pass_context
def list_specs(ctx, directory) -> None:
    """List the shipped specs (or those in DIRECTORY): description, parameters, MACs.

    \b
    Examples:
      archc list
      archc list my_specs/
    """
    from . import check as run_check
    from .loader import load
    from .render import list_table

    folder = Path(directory) if directory else shipped_specs_dir()
    rows = []
    broken = False
    for path in sorted(folder.glob("*.arch"), key=_natural_key):
        try:
            loaded = load(path)
            if not loaded.spec.body and loaded.spec.input is None:
                continue  # a block file (blocks.arch): definitions for the specs to import, not a network
            rows.append((path.stem, run_check(loaded)))
        except ArchcError as e:
            first = e.diagnostics[0]
            rows.append((path.stem, f"error[{first.code}]: {first.message} (`archc check {path}` shows where)"))
            broken = True
    bold = _color(sys.stdout)
    click.echo(list_table(rows, bold=bold), color=bold)
    if broken:
        ctx.exit(EXIT_SPEC)


def _natural_key(path: Path) -> list:
    """resnet18 before resnet101: digit runs compare as numbers."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]


def shipped_specs_dir() -> Path:
    """The spec library: installed beside the package, or the repository's specs/ folder."""
    from .loader import library_dir

    found = library_dir()
    if found is None:
        raise click.UsageError("the spec library is not installed; pass a directory")
    return found


def _read_spec_text(path: str) -> str:
    from .loader import _read

    return _read(Path(path), path, None, {})


def _to_arch(spec: str) -> str:
    """`convert --to arch`: JSON is printed canonically; text is formatted with its comments kept."""
    from .fmt import format_spec, format_text
    from .loader import parse_source

    text = _read_spec_text(spec)
    parsed = parse_source(text, spec)
    if spec.endswith(".json") or text.lstrip().startswith("{"):
        return format_spec(parsed, spec)
    return format_text(text, spec)


@main.command("fmt", short_help="Rewrite specs canonically, comments kept; --check only reports.")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--check", "check_only", is_flag=True, help="Change nothing; exit 1 if a file would change.")
@click.pass_context
def fmt_command(ctx, specs, check_only) -> None:
    """Rewrite `.arch` specs in their canonical form, comments kept (`-` formats standard input to standard
    output).

    \b
    Examples:
      archc fmt specs/*.arch
      archc fmt --check specs/*.arch      # exit 1 if a file would change
    """
    from .files import write_atomic
    from .fmt import format_text

    failed = changed = False
    for spec in specs:
        if spec != "-" and spec.endswith(".json"):
            raise click.BadParameter(f"{spec} is JSON; `archc convert --to arch` writes it as text",
                                     param_hint="SPECS")
        if spec != "-" and not Path(spec).is_file():
            raise click.BadParameter(f"no such file: {spec}", param_hint="SPECS")
        try:
            text = _stdin_text() if spec == "-" else _read_spec_text(spec)
            formatted = format_text(text, "<stdin>" if spec == "-" else spec)
        except ArchcError as e:
            _report(e)
            failed = True
            continue
        if spec == "-":
            click.echo(formatted, nl=False)
            changed |= formatted != text
            continue
        if formatted == text:
            continue
        changed = True
        if check_only:
            click.echo(f"would reformat {spec}", err=True)
        else:
            try:  # in place of the spec: its mode and hard links are kept, a read-only spec is refused
                write_atomic(Path(spec), formatted.encode("utf-8"))
            except ArchcError as e:
                _report(e)
                failed = True
                continue
            click.echo(f"reformatted {spec}", err=True)
    if failed or (check_only and changed):
        ctx.exit(EXIT_SPEC)


# An output's extension -> the picture format it holds.
GRAPH_EXTENSIONS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid",
                    ".mermaid": "mermaid"}


def _graph_format(output: str | None, fmt: str | None) -> str:
    """The picture format: --format, else -o's extension, else DOT; an extension that is no picture format or
    that contradicts --format is a usage error (a PNG must not land in `a.svg`)."""
    suffix = Path(output).suffix.lower() if output else ""
    if suffix and suffix not in GRAPH_EXTENSIONS:
        raise click.BadParameter(f"`{output}`: archc draws {', '.join(GRAPH_EXTENSIONS)} files, not {suffix}"
                                 + (" (Graphviz writes other formats: archc graph SPEC --format dot | "
                                    f"dot -T{suffix[1:]})" if suffix in (".jpg", ".jpeg", ".pdf", ".gif") else ""),
                                 param_hint="-o")
    if suffix and fmt is not None and GRAPH_EXTENSIONS[suffix] != fmt:
        raise click.BadParameter(f"`{output}` ends in {suffix} but --format {fmt} was asked for; make them agree",
                                 param_hint="--format / -o")
    return fmt or GRAPH_EXTENSIONS.get(suffix, "dot")


@main.command(short_help="Draw the architecture as SVG, PNG, DOT or Mermaid.")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["svg", "png", "dot", "mermaid"]), default=None,
              help="Picture format (default: from the -o extension, else dot).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output path: .svg, .png, .dot/.gv, .mmd (default: standard output; NAME.png for png).")
@click.option("--level", type=click.Choice(["layer", "stage"]), default="layer", show_default=True,
              help="One node per layer (boxed by stage and block), or one per stage.")
@click.option("--direction", type=click.Choice(["TB", "LR"]), default="TB", show_default=True,
              help="Top to bottom, or left to right.")
@_load_options
def graph(spec, fmt, output, level, direction, sets, max_layers, allow) -> None:
    """Draw the architecture: DOT and Mermaid text, or SVG and PNG through Graphviz.

    \b
    Examples:
      archc graph specs/resnet18.arch -o resnet18.svg
      archc graph specs/googlenet.arch --level stage --format mermaid
    """
    from .graph import picture

    fmt = _graph_format(output, fmt)
    reads: list[Path] = []
    plan = _check(spec, _parse_sets(sets), max_layers, allow, reads)
    data = picture(plan, fmt, level, direction)
    if output is None and fmt == "png":
        output = f"{plan.name}.png"
    if output is None:
        click.echo(data.decode("utf-8"), nl=False)
        return
    from .files import write_atomic

    write_atomic(Path(output), data, protect=[Path(spec), *reads])
    click.echo(f"wrote {output} ({fmt}, {level} level)", err=True)


def _write_report(plan, target: Path, reads: list[Path]) -> None:
    from .files import write_atomic
    from .report import html_report

    write_atomic(target, html_report(plan).encode("utf-8"), protect=reads)
    click.echo(f"wrote {target}", err=True)


@main.command(short_help="Write an HTML page per spec (totals, picture, table); an index for several.")
@click.argument("specs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(), default=None,
              help="An .html file (one spec), or a directory for SPEC_NAME.html pages (default: here).")
@_load_options
@click.pass_context
def report(ctx, specs, output, sets, max_layers, allow) -> None:
    """Write one self-contained HTML page per spec: the totals, the picture, the table. Several specs also get
    an index.html linking their pages. The pages need nothing installed and fetch nothing: Graphviz draws
    the picture where it is installed, archc's own SVG where it is not.

    \b
    Examples:
      archc report specs/resnet50.arch                 # resnet50.html
      archc report specs/*.arch -o site/               # a page per spec and site/index.html
    """
    _check_output_paths(specs, output)
    overrides = _parse_sets(sets)
    failed = False
    pages = []
    for spec in specs:
        reads: list[Path] = []
        try:
            plan = _check(spec, overrides, max_layers, allow, reads)
        except ArchcError as e:
            _report(e)
            failed = True
            continue
        target = _report_target(spec, output)
        _write_report(plan, target, reads)
        pages.append((target, plan))
    if len(specs) > 1 and pages:
        _write_index(pages, Path(output or "."))
    if failed:
        ctx.exit(EXIT_SPEC)


def _write_index(pages: list, folder: Path) -> None:
    from .files import write_atomic
    from .report import index_page

    target = folder / "index.html"
    links = [(target_path.relative_to(folder).as_posix() if target_path.parent == folder else target_path.name,
              plan) for target_path, plan in pages]
    write_atomic(target, index_page(links).encode("utf-8"))
    click.echo(f"wrote {target}", err=True)


EXIT_DIFFERENT, EXIT_DIFF_TROUBLE = 1, 2  # `archc diff`, as Unix diff: 0 the same, 1 different, 2 trouble
FOREIGN_SUFFIXES = (".onnx", ".keras", ".h5", ".pt", ".pt2")  # models, not specs: read by archc.readers


@main.command(short_help="Compare two specs: stage table deltas and the layers that differ.")
@click.argument("a")
@click.argument("b")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Override a network parameter on both sides.")
@click.option("--set-a", "sets_a", multiple=True, metavar="NAME=VALUE",
              help="Override a network parameter of A only (wins over --set).")
@click.option("--set-b", "sets_b", multiple=True, metavar="NAME=VALUE",
              help="Override a network parameter of B only (wins over --set).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--level", type=click.Choice(["stage", "layer"]), default="stage", show_default=True,
              help="layer: also list every layer whose only change is its output size.")
@_limit_options
@click.pass_context
def diff(ctx, a, b, sets, sets_a, sets_b, fmt, level, max_layers, allow) -> None:
    """Compare two networks: a stage table of output sizes, parameters and MACs (A, B, delta), then the layers
    that differ, paired through the structure (docs/diff.md): arguments that changed, layers only in A or only
    in B, sizes that changed. A and B are specs (.arch, .json). Exit status 0 the same, 1 different, 2 trouble
    (a spec that does not check, a missing file, a usage error).

    \b
    Examples:
      archc diff specs/resnet50.arch specs/resnet50.arch --set-b downsample_at=2   # v1 against v1.5
      archc diff specs/resnet18.arch specs/resnet34.arch --format json
      archc diff specs/resnet50.arch specs/wide_resnet50_2.arch --set classes=10
    """
    from .diff import diff as compare
    from .diff import diff_json, render_text

    ctx.obj = fmt
    both = _parse_sets(sets)
    over_a, over_b = dict(both, **_parse_sets(sets_a)), dict(both, **_parse_sets(sets_b))
    loaded: dict[str, Any] = {}  # one file named twice is read and parsed once
    sides, errors = [], []
    for source, which, over in ((a, "A", over_a), (b, "B", over_b)):
        try:  # both sides are read, so that what is wrong with either is said at once
            sides.append(_diff_side(source, which, over, max_layers, allow, loaded))
        except ArchcError as e:
            errors.append(e)
        except RecursionError:  # what the group would report with exit 1, which here means "different"
            errors.append(ArchcError([Diagnostic("A301", f"{which}, `{source}`, nests too deeply to process", None)]))
        except OSError as e:
            errors.append(ArchcError([Diagnostic("A004", f"cannot read `{e.filename or source}`: "
                                                 f"{e.strerror or e}", None)]))
    if errors:
        _report(ArchcError([d for e in errors for d in e.diagnostics],
                           {k: v for e in errors for k, v in e.sources.items()}), fmt)
        ctx.exit(EXIT_DIFF_TROUBLE)
    result = compare(*sides)
    if fmt == "json":
        click.echo(json.dumps(diff_json(result)))
    else:
        click.echo(render_text(result, level))
    ctx.exit(0 if result.same else EXIT_DIFFERENT)


def _diff_side(source: str, which: str, sets: dict[str, Any], max_layers, allow, loaded: dict):
    """One side of `archc diff`: a spec checked with its overrides, or a model read into a FlatNetwork."""
    from .diff import side_of_flat, side_of_plan
    from .loader import load_path

    if _is_foreign(source):
        return side_of_flat(_read_foreign(source, which, sets), which)
    try:
        if source not in loaded:
            loaded[source] = load_path(source, list(allow))
        plan = _check(loaded[source], sets, max_layers, allow)
    except click.UsageError as e:  # an unknown parameter: say which side's
        raise click.UsageError(f"{which} ({source}): {e.message}") from None
    _warnings(plan, loaded[source].sources)
    for note in _notes(loaded[source], sets):
        click.echo(f"note: {which}: {note}", err=True)
    return side_of_plan(plan, sets, which)


def _is_foreign(source: str) -> bool:
    """A model rather than a spec: an ONNX or Keras file, or `module:callable` (a name that is no file)."""
    if source.lower().endswith(FOREIGN_SUFFIXES):
        return True
    return ":" in source and not Path(source).exists() and not source.endswith((".arch", ".json"))


def _read_foreign(source: str, which: str, sets: dict[str, Any]):
    """A model as a FlatNetwork, read by `archc import`'s readers."""
    if sets:
        raise ArchcError([Diagnostic("A551", f"{which} (`{source}`) is a model, not a spec: it has no parameters "
                                     f"to set ({', '.join(sets)})", None,
                                     help=f"give --set-{which.lower()} only to a spec side")])
    from . import readers
    from .flat import Unsupported

    try:
        return readers.read_source(source)  # a source it cannot read at all is its own diagnostic (A502-A504)
    except Unsupported as e:
        raise ArchcError([Diagnostic("A552", f"{which}, `{source}`, holds {e.what} at `{e.where}`, which the "
                                     "language cannot express", None, help=e.help or None)]) from None


@main.command(short_help="Run the language server (for editors).")
@click.option("--stdio", is_flag=True, help="Speak over standard input and output (the only transport; editors "
              "pass it by habit).")
@_allow_option
def lsp(stdio, allow) -> None:
    """Run the language server on standard input and output.

    Diagnostics as you type, hover, completion, go to definition, document symbols, quick fixes and
    formatting. Imports may come from a document's own folder, the workspace folders, each --allow-import
    DIR and the client's `allowImport` setting.

    \b
    Examples:
      archc lsp --stdio                       # what an editor runs (editors/README.md has set-ups)
    """
    gc.enable()  # a server lives long: let the collector run (see `run`)
    try:
        from .lsp import serve
    except ImportError as e:
        from .codes import install_hint

        raise ArchcError([Diagnostic("A403", f"the language server needs a package that is not installed: "
                                     f"{e.name or e}", None, help=install_hint("lsp"))]) from None
    serve(list(allow))


def run() -> None:
    """The `archc` command, with the garbage-collector policy of a one-shot command (archc.speedups)."""
    from .speedups import one_shot_gc

    with one_shot_gc():
        main(prog_name="archc")


if __name__ == "__main__":  # pragma: no cover
    run()
