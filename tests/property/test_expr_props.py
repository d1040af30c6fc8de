"""Expressions mean what they mean in Python.

The parser reads operators as one flat chain and applies precedence itself; these properties write random
expressions in the syntax the two languages share, with no more parentheses than the text happens to have, and
compare archc's value with Python's.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from profiles import budget

from archc.diagnostics import ArchcError
from archc.exprs import ExprError, evaluate
from archc.parser import parse

_ATOMS = [str(n) for n in range(13)] + ["true", "false"]


@st.composite
def expressions(draw, most_atoms: int = 14, most_nested: int = 3) -> str:
    """Python's expression grammar, level by level, with parentheses only where a nested expression is drawn."""
    atoms_left = most_atoms

    def chain(part, ops: list[str], depth: int) -> str:
        text = part(depth)
        while atoms_left > 0 and draw(st.integers(0, 2)) == 1:
            text += f" {draw(st.sampled_from(ops))} {part(depth)}"
        return text

    def atom(depth: int) -> str:
        nonlocal atoms_left
        atoms_left -= 1
        if depth < most_nested and atoms_left > 0 and draw(st.integers(0, 4)) == 1:
            return f"({expression(depth + 1)})"
        return draw(st.sampled_from(_ATOMS))

    def unary(depth: int) -> str:
        return draw(st.sampled_from(["", "", "", "-", "- -"])) + atom(depth)

    def total(depth: int) -> str:
        return chain(lambda d: chain(unary, ["*", "//"], d), ["+", "-"], depth)

    def comparison(depth: int) -> str:
        text = total(depth)
        if atoms_left > 0 and draw(st.booleans()):
            text += f" {draw(st.sampled_from(['<', '<=', '>', '>=', '==', '!=']))} {total(depth)}"
        return text

    def negation(depth: int) -> str:
        return draw(st.sampled_from(["", "", "", "not ", "not not "])) + comparison(depth)

    def expression(depth: int) -> str:
        either = chain(lambda d: chain(negation, ["and"], d), ["or"], depth)
        if atoms_left > 0 and draw(st.integers(0, 5)) == 1:
            return f"{either} if {chain(negation, ['and'], depth)} else {expression(depth)}"
        return either

    return expression(0)


def _archc_value(text: str):
    spec = parse(f"input 8x8x3\nparam value = {text}\nrelu\n", "expr.arch")
    return evaluate(spec.params[0].default, {})


@settings(budget(800), suppress_health_check=[*budget(800).suppress_health_check, HealthCheck.large_base_example])
@given(expressions())
def test_expressions_evaluate_as_in_python(text):
    try:
        expected = eval(text.replace("true", "True").replace("false", "False"), {})  # noqa: S307 - our own text
    except ZeroDivisionError:
        expected = ZeroDivisionError
    try:
        value = _archc_value(text)
    except ExprError as e:
        # archc refuses arithmetic on booleans (`1 + (2 < 3)`) and division by zero, where Python answers
        assume(expected is ZeroDivisionError or "expected a number" in e.message)
        return
    assert expected is not ZeroDivisionError, text
    assert value == expected and type(value) is type(expected), text


def test_precedence_examples():
    assert _archc_value("not 1 == 2") is True
    assert _archc_value("not 1 and 5") is False  # (not 1) and 5
    assert _archc_value("not 0 and 5") == 5
    assert _archc_value("-2 * 3 + 10 // 3") == -3
    assert _archc_value("10 - 3 - 2") == 5
    assert _archc_value("2 - -1") == 3
    assert _archc_value("1 if 0 else 2 if 0 else 3") == 3
    assert _archc_value("1 < 2 and 3 > 2 or false") is True


def _refused(text: str) -> str:
    try:
        _archc_value(text)
    except ArchcError as e:
        return e.diagnostics[0].message
    raise AssertionError(f"{text!r} was accepted")


def test_what_python_refuses_is_refused_with_a_reason():
    assert "do not chain" in _refused("1 < 2 < 3")
    assert "`not`" in _refused("- not 1")
    assert "`not`" in _refused("1 == not 2")
