"""An ONNX model as a flat network in archc's vocabulary (archc.flat.FlatNetwork): what `archc import` decompiles
and what `archc.load_weights` matches a compiled spec against when the source is an ONNX file.

The nodes are read in the file's (topological) order. Each value is either
  * a layer's output (or the network's input), held in one of three layouts: NCHW (ONNX's own), NHWC (after a
    Transpose to channels last, as torchvision's ConvNeXt runs its LayerNorm and Linear layers) or flat (N x L);
  * a constant: an initializer, a Constant node, or anything computed from constants and from the static shapes
    of values (`Shape` of a feature map is known: its shape is archc's), folded here with numpy;
  * a *pending* value: a step of a pattern that becomes one archc layer only with the nodes after it (a Pad before
    a Conv or a pool, Sigmoid before Mul (silu), GlobalAveragePool before Flatten, MatMul before Add of a bias,
    Reshape-Transpose-Reshape (a channel shuffle), Slice-Pad (a zero-padding shortcut), archc's own average
    pooling over a ones-mask). A pending value met by anything else becomes its own layer then, or raises.
Layer normalisation written out (torch.onnx.export before opset 17, ConvNeXt's own LayerNorm: means over the
channels, Sub, Pow, Sqrt, Div, a scale and a shift) is one `layernorm`.
Element-wise chains of one value and scalar constants (Erf's GELU, x * sigmoid(x), Clip(0, 6), HardSigmoid's
alpha and beta) are not matched node by node: their function is evaluated on probe points and compared with
every activation kind (`_ACTIVATIONS`), so any spelling of the same function reads as the same kind, and a
function archc lacks is never mistaken for one.

Anything else raises archc.flat.Unsupported naming the ONNX operator and its node, with the layers read so far.
Initializers (weights) fill each layer's `tensors` under the names and layout its kind's `weights()` gives
(PyTorch's): Gemm's weight as [out, in] whatever transB, MatMul's transposed, a Linear on NHWC as a 1x1 conv.

Paths: archc's ONNX backend names a layer's last node by the layer's path (`conv3_x.0.conv2`); torch.onnx.export
names nodes by the module scopes (`/layer1/layer1.0/conv1/Conv` -> `layer1.0.conv1`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..flat import INPUT, FlatLayer, FlatNetwork, Resolutions, Unsupported
from ..ops import OPS

NEG_INF = float("-inf")
FLOAT = 1  # onnx.TensorProto.FLOAT
_RESHAPING = {"Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Transpose", "Cast"}  # a weight stays one


# ---------------------------------------------------------------- values


@dataclass(slots=True)
class _Val:
    """A layer's output (`layer` is its index or INPUT) in a layout, or a pending pattern step (`kind` != "out")."""

    kind: str  # "out", or a pending kind: "ew", "pad", "gpool", "matmul", "grouped", "swapped", "subsample",
    # "crop", "split", "unsq", "mask", "counts", "avgsum", "rows"
    layer: int = INPUT
    layout: str = "nchw"  # "nchw", "nhwc", "flat"
    src: str = ""  # the value a pending step reads
    node: Any = None  # the node that made it (its name is the layer's path)
    data: dict = field(default_factory=dict)


class _Node:
    """A NodeProto's fields, read out of protobuf once: every field access of a protobuf message makes new Python
    objects, and a node's inputs, outputs and name are asked for many times. `index` is its place in the file;
    `proto` the node itself (for onnx's own functions)."""

    __slots__ = ("op_type", "input", "output", "name", "domain", "index", "proto", "attrs")

    def __init__(self, proto, index: int):
        self.op_type, self.name, self.domain = proto.op_type, proto.name, proto.domain
        self.input, self.output = list(proto.input), list(proto.output)
        self.index, self.proto = index, proto
        self.attrs: dict[str, Any] | None = None  # decoded when first asked for (_attrs)

    @property
    def attribute(self):
        return self.proto.attribute


def _path(name: str, scopes: dict[str, tuple[str, str]] | None = None) -> str:
    """torch.onnx.export's `/layer1/layer1.0/conv1/Conv` -> `layer1.0.conv1`; archc's own names as they are, less
    what follows a `/` (its helper nodes: `ln1/norm` is a step of `ln1`). `scopes` keeps what each scope read
    gives (one reader's nodes share their enclosing scopes)."""
    if not name.startswith("/"):
        return name.rpartition("/")[0] or name
    top = _scope(name.rstrip("/").rpartition("/")[0], {} if scopes is None else scopes)  # the last part is the
    # operator (`Conv`, `Add_1`)
    return _join(*top) if top else ""


def _scope(scope: str, scopes: dict[str, tuple[str, str]]) -> tuple[str, str] | tuple[()]:
    """The innermost scope of `/a/b/c` as (scope as written, path of what it is written relative to).
    Each scope is named from the nearest enclosing module that is not a container: a Sequential's children
    repeat its name (`/features/features.1/conv/conv.0/conv.0.0/Conv` is features.1.conv.0.0)."""
    top = scopes.get(scope)
    if top is None:
        parent, _, part = scope.rpartition("/")
        outer = _scope(parent, scopes) if parent else ()
        if not part:
            top = outer
        elif outer and part.startswith(outer[0] + "."):
            top = (part, outer[1])
        else:
            top = (part, _join(*outer) if outer else "")
        scopes[scope] = top
    return top


def _join(part: str, base: str) -> str:
    return f"{base}.{part}" if base else part


# AttributeProto's types: the common ones read directly (onnx.helper.get_attribute_value's dispatch costs more
# than the rest of reading a node), the rest through it
_FLOAT, _INT, _STRING, _FLOATS, _INTS = 1, 2, 3, 6, 7


def _attrs(node: _Node) -> dict[str, Any]:
    """The node's attributes by name, decoded once (callers read, never change, the dict)."""
    out = node.attrs
    if out is not None:
        return out
    out = node.attrs = {}
    for a in node.proto.attribute:
        kind = a.type
        if kind == _INTS:
            out[a.name] = list(a.ints)
        elif kind == _INT:
            out[a.name] = a.i
        elif kind == _FLOAT:
            out[a.name] = a.f
        elif kind == _STRING:
            out[a.name] = a.s
        elif kind == _FLOATS:
            out[a.name] = list(a.floats)
        else:
            from onnx import helper

            out[a.name] = helper.get_attribute_value(a)
    return out


def _pads4(onnx_pads) -> tuple[int, int, int, int]:
    """ONNX's [top, left, bottom, right] as archc's (top, bottom, left, right)."""
    top, left, bottom, right = (int(p) for p in onnx_pads)
    return (top, bottom, left, right)


def canonical_padding(pads: tuple[int, int, int, int]):
    """The one form of explicit padding the reader writes: `valid`, a symmetric pair, or four amounts. A file
    keeps only the amounts: whether a spec wrote `same` or `padding=1` is not in it."""
    t, b, left, right = pads
    if pads == (0, 0, 0, 0):
        return "valid"
    if t == b and left == right:
        return (t, left)
    return pads


# ---------------------------------------------------------------- element-wise functions

_PROBE = np.concatenate([np.linspace(-8.0, 8.0, 161), [-2.7, -0.3, 0.7, 2.5, 3.3, 5.9, 6.1]])
_erf = np.vectorize(math.erf)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# every activation kind whose function the probe compares against, with its arguments (a slope or alpha is read
# off f(-1) first). Keyed by kind name: a kind missing here is never read from an element-wise chain.
_ACTIVATIONS: list[tuple[str, Callable[[np.ndarray], dict | None]]] = [
    ("relu", lambda f: {} if np.allclose(f, np.maximum(_PROBE, 0), atol=1e-6) else None),
    ("relu6", lambda f: {} if np.allclose(f, np.clip(_PROBE, 0, 6), atol=1e-6) else None),
    ("sigmoid", lambda f: {} if np.allclose(f, _sigmoid(_PROBE), atol=1e-6) else None),
    ("tanh", lambda f: {} if np.allclose(f, np.tanh(_PROBE), atol=1e-6) else None),
    ("silu", lambda f: {} if np.allclose(f, _PROBE * _sigmoid(_PROBE), atol=1e-6) else None),
    ("hardsigmoid", lambda f: {} if np.allclose(f, np.clip(_PROBE + 3, 0, 6) / 6, atol=1e-6) else None),
    ("hardswish", lambda f: {} if np.allclose(f, _PROBE * np.clip(_PROBE + 3, 0, 6) / 6, atol=1e-6) else None),
    ("gelu", lambda f: {} if np.allclose(f, 0.5 * _PROBE * (1 + _erf(_PROBE / math.sqrt(2))), atol=1e-6)
     else ({"approximate": "tanh"} if np.allclose(f, _gelu_tanh(_PROBE), atol=1e-6) else None)),
    ("leaky_relu", lambda f: _leaky(f)),
    ("elu", lambda f: _elu(f)),
]


def _leaky(f):
    slope = float(-np.interp(-1.0, _PROBE[:161], f[:161]))
    slope = round(slope, 7)
    if slope >= 0 and np.allclose(f, np.where(_PROBE > 0, _PROBE, slope * _PROBE), atol=1e-6):
        return {"negative_slope": slope}
    return None


def _elu(f):
    alpha = round(float(np.interp(-1.0, _PROBE[:161], f[:161]) / (math.exp(-1.0) - 1.0)), 7)
    if np.allclose(f, np.where(_PROBE > 0, _PROBE, alpha * (np.exp(np.minimum(_PROBE, 0)) - 1)), atol=1e-6):
        return {"alpha": alpha}
    return None


def _identify(f: np.ndarray) -> tuple[str, dict] | None:
    """The activation kind (and arguments) whose function is f on the probe points; ("identity", {}) for x."""
    if not np.all(np.isfinite(f)):
        return None
    if np.allclose(f, _PROBE, atol=1e-7):
        return ("identity", {})
    for kind, test in _ACTIVATIONS:
        args = test(f)
        if args is not None and kind in OPS:
            return (kind, args)
    return None


_UNARY: dict[str, Callable[[np.ndarray, dict], np.ndarray]] = {
    "Relu": lambda x, a: np.maximum(x, 0),
    "Sigmoid": lambda x, a: _sigmoid(x),
    "Tanh": lambda x, a: np.tanh(x),
    "Erf": lambda x, a: _erf(x),
    "Exp": lambda x, a: np.exp(np.minimum(x, 80)),
    "Neg": lambda x, a: -x,
    "Abs": lambda x, a: np.abs(x),
    "Softplus": lambda x, a: np.log1p(np.exp(np.minimum(x, 80))),
    "Softsign": lambda x, a: x / (1 + np.abs(x)),
    "Reciprocal": lambda x, a: np.divide(1.0, x, out=np.full_like(x, np.inf), where=x != 0),
    "HardSigmoid": lambda x, a: np.clip(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1),
    "HardSwish": lambda x, a: x * np.clip(x / 6 + 0.5, 0, 1),
    "LeakyRelu": lambda x, a: np.where(x > 0, x, a.get("alpha", 0.01) * x),
    "Elu": lambda x, a: np.where(x > 0, x, a.get("alpha", 1.0) * (np.exp(np.minimum(x, 0)) - 1)),
    "Gelu": lambda x, a: (_gelu_tanh(x) if a.get("approximate", "none") == "tanh"
                          else 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "Identity": lambda x, a: x,
}
# operators that are exactly one kind whatever their attributes: read without probing
_DIRECT = {"Relu": ("relu", {}), "Sigmoid": ("sigmoid", {}), "Tanh": ("tanh", {}), "HardSwish": ("hardswish", {}),
           "Identity": ("identity", {})}
_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
    "Div": lambda a, b: np.divide(a, b, out=np.full_like(np.broadcast_arrays(a, b)[0], np.inf, dtype=float),
                                  where=np.broadcast_to(b, np.broadcast_shapes(np.shape(a), np.shape(b))) != 0),
    "Pow": lambda a, b: np.power(a, b),
    "Max": np.maximum, "Min": np.minimum,
}


# ---------------------------------------------------------------- constants and weights, converted when needed


def _array(init) -> np.ndarray:
    """An initializer's values: float32 raw data read in place (one copy, out of protobuf), the rest through
    numpy_helper."""
    if init.data_type == FLOAT:
        raw = init.raw_data  # each access copies the bytes: once
        if raw:
            return np.frombuffer(raw, dtype="<f4").reshape(tuple(init.dims))
    from onnx import numpy_helper

    return numpy_helper.to_array(init)


class _Constants(dict):
    """The graph's constants by name, as numpy arrays. An initializer is held as its TensorProto until its values
    are first asked for: reading a model's structure needs most weights' shapes alone (`shape`), and copying
    DenseNet-201's 76 MB of weights out of protobuf cost as much as parsing the file. (Membership, asked of every
    node's inputs, stays the dict's own.)"""

    def __getitem__(self, name: str) -> np.ndarray:
        value = dict.__getitem__(self, name)
        if not isinstance(value, np.ndarray):  # an initializer not converted yet
            value = _array(value)
            dict.__setitem__(self, name, value)
        return value

    def get(self, name, default=None):
        return self[name] if name in self else default

    def unread(self, name: str) -> bool:
        """An initializer whose values have not been asked for."""
        value = dict.get(self, name)
        return value is not None and not isinstance(value, np.ndarray)

    def shape(self, name: str) -> tuple[int, ...]:
        value = dict.__getitem__(self, name)
        return value.shape if isinstance(value, np.ndarray) else tuple(value.dims)

    def size(self, name: str) -> int:
        return math.prod(self.shape(name))


class _Lazy:
    """A layer's weight: its shape now, its values (float32, in PyTorch's layout) when first asked for."""

    __slots__ = ("shape", "_fetch")

    def __init__(self, shape: tuple[int, ...], fetch: Callable[[], np.ndarray]):
        self.shape, self._fetch = tuple(shape), fetch

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __call__(self) -> np.ndarray:
        return self._fetch()


class _Tensors(Mapping):
    """A layer's tensors by PyTorch name (FlatLayer.tensors), each converted once, when first asked for:
    `archc import` reads no weight's values; `load_weights` and the tests read them all."""

    def __init__(self, tensors: dict[str, Any]):
        self._tensors = tensors  # name -> numpy array or _Lazy

    def __getitem__(self, name: str) -> np.ndarray:
        value = self._tensors[name]
        if isinstance(value, _Lazy):
            value = self._tensors[name] = value()
        return value

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        return f"_Tensors({', '.join(f'{k}: {list(v.shape)}' for k, v in self._tensors.items())})"


# ---------------------------------------------------------------- the reader


def read_flat(source: Any, input_shape: tuple[int, ...] | None = None) -> FlatNetwork:
    """An ONNX model (a path or an onnx.ModelProto) as a FlatNetwork. `input_shape` (archc's layout: H x W x C,
    or a vector's length) gives the sizes the graph's input leaves dynamic (the batch may always be)."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        model, where = source, ""
    else:
        from google.protobuf.message import DecodeError

        where = str(source)
        try:
            model = _load(str(source))
        except DecodeError as e:
            raise ValueError(f"not an ONNX model ({e})") from None
        if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(model, str(Path(str(source)).parent))
    return _Reader(model, where).read(input_shape)


def _load(path: str):
    """onnx.load(path, load_external_data=False), the file's bytes parsed where they lie (mapped into memory)
    instead of read into a bytes object first: onnx.load's read copies every byte (DenseNet-201's 76 MB of
    weights) once more than the parse does, and cost as much as the parse (issue 15's import figure). A file
    onnx keeps in a text format, or one that cannot be mapped (empty, not a regular file), goes through
    onnx.load."""
    import mmap

    import onnx
    from google.protobuf.message import DecodeError
    from onnx import serialization

    if serialization.registry.get_format_from_file_extension(os.path.splitext(path)[1]) not in (None, "protobuf"):
        return onnx.load(path, load_external_data=False)
    with open(path, "rb") as f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):
            return onnx.load(path, load_external_data=False)
    with mapped:
        model = onnx.ModelProto()
        view = memoryview(mapped)
        try:
            decoded = model.ParseFromString(view)  # protobuf copies what it keeps: nothing refers to the mapping
        except TypeError:  # a protobuf implementation that parses bytes only
            decoded = model.ParseFromString(bytes(view))
        finally:
            view.release()
        if decoded is not None and decoded != len(mapped):  # as onnx.load checks
            raise DecodeError(f"Protobuf decoding consumed too few bytes: {decoded} out of {len(mapped)}")
    return model


class _Reader:
    def __init__(self, model, source: str):
        self.model = model
        self.graph = model.graph
        self.source = source
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.layers: list[FlatLayer] = []
        self.shapes: list[tuple[int, ...]] = []
        self.vals: dict[str, _Val] = {}
        self.consts = _Constants()
        self.params: set[str] = set()  # constants that are initializers (weights), not Constant nodes
        self.cache: dict[str, _Val] = {}  # pending value name -> the layer it became
        self.alias: dict[str, str] = {}  # the graph's output named by an Identity -> the value it names
        self.input_shape: tuple[int, ...] = ()
        self.nodes = [_Node(node, i) for i, node in enumerate(self.graph.node)]
        self.outputs = {o.name for o in self.graph.output}
        self.position: list[int] = []  # per layer: the file's node it ends at
        self.scopes: dict[str, tuple[str, str]] = {}  # _path's memo: the nodes of a module share its scopes
        self.validated: dict[tuple, Any] = {}  # networks repeat layers: each kind's arguments validated once,
        self.resolved: dict[tuple, tuple] = {}  # and resolved once for each input shape
        self.resolutions = Resolutions()  # each layer's, for the network (FlatNetwork.resolved)

    # ------------------------------------------------------------ driving

    def read(self, input_shape) -> FlatNetwork:
        for init in self.graph.initializer:
            dict.__setitem__(self.consts, init.name, init)  # converted where its values are needed (_Constants)
            self.params.add(init.name)
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise Unsupported(f"a graph with {len(inputs)} inputs", self.graph.name or "the graph",
                              "archc networks have one input")
        self.input_shape = self._input_shape(inputs[0], input_shape)
        self.vals[inputs[0].name] = _Val("out", INPUT, "nchw" if len(self.input_shape) == 3 else "flat")
        self.name = self.graph.name or "imported"
        for node in self.nodes:
            self._node(node)
        outputs = list(self.graph.output)
        if len(outputs) != 1:
            raise self._unsupported(f"a graph with {len(outputs)} outputs", self.graph.name or "the graph",
                                    "archc networks have one output")
        out = self._layer_of(outputs[0].name, None)
        if out.layout == "nhwc":
            raise self._unsupported("an output in channels-last layout", outputs[0].name)
        return self._in_file_order(FlatNetwork(self.input_shape, self.layers, out.layer, _name(self.name),
                                               self.source, self.resolutions))

    def _in_file_order(self, net: FlatNetwork) -> FlatNetwork:
        """Layers in the order of the nodes they end at: a pending step becomes its layer when a later node
        reads it, but belongs where the file computes it (so a spec's layer order comes back)."""
        position = self.position
        if all(a <= b for a, b in zip(position, position[1:], strict=False)):
            return net  # in order already (most files: a pending step becomes its layer before the node after it)
        order = sorted(range(len(net.layers)), key=lambda i: (position[i], i))
        new = {old: i for i, old in enumerate(order)}
        new[INPUT] = INPUT
        layers = []
        for old in order:
            layer = net.layers[old]
            layer.inputs = tuple(new[i] for i in layer.inputs)
            layers.append(layer)
        return FlatNetwork(net.input_shape, layers, new[net.output], net.name, net.source, net.resolutions)

    def _input_shape(self, info, given) -> tuple[int, ...]:
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in info.type.tensor_type.shape.dim]
        if len(dims) == 4:
            ours = [dims[2], dims[3], dims[1]]
        elif len(dims) == 2:
            ours = [dims[1]]
        else:
            raise Unsupported(f"an input of rank {len(dims)}", info.name,
                              "archc reads N x C x H x W images or N x L vectors")
        if given is not None:
            given = tuple(int(v) for v in given)
            if len(given) != len(ours):
                raise Unsupported(f"an input of {len(dims)} dimensions given as {given}", info.name,
                                  "give H x W x C for an image input, (L,) for a vector")
            ours = [g if d is None else d for d, g in zip(ours, given, strict=True)]
            if tuple(ours) != given:
                raise Unsupported(f"an input of fixed size {tuple(ours)} given as {given}", info.name,
                                  "`input_shape` sets the sizes the file leaves dynamic")
        if any(d is None for d in ours):
            raise Unsupported("an input with dynamic sizes", info.name,
                              "pass input_shape=(H, W, C) for the sizes the file leaves open")
        return tuple(ours)

    def _unsupported(self, what: str, where: str, help: str = "") -> Unsupported:
        last = len(self.layers) - 1 if self.layers else INPUT
        partial = FlatNetwork(self.input_shape, list(self.layers), last, _name(getattr(self, "name", "imported")),
                              self.source)
        return Unsupported(what, where, help or "archc's layer kinds cannot express it (`archc ops` lists them)",
                           partial)

    def _node(self, node: _Node) -> None:
        ins, op_type, consts = node.input, node.op_type, self.consts
        # constants in, a constant out: folded (shapes of feature maps are constants too)
        if op_type == "Constant":
            consts[node.output[0]] = _constant(node)
            return
        if op_type == "Shape" and ins[0] in self.vals:
            consts[node.output[0]] = self._shape_of(ins[0], _attrs(node))
            return
        if op_type == "Pad" and ins[0] in consts and len(consts.shape(ins[0])) == 4 and _all_ones(consts[ins[0]]):
            self.vals[node.output[0]] = _Val("mask", node=node, data={"pads": self._pad_amounts(node)})
            return
        for i in ins:
            if i and i not in consts:
                break
        else:
            self._fold(node)
            return
        handler = getattr(self, f"op_{op_type}", None)
        if handler is None or node.domain not in ("", "ai.onnx"):
            raise self._unsupported(f"`{op_type}`", node.name or node.output[0])
        handler(node)

    def _fold(self, node) -> None:
        """A node of constants, computed here (so later nodes see a constant)."""
        x = node.input[0] if node.input else ""
        if node.op_type == "Identity" and self.consts.unread(x):  # a weight shared (torch.onnx.export writes
            dict.__setitem__(self.consts, node.output[0], dict.__getitem__(self.consts, x))  # equal ones once)
            self.params.add(node.output[0])
            return
        import onnx
        from onnx.reference import ReferenceEvaluator

        args = [self.consts[i] if i else None for i in node.input]
        folded = _fold_numpy(node, args)
        if folded is None:
            try:
                feeds = {i: self.consts[i] for i in node.input if i}
                graph = onnx.helper.make_graph([node.proto], "fold", [], [onnx.helper.make_tensor_value_info(
                    o, onnx.TensorProto.UNDEFINED, None) for o in node.output])
                folded = ReferenceEvaluator(onnx.helper.make_model(graph, opset_imports=self.model.opset_import)
                                            ).run(None, feeds)
            except Exception as e:  # noqa: BLE001 - a constant the reference runtime cannot compute
                raise self._unsupported(f"`{node.op_type}` on constants", node.name or node.output[0],
                                        f"computing it failed: {type(e).__name__}") from None
        for name, value in zip(node.output, folded, strict=False):
            self.consts[name] = np.asarray(value)
            if node.op_type in _RESHAPING and node.input[0] in self.params:
                self.params.add(name)  # a weight aliased (torch.onnx.export shares equal initializers) or reshaped

    # ------------------------------------------------------------ values and layers

    def _shape_of(self, name: str, attrs) -> np.ndarray:
        val = self._layer_of(name, None)
        shape = self._shape(val)
        if val.layout == "nchw":
            dims = [1, shape[2], shape[0], shape[1]]
        elif val.layout == "nhwc":
            dims = [1, *shape]
        else:
            dims = [1, *shape]
        start, end = attrs.get("start", 0), attrs.get("end", len(dims))
        return np.array(dims[start:end], np.int64)

    def _shape(self, val: _Val) -> tuple[int, ...]:
        return self.input_shape if val.layer == INPUT else self.shapes[val.layer]

    def _add(self, op: str, args: dict, inputs: list[int], node, tensors: dict | None = None,
             layout: str | None = None) -> _Val:
        """Append a layer, resolved by archc's own rules (a layer that does not fit raises)."""
        shapes = self.shapes
        in_shapes = [self.input_shape if i == INPUT else shapes[i] for i in inputs]
        name = node.name or node.output[0]
        given = (op, tuple(sorted(args.items())))
        key = (given, *in_shapes)
        hit = self.resolved.get(key)
        if hit is None:
            kind = OPS[op]
            try:
                valid = self.validated.get(given)
                if valid is None:
                    valid = self.validated[given] = kind.args(**args)
                resolved = kind.resolve(valid, in_shapes)
                hit = self.resolved[key] = (resolved, kind.shape(resolved, in_shapes))
            except Exception as e:  # noqa: BLE001 - archc's rules refuse it: say so at the node
                raise self._unsupported(f"`{node.op_type}` as `{op}`", name,
                                        f"archc's rules refuse it: {e}") from None
        shape = hit[1]
        layer = FlatLayer(op, args, tuple(inputs), _path(name, self.scopes), _Tensors(dict(tensors or {})))
        self.layers.append(layer)
        self.resolutions.keep(layer, in_shapes, *hit)
        self.position.append(node.index)
        shapes.append(shape)
        if layout is None:
            layout = "flat" if len(shape) == 1 else "nchw"
        return _Val("out", len(self.layers) - 1, layout, node=node)

    def _set(self, node, val: _Val, index: int = 0) -> None:
        self.vals[node.output[index]] = val

    def _layer_of(self, name: str, node) -> _Val:
        """The value as a layer's output: a pending step becomes its own layer here (or raises)."""
        name = self.alias.get(name, name)
        if name in self.consts:
            raise self._unsupported("a constant where a layer's input is expected", node.name if node else name,
                                    "archc layers read the network's input or other layers")
        val = self.vals[name]
        if val.kind == "out":
            return val
        if name not in self.cache:
            self.cache[name] = self._materialize(name, val, node)
        return self.cache[name]

    def _materialize(self, name: str, val: _Val, user) -> _Val:
        node = val.node
        where = (node.name or node.output[0]) if node is not None else name
        if val.kind == "ew":
            return self._activation(val)
        if val.kind == "gpool":
            base = self._layer_of(val.src, node)
            return self._add(val.data["op"], {"keepdims": True}, [base.layer], node)
        if val.kind == "matmul":
            return self._dense(val, None)
        if val.kind == "product":
            return self._product(val)
        if val.kind in ("gather", "interp") and val.data["axis"] == 3:
            return self._upsample(val)
        if val.kind in ("lnnorm", "lnscaled"):  # normalised without a learned shift (or scale)
            return self._layernorm(val)
        if val.kind == "split":
            base = self._layer_of(val.src, node)
            return self._add("split", {"parts": val.data["parts"], "part": val.data["part"]}, [base.layer], node)
        if val.kind == "avgsum":  # zero padding averaged in: counted
            return self._avgpool_counted(val)
        if val.kind == "unsq":
            raise self._unsupported("`Unsqueeze` of a vector to a map", where,
                                    "archc reads it only as the operand of a product or an LRN")
        if val.kind == "pad" and val.data["spatial"] == (0, 0, 0, 0) and val.data["value"] == 0:
            base = self._layer_of(val.src, node)
            return self._zeropad(val, base, (1, 1))
        if val.kind == "subsample":
            raise self._unsupported("`Slice` with steps", where, "archc reads it as the start of a zeropad shortcut")
        what = {"pad": "`Pad`", "grouped": "`Reshape` to 5 dimensions", "swapped": "`Transpose` of 5 dimensions",
                "crop": "`Slice` of rows and columns", "mask": "`Pad` of ones", "counts": "`AveragePool` of a mask",
                "gather": "`Gather`", "interp": "`Gather`", "gdiff": "`Sub`", "gstep": "`Mul`",
                "lnmean": "`ReduceMean` over the channels", "lncent": "`Sub` of a mean", "lnsq": "a square",
                "lnvar": "`ReduceMean` over the channels", "lnvare": "`Add`", "lnstd": "`Sqrt`"}.get(val.kind, val.kind)
        raise self._unsupported(what, where, "archc reads it only as part of a pattern that makes one layer")

    # ------------------------------------------------------------ element-wise chains

    def _ew(self, name: str) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
        """(base, f): the value as a function of one layer output, or None when it is neither."""
        if name in self.consts:
            return None
        val = self.vals[name]
        if val.kind == "ew":
            return val.src, val.data["f"]
        if val.kind == "out" or name in self.cache:
            return name, lambda x: x
        return None

    def _unary(self, node, f: Callable[[np.ndarray, dict], np.ndarray]) -> None:
        x = node.input[0]
        ew = self._ew(x)
        if ew is None:
            self._layer_of(x, node)
            ew = self._ew(x)
        base, g = ew
        attrs = _attrs(node)
        self._set(node, _Val("ew", src=base, node=node, data={"f": lambda p, g=g: f(g(p), attrs), "prev": x}))

    def _binary_ew(self, node) -> bool:
        """An element-wise node of one base value and scalar constants, or of two chains over the same base."""
        a, b = node.input[0], node.input[1]
        op = _BINARY[node.op_type]

        def scalar(n):
            return n in self.consts and self.consts.size(n) == 1

        ea, eb = self._ew(a), self._ew(b)
        if ea is not None and scalar(b):
            c = float(self.consts[b].reshape(()))
            self._set(node, _Val("ew", src=ea[0], node=node, data={"f": lambda p, g=ea[1]: op(g(p), c), "prev": a}))
            return True
        if eb is not None and scalar(a):
            c = float(self.consts[a].reshape(()))
            self._set(node, _Val("ew", src=eb[0], node=node, data={"f": lambda p, g=eb[1]: op(c, g(p)), "prev": b}))
            return True
        if ea is not None and eb is not None and ea[0] == eb[0] and (
                self.vals[a].kind == "ew" or self.vals[b].kind == "ew" or a == b):
            self._set(node, _Val("ew", src=ea[0], node=node,
                                 data={"f": lambda p, f=ea[1], g=eb[1]: op(f(p), g(p)), "prev": None}))
            return True
        return False

    def _activation(self, val: _Val) -> _Val:
        node = val.node
        base = self._layer_of(val.src, node)
        if val.data.get("prev") == val.src and node.op_type in _DIRECT:  # one operator that is one kind
            return self._add_activation(_DIRECT[node.op_type], base, node)
        with np.errstate(all="ignore"):
            found = _identify(np.asarray(val.data["f"](_PROBE.copy()), dtype=np.float64))
        if found is None:
            # a chain of several activations: the one before this node first, then this node alone
            prev = val.data.get("prev")
            if prev is not None and prev in self.vals and self.vals[prev].kind == "ew" and node.op_type in _UNARY:
                inner = self._layer_of(prev, node)
                attrs = _attrs(node)
                with np.errstate(all="ignore"):
                    found = _identify(np.asarray(_UNARY[node.op_type](_PROBE.copy(), attrs), dtype=np.float64))
                if found is not None:
                    return self._add_activation(found, inner, node)
            raise self._unsupported(f"`{node.op_type}` (an element-wise function archc has no kind for)",
                                    node.name or node.output[0],
                                    "archc's activations: " + ", ".join(k for k, _ in _ACTIVATIONS))
        return self._add_activation(found, base, node)

    def _add_activation(self, found, base: _Val, node) -> _Val:
        kind, args = found
        if kind == "identity":
            return base
        return self._add(kind, args, [base.layer], node, layout=base.layout)

    # ------------------------------------------------------------ operators

    def op_Relu(self, node):  # and every other element-wise operator of one input (_UNARY)
        self._unary(node, _UNARY[node.op_type])

    op_Sigmoid = op_Tanh = op_Erf = op_Exp = op_Neg = op_Abs = op_Softplus = op_Softsign = op_Relu
    op_Reciprocal = op_HardSigmoid = op_HardSwish = op_LeakyRelu = op_Elu = op_Gelu = op_Relu

    def op_Clip(self, node):
        attrs = _attrs(node)
        low = attrs.get("min", NEG_INF)
        high = attrs.get("max", float("inf"))
        if len(node.input) > 1 and node.input[1]:
            low = self._scalar(node, 1)
        if len(node.input) > 2 and node.input[2]:
            high = self._scalar(node, 2)
        self._unary(node, lambda x, a: np.clip(x, low, high))

    def _scalar(self, node, i: int) -> float:
        name = node.input[i]
        if name not in self.consts or self.consts.size(name) != 1:
            raise self._unsupported(f"`{node.op_type}` with a computed input {i + 1}", node.name)
        return float(self.consts[name].reshape(()))

    def op_Identity(self, node):
        x = node.input[0]
        if node.output[0] in self.outputs:
            self.alias[node.output[0]] = self.alias.get(x, x)  # names the graph's output: not a layer
            return
        base = self._layer_of(x, node)
        self._set(node, self._add("identity", {}, [base.layer], node, layout=base.layout))

    def op_Dropout(self, node):
        x = node.input[0]
        base = self._layer_of(x, node)
        rate = _attrs(node).get("ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            rate = self._scalar(node, 1)
        self._set(node, self._add("dropout", {"rate": _round(rate)}, [base.layer], node,
                                  layout=base.layout))

    def op_Conv(self, node):
        a = _attrs(node)
        x = node.input[0]
        val = self.vals.get(x)
        extra = (0, 0, 0, 0)
        if val is not None and val.kind == "pad" and val.data["value"] == 0 and val.data["channels"] == (0, 0):
            extra, x = val.data["spatial"], val.src  # a zero Pad before the conv is its padding
        base = self._layer_of(x, node)
        self._map(base, node)
        weight = self._param(node, 1)
        h, w, c = self._shape(base)
        kernel = tuple(int(k) for k in weight.shape[2:])
        if len(kernel) != 2:
            raise self._unsupported(f"a {len(kernel)}-d `Conv`", node.name)
        stride = tuple(a.get("strides", (1, 1)))
        dilation = tuple(a.get("dilations", (1, 1)))
        pads = self._auto_pads(node, a, (h, w), kernel, stride, dilation)
        pads = tuple(p + e for p, e in zip(pads, extra, strict=True))
        groups = int(a.get("group", 1))
        filters = int(weight.shape[0])
        if weight.ndim != 4 or weight.shape[1] * groups != c:
            raise self._unsupported(f"`Conv` with a {list(weight.shape)} weight on {c} channels", node.name)
        args = {"kernel": kernel, "filters": filters, "stride": stride, "dilation": dilation,
                "padding": canonical_padding(pads), "groups": groups}
        tensors = {"weight": weight}
        if len(node.input) > 2 and node.input[2]:
            tensors["bias"] = self._param(node, 2)
        else:
            args["bias"] = False
        args.update(_depthwise(groups, c, filters))
        self._set(node, self._add("conv", args, [base.layer], node, tensors))

    def _auto_pads(self, node, a, size, kernel, stride, dilation) -> tuple[int, int, int, int]:
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            return _pads4(a.get("pads", (0, 0, 0, 0)))
        if auto == "VALID":
            return (0, 0, 0, 0)
        out = []
        for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
            total = max(0, (-(-n // s) - 1) * s + d * (k - 1) + 1 - n)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return (out[0][0], out[0][1], out[1][0], out[1][1])

    def _map(self, val: _Val, node) -> None:
        if val.layout != "nchw":
            raise self._unsupported(f"`{node.op_type}` on a {'vector' if val.layout == 'flat' else 'NHWC map'}",
                                    node.name or node.output[0])

    def _param(self, node, i: int) -> _Lazy:
        """A weight input: its shape, and its values as float32 when asked for (_Tensors)."""
        name = node.input[i]
        if name not in self.consts:
            raise self._unsupported(f"`{node.op_type}` with a computed weight (input {i + 1})", node.name,
                                    "archc layers hold their weights")
        consts = self.consts
        return _Lazy(consts.shape(name), lambda: np.asarray(consts[name], dtype=np.float32))

    def op_ConvTranspose(self, node):
        a = _attrs(node)
        base = self._layer_of(node.input[0], node)
        self._map(base, node)
        weight = self._param(node, 1)
        where = node.name or node.output[0]
        if int(a.get("group", 1)) != 1 or tuple(a.get("dilations", (1, 1))) != (1, 1) or "output_shape" in a:
            raise self._unsupported("`ConvTranspose` with groups, dilation or output_shape", where,
                                    "archc's convtranspose is PyTorch's ConvTranspose2d without them")
        auto = a.get("auto_pad", b"NOTSET")
        if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "", "VALID"):
            raise self._unsupported("`ConvTranspose` with auto_pad SAME", where)
        t, b, left, right = _pads4(a.get("pads", (0, 0, 0, 0)))
        if (t, left) != (b, right):
            raise self._unsupported("`ConvTranspose` with asymmetric padding", where,
                                    "archc's convtranspose crops both sides alike (output_padding adds after)")
        if weight.ndim != 4 or weight.shape[0] != self._shape(base)[2]:
            raise self._unsupported(f"`ConvTranspose` with a {list(weight.shape)} weight", where)
        args = {"kernel": tuple(int(k) for k in weight.shape[2:]), "filters": int(weight.shape[1]),
                "stride": tuple(a.get("strides", (1, 1))), "padding": (t, left) if (t, left) != (0, 0) else "valid",
                "output_padding": tuple(a.get("output_padding", (0, 0)))}
        tensors = {"weight": weight}
        if len(node.input) > 2 and node.input[2]:
            tensors["bias"] = self._param(node, 2)
        else:
            args["bias"] = False
        self._set(node, self._add("convtranspose", args, [base.layer], node, tensors))

    # ---- pooling

    def _window(self, node, base, a, extra=(0, 0, 0, 0)) -> dict:
        h, w, _ = self._shape(base)
        kernel = tuple(int(k) for k in a["kernel_shape"])
        stride = tuple(a.get("strides", (1, 1)))
        dilation = tuple(a.get("dilations", (1, 1)))
        pads = self._auto_pads(node, a, (h, w), kernel, stride, dilation)
        pads = tuple(p + e for p, e in zip(pads, extra, strict=True))
        return {"kernel": kernel, "stride": stride, "dilation": dilation, "padding": canonical_padding(pads),
                "ceil": bool(a.get("ceil_mode", 0))}

    def op_MaxPool(self, node):
        if len(node.output) > 1 and node.output[1]:
            raise self._unsupported("`MaxPool` with indices", node.name)
        a = _attrs(node)
        x = node.input[0]
        val = self.vals.get(x)
        extra = (0, 0, 0, 0)
        if val is not None and val.kind == "pad" and val.data["value"] == NEG_INF and val.data["channels"] == (0, 0):
            extra, x = val.data["spatial"], val.src  # archc writes padding beyond the window as a -inf Pad
        base = self._layer_of(x, node)
        self._map(base, node)
        self._set(node, self._add("maxpool", self._window(node, base, a, extra), [base.layer], node))

    def op_AveragePool(self, node):
        a = _attrs(node)
        x = node.input[0]
        val = self.vals.get(x)
        if val is not None and val.kind == "mask":  # archc's count of real inputs per window
            self._set(node, _Val("counts", node=node, data={"pads": val.data["pads"], "attrs": a}))
            return
        if val is not None and val.kind == "pad" and val.data["value"] == 0 and val.data["channels"] == (0, 0):
            # zero padding averaged in: counted (archc's count_pad), or divided by a count of real inputs next
            self._set(node, _Val("avgsum", src=val.src, node=node, data={"pads": val.data["spatial"], "attrs": a}))
            return
        base = self._layer_of(x, node)
        self._map(base, node)
        args = self._window(node, base, a)
        if a.get("count_include_pad", 0) and args["padding"] != "valid":
            args["count_pad"] = True
        self._set(node, self._add("avgpool", args, [base.layer], node))

    def _avgpool_counted(self, val: _Val) -> _Val:
        node, a = val.node, val.data["attrs"]
        base = self._layer_of(val.src, node)
        self._map(base, node)
        counted = val.data["pads"]
        over = _pads4(a.get("pads", (0, 0, 0, 0)))
        args = self._window(node, base, {**a, "pads": (0, 0, 0, 0), "ceil_mode": 0})
        args.update(padding=canonical_padding(counted), count_pad=counted != (0, 0, 0, 0))
        if over != (0, 0, 0, 0):  # uncounted overhang after counted padding: ceil mode
            from ..ops import AvgPoolArgs

            h, w, _ = self._shape(base)
            trial = AvgPoolArgs(**{**args, "ceil": True})
            want = tuple(c + o for c, o in zip(counted, over, strict=True))
            if over[0] or over[2] or trial.ceil_pads(h, w) != want:
                raise self._unsupported("`AveragePool` counting some padding and not the rest",
                                        node.name or node.output[0])
            args["ceil"] = True
        return self._add("avgpool", args, [base.layer], node)

    def op_GlobalAveragePool(self, node):
        base = self._layer_of(node.input[0], node)
        self._map(base, node)
        op = "globalavgpool" if node.op_type == "GlobalAveragePool" else "globalmaxpool"
        self._set(node, _Val("gpool", src=node.input[0], node=node, data={"op": op}))

    op_GlobalMaxPool = op_GlobalAveragePool

    def op_ReduceMean(self, node):
        a = _attrs(node)
        axes = self._axes(node, a)
        if self._channel_mean(node, a, axes):
            return
        base = self._layer_of(node.input[0], node)
        if base.layout != "nchw" or axes is None or sorted(int(x) % 4 for x in axes) != [2, 3]:
            raise self._unsupported("`ReduceMean` other than over height and width", node.name,
                                    "archc reads a mean over H and W as global average pooling")
        op = "globalavgpool" if node.op_type == "ReduceMean" else "globalmaxpool"
        if a.get("keepdims", 1):
            self._set(node, _Val("gpool", src=node.input[0], node=node, data={"op": op}))
        else:
            self._set(node, self._add(op, {}, [base.layer], node))

    def _axes(self, node, attrs) -> list | None:
        """The axes a node reduces or squeezes: an attribute in older opsets (13 for Squeeze, 18 for ReduceMean),
        then an input."""
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in self.consts:
            axes = self.consts[node.input[1]].tolist()
        return axes

    def _channel_mean(self, node, attrs, axes) -> bool:
        """A mean over the channels, kept: the mean (or, of the squared deviation, the variance) of a layer
        normalisation written out."""
        val = self.vals.get(node.input[0])
        if node.op_type != "ReduceMean" or axes is None or not attrs.get("keepdims", 1) or val is None:
            return False
        if not (val.kind == "lnsq" or val.kind == "out" or node.input[0] in self.cache):
            return False
        src = val.src if val.kind == "lnsq" else node.input[0]
        layout = self._layer_of(src, node).layout
        rank = 4 if layout != "flat" else 2
        if [int(x) % rank for x in axes] != [1 if layout == "nchw" else rank - 1]:  # not over the channels
            return False
        self._set(node, _Val("lnvar" if val.kind == "lnsq" else "lnmean", src=src, node=node))
        return True

    op_ReduceMax = op_ReduceMean

    # ---- vectors

    def op_Flatten(self, node):
        x = node.input[0]
        val = self.vals.get(x)
        if int(_attrs(node).get("axis", 1)) != 1:
            raise self._unsupported("`Flatten` other than after the batch axis", node.name)
        self._flatten(node, x, val)

    def _flatten(self, node, x, val):
        if val is not None and val.kind == "gpool" and x not in self.cache:
            base = self._layer_of(val.src, node)
            self._set(node, self._add(val.data["op"], {}, [base.layer], node))
            return
        base = self._layer_of(x, node)
        if base.layout == "flat":
            self._set(node, base)
            return
        if base.layout == "nhwc":
            raise self._unsupported("a flatten of a channels-last map", node.name,
                                    "archc flattens in PyTorch's C, H, W order")
        self._set(node, self._add("flatten", {}, [base.layer], node))

    def op_Squeeze(self, node):
        x = node.input[0]
        val = self.vals.get(x)
        axes = self._axes(node, _attrs(node))
        if val is not None and val.kind == "lrnvec":  # archc's LRN of a vector, back to the vector
            self._set(node, _Val("out", val.layer, "flat", node=node))
            return
        base_val = val if val is not None and val.kind == "gpool" else None
        shape = self._shape(self._layer_of(base_val.src if base_val else x, node))
        if axes is not None and sorted(int(a) % 4 for a in axes) == [2, 3] and (base_val or shape[:2] == (1, 1)):
            self._flatten(node, x, val)
            return
        raise self._unsupported("`Squeeze` other than of a 1x1 map's height and width", node.name)

    def op_Unsqueeze(self, node):
        axes = self._axes(node, _attrs(node))
        base = self._layer_of(node.input[0], node)
        if base.layout != "flat" or axes is None or sorted(int(a) for a in axes) != [2, 3]:
            raise self._unsupported("`Unsqueeze` other than of a vector to N x C x 1 x 1", node.name)
        self._set(node, _Val("unsq", src=node.input[0], node=node))

    def op_Gemm(self, node):
        a = _attrs(node)
        base = self._layer_of(node.input[0], node)
        if base.layout != "flat" or a.get("transA", 0):
            raise self._unsupported("`Gemm` of anything but a batch of vectors", node.name)
        param, alpha, trans = self._param(node, 1), float(a.get("alpha", 1.0)), bool(a.get("transB", 0))
        weight = _Lazy(param.shape if trans else param.shape[::-1],
                       lambda: np.ascontiguousarray(param() * alpha if trans else (param() * alpha).T))
        tensors = {"weight": weight}
        args = {"units": int(weight.shape[0])}
        if len(node.input) > 2 and node.input[2]:
            bias = self._param(node, 2)() * float(a.get("beta", 1.0))
            tensors["bias"] = np.broadcast_to(bias.reshape(-1), (weight.shape[0],)).astype(np.float32)
        else:
            args["bias"] = False
        self._set(node, self._add("dense", args, [base.layer], node, tensors))

    def op_MatMul(self, node):
        if node.input[1] not in self.consts or len(self.consts.shape(node.input[1])) != 2:
            raise self._unsupported("`MatMul` of two computed values", node.name)
        base = self._layer_of(node.input[0], node)
        if base.layout == "nchw":
            raise self._unsupported("`MatMul` over the width of a map", node.name,
                                    "archc reads MatMul on vectors (dense) or channels-last maps (a 1x1 conv)")
        self._set(node, _Val("matmul", src=node.input[0], node=node, data={"w": self._param(node, 1)}))

    def _dense(self, val: _Val, bias: np.ndarray | None, node=None) -> _Val:
        base = self._layer_of(val.src, val.node)
        param = val.data["w"]
        units, features = (int(d) for d in param.shape[::-1])
        node = node or val.node
        if base.layout == "flat":
            tensors = {"weight": _Lazy((units, features), lambda: np.ascontiguousarray(param().T))}  # [out, in]
            args = {"units": units}
            op = "dense"
        else:  # a Linear over the channels of a channels-last map: a 1x1 conv
            tensors = {"weight": _Lazy((units, features, 1, 1),
                                       lambda: np.ascontiguousarray(param().T).reshape(units, -1, 1, 1))}
            args = {"kernel": (1, 1), "filters": units}
            op = "conv"
        if bias is None:
            args["bias"] = False
        else:
            tensors["bias"] = bias
        return self._add(op, args, [base.layer], node, tensors, layout=base.layout)

    # ---- merges and products

    def op_Add(self, node):
        a, b = node.input[0], node.input[1]
        if self._gather_step(node) or self._layernorm_step(node):
            return
        for x, y in ((a, b), (b, a)):
            val = self.vals.get(x)
            if val is not None and val.kind == "matmul" and x not in self.cache and y in self.params:
                bias = np.asarray(self.consts[y], np.float32).reshape(-1)
                if bias.size == val.data["w"].shape[1]:
                    self._set(node, self._dense(val, bias, node))
                    return
        if self._binary_ew(node):
            return
        self._merge(node, "add")

    def op_Sum(self, node):
        if not self._one_input(node):
            self._merge(node, "add")

    def _one_input(self, node) -> bool:
        """A merge of one input is that input (torch.cat of a list of one tensor: each DenseNet block's first
        layer), as the PyTorch reader reads it: no layer."""
        if len(node.input) != 1:
            return False
        self._set(node, self._layer_of(node.input[0], node))
        return True

    def _merge(self, node, op: str):
        vals = [self._layer_of(x, node) for x in node.input]
        layouts = {v.layout for v in vals}
        if len(layouts) > 1 and op != "multiply":
            raise self._unsupported(f"`{node.op_type}` of values in different layouts", node.name)
        self._set(node, self._add(op, {}, [v.layer for v in vals], node, layout=vals[0].layout))

    def op_Sub(self, node):
        if not self._gather_step(node) and not self._layernorm_step(node) and not self._binary_ew(node):
            raise self._unsupported("`Sub` of two layers", node.name)

    op_Max = op_Min = op_Sub

    def op_Pow(self, node):
        if not self._layernorm_step(node) and not self._binary_ew(node):
            raise self._unsupported("`Pow` of two layers", node.name)

    def op_Div(self, node):
        a, b = node.input[0], node.input[1]
        va, vb = self.vals.get(a), self.vals.get(b)
        if va is not None and vb is not None and va.kind == "avgsum" and vb.kind == "counts":
            # archc's average over real inputs only: window sums of the zero-padded input over counts
            if va.data["pads"] == vb.data["pads"] and va.data["attrs"] == vb.data["attrs"]:
                base = self._layer_of(va.src, node)
                self._map(base, node)
                self._set(node, self._add("avgpool", self._window(node, base, va.data["attrs"], va.data["pads"]),
                                          [base.layer], node))
                return
        if not self._layernorm_step(node) and not self._binary_ew(node):
            raise self._unsupported("`Div` of two layers", node.name)

    def op_Mul(self, node):
        a, b = node.input[0], node.input[1]
        if self._gather_step(node) or self._layernorm_step(node) or self._binary_ew(node):
            return
        for x, y in ((a, b), (b, a)):
            if y in self.params:  # a learned scale per channel: layer_scale
                base = self._layer_of(x, node)
                scale = np.asarray(self.consts[y], np.float32)
                c = self._shape(base)[-1]
                # one scale per channel only where it broadcasts over the channels' axis: C x 1 x 1 beside NCHW,
                # C beside channels last (a C-vector beside NCHW would scale the columns)
                along = scale.shape[-3:] == (c, 1, 1) if base.layout == "nchw" else scale.shape[-1:] == (c,)
                if scale.size == c and along:
                    first = _round(scale.reshape(-1)[0])
                    init = first if np.all(scale == first) else 1e-6
                    shape = (c, 1, 1) if base.layout == "nchw" else (c,)
                    self._set(node, self._add("layer_scale", {"init": init}, [base.layer], node,
                                              {"weight": scale.reshape(shape)}, layout=base.layout))
                    return
                break
        ins: list[str] = []
        for x in (a, b):
            val = self.vals.get(x)
            if val is not None and val.kind == "product" and x not in self.cache:
                ins.extend(val.data["ins"])  # a chain of products is one multiply of all its inputs
            elif val is not None and val.kind == "unsq":  # a vector beside a map: multiply broadcasts it
                ins.append(val.src)
            else:
                self._layer_of(x, node)
                ins.append(x)
        self._set(node, _Val("product", node=node, data={"ins": ins}))

    def _product(self, val: _Val) -> _Val:
        ins = [self._layer_of(x, val.node) for x in val.data["ins"]]
        if any(v.layout == "nhwc" for v in ins):
            raise self._unsupported("`Mul` of channels-last maps", val.node.name)
        return self._add("multiply", {}, [v.layer for v in ins], val.node)

    def op_Concat(self, node):
        if self._one_input(node):
            return
        axis = int(_attrs(node).get("axis", 1))
        crops = [self.vals.get(x) is not None and self.vals[x].kind == "crop" for x in node.input]
        ins = [self._layer_of(self.vals[x].src if crop else x, node) for x, crop in zip(node.input, crops, strict=True)]
        rank = 4 if ins[0].layout == "nchw" else 2
        if ins[0].layout == "nhwc" or axis % rank != 1:
            raise self._unsupported("`Concat` other than along the channels", node.name)
        if any(crops):
            from ..ops import CropConcat

            shapes = [self._shape(v) for v in ins]
            out = (min(s[0] for s in shapes), min(s[1] for s in shapes))
            starts = CropConcat.crops(shapes, (*out, 0))
            for x, crop, start, shape in zip(node.input, crops, starts, shapes, strict=True):
                want = (start, (start[0] + out[0], start[1] + out[1])) if shape[:2] != out else None
                if (self.vals[x].data["window"] if crop else None) != want:
                    raise self._unsupported("`Concat` of crops other than centred ones", node.name)
            self._set(node, self._add("cropconcat", {}, [v.layer for v in ins], node))
            return
        self._set(node, self._add("concat", {}, [v.layer for v in ins], node, layout=ins[0].layout))

    # ---- normalisation

    def op_BatchNormalization(self, node):
        a = _attrs(node)
        if a.get("training_mode", 0) or (len(node.output) > 1 and any(node.output[1:])):
            raise self._unsupported("`BatchNormalization` in training mode", node.name)
        base = self._layer_of(node.input[0], node)
        args = {"epsilon": _round(a.get("epsilon", 1e-5)), "momentum": _round(a.get("momentum", 0.9))}
        tensors = {}
        for i, name, flag in ((1, "weight", "scale"), (2, "bias", "center")):
            if node.input[i] in self.params:
                tensors[name] = self._param(node, i)
            elif node.input[i] in self.consts and np.all(self.consts[node.input[i]] == (1 if i == 1 else 0)):
                args[flag] = False  # a constant unit scale or zero shift: archc's `scale=false` / `center=false`
            else:
                raise self._unsupported("`BatchNormalization` with a computed scale or shift", node.name)
        tensors["running_mean"] = self._param(node, 3)
        tensors["running_var"] = self._param(node, 4)
        self._set(node, self._add("batchnorm", args, [base.layer], node, tensors, layout=base.layout))

    def op_LayerNormalization(self, node):
        a = _attrs(node)
        base = self._layer_of(node.input[0], node)
        if base.layout == "nchw" or int(a.get("axis", -1)) not in (-1, 3 if base.layout == "nhwc" else 1):
            raise self._unsupported("`LayerNormalization` other than over the channels", node.name,
                                    "archc's layernorm normalises each position's channels")
        tensors = {"weight": self._param(node, 1)}
        if len(node.input) > 2 and node.input[2]:
            tensors["bias"] = self._param(node, 2)
        else:
            shape = tensors["weight"].shape
            tensors["bias"] = _Lazy(shape, lambda: np.zeros(shape, np.float32))
        self._set(node, self._add("layernorm", {"epsilon": _round(a.get("epsilon", 1e-5))},
                                  [base.layer], node, tensors, layout=base.layout))

    def op_LRN(self, node):
        a = _attrs(node)
        x = node.input[0]
        val = self.vals.get(x)
        vector = val is not None and val.kind == "unsq"
        base = self._layer_of(val.src if vector else x, node)
        size = int(a["size"])
        args = {"size": size, "alpha": _round(float(a.get("alpha", 1e-4)) / size), "beta": _round(a.get("beta", 0.75)),
                "k": _round(a.get("bias", 1.0))}
        out = self._add("lrn", args, [base.layer], node, layout=base.layout)
        if vector:  # archc's LRN of a vector: Unsqueeze, LRN, Squeeze
            out = _Val("lrnvec", out.layer, node=node)
        self._set(node, out)

    def op_Softmax(self, node):
        base = self._layer_of(node.input[0], node)
        rank = 2 if base.layout == "flat" else 4
        axis = int(_attrs(node).get("axis", 1 if self.opset < 13 else -1)) % rank
        if base.layout == "nhwc" or axis != 1 or (self.opset < 13 and rank == 4):
            raise self._unsupported("`Softmax` other than over the channels", node.name)
        self._set(node, self._add("softmax", {}, [base.layer], node, layout=base.layout))

    # ---- layout and reshaping

    def op_Transpose(self, node):
        perm = list(_attrs(node).get("perm", []))
        x = node.input[0]
        val = self.vals.get(x)
        if val is not None and val.kind == "grouped" and perm == [0, 2, 1, 3, 4]:
            self._set(node, _Val("swapped", src=val.src, node=node, data=dict(val.data)))
            return
        base = self._layer_of(x, node)
        if base.layout == "nchw" and perm == [0, 2, 3, 1]:
            self._set(node, _Val("out", base.layer, "nhwc", node=node))
        elif base.layout == "nhwc" and perm == [0, 3, 1, 2]:
            self._set(node, _Val("out", base.layer, "nchw", node=node))
        else:
            raise self._unsupported(f"`Transpose` with perm {perm}", node.name,
                                    "archc reads transposes to channels last and back")

    def op_Reshape(self, node):
        if node.input[1] not in self.consts:
            raise self._unsupported("`Reshape` to a computed shape", node.name)
        target = [int(v) for v in self.consts[node.input[1]].reshape(-1)]
        if not self._reshape_ends_pattern(node, target):
            self._reshape_layer(node, target)

    def _reshape_ends_pattern(self, node, target) -> bool:
        """The Reshape that completes a pending pattern: the last of a channel shuffle's three, or a pooled
        1x1 map's reshape to a vector (a flatten)."""
        x = node.input[0]
        val = self.vals.get(x)
        if val is not None and val.kind == "swapped":
            base = self._layer_of(val.src, node)
            h, w, c = self._shape(base)
            if _reshaped(target, [1, c, h, w]) == [1, c, h, w]:
                self._set(node, self._add("shuffle", {"groups": val.data["groups"]}, [base.layer], node))
                return True
        if val is not None and val.kind == "gpool" and x not in self.cache:
            c = self._shape(self._layer_of(val.src, node))[2]
            if _reshaped(target, [1, c, 1, 1]) == [1, c]:
                self._flatten(node, x, val)
                return True
        return False

    def _reshape_layer(self, node, target) -> None:
        """A layer's output reshaped: to itself, to a vector (a flatten), or split into groups of channels
        (the first step of a channel shuffle)."""
        x = node.input[0]
        base = self._layer_of(x, node)
        dims = self._onnx_dims(base)
        new = _reshaped(target, dims)
        if new == dims:
            self._set(node, base)
        elif new is not None and len(new) == 2 and base.layout != "nhwc":
            self._set(node, self._add("flatten", {}, [base.layer], node) if base.layout == "nchw" else base)
        elif (new is not None and len(new) == 5 and base.layout == "nchw" and new[3:] == dims[2:]
              and new[1] * new[2] == dims[1]):
            self._set(node, _Val("grouped", src=x, node=node, data={"groups": new[1]}))
        else:
            raise self._unsupported(f"`Reshape` of {dims} to {target}", node.name,
                                    "archc reads reshapes to a vector (flatten) and channel shuffles")

    def _onnx_dims(self, val: _Val) -> list[int]:
        """A layer output's shape as the file holds it (batch 1): N, C, H, W for NCHW, else in its own order."""
        shape = self._shape(val)
        return [1, shape[2], shape[0], shape[1]] if val.layout == "nchw" else [1, *shape]

    def op_Split(self, node):
        a = _attrs(node)
        base = self._layer_of(node.input[0], node)
        c = self._shape(base)[-1]
        axis = int(a.get("axis", 0)) % (4 if base.layout == "nchw" else 2)
        sizes = a.get("split")
        if sizes is None and len(node.input) > 1 and node.input[1]:
            sizes = self.consts[node.input[1]].tolist() if node.input[1] in self.consts else None
        n = len(node.output)
        if sizes is None:
            sizes = [c // n] * n if c % n == 0 else None
        if base.layout == "nhwc" or axis != 1 or sizes is None or len(set(sizes)) != 1 or sum(sizes) != c:
            raise self._unsupported("`Split` other than into equal parts of the channels", node.name)
        for i, out in enumerate(node.output):
            if out:
                self.vals[out] = _Val("split", src=node.input[0], node=node, data={"parts": n, "part": i})

    def op_Slice(self, node):
        base = self._layer_of(node.input[0], node)
        if any(i and i not in self.consts for i in node.input[1:]):
            raise self._unsupported("`Slice` with computed bounds", node.name)
        bounds, dims = self._slice_bounds(node, base)
        if base.layout == "nhwc":
            raise self._unsupported("`Slice` of a channels-last map", node.name)
        val = self._slice_of_channels(node, base, bounds, dims) or self._slice_of_map(node, base, bounds, dims)
        if val is None:
            raise self._unsupported("`Slice` other than of channels, a centred crop or a subsampling", node.name)
        self._set(node, val)

    def _slice_bounds(self, node, base: _Val) -> tuple[dict[int, tuple[int, int, int]], list[int]]:
        """axis -> (start, end, step) with ONNX's negative and out-of-range bounds clamped to the axis, and the
        sliced value's dims."""
        ins = [self.consts.get(i) if i else None for i in node.input]
        starts, ends = [int(v) for v in ins[1]], [int(v) for v in ins[2]]
        rank = 4 if base.layout == "nchw" else 2
        axes = [int(v) % rank for v in ins[3]] if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        dims = self._onnx_dims(base)
        bounds = {}
        for ax, s, e, st in zip(axes, starts, ends, steps, strict=True):
            n = dims[ax]
            bounds[ax] = (_clamp(s, n), _clamp(e, n), st)
        return bounds, dims

    def _slice_of_channels(self, node, base: _Val, bounds, dims) -> _Val | None:
        """A contiguous part of the channels, one of equal parts: a split."""
        if set(bounds) != {1} or bounds[1][2] != 1:
            return None
        s, e, _ = bounds[1]
        size, c = e - s, dims[1]
        if size <= 0 or c % size != 0 or s % size != 0:
            return None
        return self._add("split", {"parts": c // size, "part": s // size}, [base.layer], node, layout=base.layout)

    def _slice_of_map(self, node, base: _Val, bounds, dims) -> _Val | None:
        """Height and width sliced: every step-th row and column (pending: a zero-padding shortcut's
        subsampling) or a window (pending: the crop a `cropconcat` makes of its input, as U-Net's)."""
        if base.layout != "nchw" or not set(bounds) <= {2, 3}:
            return None
        (s2, e2, st2), (s3, e3, st3) = bounds.get(2, (0, dims[2], 1)), bounds.get(3, (0, dims[3], 1))
        if (s2, s3) == (0, 0) and (e2, e3) == (dims[2], dims[3]) and (st2, st3) != (1, 1):
            return _Val("subsample", src=node.input[0], node=node, data={"stride": (st2, st3)})
        if (st2, st3) == (1, 1):
            return _Val("crop", src=node.input[0], node=node, data={"window": ((s2, s3), (e2, e3))})
        return None

    def _pad_amounts(self, node):
        a = _attrs(node)
        pads = a.get("pads")
        if pads is None:
            pads = self.consts[node.input[1]].tolist()
        return [int(p) for p in pads]

    def op_Pad(self, node):
        a = _attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if len(node.input) > 1 and node.input[1] and node.input[1] not in self.consts:
            raise self._unsupported("`Pad` by computed amounts", node.name)
        value = float(a.get("value", 0.0))
        if len(node.input) > 2 and node.input[2]:
            value = self._scalar(node, 2)
        pads = self._pad_amounts(node)
        if len(node.input) > 3 and node.input[3]:
            raise self._unsupported("`Pad` with axes", node.name)
        x = node.input[0]
        val = self.vals.get(x)
        if mode != "constant" or len(pads) != 8 or pads[0] or pads[4] or min(pads) < 0:
            raise self._unsupported(f"`Pad` ({mode}) other than constant padding of a map", node.name)
        spatial = (pads[2], pads[6], pads[3], pads[7])
        channels = (pads[1], pads[5])
        if val is not None and val.kind == "subsample" and spatial == (0, 0, 0, 0) and value == 0:
            base = self._layer_of(val.src, node)
            self._set(node, self._zeropad(_Val("pad", node=node, data={"channels": channels}), base,
                                          val.data["stride"]))
            return
        self._layer_of(x, node)
        self._set(node, _Val("pad", src=x, node=node, data={"spatial": spatial, "channels": channels,
                                                            "value": value}))

    def _zeropad(self, val: _Val, base: _Val, stride) -> _Val:
        before, after = val.data["channels"]
        c = self._shape(base)[2]
        if before != (before + after) // 2:
            raise self._unsupported("`Pad` of channels other than half before and half after", val.node.name,
                                    "archc's zeropad puts floor(extra / 2) zero channels before the input's")
        return self._add("zeropad", {"filters": c + before + after, "stride": tuple(stride)}, [base.layer],
                         val.node)

    def op_Resize(self, node):
        a = _attrs(node)
        base = self._layer_of(node.input[0], node)
        self._map(base, node)
        mode = _text(a, "mode", b"nearest")
        ctm = _text(a, "coordinate_transformation_mode", b"half_pixel")
        nearest = _text(a, "nearest_mode", b"round_prefer_floor")
        h, w, c = self._shape(base)
        out = self._resize_size(node, h, w)
        args = self._resize_mode(node, mode, ctm, nearest, out)
        if out[0] % h == 0 and out[1] % w == 0:
            args["scale"] = (out[0] // h, out[1] // w)
        else:
            args["size"] = tuple(out)
        self._set(node, self._add("upsample", args, [base.layer], node))

    def _resize_size(self, node, h: int, w: int) -> list[int]:
        """The output's height and width, from Resize's sizes or from its (or Upsample's) whole scales."""
        names = list(node.input) + [""] * 4
        scales_name, sizes_name = (names[2], names[3]) if node.op_type == "Resize" else (names[1], "")
        if node.op_type == "Resize" and self.opset < 11:  # Resize-10: X, scales
            scales_name = names[1]
        sizes, scales = self._nonempty_const(sizes_name), self._nonempty_const(scales_name)
        if sizes is not None:
            return [int(v) for v in sizes.reshape(-1)][-2:]
        if scales is None:
            raise self._unsupported("`Resize` to a computed size", node.name)
        s = [float(v) for v in scales.reshape(-1)][-2:]
        out = [int(math.floor(h * s[0])), int(math.floor(w * s[1]))]
        if any(abs(v - round(v)) > 1e-6 for v in s):
            raise self._unsupported("`Resize` by a fractional scale", node.name)
        return out

    def _nonempty_const(self, name: str) -> np.ndarray | None:
        """A constant input that is given (an optional input may be absent, or empty where a later one is used)."""
        value = self.consts.get(name) if name else None
        return value if value is not None and value.size else None

    def _resize_mode(self, node, mode: str, ctm: str, nearest: str, out: list[int]) -> dict[str, Any]:
        """upsample's mode from Resize's: nearest is PyTorch's floor, bilinear half-pixel or align_corners."""
        if mode == "nearest" and (ctm == "asymmetric" and nearest == "floor" or node.op_type == "Upsample"):
            return {"mode": "nearest"}
        if mode in ("linear", "bilinear") and ctm in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            if ctm == "half_pixel" and min(out) == 1:  # differs from pytorch_half_pixel at a size of 1
                raise self._unsupported("`Resize` (half_pixel) to a size of 1", node.name)
            return {"mode": "bilinear", "align_corners": ctm == "align_corners"}
        raise self._unsupported(f"`{node.op_type}` ({mode}, {ctm}, {nearest})", node.name,
                                "archc's upsample is nearest (floor) or bilinear (half-pixel or align_corners)")

    op_Upsample = op_Resize

    def op_Gather(self, node):
        """archc's own upsampling: rows, then columns, gathered by tables of source indexes, and for bilinear
        interpolated between two gathers (low + (high - low) * t); the tables say which upsampling it is."""
        axis = int(_attrs(node).get("axis", 0))
        x = node.input[0]
        if node.input[1] not in self.consts:
            raise self._unsupported("`Gather` of computed indexes", node.name)
        idx = [int(v) for v in self.consts[node.input[1]].reshape(-1)]
        val = self.vals.get(x)
        if axis == 3 and val is not None and val.kind in ("gather", "interp") and val.data["axis"] == 2:
            self._set(node, _Val("gather", src=x, node=node, data={"axis": 3, "idx": idx}))
            return
        if axis == 2 and self._layer_of(x, node).layout == "nchw":
            self._set(node, _Val("gather", src=x, node=node, data={"axis": 2, "idx": idx}))
            return
        raise self._unsupported("`Gather`", node.name, "archc reads Gather only as its own upsampling")

    def _layernorm_step(self, node) -> bool:
        """A step of layer normalisation written out (torch.onnx.export before opset 17, ConvNeXt's own
        LayerNorm): (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) * weight + bias, means over the channels.
        Each step is a pending value; the last (the shift) makes the layer. The means are op_ReduceMean's."""
        step = _LAYERNORM_STEPS.get(node.op_type)
        val = step(self, node, *self._operands(node)) if step else None
        if val is None:
            return False
        self._set(node, val)
        return True

    def _operands(self, node) -> tuple[_Val | None, _Val | None]:
        """The values of a node's first two inputs (None: a constant, or no such input)."""
        second = self.vals.get(node.input[1]) if len(node.input) > 1 else None
        return self.vals.get(node.input[0]), second

    def _scalar_input(self, node) -> bool:
        return len(node.input) > 1 and node.input[1] in self.consts and self.consts.size(node.input[1]) == 1

    def _ln_centred(self, node, a, b) -> _Val | None:  # x - mean(x)
        if _is(b, "lnmean") and b.src == node.input[0]:
            return _Val("lncent", src=b.src, node=node)
        return None

    def _ln_squared(self, node, a, b) -> _Val | None:  # (x - mean(x)) ^ 2
        if _is(a, "lncent") and self._scalar_input(node) and self._scalar(node, 1) == 2:
            return _Val("lnsq", src=a.src, node=node)
        return None

    def _ln_mul(self, node, a, b) -> _Val | None:  # (x - mean(x)) * itself, else the scale
        if _is(a, "lncent") and node.input[0] == node.input[1]:
            return _Val("lnsq", src=a.src, node=node)
        return self._ln_affine(node, a, b)

    def _ln_add(self, node, a, b) -> _Val | None:  # variance + eps, else the shift
        if _is(a, "lnvar") and self._scalar_input(node):
            return _Val("lnvare", src=a.src, node=node, data={"eps": self._scalar(node, 1)})
        return self._ln_affine(node, a, b)

    def _ln_std(self, node, a, b) -> _Val | None:  # sqrt(variance + eps)
        if _is(a, "lnvare"):
            return _Val("lnstd", src=a.src, node=node, data=a.data)
        return None

    def _ln_normalised(self, node, a, b) -> _Val | None:  # (x - mean(x)) / std
        if _is(a, "lncent") and _is(b, "lnstd") and a.src == b.src:
            return _Val("lnnorm", src=a.src, node=node, data=b.data)
        return None

    def _ln_affine(self, node, a, b) -> _Val | None:
        """The normalised value times a weight per channel (pending), then plus a bias (the layer); either
        operand order. A Mul after the scale or an Add before it is something else."""
        steps = ("lnnorm", "lnscaled")
        if not _is(a, *steps) and not _is(b, *steps):
            return None
        x, y = (node.input[0], node.input[1]) if _is(a, *steps) else (node.input[1], node.input[0])
        val, scale = self.vals[x], node.op_type == "Mul"
        if y not in self.params or scale != (val.kind == "lnnorm"):
            return None
        c = self._shape(self._layer_of(val.src, node))[-1]
        tensor = np.asarray(self.consts[y], np.float32)
        if tensor.size != c:
            return None
        data = {**val.data, "weight" if scale else "bias": tensor.reshape(c)}
        scaled = _Val("lnscaled", src=val.src, node=node, data=data)
        return scaled if scale else self._layernorm(scaled)

    def _layernorm(self, val: _Val) -> _Val:
        base = self._layer_of(val.src, val.node)
        c = self._shape(base)[-1]
        tensors = {"weight": val.data.get("weight", np.ones(c, np.float32)),
                   "bias": val.data.get("bias", np.zeros(c, np.float32))}
        return self._add("layernorm", {"epsilon": _round(val.data["eps"])}, [base.layer], val.node, tensors,
                         layout=base.layout)

    def op_Sqrt(self, node):
        if not self._layernorm_step(node):
            self._unary(node, lambda x, a: np.sqrt(x))

    def _gather_step(self, node) -> bool:
        """A step of archc's bilinear interpolation between two gathers of one value along one axis:
        low + (high - low) * t, each step a pending value until the sum."""
        a, b = (self.vals.get(x) for x in node.input[:2])
        step = _GATHER_STEPS.get(node.op_type)
        if step is None or not _is(a, "gather", "gdiff", "gstep"):
            return False
        val = step(self, node, a, b)
        if val is None:
            return False
        self._set(node, val)
        return True

    def _gather_diff(self, node, a, b) -> _Val | None:  # high - low
        if a.kind == "gather" and _same_gather(a, b, "gather"):
            return _Val("gdiff", src=a.src, node=node, data={"axis": a.data["axis"], "lo": b.data["idx"],
                                                             "hi": a.data["idx"]})
        return None

    def _gather_scaled(self, node, a, b) -> _Val | None:  # (high - low) * t, a weight per output position
        if a.kind != "gdiff" or node.input[1] not in self.consts:
            return None
        t = [float(v) for v in self.consts[node.input[1]].reshape(-1)]
        return _Val("gstep", src=a.src, node=node, data={**a.data, "t": t}) if len(t) == len(a.data["lo"]) else None

    def _gather_sum(self, node, a, b) -> _Val | None:  # low + (high - low) * t
        if a.kind == "gather" and _same_gather(a, b, "gstep") and a.data["idx"] == b.data["lo"]:
            table = list(zip(b.data["lo"], b.data["hi"], b.data["t"], strict=True))
            return _Val("interp", src=a.src, node=node, data={"axis": a.data["axis"], "table": table})
        return None

    def _upsample(self, val: _Val) -> _Val:
        from ..ops import UpsampleArgs

        rows_val = self.vals[val.src]
        base = self._layer_of(rows_val.src, val.node)
        h, w, _ = self._shape(base)
        tables = [_table(rows_val), _table(val)]
        oh, ow = len(tables[0]), len(tables[1])
        sizes = [{"scale": (oh // h, ow // w)}] if oh % h == 0 and ow % w == 0 else []
        sizes.append({"size": (oh, ow)})
        for how in ({"mode": "nearest"}, {"mode": "bilinear"}, {"mode": "bilinear", "align_corners": True}):
            for size in sizes:
                args = UpsampleArgs(**how, **size)
                if _same_table(tables[0], args.source_index(oh, h)) and \
                        _same_table(tables[1], args.source_index(ow, w)):
                    return self._add("upsample", {**how, **size}, [base.layer], val.node)
        raise self._unsupported("`Gather` by tables that are no upsampling of archc's", val.node.name)


# the pending steps of a layer normalisation written out, and of archc's bilinear interpolation, by the operator
# that makes each (a node another step does not claim is read as itself)
_LAYERNORM_STEPS = {"Sub": _Reader._ln_centred, "Pow": _Reader._ln_squared, "Mul": _Reader._ln_mul,
                    "Add": _Reader._ln_add, "Sqrt": _Reader._ln_std, "Div": _Reader._ln_normalised}
_GATHER_STEPS = {"Sub": _Reader._gather_diff, "Mul": _Reader._gather_scaled, "Add": _Reader._gather_sum}


def _is(val: _Val | None, *kinds: str) -> bool:
    return val is not None and val.kind in kinds


def _same_gather(a: _Val, b: _Val | None, kind: str) -> bool:
    """`b` is a step of `kind` gathering the same value as `a` along the same axis."""
    return _is(b, kind) and a.src == b.src and a.data["axis"] == b.data["axis"]


def _clamp(bound: int, n: int) -> int:
    """A Slice bound on an axis of n: negative counts from the end; beyond the axis is its end."""
    return max(0, min(n, bound + n if bound < 0 else bound))


def _text(attrs: dict, name: str, default: bytes) -> str:
    value = attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def _table(val: _Val) -> list[tuple[int, int | None, float]]:
    if val.kind == "interp":
        return val.data["table"]
    return [(i, None, 0.0) for i in val.data["idx"]]


def _same_table(ours, reference) -> bool:
    """Gathered (low, high, t) per output position against archc's own table (high matters only where t != 0)."""
    return len(ours) == len(reference) and all(lo == r[0] and abs(t - r[2]) < 1e-6 and (t == 0 or hi == r[1])
                                               for (lo, hi, t), r in zip(ours, reference, strict=True))


def _name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).strip("_")
    return cleaned if cleaned and not cleaned[0].isdigit() else "imported"


def _round(v: float) -> float:
    return float(f"{float(v):.7g}")


def _depthwise(groups: int, channels: int, filters: int) -> dict:
    """A conv with one group per input channel is archc's depthwise conv (`dw`, `multiplier`)."""
    if groups == channels > 1 and filters % channels == 0:
        return {"depthwise": True, "multiplier": filters // channels}
    return {}


def _all_ones(value: np.ndarray) -> bool:
    return value.ndim == 4 and value.shape[:2] == (1, 1) and value.size > 0 and bool(np.all(value == 1))


def _reshaped(target: list[int], dims: list[int]) -> list[int] | None:
    """ONNX Reshape's target with 0 (copy) and -1 (infer) filled in for a tensor of `dims` (batch 1)."""
    out = [dims[i] if t == 0 and i < len(dims) else t for i, t in enumerate(target)]
    total = math.prod(dims)
    if out.count(-1) > 1:
        return None
    if -1 in out:
        known = math.prod(v for v in out if v != -1)
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    out[0] = 1  # the batch: exporters write the example's
    return out if math.prod(out) == total else None


def _constant(node) -> np.ndarray:
    from onnx import numpy_helper

    a = {attr.name: attr for attr in node.attribute}
    if "value" in a:
        return numpy_helper.to_array(a["value"].t)
    attrs = _attrs(node)
    for key, dtype in (("value_float", np.float32), ("value_int", np.int64), ("value_floats", np.float32),
                       ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype)
    raise Unsupported("`Constant` of a sparse or string value", node.name)


def _fold_numpy(node, args: list) -> list | None:
    """The common constant computations of exporters' shape arithmetic; None: let onnx.reference do it."""
    op, a = node.op_type, _attrs(node)
    x = args[0] if args else None
    if op == "Identity":
        return [x]
    if op == "Cast":
        from onnx import helper

        return [x.astype(helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op == "Gather":
        return [np.take(x, args[1], axis=a.get("axis", 0))]
    if op == "Unsqueeze":
        axes = a.get("axes") if "axes" in a else args[1].tolist()
        out = x
        for ax in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Concat":
        return [np.concatenate([v.reshape(-1) if v.ndim == 0 else v for v in args], axis=a.get("axis", 0))]
    if op in ("Add", "Sub", "Mul") and len(args) == 2:
        return [{"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](x, args[1])]
    return None


def canonical(net: FlatNetwork) -> FlatNetwork:
    """The network in the one form an ONNX file can tell: each layer's resolved arguments with padding as amounts
    (`same` and `padding=1` are the same Conv), ceil mode's overhang as padding after (archc's ONNX backend writes
    it so; it never counts in an average or wins a max), a conv with a group per input channel as depthwise, an
    upsampling by whole factors as a scale, and drop path as the identity it is at inference (its rate is not in
    the file). Two networks that compute the same are equal here, layer for layer (archc.flat.same_layers)."""
    layers = []
    for layer, (args, in_shapes, _) in zip(net.layers, net.resolved(), strict=True):
        op, values = layer.op, args.model_dump()
        if op == "conv":
            values["padding"] = canonical_padding(args.pads())
            c = in_shapes[0][2]
            values.update({"depthwise": False, "multiplier": 1, **_depthwise(args.groups, c, args.filters)})
        elif op in ("maxpool", "avgpool"):
            h, w = in_shapes[0][:2]
            if args.ceil and args.ceil_pads(h, w) == args.pads():  # no overhang: ceil changes nothing
                values["ceil"] = False
            elif args.ceil and not values.get("count_pad"):
                values.update(padding=canonical_padding(args.ceil_pads(h, w)), ceil=False)
            else:
                values["padding"] = canonical_padding(args.pads())
            if values.get("count_pad") and values["padding"] == "valid" and not args.ceil:
                values["count_pad"] = False
        elif op == "stochastic_depth":
            op, values = "identity", {}
        elif op == "upsample" and args.size is not None:
            h, w = in_shapes[0][:2]
            if args.size[0] % h == 0 and args.size[1] % w == 0:
                values.update(scale=(args.size[0] // h, args.size[1] // w), size=None)
        for key in ("epsilon", "momentum", "rate", "alpha", "beta", "k", "init", "negative_slope"):
            if isinstance(values.get(key), float):
                values[key] = _round(values[key])
        layers.append(FlatLayer(op, values, layer.inputs, layer.path, layer.tensors))
    return FlatNetwork(net.input_shape, layers, net.output, net.name, net.source)
