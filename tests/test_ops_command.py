"""Issue 13: `archc ops KIND` shows one kind in detail: its arguments, its rules in words and its worked
examples, all read from the kind's entry in the registry (archc/ops.py)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import archc
from archc.cli import main
from archc.ops import ALIASES, OPS, fmt_shape


@pytest.mark.parametrize("kind", list(OPS))
def test_every_kind_shows_its_arguments_rules_and_examples(kind):
    op = OPS[kind]
    result = CliRunner().invoke(main, ["ops", kind])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # long rules wrap in no particular place
    assert result.output.startswith(f"{kind}: {op.summary}")
    for name in op.args.model_fields:
        assert f"\n  {name} " in result.output, name
    for rule in (op.shape_rule, op.param_rule):
        assert " ".join(rule.split()) in text
    for line, size in op.examples:
        node = archc.check(text=f"input {size}\n{line}\n").nodes[0]
        row = (f"{line}  {size} -> {fmt_shape(node.shape)}, {node.trainable:,} + {node.non_trainable:,} params, "
               f"{node.macs:,} MACs")
        assert any(out.strip().startswith(line) and " ".join(out.split()) == " ".join(row.split())
                   for out in result.output.splitlines()), row
    if not op.examples:
        assert "examples (" not in result.output


def test_an_alias_shows_its_kind():
    alias, target = next(iter(ALIASES.items()))
    result = CliRunner().invoke(main, ["ops", alias])
    assert result.exit_code == 0 and result.output.startswith(f"{target}: ")


def test_the_conv_page_reads_as_documented():
    out = CliRunner().invoke(main, ["ops", "conv"]).output
    assert "examples (spec line, input -> output, parameters trainable + non-trainable, MACs):" in out
    assert "conv 3x3, 64, same" in out and "56x56x64 -> 56x56x64, 36,928 + 0 params, 115,605,504 MACs" in out
    assert "kernel           positional required" in out


def test_an_unknown_kind_is_a_usage_error_with_a_suggestion():
    result = CliRunner().invoke(main, ["ops", "cnov"])
    assert result.exit_code == 2 and "unknown layer kind `cnov`" in result.output and "conv" in result.output
