"""Expressions: the value of an IR expression in an environment of names.

Values are int, float, bool, str, tuples (sizes) or Symbol (a bare word no variable binds: `same`, `relu`).
Numbers stay within int64 and finite, so no chain of products can grow without end. Used by the loader (for
`--set` values), by argument binding and by the walk of the inference pass.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from .diagnostics import RuleError, Span, did_you_mean
from .ir import MAX_INT
from .ops import fmt_shape


class Symbol(str):
    """A bare word that names no variable: `same`, `relu`. Only a layer's flags and enum arguments accept one."""


class Unknown(Exception):
    """An expression read a shape that an earlier error left unknown: stay silent."""


class ExprError(RuleError):
    def __init__(self, message: str, span: Span | None, help: str | None = None, code: str = "A103"):
        super().__init__(message, help=help, code=code)
        self.span = span


_BINOPS = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
def divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """`value` rounded to the nearest multiple of `divisor` (halves up), at least `min_value` (default: the
    divisor) and never below 90% of `value`: torchvision's `_make_divisible` (after TensorFlow's MobileNet code),
    which MobileNet v2/v3, EfficientNet and MnasNet round their widths with."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise ValueError(f"the divisor must be a positive integer, not {divisor}")
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:  # make sure that rounding down does not go down by more than 10%
        new_value += divisor
    return new_value


# `round` is Python's (halves to even: round(2.5) == 2), which is what torchvision's int(round(...)) calls too.
FUNCS = {"int": int, "round": round, "min": min, "max": max, "float": float, "ceil": math.ceil, "floor": math.floor,
         "divisible": divisible}
MAX_ROUND_DIGITS = 18  # int64 has 19 digits: `round(x, -19)` is 0 or out of range, and `round(5, -10**9)`
# would compute 10**(10**9) before giving 0
_DIM_NAMES = {"h": 0, "w": 1, "c": 2}


def _number(value: Any, node: Any) -> int | float:
    if isinstance(value, Symbol):
        raise ExprError(f"unknown name `{value}`", node.span if hasattr(node, "span") else None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"expected a number, found `{value}`", getattr(node, "span", None), code="A116")
    return value


def bounded(value: Any, node: Any = None) -> Any:
    """Numbers stay within int64 and finite: a chain of products must not grow without end (memory, time)."""
    if isinstance(value, bool):
        return value
    if (isinstance(value, int) and abs(value) > MAX_INT) or (isinstance(value, float) and not math.isfinite(value)):
        raise ExprError("this arithmetic overflows", getattr(node, "span", None), code="A115",
                        help=f"numbers in a spec are at most {MAX_INT:,}")
    return value


def bounded_value(value: Any) -> Any:
    """An override from the API or `--set`, held to the limits a spec's own numbers obey."""
    for part in value if isinstance(value, tuple) else (value,):
        bounded(part)
    return value


def evaluate(expr: Any, env: dict[str, Any]) -> Any:
    """The value of an IR expression: int, float, bool, str, tuple (sizes) or Symbol (an unbound word)."""
    if isinstance(expr, (bool, int, float)):
        return bounded(expr)
    return _EVALUATORS[expr.kind](expr, env)


def _name(expr: Any, env: dict) -> Any:
    ident = expr.id
    if "." in ident:
        return _shape_attribute(expr, env)
    if ident in env:
        return env[ident]
    return Symbol(ident)


def _shape_attribute(expr: Any, env: dict) -> int:
    """`in.h`, `in.w`, `in.c` of a feature map, `in.n` of a flat vector."""
    ident = expr.id
    base, _, attr = ident.partition(".")
    if base != "in":
        raise ExprError(f"unknown name `{ident}`", expr.span, help="only `in.h`, `in.w`, `in.c` and "
                        "`in.n` read a shape: the input of the block or scope")
    shape = env.get("in")
    if shape is None:
        raise Unknown()
    if attr == "n" and len(shape) == 1:
        return shape[0]
    if attr in _DIM_NAMES and len(shape) == 3:
        return shape[_DIM_NAMES[attr]]
    raise ExprError(f"`{ident}` does not exist for an input of shape {fmt_shape(shape)}", expr.span,
                    help="feature maps have `in.h`, `in.w`, `in.c`; flat vectors have `in.n`")


def _dims(expr: Any, env: dict) -> tuple:
    return tuple(_number(evaluate(d, env), d if not isinstance(d, (int, float)) else expr) for d in expr.dims)


def _binop(expr: Any, env: dict) -> Any:
    op = expr.op
    if op == "and":
        left = evaluate(expr.left, env)
        return evaluate(expr.right, env) if left else left
    if op == "or":
        left = evaluate(expr.left, env)
        return left if left else evaluate(expr.right, env)
    if op in ("==", "!="):
        left, right = evaluate(expr.left, env), evaluate(expr.right, env)
    else:  # the left operand is checked before the right one is evaluated: the first mistake is reported
        left = _number(evaluate(expr.left, env), expr.left)
        right = _number(evaluate(expr.right, env), expr.right)
    if op in ("/", "//") and right == 0:
        raise ExprError("division by zero", expr.span, code="A115")
    return bounded(_BINOPS[op](left, right), expr)


def _unary(expr: Any, env: dict) -> Any:
    value = evaluate(expr.operand, env)
    return (not value) if expr.op == "not" else -_number(value, expr.operand)


def _func(expr: Any, env: dict) -> Any:
    fn = FUNCS.get(expr.func)
    if fn is None:
        raise ExprError(f"unknown function `{expr.func}`", expr.span, help=did_you_mean(expr.func, FUNCS)
                        or f"the functions are {', '.join(sorted(FUNCS))}")
    args = [_number(evaluate(a, env), a) for a in expr.args]
    if expr.func == "round" and len(args) == 2 and not -MAX_ROUND_DIGITS <= args[1] <= MAX_ROUND_DIGITS:
        raise ExprError(f"`round` rounds to at most {MAX_ROUND_DIGITS} digits either side of the point, not "
                        f"{args[1]:,}", expr.span, code="A115",
                        help=f"give `round` a number of digits between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}")
    try:
        return bounded(fn(*args), expr)
    except (TypeError, ValueError, OverflowError) as e:
        raise ExprError(f"`{expr.func}` cannot take these arguments: {e}", expr.span, code="A115") from None


def _cond(expr: Any, env: dict) -> Any:
    return evaluate(expr.then, env) if evaluate(expr.test, env) else evaluate(expr.orelse, env)


_EVALUATORS = {
    "name": _name,
    "dims": _dims,
    "str": lambda expr, _env: expr.value,
    "percent": lambda expr, _env: expr.value,
    "binop": _binop,
    "unary": _unary,
    "func": _func,
    "cond": _cond,
}


def to_python(value: Any) -> Any:
    """A network parameter's value as JSON-friendly Python."""
    return list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, Symbol) else value)
