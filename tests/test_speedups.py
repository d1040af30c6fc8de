"""archc.speedups: the private uses of lark and pydantic are taken only for the versions they were tested
against, and their public fallbacks give the same IR (the fast paths are an optimisation, never a meaning)."""

from __future__ import annotations

from pathlib import Path

import lark
import pydantic
import pytest

from archc import ir, parser, speedups
from archc.diagnostics import Span
from archc.fmt import strip_spans

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.arch")) + sorted((ROOT / "tests" / "fixtures").glob("*.arch"))


def test_the_installed_versions_are_the_tested_ones():
    """The pins in pyproject.toml allow newer lark and pydantic; this says when one arrives untested, so that
    someone checks the fast paths against it and widens LARK_TESTED / PYDANTIC_TESTED (or leaves the fallback)."""
    assert speedups.lark_fast(), f"lark {lark.__version__} is outside {speedups.LARK_TESTED}: the fallback is in use"
    assert speedups.PYDANTIC_FAST, f"pydantic {pydantic.VERSION} is outside {speedups.PYDANTIC_TESTED}"


def test_the_fast_parser_hooks_lark_and_the_fallback_uses_propagate_positions():
    assert parser._lark(True).archc_meta_positions is False
    assert parser._lark(False).archc_meta_positions is True


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_the_fallback_parser_gives_the_same_ir(path, monkeypatch):
    text = path.read_text(encoding="utf-8")
    fast = parser.parse(text, str(path))
    original = parser._lark
    monkeypatch.setattr(parser, "_lark", lambda fast=True: original(False))
    slow = parser.parse(text, str(path))
    assert strip_spans(slow.model_dump(mode="json")) == strip_spans(fast.model_dump(mode="json"))
    # every statement keeps its line (the extents of punctuation may differ: lark's pass skips filtered tokens)
    assert [item.span.line for item in slow.body] == [item.span.line for item in fast.body]


def test_the_pydantic_fallback_constructs_the_same_objects(monkeypatch):
    fields = {"op": "conv", "args": [], "span": None}
    fast = speedups.fast_construct(ir.Layer, fields)
    span = speedups.fast_span(Span, "f.arch", 1, 2, 1, 9)
    monkeypatch.setattr(speedups, "PYDANTIC_FAST", False)
    assert speedups.fast_construct(ir.Layer, fields) == fast
    assert speedups.fast_span(Span, "f.arch", 1, 2, 1, 9) == span
    assert fast.model_fields_set == ir.Layer.model_construct(**fields).model_fields_set


def test_an_untested_lark_version_takes_the_public_path(monkeypatch):
    monkeypatch.setattr(speedups, "LARK_FAST", False)
    assert speedups.hook_rule_builders(object(), lambda build: build) is False


def test_version_ranges():
    assert speedups._within("1.3.1", ((1, 2), (1, 3)))
    assert not speedups._within("2.0.0", ((1, 2), (1, 3)))
    assert not speedups._within("1.1.9", ((1, 2), (1, 3)))
    assert not speedups._within("garbage", ((1, 2), (1, 3)))
