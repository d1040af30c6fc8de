"""Argument binding: a layer line's arguments to its kind's argument model, a block call's arguments to the
block's parameters. Both read the registry (archc.ops) and evaluate with archc.exprs; neither knows shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from . import ir
from .diagnostics import Span, did_you_mean
from .exprs import BUILTIN_HELP, ExprError, Symbol, evaluate
from .ops import POST_OPS, Op, OpArgs, lookup

PostOps = list[tuple[str, Span | None]]  # trailing layer words (`bn`, `relu`) and where they are written


def bind_layer(op: Op, item: ir.Layer, env: dict) -> tuple[OpArgs, PostOps]:
    """-> the layer's arguments, validated by its kind's model, and the layers its trailing words append."""
    fields: dict[str, Any] = {}
    spans: dict[str, Span | None] = {}
    post: PostOps = []
    positional = iter(op.positional)
    for arg in item.args:
        word = _bare_word(arg, env)
        if word is not None and word in op.flags:
            key, flag_value = op.flags[word]
            fields[key], spans[key] = flag_value, arg.span
            continue
        if word is not None and word in POST_OPS and op.inputs == "one":
            post.append((word, arg.span))
            continue
        key = _argument_key(op, arg, positional, fields, env)
        fields[key] = _argument_value(op, key, arg, env)
        spans[key] = arg.span
    if any(lookup(word).normalizes for word, _ in post) and "bias" in op.args.model_fields and "bias" not in fields:
        fields["bias"] = False  # a bias before a normalisation only shifts what the normalisation removes
    return _validated(op, fields, spans, item), post


def _bare_word(arg: ir.Arg, env: dict) -> str | None:
    """The word of a positional argument that is a bare name no variable binds (a flag or a trailing layer), or
    the activation a parameter holds (`act` in a block called with `act=relu`, a network's `param act=relu`)."""
    value = arg.value
    if arg.name is None and getattr(value, "kind", None) == "name":
        if value.id not in env:
            return value.id
        bound = env[value.id]
        if isinstance(bound, str) and bound in POST_OPS:
            return str(bound)
    return None


def _argument_key(op: Op, arg: ir.Arg, positional: Iterator[str], fields: dict, env: dict) -> str:
    """Which argument of the kind `arg` gives: its keyword, or the next positional one."""
    model_fields = op.args.model_fields
    if arg.name is not None:
        if arg.name not in model_fields:
            raise ExprError(f"`{op.name}` has no argument `{arg.name}`", arg.span,
                            help=did_you_mean(arg.name, model_fields) or signature_help(op), code="A111")
        if arg.name in fields:
            raise ExprError(f"`{arg.name}` is given twice", arg.span, code="A112")
        return arg.name
    key = next(positional, None)
    if key is not None:
        return key
    word = _bare_word(arg, env)
    if word is not None:
        hint = did_you_mean(word, list(op.flags) + sorted(POST_OPS) + list(env))
        raise ExprError(f"unknown name `{word}`", arg.span, help=hint or signature_help(op))
    count = len(op.positional)
    raise ExprError(f"`{op.name}` takes {count or 'no'} positional argument{'' if count == 1 else 's'}", arg.span,
                    help=signature_help(op), code="A113")


def _argument_value(op: Op, key: str, arg: ir.Arg, env: dict) -> Any:
    result = evaluate(arg.value, env)
    if isinstance(result, Symbol):
        if f"'{result}'" in repr(op.args.model_fields[key].annotation):
            return str(result)  # a word the argument's type lists (`padding=same`)
        hint = BUILTIN_HELP.get(result) or did_you_mean(result, list(env) + list(op.flags) + sorted(POST_OPS))
        raise ExprError(f"unknown name `{result}`", getattr(arg.value, "span", None) or arg.span,
                        help=hint or "a name must be a network parameter, a block parameter or a flag "
                        "of this layer kind")
    return result


def _validated(op: Op, fields: dict, spans: dict, item: ir.Layer) -> OpArgs:
    try:
        return op.args(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        key = err["loc"][0] if err["loc"] else None
        if err["type"] == "missing":
            raise ExprError(f"`{op.name}` needs `{key}`", item.span, help=signature_help(op), code="A114") from None
        msg = _range_message(err) or err["msg"].removeprefix("Value error, ")
        raise ExprError(f"bad `{key}` for `{op.name}`: {msg}", spans.get(key) or item.span,
                        help=signature_help(op), code="A104") from None


_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
           "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}


def _range_message(err: dict) -> str | None:
    """`must be at least 1e-12, not -1` for a value outside the range its kind's definition declares."""
    if err["type"] == "finite_number":
        return f"must be a finite number, not {err['input']}"
    bound = _BOUNDS.get(err["type"])
    if bound is None:
        return None
    limit, value = err["ctx"][bound[0]], err["input"]
    return f"must be {bound[1]} {_number(limit)}, not {_number(value)}"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        value = int(value)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{value:g}"


def bind_call(block: ir.BlockDef, item: ir.Call, env: dict, globals_: dict) -> dict:
    """A block call's arguments -> {parameter: value}; defaults are evaluated among the network's parameters
    and the block parameters before them."""
    names = [p.name for p in block.params]
    bound: dict[str, Any] = {}
    positional = 0
    for arg in item.args:
        if arg.name is None:
            if positional >= len(names):
                raise ExprError(f"`{block.name}` takes {len(names)} argument{'s' * (len(names) != 1)}",
                                arg.span, help=f"its signature is {block_signature(block)}", code="A106")
            key = names[positional]
            positional += 1
        else:
            key = arg.name
            if key not in names:
                raise ExprError(f"`{block.name}` has no parameter `{key}`", arg.span,
                                help=did_you_mean(key, names) or f"its signature is {block_signature(block)}",
                                code="A106")
        if key in bound:
            raise ExprError(f"`{key}` is given twice", arg.span, code="A106")
        value = evaluate(arg.value, env)
        if isinstance(value, Symbol) and value not in POST_OPS:  # an activation may be passed by name: `se(8, relu)`
            raise ExprError(f"unknown name `{value}`", getattr(arg.value, "span", None) or arg.span,
                            help=did_you_mean(value, list(env) + sorted(POST_OPS)))
        bound[key] = value
    defaults_env = dict(globals_)
    for param in block.params:
        if param.name not in bound:
            if param.default is None:
                raise ExprError(f"`{block.name}` needs `{param.name}`", item.span,
                                help=f"its signature is {block_signature(block)}", code="A106")
            bound[param.name] = evaluate(param.default, dict(defaults_env, **bound))
        defaults_env[param.name] = bound[param.name]
    return bound


def signature_help(op: Op) -> str:
    fields = op.args.model_fields
    parts = [f"{name}" for name in op.positional]
    parts += [f"{name}={fields[name].default!r}" for name in fields if name not in op.positional
              and not fields[name].is_required()]
    flags = ", ".join(sorted(op.flags))
    text = f"`{op.name}` takes " + (", ".join(parts) if parts else "no arguments")
    return text + (f"; flags: {flags}" if flags else "")


def block_signature(block: ir.BlockDef) -> str:
    return f"`{block.name}(" + ", ".join(p.name + ("=..." if p.default is not None else "")
                                         for p in block.params) + ")`"
