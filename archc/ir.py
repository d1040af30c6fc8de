"""The spec IR: what a `.arch` file (or its JSON twin) says, before anything is expanded.

Frozen pydantic models with `extra="forbid"`. The JSON form of a spec is exactly `Spec.model_dump_json()`,
and `archc schema` publishes `Spec.model_json_schema()`. Every node carries the `Span` it came from
(`None` for nodes written by hand in JSON). Literal numbers and booleans stay plain JSON values.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .diagnostics import Span

# Every name a spec gives (layer kinds, blocks, scopes, branches, parameters, the network) is an identifier of at
# most MAX_NAME_LENGTH characters. The grammar and the parser hold text to this; these types hold JSON specs and
# IR built in Python to it, so nothing that reaches a backend's generated source can be code.
MAX_NAME_LENGTH = 128
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, max_length=MAX_NAME_LENGTH)]
# A variable may read an attribute of the input shape: `in.c`.
_PART = rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_NAME_LENGTH - 1}}}"
VariableName = Annotated[str, StringConstraints(pattern=rf"^{_PART}(?:\.{_PART})?$")]
# Strings (descriptions, import paths, string values) hold no line break or other control character but the
# tab, in text (the grammar's STRING) and in JSON alike: nothing can end a comment or a line of generated source.
# A double quote is allowed in JSON; `archc fmt` says when such a spec cannot be written as text.
TEXT_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
# Integers a spec writes or computes stay within what every framework can store (int64).
MAX_INT = 2**63 - 1
# How deeply the parse tree may nest: blocks, scopes, groups, residuals, and expressions (each operator of a
# chain such as `1+1+1` is a level). Real specs nest under 15; the limit keeps every later pass (all of them
# recursive) far from Python's recursion limit. Checked by the parser before the tree is transformed.
MAX_NESTING_DEPTH = 100


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    span: Span | None = None


# ---------------------------------------------------------------- expressions


class Name(Node):
    """A variable (`w`, `classes`, `in.c`) or a bare word (`same`, `relu`) that the layer's op reads as a flag."""

    kind: Literal["name"] = "name"
    id: VariableName


class Dims(Node):
    """`224x224x3`, `3x3` or the tuple `(2, 1)`."""

    kind: Literal["dims"] = "dims"
    dims: list[Expr]


class Str(Node):
    kind: Literal["str"] = "str"
    value: Text


class Percent(Node):
    """`40%`: evaluates to 0.4, kept apart so that `archc fmt` writes it back as written."""

    kind: Literal["percent"] = "percent"
    value: float


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/", "//", "==", "!=", "<", "<=", ">", ">=", "and", "or"]
    left: Expr
    right: Expr


class UnaryOp(Node):
    kind: Literal["unary"] = "unary"
    op: Literal["-", "not"]
    operand: Expr


class Func(Node):
    """A built-in function: `int(x)`, `round(x)`, `min(a, b)`, `max(a, b)`."""

    kind: Literal["func"] = "func"
    func: Identifier
    args: list[Expr]


class Cond(Node):
    kind: Literal["cond"] = "cond"
    test: Expr
    then: Expr
    orelse: Expr


Expr = Union[
    bool,
    int,
    float,
    Annotated[Union[Name, Dims, Str, Percent, BinOp, UnaryOp, Func, Cond], Field(discriminator="kind")],
]


# ---------------------------------------------------------------- items


class Arg(Node):
    """One argument of a layer or block call: positional when `name` is None."""

    name: Identifier | None = None
    value: Expr


class ItemBase(Node):
    repeat: Expr | None = None  # `x 3`
    expect: Expr | None = None  # `-> 28x28x256`: the checked output shape


class Layer(ItemBase):
    """`conv 3x3, 64, stride=2, bn, relu`: one layer kind from archc.ops, with its arguments."""

    kind: Literal["layer"] = "layer"
    op: Identifier
    args: list[Arg] = []


class Call(ItemBase):
    """`bottleneck(128, stride=2)`: a block defined with `block`."""

    kind: Literal["call"] = "call"
    block: Identifier
    args: list[Arg] = []


class Group(ItemBase):
    """`(conv 3x3, 64, relu; maxpool 2x2) x 2`: a sequence that repeats as one."""

    kind: Literal["group"] = "group"
    body: list[Item]


class Scope(Node):
    """`conv3_x 28x28 : ...`: a named part of the network (a paper's stage); `expect` checks its output."""

    kind: Literal["scope"] = "scope"
    name: Identifier
    expect: Expr | None = None
    body: list[Item]


class Residual(Node):
    """`residual:` merges its body's output with its input by `merge`; `shortcut` replaces the automatic one."""

    kind: Literal["residual"] = "residual"
    merge: Identifier = "add"  # a layer kind with several inputs (archc.ops.MERGES)
    body: list[Item]
    shortcut: list[Item] | None = None
    # `residual shortcut=zeropad:`: the shortcut made when the body changes the shape and no `shortcut:` is
    # written (archc.ops.SHORTCUTS): `projection` (a strided 1x1 conv, option B) or `zeropad` (option A)
    auto_shortcut: Identifier = "projection"


class Branch(Node):
    name: Identifier | None = None
    body: list[Item]


class Branches(Node):
    """`concat:` / `add:` with one parallel branch a line (Inception)."""

    kind: Literal["branches"] = "branches"
    merge: Identifier  # a layer kind with several inputs (archc.ops.MERGES)
    branches: list[Branch]


Item = Annotated[Union[Layer, Call, Group, Scope, Residual, Branches], Field(discriminator="kind")]


# ---------------------------------------------------------------- top level


class BlockParam(Node):
    name: Identifier
    default: Expr | None = None


class BlockDef(Node):
    name: Identifier
    params: list[BlockParam] = []
    body: list[Item]


class Param(Node):
    """`param classes=1000`: a network parameter that `--set` and API keywords override."""

    name: Identifier
    default: Expr


class Import(Node):
    path: Text


class Spec(Node):
    """One spec file. Imported block files are specs too (blocks only)."""

    name: Identifier | None = None
    description: Text | None = None
    input: Expr | None = None
    input_span: Span | None = None
    params: list[Param] = []
    imports: list[Import] = []
    blocks: list[BlockDef] = []
    body: list[Item] = []
