"""The `archc` command: thin. It parses arguments, calls the API, renders, and sets the exit status:
0 fine, 1 the spec is wrong, 2 usage error, 3 an internal error (a bug in archc).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

# archc uses no pydantic plugins; looking for them costs ~9 ms of entry-point scanning per run
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from .diagnostics import ArchcError, Diagnostic, render_json

EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3


def _color(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or stream.isatty()


def _report(error: ArchcError, fmt: str = "text") -> None:
    if fmt == "json":
        click.echo(render_json(error.diagnostics), err=True)
    else:
        click.echo(error.render(color=_color(sys.stderr)), err=True, nl=False)


def _parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got `{item}`", param_hint="--set")
        out[name.strip()] = value.strip()
    return out


def _check(spec, sets: dict[str, Any], max_layers: int | None, allow: tuple[str, ...], reads: list | None = None):
    """`reads`, when given, receives every file the spec reads (its own and its imports): outputs never go there."""
    from . import check
    from .load import Loaded, gc_paused, load_path

    try:
        if not isinstance(spec, Loaded):
            with gc_paused():
                spec = load_path(spec, list(allow))  # a command-line argument is a path, whatever its characters
        if reads is not None:
            reads.extend(spec.files)
        return check(spec, max_layers=max_layers, allow=list(allow), **sets)
    except ArchcError as e:
        if any(d.code == "A108" for d in e.diagnostics):
            raise click.UsageError(e.diagnostics[0].message + (f" ({e.diagnostics[0].help})"
                                                               if e.diagnostics[0].help else "")) from None
        raise


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archc")
def main() -> None:
    """archc: architecture specs for convolutional networks, checked and compiled to PyTorch or Keras."""


_set_option = click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
                           help="Override a network parameter, e.g. --set classes=10 --set input=32x32x3.")
_allow_option = click.option("--allow-import", "allow", multiple=True, metavar="DIR",
                             type=click.Path(file_okay=False), help="Also allow imports from DIR.")
_max_layers_option = click.option("--max-layers", type=click.IntRange(min=1), default=None,
                                  help="Refuse specs that expand to more layers (default 200,000).")


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--level", type=click.Choice(["stage", "layer"]), default="stage", show_default=True,
              help="One row per stage of the table, or per layer.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True,
              help="html writes SPEC_NAME.html (the table, the picture, the totals) in the current directory.")
@_set_option
@_max_layers_option
@_allow_option
@click.pass_context
def check(ctx, specs, level, fmt, sets, max_layers, allow) -> None:
    """Validate specs and print their layer table: output sizes, parameters, MACs."""
    ctx.obj = fmt
    overrides = _parse_sets(sets)
    html_targets = _html_targets(specs, None) if fmt == "html" else {}
    failed = False
    for spec in specs:
        if not Path(spec).is_file():
            raise click.BadParameter(f"no such file: {spec}", param_hint="SPECS")
        try:
            from .load import gc_paused, load_path

            with gc_paused():
                loaded = load_path(spec, list(allow))
            if loaded.spec.input is None and not loaded.spec.body and loaded.spec.blocks:
                _report_block_file(loaded, fmt)
                continue
            plan = _check(loaded, overrides, max_layers, allow)
        except ArchcError as e:
            _report(e, fmt)
            failed = True
            continue
        if fmt == "json":
            click.echo(json.dumps(plan.to_json(level)))
        elif fmt == "html":
            _write_report(plan, html_targets[spec], loaded.files)
        else:
            from .render import check_table

            click.echo(check_table(plan, level, bold=_color(sys.stdout)))
    if failed:
        ctx.exit(EXIT_SPEC)


def _report_block_file(loaded, fmt: str) -> None:
    """A file of block definitions has no network to check; its blocks are checked where networks call them."""
    names = [b.name for b in loaded.spec.blocks]
    if fmt == "json":
        click.echo(json.dumps({"name": Path(loaded.file).stem, "file": loaded.file, "blocks": names}))
    else:
        click.echo(f"{loaded.file}: a block file ({', '.join(names)}); "
                   "its blocks are checked where a network calls them\n")


MAX_BUILD_PARAMS = 2_000_000_000  # `build` refuses bigger models unless --max-params raises the limit


@main.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", "-b", default="torch", show_default=True, help="torch, keras, or a plug-in backend.")
@click.option("--format", "fmt", default=None, help="File format: py (default), pt2 (torch), keras (keras).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output path (default: NAME_BACKEND.EXT).")
@click.option("--logits", is_flag=True, help="Leave out a final softmax (losses such as CrossEntropyLoss want logits).")
@click.option("--max-params", type=click.IntRange(min=1), default=MAX_BUILD_PARAMS, show_default=True,
              help="Refuse to build models with more parameters.")
@_set_option
@_max_layers_option
@_allow_option
def build(spec, backend, fmt, output, logits, max_params, sets, max_layers, allow) -> None:
    """Compile a spec into a model file: standalone Python source, or a framework archive."""
    gc.enable()  # a framework builds and drops much of its own: let the collector run (see `run`)
    from .backends import get_backend

    reads: list[Path] = []
    plan = _check(spec, _parse_sets(sets), max_layers, allow, reads)
    if plan.total_params > max_params:
        raise ArchcError([Diagnostic("A302", f"`{plan.name}` has {plan.total_params:,} parameters, more than the "
                                     f"build limit of {max_params:,}", None,
                                     help="raise the limit with --max-params if you mean it")])
    impl = get_backend(backend)
    fmt = fmt or impl.file_formats[0]
    if fmt not in impl.file_formats:
        raise click.BadParameter(f"the {backend} backend writes {', '.join(impl.file_formats)}, not {fmt}",
                                 param_hint="--format")
    data = impl.write(plan, fmt, logits=logits)
    target = Path(output) if output else Path(f"{plan.name}_{backend}.{fmt}")
    from .files import write_atomic

    write_atomic(target, data, protect=[Path(spec), *reads])
    click.echo(f"wrote {target} ({backend}, {fmt}): {plan.total_params:,} parameters", err=True)


@main.command()
def ops() -> None:
    """List the layer kinds a spec can use."""
    from .ops import ALIASES, OPS

    for name, op in OPS.items():
        aliases = [a for a, target in ALIASES.items() if target == name]
        extra = f" (also {', '.join(aliases)})" if aliases else ""
        click.echo(f"{name:<14} {op.summary}{extra}")


@main.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "target", type=click.Choice(["json", "arch"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.option("--spans/--no-spans", default=False, help="Keep source positions in the JSON.")
def convert(spec, target, output, spans) -> None:
    """Convert a spec between its text and JSON forms (the same structure: blocks, calls, stages)."""
    from .load import load_path

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


@main.command()
def schema() -> None:
    """Print the JSON Schema of the spec IR (what a JSON spec must look like)."""
    from .ir import Spec

    click.echo(json.dumps(Spec.model_json_schema(), indent=2))


@main.command("list")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@click.pass_context
def list_specs(ctx, directory) -> None:
    """List the shipped specs (or those in DIRECTORY): description, parameters, MACs."""
    from . import check as run_check
    from .load import load
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
    click.echo(list_table(rows, bold=_color(sys.stdout)))
    if broken:
        ctx.exit(EXIT_SPEC)


def _natural_key(path: Path) -> list:
    """resnet18 before resnet101: digit runs compare as numbers."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]


def shipped_specs_dir() -> Path:
    """The spec library: installed beside the package, or the repository's specs/ folder."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "specs", here.parent / "specs"):
        if candidate.is_dir():
            return candidate
    raise click.UsageError("the spec library is not installed; pass a directory")


def _read_spec_text(path: str) -> str:
    from .load import _read

    return _read(Path(path), path, None, {})


def _to_arch(spec: str) -> str:
    """`convert --to arch`: JSON is printed canonically; text is formatted with its comments kept."""
    from .fmt import format_spec, format_text
    from .load import parse_source

    text = _read_spec_text(spec)
    parsed = parse_source(text, spec)
    if spec.endswith(".json") or text.lstrip().startswith("{"):
        return format_spec(parsed, spec)
    return format_text(text, spec)


@main.command("fmt")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--check", "check_only", is_flag=True, help="Change nothing; exit 1 if a file would change.")
@click.pass_context
def fmt_command(ctx, specs, check_only) -> None:
    """Rewrite `.arch` specs in their canonical form, comments kept (`-` formats standard input to standard
    output)."""
    from .files import write_atomic
    from .fmt import format_text
    from .load import read_stream

    failed = changed = False
    for spec in specs:
        if spec != "-" and spec.endswith(".json"):
            raise click.BadParameter(f"{spec} is JSON; `archc convert --to arch` writes it as text",
                                     param_hint="SPECS")
        if spec != "-" and not Path(spec).is_file():
            raise click.BadParameter(f"no such file: {spec}", param_hint="SPECS")
        try:
            text = read_stream(sys.stdin) if spec == "-" else _read_spec_text(spec)
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


@main.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["svg", "png", "dot", "mermaid"]), default=None,
              help="Picture format (default: from the -o extension, else dot).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output path (default: standard output; NAME.png for png).")
@click.option("--level", type=click.Choice(["layer", "stage"]), default="layer", show_default=True,
              help="One node per layer (boxed by stage and block), or one per stage.")
@click.option("--direction", type=click.Choice(["TB", "LR"]), default="TB", show_default=True,
              help="Top to bottom, or left to right.")
@_set_option
@_max_layers_option
@_allow_option
def graph(spec, fmt, output, level, direction, sets, max_layers, allow) -> None:
    """Draw the architecture: DOT and Mermaid text, or SVG and PNG through Graphviz."""
    from .graph import picture

    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".") if output else ""
        fmt = {"svg": "svg", "png": "png", "mmd": "mermaid", "mermaid": "mermaid"}.get(suffix, "dot")
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


def _html_targets(specs: tuple[str, ...], output: str | None) -> dict[str, Path]:
    """Each spec's page: SPEC_NAME.html in the output directory. Two specs of one name (`a/net.arch`,
    `b/net.arch`) would write one page, the second over the first: refused before anything is written."""
    if output and output.endswith(".html"):
        return {specs[0]: Path(output)}
    targets = {spec: Path(output or ".") / f"{Path(spec).stem}.html" for spec in specs}
    by_target: dict[Path, dict[Path, str]] = {}
    for spec, target in targets.items():
        by_target.setdefault(target, {})[Path(spec).resolve()] = spec  # one file named twice is one page
    clashes = [(target, list(names.values())) for target, names in by_target.items() if len(names) > 1]
    if clashes:
        target, names = clashes[0]
        raise ArchcError([Diagnostic("A401", f"{' and '.join(f'`{n}`' for n in names)} would both write `{target}`",
                                     None, help="report specs of the same name one at a time, each with its own -o")])
    return targets


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(), default=None,
              help="An .html file (one spec), or a directory for SPEC_NAME.html pages (default: here).")
@_set_option
@_max_layers_option
@_allow_option
@click.pass_context
def report(ctx, specs, output, sets, max_layers, allow) -> None:
    """Write one self-contained HTML page per spec: the totals, the picture, the table."""
    if output and output.endswith(".html") and len(specs) > 1:
        raise click.BadParameter("one .html file holds one spec; give a directory", param_hint="-o")
    overrides = _parse_sets(sets)
    targets = _html_targets(specs, output)
    failed = False
    for spec in specs:
        reads: list[Path] = []
        try:
            plan = _check(spec, overrides, max_layers, allow, reads)
        except ArchcError as e:
            _report(e)
            failed = True
            continue
        _write_report(plan, targets[spec], reads)
    if failed:
        ctx.exit(EXIT_SPEC)


@main.command()
def lsp() -> None:
    """Run the language server on standard input and output (diagnostics as you type, hover, formatting)."""
    gc.enable()  # a server lives long: let the collector run (see `run`)
    try:
        from .lsp import serve
    except ImportError as e:
        raise ArchcError([Diagnostic("A403", f"the language server needs a package that is not installed: "
                                     f"{e.name or e}", None, help="pip install 'archc[lsp]'")]) from None
    serve()


def run() -> None:
    """The `archc` command. A one-shot command keeps nearly all it allocates until it exits, so the cyclic
    collector would only rescan live objects: it is off, and frozen at the end so that the interpreter's final
    collection skips them too (together a quarter of a ResNet-50 check; 0.2 s of a 10,000-layer one)."""
    gc.disable()
    try:
        main(prog_name="archc")
    finally:
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    run()
