"""The inference pass: expand a spec's blocks, calls and repetitions into a flat graph of named layers, and
compute every layer's output shape, parameters and MACs with the rules of archc.ops.

Expansion and inference are one walk because a block may read the shape of its input (`in.c // 2`).
Every independent error is collected; a layer whose input is unknown (after an error) stays silent.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import ir
from .diagnostics import ArchcError, Diagnostic, RuleError, Span, did_you_mean
from .ir import MAX_INT
from .ops import ALIASES, OPS, POST_OPS, ConvArgs, Op, Shape, fmt_shape, lookup
from .plan import INPUT, Plan, PlanNode

# Limits that keep a hostile spec from exhausting memory or time (docs/language.md, "Limits").
MAX_LAYERS = 200_000
MAX_CALL_DEPTH = 100
MAX_EXPANSION_DEPTH = 150  # nested scopes, groups, residuals, branches and block calls, all together
MAX_DIAGNOSTICS = 100  # then inference stops: a spec this broken gains nothing from more
MAX_NOTE_HOPS = 1_000  # how far back a size note looks for the layers that shrank the input


# ---------------------------------------------------------------- expressions


class Symbol(str):
    """A bare word that names no variable: `same`, `relu`. Only a layer's flags and enum arguments accept one."""


class _Unknown(Exception):
    """An expression read a shape that an earlier error left unknown: stay silent."""


class _Fatal(Exception):
    """Stop the walk: a limit was hit, going on would only multiply the damage."""


_BINOPS = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_FUNCS = {"int": int, "round": round, "min": min, "max": max, "float": float, "ceil": math.ceil, "floor": math.floor}
_DIM_NAMES = {"h": 0, "w": 1, "c": 2}


class ExprError(RuleError):
    def __init__(self, message: str, span: Span | None, help: str | None = None, code: str = "A103"):
        super().__init__(message, help=help, code=code)
        self.span = span


def _number(value: Any, node: Any) -> int | float:
    if isinstance(value, Symbol):
        raise ExprError(f"unknown name `{value}`", node.span if hasattr(node, "span") else None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"expected a number, found `{value}`", getattr(node, "span", None), code="A104")
    return value


def _bounded(value: Any, node: Any) -> Any:
    """Numbers stay within int64 and finite: a chain of products must not grow without end (memory, time)."""
    if isinstance(value, bool):
        return value
    if (isinstance(value, int) and abs(value) > MAX_INT) or (isinstance(value, float) and not math.isfinite(value)):
        raise ExprError("this arithmetic overflows", getattr(node, "span", None), code="A104",
                        help=f"numbers in a spec are at most {MAX_INT:,}")
    return value


def evaluate(expr: Any, env: dict[str, Any]) -> Any:
    """The value of an IR expression: int, float, bool, str, tuple (sizes) or Symbol (an unbound word)."""
    if isinstance(expr, (bool, int, float)):
        return _bounded(expr, None)
    kind = expr.kind
    if kind == "name":
        ident = expr.id
        if "." in ident:
            base, _, attr = ident.partition(".")
            if base != "in":
                raise ExprError(f"unknown name `{ident}`", expr.span, help="only `in.h`, `in.w`, `in.c` and "
                                "`in.n` read a shape: the input of the block or scope")
            shape = env.get("in")
            if shape is None:
                raise _Unknown()
            if attr == "n" and len(shape) == 1:
                return shape[0]
            if attr in _DIM_NAMES and len(shape) == 3:
                return shape[_DIM_NAMES[attr]]
            raise ExprError(f"`{ident}` does not exist for an input of shape {fmt_shape(shape)}", expr.span,
                            help="feature maps have `in.h`, `in.w`, `in.c`; flat vectors have `in.n`")
        if ident in env:
            return env[ident]
        return Symbol(ident)
    if kind == "dims":
        return tuple(_number(evaluate(d, env), d if not isinstance(d, (int, float)) else expr) for d in expr.dims)
    if kind == "str":
        return expr.value
    if kind == "percent":
        return expr.value
    if kind == "binop":
        if expr.op in ("and", "or"):
            left = evaluate(expr.left, env)
            if expr.op == "and":
                return evaluate(expr.right, env) if left else left
            return left if left else evaluate(expr.right, env)
        left = _number(evaluate(expr.left, env), expr.left) if expr.op not in ("==", "!=") else evaluate(expr.left, env)
        right = _number(evaluate(expr.right, env), expr.right) if expr.op not in ("==", "!=") \
            else evaluate(expr.right, env)
        if expr.op in ("/", "//") and right == 0:
            raise ExprError("division by zero", expr.span, code="A104")
        return _bounded(_BINOPS[expr.op](left, right), expr)
    if kind == "unary":
        value = evaluate(expr.operand, env)
        return (not value) if expr.op == "not" else -_number(value, expr.operand)
    if kind == "func":
        fn = _FUNCS.get(expr.func)
        if fn is None:
            raise ExprError(f"unknown function `{expr.func}`", expr.span, help=did_you_mean(expr.func, _FUNCS)
                            or f"the functions are {', '.join(sorted(_FUNCS))}")
        args = [_number(evaluate(a, env), a) for a in expr.args]
        try:
            return _bounded(fn(*args), expr)
        except (TypeError, ValueError, OverflowError) as e:
            raise ExprError(f"`{expr.func}` cannot take these arguments: {e}", expr.span, code="A104") from None
    if kind == "cond":
        return evaluate(expr.then, env) if evaluate(expr.test, env) else evaluate(expr.orelse, env)
    raise AssertionError(f"unknown expression kind {kind}")  # pragma: no cover - the IR's union is closed


def to_python(value: Any) -> Any:
    """A network parameter's value as JSON-friendly Python."""
    return list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, Symbol) else value)


# ---------------------------------------------------------------- the walk


@dataclass(eq=False)
class _Scope:
    parent: _Scope | None
    name: str | None  # fixed by the spec (stage label, call index); None: named from `prefix`
    prefix: str = ""
    members: list = field(default_factory=list)  # nodes and child scopes, in order
    calls: int = 0
    inline_call: bool = False  # its only block call adds no path component
    stage: str | None = None
    named: set = field(default_factory=set)  # the names of its named child scopes

    def child(self, name: str | None, prefix: str = "") -> _Scope:
        scope = _Scope(self, name, prefix, stage=self.stage)
        self.members.append(scope)
        return scope


@dataclass(eq=False)
class _Node:
    scope: _Scope
    prefix: str
    op: str
    args: Any
    inputs: list  # of _Node, or None for the network input
    in_shapes: list
    shape: Shape
    trainable: int
    non_trainable: int
    macs: int
    span: Span | None
    name: str = ""


Value = tuple  # (_Node or None for the network input, Shape or None when unknown)


class _Walker:
    def __init__(self, blocks: dict[str, ir.BlockDef], max_layers: int):
        self.blocks = blocks
        self.max_layers = max_layers
        self.nodes: list[_Node] = []
        self.diagnostics: list[Diagnostic] = []
        self.call_stack: list[tuple[str, Span | None]] = []
        self.pending_notes: list[tuple[Diagnostic, _Node | None, str]] = []
        self.globals: dict[str, Any] = {}
        self.reported: set = set()
        self.stage_summaries: dict[str, str] = {}
        self.check_sizes = True  # expected sizes are the table's, for the spec's own input size
        self.depth = 0  # nesting of `seq`, block calls included

    # ---- errors
    def error(self, code: str, message: str, span: Span | None, *, label: str = "", help: str | None = None,
              notes: list[str] | None = None) -> Diagnostic:
        diag = Diagnostic(code, message, span, label=label, notes=list(notes or []), help=help)
        key = (code, message, span)
        if key in self.reported:  # a block's mistake, met again at its next call
            return diag
        self.reported.add(key)
        if self.call_stack and span is not None:
            block, call_span = self.call_stack[-1]
            if call_span is not None:
                diag.notes.append(f"in block `{block}`, called at {call_span}")
        self.diagnostics.append(diag)
        if len(self.diagnostics) >= MAX_DIAGNOSTICS:
            self.diagnostics.append(Diagnostic("A301", f"stopping after {MAX_DIAGNOSTICS} errors", None,
                                               help="fix the errors above and check again"))
            raise _Fatal()
        return diag

    def rule_error(self, e: RuleError, span: Span | None, **kw) -> Diagnostic:
        span = getattr(e, "span", None) or span
        return self.error(e.code, e.message, span, help=e.help, notes=e.notes, **kw)

    # ---- sequences and items
    def seq(self, items: list, x: Value, env: dict, scope: _Scope) -> Value:
        if self.depth >= MAX_EXPANSION_DEPTH:
            span = items[0].span if items else None
            self.error("A301", f"the expanded network nests more than {MAX_EXPANSION_DEPTH} levels deep", span,
                       help="blocks that call blocks count too; flatten the nesting")
            raise _Fatal()
        self.depth += 1
        try:
            for item in items:
                x = self.item(item, x, env, scope)
            return x
        finally:
            self.depth -= 1

    def item(self, item: Any, x: Value, env: dict, scope: _Scope) -> Value:
        kind = item.kind
        if kind == "scope":
            return self.named_scope(item, x, env, scope)
        if kind == "residual":
            return self.residual(item, x, env, scope)
        if kind == "branches":
            return self.branches(item, x, env, scope)
        count = 1
        if item.repeat is not None:
            try:
                count = evaluate(item.repeat, env)
            except _Unknown:
                return (x[0], None)
            except RuleError as e:
                self.rule_error(e, item.span)
                return (x[0], None)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                self.error("A104", f"a repetition count must be a positive integer, not `{count}`", item.span)
                return (x[0], None)
            if count > self.max_layers:
                self.error("A301", f"repeating {count:,} times exceeds the limit of {self.max_layers:,} layers",
                           item.span, help="raise the limit with `--max-layers` if you mean it")
                raise _Fatal()
        for _ in range(count):
            if kind == "layer":
                x = self.layer(item, x, env, scope)
            elif kind == "call":
                x = self.call(item, x, env, scope)
            else:  # group: transparent
                x = self.seq(item.body, x, env, scope)
            if x[1] is None:
                break  # the repetitions would only repeat the error
        if item.expect is not None:
            self.check_expect(item.expect, x, env, item.span, what="this item")
        return x

    def check_expect(self, expect: Any, x: Value, env: dict, span: Span | None, what: str) -> None:
        shape = x[1]
        if shape is None or not self.check_sizes:
            return
        try:
            expected = evaluate(expect, env)
        except _Unknown:
            return
        except RuleError as e:
            self.rule_error(e, span)
            return
        exp = expected if isinstance(expected, tuple) else (expected,)
        if any(isinstance(d, bool) or not isinstance(d, int) for d in exp):
            self.error("A104", f"an expected size is written like `28x28` or `28x28x256`, not `{expected}`", span)
            return
        if len(shape) == 1:
            ok = exp in ((shape[0],), (1, 1, shape[0]), (1, 1))
        else:
            ok = exp in (shape, shape[:2])
        if not ok:
            diag = self.error("A204", f"{what} gives {fmt_shape(shape)}, but the spec expects {fmt_shape(exp)}",
                              span, label=f"expected {fmt_shape(exp)} here",
                              help="check the strides and paddings before this point against the table")
            self.pending_notes.append((diag, x[0], "size"))

    def named_scope(self, item: ir.Scope, x: Value, env: dict, scope: _Scope) -> Value:
        if item.name in scope.named:
            self.error("A105", f"`{item.name}` is already the name of a part of this scope", item.span,
                       help="give each stage or branch its own name")
        child = scope.child(item.name)
        scope.named.add(item.name)
        if scope.parent is None and not self.call_stack:
            child.stage = item.name
            self.stage_summaries[item.name] = self.summarize(item.body, env)
        self.prepare_calls(child, item.body)
        inner = dict(env, **{"in": x[1]})
        out = self.seq(item.body, x, inner, child)
        if item.expect is not None:
            self.check_expect(item.expect, out, env, getattr(item.expect, "span", None) or item.span,
                              what=f"`{item.name}`")
        return out

    def summarize(self, items: list, env: dict) -> str:
        """A stage's row as the paper's table writes it: `maxpool, bottleneck x 3`. A stage that is one call
        of a block (`bottleneck_stage(512, 3)`) reads as that block's body."""
        parts: list[list] = []
        for item, item_env in self._through_wrappers(items, env):
            word = {"layer": getattr(item, "op", ""), "call": getattr(item, "block", ""), "group": "(...)",
                    "residual": "residual", "branches": getattr(item, "merge", ""), "scope": getattr(item, "name", "")
                    }[item.kind]
            try:
                count = evaluate(item.repeat, item_env) if getattr(item, "repeat", None) is not None else 1
            except (RuleError, _Unknown):
                count = "n"
            if parts and parts[-1][0] == word and isinstance(count, int) and isinstance(parts[-1][1], int):
                parts[-1][1] += count
            else:
                parts.append([word, count])
        return ", ".join(word if count == 1 else f"{word} x {count}" for word, count in parts)

    def _through_wrappers(self, items: list, env: dict, depth: int = 0):
        """The items, with each call of a block made only of block calls (`bottleneck_stage(512, 3)`) replaced
        by those calls, so the row names the blocks the paper's table shows."""
        for item in items:
            block = self.blocks.get(item.block) if item.kind == "call" and item.repeat is None else None
            if block is not None and depth < 8 and block.body and all(i.kind == "call" for i in block.body):
                try:
                    inner = dict(self.globals, **self.bind_call(block, item, env))
                except (RuleError, _Unknown):
                    yield item, env  # the walk reports it
                    continue
                yield from self._through_wrappers(block.body, inner, depth + 1)
            else:
                yield item, env

    @staticmethod
    def prepare_calls(scope: _Scope, body: list) -> None:
        """A scope whose one item is a single block call keeps the call's layers at its own level."""
        calls = [i for i in body if getattr(i, "kind", "") == "call"]
        others = [i for i in body if getattr(i, "kind", "") in ("group",)]
        scope.inline_call = len(calls) == 1 and calls[0].repeat is None and not others

    def residual(self, item: ir.Residual, x: Value, env: dict, scope: _Scope) -> Value:
        first = len(self.nodes)
        body = self.seq(item.body, x, env, scope)
        used_bn = any(n.op == "batchnorm" for n in self.nodes[first:])
        if item.shortcut is not None:
            short = self.seq(item.shortcut, x, env, scope.child(None, "shortcut"))
        elif item.merge == "add" and body[1] is not None and x[1] is not None and body[1] != x[1]:
            short = self.projection(item, x, body[1], used_bn, scope)
        else:
            short = x
        inputs = [short, body] if item.merge == "concat" else [body, short]
        return self.add_node(scope, item.merge, item.merge, OPS[item.merge].args(), inputs, item.span)

    def projection(self, item: ir.Residual, x: Value, target: Shape, used_bn: bool, scope: _Scope) -> Value:
        """The automatic shortcut (He et al., option B): a strided 1x1 conv (+ batchnorm if the body has it)."""
        src = x[1]
        if len(src) != 3 or len(target) != 3:
            self.error("A202", f"no automatic shortcut from {fmt_shape(src)} to {fmt_shape(target)}", item.span,
                       help="write the shortcut yourself under `shortcut:`")
            return (x[0], None)
        stride = (math.ceil(src[0] / target[0]), math.ceil(src[1] / target[1]))
        args = ConvArgs(kernel=(1, 1), filters=target[2], stride=stride, bias=not used_bn)
        if args.window_output(src[0], src[1]) != target[:2]:
            self.error("A202", f"no strided 1x1 conv takes {fmt_shape(src)} to {fmt_shape(target)}", item.span,
                       help="write the shortcut yourself under `shortcut:`")
            return (x[0], None)
        sub = scope.child(None, "shortcut")
        out = self.add_node(sub, "conv", "conv", args, [x], item.span)
        if used_bn:
            out = self.add_node(sub, "batchnorm", "bn", OPS["batchnorm"].args(), [out], item.span)
        return out

    def branches(self, item: ir.Branches, x: Value, env: dict, scope: _Scope) -> Value:
        outs = []
        for branch in item.branches:
            child = scope.child(branch.name, "branch")
            self.prepare_calls(child, branch.body)
            outs.append(self.seq(branch.body, x, env, child))
        return self.add_node(scope, item.merge, item.merge, OPS[item.merge].args(), outs, item.span)

    # ---- layers
    def layer(self, item: ir.Layer, x: Value, env: dict, scope: _Scope) -> Value:
        op = lookup(item.op)
        if op is None:
            known = set(OPS) | set(ALIASES)
            hint = did_you_mean(item.op, known | set(self.blocks))
            if item.op in self.blocks:
                hint = f"`{item.op}` is a block: call it with parentheses, `{item.op}(...)`"
            self.error("A101", f"unknown layer kind `{item.op}`", item.span, label="not a layer kind",
                       help=hint or "`archc ops` lists the layer kinds")
            return (x[0], None)
        try:
            fields, post = self.bind_layer(op, item, env)
        except _Unknown:
            return (x[0], None)
        except RuleError as e:
            self.rule_error(e, item.span)
            return (x[0], None)
        name = ALIASES.get(item.op, item.op)
        out = self.op_node(scope, op, name, fields, x, item.span)
        for post_name, post_span in post:
            post_op = lookup(post_name)
            out = self.op_node(scope, post_op, post_op.name, {}, out, post_span)
        return out

    def bind_layer(self, op: Op, item: ir.Layer, env: dict) -> tuple[dict, list]:
        fields: dict[str, Any] = {}
        post: list[tuple[str, Span | None]] = []
        spans: dict[str, Span | None] = {}
        positional = iter(op.positional)
        model_fields = op.args.model_fields
        for arg in item.args:
            value = arg.value
            if arg.name is None and getattr(value, "kind", None) == "name" and value.id not in env:
                word = value.id
                if word in op.flags:
                    key, flag_value = op.flags[word]
                    fields[key] = flag_value
                    spans[key] = arg.span
                    continue
                if word in POST_OPS and op.inputs == "one":
                    post.append((word, arg.span))
                    continue
            if arg.name is not None:
                key = arg.name
                if key not in model_fields:
                    hint = did_you_mean(key, model_fields)
                    raise ExprError(f"`{op.name}` has no argument `{key}`", arg.span,
                                    help=hint or _signature_help(op), code="A104")
                if key in fields:
                    raise ExprError(f"`{key}` is given twice", arg.span, code="A104")
            else:
                key = next(positional, None)
                if key is None:
                    word = value.id if getattr(value, "kind", None) == "name" else None
                    if word is not None and word not in env:
                        hint = did_you_mean(word, list(op.flags) + sorted(POST_OPS) + list(env))
                        raise ExprError(f"unknown name `{word}`", arg.span, help=hint or _signature_help(op))
                    raise ExprError(f"`{op.name}` takes {len(op.positional) or 'no'} positional argument"
                                    f"{'' if len(op.positional) == 1 else 's'}", arg.span,
                                    help=_signature_help(op), code="A104")
            result = evaluate(value, env)
            if isinstance(result, Symbol) and f"'{result}'" not in repr(model_fields[key].annotation):
                hint = did_you_mean(result, list(env) + list(op.flags) + sorted(POST_OPS))
                raise ExprError(f"unknown name `{result}`", getattr(value, "span", None) or arg.span,
                                help=hint or "a name must be a network parameter, a block parameter or a flag "
                                "of this layer kind")
            fields[key] = str(result) if isinstance(result, Symbol) else result
            spans[key] = arg.span
        if any(p == "bn" for p, _ in post) and "bias" in model_fields and "bias" not in fields:
            fields["bias"] = False  # a bias before batchnorm only shifts what batchnorm removes
        try:
            args = op.args(**fields)
        except ValidationError as e:
            err = e.errors()[0]
            key = err["loc"][0] if err["loc"] else None
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                raise ExprError(f"`{op.name}` needs `{key}`", item.span, help=_signature_help(op),
                                code="A104") from None
            raise ExprError(f"bad `{key}` for `{op.name}`: {msg}", spans.get(key) or item.span,
                            help=_signature_help(op), code="A104") from None
        return {"args": args}, post

    def op_node(self, scope: _Scope, op: Op, name: str, fields: dict, x: Value, span: Span | None) -> Value:
        args = fields.get("args") or op.args()
        return self.add_node(scope, name, op.prefix, args, [x], span)

    def add_node(self, scope: _Scope, opname: str, prefix: str, args: Any, inputs: list, span: Span | None) -> Value:
        op = OPS[opname]
        if len(self.nodes) >= self.max_layers:
            self.error("A301", f"the network grows past the limit of {self.max_layers:,} layers", span,
                       help="raise the limit with `--max-layers` if you mean it")
            raise _Fatal()
        in_shapes = [v[1] for v in inputs]
        producers = [v[0] for v in inputs]
        shape = None
        trainable = non_trainable = macs = 0
        if all(s is not None for s in in_shapes):
            try:
                args = op.resolve(args, in_shapes)
                shape = op.shape(args, in_shapes)
                trainable, non_trainable = op.params(args, in_shapes)
                macs = op.macs(args, in_shapes, shape)
            except RuleError as e:
                label = (f"input is {fmt_shape(in_shapes[0])} here" if len(in_shapes) == 1
                         else "inputs are " + ", ".join(fmt_shape(s) for s in in_shapes))
                diag = self.rule_error(e, span, label=label)
                if e.code == "A201":
                    self.pending_notes.append((diag, producers[0], "size"))
                shape = None
        node = _Node(scope, prefix, opname, args, producers, in_shapes, shape, trainable, non_trainable, macs, span)
        if shape is not None:
            self.nodes.append(node)
            scope.members.append(node)
        return (node if shape is not None else producers[0], shape)

    # ---- block calls
    def call(self, item: ir.Call, x: Value, env: dict, scope: _Scope) -> Value:
        block = self.blocks.get(item.block)
        if block is None:
            hint = did_you_mean(item.block, self.blocks)
            if lookup(item.block) is not None:
                hint = f"`{item.block}` is a layer kind: write `{item.block} ARGS` without parentheses"
            self.error("A102", f"unknown block `{item.block}`", item.span, label="no block of this name",
                       help=hint or "define it with `block NAME(...):` or import the file that does; the shipped "
                       "blocks (basic, bottleneck, dense_layer, inception, ...) are `import \"archc/blocks.arch\"`")
            return (x[0], None)
        if any(name == item.block for name, _ in self.call_stack):
            chain = " -> ".join([n for n, _ in self.call_stack] + [item.block])
            self.error("A109", f"block `{item.block}` calls itself ({chain})", item.span,
                       help="a block cannot expand into itself; the expansion would never end")
            raise _Fatal()
        if len(self.call_stack) >= MAX_CALL_DEPTH:
            self.error("A301", f"blocks nest deeper than {MAX_CALL_DEPTH} calls", item.span)
            raise _Fatal()
        try:
            bound = self.bind_call(block, item, env)
        except _Unknown:
            return (x[0], None)
        except RuleError as e:
            self.rule_error(e, item.span)
            return (x[0], None)
        if scope.inline_call:
            target = scope
        elif scope.parent is None:
            target = scope.child(None, item.block)
        else:
            target = scope.child(str(scope.calls))
            scope.calls += 1
        # decide afresh for the block's own body: a stage that inlines its one call (`conv3_x : stage(...)`)
        # must still number the calls inside that block (`conv3_x.0`, `conv3_x.1`), not flatten them
        self.prepare_calls(target, block.body)
        body_env = dict(self.globals, **bound)
        body_env["in"] = x[1]
        self.call_stack.append((item.block, item.span))
        try:
            return self.seq(block.body, x, body_env, target)
        finally:
            self.call_stack.pop()

    def bind_call(self, block: ir.BlockDef, item: ir.Call, env: dict) -> dict:
        names = [p.name for p in block.params]
        bound: dict[str, Any] = {}
        positional = 0
        for arg in item.args:
            if arg.name is None:
                if positional >= len(names):
                    raise ExprError(f"`{block.name}` takes {len(names)} argument{'s' * (len(names) != 1)}",
                                    arg.span, help=f"its signature is {_block_signature(block)}", code="A106")
                key = names[positional]
                positional += 1
            else:
                key = arg.name
                if key not in names:
                    raise ExprError(f"`{block.name}` has no parameter `{key}`", arg.span,
                                    help=did_you_mean(key, names) or f"its signature is {_block_signature(block)}",
                                    code="A106")
            if key in bound:
                raise ExprError(f"`{key}` is given twice", arg.span, code="A106")
            value = evaluate(arg.value, env)
            if isinstance(value, Symbol):
                hint = did_you_mean(value, list(env))
                raise ExprError(f"unknown name `{value}`", getattr(arg.value, "span", None) or arg.span,
                                help=hint)
            bound[key] = value
        defaults_env = dict(self.globals)
        for param in block.params:
            if param.name not in bound:
                if param.default is None:
                    raise ExprError(f"`{block.name}` needs `{param.name}`", item.span,
                                    help=f"its signature is {_block_signature(block)}", code="A106")
                bound[param.name] = evaluate(param.default, dict(defaults_env, **bound))
            defaults_env[param.name] = bound[param.name]
        return bound


def _signature_help(op: Op) -> str:
    fields = op.args.model_fields
    parts = [f"{name}" for name in op.positional]
    parts += [f"{name}={fields[name].default!r}" for name in fields if name not in op.positional
              and not fields[name].is_required()]
    flags = ", ".join(sorted(op.flags))
    text = f"`{op.name}` takes " + (", ".join(parts) if parts else "no arguments")
    return text + (f"; flags: {flags}" if flags else "")


def _block_signature(block: ir.BlockDef) -> str:
    return f"`{block.name}(" + ", ".join(p.name + ("=..." if p.default is not None else "")
                                         for p in block.params) + ")`"


# ---------------------------------------------------------------- naming


def _assign_names(root: _Scope) -> None:
    """Name every node from its scope path: a kind's prefix alone if it occurs once in its scope, else numbered."""

    def visit(scope: _Scope, path: str) -> None:
        taken = {m.name for m in scope.members if isinstance(m, _Scope) and m.name is not None}
        counts: dict[str, int] = {}
        for m in scope.members:
            if (m.name if isinstance(m, _Scope) else None) is None:
                counts[m.prefix] = counts.get(m.prefix, 0) + 1
        seen: dict[str, int] = {}
        for m in scope.members:
            if isinstance(m, _Scope) and m.name is not None:
                own = m.name
            else:
                seen[m.prefix] = seen.get(m.prefix, 0) + 1
                own = m.prefix if counts[m.prefix] == 1 else f"{m.prefix}{seen[m.prefix]}"
                while own in taken:
                    own += "_"
                taken.add(own)
            full = f"{path}.{own}" if path else own
            if isinstance(m, _Scope):
                visit(m, full)
            else:
                m.name = full

    visit(root, "")


# ---------------------------------------------------------------- entry point


def _size_notes(producer: _Node | None) -> list[str]:
    """The layers that brought the spatial size down to where it failed."""
    notes = []
    node = producer
    for _ in range(MAX_NOTE_HOPS):
        if node is None or len(notes) >= 3:
            break
        if node.in_shapes and node.in_shapes[0] is not None and len(node.shape) == 3 \
                and node.shape[:2] != node.in_shapes[0][:2]:
            where = f" ({node.span})" if node.span else ""
            notes.append(f"`{node.name}`{where} took it from {fmt_shape(node.in_shapes[0][:2])} "
                         f"to {fmt_shape(node.shape[:2])}")
        node = node.inputs[0] if node.inputs else None
    return notes


def _bounded_value(value: Any) -> Any:
    """An override from the API or `--set`, held to the limits a spec's own numbers obey."""
    for part in value if isinstance(value, tuple) else (value,):
        _bounded(part, None)
    return value


def resolve_params(spec: ir.Spec, overrides: dict[str, Any], sources: dict[str, str]) -> tuple[dict, Shape | None,
                                                                                                  list[Diagnostic]]:
    """Evaluate the network parameters in order, then the input size; `overrides` win over defaults."""
    diags: list[Diagnostic] = []
    env: dict[str, Any] = {}
    for param in spec.params:
        if param.name in overrides:
            try:
                env[param.name] = _bounded_value(overrides[param.name])
            except RuleError as e:
                diags.append(Diagnostic(e.code, f"`{param.name}`: {e.message}", None, help=e.help))
            continue
        try:
            value = evaluate(param.default, env)
        except RuleError as e:
            diags.append(Diagnostic(e.code, e.message, getattr(e, "span", None) or param.span, help=e.help))
            continue
        except _Unknown:
            diags.append(Diagnostic("A103", "`in` has no meaning in a network parameter", param.span))
            continue
        if isinstance(value, Symbol):
            value = str(value)
        env[param.name] = value
    shape = None
    if "input" in overrides:
        try:
            shape = _bounded_value(overrides["input"])
        except RuleError as e:
            diags.append(Diagnostic(e.code, f"`input`: {e.message}", None, help=e.help))
            return env, None, diags
    elif spec.input is not None:
        try:
            shape = evaluate(spec.input, env)
        except (RuleError, _Unknown) as e:
            diags.append(Diagnostic(getattr(e, "code", "A103"), getattr(e, "message", "bad input size"),
                                    spec.input_span))
            return env, None, diags
    else:
        diags.append(Diagnostic("A110", "the spec has no `input` size", None,
                                help="start the spec with the size of its input, e.g. `input 224x224x3`"))
        return env, None, diags
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not (isinstance(shape, tuple) and len(shape) in (1, 3)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
        diags.append(Diagnostic("A104", f"the input size must be HxWxC or a length, not `{shape}`",
                                spec.input_span, help="for example `input 224x224x3` or `input 784`"))
        return env, None, diags
    return env, shape, diags


def infer(spec: ir.Spec, blocks: dict[str, ir.BlockDef] | None = None, overrides: dict[str, Any] | None = None,
          sources: dict[str, str] | None = None, file: str | None = None, max_layers: int = MAX_LAYERS) -> Plan:
    """Spec -> Plan. Raises ArchcError with every independent diagnostic found."""
    sources = sources or {}
    blocks = dict(blocks or {})
    for block in spec.blocks:
        blocks[block.name] = block
    env, shape, diags = resolve_params(spec, overrides or {}, sources)
    if diags or shape is None:
        raise ArchcError(diags, sources)
    walker = _Walker(blocks, max_layers)
    walker.globals = env
    walker.check_sizes = "input" not in (overrides or {})
    root = _Scope(None, None)  # never inlines a call: top-level calls are named after their block
    start: Value = (None, shape)
    try:
        out = walker.seq(spec.body, start, dict(env, **{"in": shape}), root)
    except _Fatal:
        out = (None, None)
    _assign_names(root)
    for diag, producer, _ in walker.pending_notes:
        diag.notes = _size_notes(producer) + diag.notes
    if walker.diagnostics:
        raise ArchcError(walker.diagnostics, sources)
    nodes = [
        PlanNode(
            name=n.name, op=n.op, args=n.args,
            inputs=tuple(p.name if p is not None else INPUT for p in n.inputs),
            in_shapes=tuple(n.in_shapes), shape=n.shape, trainable=n.trainable, non_trainable=n.non_trainable,
            macs=n.macs, stage=n.scope.stage, span=n.span,
        )
        for n in walker.nodes
    ]
    output = out[0].name if out[0] is not None else INPUT
    return Plan(name=spec.name or "network", description=spec.description, input_shape=shape, nodes=nodes,
                output=output, file=file, params={k: to_python(v) for k, v in env.items()},
                stage_summaries=walker.stage_summaries)
