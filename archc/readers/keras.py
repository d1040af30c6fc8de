"""A Keras 3 model (a `keras.Model` or the path of a `.keras` file) as an archc.flat.FlatNetwork: its layers in
archc's vocabulary, channels-last as archc is, with their weights in PyTorch's layout.

The functional graph is walked from the outputs back, each layer after the ones it reads (a depth-first walk
that visits a merge's inputs in their order: a model that archc's Keras backend wrote comes back in its plan's
order). Each Keras layer class has a `_read_<Class>` method; a class without one is `archc.flat.Unsupported`
naming the class and the layer. Some Keras layers are not a layer of the language alone and are folded:
  * `activation=` inside Conv2D / Dense becomes the activation layer after it;
  * ZeroPadding2D becomes the padding of the conv or pooling layer that reads it (zeros are a conv's padding,
    an average that counts them, and a max's -infinity padding where its input cannot be negative);
  * TensorFlow's `same` padding at a stride, which pads by what the input size leaves over, becomes explicit;
  * Reshape to 1x1xC after a global pooling is `keepdims`; before a Multiply it is the language's broadcast;
  * Cropping2D after Conv2DTranspose is PyTorch's `padding`; before a Concatenate, centred, `cropconcat`;
  * Rescaling and Normalization (EfficientNet's preprocessing) are a batchnorm with fixed statistics
    (`scale=false, center=false, momentum=1`): the same function in evaluation (see `_read_Rescaling`).
Sub-models are read through: those archc's backend writes for what Keras has no layer for (LRN, -infinity
padding, channel split and shuffle, He et al.'s zero-padding shortcut) by their operations, others inlined.

Every layer's output size is then checked against Keras's: a layer archc would size differently is Unsupported,
never a different model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..flat import INPUT, FlatLayer, FlatNetwork, Unsupported
from ..ops import OPS, Shape

# Keras's activation functions (by `__name__`) as the language's kinds and their arguments.
ACTIVATIONS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "linear": None,
    "relu": ("relu", {}),
    "relu6": ("relu6", {}),
    "silu": ("silu", {}),
    "swish": ("silu", {}),
    "hard_silu": ("hardswish", {}),
    "hard_swish": ("hardswish", {}),
    "hard_sigmoid": ("hardsigmoid", {}),  # Keras 3's: relu6(x + 3) / 6, PyTorch's
    "gelu": ("gelu", {}),  # keras.activations.gelu is exact (erf) by default
    "sigmoid": ("sigmoid", {}),
    "tanh": ("tanh", {}),
    "softmax": ("softmax", {}),  # over the last axis: the channels
    "elu": ("elu", {"alpha": 1.0}),
    "leaky_relu": ("leaky_relu", {"negative_slope": 0.2}),  # keras.activations.leaky_relu's default slope
}


@dataclass
class _Ref:
    """A value that a flat layer (or the input) computes."""

    index: int
    shape: Shape


@dataclass
class _Padded:
    """ZeroPadding2D (or archc's -infinity padding): waits for the conv or pooling layer that reads it."""

    src: _Ref
    pads: tuple[int, int, int, int]
    value: float
    layer: Any


@dataclass
class _Lifted:
    """A flat vector of C reshaped to 1x1xC: a Multiply broadcasts the vector itself."""

    src: _Ref
    layer: Any


@dataclass
class _Cropped:
    """Cropping2D: waits for the Conv2DTranspose it crops (its `padding`) or the Concatenate it feeds."""

    src: _Ref
    crops: tuple[int, int, int, int]
    layer: Any


def read_flat(source: Any, input_shape: Shape | None = None) -> FlatNetwork:
    """The Keras model (or `.keras` file) as a FlatNetwork. `input_shape` (H, W, C) fills sizes the model leaves
    open (`None`); raises archc.flat.Unsupported at the first layer the language cannot express."""
    model, what = _model_of(source)
    return _Reader(model, what, input_shape).read()


def _model_of(source: Any) -> tuple[Any, str]:
    import keras

    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as e:  # noqa: BLE001 - any failure to load is the file's problem, said as such
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise _cannot_read(f"cannot load the Keras model `{path}`: {reason}") from None
        return model, str(path)
    if isinstance(source, keras.Sequential):
        if getattr(source, "_functional", None) is None:
            raise _cannot_read(f"the Sequential model `{source.name}` has no input shape yet",
                            help="give it a `keras.Input(shape=...)` first, or call it once on an example")
        return source._functional, source.name
    if isinstance(source, keras.Model) and hasattr(source, "_nodes_by_depth"):
        return source, source.name
    raise _cannot_read(f"a `{type(source).__name__}` is not a functional Keras model",
                    help="pass a model built with keras.Input (functional or Sequential), or a `.keras` file")


def _cannot_read(message: str, help: str = ""):
    """The source is not a Keras model archc can walk (an unreadable file, a subclassed model): A540."""
    from ..diagnostics import ArchcError, Diagnostic

    return ArchcError([Diagnostic("A540", message, None, help=help or None)])


def _own_nodes(model: Any, op: Any) -> list[Any]:
    from keras.src.ops.function import make_node_key

    return [node for i, node in enumerate(op._inbound_nodes) if make_node_key(op, i) in model._nodes]


def _key(tensor: Any) -> tuple[int, int, int]:
    history = tensor._keras_history
    return (id(history.operation), history.node_index, history.tensor_index)


class _Reader:
    def __init__(self, model: Any, what: str, input_shape: Shape | None):
        self.model = model
        self.what = what
        self.input_shape = input_shape
        self.layers: list[FlatLayer] = []
        self.keras_shapes: list[Shape] = []  # each flat layer's output size as Keras gives it (None: open)
        self.resolved: list[tuple] = []  # as FlatNetwork.resolved: each layer's (args, input shapes, shape)
        self.keras_layers: list[Any] = []  # the Keras layer holding each flat layer's weights (or None)
        self.uses: dict[tuple, int] = {}  # how many nodes read each tensor
        self.called: set[int] = set()  # layers read so far (a layer with weights called twice shares them)
        self.affine: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # batchnorms that are fixed x * scale + offset

    # ------------------------------------------------------------ the walk

    def read(self) -> FlatNetwork:
        model = self.model
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise Unsupported(f"a model with {len(model.inputs)} inputs and {len(model.outputs)} outputs",
                              model.name, help="archc's networks have one input and one output")
        shape = self._input_shape(model.inputs[0])
        values: dict[tuple, Any] = {_key(model.inputs[0]): _Ref(INPUT, shape)}
        self.net = FlatNetwork(shape, self.layers, INPUT, _name(model.name), self.what)
        out = self._walk(model, values, model.outputs[0])
        out = self._settled(out, "the output")
        self.net.output = out.index
        self._fill_tensors()
        return self.net

    def _input_shape(self, tensor: Any) -> Shape:
        given = tuple(tensor.shape[1:])
        if self.input_shape is not None:
            wanted = tuple(self.input_shape)
            if len(wanted) != len(given) or any(g is not None and g != w for g, w in zip(given, wanted, strict=False)):
                raise Unsupported(f"an input of {_fmt(given)}", tensor._keras_history.operation.name,
                                  help=f"the model's input does not fit {_fmt(wanted)}")
            return wanted
        if any(d is None for d in given):
            raise Unsupported(f"an input of open size {_fmt(given)}", tensor._keras_history.operation.name,
                              help="give the input's size (`input_shape=(224, 224, 3)`)")
        return given

    def _walk(self, model: Any, values: dict[tuple, Any], output: Any) -> Any:
        """Reads every node that `output` depends on, each after its inputs; returns the output's value."""
        nodes = _topological(model, output)
        for node in nodes:
            for t in node.input_tensors:
                self.uses[_key(t)] = self.uses.get(_key(t), 0) + 1
        for node in nodes:
            op = node.operation
            if _key(node.output_tensors[0]) in values:
                continue  # an input layer
            if len(node.output_tensors) != 1:
                raise self._unsupported(op, "a layer with several outputs")
            if op.weights and id(op) in self.called:
                raise self._unsupported(op, f"Keras's `{type(op).__name__}` called twice",
                                        help="archc's layers do not share weights: give each call its own layer")
            self.called.add(id(op))
            inputs = [values[_key(t)] for t in node.input_tensors]
            values[_key(node.output_tensors[0])] = self._read_node(op, node, inputs)
        return values[_key(output)]

    def _read_node(self, op: Any, node: Any, inputs: list[Any]) -> Any:
        import keras

        if isinstance(op, keras.Model):
            return self._read_submodel(op, inputs)
        config_format = getattr(op, "data_format", "channels_last")
        if config_format not in (None, "channels_last"):
            raise self._unsupported(op, "a channels-first layer",
                                    help="archc is channels-last: build the Keras model with data_format "
                                         "`channels_last`")
        reader = getattr(self, f"_read_{type(op).__name__}", None)
        if reader is None:
            raise self._unsupported(op)
        return reader(op, node, inputs)

    # ------------------------------------------------------------ helpers for readers

    def _unsupported(self, op: Any, what: str | None = None, help: str = "") -> Unsupported:
        return Unsupported(what or f"Keras's `{type(op).__name__}`", getattr(op, "name", str(op)),
                           help=help or "archc's language has no layer for it (`archc ops` lists the layer kinds)",
                           partial=self._partial())

    def _partial(self) -> FlatNetwork:
        last = len(self.layers) - 1
        return FlatNetwork(self.net.input_shape, list(self.layers), last if last >= 0 else INPUT, self.net.name,
                           self.what)

    def _settled(self, value: Any, consumer: str) -> _Ref:
        """A value some layer reads as it is: a pending padding, crop or reshape has no layer to fold into."""
        if isinstance(value, _Ref):
            return value
        raise Unsupported(f"Keras's `{type(value.layer).__name__}`", value.layer.name, partial=self._partial(),
                          help=f"archc folds it only into the layer after it, and {consumer} cannot take it "
                               "(a padding into a conv or pooling, a crop into Conv2DTranspose or Concatenate, a "
                               "reshape to 1x1xC into Multiply or after a global pooling)")

    def _add(self, op: str, args: dict[str, Any], inputs: list[_Ref], path: str, keras_shape: Shape,
             layer: Any = None) -> _Ref:
        self.layers.append(FlatLayer(op, args, tuple(r.index for r in inputs), path))
        self.keras_shapes.append(tuple(keras_shape))
        self.keras_layers.append(layer)
        self.resolved.append(None)
        return self._resolve(len(self.layers) - 1)

    def _resolve(self, i: int, keras_shape: Shape | None = None) -> _Ref:
        """Layer i's arguments and size by archc's rules (again, after a fold changed them), checked against
        Keras's size where Keras knows it: a layer archc would size differently is not the same layer."""
        from pydantic import ValidationError

        from ..diagnostics import RuleError

        layer = self.layers[i]
        if keras_shape is not None:
            self.keras_shapes[i] = tuple(keras_shape)
        op = OPS[layer.op]
        in_shapes = [self.net.input_shape if j == INPUT else self.resolved[j][2] for j in layer.inputs]
        try:
            args = op.resolve(op.args(**layer.args), in_shapes)
            shape = tuple(op.shape(args, in_shapes))
        except (RuleError, ValidationError) as e:
            raise Unsupported(f"`{layer.op}` with {layer.args}", layer.path, partial=self._prefix(i),
                              help=f"archc cannot build it: {str(e).splitlines()[0]}") from None
        given = self.keras_shapes[i]
        if len(given) != len(shape) or any(g is not None and g != d for g, d in zip(given, shape, strict=False)):
            raise Unsupported(f"`{layer.op}` giving {_fmt(given)}", layer.path, partial=self._prefix(i),
                              help=f"archc's rules give {_fmt(shape)} for it: not the same layer")
        self.resolved[i] = (args, in_shapes, shape)
        return _Ref(i, shape)

    def _one(self, op: Any, node: Any, inputs: list[Any], kind: str, args: dict[str, Any] | None = None,
             layer: Any = None) -> _Ref:
        src = self._settled(inputs[0], f"`{op.name}`")
        return self._add(kind, args or {}, [src], op.name, _shape_of(node), layer)

    def _activation(self, op: Any, node: Any, function: Any, src: _Ref) -> _Ref:
        """The layer for a Keras activation function (the layer's own, or a conv's `activation=`)."""
        name = getattr(function, "__name__", str(function))
        if name not in ACTIVATIONS:
            raise self._unsupported(op, f"the activation `{name}`")
        kind = ACTIVATIONS[name]
        if kind is None:
            return src
        # an `activation=` of a conv or dense layer is named after it: `conv1_relu`
        own = type(op).__name__ == "Activation"
        return self._add(kind[0], dict(kind[1]), [src], op.name if own else f"{op.name}_{kind[0]}", _shape_of(node))

    # ------------------------------------------------------------ layers

    def _read_InputLayer(self, op, node, inputs):
        raise self._unsupported(op, "a second input")

    def _conv_padding(self, op: Any, kernel, strides, dilation, in_shape: Shape, padded: _Padded | None):
        """The conv's padding as explicit (top, bottom, left, right), from Keras's `padding` and a ZeroPadding2D
        before it."""
        pads = _tf_pads(op.padding, kernel, strides, dilation, in_shape)
        if padded is not None:
            if padded.value != 0.0:
                raise Unsupported(f"padding with {padded.value}", padded.layer.name, partial=self._partial(),
                                  help="a conv pads with zeros")
            pads = tuple(a + b for a, b in zip(pads, padded.pads, strict=False))
        return pads

    def _read_Conv2D(self, op, node, inputs):
        src, padded = self._unpadded(inputs[0])
        kernel, strides, dilation = tuple(op.kernel_size), tuple(op.strides), tuple(op.dilation_rate)
        pads = self._conv_padding(op, kernel, strides, dilation, src.shape, padded)
        args = {"kernel": kernel, "filters": op.filters, "stride": strides, "dilation": dilation,
                "groups": op.groups, "depthwise": op.groups == src.shape[-1] > 1, "bias": op.use_bias}
        args["padding"] = canonical_padding(pads, kernel, dilation)
        out = self._add("conv", args, [src], op.name, _shape_of(node), op)
        return self._activation(op, node, op.activation, out)

    def _read_DepthwiseConv2D(self, op, node, inputs):
        src, padded = self._unpadded(inputs[0])
        kernel, strides, dilation = tuple(op.kernel_size), tuple(op.strides), tuple(op.dilation_rate)
        pads = self._conv_padding(op, kernel, strides, dilation, src.shape, padded)
        c = src.shape[-1]
        args = {"kernel": kernel, "filters": c * op.depth_multiplier, "stride": strides, "dilation": dilation,
                "groups": c, "depthwise": c > 1, "bias": op.use_bias,
                "padding": canonical_padding(pads, kernel, dilation)}
        out = self._add("conv", args, [src], op.name, _shape_of(node), op)
        return self._activation(op, node, op.activation, out)

    def _read_Conv2DTranspose(self, op, node, inputs):
        src = self._settled(inputs[0], f"`{op.name}`")
        kernel, strides = tuple(op.kernel_size), tuple(op.strides)
        if tuple(op.dilation_rate) != (1, 1):
            raise self._unsupported(op, "a dilated Conv2DTranspose")
        h, w = src.shape[:2]
        oh, ow = _shape_of(node)[:2]
        if oh is None or ow is None:  # an open input size: Keras's size for this one
            oh, ow = op.compute_output_shape((None, *src.shape))[1:3]
        # PyTorch's arithmetic: out = (n - 1) * s - 2 * p + k + output_padding; Keras's output is uncropped
        args = {"kernel": kernel, "filters": op.filters, "stride": strides, "bias": op.use_bias}
        if op.padding == "same":  # TensorFlow crops (k - s) // 2 before and the rest after: PyTorch's `padding`
            if any(k > s and (k - s) % 2 for k, s in zip(kernel, strides, strict=True)):
                raise self._unsupported(op, "a Conv2DTranspose with `same` padding that crops one row more after "
                                        "than before", help="PyTorch's `padding` crops both sides alike: use a "
                                        "kernel that exceeds the stride by an even number, or padding=\"valid\"")
            crop = tuple((k - s) // 2 if k > s else 0 for k, s in zip(kernel, strides, strict=True))
            args["padding"] = crop if any(crop) else "valid"
        else:
            crop = (0, 0)
        # what is left (Keras's output_padding, or a kernel smaller than the stride) is PyTorch's output_padding
        args["output_padding"] = tuple(o - ((n - 1) * s + k - 2 * c) for o, n, s, k, c in
                                       zip((oh, ow), (h, w), strides, kernel, crop, strict=True))
        out = self._add("convtranspose", args, [src], op.name, _shape_of(node), op)
        return self._activation(op, node, op.activation, out)

    def _read_Cropping2D(self, op, node, inputs):
        src = self._settled(inputs[0], f"`{op.name}`")
        (top, bottom), (left, right) = op.cropping
        producer = self.layers[src.index] if src.index != INPUT else None
        if (producer is not None and producer.op == "convtranspose" and producer.path == self._last_path()
                and top == bottom and left == right and self.uses.get(_key(node.input_tensors[0])) == 1
                and producer.args.get("padding", "valid") == "valid"):
            producer.args["padding"] = (top, left)  # PyTorch's `padding` crops both sides alike
            return self._resolve(src.index, _shape_of(node))
        return _Cropped(src, (top, bottom, left, right), op)

    def _last_path(self) -> str:
        return self.layers[-1].path if self.layers else ""

    def _read_Dense(self, op, node, inputs):
        src = self._settled(inputs[0], f"`{op.name}`")
        if len(src.shape) != 1:
            raise self._unsupported(op, f"Dense on a {_fmt(src.shape)} tensor",
                                    help="archc's dense reads a flat vector: flatten or pool the map first")
        out = self._add("dense", {"units": op.units, "bias": op.use_bias}, [src], op.name, _shape_of(node), op)
        return self._activation(op, node, op.activation, out)

    def _read_BatchNormalization(self, op, node, inputs):
        src = self._settled(inputs[0], f"`{op.name}`")
        if op.axis not in (-1, len(src.shape)):
            raise self._unsupported(op, f"a BatchNormalization over axis {op.axis}",
                                    help="archc normalises the channels, the last axis")
        if getattr(op, "renorm", False) or getattr(op, "synchronized", False):
            raise self._unsupported(op, "batch renormalization")
        args = {"epsilon": float(op.epsilon), "momentum": float(op.momentum), "scale": op.scale,
                "center": op.center}
        return self._add("batchnorm", args, [src], op.name, _shape_of(node), op)

    def _read_LayerNormalization(self, op, node, inputs):
        src = self._settled(inputs[0], f"`{op.name}`")
        axis = op.axis if isinstance(op.axis, int) else (op.axis[0] if len(op.axis) == 1 else None)
        if axis not in (-1, len(src.shape)) or not (op.scale and op.center) or getattr(op, "rms_scaling", False):
            raise self._unsupported(op, "a LayerNormalization other than over the channels with scale and shift")
        return self._add("layernorm", {"epsilon": float(op.epsilon)}, [src], op.name, _shape_of(node), op)

    def _read_Activation(self, op, node, inputs):
        return self._activation(op, node, op.activation, self._settled(inputs[0], f"`{op.name}`"))

    def _read_ReLU(self, op, node, inputs):
        max_value = None if op.max_value is None else float(op.max_value)
        if float(op.negative_slope) != 0 or float(op.threshold) != 0 or max_value not in (None, 6.0):
            raise self._unsupported(op, f"ReLU(max_value={op.max_value}, negative_slope={op.negative_slope}, "
                                    f"threshold={op.threshold})",
                                    help="archc has relu, relu6 and leaky_relu")
        return self._one(op, node, inputs, "relu" if max_value is None else "relu6")

    def _read_LeakyReLU(self, op, node, inputs):
        return self._one(op, node, inputs, "leaky_relu", {"negative_slope": float(op.negative_slope)})

    def _read_ELU(self, op, node, inputs):
        return self._one(op, node, inputs, "elu", {"alpha": float(op.alpha)})

    def _read_Softmax(self, op, node, inputs):
        if op.axis not in (-1, len(_shape_of(node))):
            raise self._unsupported(op, f"a softmax over axis {op.axis}")
        return self._one(op, node, inputs, "softmax")

    def _read_Dropout(self, op, node, inputs):
        src = self._settled(inputs[0], f"`{op.name}`")
        noise = None if op.noise_shape is None else tuple(op.noise_shape)
        if noise is None:
            return self._add("dropout", {"rate": float(op.rate)}, [src], op.name, _shape_of(node))
        if noise == (None,) + (1,) * len(src.shape):  # one draw per sample: drop path (EfficientNet's)
            return self._add("stochastic_depth", {"rate": float(op.rate)}, [src], op.name, _shape_of(node))
        raise self._unsupported(op, f"a Dropout with noise_shape {noise}")

    def _read_Identity(self, op, node, inputs):
        return self._one(op, node, inputs, "identity")

    def _read_Flatten(self, op, node, inputs):
        return self._one(op, node, inputs, "flatten")

    def _read_Reshape(self, op, node, inputs):
        value = inputs[0]
        target = _shape_of(node)
        if isinstance(value, _Ref) and len(target) == 1 and target[0] in (None, math.prod(value.shape)):
            return self._add("flatten", {}, [value], op.name, target)  # row-major: what Flatten does
        if isinstance(value, _Ref) and len(value.shape) == 1 and target == (1, 1, value.shape[0]):
            producer = self.layers[value.index] if value.index != INPUT else None
            if (producer is not None and OPS[producer.op].args.model_fields.get("keepdims") is not None
                    and not producer.args.get("keepdims") and self.uses.get(_key(node.input_tensors[0])) == 1):
                producer.args["keepdims"] = True  # a global pooling to C, then to 1x1xC: `keepdims`
                return self._resolve(value.index, target)
            return _Lifted(value, op)
        raise self._unsupported(op, f"a Reshape from {_fmt(getattr(value, 'src', value).shape)} to {_fmt(target)}",
                                help="archc reshapes only by flattening, or a vector of C to 1x1xC after a "
                                     "global pooling or before a Multiply")

    def _pool(self, op, node, inputs, kind: str):
        src, padded = self._unpadded(inputs[0])
        kernel = tuple(op.pool_size)
        strides = tuple(op.strides) if op.strides is not None else kernel
        producer = self.layers[src.index] if src.index != INPUT and padded is None else None
        if (kernel == (1, 1) and producer is not None and producer.op == "conv" and producer.args["stride"] == (1, 1)
                and self.uses.get(_key(node.input_tensors[0])) == 1 and producer.path == self._last_path()):
            # every s-th output of a dense conv is the conv at stride s (archc's Keras build of a strided
            # dilated conv, which Keras refuses)
            producer.args["stride"] = strides
            return self._resolve(src.index, _shape_of(node))
        pads = _tf_pads(op.padding, kernel, strides, (1, 1), src.shape)
        args: dict[str, Any] = {"kernel": kernel, "stride": strides}
        if padded is not None:
            if any(pads):
                raise self._unsupported(op, "`same` pooling after a ZeroPadding2D")
            pads = padded.pads
            if kind == "avgpool":
                if padded.value != 0.0:
                    raise self._unsupported(op, f"average pooling over padding with {padded.value}")
                args["count_pad"] = any(pads)  # Keras averages the zeros it is given: PyTorch's count_include_pad
            elif padded.value == 0.0 and not self._nonnegative(src):
                raise Unsupported(f"Keras's `{type(padded.layer).__name__}` before max pooling",
                                  padded.layer.name, partial=self._partial(),
                                  help="zeros can win the max of an input that can be negative; archc's max pooling "
                                       "pads with -infinity (equal only after relu and the like)")
        args["padding"] = canonical_padding(pads, kernel, (1, 1))
        return self._add(kind, args, [src], op.name, _shape_of(node))

    def _nonnegative(self, src: _Ref) -> bool:
        return src.index != INPUT and OPS[self.layers[src.index].op].nonnegative

    def _read_MaxPooling2D(self, op, node, inputs):
        return self._pool(op, node, inputs, "maxpool")

    def _read_AveragePooling2D(self, op, node, inputs):
        return self._pool(op, node, inputs, "avgpool")

    def _read_GlobalAveragePooling2D(self, op, node, inputs):
        return self._one(op, node, inputs, "globalavgpool", {"keepdims": bool(op.keepdims)})

    def _read_GlobalMaxPooling2D(self, op, node, inputs):
        return self._one(op, node, inputs, "globalmaxpool", {"keepdims": bool(op.keepdims)})

    def _read_ZeroPadding2D(self, op, node, inputs):
        src = self._settled(inputs[0], f"`{op.name}`")
        (top, bottom), (left, right) = op.padding
        return _Padded(src, (top, bottom, left, right), 0.0, op)

    def _unpadded(self, value: Any) -> tuple[_Ref, _Padded | None]:
        if isinstance(value, _Padded):
            return value.src, value
        return self._settled(value, "the layer after it"), None

    def _read_UpSampling2D(self, op, node, inputs):
        if op.interpolation not in ("nearest", "bilinear"):
            raise self._unsupported(op, f"UpSampling2D with `{op.interpolation}` interpolation")
        return self._one(op, node, inputs, "upsample", {"scale": tuple(op.size), "mode": op.interpolation})

    def _merge(self, op, node, inputs, kind: str):
        srcs = [self._settled(v.src if isinstance(v, _Lifted) and kind == "multiply" else v, f"`{op.name}`")
                for v in inputs]
        return self._add(kind, {}, srcs, op.name, _shape_of(node))

    def _read_Add(self, op, node, inputs):
        return self._merge(op, node, inputs, "add")

    def _read_Multiply(self, op, node, inputs):
        return self._merge(op, node, inputs, "multiply")

    def _read_Concatenate(self, op, node, inputs):
        if op.axis not in (-1, len(_shape_of(node))):
            raise self._unsupported(op, f"a concatenation along axis {op.axis}",
                                    help="archc concatenates along the channels, the last axis")
        if any(isinstance(v, _Cropped) for v in inputs):
            from ..ops import CropConcat

            srcs = [v.src if isinstance(v, _Cropped) else self._settled(v, f"`{op.name}`") for v in inputs]
            out = (min(s.shape[0] for s in srcs), min(s.shape[1] for s in srcs), sum(s.shape[2] for s in srcs))
            wanted = CropConcat.crops([s.shape for s in srcs], out)
            for v, s, (top, left) in zip(inputs, srcs, wanted, strict=False):
                crops = v.crops if isinstance(v, _Cropped) else (0, 0, 0, 0)
                if crops != (top, s.shape[0] - out[0] - top, left, s.shape[1] - out[1] - left):
                    raise Unsupported("Keras's `Cropping2D`", v.layer.name if isinstance(v, _Cropped) else op.name,
                                      partial=self._partial(), help="archc's cropconcat crops every input to the "
                                      "smallest, centred (an odd difference leaves the extra row at the bottom)")
            return self._add("cropconcat", {}, srcs, op.name, out)
        return self._merge(op, node, inputs, "concat")

    def _read_EinsumDense(self, op, node, inputs):
        src = self._settled(inputs[0], f"`{op.name}`")
        equation = {3: "abcd,d->abcd", 1: "ab,b->ab"}.get(len(src.shape))
        if op.equation != equation or op.bias is not None:
            raise self._unsupported(op, f"EinsumDense `{op.equation}`",
                                    help="archc reads an EinsumDense only as a per-channel scale (`layer_scale`)")
        init = getattr(op.kernel_initializer, "value", 1e-6)
        return self._add("layer_scale", {"init": float(init)}, [src], op.name, _shape_of(node), op)

    # ---- preprocessing: fixed per-channel affine maps

    def _read_Rescaling(self, op, node, inputs):
        """y = x * scale + offset. Folded with the Rescaling/Normalization layers around it into one batchnorm
        without scale and shift: (x - mean) / sqrt(var + eps), its statistics set so that it computes the same,
        and momentum 1 so that training never moves them. In training mode a batchnorm normalises by the batch,
        which Keras's preprocessing does not: the same model in evaluation (what `archc import` promises)."""
        scale = np.broadcast_to(np.asarray(op.scale, dtype=np.float64), (_shape_of(node)[-1],))
        offset = np.broadcast_to(np.asarray(op.offset, dtype=np.float64), scale.shape)
        return self._affine(op, node, inputs, scale, offset)

    def _read_Normalization(self, op, node, inputs):
        axis = op.axis if isinstance(op.axis, int) else (tuple(op.axis)[0] if len(op.axis) == 1 else None)
        if axis not in (-1, len(_shape_of(node))) or op.invert:
            raise self._unsupported(op, "a Normalization other than of the channels")
        import keras

        mean = np.asarray(keras.ops.convert_to_numpy(op.mean), dtype=np.float64).reshape(-1)
        std = np.maximum(np.sqrt(np.asarray(keras.ops.convert_to_numpy(op.variance), np.float64).reshape(-1)),
                         keras.backend.epsilon())
        c = _shape_of(node)[-1]
        return self._affine(op, node, inputs, np.broadcast_to(1 / std, (c,)), np.broadcast_to(-mean / std, (c,)))

    def _affine(self, op, node, inputs, scale: np.ndarray, offset: np.ndarray):
        src = self._settled(inputs[0], f"`{op.name}`")
        if len(src.shape) != 3 and len(src.shape) != 1:
            raise self._unsupported(op)
        prev = self.layers[src.index] if src.index != INPUT else None
        if prev is not None and src.index in self.affine and self.uses.get(_key(node.input_tensors[0])) == 1:
            s0, o0 = self.affine.pop(src.index)  # fold into the previous one: x * s0 + o0, then * scale + offset
            scale, offset = s0 * scale, o0 * scale + offset
            self.layers.pop()
            self.keras_shapes.pop()
            self.keras_layers.pop()
            self.resolved.pop()
            src = _Ref(prev.inputs[0], self.net.input_shape if prev.inputs[0] == INPUT
                       else self.resolved[prev.inputs[0]][2])
            path = f"{prev.path}+{op.name}"
        else:
            path = op.name
        if not np.all(scale > 0):
            raise self._unsupported(op, "a rescaling by a factor that is not positive")
        out = self._add("batchnorm", {"epsilon": _FIXED_EPSILON, "momentum": 1.0, "scale": False, "center": False},
                        [src], path, _shape_of(node))
        self.affine[out.index] = (scale, offset)
        return out

    # ---- archc's helper sub-models, and others inlined

    def _read_submodel(self, sub: Any, inputs: list[Any]) -> Any:
        ops = [o for o in sub.operations if type(o).__name__ != "InputLayer"]
        kinds = [type(o).__name__ for o in ops]
        reader = _HELPERS.get(tuple(kinds)) or (_read_lrn if _is_lrn(kinds) else None)
        if reader is not None and len(inputs) == 1:
            nodes = [_own_nodes(sub, o)[0] for o in ops]
            found = reader(self, sub, ops, nodes, inputs[0])
            if found is not None:
                return found
        if len(sub.inputs) != len(inputs) or len(sub.outputs) != 1:
            raise self._unsupported(sub, f"a sub-model with {len(sub.inputs)} inputs and {len(sub.outputs)} outputs")
        values = {_key(t): v for t, v in zip(sub.inputs, inputs, strict=False)}
        return self._walk(sub, values, sub.outputs[0])

    # ------------------------------------------------------------ after the walk

    def _prefix(self, i: int) -> FlatNetwork:
        return FlatNetwork(self.net.input_shape, self.layers[:i], i - 1 if i else INPUT, self.net.name, self.what)

    def _fill_tensors(self) -> None:
        """Each weighted layer's tensors by PyTorch name and layout (converted when asked for: `_Tensors`):
        archc.backends.keras knows where each kind keeps them in Keras and how the layouts differ
        (`variables_<kind>`); a dense after a flatten gets its inputs in channels-first order (Plan.flat_orders),
        as transfer_weights does."""
        from ..backends import get_backend
        from ..diagnostics import ArchcError
        from ..plan import Plan, PlanNode

        nodes = [PlanNode(str(i), layer.op, args, tuple("input" if j == INPUT else str(j) for j in layer.inputs),
                          tuple(in_shapes), shape, 0, 0, 0)
                 for i, (layer, (args, in_shapes, shape)) in enumerate(zip(self.layers, self.resolved, strict=False))]
        try:
            orders = Plan(self.net.name, self.net.input_shape, nodes, "input").flat_orders()
        except ArchcError as e:
            where = self.layers[int(e.diagnostics[0].message.split("`")[1])].path
            raise Unsupported("features flattened and then mixed", where, partial=self.net,
                              help=e.diagnostics[0].message) from None
        backend = get_backend("keras")
        for layer, node, keras_layer in zip(self.layers, nodes, self.keras_layers, strict=False):
            weights = node.weights()
            if not weights:
                continue
            affine = self.affine.get(int(node.name))
            if affine is not None:
                scale, offset = affine  # x * scale + offset == (x - mean) / sqrt(var + eps)
                layer.tensors = {"running_mean": (-offset / scale).astype(np.float32),
                                 "running_var": (1 / scale**2 - _FIXED_EPSILON).astype(np.float32)}
                continue
            variables = backend.variables(node, keras_layer)
            order = orders.get(node.inputs[0])
            layer.tensors = _Tensors({name: (variables[name], weight.in_axis if order is not None else None, order)
                                      for name, weight in weights.items()})


class _Tensors(Mapping):
    """A layer's tensors by PyTorch name, converted when first asked for: reading a model for its structure
    (`archc import`) copies no weights; `load_weights` converts each once."""

    def __init__(self, sources: dict[str, tuple]):
        self._sources = sources  # name -> ((Keras variable, to Keras, to torch), permuted axis, feature order)
        self._done: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._done:
            from ..backends.transfer import _permuted

            (variable, _, to_torch), axis, order = self._sources[name]
            array = to_torch(np.asarray(variable.numpy()))
            if axis is not None:  # gather from contiguous memory: over a transposed view it costs seconds
                array = _permuted(np.ascontiguousarray(array), order, axis, inverse=True)
            self._done[name] = array
        return self._done[name]

    def __iter__(self):
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


_FIXED_EPSILON = 1e-12  # the least archc accepts: the statistics absorb it


# ---------------------------------------------------------------- archc's helper sub-models (backends/keras.py)


def _args_of(node: Any) -> tuple[list, dict]:
    """A node's call arguments; an index as a tuple (a model loaded from a file gives lists)."""
    args = [tuple(a) if isinstance(a, list) else a for a in node.arguments.args]
    return args, dict(node.arguments.kwargs)


def _read_pad(reader: _Reader, sub, ops, nodes, value):
    (pad,) = ops
    widths = [tuple(p) for p in pad.pad_width]
    _, kwargs = _args_of(nodes[0])
    constant = kwargs.get("constant_values")
    if pad.mode != "constant" or len(widths) != 4 or widths[0] != (0, 0) or widths[3] != (0, 0):
        return None
    src = reader._settled(value, f"`{sub.name}`")
    return _Padded(src, (*widths[1], *widths[2]), float(constant or 0.0), sub)


def _read_zero_pad_shortcut(reader: _Reader, sub, ops, nodes, value):
    args, _ = _args_of(nodes[0])
    key = args[1] if len(args) > 1 else None
    widths = [tuple(p) for p in ops[1].pad_width]
    if not (isinstance(key, tuple) and len(key) == 4 and all(isinstance(k, slice) for k in key)
            and len(widths) == 4 and widths[:3] == [(0, 0)] * 3):
        return None
    rows, cols = key[1], key[2]
    if any(k.start not in (None, 0) or k.stop is not None for k in key) or key[0].step or key[3].step:
        return None
    src = reader._settled(value, f"`{sub.name}`")
    stride = (rows.step or 1, cols.step or 1)
    before, after = widths[3]
    args = {"filters": src.shape[-1] + before + after, "stride": stride}
    from ..ops import ZeroPadArgs

    if OPS["zeropad"].pads(ZeroPadArgs(**args), src.shape[-1]) != (before, after):
        return None
    return reader._add("zeropad", args, [src], sub.name, tuple(sub.outputs[0].shape[1:]))


def _read_split(reader: _Reader, sub, ops, nodes, value):
    args, _ = _args_of(nodes[0])
    key = args[1] if len(args) > 1 else None
    if not (isinstance(key, tuple) and len(key) == 2 and key[0] is Ellipsis and isinstance(key[1], slice)
            and key[1].step in (None, 1)):
        return None
    src = reader._settled(value, f"`{sub.name}`")
    c = src.shape[-1]
    start, stop = key[1].start or 0, min(key[1].stop if key[1].stop is not None else c, c)
    size = stop - start
    if size <= 0 or c % size or start % size:
        return None
    return reader._add("split", {"parts": c // size, "part": start // size}, [src], sub.name,
                       tuple(sub.outputs[0].shape[1:]))


def _read_shuffle(reader: _Reader, sub, ops, nodes, value):
    first = tuple(ops[0].newshape)
    if len(first) != 5 or tuple(ops[1].axes or ()) != (0, 1, 2, 4, 3):
        return None
    src = reader._settled(value, f"`{sub.name}`")
    return reader._add("shuffle", {"groups": int(first[3])}, [src], sub.name, tuple(sub.outputs[0].shape[1:]))


def _read_gelu_tanh(reader: _Reader, sub, ops, nodes, value):
    if not getattr(ops[0], "approximate", False):
        return None
    src = reader._settled(value, f"`{sub.name}`")
    return reader._add("gelu", {"approximate": "tanh"}, [src], sub.name, tuple(sub.outputs[0].shape[1:]))


def _is_lrn(kinds: list[str]) -> bool:
    """local_response_norm: a^2, padded along the channels, `size` shifted windows summed, then
    a / (k + alpha * sums) ** beta."""
    if len(kinds) < 7 or kinds[:3] != ["Square", "Pad", "GetItem"] or kinds[-4:] != ["Multiply", "Add", "Power",
                                                                                      "TrueDivide"]:
        return False
    middle = kinds[3:-4]
    return len(middle) % 2 == 0 and all(middle[i:i + 2] == ["GetItem", "Add"] for i in range(0, len(middle), 2))


def _read_lrn(reader: _Reader, sub, ops, nodes, value):
    size = sum(type(o).__name__ == "GetItem" for o in ops)
    scalars = []
    for node in nodes[-4:-1]:  # alpha * sums, k + ..., ... ** beta
        args, _ = _args_of(node)
        scalars.append(next((a for a in args if isinstance(a, (int, float))), None))
    alpha, k, beta = scalars
    widths = [tuple(p) for p in ops[1].pad_width]
    if None in scalars or widths[-1] != (size // 2, (size - 1) // 2):
        return None
    src = reader._settled(value, f"`{sub.name}`")
    return reader._add("lrn", {"size": size, "alpha": float(alpha), "beta": float(beta), "k": float(k)}, [src],
                       sub.name, tuple(sub.outputs[0].shape[1:]))


_HELPERS = {
    ("Pad",): _read_pad,
    ("GetItem", "Pad"): _read_zero_pad_shortcut,
    ("GetItem",): _read_split,
    ("Reshape", "Transpose", "Reshape"): _read_shuffle,
    ("Gelu",): _read_gelu_tanh,
}


# ---------------------------------------------------------------- shapes and padding


def _shape_of(node: Any) -> Shape:
    return tuple(node.output_tensors[0].shape[1:])


def _fmt(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name) or "imported"


def _tf_pads(padding: str, kernel, strides, dilation, in_shape: Shape) -> tuple[int, int, int, int]:
    """TensorFlow's padding as (top, bottom, left, right): `same` pads what ceil(n / s) outputs need, half
    before (rounded down) and the rest after, so at a stride it depends on the input's size."""
    if padding == "valid":
        return (0, 0, 0, 0)
    pads = []
    for n, k, s, d in zip(in_shape[:2], kernel, strides, dilation, strict=False):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)  # type: ignore[return-value]


def canonical_padding(pads: tuple[int, int, int, int], kernel, dilation) -> Any:
    """The language's spelling of explicit pads: `valid`, `same` where they are the language's `same`, a pair
    when both sides of each axis agree, else (top, bottom, left, right)."""
    top, bottom, left, right = pads
    if not any(pads):
        return "valid"
    th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
    if pads == (th // 2, th - th // 2, tw // 2, tw - tw // 2):
        return "same"
    if top == bottom and left == right:
        return (top, left)
    return tuple(pads)


def canonical(net: FlatNetwork) -> FlatNetwork:
    """The same network with each layer's arguments in the one spelling a Keras model has (what `read_flat` of
    archc's own Keras build gives): resolved; padding as `canonical_padding` writes it, pooling's `ceil` as the
    explicit padding it amounts to; a conv with one group per channel `depthwise`; a merge of one input an
    identity. Several specs compile to one Keras model; this is the one they read back as."""
    layers = []
    for layer, (args, in_shapes, _shape) in zip(net.layers, net.resolved(), strict=False):
        kind, values = layer.op, args.model_dump()
        if "padding" in values and "kernel" in values and kind != "convtranspose":
            counted = values.get("count_pad", False)
            if values.get("ceil") and not counted:
                values["padding"], values["ceil"] = tuple(args.ceil_pads(*in_shapes[0][:2])), False
            pads = args.model_copy(update={"padding": values["padding"]}).pads()
            values["padding"] = canonical_padding(pads, values["kernel"], values.get("dilation", (1, 1)))
            if counted and not any(pads):
                values["count_pad"] = False
        if kind == "conv":
            c = in_shapes[0][-1]
            values["depthwise"] = values["groups"] == c > 1
            values["multiplier"] = 1
        if OPS[kind].inputs == "many" and len(layer.inputs) == 1:
            kind, values = "identity", {}
        layers.append(FlatLayer(kind, values, layer.inputs, layer.path, layer.tensors))
    return FlatNetwork(net.input_shape, layers, net.output, net.name, net.source)


def _topological(model: Any, output: Any) -> list[Any]:
    """The model's nodes that `output` depends on, each after the nodes it reads: depth first from the output,
    a node's inputs in their order (a merge's first branch first), as a spec or Keras code lists them."""
    order: list[Any] = []
    seen: set[int] = set()
    start = output._keras_history
    stack: list[tuple[Any, bool]] = [(start.operation._inbound_nodes[start.node_index], False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen:
            continue
        if expanded:
            seen.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        for t in reversed(node.input_tensors):
            h = t._keras_history
            parent = h.operation._inbound_nodes[h.node_index]
            if id(parent) not in seen:
                stack.append((parent, False))
    return order
