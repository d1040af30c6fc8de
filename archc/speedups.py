"""The one module that reaches into libraries' private parts for speed, each use with its public fallback.

  * lark: the parser's position pass is hooked onto each rule's tree builder (`Lark._callbacks`), which gives
    the spans of `propagate_positions=True` at half its cost (Lark's own pass was half of parsing a long spec).
    Fallback: `propagate_positions=True` and the tree's `meta` (archc.parser reads either).
  * pydantic: `fast_construct` / `fast_span` build trusted IR nodes and spans at a third of
    `model_construct`'s cost (the parser makes one per syntax node). Fallback: `model_construct`.
  * the cyclic garbage collector: a one-shot `archc` command keeps nearly all it allocates until it exits, so
    the CLI turns the collector off and freezes the heap at exit (`one_shot_gc`). Only the CLI entry point
    does this: a library never changes its caller's collector.

Each private use is taken only for the library versions it was written and tested against
(tests/test_speedups.py pins them and runs the fallbacks); any other version gets the public API.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pydantic

# The versions the private uses below were checked against (tests/test_speedups.py).
LARK_TESTED = ((1, 2), (1, 3))
PYDANTIC_TESTED = ((2, 6), (2, 14))


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def _within(version: str, tested: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    try:
        return tested[0] <= _minor(version) <= tested[1]
    except ValueError:
        return False


# Decided when text is first parsed (lark_fast): importing lark costs every command whose specs all come from the
# parse cache and that parses nothing.
LARK_FAST: bool | None = None
PYDANTIC_FAST = _within(pydantic.VERSION, PYDANTIC_TESTED)


def lark_fast() -> bool:
    global LARK_FAST
    if LARK_FAST is None:
        import lark

        LARK_FAST = _within(lark.__version__, LARK_TESTED)
    return LARK_FAST


# ---------------------------------------------------------------- lark


def hook_rule_builders(parser: Any, wrap: Any) -> bool:
    """Wrap every rule's tree builder of a Lark LALR parser with `wrap(build)`; False (nothing done) where this
    lark's internals are not the ones tested, and the caller must use `propagate_positions=True` instead."""
    callbacks = getattr(parser, "_callbacks", None)
    if not lark_fast() or not isinstance(callbacks, dict):
        return False
    from lark.grammar import Rule

    for rule, build in callbacks.items():
        if isinstance(rule, Rule):
            callbacks[rule] = wrap(build)
    return True


# ---------------------------------------------------------------- pydantic


def fast_construct(cls, fields: dict):
    """`cls.model_construct(**fields)` for trusted input, at a third of its cost. Sets exactly what
    model_construct sets."""
    if not PYDANTIC_FAST:
        return cls.model_construct(**fields)
    defaults = cls.__dict__.get("_construct_defaults")
    if defaults is None:  # field order matters: it is the order model_dump writes
        defaults = [(name, f.is_required(), f.default) for name, f in cls.model_fields.items()]
        type.__setattr__(cls, "_construct_defaults", defaults)
    obj = object.__new__(cls)
    values = {}
    for name, required, default in defaults:
        if name in fields:
            values[name] = fields[name]
        elif not required:
            values[name] = default.copy() if type(default) is list else default
    _set_state(obj, values, set(fields))
    return obj


_SPAN_FIELDS = frozenset(("file", "line", "column", "end_line", "end_column"))


def fast_span(span_cls, file: str | None, line: int, column: int, end_line: int, end_column: int):
    """fast_construct(Span, ...) with every field given: the parser makes one per syntax node."""
    values = {"file": file, "line": line, "column": column, "end_line": end_line, "end_column": end_column}
    if not PYDANTIC_FAST:
        return span_cls.model_construct(**values)
    span = object.__new__(span_cls)
    _set_state(span, values, set(_SPAN_FIELDS))
    return span


def _set_state(obj: Any, values: dict, fields_set: set) -> None:
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", fields_set)
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)


# ---------------------------------------------------------------- the garbage collector (the CLI only)


@contextmanager
def one_shot_gc() -> Iterator[None]:
    """For the `archc` command's whole run: the collector off, the heap frozen at exit (together a quarter of a
    ResNet-50 check; 0.2 s of a 10,000-layer one). Commands that live long or build framework models turn it
    back on with `gc.enable()`."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
