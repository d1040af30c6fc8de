"""The inference pass: expand a spec's blocks, calls and repetitions into a flat graph of named layers, and
compute every layer's output shape, parameters and MACs with the rules of archc.ops.

Expansion and inference are one walk because a block may read the shape of its input (`in.c // 2`).
Every independent error is collected; a layer whose input is unknown (after an error) stays silent.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import ir
from .binding import bind_call, bind_layer
from .diagnostics import ArchcError, Diagnostic, RuleError, Span, did_you_mean
from .exprs import CALL_INDEX, Symbol, Unknown, bounded_value, evaluate, to_python
from .ops import ALIASES, MERGES, OPS, SHORTCUTS, Op, Shape, check_shape, fmt_shape, lookup
from .plan import INPUT, Plan, PlanNode, StageSource

# Limits that keep a hostile spec from exhausting memory or time (docs/language.md, "Limits").
MAX_LAYERS = 200_000
MAX_CALL_DEPTH = 100
MAX_EXPANSION_DEPTH = 150  # nested scopes, groups, residuals, branches and block calls, all together
MAX_DIAGNOSTICS = 100  # then inference stops: a spec this broken gains nothing from more
MAX_NOTE_HOPS = 1_000  # how far back a size note looks for the layers that shrank the input
MAX_PROJECTION_STRIDE = 2  # ResNet's option B: a 1x1 conv at stride 2 already skips 3 pixels of 4; more warns




class _Fatal(Exception):
    """Stop the walk: a limit was hit, going on would only multiply the damage."""


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


@dataclass(eq=False, slots=True)
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

_DEFAULT_ARGS: dict[str, Any] = {}
_ABSENT = object()  # a name the environment does not bind (a flag word such as `same`)


def _names_read(value: Any) -> Iterator[str]:
    """The environment's names an IR value reads (`in` for `in.c`), wherever they sit in it."""
    if isinstance(value, ir.Name):
        yield value.id.partition(".")[0]
    elif isinstance(value, ir.Node):
        for field_value in vars(value).values():
            yield from _names_read(field_value)
    elif isinstance(value, list):
        for element in value:
            yield from _names_read(element)


def _typed(value: Any) -> Any:
    """A value with its type, for a key: 1, 1.0 and true are equal in Python, not to an argument's check."""
    if isinstance(value, tuple):
        return (tuple, tuple(_typed(element) for element in value))
    return (type(value), value)


def _defaults(op: Op) -> Any:
    """A kind's arguments all at their defaults (a trailing `bn`, a merge): validated once, shared, as they are
    frozen; a ResNet-152 check made 500 of them."""
    args = _DEFAULT_ARGS.get(op.name)
    if args is None:
        args = _DEFAULT_ARGS[op.name] = op.args()
    return args


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
        self.stage_sources: dict[str, StageSource] = {}
        self.check_sizes = True  # expected sizes are the table's, for the spec's own input size
        self.depth = 0  # nesting of `seq`, block calls included
        self.calls_made = 0  # block calls expanded: bounded like layers, since a call may add none (`x 0`)
        self.unknown_walks: set = set()  # (block, arguments) already walked with an unknown input
        self.warnings: list[Diagnostic] = []  # what checks but is likely a mistake; never fails the check
        self.call_counts: dict[str, int] = {}  # block name -> calls walked so far (CALL_INDEX)
        # A block called again with the same arguments binds and sizes its layers alike (ResNet-152's 50
        # bottlenecks, DenseNet's layers past their first 1x1): both steps are remembered for this walk. The
        # keys hold ids, so each entry keeps its objects alive: an id is never reused while it is a key.
        self.read_names: dict[int, tuple[ir.Layer, tuple[str, ...]]] = {}  # layer line -> the names it reads
        self.bound: dict[tuple, tuple[ir.Layer, Any, list]] = {}  # (line, values read) -> (line, args, post)
        self.ruled: dict[tuple, tuple[Any, Any, Shape, int, int, int]] = {}  # (kind, args, sizes) -> results

    # ---- errors
    def error(self, code: str, message: str, span: Span | None, *, label: str = "", help: str | None = None,
              notes: list[str] | None = None) -> Diagnostic:
        notes = list(notes or [])
        if self.call_stack and span is not None:
            block, call_span = self.call_stack[-1]
            if call_span is not None:
                notes.append(f"in block `{block}`, called at {call_span}")
        diag = Diagnostic(code, message, span, label=label, notes=notes, help=help)
        key = (code, message, span)
        if key in self.reported:  # a block's mistake, met again at its next call
            return diag
        self.reported.add(key)
        self.diagnostics.append(diag)
        if len(self.diagnostics) >= MAX_DIAGNOSTICS:
            self.diagnostics.append(Diagnostic("A301", f"stopping after {MAX_DIAGNOSTICS} errors", None,
                                               help="fix the errors above and check again"))
            raise _Fatal()
        return diag

    def warn(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        key = (code, message, span)
        if key not in self.reported and len(self.warnings) < MAX_DIAGNOSTICS:
            self.reported.add(key)
            self.warnings.append(Diagnostic(code, message, span, help=help, severity="warning"))

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
            except Unknown:
                return (x[0], None)
            except RuleError as e:
                self.rule_error(e, item.span)
                return (x[0], None)
            count = int(count) if isinstance(count, bool) else count  # a condition: `x (t != 1)` is once or never
            if not isinstance(count, int) or count < 0:
                self.error("A117", f"a repetition count must be a whole number, 0 or more, or a condition, "
                           f"not `{count}`", item.span, help="`x 0` leaves the item out")
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
        except Unknown:
            return
        except RuleError as e:
            self.rule_error(e, span)
            return
        exp = expected if isinstance(expected, tuple) else (expected,)
        if any(isinstance(d, bool) or not isinstance(d, int) for d in exp):
            self.error("A118", f"an expected size is written like `28x28` or `28x28x256`, not `{expected}`", span)
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
            self.stage_sources[item.name] = StageSource(item.body, env)
            if lookup(item.name) is not None and len(item.body) > 1:
                self.warn("A119", f"the stage `{item.name}` is named like a layer kind; its {len(item.body)} items "
                          "run one after the other", item.span,
                          help=f"to merge branches, write a merge (`{'`, `'.join(sorted(MERGES))}`) over one "
                          "branch a line; else give the stage another name")
        self.prepare_calls(child, item.body)
        inner = dict(env, **{"in": x[1]})
        first = len(self.nodes)
        out = self.seq(item.body, x, inner, child)
        if child.stage is not None:
            self.warn_branch_lines(item, x, first)
        if item.expect is not None:
            self.check_expect(item.expect, out, env, getattr(item.expect, "span", None) or item.span,
                              what=f"`{item.name}`")
        return out

    def warn_branch_lines(self, item: ir.Scope, x: Value, first: int) -> None:
        """A120: a stage of several lines that reads like a merge's branches whose merge line was forgotten: every
        line a plain chain of layers opening as branches do (a 1x1 conv, or a pooling of stride 1) and no layer
        changing the height and width, as a merge's branches keep them. Run in sequence, each line reads the one
        before it. Lines joined with `;` are one line: writing them so says the sequence is meant."""
        lines = _layer_lines(item.body)
        nodes = self.nodes[first:]
        if lines is None or len(lines) < 2 or lookup(item.name) is not None:
            return  # (a stage named like a kind has A119 already)
        if not _keeps_size(nodes, x[1]):
            return
        if not all(_opens_branch(_first_on_line(nodes, line)) for line in lines):
            return
        self.warn("A120", f"the stage `{item.name}` runs its {len(lines)} lines one after the other, but they read "
                  "like the branches of a merge (each opens with a 1x1 conv or a stride-1 pooling and keeps the "
                  "size)", item.span,
                  help=f"to merge them, write a merge (`{'`, `'.join(sorted(MERGES))}`) on a line of its own and "
                  "indent the branches under it; if the sequence is meant, join its lines with `;`")

    @staticmethod
    def prepare_calls(scope: _Scope, body: list) -> None:
        """A scope whose one item is a single block call keeps the call's layers at its own level."""
        calls = [i for i in body if getattr(i, "kind", "") == "call"]
        others = [i for i in body if getattr(i, "kind", "") in ("group",)]
        scope.inline_call = len(calls) == 1 and calls[0].repeat is None and not others

    def merge_op(self, item: ir.Residual | ir.Branches) -> str | None:
        """The merge kind an item names, or None after reporting a name that is no merge."""
        op = lookup(item.merge)
        if op is not None and op.inputs == "many":
            return op.name
        help = did_you_mean(item.merge, MERGES) or f"the merges are {', '.join(f'`{m}`' for m in sorted(MERGES))}"
        self.error("A101", f"`{item.merge}` is not a merge", item.span, help=help)
        return None

    def residual(self, item: ir.Residual, x: Value, env: dict, scope: _Scope) -> Value:
        merge = self.merge_op(item)
        if merge is None:
            return (x[0], None)
        first = len(self.nodes)
        body = self.seq(item.body, x, env, scope)
        normalized = any(OPS[n.op].normalizes for n in self.nodes[first:])
        auto = getattr(item, "auto_shortcut", "projection")
        if auto not in SHORTCUTS:  # a parameter that holds one: `residual shortcut=option:`, `--set option=zeropad`
            auto = env.get(auto, auto)
        if not isinstance(auto, str) or auto not in SHORTCUTS:
            self.error("A104", f"`{auto}` is not a kind of shortcut", item.span,
                       help=did_you_mean(str(auto), SHORTCUTS) or "`shortcut=` takes "
                       + " or ".join(f"`{name}`" for name in SHORTCUTS) + ", or a parameter that holds one")
            return (x[0], None)
        if auto != "projection" and not OPS[merge].same_shapes:
            self.error("A104", f"`shortcut={auto}` is for a residual that adds, not one that uses `{merge}`",
                       item.span, help="only a merge whose inputs must agree in shape (`add`) needs a shortcut "
                       "that changes the shape")
            return (x[0], None)
        if item.shortcut is not None:
            if auto != "projection":
                self.error("A104", f"a residual with its own `shortcut:` takes no `shortcut={auto}`", item.span,
                           help="keep one of the two")
                return (x[0], None)
            short = self.seq(item.shortcut, x, env, scope.child(None, "shortcut"))
        elif OPS[merge].same_shapes and body[1] is not None and x[1] is not None and body[1] != x[1]:
            short = self.projection(item, x, body[1], normalized, scope, auto)
        else:
            short = x
        inputs = [short, body] if OPS[merge].shortcut_first else [body, short]
        return self.add_node(scope, merge, merge, _defaults(OPS[merge]), inputs, item.span)

    def projection(self, item: ir.Residual, x: Value, target: Shape, normalized: bool, scope: _Scope,
                   auto: str = "projection") -> Value:
        """The automatic shortcut (archc.ops.SHORTCUTS: a projection, or zero padding) when the body changes
        the shape."""
        if len(x[1]) != 3 or len(target) != 3:
            self.error("A202", f"no automatic shortcut from {fmt_shape(x[1])} to {fmt_shape(target)}", item.span,
                       help="write the shortcut yourself under `shortcut:`")
            return (x[0], None)
        layers = SHORTCUTS[auto](x[1], target, normalized)
        if layers is None:
            what = "strided 1x1 conv" if auto == "projection" else "zero-padding shortcut"
            help = "write the shortcut yourself under `shortcut:`"
            if auto == "zeropad":
                help = ("a zero-padding shortcut subsamples by a stride and adds zero channels, never removes any; "
                        "use `shortcut=projection` or write the shortcut yourself under `shortcut:`")
            self.error("A202", f"no {what} takes {fmt_shape(x[1])} to {fmt_shape(target)}", item.span, help=help)
            return (x[0], None)
        stride = layers[0][1].stride
        if max(stride) > MAX_PROJECTION_STRIDE:
            shown = fmt_shape(stride) if stride[0] != stride[1] else stride[0]
            self.warn("A208", f"the automatic shortcut (stride {shown}) reads one input pixel in "
                      f"{stride[0] * stride[1]:,}", item.span,
                      help="the body shrinks the map much more than a downsampling block does (a global pooling "
                      "inside the residual?): end the residual before the pooling, or write the shortcut under "
                      "`shortcut:`")
        sub = scope.child(None, "shortcut")
        out = x
        for kind, args in layers:
            out = self.add_node(sub, kind, OPS[kind].prefix, args, [out], item.span)
        return out

    def branches(self, item: ir.Branches, x: Value, env: dict, scope: _Scope) -> Value:
        merge = self.merge_op(item)
        if merge is None:
            return (x[0], None)
        outs = []
        for branch in item.branches:
            child = scope.child(branch.name, "branch")
            self.prepare_calls(child, branch.body)
            outs.append(self.seq(branch.body, x, env, child))
        return self.add_node(scope, merge, merge, _defaults(OPS[merge]), outs, item.span)

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
        if op.inputs == "many":
            self.error("A101", f"`{op.name}` merges several inputs and cannot be a layer line", item.span,
                       help=f"write `residual {op.name}:` over a body, or `{op.name}:` over one branch a line")
            return (x[0], None)
        key = self.binding_key(item, env)
        bound = self.bound.get(key) if key is not None else None
        if bound is not None:
            _, args, post = bound
        else:
            try:
                args, post = bind_layer(op, item, env)
            except Unknown:
                return (x[0], None)
            except RuleError as e:
                self.rule_error(e, item.span)
                return (x[0], None)
            if key is not None:
                self.bound[key] = (item, args, post)
        out = self.add_node(scope, op.name, op.prefix, args, [x], item.span)
        for post_name, post_span in post:
            post_op = lookup(post_name)
            out = self.add_node(scope, post_op.name, post_op.prefix, _defaults(post_op), [out], post_span)
        return out

    def binding_key(self, item: ir.Layer, env: dict) -> tuple | None:
        """What a layer line's binding depends on: the line, and the value (or absence) of each name it reads.
        None where a value cannot be a key (a list): then it is bound each time."""
        known = self.read_names.get(id(item))
        if known is None:
            known = self.read_names[id(item)] = (item, tuple(sorted(set(_names_read(item.args)))))
        key = (id(item), *(_typed(env.get(name, _ABSENT)) for name in known[1]))
        try:
            hash(key)
        except TypeError:
            return None
        return key

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
        key = (opname, id(args), *in_shapes)
        ruled = self.ruled.get(key)
        if ruled is not None:
            _, args, shape, trainable, non_trainable, macs = ruled
        elif None not in in_shapes:
            try:
                given = args
                args = op.resolve(args, in_shapes)
                shape = check_shape(op.shape(args, in_shapes))
                trainable, non_trainable = op.params(args, in_shapes)
                macs = op.macs(args, in_shapes, shape)
                self.ruled[key] = (given, args, shape, trainable, non_trainable, macs)
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
        self.calls_made += 1
        if self.calls_made > self.max_layers:
            self.error("A301", f"the network expands more than {self.max_layers:,} block calls", item.span,
                       help="blocks that add no layers (`x 0`) still count; raise the limit with `--max-layers` "
                       "if you mean it")
            raise _Fatal()
        if any(name == item.block for name, _ in self.call_stack):
            chain = " -> ".join([n for n, _ in self.call_stack] + [item.block])
            self.error("A109", f"block `{item.block}` calls itself ({chain})", item.span,
                       help="a block cannot expand into itself; the expansion would never end")
            raise _Fatal()
        if len(self.call_stack) >= MAX_CALL_DEPTH:
            self.error("A301", f"blocks nest deeper than {MAX_CALL_DEPTH} calls", item.span)
            raise _Fatal()
        builtins = {CALL_INDEX: self.call_counts.get(item.block, 0)}
        self.call_counts[item.block] = builtins[CALL_INDEX] + 1
        try:
            bound = bind_call(block, item, env, {**builtins, **self.globals})
        except Unknown:
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
        if x[1] is None:  # an unknown input adds no layer: one walk per block and arguments finds its errors
            key = _walk_key(item.block, bound)
            if key in self.unknown_walks:
                return x
            self.unknown_walks.add(key)
        self.prepare_calls(target, block.body)
        body_env = {**builtins, **self.globals, **bound}
        body_env["in"] = x[1]
        self.call_stack.append((item.block, item.span))
        try:
            return self.seq(block.body, x, body_env, target)
        finally:
            self.call_stack.pop()

def _layer_lines(body: list) -> dict[int, list] | None:
    """The items of a scope by source line, or None unless every item is a single layer line (no repeat, no
    nested scope or call): only plain chains read like forgotten branches."""
    lines: dict[int, list] = {}
    for sub in body:
        if sub.kind != "layer" or sub.repeat is not None or sub.span is None:
            return None
        lines.setdefault(sub.span.line, []).append(sub)
    return lines


def _keeps_size(nodes: list[_Node], shape: Shape | None) -> bool:
    """Whether every node keeps the height and width of a feature map `shape`, as a merge's branches do."""
    if shape is None or len(shape) != 3 or not nodes:
        return False
    return all(len(n.shape) == 3 and n.shape[:2] == shape[:2] for n in nodes)


def _first_on_line(nodes: list[_Node], line: int) -> _Node | None:
    return next((n for n in nodes if n.span is not None and n.span.line == line), None)


def _opens_branch(node: _Node | None) -> bool:
    """Whether a layer opens a line as a merge's branches usually do: a 1x1 conv, or a pooling of stride 1."""
    if node is None:
        return False
    category = OPS[node.op].category  # the kind's family, from its registry entry
    if category == "conv" and tuple(getattr(node.args, "kernel", ())) == (1, 1):
        return True
    return category == "pool" and tuple(getattr(node.args, "stride", ())) in ((1, 1),)  # global pools have none


def _walk_key(block: str, bound: dict) -> tuple:
    """A hashable key of a block call; arguments that are not hashable make it unique (walked each time)."""
    try:
        key = (block, tuple(sorted(bound.items())))
        hash(key)
        return key
    except TypeError:
        return (block, object())


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


def resolve_params(spec: ir.Spec, overrides: dict[str, Any]) -> tuple[dict, Shape | None, list[Diagnostic]]:
    """Evaluate the network parameters in order, then the input size; `overrides` win over defaults."""
    diags: list[Diagnostic] = []
    env: dict[str, Any] = {}
    for param in spec.params:
        if param.name in overrides:
            try:
                env[param.name] = bounded_value(overrides[param.name])
            except RuleError as e:
                diags.append(Diagnostic(e.code, f"`{param.name}`: {e.message}", None, help=e.help))
            continue
        try:
            value = evaluate(param.default, env)
        except RuleError as e:
            diags.append(Diagnostic(e.code, e.message, getattr(e, "span", None) or param.span, help=e.help))
            continue
        except Unknown:
            diags.append(Diagnostic("A103", "`in` has no meaning in a network parameter", param.span))
            continue
        if isinstance(value, Symbol):
            value = str(value)
        env[param.name] = value
    return env, _input_shape(spec, env, overrides, diags), diags


def _input_shape(spec: ir.Spec, env: dict, overrides: dict[str, Any], diags: list[Diagnostic]) -> Shape | None:
    """The input size: overridden, or the spec's evaluated; None (and a diagnostic) when it is not one."""
    if "input" in overrides:
        try:
            shape = bounded_value(overrides["input"])
        except RuleError as e:
            diags.append(Diagnostic(e.code, f"`input`: {e.message}", None, help=e.help))
            return None
    elif spec.input is not None:
        try:
            shape = evaluate(spec.input, env)
        except (RuleError, Unknown) as e:
            diags.append(Diagnostic(getattr(e, "code", "A103"), getattr(e, "message", "bad input size"),
                                    spec.input_span))
            return None
    else:
        diags.append(Diagnostic("A110", "the spec has no `input` size", None,
                                help="start the spec with the size of its input, e.g. `input 224x224x3`"))
        return None
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not (isinstance(shape, tuple) and len(shape) in (1, 3)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
        diags.append(Diagnostic("A118", f"the input size must be HxWxC or a length, not `{shape}`",
                                spec.input_span, help="for example `input 224x224x3` or `input 784`"))
        return None
    try:
        check_shape(shape)
    except RuleError as e:
        diags.append(Diagnostic(e.code, e.message, spec.input_span, help=e.help))
        return None
    return shape


def infer(spec: ir.Spec, blocks: dict[str, ir.BlockDef] | None = None, overrides: dict[str, Any] | None = None,
          sources: dict[str, str] | None = None, file: str | None = None, max_layers: int = MAX_LAYERS) -> Plan:
    """Spec -> Plan. Raises ArchcError with every independent diagnostic found."""
    sources = sources or {}
    # the spec's own blocks win; the imported ones stay pickled until a call needs them (loader.Blocks)
    blocks = ChainMap({block.name: block for block in spec.blocks}, blocks if blocks is not None else {})
    env, shape, diags = resolve_params(spec, overrides or {})
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
    size_notes = {id(diag): _size_notes(producer) for diag, producer, _ in walker.pending_notes}
    walker.diagnostics = [d.with_notes(before=size_notes[id(d)]) if id(d) in size_notes else d
                          for d in walker.diagnostics]
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
                stage_sources=walker.stage_sources, blocks=blocks, globals=env, warnings=walker.warnings)
