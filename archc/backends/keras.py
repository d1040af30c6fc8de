"""The Keras 3 backend: a Plan becomes a readable, standalone Keras module (functional API, one line per
node), and `build` executes that very source, so the file and the in-memory model never differ.

The language's arithmetic (archc/ops.py) is realised exactly, including where Keras's defaults differ:
  * `same` padding is Keras's own only at stride 1; otherwise the conv gets an explicit ZeroPadding2D.
  * max pooling pads with -inf and average pooling leaves padding out of the average; where Keras's
    pooling cannot say that, a small sub-model of keras.ops does (it saves into `.keras` files that load
    anywhere Keras does, and keeps its operations' names out of the model's namespace).
  * Keras has no LRN layer, no dilated pooling and no strided dilated conv: they are built from keras.ops
    and built-in layers. (A pooling window that would see padding only is an inference error, A207.)
  * flatten is channels-last (NHWC order); `archc.backends.transfer` permutes the dense weights after it.
Names: a node `conv3_x.0.conv2` is the layer `conv3_x_0_conv2`. An activation that directly follows its
conv or dense layer (and is that layer's only consumer) is folded into it, as Keras code is written
(`Conv2D(64, 3, activation="relu")`); `layer_for` says which layer computes a node.
"""

from __future__ import annotations

import keyword
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..ops import OPS
from ..plan import INPUT, Plan, PlanNode
from .base import Backend, backend_error

_LAYER_NAME = re.compile(r"[A-Za-z0-9_]+")
_RESERVED = {"keras", "layers", "ops", "inputs", "model", "build_model", "pad_with", "average_pool_real",
             "dilated_pool", "local_response_norm", "average_pool_counted", "resample", "INPUT_SHAPE",
             "DESCRIPTION",
             "channel_split", "channel_shuffle", "zero_pad_shortcut"}

# Helpers the generated module defines when a node needs them. Plain functions over keras.ops and
# built-in layers: nothing to register, so saved `.keras` files load without this module or archc.
_HELPERS = {
    "pad_with": '''
def pad_with(x, shape, pads, value, name):
    """Pad height and width by (top, bottom, left, right) with `value` (-inf for max pooling)."""
    a = keras.Input(shape)
    top, bottom, left, right = pads
    padded = keras.ops.pad(a, [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=value)
    return keras.Model(a, padded, name=name)(x)
''',
    "average_pool_real": '''
def average_pool_real(x, shape, pool_size, strides, pads, name):
    """Average pooling whose padding is not counted: window sums over window counts of real inputs."""
    a = keras.Input(shape)
    top, bottom, left, right = pads
    widths = [(0, 0), (top, bottom), (left, right), (0, 0)]
    sums = keras.ops.average_pool(keras.ops.pad(a, widths), pool_size, strides, "valid")
    ones = keras.ops.ones_like(a[..., :1])
    counts = keras.ops.average_pool(keras.ops.pad(ones, widths), pool_size, strides, "valid")
    return keras.Model(a, sums / counts, name=name)(x)
''',
    "dilated_pool": '''
def dilated_pool(x, shape, pool_size, strides, dilation, pads, out_size, reduce, name):
    """Pooling with gaps between a window's taps (Keras's pooling layers have none): each tap is a strided
    slice; `max` pads with -inf, `mean` averages the real inputs among the taps only."""
    a = keras.Input(shape)
    top, bottom, left, right = pads
    widths = [(0, 0), (top, bottom), (left, right), (0, 0)]
    padded = keras.ops.pad(a, widths, constant_values=float("-inf") if reduce == "max" else 0.0)
    real = keras.ops.pad(keras.ops.ones_like(a[..., :1]), widths)
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = pool_size, strides, dilation, out_size
    taps, counts = [], []
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
            cols = slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)
            taps.append(padded[:, rows, cols, :])
            counts.append(real[:, rows, cols, :])
    out = taps[0]
    for tap in taps[1:]:
        out = keras.ops.maximum(out, tap) if reduce == "max" else out + tap
    if reduce != "max":
        out = out / sum(counts[1:], counts[0])
    return keras.Model(a, out, name=name)(x)
''',
    "average_pool_counted": '''
def average_pool_counted(x, shape, pool_size, strides, pads, overhang, name):
    """Average pooling that counts zero padding (PyTorch's count_include_pad) but not ceil mode's overhang past
    it: window sums over window counts of the padded input's positions."""
    a = keras.Input(shape)
    top, bottom, left, right = pads
    padded = keras.ops.pad(a, [(0, 0), (top, bottom), (left, right), (0, 0)])
    beyond = [(0, 0), (0, overhang[0]), (0, overhang[1]), (0, 0)]
    sums = keras.ops.average_pool(keras.ops.pad(padded, beyond), pool_size, strides, "valid")
    counts = keras.ops.average_pool(keras.ops.pad(keras.ops.ones_like(padded[..., :1]), beyond), pool_size,
                                    strides, "valid")
    return keras.Model(a, sums / counts, name=name)(x)
''',
    "resample": '''
def resample(x, shape, rows, cols, name):
    """Resizing by table: output row i is input row a + t * (input row b - input row a) for (a, b, t) = rows[i]
    (nearest: a == b), then the columns alike from `cols` (archc.ops.UpsampleArgs.source_index)."""
    a = keras.Input(shape)

    def along(v, axis, table):
        low = keras.ops.take(v, [r[0] for r in table], axis=axis)
        if all(r[2] == 0.0 for r in table):
            return low
        high = keras.ops.take(v, [r[1] for r in table], axis=axis)
        t = keras.ops.reshape(keras.ops.convert_to_tensor([r[2] for r in table], "float32"),
                              [len(table) if i == axis else 1 for i in range(4)])
        return low + (high - low) * t

    return keras.Model(a, along(along(a, 1, rows), 2, cols), name=name)(x)
''',
    "local_response_norm": '''
def local_response_norm(x, shape, size, alpha, beta, k, name):
    """Krizhevsky et al. 2012: b = a / (k + alpha * sum of a^2 over `size` channels centred on a) ** beta."""
    a = keras.Input(shape)
    channels = shape[-1]
    widths = [(0, 0)] * len(shape) + [(size // 2, (size - 1) // 2)]
    squares = keras.ops.pad(keras.ops.square(a), widths)
    window_sums = squares[..., 0:channels]
    for i in range(1, size):
        window_sums = window_sums + squares[..., i:i + channels]
    return keras.Model(a, a / keras.ops.power(k + alpha * window_sums, beta), name=name)(x)
''',
    # channel split, channel shuffle, zero-padding shortcuts (ShuffleNet v2; He et al.'s option A)
    "channel_split": '''
def channel_split(x, shape, start, stop, name):
    """Channels `start` to `stop - 1`: one part of a channel split (ShuffleNet v2)."""
    a = keras.Input(shape)
    return keras.Model(a, a[..., start:stop], name=name)(x)
''',
    "channel_shuffle": '''
def channel_shuffle(x, shape, groups, name):
    """`groups` groups of channels interleaved, as torchvision's channel_shuffle does channels-first."""
    a = keras.Input(shape)
    h, w, c = shape
    grouped = keras.ops.reshape(a, (-1, h, w, groups, c // groups))
    shuffled = keras.ops.reshape(keras.ops.transpose(grouped, (0, 1, 2, 4, 3)), (-1, h, w, c))
    return keras.Model(a, shuffled, name=name)(x)
''',
    "zero_pad_shortcut": '''
def zero_pad_shortcut(x, shape, strides, pads, name):
    """He et al.'s option A shortcut: every `strides`-th row and column, then (before, after) zero channels."""
    a = keras.Input(shape)
    (sh, sw), (before, after) = strides, pads
    padded = keras.ops.pad(a[:, ::sh, ::sw, :], [(0, 0), (0, 0), (0, 0), (before, after)])
    return keras.Model(a, padded, name=name)(x)
''',
}


def _same_pads(args) -> tuple[int, int, int, int]:
    return args.model_copy(update={"padding": "same"}).pads()


def _strided_dilated(node: PlanNode) -> bool:
    a = node.args
    return node.op == "conv" and a.stride != (1, 1) and a.dilation != (1, 1)


def _cropped_transpose(node: PlanNode) -> bool:
    """A transposed conv with PyTorch's `padding`: Keras crops its output with a second layer, `NAME_crop`."""
    return node.op == "convtranspose" and node.args.crop() != (0, 0)


def _same(array: Any) -> Any:
    return array


def _r(value: Any) -> str:
    """A Python literal for a value from the plan (numbers, tuples, strings via repr: nothing is injected)."""
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else f'float("{value}")'
    if isinstance(value, tuple):
        return "(" + ", ".join(_r(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


@dataclass(frozen=True)
class KerasLayer:
    """A table line: a Keras layer's constructor, and its `activation=` name if a conv or dense may fold it."""

    ctor: str
    activation: str | None = None


def _takes_activation(emitter):
    """Marks an emitter whose Keras layer takes `activation=`: an activation right after it folds into it."""
    emitter.takes_activation = True
    return emitter


@dataclass
class Layout:
    """How a plan maps onto the generated model: variable names, folded activations, omitted nodes."""

    plan: Plan
    logits: bool
    var: dict[str, str] = field(default_factory=dict)  # node name (or INPUT) -> Python variable
    folded: dict[str, str] = field(default_factory=dict)  # activation node -> the conv/dense it is folded into
    folded_into: dict[str, str] = field(default_factory=dict)  # conv/dense node -> its folded activation
    dropped: set[str] = field(default_factory=set)  # a final softmax left out for logits=True
    output: str = INPUT  # the node whose value the model returns

    @classmethod
    def of(cls, plan: Plan, logits: bool) -> Layout:
        layout = cls(plan, logits)
        consumers = plan.consumers()
        layout.output = plan.model_output(logits)
        if layout.output != plan.output:
            layout.dropped.add(plan.output)
        for node in plan.nodes:
            fold = KerasBackend.TABLE.get(node.op)
            if fold is None or fold.activation is None or node.name in layout.dropped or node.inputs[0] == INPUT:
                continue
            base = plan.node(node.inputs[0])
            host = getattr(KerasBackend, f"emit_{base.op}", None)
            if (getattr(host, "takes_activation", False) and len(consumers.get(base.name, ())) == 1
                    and base.name != layout.output and not _strided_dilated(base)
                    and base.name not in layout.folded_into):
                layout.folded[node.name] = base.name
                layout.folded_into[base.name] = node.name
        if layout.output in layout.folded_into:  # the model returns the folded layer's result
            layout.output = layout.folded_into[layout.output]
        return layout

    def layer_for(self, node_name: str) -> str | None:
        """The Keras layer whose output is the node's value, or None where no layer computes it alone."""
        if node_name in self.dropped or node_name in self.folded_into:
            return None
        if node_name in self.folded:
            return self.plan.node(self.folded[node_name]).flat_name
        node = self.plan.node(node_name)
        return node.flat_name + ("_stride" if _strided_dilated(node) else "") + (
            "_crop" if _cropped_transpose(node) else "")


class _Writer:
    """The state of writing one module: its helpers and the Keras names taken so far."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.helpers: list[str] = []
        self.layer_names: dict[str, PlanNode | None] = {"input": None}

    def helper(self, name: str) -> str:
        if name not in self.helpers:
            self.helpers.append(name)
        return name

    def claim(self, name: str, node: PlanNode) -> str:
        """A Keras layer name for (a part of) `node`, which must be new: Keras requires unique names."""
        if not _LAYER_NAME.fullmatch(name) or len(name) > 200:
            raise backend_error("A410", f"`{node.name}` cannot be a Keras layer name", node,
                         help="layer and scope names may use letters, digits and `_` only")
        if name in self.layer_names:
            other = self.layer_names[name]
            raise backend_error("A411", f"`{node.name}` and `{other.name if other else 'the input'}` would both be the "
                         f"Keras layer `{name}`", node, help="rename one of the scopes")
        self.layer_names[name] = node
        return f'"{name}"'  # safe to quote as is: it matched _LAYER_NAME


class KerasBackend(Backend):
    name = "keras"
    file_formats = ("py", "keras")
    cannot_emit_code = "A412"

    # ------------------------------------------------------------ the model

    def source(self, plan: Plan, logits: bool = False) -> str:
        """The standalone Keras module for `plan`: it imports keras only and defines `build_model()`."""
        layout = Layout.of(plan, logits)
        writer = _Writer(layout)
        taken = set(_RESERVED)
        layout.var[INPUT] = "inputs"
        body = [f"    inputs = keras.Input(shape={_r(tuple(plan.input_shape))}, name=\"input\")"]
        stage = None
        for node in plan.nodes:
            if node.name in layout.dropped:
                continue
            if node.name in layout.folded:  # computed by its conv/dense
                layout.var[node.name] = layout.var[layout.folded[node.name]]
                continue
            if node.stage != stage and node.stage and _LAYER_NAME.fullmatch(node.stage):
                body.append(f"    # {node.stage}")
            stage = node.stage
            var = node.flat_name
            if not var.isidentifier() or keyword.iskeyword(var):
                var = "t_" + var
            while var in taken:
                var += "_"
            taken.add(var)
            inputs = [layout.var[name] for name in node.inputs]
            body.append(f"    {var} = {self.emit(node, inputs, writer)}")
            layout.var[node.name] = var
        model_name = re.sub(r"[^A-Za-z0-9_]", "_", plan.name) or "network"
        body.append(f"    return keras.Model(inputs, {layout.var[layout.output]}, name=\"{model_name}\")")

        head = [
            f'"""{model_name}: a Keras 3 model generated by archc from its architecture spec.',
            "",
            "Standalone: it needs only Keras. `build_model()` returns the (untrained) model.",
            '"""',
            "",
            "import keras",
            "from keras import layers",
            "",
            f"DESCRIPTION = {plan.description or ''!r}",
            f"INPUT_SHAPE = {_r(tuple(plan.input_shape))}",
            "",
        ]
        for name in writer.helpers:
            head += ["", _HELPERS[name].strip("\n"), ""]
        main = ["", "", 'if __name__ == "__main__":', "    build_model().summary()", ""]
        return "\n".join(head + ["", "def build_model():"] + body + main)

    def build(self, plan: Plan, logits: bool = False) -> Any:
        source = self.source(plan, logits)
        namespace: dict[str, Any] = {"__name__": f"archc_generated_{plan.name}"}
        exec(compile(source, f"<archc keras: {plan.name}>", "exec"), namespace)  # noqa: S102 - our own source
        model = namespace["build_model"]()
        model.archc_plan = plan  # transfer_weights walks the plan's nodes
        model.archc_logits = logits
        return model

    def write(self, plan: Plan, fmt: str, logits: bool = False) -> bytes:
        if fmt == "py":
            return self.source(plan, logits).encode("utf-8")
        if fmt == "keras":
            model = self.build(plan, logits)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{plan.name}.keras"
                model.save(path)
                return path.read_bytes()
        raise ValueError(f"unknown format {fmt}")

    def layer_for(self, model: Any, node_name: str) -> str | None:
        """The name of the model's layer that computes node `node_name` (None: folded away or left out)."""
        return Layout.of(model.archc_plan, getattr(model, "archc_logits", False)).layer_for(node_name)

    def owns(self, model: Any) -> bool:
        import keras

        return isinstance(model, keras.Model)

    def load_weights(self, model: Any, source: Any) -> Any:
        """From a Keras model of the same architecture (by position), a list of arrays, or a PyTorch model."""
        if hasattr(source, "state_dict"):
            return self.transfer_weights(source, model)
        weights = source.get_weights() if hasattr(source, "get_weights") else list(source)
        model.set_weights(weights)
        return model

    def transfer_weights(self, src: Any, dst: Any) -> Any:
        from .transfer import transfer_weights

        return transfer_weights(src, dst)

    # ------------------------------------------------------------ emitters: one per layer kind

    # One-liners: the layer's constructor (formatted with the node's arguments as `a`; `emit_table` adds its
    # name and applies it), and the `activation=` string a conv or dense layer can take instead, where Keras's
    # activation has exactly the language's meaning.
    TABLE = {
        "flatten": KerasLayer("layers.Flatten()"),
        "dropout": KerasLayer("layers.Dropout({a.rate!r})"),
        "identity": KerasLayer("layers.Identity()"),
        "relu": KerasLayer("layers.ReLU()", activation="relu"),
        "relu6": KerasLayer("layers.ReLU(max_value=6.0)", activation="relu6"),
        "leaky_relu": KerasLayer("layers.LeakyReLU(negative_slope={a.negative_slope!r})"),
        "elu": KerasLayer("layers.ELU(alpha={a.alpha!r})"),
        "sigmoid": KerasLayer('layers.Activation("sigmoid")', activation="sigmoid"),
        "tanh": KerasLayer('layers.Activation("tanh")', activation="tanh"),
        "softmax": KerasLayer("layers.Softmax(axis=-1)", activation="softmax"),
        "silu": KerasLayer('layers.Activation("silu")', activation="silu"),
        "hardswish": KerasLayer('layers.Activation("hard_silu")', activation="hard_silu"),
        "hardsigmoid": KerasLayer('layers.Activation("hard_sigmoid")', activation="hard_sigmoid"),  # relu6(x+3)/6
    }

    def emit_table(self, entry: KerasLayer, node: PlanNode, xs: list[str], w: _Writer) -> str:
        ctor = entry.ctor.format(a=node.args)[:-1]
        return f"{ctor}{'' if ctor.endswith('(') else ', '}name={w.claim(node.flat_name, node)})({xs[0]})"

    @_takes_activation
    def emit_conv(self, node: PlanNode, xs: list[str], w: _Writer) -> str:
        a = node.args
        channels = node.in_shapes[0][2]
        x, padding = self._padded(node, xs[0], w, _same_pads(a))
        strided_dilated = _strided_dilated(node)
        kw: list[str] = []
        if a.stride != (1, 1) and not strided_dilated:
            kw.append(f"strides={_r(a.stride)}")
        if padding != "valid":
            kw.append(f'padding="{padding}"')
        if a.dilation != (1, 1):
            kw.append(f"dilation_rate={_r(a.dilation)}")
        if a.groups == channels and a.groups > 1:  # one group per channel: Keras's depthwise conv
            layer = "DepthwiseConv2D"
            lead = [_r(a.kernel)]
            if a.filters != channels:
                kw.append(f"depth_multiplier={a.filters // channels}")
        else:
            layer = "Conv2D"
            lead = [str(a.filters), _r(a.kernel)]
            if a.groups > 1:
                kw.append(f"groups={a.groups}")
        if not a.bias:
            kw.append("use_bias=False")
        kw += self._activation(node, w)
        call = f"layers.{layer}({', '.join(lead + kw)}, name={w.claim(node.flat_name, node)})({x})"
        if strided_dilated:  # Keras refuses strides with dilation: convolve densely, then keep every s-th output
            name = w.claim(node.flat_name + "_stride", node)
            call = f"layers.MaxPooling2D((1, 1), strides={_r(a.stride)}, name={name})({call})"
        return call

    def emit_maxpool(self, node: PlanNode, xs: list[str], w: _Writer) -> str:
        return self._pool(node, xs[0], w, "MaxPooling2D")

    def emit_avgpool(self, node: PlanNode, xs: list[str], w: _Writer) -> str:
        return self._pool(node, xs[0], w, "AveragePooling2D")

    @_takes_activation
    def emit_dense(self, node, xs, w) -> str:
        kw = [str(node.args.units)] + ([] if node.args.bias else ["use_bias=False"]) + self._activation(node, w)
        return f"layers.Dense({', '.join(kw)}, name={w.claim(node.flat_name, node)})({xs[0]})"

    def emit_batchnorm(self, node, xs, w) -> str:
        a = node.args
        kw = [f"momentum={_r(float(a.momentum))}", f"epsilon={_r(float(a.epsilon))}"]
        kw += [] if a.center else ["center=False"]
        kw += [] if a.scale else ["scale=False"]
        return f"layers.BatchNormalization({', '.join(kw)}, name={w.claim(node.flat_name, node)})({xs[0]})"

    def emit_lrn(self, node, xs, w) -> str:
        a = node.args
        return (f"{w.helper('local_response_norm')}({xs[0]}, {_r(tuple(node.in_shapes[0]))}, {a.size}, "
                f"{_r(float(a.alpha))}, {_r(float(a.beta))}, {_r(float(a.k))}, "
                f"name={w.claim(node.flat_name, node)})")

    def emit_add(self, node, xs, w) -> str:
        return self._merge(node, xs, w, "Add(")

    def emit_concat(self, node, xs, w) -> str:
        return self._merge(node, xs, w, "Concatenate(axis=-1, ")

    # ---- resampling and U-Net's merge (issue 12)

    def emit_convtranspose(self, node, xs, w) -> str:
        a = node.args
        # output_padding given explicitly (even 0): Keras's size is then (n - 1) * s + k + output_padding, PyTorch's
        # before its crop; without it Keras pads a kernel smaller than the stride up to the stride
        kw = [str(a.filters), _r(a.kernel), f"strides={_r(a.stride)}", f"output_padding={_r(a.output_padding)}"]
        kw += [] if a.bias else ["use_bias=False"]
        call = f"layers.Conv2DTranspose({', '.join(kw)}, name={w.claim(node.flat_name, node)})({xs[0]})"
        if _cropped_transpose(node):  # PyTorch's `padding` removes rows and columns from both sides
            ph, pw = a.crop()
            call = (f"layers.Cropping2D((({ph}, {ph}), ({pw}, {pw})), "
                    f"name={w.claim(node.flat_name + '_crop', node)})({call})")
        return call

    def emit_upsample(self, node, xs, w) -> str:
        a = node.args
        name = w.claim(node.flat_name, node)
        if a.scale is not None and not a.align_corners:  # Keras's own: repeats, or TensorFlow's half-pixel resize
            return f"layers.UpSampling2D({_r(a.scale)}, interpolation={a.mode!r}, name={name})({xs[0]})"
        (h, wd, _), (oh, ow, _) = node.in_shapes[0], node.shape
        rows = [(i, j, round(t, 9)) for i, j, t in a.source_index(oh, h)]
        cols = [(i, j, round(t, 9)) for i, j, t in a.source_index(ow, wd)]
        return (f"{w.helper('resample')}({xs[0]}, {_r(tuple(node.in_shapes[0]))}, {rows!r}, {cols!r}, "
                f"name={name})")

    def emit_cropconcat(self, node, xs, w) -> str:
        from ..ops import CropConcat

        cropped = []
        for i, (x, shape, (top, left)) in enumerate(zip(xs, node.in_shapes, CropConcat.crops(
                list(node.in_shapes), node.shape), strict=True)):
            bottom, right = shape[0] - node.shape[0] - top, shape[1] - node.shape[1] - left
            if (top, bottom, left, right) != (0, 0, 0, 0):
                x = (f"layers.Cropping2D((({top}, {bottom}), ({left}, {right})), "
                     f"name={w.claim(f'{node.flat_name}_crop{i + 1}', node)})({x})")
            cropped.append(x)
        return self._merge(node, cropped, w, "Concatenate(axis=-1, ")

    def variables_convtranspose(self, node: PlanNode, layer: Any) -> dict[str, tuple]:
        # torch [in, out, kh, kw] <-> Keras [kh, kw, out, in]
        return {"weight": (layer.kernel, lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)),
                "bias": (layer.bias, _same, _same)}

    # ---- channel split, channel shuffle, zero-padding shortcuts

    def emit_split(self, node, xs, w) -> str:
        size = node.shape[-1]
        start = node.args.part * size
        return (f"{w.helper('channel_split')}({xs[0]}, {_r(tuple(node.in_shapes[0]))}, {start}, {start + size}, "
                f"name={w.claim(node.flat_name, node)})")

    def emit_shuffle(self, node, xs, w) -> str:
        return (f"{w.helper('channel_shuffle')}({xs[0]}, {_r(tuple(node.in_shapes[0]))}, {node.args.groups}, "
                f"name={w.claim(node.flat_name, node)})")

    def emit_zeropad(self, node, xs, w) -> str:
        pads = OPS["zeropad"].pads(node.args, node.in_shapes[0][2])
        return (f"{w.helper('zero_pad_shortcut')}({xs[0]}, {_r(tuple(node.in_shapes[0]))}, {_r(node.args.stride)}, "
                f"{_r(pads)}, name={w.claim(node.flat_name, node)})")

    def emit_globalavgpool(self, node, xs, w) -> str:
        keep = "keepdims=True, " if node.args.keepdims else ""
        return f"layers.GlobalAveragePooling2D({keep}name={w.claim(node.flat_name, node)})({xs[0]})"

    def emit_globalmaxpool(self, node, xs, w) -> str:
        keep = "keepdims=True, " if node.args.keepdims else ""
        return f"layers.GlobalMaxPooling2D({keep}name={w.claim(node.flat_name, node)})({xs[0]})"

    def emit_multiply(self, node, xs, w) -> str:
        # Keras's Multiply broadcasts sizes of 1; a flat C vector beside a map becomes 1x1xC first
        xs = list(xs)
        for i, shape in enumerate(node.in_shapes):
            if len(shape) < len(node.shape):
                name = w.claim(f"{node.flat_name}_in{i + 1}", node)
                xs[i] = f"layers.Reshape((1, 1, {shape[0]}), name={name})({xs[i]})"
        return self._merge(node, xs, w, "Multiply(")

    # ------------------------------------------------------------ weights: the registry's names, Keras's variables

    def variables(self, node: PlanNode, layer: Any) -> dict[str, tuple[Any, Any, Any]]:
        """For each of the node's weights (archc.ops names, PyTorch layout): the Keras variable, and the
        functions that turn a PyTorch-layout array into the variable's layout and back."""
        method = getattr(self, f"variables_{node.op}", None)
        if method is None:
            raise backend_error("A413", f"the keras backend does not know where `{node.op}` keeps its weights", node)
        return method(node, layer)

    def variables_conv(self, node: PlanNode, layer: Any) -> dict[str, tuple]:
        if type(layer).__name__ == "DepthwiseConv2D":
            c = node.in_shapes[0][2]
            m = node.args.filters // c
            kh, kw = node.args.kernel
            # torch [c*m, 1, kh, kw] (channel-major) <-> Keras [kh, kw, c, m]
            kernel = (layer.kernel, lambda a: a.reshape(c, m, kh, kw).transpose(2, 3, 0, 1),
                      lambda a: a.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))
        else:  # torch [out, in/groups, kh, kw] <-> Keras [kh, kw, in/groups, out]
            kernel = (layer.kernel, lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1))
        return {"weight": kernel, "bias": (layer.bias, _same, _same)}

    def variables_dense(self, node: PlanNode, layer: Any) -> dict[str, tuple]:
        return {"weight": (layer.kernel, np.transpose, np.transpose), "bias": (layer.bias, _same, _same)}

    def variables_batchnorm(self, node: PlanNode, layer: Any) -> dict[str, tuple]:
        return {"weight": (layer.gamma, _same, _same), "bias": (layer.beta, _same, _same),
                "running_mean": (layer.moving_mean, _same, _same),
                "running_var": (layer.moving_variance, _same, _same)}

    # ------------------------------------------------------------ shared pieces

    @staticmethod
    def _merge(node, xs, w, layer_open: str) -> str:
        name = w.claim(node.flat_name, node)
        if len(xs) == 1:  # a merge of one branch passes it on (Keras's merge layers want two or more)
            return f"layers.Identity(name={name})({xs[0]})"
        return f"layers.{layer_open}name={name})([{', '.join(xs)}])"

    @staticmethod
    def _activation(node: PlanNode, w: _Writer) -> list[str]:
        act = w.layout.folded_into.get(node.name)
        return [f'activation="{KerasBackend.TABLE[w.layout.plan.node(act).op].activation}"'] if act else []

    @staticmethod
    def _padded(node: PlanNode, x: str, w: _Writer, same: tuple) -> tuple[str, str]:
        """Zero padding for a conv: Keras's `same` where it means the language's (stride 1), else explicit."""
        pads = node.args.pads()
        if pads == (0, 0, 0, 0):
            return x, "valid"
        if pads == same and node.args.stride == (1, 1):
            return x, "same"
        top, bottom, left, right = pads
        name = w.claim(node.flat_name + "_pad", node)
        return f"layers.ZeroPadding2D((({top}, {bottom}), ({left}, {right})), name={name})({x})", "valid"

    def _pool(self, node: PlanNode, x: str, w: _Writer, layer: str) -> str:
        a = node.args
        # ceil mode's overhang is more padding after the padding, never counted (Keras has no ceil mode)
        pads = a.ceil_pads(*node.in_shapes[0][:2])
        top, bottom, left, right = pads
        if getattr(a, "count_pad", False) and pads != (0, 0, 0, 0):  # average counting zero padding
            counted = a.pads()
            overhang = (bottom - counted[1], right - counted[3])
            if overhang == (0, 0):
                pad_name = w.claim(node.flat_name + "_pad", node)
                x = (f"layers.ZeroPadding2D((({top}, {bottom}), ({left}, {right})), name={pad_name})({x})")
                kw = [_r(a.kernel)] + ([f"strides={_r(a.stride)}"] if a.stride != a.kernel else [])
                return f"layers.AveragePooling2D({', '.join(kw)}, name={w.claim(node.flat_name, node)})({x})"
            return (f"{w.helper('average_pool_counted')}({x}, {_r(tuple(node.in_shapes[0]))}, {_r(a.kernel)}, "
                    f"{_r(a.stride)}, {_r(counted)}, {_r(overhang)}, name={w.claim(node.flat_name, node)})")
        if a.dilation != (1, 1):
            reduce = "max" if layer == "MaxPooling2D" else "mean"
            return (f"{w.helper('dilated_pool')}({x}, {_r(tuple(node.in_shapes[0]))}, {_r(a.kernel)}, "
                    f"{_r(a.stride)}, {_r(a.dilation)}, {_r(pads)}, {_r(tuple(node.shape[:2]))}, {reduce!r}, "
                    f"name={w.claim(node.flat_name, node)})")
        kw = [_r(a.kernel)] + ([f"strides={_r(a.stride)}"] if a.stride != a.kernel else [])
        if pads != (0, 0, 0, 0):
            if a.stride == (1, 1) and pads == _same_pads(a):
                kw.append('padding="same"')  # at stride 1 Keras's `same` pads as the language does, ignored alike
            elif layer == "MaxPooling2D":
                pad_name = w.claim(node.flat_name + "_pad", node)
                x = (f"{w.helper('pad_with')}({x}, {_r(tuple(node.in_shapes[0]))}, {_r(pads)}, float(\"-inf\"), "
                     f"name={pad_name})")
            else:
                return (f"{w.helper('average_pool_real')}({x}, {_r(tuple(node.in_shapes[0]))}, {_r(a.kernel)}, "
                        f"{_r(a.stride)}, {_r(pads)}, name={w.claim(node.flat_name, node)})")
        return f"layers.{layer}({', '.join(kw)}, name={w.claim(node.flat_name, node)})({x})"
