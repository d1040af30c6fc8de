"""A PyTorch module as an archc.match.Graph: its layers with weights, in call order, and how data flows between
them, found by running it once on an example of the given input shape.

First with torch.fx: `symbolic_trace` gives every call (modules, functions, tensor methods) and its arguments,
and an fx Interpreter gives every value's shape. A module is one layer when it holds tensors of its own and
none of its submodules does (torch.nn's layers, and also a Conv2d subclass with explicit padding or a
FrozenBatchNorm2d that fx would otherwise trace through); a parameter that a function uses directly (ConvNeXt's
`layer_scale`) makes that function call a layer. Where fx cannot trace the forward (control flow that depends
on values, calls fx cannot follow), the module is run under a TorchFunctionMode with hooks on its layers, which
records the same things as they happen.

Both run on the meta device (shapes without arithmetic, so ResNet-152 costs milliseconds), with the module's
own weights untouched: torch.func.functional_call puts meta copies in their place for the run. An operation
with no meta kernel makes the run happen on the CPU instead, with a batch of one. The module is in eval mode for
the run, and every submodule's mode is restored afterwards.

`read_flat` reads the same trace for `archc import`: every call in archc's vocabulary, a FlatLayer of a
registered kind with that kind's arguments and the module's tensors (see the section below).
"""

from __future__ import annotations

import math
import operator
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from ..flat import INPUT, FlatLayer, FlatNetwork, Unsupported
from ..match import Graph, GraphBuilder, Shape
from ..ops import OPS


class ReadError(Exception):
    """The module could not be run to read its structure; the message says what each way tried met."""


def read_module(model: nn.Module, input_shape: tuple[int, ...], what: str = "the source") -> Graph:
    """The module's Graph for an input of `input_shape` (channels first, batch left out: (3, 224, 224))."""
    failures = []
    with _eval(model):
        try:
            root = _Root(model)
            graph = _Tracer().trace(root)
        except Exception as e:  # noqa: BLE001 - any failure means: try the next way, and say so at the end
            graph = None
            failures.append(f"torch.fx: {_reason(e)}")
        attempts = [(_read_with_fx, root, graph, "torch.fx")] if graph is not None else []
        attempts.append((_read_by_running, model, None, "running it"))
        for reader, module, traced, how in attempts:
            for device in ("meta", _device(model)):
                try:
                    return reader(module, input_shape, what, device, traced)
                except Exception as e:  # noqa: BLE001 - as above
                    failures.append(f"{how} on {device}: {_reason(e)}")
    raise ReadError("; ".join(failures))


def _reason(e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first[:200]}" if first else type(e).__name__


def tensor_of(model: nn.Module, qualified: str) -> torch.Tensor:
    """A parameter or buffer by its qualified name (`layer1.0.conv1.weight`), persistent or not."""
    *path, name = qualified.split(".")
    module = model.get_submodule(".".join(path)) if path else model
    return getattr(module, name)


# ---------------------------------------------------------------- what is a layer


def own_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The tensors a module holds itself, in state_dict order (parameters, then persistent buffers), without
    batchnorm's `num_batches_tracked` (bookkeeping, not a weight)."""
    out = list(module.named_parameters(recurse=False))
    buffers = [(name, b) for name, b in module.named_buffers(recurse=False) if name != "num_batches_tracked"]
    if buffers:  # only persistent buffers are weights: those state_dict() keeps
        kept = module.state_dict(keep_vars=True)
        out += [(name, b) for name, b in buffers if name in kept]
    return out


def is_layer(module: nn.Module) -> bool:
    """One layer of the Graph: it holds tensors of its own and no submodule does."""
    if not own_tensors(module):
        return False
    return not any(own_tensors(sub) for sub in module.modules() if sub is not module)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return super().is_leaf_module(m, module_qualified_name) or is_layer(m)


def _tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in a value made of tuples, lists and dicts (a call's arguments, a module's outputs)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors_in(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors_in(item)]
    return []


def _shape(value: Any) -> Shape | None:
    """A value's shape without its batch dimension; None for what is not a tensor."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape[1:]) if value.dim() else ()
    return None


def _layer_tensors(module: nn.Module, path: str) -> tuple[list[tuple[str, Shape]], dict[str, str]]:
    tensors = own_tensors(module)
    return ([(name, tuple(t.shape)) for name, t in tensors],
            {name: f"{path}.{name}" if path else name for name, _ in tensors})


# ---------------------------------------------------------------- running on meta tensors


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _run(holder: nn.Module, model: nn.Module, prefix: str, input_shape: tuple[int, ...], device: str,
         forward: Callable[[torch.Tensor], Any], names: dict[int, str] | None = None) -> None:
    """Call `forward(example)` with `model`'s (reached as `holder.<prefix>`) tensors replaced by meta copies on
    the meta device, or as they are on the CPU. `names` receives id(tensor used) -> qualified name."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    example = torch.zeros((1, *input_shape), dtype=dtype, device=device)
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    if device == "meta":
        copies = {}
        for name, t in tensors.items():
            copies[name] = torch.empty_like(t, device="meta")
        if names is not None:
            names.update({id(t): name for name, t in copies.items()})
        with torch.no_grad(), _FastMeta():
            torch.func.functional_call(holder, {f"{prefix}{k}": v for k, v in copies.items()}, (example,),
                                       tie_weights=False)
        return
    if names is not None:
        names.update({id(t): name for name, t in tensors.items()})
    with torch.no_grad():
        holder(example)


class _FastMeta(TorchFunctionMode):
    """Batch normalisation keeps its input's shape, and its meta kernel is a Python decomposition that costs
    ~25 ms a call (4 s of a ResNet-152): on the meta device, give an empty tensor of the input's shape instead."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _BATCH_NORMS and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return torch.empty_like(args[0])
        return func(*args, **kwargs)


_BATCH_NORMS = (torch.nn.functional.batch_norm, torch.batch_norm)


class _Holder(nn.Module):
    """Holds the module to be run so that functional_call can swap its tensors, and runs `forward` instead."""

    def __init__(self, inner: nn.Module, forward: Callable[[torch.Tensor], Any]):
        super().__init__()
        self.inner = inner
        self._run_forward = forward

    def forward(self, x: torch.Tensor) -> Any:
        return self._run_forward(x)


# ---------------------------------------------------------------- with torch.fx


class _Root(nn.Module):
    """What fx traces: the module as `inner`, so that what the tracer attaches to its root (tensor constants the
    forward creates) lands here, never on the user's module. Paths lose their `inner.` again (`_own_path`)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> Any:
        return self.inner(x)


def _own_path(target: str) -> str:
    return target.partition(".")[2]


def _device(model: nn.Module) -> torch.device | str:
    return next((t.device for t in model.parameters()), "cpu")


def _read_with_fx(model: nn.Module, input_shape: tuple[int, ...], what: str, device: str,
                  graph: fx.Graph) -> Graph:
    # `model` is the _Root that was traced. No GraphModule: the Interpreter runs the traced graph on the module
    # itself (building one costs ~0.2 s for ResNet-152).
    shapes: dict[fx.Node, Shape | None] = {}

    class _Shapes(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            shapes[n] = _shape(result)
            return result

    holder = _Holder(model, lambda x: _Shapes(holder.inner, graph=graph).run(x))
    _run(holder, model, "inner.", input_shape, device, holder.forward)

    builder = GraphBuilder(what)
    weights = set(model.inner.state_dict(keep_vars=True))  # not plain tensor attributes: they are constants
    attributes: dict[fx.Node, tuple[str, Shape]] = {}  # get_attr nodes of weights: name, shape
    first_input = True
    for node in graph.nodes:
        if node.op == "placeholder":
            if first_input:
                builder.input(node, shapes.get(node))
                first_input = False
        elif node.op == "get_attr":
            value = _attribute(model, node.target)
            if isinstance(value, torch.Tensor) and _own_path(node.target) in weights:  # not a constant
                attributes[node] = (_own_path(node.target), tuple(value.shape))
        elif node.op == "call_module":
            module = model.get_submodule(node.target)
            inputs = _arg_nodes(node)
            if own_tensors(module):
                path = _own_path(node.target)
                tensors, ref = _layer_tensors(module, path)
                builder.layer(node, inputs, shapes.get(node), path or type(module).__name__, tensors, ref=ref)
            else:
                builder.op(node, inputs, shapes.get(node))
        elif node.op in ("call_function", "call_method"):
            inputs = _arg_nodes(node)
            used = [attributes[n] for n in inputs if n in attributes]
            data = [n for n in inputs if n not in attributes]
            if used:
                label = _common_path([target for target, _ in used])
                builder.layer(node, data, shapes.get(node), label,
                              [(target.rpartition(".")[2], shape) for target, shape in used],
                              ref={target.rpartition(".")[2]: target for target, _ in used})
            else:
                builder.op(node, data, shapes.get(node))
    return builder.graph


def _attribute(root: nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _arg_nodes(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def _common_path(targets: list[str]) -> str:
    """The module that holds these attributes: `features.1.0` of `features.1.0.layer_scale`."""
    parts = [t.split(".")[:-1] for t in targets]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common) or targets[0]


# ---------------------------------------------------------------- by running it


def _read_by_running(model: nn.Module, input_shape: tuple[int, ...], what: str, device: str,
                     graph: None = None) -> Graph:
    builder = GraphBuilder(what)
    names: dict[int, str] = {}  # id(tensor used in the run) -> qualified name
    alive: list[Any] = []  # every value seen stays alive for the run, so no id is reused
    depth = [0]
    paths = {m: path for path, m in model.named_modules(remove_duplicate=False)}
    layers = [m for m in model.modules() if is_layer(m)]

    def known(values: Any) -> list[int]:
        return [id(v) for v in _tensors_in(values)]

    def before(module: nn.Module, args: Any) -> None:
        depth[0] += 1

    def after(module: nn.Module, args: Any, out: Any) -> None:
        depth[0] -= 1
        if depth[0]:
            return
        alive.append(out)
        outs = _tensors_in(out)
        if not outs:
            return
        tensors, ref = _layer_tensors(module, paths[module])
        builder.layer(id(outs[0]), known(args), _shape(outs[0]), paths[module], tensors, ref=ref)
        for other in outs[1:]:
            builder.op(id(other), [id(outs[0])], _shape(other))

    class _Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in _BATCH_NORMS and isinstance(args[0], torch.Tensor) and args[0].is_meta:
                out = torch.empty_like(args[0])  # as _FastMeta does: that mode is below this one
            else:
                out = func(*args, **kwargs)
            if depth[0] == 0:
                alive.append(out)
                flat = _tensors_in((args, kwargs))
                used = [v for v in flat if id(v) in names and not builder.known(id(v))]
                data = [id(v) for v in flat if not (id(v) in names and not builder.known(id(v)))]
                outs = _tensors_in(out)
                for i, value in enumerate(outs):
                    if used and i == 0:
                        targets = [names[id(v)] for v in used]
                        builder.layer(id(value), data, _shape(value), _common_path(targets),
                                      [(t.rpartition(".")[2], tuple(v.shape)) for t, v in zip(targets, used,
                                                                                             strict=True)],
                                      ref={t.rpartition(".")[2]: t for t in targets})
                    elif used:
                        builder.op(id(value), [id(outs[0])], _shape(value))
                    else:
                        builder.op(id(value), data, _shape(value))
            return out

    def forward(x: torch.Tensor) -> Any:
        alive.append(x)
        builder.input(id(x), _shape(x))
        with _Record():
            return model(x)

    handles = []
    try:
        for m in layers:
            handles.append(m.register_forward_pre_hook(before))
            handles.append(m.register_forward_hook(after))
        holder = _Holder(model, forward)
        _run(holder, model, "inner.", input_shape, device, forward, names)
    finally:
        for h in handles:
            h.remove()
    return builder.graph


# ---------------------------------------------------------------- a module as a flat network (archc import)
#
# read_flat walks the same fx trace (or, where fx cannot trace, a trace recorded by running the module) and says
# each call in archc's vocabulary: a FlatLayer of a registered kind with that kind's arguments, or nothing where
# the call is framework plumbing (a reshape that only flattens, `contiguous`, a permute pair around channels-last
# work). Every layer's shape by archc's own rules is checked against the one the run gave, so a call that is
# misread stops as Unsupported rather than becoming a different network.



def read_flat(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> FlatNetwork:
    """`model` as a FlatNetwork for an input of `input_shape`, archc's layout (H, W, C), default 224x224x3.
    Raises archc.flat.Unsupported at the first call archc's language cannot express, naming it and its module
    path, with the layers read before it as `partial`."""
    shape = tuple(input_shape) if input_shape is not None else (224, 224, 3)
    torch_shape = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    name = type(model).__name__
    with _eval(model):
        root = _Root(model)
        try:
            graph = _FlatTracer().trace(root)
        except Exception as e:  # noqa: BLE001 - fx cannot follow this forward: record a trace by running it
            graph, results = _record(root, torch_shape, e)
        else:
            results = _interpret(root, graph, torch_shape)
        return _FlatReader(root, graph, results, shape, name).read()


class _Shaped:
    """What a run left of a tensor: its shape (batch included) and nothing else."""

    __slots__ = ("shape",)

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape


def _summary(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _Shaped(tuple(value.shape))
    if isinstance(value, (tuple, list)):
        return type(value)(_summary(v) for v in value) if not hasattr(value, "_fields") else tuple(
            _summary(v) for v in value)
    if isinstance(value, torch.Size):
        return tuple(value)
    return value


_BATCH = 2  # not 1: a reshape that mixes the batch into the features shows (and is refused)


def _interpret(root: nn.Module, graph: fx.Graph, torch_shape: tuple[int, ...]) -> dict[fx.Node, Any]:
    results: dict[fx.Node, Any] = {}

    class _Run(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            results[n] = _summary(result)
            return result

    failures = []
    for device in ("meta", _device(root.inner)):
        results.clear()
        holder = _Holder(root, lambda x: _Run(root, graph=graph).run(x))  # holder.inner is root
        try:
            _run_batch(holder, root, "inner.", torch_shape, device)
            return results
        except Exception as e:  # noqa: BLE001 - no meta kernel: try the module's own device
            failures.append(f"on {device}: {_reason(e)}")
    raise Unsupported(f"a forward that cannot run at {'x'.join(map(str, torch_shape))}", type(root.inner).__name__,
                      help="; ".join(failures))


def _run_batch(holder: nn.Module, model: nn.Module, prefix: str, input_shape: tuple[int, ...], device: Any) -> None:
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    example = torch.zeros((_BATCH, *input_shape), dtype=dtype, device=device)
    if device == "meta":
        tensors = dict(model.named_parameters(remove_duplicate=False))
        tensors.update(model.named_buffers(remove_duplicate=False))
        copies = {f"{prefix}{k}": torch.empty_like(t, device="meta") for k, t in tensors.items()}
        with torch.no_grad(), _FastMeta():
            torch.func.functional_call(holder, copies, (example,), tie_weights=False)
        return
    with torch.no_grad():
        holder(example)


def _known_module(m: nn.Module) -> Callable | None:
    """The reader of a module read as one call: a torch.nn layer whose forward is torch.nn's own, or one of the
    helper classes archc's torch backend generates (recognised by name in a generated module)."""
    cls = type(m)
    if _is_archc_helper(cls):
        return _HELPER_READERS.get(cls.__name__)
    for base in cls.__mro__:
        reader = _MODULE_READERS.get(base)
        if reader is not None:
            return reader if cls.forward is base.forward else None
        if _qualname(base) in _NAMED_MODULE_READERS:
            return _NAMED_MODULE_READERS[_qualname(base)] if cls.forward is base.forward else None
    return None


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_archc_helper(cls: type) -> bool:
    """A class of the source archc's torch backend writes: built in memory (`archc_generated_...`) or saved as a
    file and imported (its module defines the generated `Scope` and `INPUT_SHAPE`)."""
    if cls.__name__ not in _HELPER_READERS:
        return False
    if cls.__module__.startswith("archc_generated_"):
        return True
    module = sys.modules.get(cls.__module__)
    return module is not None and hasattr(module, "INPUT_SHAPE") and hasattr(module, "Scope")


class _FlatTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _known_module(m) is not None


# ---- what a value of the trace is, in archc's terms


@dataclass(frozen=True)
class _Map:
    """A value archc has: a layer's output (or the input), NCHW or a flat vector."""
    index: int


@dataclass(frozen=True)
class _ChannelsLast:
    """A map permuted to N x H x W x C (ConvNeXt's blocks): its layer works on the channels, the last axis."""
    index: int


@dataclass(frozen=True)
class _Grouped:
    """A map viewed as N x groups x C/groups x H x W (a channel shuffle's first step), transposed or not."""
    index: int
    groups: int
    transposed: bool


@dataclass(frozen=True)
class _Parts:
    """chunk/split of a map's channels into equal parts: each part read becomes a `split` layer."""
    index: int
    parts: int


@dataclass(frozen=True)
class _Padded:
    """A map zero-padded (F.pad) by (top, bottom, left, right) with `value`: folded into the next window."""
    index: int
    pads: tuple[int, int, int, int]
    value: float


@dataclass(frozen=True)
class _Param:
    """A parameter or buffer of the module (possibly reshaped): what a function call holding weights reads."""
    tensor: Any
    name: str


_DATA = (_Map, _ChannelsLast, _Grouped, _Parts, _Padded)


class _FlatReader:
    def __init__(self, root: nn.Module, graph: fx.Graph, results: dict[fx.Node, Any], input_shape, name: str):
        self.root = root
        self.graph = graph
        self.results = results
        self.input_shape = tuple(input_shape)
        self.layers: list[FlatLayer] = []
        self.shapes: list[tuple[int, ...]] = []  # each layer's output shape by archc's rules
        self.values: dict[fx.Node, Any] = {}
        self.name = name
        self.node: fx.Node | None = None

    # ---- the walk

    def read(self) -> FlatNetwork:
        output = None
        first = True
        for node in self.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                self.values[node] = _Map(INPUT) if first else None
                first = False
            elif node.op == "get_attr":
                value = _attribute(self.root, node.target)
                self.values[node] = _Param(value, _own_path(node.target)) if isinstance(value, torch.Tensor) \
                    else value
            elif node.op == "output":
                output = self._value(node.args[0])
            else:
                self.values[node] = self._call(node)
        if not isinstance(output, _Map):
            self.unsupported(f"an output that is not one tensor in archc's layout ({self._what(output)})")
        return _simplify(FlatNetwork(self.input_shape, self.layers, output.index, self.name,
                                     f"{type(self.root.inner).__module__}.{type(self.root.inner).__qualname__}"))

    def _value(self, arg: Any) -> Any:
        return fx.node.map_arg(arg, lambda n: self.values[n])

    def _call(self, node: fx.Node) -> Any:
        result = self.results.get(node)
        args, kwargs = self._value(node.args), self._value(node.kwargs)
        if node.op == "call_module":
            module = self.root.get_submodule(node.target)
            reader = _known_module(module)
            if reader is None:
                self.unsupported(f"module `{type(module).__name__}`")
            return self._mutates(node, reader(self, module, args, kwargs, result), getattr(module, "inplace", False))
        if not _has_data((args, kwargs)):
            if _has_param((args, kwargs)):
                return self._param_op(node, args, kwargs, result)
            return result  # arithmetic on sizes and constants: its value, as the run gave it
        key = node.target if node.op == "call_function" else f".{node.target}"
        reader = _FUNCTION_READERS.get(key)
        if reader is None and not node.users:
            return None  # computed for Python alone (`if x.sum() > 0`), never part of the output
        if reader is None:
            self.unsupported(f"`{self._callee()}`")
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        inplace = (name.endswith("_") and not name.startswith("__")) or name.startswith("__i") or \
            node.target in (operator.iadd, operator.imul) or kwargs.get("inplace") is True
        return self._mutates(node, reader(self, args, kwargs, result), inplace)

    def _mutates(self, node: fx.Node, value: Any, inplace: bool) -> Any:
        """An in-place call changes its first argument: later readers of that argument read the result."""
        if inplace and node.args and isinstance(node.args[0], fx.Node):
            self.values[node.args[0]] = value
        return value

    def _param_op(self, node: fx.Node, args, kwargs, result) -> Any:
        """A reshape of a weight (PointwiseConv2d's `weight.flatten(1)`) keeps it a weight; other arithmetic on
        weights (FrozenBatchNorm2d's scale) is not a layer archc has."""
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if name in ("flatten", "view", "reshape", "squeeze", "unsqueeze") and isinstance(args[0], _Param):
            return _Param(args[0].tensor.reshape(result.shape), args[0].name)
        self.unsupported(f"`{self._callee()}` computing with a weight")

    # ---- emitting layers

    def path(self) -> str:
        """The module path of the current call: the module's for a module, the calling module's plus the
        function's name for a function (`layer1.0.add`)."""
        node = self.node
        if node.op == "call_module":
            return _own_path(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        module = _own_path(next(reversed(stack.values()))[0]) if stack else ""
        func = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
        func = func.strip("_") or func
        func = _OPERATOR_NAMES.get(func, func)
        return f"{module}.{func}" if module else func

    def _callee(self) -> str:
        node = self.node
        if node.op == "call_method":
            return f"Tensor.{node.target}"
        if node.op == "call_module":
            return type(self.root.get_submodule(node.target)).__name__
        target = node.target
        module = getattr(target, "__module__", None) or ""
        if module.startswith("torch._C") or module == "torch":
            module = "torch"
        return f"{module}.{getattr(target, '__name__', target)}".lstrip(".")

    def unsupported(self, what: str, help: str = "") -> None:
        partial = FlatNetwork(self.input_shape, list(self.layers), len(self.layers) - 1 if self.layers else INPUT,
                              self.name)
        raise Unsupported(what, self.path() or self.name, help or "archc's language has no such layer yet; "
                          "write it in the spec by hand, or leave it out of the model", partial)

    def shape(self, index: int) -> tuple[int, ...]:
        return self.input_shape if index == INPUT else self.shapes[index]

    def emit(self, op: str, args: dict[str, Any], inputs: list[int], result: Any, tensors=None,
             channels_last: bool = False) -> _Map | _ChannelsLast:
        """Append a layer; its shape by archc's rules must be the one the run gave."""
        kind = OPS[op]
        in_shapes = [self.shape(i) for i in inputs]
        try:
            resolved = kind.resolve(kind.args(**args), in_shapes)
            shape = kind.shape(resolved, in_shapes)
        except Exception as e:  # noqa: BLE001 - archc's rules refuse it: not a layer archc has
            self.unsupported(f"`{self._callee()}` as `{op}`", help=f"archc's `{op}` refuses it: {e}")
        expected = _archc_shape(result.shape, channels_last) if isinstance(result, _Shaped) else None
        if expected != shape:
            self.unsupported(f"`{self._callee()}`", help=f"read as `{op}` it would give {_fmt(shape)}, but the "
                             f"module gives {_fmt(expected)}")
        path = self.path()
        used = [t.name for t in (tensors or {}).values() if isinstance(t, _Param)]
        if used and self.node.op != "call_module":  # a function holding weights: named by them (`layer_scale`)
            lone = len(used) == 1 and used[0].rpartition(".")[2] not in _TENSOR_NAMES
            path = used[0] if lone else _common_path(used)
        if tensors:
            wanted = kind.weights(resolved, in_shapes)
            tensors = {k: _numpy(t, wanted[k].shape) for k, t in tensors.items() if t is not None and k in wanted}
        self.layers.append(FlatLayer(op, args, tuple(inputs), path, tensors or {}))
        self.shapes.append(shape)
        index = len(self.layers) - 1
        return _ChannelsLast(index) if channels_last else _Map(index)

    # ---- reading inputs

    def data(self, value: Any, *allowed: type) -> Any:
        """A data input, one of the `allowed` kinds (a plain map by default)."""
        allowed = allowed or (_Map,)
        if isinstance(value, allowed):
            return value
        self.unsupported(f"`{self._callee()}` of {self._what(value)}")

    def _what(self, value: Any) -> str:
        return {_ChannelsLast: "a channels-last permutation", _Grouped: "a channel-grouped view",
                _Parts: "a chunk of channels", _Padded: "a padded tensor", _Param: "a weight",
                _Map: "a tensor", _Shaped: "a tensor the forward makes"}.get(
            type(value), "a number" if isinstance(value, (int, float)) else f"`{type(value).__name__}`")


_OPERATOR_NAMES = {"iadd": "add", "radd": "add", "imul": "mul", "rmul": "mul"}  # `out += x` is an add
_TENSOR_NAMES = {"weight", "bias", "running_mean", "running_var"}


def _has_data(value: Any) -> bool:
    if isinstance(value, _DATA):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_data(v) for v in value)
    if isinstance(value, dict):
        return any(_has_data(v) for v in value.values())
    return False


def _has_param(value: Any) -> bool:
    if isinstance(value, _Param):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_param(v) for v in value)
    if isinstance(value, dict):
        return any(_has_param(v) for v in value.values())
    return False


def _archc_shape(torch_shape: tuple[int, ...], channels_last: bool = False) -> tuple[int, ...] | None:
    """A run's N x C x H x W (N x H x W x C when channels-last) or N x F as archc's H x W x C or F."""
    if len(torch_shape) == 4:
        _, a, b, c = torch_shape
        return (a, b, c) if channels_last else (b, c, a)
    if len(torch_shape) == 2:
        return (torch_shape[1],)
    return None


def _fmt(shape: Any) -> str:
    return "x".join(map(str, shape)) if shape else "a tensor archc has no layout for"


def _numpy(t: Any, shape: tuple[int, ...]) -> Any:
    if isinstance(t, _Param):
        t = t.tensor
    if t.is_meta:
        return None  # a module built on the meta device has no values to give
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).reshape(shape).numpy()


def _arg(args, kwargs, i: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) in (1, 2) else tuple(v)  # type: ignore[return-value]
    return (int(v), int(v))


def _padding_arg(pads: tuple[int, int, int, int]) -> Any:
    """(top, bottom, left, right) as the plainest padding argument: `valid`, a pair, or all four."""
    top, bottom, left, right = pads
    if not any(pads):
        return "valid"
    if top == bottom and left == right:
        return (top, left)
    return pads


def _channel_dim(dim: int, rank: int) -> bool:
    return dim in (1, 1 - rank)


# ---- the readers of calls, one per operation: (reader, [module,] args, kwargs, result) -> value


def _conv(r: _FlatReader, x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: int,
          result: Any, padding_mode: str = "zeros") -> _Map:
    x = r.data(x, _Map, _Padded)
    if padding_mode != "zeros":
        r.unsupported(f"a convolution padding with `{padding_mode}`", help="archc's convolutions pad with zeros")
    w = weight.tensor if isinstance(weight, _Param) else weight
    kernel, dilation = (int(w.shape[2]), int(w.shape[3])), _pair(dilation)
    if padding == "same":
        th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
        pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    elif padding == "valid":
        pads = (0, 0, 0, 0)
    else:
        ph, pw = _pair(padding)
        pads = (ph, ph, pw, pw)
    if isinstance(x, _Padded):
        if x.value != 0:
            r.unsupported(f"a convolution of an input padded with {x.value}", help="archc's convolutions pad "
                          "with zeros")
        pads = tuple(a + b for a, b in zip(pads, x.pads, strict=True))
    channels = r.shape(x.index)[-1]
    filters = int(w.shape[0])
    args: dict[str, Any] = {"kernel": kernel, "filters": filters, "stride": _pair(stride),
                            "padding": _padding_arg(pads), "dilation": dilation, "bias": bias is not None}
    if groups > 1 and groups == channels:
        args.update(depthwise=True, multiplier=filters // channels)
    elif groups != 1:
        args["groups"] = groups
    return r.emit("conv", args, [x.index], result, {"weight": weight, "bias": bias})


def _read_conv2d(r, m: nn.Conv2d, args, kwargs, result):
    return _conv(r, args[0], m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, result, m.padding_mode)


def _read_conv_transpose(r, m: nn.ConvTranspose2d, args, kwargs, result):
    x = r.data(args[0])
    if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros" or (len(args) > 1 and args[1] is not None):
        r.unsupported("a grouped, dilated or sized `ConvTranspose2d`")
    padding = tuple(m.padding)
    a = {"kernel": tuple(m.kernel_size), "filters": m.out_channels, "stride": tuple(m.stride),
         "padding": padding if any(padding) else "valid", "output_padding": tuple(m.output_padding),
         "bias": m.bias is not None}
    return r.emit("convtranspose", a, [x.index], result, {"weight": m.weight, "bias": m.bias})


def _batchnorm(r, x, mean, var, weight, bias, momentum, eps, result):
    x = r.data(x)
    if mean is None or var is None:
        r.unsupported("batch normalisation without running statistics", help="archc's batchnorm keeps running "
                      "statistics (track_running_stats=True)")
    if momentum is None:
        r.unsupported("batch normalisation with a cumulative average (momentum=None)",
                      help="archc's batchnorm keeps an exponential average: give the module a momentum")
    # torch's momentum is the new batch's weight; archc's (Keras's) the old running value's
    a = {"epsilon": float(eps), "momentum": round(1.0 - float(momentum), 12), "scale": weight is not None,
         "center": bias is not None}
    return r.emit("batchnorm", a, [x.index], result, {"weight": weight, "bias": bias, "running_mean": mean,
                                                      "running_var": var})


def _read_batchnorm(r, m: nn.modules.batchnorm._BatchNorm, args, kwargs, result):
    if not m.track_running_stats:
        r.unsupported("batch normalisation without running statistics")
    return _batchnorm(r, args[0], m.running_mean, m.running_var, m.weight, m.bias, m.momentum, m.eps, result)


def _linear(r, x, weight, bias, result):
    x = r.data(x, _Map, _ChannelsLast)
    w = weight.tensor if isinstance(weight, _Param) else weight
    if isinstance(x, _ChannelsLast):  # over each position's channels: a 1x1 convolution (ConvNeXt's blocks)
        return r.emit("conv", {"kernel": (1, 1), "filters": int(w.shape[0]), "bias": bias is not None},
                      [x.index], result, {"weight": weight, "bias": bias}, channels_last=True)
    return r.emit("dense", {"units": int(w.shape[0]), "bias": bias is not None}, [x.index], result,
                  {"weight": weight, "bias": bias})


def _read_linear(r, m: nn.Linear, args, kwargs, result):
    return _linear(r, args[0], m.weight, m.bias, result)


def _layernorm(r, x, normalized_shape, weight, bias, eps, result):
    x = r.data(x, _Map, _ChannelsLast)
    last = r.shape(x.index)[-1]
    if isinstance(x, _Map) and len(r.shape(x.index)) != 1:
        r.unsupported("layer normalisation over the width of an N x C x H x W tensor",
                      help="archc's layernorm normalises each position's channels (permute to channels-last first)")
    if tuple(normalized_shape) != (last,):
        r.unsupported(f"layer normalisation over {tuple(normalized_shape)}",
                      help="archc's layernorm normalises the channels of each position")
    if weight is None or bias is None:
        r.unsupported("layer normalisation without its scale and shift",
                      help="archc's layernorm has both (elementwise_affine=True, bias=True)")
    return r.emit("layernorm", {"epsilon": float(eps)}, [x.index], result, {"weight": weight, "bias": bias},
                  channels_last=isinstance(x, _ChannelsLast))


def _read_layernorm(r, m: nn.LayerNorm, args, kwargs, result):
    return _layernorm(r, args[0], m.normalized_shape, m.weight, m.bias, m.eps, result)


def _elementwise(r, op: str, x, result, **a) -> Any:
    """An activation (or dropout): the same layout out as in."""
    x = r.data(x, _Map, _ChannelsLast)
    return r.emit(op, a, [x.index], result, channels_last=isinstance(x, _ChannelsLast))


def _activation(op: str):
    def read(r, m, args, kwargs, result):
        return _elementwise(r, op, args[0], result)
    return read


def _read_hardtanh(r, m: nn.Hardtanh, args, kwargs, result):
    if (m.min_val, m.max_val) != (0.0, 6.0):
        r.unsupported(f"`Hardtanh({m.min_val}, {m.max_val})`", help="archc has relu6, Hardtanh(0, 6)")
    return _elementwise(r, "relu6", args[0], result)


def _softmax(r, x, dim, result):
    x = r.data(x, _Map, _ChannelsLast)
    rank = 2 if len(r.shape(x.index)) == 1 else 4
    channel = dim in (-1, rank - 1) if isinstance(x, _ChannelsLast) or rank == 2 else _channel_dim(dim, rank)
    if dim is None or not channel:
        r.unsupported(f"softmax over dimension {dim}", help="archc's softmax is over the channels")
    return r.emit("softmax", {}, [x.index], result, channels_last=isinstance(x, _ChannelsLast))


def _dropout(r, x, p, result):
    return _elementwise(r, "dropout", x, result, rate=float(p))


def _maxpool(r, x, kernel, stride, padding, dilation, ceil_mode, return_indices, result):
    x = r.data(x, _Map, _Padded)
    if return_indices:
        r.unsupported("max pooling returning indices")
    kernel = _pair(kernel)
    ph, pw = _pair(padding)
    pads = (ph, ph, pw, pw)
    if isinstance(x, _Padded):
        if x.value != float("-inf"):
            r.unsupported(f"max pooling of an input padded with {x.value}", help="archc's max pooling pads with "
                          "-inf")
        pads = tuple(a + b for a, b in zip(pads, x.pads, strict=True))
    a = {"kernel": kernel, "stride": _pair(stride) if stride else kernel, "padding": _padding_arg(pads),
         "dilation": _pair(dilation), "ceil": bool(ceil_mode)}
    return r.emit("maxpool", a, [x.index], result)


def _avgpool(r, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override, result):
    x = r.data(x, _Map, _Padded)
    if divisor_override is not None:
        r.unsupported("average pooling with a divisor_override")
    kernel = _pair(kernel)
    ph, pw = _pair(padding)
    pads = (ph, ph, pw, pw)
    count = bool(count_include_pad) and any(pads)
    if isinstance(x, _Padded):  # zeros padded beforehand are averaged in: count_pad, if nothing else pads
        if x.value != 0 or (any(pads) and not count_include_pad):
            r.unsupported("average pooling of an explicitly padded input")
        pads, count = x.pads, True
    a = {"kernel": kernel, "stride": _pair(stride) if stride else kernel, "padding": _padding_arg(pads),
         "ceil": bool(ceil_mode), "count_pad": count}
    return r.emit("avgpool", a, [x.index], result)


def _read_maxpool(r, m: nn.MaxPool2d, args, kwargs, result):
    return _maxpool(r, args[0], m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices,
                    result)


def _read_avgpool(r, m: nn.AvgPool2d, args, kwargs, result):
    return _avgpool(r, args[0], m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                    m.divisor_override, result)


def _adaptive(r, op: str, x, output_size, result):
    """Adaptive pooling to 1x1 is global pooling (kept 1x1xC); to the size it already has, nothing; to a size
    that divides the input's, a plain pooling window."""
    x = r.data(x)
    h, w, _ = r.shape(x.index) if len(r.shape(x.index)) == 3 else r.unsupported("adaptive pooling of a vector")
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    size = tuple(s if s is not None else d for s, d in zip(size, (h, w), strict=True))
    if size == (1, 1):
        return r.emit(f"global{op}", {"keepdims": True}, [x.index], result)
    if size == (h, w):
        return x
    if h % size[0] or w % size[1]:
        r.unsupported(f"adaptive pooling from {h}x{w} to {size[0]}x{size[1]}",
                      help="archc's pooling windows are all alike: the output must divide the input (or be 1x1)")
    kernel = (h // size[0], w // size[1])
    return r.emit(op, {"kernel": kernel, "stride": kernel}, [x.index], result)


def _read_adaptive(op: str):
    def read(r, m, args, kwargs, result):
        return _adaptive(r, op, args[0], m.output_size, result)
    return read


def _read_flatten_module(r, m: nn.Flatten, args, kwargs, result):
    return _flatten(r, args[0], m.start_dim, m.end_dim, result)


def _flatten(r, x, start, end, result):
    x = r.data(x)
    rank = len(r.shape(x.index)) + 1
    if start % rank != 1 or end % rank != rank - 1:
        r.unsupported(f"flatten of dimensions {start} to {end}", help="archc flattens everything but the batch")
    if rank == 2:
        return x
    return r.emit("flatten", {}, [x.index], result)


def _upsample(r, x, size, scale, mode, align_corners, result):
    x = r.data(x)
    if mode not in ("nearest", "bilinear"):
        r.unsupported(f"`interpolate(mode={mode!r})`", help="archc's upsample is `nearest` or `bilinear`")
    a: dict[str, Any] = {"mode": mode}
    if mode == "bilinear":
        a["align_corners"] = bool(align_corners)
    if size is not None:
        a["size"] = _pair(size)
    else:
        pair = scale if isinstance(scale, (tuple, list)) else (scale, scale)
        if any(float(s) != int(s) for s in pair):
            r.unsupported(f"upsampling by {scale}", help="archc's upsample scales by whole numbers")
        a["scale"] = (int(pair[0]), int(pair[-1]))
    return r.emit("upsample", a, [x.index], result)


def _read_upsample(r, m: nn.Upsample, args, kwargs, result):
    if getattr(m, "recompute_scale_factor", None):
        r.unsupported("`Upsample(recompute_scale_factor=True)`")
    return _upsample(r, args[0], m.size, m.scale_factor, m.mode, m.align_corners, result)


def _read_lrn(r, m: nn.LocalResponseNorm, args, kwargs, result):
    x = r.data(args[0])
    # torch divides alpha by the size (the backend writes alpha * size)
    return r.emit("lrn", {"size": m.size, "alpha": m.alpha / m.size, "beta": m.beta, "k": m.k}, [x.index], result)


def _read_identity(r, m, args, kwargs, result):
    x = r.data(args[0], _Map, _ChannelsLast)
    return r.emit("identity", {}, [x.index], result, channels_last=isinstance(x, _ChannelsLast))


def _read_channel_shuffle(r, m, args, kwargs, result):
    x = r.data(args[0])
    return r.emit("shuffle", {"groups": int(m.groups)}, [x.index], result)


def _stochastic_depth(r, x, p, mode, result):
    if mode != "row":
        r.unsupported(f"stochastic depth in `{mode}` mode", help="archc's stochastic_depth drops each sample "
                      "alone (torchvision's mode='row')")
    return _elementwise(r, "stochastic_depth", x, result, rate=float(p))


def _read_stochastic_depth(r, m, args, kwargs, result):
    return _stochastic_depth(r, args[0], m.p, m.mode, result)


def _read_dropout(r, m, args, kwargs, result):
    return _dropout(r, args[0], m.p, result)


def _read_softmax(r, m: nn.Softmax, args, kwargs, result):
    return _softmax(r, args[0], m.dim, result)


def _read_gelu(r, m: nn.GELU, args, kwargs, result):
    return _elementwise(r, "gelu", args[0], result, approximate=m.approximate)


def _read_leaky(r, m: nn.LeakyReLU, args, kwargs, result):
    return _elementwise(r, "leaky_relu", args[0], result, negative_slope=float(m.negative_slope))


def _read_elu(r, m: nn.ELU, args, kwargs, result):
    return _elementwise(r, "elu", args[0], result, alpha=float(m.alpha))


_MODULE_READERS: dict[type, Callable] = {
    nn.Conv2d: _read_conv2d, nn.ConvTranspose2d: _read_conv_transpose,
    nn.BatchNorm2d: _read_batchnorm, nn.BatchNorm1d: _read_batchnorm,
    nn.Linear: _read_linear, nn.LayerNorm: _read_layernorm,
    nn.ReLU: _activation("relu"), nn.ReLU6: _activation("relu6"), nn.Hardtanh: _read_hardtanh,
    nn.SiLU: _activation("silu"), nn.Hardswish: _activation("hardswish"), nn.Hardsigmoid: _activation("hardsigmoid"),
    nn.GELU: _read_gelu, nn.Sigmoid: _activation("sigmoid"), nn.Tanh: _activation("tanh"),
    nn.Softmax: _read_softmax, nn.LeakyReLU: _read_leaky, nn.ELU: _read_elu,
    nn.MaxPool2d: _read_maxpool, nn.AvgPool2d: _read_avgpool,
    nn.AdaptiveAvgPool2d: _read_adaptive("avgpool"), nn.AdaptiveMaxPool2d: _read_adaptive("maxpool"),
    nn.Dropout: _read_dropout, nn.Flatten: _read_flatten_module, nn.Identity: _read_identity,
    nn.Upsample: _read_upsample, nn.ChannelShuffle: _read_channel_shuffle, nn.LocalResponseNorm: _read_lrn,
}
# torchvision's, by name: torchvision is not imported for this
_NAMED_MODULE_READERS: dict[str, Callable] = {
    "torchvision.ops.stochastic_depth.StochasticDepth": _read_stochastic_depth,
}


# ---- archc's own generated helpers (archc/backends/torch.py HELPERS), each read from its attributes


def _merge(op: str):
    def read(r, m, args, kwargs, result):
        operands = _operands(args)
        inputs = [r.data(a).index for a in operands]
        return r.emit(op, {}, inputs, result)
    return read


def _operands(args: tuple) -> tuple:
    """A merge's inputs: the generated helpers take one list (`self.add([a, b])`, TorchScript's way); older
    generated modules, and hand-written ones, pass them one by one."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return tuple(args[0])
    return tuple(args)


def _read_padded_conv(r, m, args, kwargs, result):
    left, right, top, bottom = m.pads
    x = r.data(args[0])
    return _conv(r, _Padded(x.index, (top, bottom, left, right), 0.0), m.weight, m.bias, m.stride, m.padding,
                 m.dilation, m.groups, result, m.padding_mode)


def _read_padded_maxpool(r, m, args, kwargs, result):
    left, right, top, bottom = m.pads
    x = r.data(args[0])
    return _maxpool(r, _Padded(x.index, (top, bottom, left, right), float("-inf")), m.kernel_size, m.stride,
                    m.padding, m.dilation, m.ceil_mode, m.return_indices, result)


def _read_exact_avgpool(r, m, args, kwargs, result):
    x = r.data(args[0])
    left, right, top, bottom = m.pads
    a = {"kernel": tuple(m.kernel_size), "stride": tuple(m.stride), "padding": _padding_arg((top, bottom, left,
                                                                                             right)),
         "dilation": tuple(m.dilation)}
    return r.emit("avgpool", a, [x.index], result)


def _read_counting_avgpool(r, m, args, kwargs, result):
    x = r.data(args[0])
    left, right, top, bottom = m.pads
    a = {"kernel": tuple(m.kernel_size), "stride": tuple(m.stride), "padding": _padding_arg((top, bottom, left,
                                                                                             right)),
         "count_pad": True, "ceil": any(m.overhang)}
    return r.emit("avgpool", a, [x.index], result)


def _read_split_helper(r, m, args, kwargs, result):
    x = r.data(args[0])
    return r.emit("split", {"parts": m.parts, "part": m.part}, [x.index], result)


def _read_zeropad_helper(r, m, args, kwargs, result):
    x = r.data(args[0])
    before, after = m.pads
    if before != (before + after) // 2:
        r.unsupported(f"zero channels padded {before} before and {after} after",
                      help="archc's zeropad puts half of them (rounded down) before")
    c = r.shape(x.index)[-1]
    return r.emit("zeropad", {"filters": c + before + after, "stride": tuple(m.stride)}, [x.index], result)


def _read_global(op: str):
    def read(r, m, args, kwargs, result):
        return r.emit(op, {}, [r.data(args[0]).index], result)
    return read


def _read_layernorm2d_helper(r, m, args, kwargs, result):
    x = r.data(args[0])
    if len(r.shape(x.index)) != 3:
        r.unsupported("`LayerNorm2d` of a vector")
    return r.emit("layernorm", {"epsilon": float(m.eps)}, [x.index], result, {"weight": m.weight, "bias": m.bias})


def _read_pointwise_helper(r, m, args, kwargs, result):
    return _conv(r, args[0], m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, result)


def _read_layer_scale_helper(r, m, args, kwargs, result):
    x = r.data(args[0])
    return r.emit("layer_scale", {"init": _uniform_value(m.weight)}, [x.index], result, {"weight": m.weight})


def _uniform_value(t: torch.Tensor) -> float:
    """A layer scale's `init`: the value all its elements share (as constructed); 1e-6 (ConvNeXt's) otherwise.
    A float32 value is read as written (1e-6, not 9.99999997e-07)."""
    if t.is_meta or t.numel() == 0:
        return 1e-6
    flat = t.detach().reshape(-1).cpu()
    if not bool((flat == flat[0]).all()):
        return 1e-6
    return float(str(flat[0].numpy())) if flat.dtype in (torch.float16, torch.float32) else float(flat[0])


def _read_stochastic_depth_helper(r, m, args, kwargs, result):
    return _elementwise(r, "stochastic_depth", args[0], result, rate=float(m.p))


_HELPER_READERS: dict[str, Callable] = {
    "PaddedConv2d": _read_padded_conv, "PaddedMaxPool2d": _read_padded_maxpool,
    "ExactAvgPool2d": _read_exact_avgpool, "CountingAvgPool2d": _read_counting_avgpool,
    "CropConcat": _merge("cropconcat"), "GlobalAvgPool2d": _read_global("globalavgpool"),
    "GlobalMaxPool2d": _read_global("globalmaxpool"), "FlatLocalResponseNorm": _read_lrn,
    "Add": _merge("add"), "Concat": _merge("concat"), "Multiply": _merge("multiply"),
    "ChannelSplit": _read_split_helper, "ChannelShuffle": _read_channel_shuffle,
    "ZeroPadShortcut": _read_zeropad_helper, "LayerNorm2d": _read_layernorm2d_helper,
    "PointwiseConv2d": _read_pointwise_helper, "ChannelsLastGELU": _read_gelu,
    "LayerScale": _read_layer_scale_helper, "StochasticDepth": _read_stochastic_depth_helper,
}


# ---- functions and tensor methods

F = torch.nn.functional


def _fn_activation(op: str):
    def read(r, args, kwargs, result):
        return _elementwise(r, op, args[0], result)
    return read


def _fn_hardtanh(r, args, kwargs, result):
    low, high = _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
    if (low, high) != (0.0, 6.0):
        r.unsupported(f"`hardtanh({low}, {high})`", help="archc has relu6, hardtanh(0, 6)")
    return _elementwise(r, "relu6", args[0], result)


def _fn_gelu(r, args, kwargs, result):
    return _elementwise(r, "gelu", args[0], result, approximate=_arg(args, kwargs, 1, "approximate", "none"))


def _fn_leaky(r, args, kwargs, result):
    return _elementwise(r, "leaky_relu", args[0], result, negative_slope=float(_arg(args, kwargs, 1,
                                                                                     "negative_slope", 0.01)))


def _fn_elu(r, args, kwargs, result):
    return _elementwise(r, "elu", args[0], result, alpha=float(_arg(args, kwargs, 1, "alpha", 1.0)))


def _fn_softmax(r, args, kwargs, result):
    if kwargs.get("dtype") is not None:
        r.unsupported("softmax to another dtype")
    return _softmax(r, args[0], _arg(args, kwargs, 1, "dim"), result)


def _fn_dropout(r, args, kwargs, result):
    return _dropout(r, args[0], _arg(args, kwargs, 1, "p", 0.5), result)


def _fn_stochastic_depth(r, args, kwargs, result):
    return _stochastic_depth(r, args[0], _arg(args, kwargs, 1, "p"), _arg(args, kwargs, 2, "mode"), result)


def _fn_maxpool(r, args, kwargs, result):
    return _maxpool(r, args[0], _arg(args, kwargs, 1, "kernel_size"), _arg(args, kwargs, 2, "stride"),
                    _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "dilation", 1),
                    _arg(args, kwargs, 5, "ceil_mode", False), _arg(args, kwargs, 6, "return_indices", False),
                    result)


def _fn_avgpool(r, args, kwargs, result):
    return _avgpool(r, args[0], _arg(args, kwargs, 1, "kernel_size"), _arg(args, kwargs, 2, "stride"),
                    _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "ceil_mode", False),
                    _arg(args, kwargs, 5, "count_include_pad", True), _arg(args, kwargs, 6, "divisor_override"),
                    result)


def _fn_adaptive(op: str):
    def read(r, args, kwargs, result):
        return _adaptive(r, op, args[0], _arg(args, kwargs, 1, "output_size"), result)
    return read


def _fn_interpolate(r, args, kwargs, result):
    if _arg(args, kwargs, 5, "recompute_scale_factor") or _arg(args, kwargs, 6, "antialias"):
        r.unsupported("`interpolate` recomputing its scale or antialiased")
    return _upsample(r, args[0], _arg(args, kwargs, 1, "size"), _arg(args, kwargs, 2, "scale_factor"),
                     _arg(args, kwargs, 3, "mode", "nearest"), _arg(args, kwargs, 4, "align_corners"), result)


def _fn_conv2d(r, args, kwargs, result):
    weight, bias = _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias")
    if not isinstance(weight, _Param) or not (bias is None or isinstance(bias, _Param)):
        r.unsupported("a convolution by computed weights")
    return _conv(r, args[0], weight, bias, _arg(args, kwargs, 3, "stride", 1), _arg(args, kwargs, 4, "padding", 0),
                 _arg(args, kwargs, 5, "dilation", 1), _arg(args, kwargs, 6, "groups", 1), result)


def _fn_linear(r, args, kwargs, result):
    weight, bias = _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias")
    if not isinstance(weight, _Param) or not (bias is None or isinstance(bias, _Param)):
        r.unsupported("a linear layer of computed weights")
    return _linear(r, args[0], weight, bias, result)


def _fn_layer_norm(r, args, kwargs, result):
    weight, bias = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")
    return _layernorm(r, args[0], _arg(args, kwargs, 1, "normalized_shape"), weight, bias,
                      _arg(args, kwargs, 4, "eps", 1e-5), result)


def _fn_batch_norm(r, args, kwargs, result):
    return _batchnorm(r, args[0], _arg(args, kwargs, 1, "running_mean"), _arg(args, kwargs, 2, "running_var"),
                      _arg(args, kwargs, 3, "weight"), _arg(args, kwargs, 4, "bias"),
                      _arg(args, kwargs, 6, "momentum", 0.1), _arg(args, kwargs, 7, "eps", 1e-5), result)


def _fn_add(r, args, kwargs, result):
    a, b = args[0], _arg(args, kwargs, 1, "other")
    if _arg(args, kwargs, 2, "alpha", 1) != 1:
        r.unsupported("`add` with an alpha")
    if not isinstance(a, _DATA) or not isinstance(b, _DATA):
        r.unsupported(f"adding {r._what(b if isinstance(a, _DATA) else a)} to a tensor",
                      help="archc's `add` sums layers' outputs of one shape")
    a, b = r.data(a, _Map, _ChannelsLast), r.data(b, _Map, _ChannelsLast)
    if type(a) is not type(b):
        r.unsupported("adding tensors in different layouts")
    return r.emit("add", {}, [a.index, b.index], result, channels_last=isinstance(a, _ChannelsLast))


def _fn_mul(r, args, kwargs, result):
    a, b = args[0], _arg(args, kwargs, 1, "other")
    if isinstance(a, _Param):
        a, b = b, a
    if isinstance(b, _Param):  # a learnable scale per channel: ConvNeXt's layer_scale
        x = r.data(a, _Map, _ChannelsLast)
        channels = r.shape(x.index)[-1]
        shape = tuple(d for d in b.tensor.shape)
        fits = shape in ((channels, 1, 1),) if isinstance(x, _Map) and len(r.shape(x.index)) == 3 \
            else shape == (channels,)
        if not fits:
            r.unsupported(f"multiplying by a {'x'.join(map(str, shape))} weight",
                          help="archc's layer_scale is one weight per channel")
        return r.emit("layer_scale", {"init": _uniform_value(b.tensor)}, [x.index], result, {"weight": b},
                      channels_last=isinstance(x, _ChannelsLast))
    if not isinstance(a, _DATA) or not isinstance(b, _DATA):
        r.unsupported(f"multiplying a tensor by {r._what(b if isinstance(a, _DATA) else a)}",
                      help="archc's `multiply` is of layers' outputs (a gate)")
    a, b = r.data(a), r.data(b)
    return r.emit("multiply", {}, [a.index, b.index], result)


def _fn_cat(r, args, kwargs, result):
    tensors, dim = _arg(args, kwargs, 0, "tensors"), _arg(args, kwargs, 1, "dim", 0)
    values = [r.data(t, _Map) for t in tensors]
    if len(values) == 1:
        return values[0]
    rank = len(r.shape(values[0].index)) + 1
    if not _channel_dim(dim, rank) and not (rank == 2 and dim == -1):
        r.unsupported(f"concatenation along dimension {dim}", help="archc concatenates channels")
    return r.emit("concat", {}, [v.index for v in values], result)


def _fn_flatten(r, args, kwargs, result):
    return _flatten(r, args[0], _arg(args, kwargs, 1, "start_dim", 0), _arg(args, kwargs, 2, "end_dim", -1), result)


def _fn_reshape(r, args, kwargs, result):
    """view/reshape, by the shapes before and after: a flatten, a channel shuffle's first and last steps, or
    nothing (a shape it already had)."""
    x = r.data(args[0], _Map, _Grouped)
    out = result.shape
    if isinstance(x, _Grouped):
        if out[1:] == (r.shape(x.index)[2], *r.shape(x.index)[:2]) and out[0] == _BATCH:
            if x.transposed:
                return r.emit("shuffle", {"groups": x.groups}, [x.index], result)
            return _Map(x.index)
    else:
        shape = r.shape(x.index)
        torch_shape = (_BATCH, shape[2], shape[0], shape[1]) if len(shape) == 3 else (_BATCH, *shape)
        if out == torch_shape:
            return x
        if out == (_BATCH, math.prod(shape)):
            return x if len(shape) == 1 else r.emit("flatten", {}, [x.index], result)
        if len(shape) == 3 and len(out) == 5 and out[0] == _BATCH and out[1] * out[2] == shape[2] \
                and out[3:] == shape[:2]:
            return _Grouped(x.index, out[1], False)
    r.unsupported(f"`{r._callee()}` to {'x'.join(map(str, out))}",
                  help="archc reads reshapes that flatten everything but the batch, and channel shuffles")


def _fn_transpose(r, args, kwargs, result):
    x = r.data(args[0], _Grouped)
    dims = sorted(d % 5 for d in (_arg(args, kwargs, 1, "dim0"), _arg(args, kwargs, 2, "dim1")))
    if dims != [1, 2]:
        r.unsupported(f"a transpose of dimensions {dims}")
    return _Grouped(x.index, x.groups, not x.transposed)


def _fn_permute(r, args, kwargs, result):
    x = r.data(args[0], _Map, _ChannelsLast)
    dims = args[1:] if len(args) > 1 and isinstance(args[1], int) else _arg(args, kwargs, 1, "dims")
    dims = tuple(d % 4 for d in dims)
    if isinstance(x, _Map) and len(r.shape(x.index)) == 3 and dims == (0, 2, 3, 1):
        return _ChannelsLast(x.index)
    if isinstance(x, _ChannelsLast) and dims == (0, 3, 1, 2):
        return _Map(x.index)
    r.unsupported(f"a permutation {dims}", help="archc reads the channels-last round trip (0, 2, 3, 1) ... "
                  "(0, 3, 1, 2) of ConvNeXt's blocks")


def _fn_same(r, args, kwargs, result):
    """contiguous() and friends: the same values."""
    return r.data(args[0], *_DATA)


def _fn_size(r, args, kwargs, result):
    return result


def _fn_chunk(r, args, kwargs, result):
    x = r.data(args[0])
    parts, dim = _arg(args, kwargs, 1, "chunks"), _arg(args, kwargs, 2, "dim", 0)
    return _parts(r, x, parts, dim, result)


def _fn_split(r, args, kwargs, result):
    x = r.data(args[0])
    size, dim = _arg(args, kwargs, 1, "split_size_or_sections"), _arg(args, kwargs, 2, "dim", 0)
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            r.unsupported(f"a split into unequal parts {tuple(size)}", help="archc's split makes equal parts")
        parts = len(size)
    else:
        channels = r.shape(x.index)[-1]
        parts = channels // size if size and channels % size == 0 else 0
    return _parts(r, x, parts, dim, result)


def _parts(r, x, parts, dim, result):
    shape = r.shape(x.index)
    if len(shape) != 3 or not _channel_dim(dim, 4):
        r.unsupported(f"a split along dimension {dim}", help="archc splits a feature map's channels")
    if not parts or shape[2] % parts or len(result) != parts:
        r.unsupported(f"a split of {shape[2]} channels into unequal parts", help="archc's split makes equal parts")
    return _Parts(x.index, parts)


def _fn_getitem(r, args, kwargs, result):
    x, key = args
    if isinstance(x, _Parts) and isinstance(key, int):
        return r.emit("split", {"parts": x.parts, "part": key % x.parts}, [x.index], result)
    if isinstance(x, (tuple, list)) and isinstance(key, int):
        return x[key]
    r.unsupported(f"indexing {r._what(x)} with `{key}`", help="archc reads whole tensors and equal channel splits")


def _fn_pad(r, args, kwargs, result):
    x = r.data(args[0])
    pad, mode, value = _arg(args, kwargs, 1, "pad"), _arg(args, kwargs, 2, "mode", "constant"), \
        _arg(args, kwargs, 3, "value", None)
    if mode != "constant" or len(pad) != 4 or len(r.shape(x.index)) != 3:
        r.unsupported(f"`pad` of {tuple(pad)} in `{mode}` mode",
                      help="archc pads height and width with zeros, inside a conv or pooling layer")
    left, right, top, bottom = pad
    return _Padded(x.index, (top, bottom, left, right), float(value or 0.0))


def _fn_reduce(op: str):
    """x.mean((2, 3)) / x.amax((2, 3)): global pooling (kept 1x1xC with keepdim)."""
    def read(r, args, kwargs, result):
        x = r.data(args[0])
        dims = _arg(args, kwargs, 1, "dim")
        keep = _arg(args, kwargs, 2, "keepdim", False)
        if len(r.shape(x.index)) != 3 or not isinstance(dims, (tuple, list)) \
                or sorted(d % 4 for d in dims) != [2, 3]:
            r.unsupported(f"`{r._callee()}` over dimensions {dims}", help="archc reduces height and width together "
                          "(global pooling)")
        return r.emit(op, {"keepdims": bool(keep)}, [x.index], result)
    return read


_FUNCTION_READERS: dict[Any, Callable] = {}


def _register(names: tuple, reader: Callable) -> None:
    for name in names:
        if name is not None:
            _FUNCTION_READERS[name] = reader


_register((F.relu, torch.relu, torch.relu_, getattr(F, "relu_", None), ".relu", ".relu_"), _fn_activation("relu"))
_register((F.relu6, ), _fn_activation("relu6"))
_register((F.hardtanh, getattr(F, "hardtanh_", None)), _fn_hardtanh)
_register((F.silu, ".silu", ".silu_"), _fn_activation("silu"))
_register((F.hardswish,), _fn_activation("hardswish"))
_register((F.hardsigmoid,), _fn_activation("hardsigmoid"))
_register((F.gelu,), _fn_gelu)
_register((torch.sigmoid, F.sigmoid, torch.sigmoid_, ".sigmoid", ".sigmoid_"), _fn_activation("sigmoid"))
_register((torch.tanh, F.tanh, torch.tanh_, ".tanh", ".tanh_"), _fn_activation("tanh"))
_register((F.softmax, torch.softmax, ".softmax"), _fn_softmax)
_register((F.leaky_relu, getattr(F, "leaky_relu_", None)), _fn_leaky)
_register((F.elu, getattr(F, "elu_", None)), _fn_elu)
_register((F.dropout,), _fn_dropout)
_register((F.max_pool2d,), _fn_maxpool)
_register((F.avg_pool2d,), _fn_avgpool)
_register((F.adaptive_avg_pool2d,), _fn_adaptive("avgpool"))
_register((F.adaptive_max_pool2d,), _fn_adaptive("maxpool"))
_register((F.interpolate,), _fn_interpolate)
_register((F.conv2d,), _fn_conv2d)
_register((F.linear,), _fn_linear)
_register((F.layer_norm,), _fn_layer_norm)
_register((F.batch_norm,), _fn_batch_norm)
_register((operator.add, operator.iadd, torch.add, ".add", ".add_", ".__add__", ".__iadd__", ".__radd__"), _fn_add)
_register((operator.mul, operator.imul, torch.mul, ".mul", ".mul_", ".__mul__", ".__imul__", ".__rmul__"), _fn_mul)
_register((torch.cat, torch.concat, getattr(torch, "concatenate", None)), _fn_cat)
_register((torch.flatten, ".flatten"), _fn_flatten)
_register((".view", ".reshape", torch.reshape), _fn_reshape)
_register((torch.transpose, ".transpose"), _fn_transpose)
_register((torch.permute, ".permute"), _fn_permute)
_register((".contiguous",), _fn_same)
_register((".size", ".dim", getattr, len), _fn_size)
_register((torch.chunk, ".chunk"), _fn_chunk)
_register((torch.split, ".split"), _fn_split)
_register((operator.getitem,), _fn_getitem)
_register((F.pad,), _fn_pad)
_register((torch.mean, ".mean"), _fn_reduce("globalavgpool"))
_register((torch.amax, ".amax"), _fn_reduce("globalmaxpool"))


# ---- after the walk: the same network, said the way a table says it


def _simplify(net: FlatNetwork) -> FlatNetwork:
    """Global pooling kept 1x1xC and flattened later (torchvision's `avgpool` then `torch.flatten`, with per-channel
    layers between, as ConvNeXt's head) is global pooling to a vector; a concatenation of an earlier
    concatenation's inputs and one more (DenseNet's `torch.cat(features)` in every layer) reads that one."""
    alias = _pools_to_vectors(net)
    _chain_concats(net.layers)
    if alias:
        _drop_aliased(net, alias)
    return net


def _pools_to_vectors(net: FlatNetwork) -> dict[int, int]:
    """Each global pooling that keeps its 1x1 map only for a flatten after it now gives the vector itself (its
    `keepdims` off); returns {flatten: what it now stands for} for the flattens this makes idle."""
    layers = net.layers
    consumers = [0] * len(layers)
    for layer in layers:
        for i in layer.inputs:
            if i != INPUT:
                consumers[i] += 1
    shapes = [shape for *_, shape in net.resolved()]
    alias: dict[int, int] = {}
    for i, layer in enumerate(layers):
        if not OPS[layer.op].flattens or layer.inputs[0] == INPUT:
            continue
        pool, chain = _pool_under(layers, shapes, layer.inputs[0])
        if pool is None:
            continue
        # the pool and the layers between feed only the flatten, and hold the same tensors on a vector
        if any(consumers[k] != 1 or k == net.output for k in [*chain, pool]) or not all(
                _same_weights(layers[k], shapes[layers[k].inputs[0]]) for k in chain):
            continue
        layers[pool].args = {**layers[pool].args, "keepdims": False}
        alias[i] = layer.inputs[0]
    return alias


def _pool_under(layers: list[FlatLayer], shapes: list, j: int) -> tuple[int | None, list[int]]:
    """Down from layer `j` through one-input, order-keeping layers on a 1x1 map: the pooling that kept its
    dimensions (None if the walk meets anything else first), and the layers passed on the way."""
    chain = []
    while j != INPUT and not layers[j].args.get("keepdims") and OPS[layers[j].op].keeps_order \
            and OPS[layers[j].op].inputs == "one" and shapes[j][:2] == (1, 1):
        chain.append(j)
        j = layers[j].inputs[0]
    if j == INPUT or not layers[j].args.get("keepdims"):
        return None, chain
    return j, chain


def _chain_concats(layers: list[FlatLayer]) -> None:
    """A concat of an earlier concat's inputs and one more reads the earlier concat and that one."""
    concats: dict[tuple[int, ...], int] = {}
    for i, layer in enumerate(layers):
        if layer.op == "concat":  # what torch.cat reads as
            key = layer.inputs
            earlier = concats.get(key[:-1]) if len(key) > 2 else None
            concats[key] = i
            if earlier is not None:
                layer.inputs = (earlier, key[-1])


def _drop_aliased(net: FlatNetwork, alias: dict[int, int]) -> None:
    """Leave out the layers in `alias`, each read as the layer it names; the rest renumbered."""
    index: dict[int, int] = {INPUT: INPUT}
    kept = []
    for i, layer in enumerate(net.layers):
        if i in alias:
            index[i] = index[alias[i]]
            continue
        layer.inputs = tuple(index[k] for k in layer.inputs)
        index[i] = len(kept)
        kept.append(layer)
    net.layers = kept
    net.output = index[net.output]


def _same_weights(layer: FlatLayer, in_shape: tuple[int, ...]) -> bool:
    """Whether the layer holds the same tensors on a 1x1xC map as on a vector of C."""
    op = OPS[layer.op]
    args = op.args(**layer.args)
    flat = op.weights(op.resolve(args, [(in_shape[-1],)]), [(in_shape[-1],)])
    mapped = op.weights(op.resolve(args, [in_shape]), [in_shape])
    return {k: w.shape for k, w in flat.items()} == {k: w.shape for k, w in mapped.items()}


def _record(root: nn.Module, torch_shape: tuple[int, ...], failure: Exception):
    """Where fx cannot trace the forward (control flow on sizes or values, calls it cannot follow): run it, on the
    meta device or else on the module's own, and write down what fx would have, as an fx graph: each call of a
    module read whole, each torch function and tensor method called outside those, with its arguments."""
    failures = [f"torch.fx: {_reason(failure)}"]
    for device in ("meta", _device(root.inner)):
        try:
            return _Recorder(root).run(torch_shape, device)
        except Unsupported:
            raise
        except Exception as e:  # noqa: BLE001 - try the next device, then say what each met
            failures.append(f"running it on {device}: {_reason(e)}")
    raise Unsupported("a forward that neither torch.fx nor a run could follow", type(root.inner).__name__,
                      help="; ".join(failures))


class _Recorder:
    def __init__(self, root: nn.Module):
        self.root = root
        self.graph = fx.Graph()
        self.results: dict[fx.Node, Any] = {}
        self.nodes: dict[int, fx.Node] = {}  # id(tensor) -> the node that gave it
        self.parts: dict[int, tuple[fx.Node, int, Any]] = {}  # id(tensor) -> the call whose i-th result it is
        self.alive: list[Any] = []  # every tensor seen stays alive for the run, so no id is reused
        self.names: dict[int, str] = {}  # id(weight used in the run) -> its name in the root (`inner.` on)
        self.stack: list[tuple[str, type]] = []  # the modules being called, outermost first
        self.leaf_depth = 0

    def run(self, torch_shape: tuple[int, ...], device: Any):
        paths = {m: path for path, m in self.root.named_modules(remove_duplicate=False)}
        handles = []
        for module in self.root.modules():
            if module is self.root:
                continue
            handles.append(module.register_forward_pre_hook(lambda m, args, p=paths[module]: self._enter(m, p, args)))
            handles.append(module.register_forward_hook(lambda m, args, out, p=paths[module]: self._leave(m, p, args,
                                                                                                          out)))
        recorder = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func in _BATCH_NORMS and isinstance(args[0], torch.Tensor) and args[0].is_meta:
                    out = torch.empty_like(args[0])
                else:
                    out = func(*args, **kwargs)
                if not recorder.leaf_depth:
                    recorder._function(func, args, kwargs, out)
                return out

        def forward(x: torch.Tensor) -> Any:
            self.alive.append(x)
            node = self.graph.placeholder("x")
            self.nodes[id(x)] = node
            self.results[node] = _summary(x)
            with _Mode():
                return self.root.inner(x)

        holder = _Holder(self.root, forward)
        try:
            dtype = next((p.dtype for p in self.root.parameters() if p.is_floating_point()), torch.float32)
            example = torch.zeros((_BATCH, *torch_shape), dtype=dtype, device=device)
            tensors = dict(self.root.named_parameters(remove_duplicate=False))
            tensors.update(self.root.named_buffers(remove_duplicate=False))
            with torch.no_grad():
                if device == "meta":
                    copies = {k: torch.empty_like(t, device="meta") for k, t in tensors.items()}
                    self.names = {id(t): k for k, t in copies.items()}
                    with _FastMeta():
                        out = torch.func.functional_call(holder, {f"inner.{k}": v for k, v in copies.items()},
                                                         (example,), tie_weights=False)  # holder.inner is root
                else:
                    self.names = {id(t): k for k, t in tensors.items()}
                    out = holder(example)
        finally:
            for h in handles:
                h.remove()
        self.graph.output(self._arg(out))
        return self.graph, self.results

    def _meta(self) -> dict[str, Any]:
        return {"nn_module_stack": {path: (path, cls) for path, cls in self.stack}}

    def _enter(self, module: nn.Module, path: str, args: Any) -> None:
        if self.leaf_depth:
            self.leaf_depth += 1
            return
        self.stack.append((path, type(module)))
        if _known_module(module) is not None:
            self.leaf_depth = 1

    def _leave(self, module: nn.Module, path: str, args: Any, out: Any) -> None:
        if self.leaf_depth > 1:
            self.leaf_depth -= 1
            return
        if self.leaf_depth == 1:
            self.leaf_depth = 0
            node = self.graph.call_module(path, self._arg(tuple(args)))
            node.meta.update(self._meta())
            self._result(node, out)
        self.stack.pop()

    def _function(self, func: Callable, args: Any, kwargs: dict, out: Any) -> None:
        if not _tensors_in(out):
            return  # sizes and other plain values are constants of the run
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__objclass__", None) or getattr(getattr(func, "__self__", None), "__class__", None)
        if owner is torch._C.TensorBase or owner is torch.Tensor or (name.startswith("__") and not
                                                                        getattr(func, "__module__", None)):
            node = self.graph.call_method(name, self._arg(tuple(args)), self._arg(kwargs))
        else:
            node = self.graph.call_function(func, self._arg(tuple(args)), self._arg(kwargs))
        node.meta.update(self._meta())
        self._result(node, out)

    def _result(self, node: fx.Node, out: Any) -> None:
        self.alive.append(out)
        self.results[node] = _summary(out)
        if isinstance(out, torch.Tensor):
            self.nodes[id(out)] = node
        elif isinstance(out, (tuple, list)):  # its parts become getitem nodes where read, as fx writes them
            for i, item in enumerate(out):
                if isinstance(item, torch.Tensor):
                    self.parts[id(item)] = (node, i, item)

    def _arg(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if id(value) in self.nodes:
                return self.nodes[id(value)]
            if id(value) in self.parts:
                whole, i, _ = self.parts[id(value)]
                part = self.graph.call_function(operator.getitem, (whole, i))
                part.meta.update(whole.meta)
                self.results[part] = _summary(value)
                self.nodes[id(value)] = part
                return part
            if id(value) in self.names:
                node = self.graph.get_attr(self.names[id(value)])
                self.nodes[id(value)] = node
                return node
            return value  # a tensor the forward made: a constant
        if isinstance(value, (tuple, list)):
            return type(value)(self._arg(v) for v in value) if not hasattr(value, "_fields") else tuple(
                self._arg(v) for v in value)
        if isinstance(value, dict):
            return {k: self._arg(v) for k, v in value.items()}
        return value
