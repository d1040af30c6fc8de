"""`archc import`'s heart: a flat network (archc.flat.FlatNetwork, what every reader produces) back into the spec
a person would have written. docs/importing.md tells the same story for users.

One pass after another, each a plain function over plain data:

  1. structure (`_Structure`): every merge (a kind with `inputs == "many"`) and its fork point, the merge's
     immediate dominator, become a `residual MERGE:` (identity, the automatic shortcut of archc.ops.SHORTCUTS,
     or an explicit `shortcut:`) or `MERGE:` over one branch a line, nested as deep as the network nests them.
     A layer reached from two branches, or one that never reaches the output, is not series-parallel: refused
     (A504), never written as something else.
  2. folding (`_fold`): a normalisation or activation at its defaults that follows a layer becomes a trailing
     word (`conv 3x3, 64, same, bn, relu`) where archc.binding re-expands the line to exactly those layers.
  3. stages and units (`_stages`): top-level items are grouped into the paper's rows by the source's own paths
     (`layer3.0.conv1` is in stage `layer3`, unit `0`), and each row into units (a block of the source).
  4. blocks (`_Blocks`): units with the same shape of code become one `block NAME(params)`; the arguments that
     differ between them are its parameters (equal ones shared, `in.c` and `4*w` where the values say so,
     `call_index` arithmetic where it gives each value exactly); units that are another block's code inside
     `residual:` (plus a tail) join it, the tail under a flag, through a wrapper block (_Blocks._skips);
     consecutive identical calls become `x N`.
  5. the text, through archc.ir and archc.fmt, then checked: parsed once (as `archc check` loads text), it must
     be the IR it was rendered from (archc.fmt's check, A006) and its plan the same network
     (archc.flat.same_network), or the import fails (A505) rather than hand back a different model.

Every layer kind's knowledge comes from its archc.ops entry (positional, flags, traits, SHORTCUTS); no kind is
named here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import ir
from .diagnostics import ArchcError, Diagnostic
from .flat import INPUT, FlatLayer, FlatNetwork
from .ops import ALIASES, OPS, POST_OPS, SHORTCUTS, Op, Shape, lookup

_KEYWORDS = {"network", "input", "param", "import", "block", "residual", "shortcut", "x", "true", "false", "if",
             "else", "and", "or", "not", "in"}
_POST_WORD = {lookup(word).name: word for word in sorted(POST_OPS, key=len)}  # kind -> its shortest word


class DecompileError(Exception):
    """What the decompiler cannot write; archc.decompile.decompile turns it into a diagnostic."""

    def __init__(self, message: str, where: str = "", help: str = "", code: str = "A504"):
        super().__init__(message)
        self.message, self.where, self.help, self.code = message, where, help, code


# ---------------------------------------------------------------- the tree


@dataclass(eq=False)
class _L:
    """One layer line: the layer, and the layers its trailing words add (`bn`, `relu`)."""

    index: int
    posts: list[int] = field(default_factory=list)


@dataclass(eq=False)
class _Res:
    merge: int
    fork: int
    body: list
    shortcut: list | None = None  # explicit `shortcut:`
    auto: str = "projection"  # archc.ops.SHORTCUTS' name when the shortcut is automatic


@dataclass(eq=False)
class _Br:
    merge: int
    fork: int
    branches: list[list]


@dataclass(eq=False)
class _Opt:
    """In a block's template only: lines written `(...) x flag`, there in the calls that pass the flag true (the
    tail a block's body has inside `residual:` and not without it: EfficientNet's drop path)."""

    items: list
    flag: str


@dataclass(eq=False)
class _Call:
    """In a block's template only: a call of another block (the wrapper that puts a block in `residual:`)."""

    block: Any  # _Block
    args: list


def _layers_of(items: list) -> list[int]:
    out: list[int] = []
    for it in items:
        if isinstance(it, _L):
            out += [it.index, *it.posts]
        elif isinstance(it, _Res):
            out += _layers_of(it.body) + _layers_of(it.shortcut or []) + [it.merge]
        else:
            for b in it.branches:
                out += _layers_of(b)
            out.append(it.merge)
    return out


def _last(item) -> int:
    return (item.posts[-1] if item.posts else item.index) if isinstance(item, _L) else item.merge


# ---------------------------------------------------------------- 1. structure


class _Structure:
    def __init__(self, net: FlatNetwork, resolved: list):
        self.net, self.resolved = net, resolved
        self.layers = net.layers
        self.emitted: set[int] = set()
        self.idom = self._dominators()

    def shape(self, value: int) -> Shape:
        return self.net.input_shape if value == INPUT else self.resolved[value][2]

    def _dominators(self) -> list[int]:
        """Immediate dominators with the network's input as root (layers are in data-flow order)."""
        idom: list[int] = []
        depth: dict[int, int] = {INPUT: 0}
        for i, layer in enumerate(self.layers):
            if not layer.inputs:
                raise DecompileError(f"`{layer.path or i}` has no input", layer.path)
            common = layer.inputs[0]
            for other in layer.inputs[1:]:
                a, b = common, other
                while a != b:
                    if depth[a] >= depth[b]:
                        a = idom[a]
                    else:
                        b = idom[b]
                common = a
            idom.append(common)
            depth[i] = depth[common] + 1
        return idom

    def seq(self, start: int, end: int) -> list:
        """The items that take the value `start` to the value `end`, walking back from `end`."""
        items: list = []
        cur = end
        while cur != start:
            if cur == INPUT:  # pragma: no cover - dominance keeps every walk inside its fork
                raise DecompileError("a branch reads from outside its fork", "")
            self._emit(cur)
            layer = self.layers[cur]
            if OPS[layer.op].inputs == "many":
                fork = self.idom[cur]
                items.append(self.merge(cur, fork))
                cur = fork
            else:
                items.append(_L(cur))
                cur = layer.inputs[0]
        items.reverse()
        return items

    def _emit(self, index: int) -> None:
        if index in self.emitted:
            layer = self.layers[index]
            raise DecompileError(f"`{layer.path or layer.op}` feeds two branches that merge at different points: "
                                 "the network is not series-parallel", layer.path,
                                 help="the language writes a merge over branches that start at one point; "
                                      "such a network cannot be written as a spec yet")
        self.emitted.add(index)

    def merge(self, index: int, fork: int) -> _Res | _Br:
        layer = self.layers[index]
        op = OPS[layer.op]
        branches = [self.seq(fork, p) for p in layer.inputs]
        where = layer.path or layer.op
        if len(branches) == 2:
            s, b = (0, 1) if op.shortcut_first else (1, 0)
            # a merge that commutes may take its inputs the other way round: `x + f(x)` is `residual:` too
            roles = [(branches[s], branches[b])] + ([(branches[b], branches[s])] if op.commutes else [])
            for short, body in roles:
                if body and not short:
                    return _Res(index, fork, body)
            for short, body in roles:
                auto = self._automatic(op, fork, body, short) if body and short else None
                if auto is not None:
                    return _Res(index, fork, body, auto=auto)
            short, body = branches[s], branches[b]
            if body and short:
                body_first = min(_layers_of(body)) < min(_layers_of(short))
                if body_first or not op.shortcut_first:
                    return _Res(index, fork, body, shortcut=short)
        if any(not b for b in branches):
            raise DecompileError(f"the `{layer.op}` at `{where}` reads its fork point directly in a place the "
                                 "language cannot write (an identity branch beside others)", layer.path,
                                 help="`residual MERGE:` writes one identity input, in the merge's shortcut "
                                      "position; other identity inputs cannot be written yet")
        return _Br(index, fork, branches)

    def _automatic(self, op: Op, fork: int, body: list, short: list) -> str | None:
        """The name of the automatic shortcut (archc.ops.SHORTCUTS) that `short` is, where infer would make it."""
        src, target = self.shape(fork), self.shape(_last(body[-1]) if body else fork)
        if not op.same_shapes or src == target or not all(isinstance(it, _L) for it in short):
            return None
        normalized = any(OPS[self.layers[i].op].normalizes for i in _layers_of(body))
        got = [(self.layers[i].op, self.resolved[i][0].model_dump()) for i in _layers_of(short)]
        for name, make in SHORTCUTS.items():
            layers = make(src, target, normalized)
            if layers is None or len(layers) != len(got):
                continue
            shapes = [src]
            want = []
            for kind, args in layers:
                resolved = OPS[kind].resolve(args, [shapes[-1]])
                want.append((kind, resolved.model_dump()))
                shapes.append(OPS[kind].shape(resolved, [shapes[-1]]))
            if want == got:
                return name
        return None


# ---------------------------------------------------------------- 2. folding


def _fold(items: list, net: FlatNetwork, resolved: list, kinds: _Kinds) -> list:
    """Trailing words: a layer at its defaults whose kind has a post word (archc.ops.POST_OPS) joins the line
    before it, when that line is a layer of a kind that is not itself a post word."""
    out: list = []
    for it in items:
        if isinstance(it, _Res):
            it.body = _fold(it.body, net, resolved, kinds)
            if it.shortcut is not None:
                it.shortcut = _fold(it.shortcut, net, resolved, kinds)
        elif isinstance(it, _Br):
            it.branches = [_fold(b, net, resolved, kinds) for b in it.branches]
        elif out and isinstance(out[-1], _L) and _foldable(net, resolved, out[-1], it.index, kinds):
            out[-1].posts.append(it.index)
            continue
        out.append(it)
    return out


def _foldable(net: FlatNetwork, resolved: list, line: _L, index: int, kinds: _Kinds) -> bool:
    kind = net.layers[index].op
    base = OPS[net.layers[line.index].op]
    if kind not in _POST_WORD or base.name in _POST_WORD or base.inputs != "one":
        return False
    return resolved[index][0].model_dump() == kinds.plain_of(OPS[kind])


# ---------------------------------------------------------------- spelling a layer


class _Kinds:
    """What decompiling asks of a kind's arguments model, asked once per decompile (networks repeat layers, and
    pydantic's validation is the cost of trying spellings): each set of fields validated once, each kind's
    defaults read once."""

    def __init__(self):
        self.valid: dict[tuple, Any] = {}  # (kind, fields with their types) -> validated arguments, or _REFUSED
        self.defaults: dict[Op, dict] = {}  # kind -> its optional fields' defaults
        self.plain: dict[Op, dict] = {}  # kind -> its arguments all at their defaults, dumped

    def args(self, op: Op, fields: dict) -> Any:
        """op.args(**fields), or _REFUSED where the model refuses them."""
        try:
            key = (op, _typed(fields))
            valid = self.valid.get(key)
        except TypeError:  # an unhashable value: validated every time
            key, valid = None, None
        if valid is None:
            try:
                valid = op.args(**fields)
            except Exception:  # noqa: BLE001 - any refusal means: this spelling does not give the layer
                valid = _REFUSED
            if key is not None:
                self.valid[key] = valid
        return valid

    def resolves(self, op: Op, fields: dict, in_shapes: list) -> dict | None:
        """The resolved arguments `fields` give (dumped), or None where they are refused."""
        valid = self.args(op, fields)
        if valid is _REFUSED:
            return None
        try:
            return op.resolve(valid, in_shapes).model_dump()
        except Exception:  # noqa: BLE001 - any refusal means: this spelling does not give the layer
            return None

    def defaults_of(self, op: Op) -> dict:
        """The optional fields' defaults."""
        found = self.defaults.get(op)
        if found is None:
            found = self.defaults[op] = {k: f.default for k, f in op.args.model_fields.items()
                                              if not f.is_required()}
        return found

    def plain_of(self, op: Op) -> dict:
        """The arguments all at their defaults, dumped (a kind without required arguments)."""
        found = self.plain.get(op)
        if found is None:
            found = self.plain[op] = op.args().model_dump()
        return found


_REFUSED = object()


def _typed(fields: dict) -> tuple:
    """A key of the fields that tells values apart as exactly as their types do (1, 1.0 and True are equal in
    Python); a flat sequence (a size, amounts of padding) with its elements' types in one piece."""
    out = []
    for k, v in fields.items():
        cls = v.__class__
        if cls is tuple or cls is list:
            types = tuple(map(type, v))
            if tuple in types or list in types or dict in types:
                return tuple((k, _deep(v)) for k, v in fields.items())
            out.append((k, cls, types, tuple(v)))
        else:
            out.append((k, cls, v))
    return tuple(out)


def _deep(value: Any) -> Any:
    if isinstance(value, dict):
        return (dict, tuple((k, _deep(v)) for k, v in value.items()))
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_deep(v) for v in value))
    return (type(value), value)


def _explicit(net: FlatNetwork, resolved: list, line: _L, kinds: _Kinds) -> dict:
    """The fewest arguments that give the layer exactly, with its trailing words' effect (archc.binding: a
    trailing normalisation drops the bias unless it is given)."""
    layer = net.layers[line.index]
    op = OPS[layer.op]
    args, in_shapes, _ = resolved[line.index]
    target = args.model_dump()
    implied = {}
    if any(OPS[net.layers[p].op].normalizes for p in line.posts) and "bias" in target:
        implied["bias"] = False
    fields = dict(target)
    # most arguments sit at their defaults: leave those out at once, then try the others one by one
    defaults = kinds.defaults_of(op)
    trial = {k: v for k, v in target.items() if k not in defaults or v != defaults[k]}
    if kinds.resolves(op, {**implied, **trial}, in_shapes) == target:
        fields = trial
    for key in list(fields):
        trial = {k: v for k, v in fields.items() if k != key}
        if kinds.resolves(op, {**implied, **trial}, in_shapes) == target:
            fields = trial
    return fields


def _value(value: Any, positional: bool = False) -> Any:
    """A Python argument value as an IR expression: `3x3` for a positional size, a number for a square pair."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return ir.Name(id=value)
    if isinstance(value, (tuple, list)):
        if not positional and len(value) == 2 and value[0] == value[1]:
            return value[0]
        return ir.Dims(dims=list(value))
    if isinstance(value, ir.Node):
        return value
    raise DecompileError(f"an argument value `{value!r}` has no spelling")


def _layer_ir(op: Op, fields: dict, posts: list[str]) -> ir.Layer:
    """fields: key -> Python value or IR expression (a block parameter)."""
    args = []
    for key, value in op.spelling(fields):
        if key is None and isinstance(value, str):
            args.append(ir.Arg(value=ir.Name(id=value)))
        else:
            args.append(ir.Arg(name=key, value=_value(value, key is None)))
    args += [ir.Arg(value=ir.Name(id=word)) for word in posts]
    return ir.Layer(op=op.name, args=args)


# ---------------------------------------------------------------- names from the source's paths


def _prefix(parts: list[list[str]]) -> list[str]:
    if not parts:
        return []
    common = parts[0]
    for p in parts[1:]:
        n = 0
        while n < min(len(common), len(p)) and common[n] == p[n]:
            n += 1
        common = common[:n]
    return common


def _identifier(text: str, taken: set[str], fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or fallback
    if name[0].isdigit():
        name = f"{fallback}{name}"
    name = name[:60]
    if name in _KEYWORDS or lookup(name) is not None or name in ALIASES:
        name += "_"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


# ---------------------------------------------------------------- 3. stages and units


@dataclass(eq=False)
class _Unit:
    items: list
    uid: str  # the unit's own name in the source (`0`, `denselayer1`), "" if none
    numbered: bool = False  # the unit is a numbered child of its stage (`features.3`)
    prefix: list[str] = field(default_factory=list)  # the path of a residual's or branches' unit: what a layer
    # after it must start with to belong to it


@dataclass(eq=False)
class _Stage:
    key: str
    units: list[_Unit]


class _Paths:
    def __init__(self, net: FlatNetwork, resolved: list):
        self.net, self.resolved = net, resolved
        # module paths are dotted (`layer3.0.conv1`); a framework of flat names (Keras's `conv2_block1_1_conv`)
        # nests with underscores
        paths = [layer.path for layer in net.layers if layer.path]
        self.sep = "_" if paths and not any("." in p for p in paths) and any("_" in p for p in paths) else "."

    def split(self, path: str) -> list[str]:
        return [part for part in path.split(self.sep) if part] if path else []

    def prefix(self, item) -> list[str]:
        if isinstance(item, _L):  # a line is where its main layer is (`features.0`, not its trailing `features.1`)
            return self.split(self.net.layers[item.index].path)
        indexes = _layers_of([item])
        # a merge's own path may be a function's (`add_3`): a residual or branches is named by its weighted layers.
        # Whether a layer is weighted is asked only where its path would shorten the prefix found so far.
        layers, common, below, weighted = self.net.layers, None, "", False
        for i in indexes:
            path = layers[i].path
            if common is not None and (not path or path.startswith(below)):
                continue  # the prefix stays as it is, weighted or not
            if not OPS[layers[i].op].weights(*self.resolved[i][:2]):
                continue
            weighted = True
            if path:
                common = self.split(path) if common is None else _prefix([common, self.split(path)])
                below = "".join(part + self.sep for part in common)  # what every path below the prefix starts with
        if weighted:
            return common or []
        return _prefix([self.split(p) for p in (layers[i].path for i in indexes) if p])

    def key_and_unit(self, item) -> tuple[str, str, bool]:
        """(stage key, unit name, numbered) of a top-level item."""
        parts = self.prefix(item)
        single = isinstance(item, _L)
        numeric = next((n for n, p in enumerate(parts) if p.isdigit()), None)
        nested = numeric is not None and numeric + 1 < len(parts) and parts[numeric + 1].isdigit()
        # a line is in a numbered block of a numbered stage when a module nests below the block (EfficientNet's
        # `features.2.0.block.0.0`), not when the number is a layer's own (ConvNeXt's `features.0.1.norm`)
        if nested and (numeric + 3 < len(parts) or not isinstance(item, _L)):
            numeric += 1  # `features.2.1`: stage `features.2` of numbered stages, unit `1` (EfficientNet)
        if numeric is not None and numeric > 0:
            return ".".join(parts[:numeric]), parts[numeric], True
        if numeric == 0:
            return "", parts[0], True
        if single or (not isinstance(item, _L) and len(parts) > 1 and re.search(r"\d$", parts[-1])):
            return ".".join(parts[:-1]), (parts[-1] if parts else ""), False
        return ".".join(parts), "", False


def _stages(items: list, paths: _Paths) -> list[_Stage]:
    stages: list[_Stage] = []
    for item in items:
        key, uid, numbered = paths.key_and_unit(item)
        if not key and not uid:
            uid = _stem_name(item, paths)
        if stages and stages[-1].units and _inside(stages[-1].units[-1], item, paths):
            stages[-1].units[-1].items.append(item)  # a layer inside the unit before it (Keras's
            continue  # `conv2_block1_out` after the sum of `conv2_block1`)
        if not stages or stages[-1].key != key:
            stages.append(_Stage(key, []))
        _place(stages[-1], item, key, uid, numbered)
    return stages


def _stem_name(item, paths: _Paths) -> str:
    """`conv1`, `bn1`, `relu` of a stem outside every container: the row's first name."""
    first = next((paths.net.layers[i].path for i in _layers_of([item]) if paths.net.layers[i].path), "")
    return (paths.split(first) or [""])[0]


def _inside(unit: _Unit, item, paths: _Paths) -> bool:
    """A layer whose path lies below the unit's own (a unit with a prefix is a residual or branches)."""
    return bool(unit.prefix) and isinstance(item, _L) and paths.prefix(item)[:len(unit.prefix)] == unit.prefix


def _place(stage: _Stage, item, key: str, uid: str, numbered: bool) -> None:
    """The item joins the stage's last unit, or starts a unit of its own."""
    last = stage.units[-1] if stage.units else None
    if last is not None and last.uid == uid and (uid or key):
        last.items.append(item)  # one unit of the source (`layer3.0`), or a stage's unnamed items
    elif last is not None and not uid and isinstance(item, _L) and _trailing(last, item):
        last.items.append(item)
    else:
        prefix = [*key.split("."), uid] if key and uid and not isinstance(item, _L) else []
        stage.units.append(_Unit([item], uid, numbered, prefix))


def _trailing(unit: _Unit, item) -> bool:
    """Without names from the source: a layer line after a residual or branches belongs to its unit."""
    return not unit.uid and not isinstance(unit.items[0], _L)


# ---------------------------------------------------------------- 4. blocks


def _signature(items: list, net: FlatNetwork, explicit: dict[int, dict]) -> tuple:
    out = []
    for it in items:
        if isinstance(it, _L):
            fixed = frozenset((k, v) for k, v in explicit[it.index].items() if isinstance(v, (str, bool)))
            out.append(("L", net.layers[it.index].op, tuple(net.layers[p].op for p in it.posts), fixed))
        elif isinstance(it, _Res):
            out.append(("R", net.layers[it.merge].op, it.auto, _signature(it.body, net, explicit),
                        None if it.shortcut is None else _signature(it.shortcut, net, explicit)))
        else:
            out.append(("B", net.layers[it.merge].op, tuple(_signature(b, net, explicit) for b in it.branches)))
    return tuple(out)


def _lines(items: list) -> list[_L]:
    """The unit's layer lines in a fixed order (the slots of a block)."""
    out: list[_L] = []
    for it in items:
        if isinstance(it, _L):
            out.append(it)
        elif isinstance(it, _Res):
            out += _lines(it.body) + _lines(it.shortcut or [])
        elif isinstance(it, _Br):
            for b in it.branches:
                out += _lines(b)
        elif isinstance(it, _Opt):
            out += _lines(it.items)
    return out  # a _Call writes no line of this block's own


def _height(items: list) -> int:
    """About how many lines the items take written out (a residual's header, its body, its shortcut)."""
    n = 0
    for it in items:
        if isinstance(it, _L):
            n += 1
        elif isinstance(it, _Res):
            n += 1 + _height(it.body) + (0 if it.shortcut is None else 1 + _height(it.shortcut))
        else:
            n += 1 + sum(1 + _height(b) for b in it.branches)
    return n


_PARAM_NAMES = {"filters": "w", "units": "n", "kernel": "k"}


@dataclass(eq=False)
class _Block:
    name: str
    template: list  # the first instance's items: the block's code
    slots: dict[tuple[int, str], Any]  # (slot, key) -> IR expression for arguments that vary
    keys: list[set[str]]  # per slot: the arguments it writes
    params: list[ir.BlockParam]
    calls: list[list[ir.Arg]]  # per instance, its call's arguments
    table: list = field(default_factory=list)  # (name, per-instance values, default) of each parameter
    uses: _Block | None = None  # the block its template calls (defined before it)


_ABSENT = object()  # a slot an instance does not have: the optional tail, in the calls without it


class _Blocks:
    def __init__(self, net: FlatNetwork, resolved: list, explicit: dict[int, dict], unit_input):
        self.net, self.resolved, self.explicit, self.unit_input = net, resolved, explicit, unit_input
        self.columns: dict[tuple[int, ...], tuple] = {}  # _columns' memo

    def find(self, units: list[_Unit]) -> dict[int, tuple[_Block, int]]:
        """id(unit) -> (its block, its instance number) for units worth a block: those with a residual or
        branches (or a chain of lines, _chain_block) whose shape of code occurs more than once. Units that are
        another group's code inside `residual:` (plus a tail) join that group's block (_skips)."""
        groups: dict[tuple, list[_Unit]] = {}
        for unit in units:
            compound = any(not isinstance(it, _L) for it in unit.items)
            if not compound and not _chain_block(unit.items, self.net, self.explicit):
                continue
            groups.setdefault(_signature(unit.items, self.net, self.explicit), []).append(unit)
        out: dict[int, tuple[_Block, int]] = {}
        taken: set[str] = set()
        parts = [part for members in groups.values() for part in self._by_words(members)]
        pairs = self._skips(parts)
        position = {id(u): n for n, u in enumerate(units)}
        built: set[int] = set()
        for members in parts:
            pair = pairs.get(id(members))
            if pair is not None:
                if id(pair) not in built:  # at whichever of its two parts comes first
                    built.add(id(pair))
                    self._pair(*pair, position, taken, out)
                continue
            if len(members) < 2:  # written where it stands: a block called once only adds its header
                continue
            block = self.block(members, taken)
            for n, unit in enumerate(members):
                out[id(unit)] = (block, n)
        return out

    def _skips(self, parts: list[list[_Unit]]) -> dict[int, tuple[list[_Unit], list[_Unit], int]]:
        """Pairs of groups where one group's code, inside `residual:` and followed by a few more lines (the tail),
        is the other's: EfficientNet's and MobileNet v2's first block of a stage (no skip) and the others (a skip,
        and a drop path). They become ONE block with a flag for the tail (`(stochastic_depth ...) x skip`) and a
        wrapper that calls it in `residual:`, as a person writes them (specs/blocks.arch's `mbconv_se`): one
        block's calls then count both kinds (`call_index`), and its parameters are found over both. Where that
        takes fewer lines than two blocks (by _height). id(part) -> (plain, residual, plain's item count)."""
        sigs = {id(p): _signature(p[0].items, self.net, self.explicit) for p in parts}
        pairs: dict[int, tuple[list[_Unit], list[_Unit], int]] = {}
        for skipped in parts:
            first = skipped[0].items
            if id(skipped) in pairs or len(first) != 1 or not isinstance(first[0], _Res) \
                    or first[0].shortcut is not None:
                continue
            body = first[0].body
            found = None
            for plain in parts:
                n = len(plain[0].items)
                if plain is skipped or id(plain) in pairs or n > len(body) \
                        or not all(isinstance(it, _L) for it in body[n:]) \
                        or sigs[id(plain)] != _signature(body[:n], self.net, self.explicit):
                    continue
                if found is None or len(plain) > len(found):
                    found = plain
            if found is None:
                continue
            h, tail = _height(found[0].items), len(body) - len(found[0].items)
            apart = sum(1 + _height(p[0].items) if len(p) > 1 else len(p) * _height(p[0].items)
                        for p in (found, skipped))
            joined = 1 + h + tail + 3  # the block with its tail; the wrapper's header, `residual:`, the call
            members = found + skipped
            if joined >= apart or len(self._by_words(members, self._views(members, set(map(id, skipped))))) > 1:
                continue
            pairs[id(found)] = pairs[id(skipped)] = (found, skipped, len(found[0].items))
        return pairs

    @staticmethod
    def _views(members: list[_Unit], skipped: set[int]) -> list[list]:
        """Each member's code: a residual member's is its residual's body."""
        return [u.items[0].body if id(u) in skipped else u.items for u in members]

    def _pair(self, plain: list[_Unit], skipped: list[_Unit], n: int, position: dict[int, int], taken: set[str],
              out: dict[int, tuple[_Block, int]]) -> None:
        """The one block of a _skips pair, its calls in the network's order, and the wrapper of its `residual:`
        calls."""
        ids = {id(u) for u in skipped}
        members = sorted(plain + skipped, key=lambda u: position[id(u)])
        views = self._views(members, ids)
        body = skipped[0].items[0].body
        template = body[:n] + ([_Opt(body[n:], "")] if len(body) > n else [])
        inner = self.block(members, taken, views, template)
        for k, unit in enumerate(members):
            if id(unit) not in ids:
                out[id(unit)] = (inner, k)
        wrapper = self._wrapper(skipped, [k for k, u in enumerate(members) if id(u) in ids], inner, taken)
        for k, unit in enumerate(skipped):
            out[id(unit)] = (wrapper, k)

    def _wrapper(self, skipped: list[_Unit], at: list[int], inner: _Block, taken: set[str]) -> _Block:
        """`block NAME(...): residual: INNER(..., flag=true)`: the arguments the residual calls pass, from the
        wrapper's input (`in.c`), as constants, or as the wrapper's own parameters."""
        inputs = [self.unit_input(u) for u in skipped]
        chans = [s[-1] for s in inputs] if all(len(s) == 3 for s in inputs) else None
        params: list[tuple[str, list, Any]] = []
        args: list[ir.Arg] = []
        for name, values, default in inner.table:
            values = [values[k] for k in at]
            if values == chans:
                expr = ir.Name(id="in.c")
            elif all(repr(v) == repr(values[0]) for v in values):
                if default is not None and repr(values[0]) == repr(default):
                    continue  # the parameter's default: not passed
                expr = _value(values[0])
            else:
                expr = self._relation(values, inputs, params, True, len(values))
                if expr is None:
                    params.append((name, values, None))
                    expr = ir.Name(id=name)
            args.append(ir.Arg(name=None if default is None else name, value=expr))
        res = skipped[0].items[0]
        template = [_Res(res.merge, res.fork, [_Call(inner, args)], auto=res.auto)]
        calls = [[ir.Arg(value=_value(values[k])) for _, values, _ in params] for k in range(len(skipped))]
        return _Block(self._name(skipped, taken, skipped[0].items), template, {}, [],
                      [ir.BlockParam(name=p[0]) for p in params], calls, params, uses=inner)

    def _columns(self, views: list[list]) -> tuple[list[set[str]], list[tuple[int, str, list]]]:
        """Per slot the arguments any member writes; and the (slot, argument, values) that differ (_ABSENT where a
        member has no such slot: a tail). Found once for the same views (_by_words, then block)."""
        key = tuple(map(id, views))
        found = self.columns.get(key)
        if found is None:
            found = self.columns[key] = (views, self._find_columns(views))  # the views kept: their ids stay theirs
        return found[1]

    def _find_columns(self, views: list[list]) -> tuple[list[set[str]], list[tuple[int, str, list]]]:
        per_unit = [_lines(v) for v in views]
        longest = max(per_unit, key=len)
        slots = len(longest)
        keys: list[set[str]] = [set() for _ in range(slots)]
        for lines in per_unit:
            for s, line in enumerate(lines):
                keys[s] |= set(self.explicit[line.index])
        columns: list[tuple[int, str, list]] = []
        for s in range(slots):
            for key in sorted(keys[s], key=list(OPS[self.net.layers[longest[s].index].op].args.model_fields).index):
                values = [_square(self._value(lines[s].index, key)) if s < len(lines) else _ABSENT
                          for lines in per_unit]
                present = [v for v in values if v is not _ABSENT]
                if any(v != present[0] for v in present):
                    columns.append((s, key, values))
        return keys, columns

    def _value(self, index: int, key: str) -> Any:
        """A line's argument as written, else as resolved (dumped only then: dumping every time was a hot spot)."""
        written = self.explicit[index]
        return written[key] if key in written else self.resolved[index][0].model_dump()[key]

    def _by_words(self, members: list[_Unit], views: list[list] | None = None) -> list[list[_Unit]]:
        """Members apart where an argument that differs is a word or nothing (`padding` `valid` or 1): a call
        passes numbers, sizes and truth values only."""
        _, columns = self._columns(views or [u.items for u in members])
        words = [values for _, _, values in columns
                 if any(v is None or isinstance(v, str) for v in values)]
        if not words:
            return [members]
        parts: dict[tuple, list[_Unit]] = {}
        for n, unit in enumerate(members):
            parts.setdefault(tuple(repr(values[n]) for values in words), []).append(unit)
        return list(parts.values())

    def block(self, members: list[_Unit], taken: set[str], views: list[list] | None = None,
              template: list | None = None) -> _Block:
        """The block of `members` (every call of it, in the network's order); `views` and `template` where the
        members' code is not their items (_pair: a residual's body, and a tail written `x flag`)."""
        views = views or [u.items for u in members]
        keys, columns = self._columns(views)
        inputs = [self.unit_input(u) for u in members]
        calls_in_order = True  # members are every call of the block, in the order infer counts them
        exprs: dict[tuple[int, str], Any] = {}
        params: list[tuple[str, list, Any]] = []  # (name, values, default)
        names: set[str] = set()

        def parameter(key: str, values: list, default: Any) -> ir.Name:
            base = _PARAM_NAMES.get(key, key)
            name, n = base, 2
            while name in names or name in _KEYWORDS:
                name, n = f"{base}{n}", n + 1
            names.add(name)
            params.append((name, values, default))
            return ir.Name(id=name)

        for s, key, values in columns:
            field_info = OPS[self.net.layers[_lines(template or views[0])[s].index].op].args.model_fields[key]
            if any(v is _ABSENT for v in values):  # a tail's argument: from `call_index`, else a parameter the
                at = [n for n, v in enumerate(values) if v is not _ABSENT]  # calls without the tail leave out
                expr = _progression([values[n] for n in at], at, len(values))
                if expr is None:
                    default = values[at[0]] if field_info.is_required() else _square(field_info.default)
                    expr = parameter(key, [default if v is _ABSENT else v for v in values], default)
            else:
                expr = self._relation(values, inputs, params, calls_in_order, len(values))
                if expr is None:
                    expr = parameter(key, values, _default(values, field_info.default))
            exprs[(s, key)] = expr
        for it in template or []:
            if isinstance(it, _Opt):  # the tail's flag: false in the calls without it
                it.flag = parameter("skip", [len(_lines(v)) == len(_lines(template)) for v in views], False).id
        params.sort(key=lambda p: p[2] is not None)
        calls = []
        for n in range(len(members)):
            args = []
            for name, values, default in params:
                if default is None:
                    args.append(ir.Arg(value=_value(values[n])))
                elif values[n] != default:
                    args.append(ir.Arg(name=name, value=_value(values[n])))
            calls.append(args)
        block_params = [ir.BlockParam(name=name, default=None if default is None else _value(default))
                        for name, _, default in params]
        return _Block(self._name(members, taken, views[0]), template or members[0].items, exprs, keys, block_params,
                      calls, params)

    @staticmethod
    def _relation(values: list, inputs: list[Shape], params: list, calls_in_order: bool, calls: int) -> Any:
        """An expression for a column that follows from the block's input, an earlier parameter, or the
        call's place among the block's calls (`call_index`: ConvNeXt's drop-path rate grows linearly)."""
        for name, other, _ in params:
            if other == values:
                return ir.Name(id=name)
        if calls_in_order:  # only then does `call_index` count the members in their order
            progression = _progression(values, list(range(len(values))), calls)
            if progression is not None:
                return progression
        if not _all_ints(values) or any(len(s) != 3 for s in inputs):
            return None
        by_channels = _of_channels(values, [s[-1] for s in inputs])
        return by_channels if by_channels is not None else _of_parameter(values, params)

    def _name(self, members: list[_Unit], taken: set[str], code: list) -> str:
        stems = {re.sub(r"_?\d+$", "", u.uid) for u in members}
        stem = stems.pop() if len(stems) == 1 else ""
        if not stem or stem.isdigit() or stem in _KEYWORDS or lookup(stem) is not None:  # Keras's `block1`
            stem = self._what(code)
        return _identifier(stem, taken, "block")

    def _what(self, items: list) -> str:
        """A name from what the unit is, by its kinds' traits."""
        first = items[0]
        if isinstance(first, _L):
            return "unit"
        op = OPS[self.net.layers[first.merge].op]
        if isinstance(first, _Br):
            return "mixed" if op.joins else "branches"
        convs = [line for line in _lines(first.body) if OPS[self.net.layers[line.index].op].category == "conv"]
        if op.joins:
            return "dense_layer"
        if not op.same_shapes:
            return "gate"
        if len(convs) == 3:
            return "bottleneck"
        return "basic" if len(convs) == 2 else "residual_block"


def _all_ints(values: list) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _of_channels(values: list[int], chans: list[int]) -> Any:
    """`in.c`, `k * in.c` or `in.c // k` where one of them gives every value (a bottleneck's `4 * in.c`)."""
    if values == chans:
        return ir.Name(id="in.c")
    pairs = list(zip(values, chans, strict=True))
    if all(c and v % c == 0 for v, c in pairs) and len({v // c for v, c in pairs}) == 1:
        return ir.BinOp(op="*", left=values[0] // chans[0], right=ir.Name(id="in.c"))
    if all(v and c % v == 0 for v, c in pairs) and len({c // v for v, c in pairs}) == 1:
        return ir.BinOp(op="//", left=ir.Name(id="in.c"), right=chans[0] // values[0])
    return None


def _of_parameter(values: list[int], params: list) -> Any:
    """`k * name` or `name // d` of an earlier parameter every call passes (`padding = k // 2`); a column
    that does not vary stays a number of its own."""
    if len(set(values)) == 1:
        return None
    for name, other, default in params:
        if default is not None or not _all_ints(other):  # a defaulted parameter is not in every call
            continue
        if all(o and v % o == 0 for v, o in zip(values, other, strict=True)):
            ratios = {v // o for v, o in zip(values, other, strict=True)}
            if len(ratios) == 1:
                return ir.BinOp(op="*", left=ratios.pop(), right=ir.Name(id=name))
        for d in (2, 3, 4):
            if values == [o // d for o in other]:
                return ir.BinOp(op="//", left=ir.Name(id=name), right=d)
    return None


def _progression(values: list, at: list[int], calls: int) -> Any:
    """An expression of `call_index` that gives each value exactly at its call (`values[n]` at call `at[n]` of
    `calls`), as the spec's own arithmetic computes it; None where none does. Values on a line through 0 at a call
    (`k` calls before the first, counting the calls that are not this block's: EfficientNet's first blocks) are
    `p*(call_index + k) / d`, a rate that grows towards `p` over `d` calls as the reference implementations
    compute it (torchvision: `p * block_id / blocks` for EfficientNet, `/ (blocks - 1)` for ConvNeXt): `d` is
    tried first as the count of calls from that 0 (`calls + k`) and one less, then any other up to four times as
    many with a short `p`; `a + d*call_index` before them where `a` and `d` are round numbers, else after the
    first two."""
    from .exprs import CALL_INDEX, evaluate

    if len(values) < 3 or not all(isinstance(v, float) for v in values):
        return None
    slope = (values[-1] - values[0]) / (at[-1] - at[0])
    if slope == 0:
        return None
    index = ir.Name(id=CALL_INDEX)

    def exact(expr: Any) -> bool:
        try:
            return all(evaluate(expr, {CALL_INDEX: n}) == v for n, v in zip(at, values, strict=True))
        except Exception:  # noqa: BLE001 - a refusal (a division by zero) is no expression for these values
            return False

    def affine(short: bool):  # `a + d*call_index`, the step from the first two values or the first and the last
        for step in dict.fromkeys([(values[1] - values[0]) / (at[1] - at[0]), slope]):
            first = values[0] - step * at[0]
            if short and (_short(step) != step or _short(first) != first):
                continue  # only a line of round numbers (`0.5 + 0.25*call_index`) comes before p / d
            term = ir.BinOp(op="*", left=step, right=index)
            yield ir.BinOp(op="+", left=first, right=term) if first else term

    def candidates():
        yield from affine(True)
        zero = at[0] - values[0] / slope  # the call (or the place before the first) where the line is 0
        k = round(zero)
        if abs(zero - k) >= 1e-6:
            yield from affine(False)
            return
        shifted = index if k == 0 else ir.BinOp(op="-" if k > 0 else "+", left=index, right=abs(k))
        whole = calls - k  # the calls from that 0 on
        for d in dict.fromkeys([whole, whole - 1, *range(1, 4 * max(whole, 1) + 1)]):
            p = _short(slope * d) if d > 0 else None
            if p is not None:
                term = ir.BinOp(op="*", left=p, right=shifted)
                yield term if d == 1 else ir.BinOp(op="/", left=term, right=d)
            if d == whole - 1:  # after the reference implementations' denominators
                yield from affine(False)

    return next((expr for expr in candidates() if exact(expr)), None)


def _short(value: float) -> float | None:
    """The value with the fewest significant digits (up to 6) that is it within rounding (`0.2` for
    0.20000000000000004), or None."""
    if value == 0:
        return 0.0
    for digits in range(1, 7):
        short = float(f"{value:.{digits}g}")
        if abs(short - value) <= 1e-9 * abs(value):
            return short
    return None


def _square(value: Any) -> Any:
    """A square pair as one number (`3` for 3x3), as calls write it: so `padding` can follow `k`."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1] and isinstance(value[0], int):
        return value[0]
    return value


def _chain_block(items: list, net: FlatNetwork, explicit: dict[int, dict]) -> bool:
    """A unit without merges is worth a block when it has three lines or more and they are not all alike
    (VGG's `conv 3x3, w, same, relu` lines are `(...) x 3` in the stage's row)."""
    lines = [(net.layers[it.index].op, sorted(explicit[it.index].items())) for it in items]
    return len(lines) >= 3 and any(line != lines[0] for line in lines)


def _default(values: list, field_default: Any) -> Any:
    """A parameter's default: the argument's own default (a stride of 1) when most instances take it."""
    value, count = Counter(map(repr, values)).most_common(1)[0]
    if len(values) >= 3 and count * 2 > len(values) and value == repr(_square(field_default)):
        return next(v for v in values if repr(v) == value)
    return None


# ---------------------------------------------------------------- 5. the IR


class _Writer:
    def __init__(self, net: FlatNetwork, resolved: list, explicit: dict[int, dict]):
        self.net, self.resolved, self.explicit = net, resolved, explicit

    def items(self, items: list, exprs: dict | None = None, counter: list | None = None,
              keys: list | None = None) -> list:
        """IR items; inside a block, `exprs` replaces the varying arguments of each slot (numbered by `counter`)."""
        counter = counter if counter is not None else [0]
        out: list = []
        for it in items:
            if isinstance(it, _L):
                out.append(self.line(it, exprs, counter, keys))
            elif isinstance(it, _Res):
                merge = self.net.layers[it.merge].op
                body = self.items(it.body, exprs, counter, keys)
                short = None if it.shortcut is None else self.items(it.shortcut, exprs, counter, keys)
                out.append(ir.Residual(merge=merge, body=body, shortcut=short, auto_shortcut=it.auto))
            elif isinstance(it, _Opt):
                out.append(ir.Group(body=self.items(it.items, exprs, counter, keys), repeat=ir.Name(id=it.flag)))
            elif isinstance(it, _Call):
                out.append(ir.Call(block=it.block.name, args=it.args))
            else:
                merge = self.net.layers[it.merge].op
                branches = []
                for n, b in enumerate(it.branches):
                    body = self.items(b, exprs, counter, keys)
                    simple = all(x.kind in ("layer", "call", "group") for x in body)
                    branches.append(ir.Branch(name=None if simple else f"b{n + 1}", body=body))
                out.append(ir.Branches(merge=merge, branches=branches))
        return out

    def line(self, it: _L, exprs: dict | None, counter: list, keys: list | None) -> ir.Layer:
        slot = counter[0]
        counter[0] += 1
        op = OPS[self.net.layers[it.index].op]
        explicit = self.explicit[it.index]
        fields = dict(explicit)
        if exprs is not None and keys is not None:
            target = self.resolved[it.index][0].model_dump()
            fields = {k: explicit.get(k, target[k]) for k in keys[slot]}
            for (s, key), expr in exprs.items():
                if s == slot:
                    fields[key] = expr
        posts = [_POST_WORD[self.net.layers[p].op] for p in it.posts]
        return _layer_ir(op, fields, posts)


def _repeats(items: list) -> list:
    """Consecutive identical calls and layer lines become one item with `x N`; a run of a few lines that
    repeats, a group `(...) x N` (MobileNet v1's depthwise and pointwise convs)."""
    items = _single_repeats(items)
    dumps = None
    for width in range(2, 5):
        if dumps is None:  # dumped once for as long as no width groups anything
            dumps = [it.model_dump() if it.kind in ("call", "layer", "group") else None for it in items]
        grouped = _group_repeats(items, width, dumps)
        if grouped is not items:
            items, dumps = grouped, None
    return items


def _group_repeats(items: list, width: int, dumps: list) -> list:
    """`items` itself where no run of `width` items repeats."""
    out: list = []
    i = 0
    while i < len(items):
        window = dumps[i:i + width]
        count = 1
        while len(window) == width and None not in window \
                and dumps[i + count * width:i + (count + 1) * width] == window:
            count += 1
        if count > 1:
            out.append(ir.Group(body=list(items[i:i + width]), repeat=count))
            i += count * width
        else:
            out.append(items[i])
            i += 1
    return out if len(out) != len(items) else items


def _single_repeats(items: list) -> list:
    out: list = []
    last = None  # the dump of out[-1] without its repeat (_base), where it is a call or a layer
    for it in items:
        if it.kind not in ("call", "layer"):
            out.append(it)
            last = None
            continue
        dump = it.model_dump()
        if last is not None and last == dump:
            prev = out[-1]
            count = (prev.repeat or 1) + 1
            out[-1] = prev.model_copy(update={"repeat": count})
            continue
        out.append(it)
        last = {**dump, "repeat": None}
    return [ir.Group(body=[it.model_copy(update={"repeat": None})], repeat=it.repeat)
            if it.kind == "layer" and it.repeat else it for it in out]


def _size(shape: Shape) -> Any:
    if len(shape) == 3:
        return ir.Dims(dims=[shape[0], shape[1]])
    return shape[0]


# ---------------------------------------------------------------- entry point


def nest_joins(net: FlatNetwork) -> FlatNetwork:
    """Concatenations of many inputs re-nested by associativity: `concat(x, a, b, c)` where `concat(x, a, b)`
    is computed too becomes `concat(that, c)`, the same values in the same channel order. torchvision's DenseNet
    concatenates every earlier output anew for each layer; nested, a dense block is a chain of `residual concat:`.
    Only for merges that join channels of inputs of one size (so a cropping merge crops nothing)."""
    resolved = net.resolved()
    layers = list(net.layers)
    seen: dict[tuple, int] = {}
    for i, layer in enumerate(net.layers):
        ins = layer.inputs
        in_shapes = resolved[i][1]
        if OPS[layer.op].joins and len(ins) > 2 and all(len(s) == 3 and s[:2] == in_shapes[0][:2]
                                                         for s in in_shapes):
            for j in range(len(ins) - 1, 1, -1):  # the longest prefix computed before
                earlier = seen.get((layer.op, ins[:j]))
                if earlier is not None:
                    layers[i] = FlatLayer(layer.op, layer.args, (earlier, *ins[j:]), layer.path, layer.tensors)
                    break
        seen.setdefault((layer.op, ins), i)
    if layers == net.layers:
        return net
    return FlatNetwork(net.input_shape, layers, net.output, net.name, net.source, net.resolutions)  # resolved once


def decompile_ir(net: FlatNetwork) -> ir.Spec:
    """The flat network as spec IR (blocks, stages, calls). Raises DecompileError where the structure cannot
    be written. `net` is taken as it is: `decompile` re-nests concatenations first (nest_joins)."""
    resolved = net.resolved()
    structure = _Structure(net, resolved)
    items = structure.seq(INPUT, net.output)
    dead = [i for i in range(len(net.layers)) if i not in structure.emitted]
    if dead:
        layer = net.layers[dead[0]]
        raise DecompileError(f"{len(dead)} layer{'s' * (len(dead) != 1)} never reach the output, the first "
                             f"`{layer.path or layer.op}`", layer.path,
                             help="a spec computes one output; models with several outputs cannot be written yet")
    kinds = _Kinds()
    items = _fold(items, net, resolved, kinds)
    explicit: dict[int, dict] = {}
    spelled: dict[tuple, dict] = {}  # networks repeat layers: each one's spelling is found once
    for line in _lines(items):
        args, in_shapes, _ = resolved[line.index]
        op = OPS[net.layers[line.index].op]
        # what _explicit reads; the input shapes only where the kind resolves its arguments by them (a kind
        # without a `resolve` of its own takes its arguments as they are, whatever its input)
        shapes = in_shapes if type(op).resolve is not Op.resolve else ()
        key = (op.name, id(args), *shapes, any(OPS[net.layers[p].op].normalizes for p in line.posts))
        if key not in spelled:
            spelled[key] = _explicit(net, resolved, line, kinds)
        explicit[line.index] = dict(spelled[key])
    paths = _Paths(net, resolved)
    stages = _stages(items, paths)

    def unit_input(unit: _Unit) -> Shape:
        first = unit.items[0]
        value = net.layers[first.index].inputs[0] if isinstance(first, _L) else first.fork
        return structure.shape(value)

    blocks = _Blocks(net, resolved, explicit, unit_input).find([u for s in stages for u in s.units])
    writer = _Writer(net, resolved, explicit)
    defs: dict[int, _Block] = {}
    body: list = []
    taken: set[str] = set()
    for stage in _split(stages, blocks, structure):
        stage_items: list = []
        for unit in stage.units:
            found = blocks.get(id(unit))
            if found is None:
                stage_items += writer.items(unit.items)
            else:
                block, n = found
                if block.uses is not None:  # the block a wrapper calls is defined before it
                    defs.setdefault(id(block.uses), block.uses)
                defs.setdefault(id(block), block)
                stage_items.append(ir.Call(block=block.name, args=block.calls[n]))
        stage_items = _repeats(stage_items)
        last = stage.units[-1].items[-1]
        if stage.key or stage.units[0].uid:
            parts = (stage.key or stage.units[0].uid).split(".")
            named = max((n for n, p in enumerate(parts) if not p.isdigit()), default=0)
            text = "_".join(parts[named:])  # `features.2.1` -> `features_2_1`
            name = _identifier(text, taken, "stage")
            body.append(ir.Scope(name=name, expect=_size(structure.shape(_last(last))), body=stage_items))
        else:
            body += stage_items
    block_defs = [ir.BlockDef(name=b.name, params=b.params, body=writer.items(b.template, b.slots, [0], b.keys))
                  for b in defs.values()]
    name = _identifier(net.name or "imported", set(), "imported")
    input_expr = ir.Dims(dims=list(net.input_shape)) if len(net.input_shape) > 1 else net.input_shape[0]
    return ir.Spec(name=name, description=f"imported from {net.source}" if net.source else None,
                   input=input_expr, blocks=block_defs, body=body)


def _split(stages: list[_Stage], blocks: dict, structure: _Structure) -> list[_Stage]:
    """A stage of numbered units (`features.1`, `features.2`, ...) splits where the output's width (channels)
    changes, except between calls of one block with the same arguments (a dense block's layers grow its width):
    the rows of the paper's table (MobileNet v2's (t, c, n, s), VGG's convs and their pooling)."""
    out: list[_Stage] = []
    for stage in stages:
        current = _Stage(stage.key, [])
        out.append(current)
        previous = None
        for unit in stage.units:
            if previous is not None and previous.numbered and unit.numbered:
                before = structure.shape(_last(previous.items[-1]))[-1]
                after = structure.shape(_last(unit.items[-1]))
                after = after[-1] if len(after) == 3 else before  # a classifier's vectors stay one row
                a, b = blocks.get(id(previous)), blocks.get(id(unit))
                same_call = a is not None and b is not None and a[0] is b[0] and a[0].calls[a[1]] == b[0].calls[b[1]]
                if before != after and not same_call:
                    current = _Stage(f"{stage.key}.{unit.uid}" if stage.key else unit.uid, [])
                    out.append(current)
            current.units.append(unit)
            previous = unit
    return out


def decompile(net: FlatNetwork, verify: bool = True) -> str:
    """The spec text of a flat network: canonical (`archc fmt` leaves it as it is), with a header comment
    naming the source. With `verify` (the default), the text is checked back and must be the same network
    (after nest_joins, which changes no value); ArchcError (A504, A505) otherwise."""
    from .fmt import check_written, render_spec

    net = nest_joins(net)
    try:
        spec = decompile_ir(net)
    except DecompileError as e:
        where = f" (at `{e.where}`)" if e.where else ""
        raise ArchcError([Diagnostic(e.code, e.message + where, None, help=e.help or None)]) from None
    body = render_spec(spec)
    header = f"# written by `archc import` from {net.source or 'a model'}; blocks and stages found in its structure\n"
    text = header + body
    if not verify:
        check_written(body, spec)
        return text
    problem = _verify(net, text, body, spec)
    if problem is not None:
        raise ArchcError([Diagnostic("A505", f"the spec written for {net.source or 'the model'} would not be "
                                     f"the same network: {problem}", None,
                                     help="this is a bug in archc's import; please report it with the model")])
    return text


def _verify(net: FlatNetwork, text: str, body: str, spec: ir.Spec) -> str | None:
    """The written text, loaded as `archc check` loads text (parsed once), must be `spec` again (archc.fmt's
    check: ArchcError A006 otherwise, as format_spec raises it) and check to the same network as `net` (else
    what differs)."""
    from . import check
    from .flat import flat_of_plan, same_network
    from .fmt import check_written
    from .loader import load

    try:
        loaded = load(text=text)
    except ArchcError as e:
        check_written(body, spec)  # text that does not parse is format_spec's A006; anything else does not check
        return f"it does not check ({e.diagnostics[0].message})"
    check_written(body, spec, back=loaded.spec)
    try:
        plan = check(loaded)
    except ArchcError as e:
        return f"it does not check ({e.diagnostics[0].message})"
    return same_network(net, flat_of_plan(plan))


def import_model(source: Any, input_shape: tuple[int, ...] | None = None, partial: bool = False) -> str:
    """`archc import`: read any source archc.readers.read_source takes and write its spec. An operation the
    language cannot express is ArchcError A501 naming it and where it sits; with `partial`, the spec of the
    layers read before it, with a comment at the gap."""
    from .flat import Unsupported, upstream
    from .readers import read_source

    try:
        net = read_source(source, input_shape)
    except Unsupported as e:
        if not partial or e.partial is None or not e.partial.layers:
            help = e.help or "the language cannot write this operation yet"
            if not partial:
                help += "; `--partial` (`partial=True`) writes the layers before it"
            what = e.what if "`" in e.what else f"`{e.what}`"  # a reader may quote its own words
            raise ArchcError([Diagnostic("A501", f"{what} at `{e.where}` cannot be written as a spec", None,
                                         help=help)]) from None
        kept = upstream(e.partial)
        text = decompile(kept)
        dropped = len(e.partial.layers) - len(kept.layers)
        note = f" ({dropped} layer{'s' * (dropped != 1)} on other branches left out)" if dropped else ""
        what = e.what if "`" in e.what else f"`{e.what}`"
        return text + f"# archc import stopped here: {what} at `{e.where}` cannot be written as a spec yet{note}\n"
    return decompile(net)
