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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from ..match import Graph, GraphBuilder, Shape


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
