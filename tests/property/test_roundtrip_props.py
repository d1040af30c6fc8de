"""Round trips: text -> JSON -> IR is the identity; `archc fmt` output parses to the same IR and is a fixed point."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
from click.testing import CliRunner
from hypothesis import given
from profiles import budget
from strategies import GeneratedSpec, specs
from support import ir_data, plan_data

import archc
from archc.cli import main, spec_to_json
from archc.loader import parse_json
from archc.parser import parse


@budget(500)
@given(specs())
def test_text_json_ir_is_the_identity(generated: GeneratedSpec):
    spec = parse(generated.text)
    as_json = spec_to_json(spec)
    again = parse_json(as_json)
    assert ir_data(again) == ir_data(spec)
    assert spec_to_json(again) == as_json
    # The JSON with positions kept loads too, and inference reads both forms the same way.
    assert ir_data(parse_json(spec_to_json(spec, spans=True))) == ir_data(spec)
    assert plan_data(archc.check(as_json)) == plan_data(archc.check(generated.text))


@budget(20)
@given(specs())
def test_cli_convert_round_trip(generated: GeneratedSpec):
    runner = CliRunner()
    with runner.isolated_filesystem():
        with open("net.arch", "w", encoding="utf-8") as f:
            f.write(generated.text)
        result = runner.invoke(main, ["convert", "net.arch", "--to", "json", "-o", "net.json"])
        assert result.exit_code == 0, result.output
        checked = runner.invoke(main, ["check", "net.json", "--format", "json"])
        direct = runner.invoke(main, ["check", "net.arch", "--format", "json"])
        assert checked.exit_code == direct.exit_code == 0
        import json

        from_json, from_text = json.loads(checked.stdout), json.loads(direct.stdout)
        for data in (from_json, from_text):
            data.pop("file")
            for layer in data["layers"]:
                layer.pop("span")  # each points into its own file
        assert from_json == from_text


FORMATTER_MODULES = ("archc.format", "archc.fmt")  # where `archc fmt` keeps its formatter


def _formatter_module():
    for name in FORMATTER_MODULES:
        if importlib.util.find_spec(name) is not None:
            return importlib.import_module(name)
    pytest.skip("the `archc fmt` formatter is not in this tree yet")


def _formatter():
    fmt = _formatter_module()
    if hasattr(fmt, "format_text"):
        return fmt.format_text
    return lambda text: fmt.format_spec(parse(text))


@budget(500)
@given(specs())
def test_fmt_preserves_the_ir_and_is_a_fixed_point(generated: GeneratedSpec):
    format_text = _formatter()
    formatted = format_text(generated.text)
    assert ir_data(parse(formatted)) == ir_data(parse(generated.text))
    assert format_text(formatted) == formatted
    assert plan_data(archc.check(formatted)) == plan_data(archc.check(generated.text))


@budget(300)
@given(specs())
def test_fmt_of_json_round_trip_is_stable(generated: GeneratedSpec):
    """Text -> JSON -> IR -> fmt gives the same text as fmt of the text itself."""
    fmt = _formatter_module()
    if not hasattr(fmt, "format_spec"):
        pytest.skip("archc.format has no format_spec")
    spec = parse(generated.text)
    assert fmt.format_spec(parse_json(spec_to_json(spec))) == fmt.format_spec(spec)
