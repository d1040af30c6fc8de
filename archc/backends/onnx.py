"""The ONNX backend: a Plan becomes an ONNX model directly, through `onnx.helper` (no deep-learning framework).

The graph takes `input`, N x C x H x W (or N x L for a flat input) with a symbolic batch `N`, and gives
`output`. Every plan node becomes ONNX nodes whose final output tensor is named after the plan node
(`conv3_x.0.conv2`), and its parameters are initializers named as PyTorch names them (`conv3_x.0.conv2.weight`,
`...bias`, `...running_mean`, `...running_var`), so weights move between the two backends by name. Constants
that are not parameters (a clip's bounds, a unit scale for `batchnorm scale=false`) are Constant nodes, so the
initializers are exactly the plan's parameters.

The language's definitions (archc/ops.py) map onto ONNX like this:
  * padding is always explicit; ONNX orders it [top, left, bottom, right] (all begins, then all ends);
  * max pooling pads with -infinity natively; average pooling uses `count_include_pad=0`, so padding is left
    out of the average as the language says; a pad as large as the window (where ONNX Runtime refuses
    native padding) becomes an explicit Pad node (-inf for max; for average, sums over a ones-mask count
    the real inputs);
  * LRN: ONNX divides alpha by the size (as PyTorch does), so it gets the spec's alpha * size;
  * BatchNormalization's momentum has the spec's (Keras's) sense already;
  * flatten is NCHW order, as PyTorch's is, so dense weights are laid out the same ([out, in]).

Nothing here computes a shape: emitters read `node.args`, `node.in_shapes` and `node.shape` from the Plan.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._version import __version__
from ..ops import OPS, Weight
from ..plan import INPUT, Plan, PlanNode
from .base import MAX_ONNX_PARAMS, Backend, backend_error

OPSET = 19  # AveragePool's `dilations` arrived in opset 19
INPUT_NAME, OUTPUT_NAME = "input", "output"
BATCH = "N"


def _nchw(shape: tuple[int, ...]) -> list[Any]:
    return [BATCH, shape[2], shape[0], shape[1]] if len(shape) == 3 else [BATCH, *shape]


def _onnx_pads(pads: tuple[int, int, int, int]) -> list[int]:
    top, bottom, left, right = pads
    return [top, left, bottom, right]


class _Graph:
    """What the emitters add to: nodes, initializers, and fresh names for temporaries."""

    def __init__(self, rng: np.random.Generator):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.rng = rng
        self.names: dict[str, str] = {INPUT: INPUT_NAME}  # plan name -> tensor name

    def node(self, op_type: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def constant(self, name: str, value: np.ndarray) -> str:
        self.nodes.append(helper.make_node("Constant", [], [name], name=name,
                                           value=numpy_helper.from_array(value, name)))
        return name

    def weights(self, node: PlanNode) -> dict[str, str]:
        """An initializer for each of the node's weights (archc.ops), named as PyTorch names it
        (`conv1.weight`) and initialised as PyTorch does; -> {weight name: initializer name}."""
        return {name: self.parameter(f"{node.name}.{name}", self.initial(weight))
                for name, weight in node.weights().items()}

    def parameter(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value.astype(np.float32, copy=False), name))
        return name

    def initial(self, weight: Weight) -> np.ndarray:
        if not isinstance(weight.init, str):  # a constant (`layer_scale 1e-6`)
            return np.full(weight.shape, weight.init, np.float32)
        if weight.init == "ones":
            return np.ones(weight.shape, np.float32)
        if weight.init == "zeros":
            return np.zeros(weight.shape, np.float32)
        bound = 1.0 / math.sqrt(weight.fan_in)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's for conv and dense
        # drawn in float32 and scaled in place: a float64 draw of VGG's 411 MB fc1 weight would take 1.2 GB
        values = self.rng.random(weight.shape, dtype=np.float32)
        values *= np.float32(2 * bound)
        values -= np.float32(bound)
        return values


class OnnxBackend(Backend):
    name = "onnx"
    file_formats = ("onnx",)
    cannot_emit_code = "A430"

    # ------------------------------------------------------------ the Backend interface
    def build(self, plan: Plan, logits: bool = False, seed: int = 0) -> onnx.ModelProto:
        if plan.total_params > MAX_ONNX_PARAMS:  # refused before a byte is allocated, not after a minute of work
            raise backend_error("A302", f"`{plan.name}` has {plan.total_params:,} parameters, more than an ONNX file "
                                f"holds ({MAX_ONNX_PARAMS:,} float32 weights: protobuf writes at most 2 GiB)",
                                help="build it for PyTorch (`--backend torch`) or Keras instead")
        graph = _Graph(np.random.default_rng(seed))
        output = plan.model_output(logits)
        for node in plan.nodes:
            inputs = [graph.names[name] for name in node.inputs]
            graph.names[node.name] = self.emit(node, inputs, graph)
        graph.node("Identity", [graph.names[output]], OUTPUT_NAME, "output")
        out_shape = plan.input_shape if output == INPUT else plan.node(output).shape
        onnx_graph = helper.make_graph(
            graph.nodes, plan.name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, _nchw(plan.input_shape))],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, _nchw(out_shape))],
            initializer=graph.initializers,
        )
        model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="archc", producer_version=__version__)
        model.ir_version = min(model.ir_version, 9)  # readable by ONNX Runtime releases of the last two years
        if plan.description:
            model.doc_string = plan.description
        return model

    def write(self, plan: Plan, fmt: str, logits: bool = False) -> bytes:
        if fmt != "onnx":
            raise backend_error("A430", f"the onnx backend writes .onnx files, not `{fmt}`")
        return self.build(plan, logits).SerializeToString()

    def owns(self, model: Any) -> bool:
        return isinstance(model, onnx.ModelProto)

    def load_weights(self, model: onnx.ModelProto, source: Any) -> onnx.ModelProto:
        """Replace the model's initializers by name from `source`: a PyTorch module or state dict of the same
        spec (its keys are the same names), another ONNX model, or a {name: array} mapping."""
        theirs = _arrays_of(source)
        missing = [init.name for init in model.graph.initializer if init.name not in theirs]
        if missing:
            more = f" (and {len(missing) - 1} more weights missing)" if len(missing) > 1 else ""
            raise backend_error("A431", f"the source has no `{missing[0]}`{more}",
                         help="the source must be a model of the same spec: weights are matched by name")
        for init in model.graph.initializer:
            array = np.asarray(theirs[init.name], dtype=np.float32)
            if tuple(array.shape) != tuple(init.dims):
                raise backend_error("A431", f"`{init.name}` is {list(array.shape)} in the source but {list(init.dims)} "
                             "here", help="the source must be a model of the same spec and parameters")
            init.CopyFrom(numpy_helper.from_array(array, init.name))
        return model

    def transfer_weights(self, src: Any, dst: onnx.ModelProto) -> onnx.ModelProto:
        return self.load_weights(dst, src)

    # ------------------------------------------------------------ one emitter per op

    # One-liners: the ONNX operator, and its attributes (a string names the argument that gives the value).
    TABLE = {
        "flatten": ("Flatten", {"axis": 1}),  # (C, H, W) order, as PyTorch's
        "identity": ("Identity", {}),
        "relu": ("Relu", {}),
        "leaky_relu": ("LeakyRelu", {"alpha": "negative_slope"}),
        "elu": ("Elu", {"alpha": "alpha"}),
        "sigmoid": ("Sigmoid", {}),
        "tanh": ("Tanh", {}),
        "softmax": ("Softmax", {"axis": 1}),  # the channels, of maps or vectors
        "add": ("Sum", {}),
        "concat": ("Concat", {"axis": 1}),  # the channels, of maps or vectors
        "hardswish": ("HardSwish", {}),  # x * max(0, min(1, x / 6 + 1 / 2)) = x * relu6(x + 3) / 6
        "hardsigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),  # ONNX's default alpha is 0.2
        "stochastic_depth": ("Identity", {}),  # drop path is the identity at inference
    }

    def emit_table(self, entry: tuple[str, dict], node: PlanNode, inputs: list[str], g: _Graph) -> str:
        op_type, attributes = entry
        attrs = {k: getattr(node.args, v) if isinstance(v, str) else v for k, v in attributes.items()}
        return g.node(op_type, inputs, node.name, node.name, **attrs)

    def emit_conv(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        a = node.args
        return g.node("Conv", [inputs[0], *g.weights(node).values()], node.name, node.name,
                      kernel_shape=list(a.kernel), strides=list(a.stride),
                      dilations=list(a.dilation), pads=_onnx_pads(a.pads()), group=a.groups)

    def _pool(self, node: PlanNode, inputs: list[str], g: _Graph, op_type: str) -> str:
        a = node.args
        # ceil mode's overhang is more padding after the padding, never counted (no `ceil_mode`: runtimes have
        # differed on whether a last window may start in the right padding)
        pads = a.ceil_pads(*node.in_shapes[0][:2])
        if getattr(a, "count_pad", False) and a.pads() != (0, 0, 0, 0):
            # zero padding the average counts: explicit; then only the overhang is left, uncounted
            top, bottom, left, right = a.pads()
            counted = g.constant(f"{node.name}/counted_pads",
                                 np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
            inputs = [g.node("Pad", [inputs[0], counted], f"{node.name}/zero_padded", f"{node.name}/zero_pad")]
            pads = (0, pads[1] - bottom, 0, pads[3] - right)
        # ONNX Runtime wants each pad smaller than the kernel (not its dilated extent); pad explicitly beyond that
        native = max(pads[0], pads[1]) < a.kernel[0] and max(pads[2], pads[3]) < a.kernel[1]
        window = dict(kernel_shape=list(a.kernel), strides=list(a.stride), dilations=list(a.dilation))
        if native:
            extra = {"count_include_pad": 0} if op_type == "AveragePool" else {}
            return g.node(op_type, [inputs[0]], node.name, node.name, pads=_onnx_pads(pads), **window, **extra)
        top, bottom, left, right = pads
        pad_spec = g.constant(f"{node.name}/pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
        if op_type == "MaxPool":
            fill = g.constant(f"{node.name}/neg_inf", np.array(-np.inf, np.float32))
            padded = g.node("Pad", [inputs[0], pad_spec, fill], f"{node.name}/padded", f"{node.name}/pad")
            return g.node("MaxPool", [padded], node.name, node.name, **window)
        # average over real inputs only: window sums of x and of a ones-mask, both zero-padded
        padded = g.node("Pad", [inputs[0], pad_spec], f"{node.name}/padded", f"{node.name}/pad")
        # the ones-mask is made at run time from the input's shape: a constant of the input's size would put
        # H x W floats into the file (13 GB for a 30000x30000 input); with `count_pad` the input here is
        # already zero-padded, so the mask covers the counted padding too
        size = g.node("Shape", [inputs[0]], f"{node.name}/hw", f"{node.name}/hw", start=2)
        unit = g.constant(f"{node.name}/unit", np.array([1, 1], np.int64))
        shape = g.node("Concat", [unit, size], f"{node.name}/mask_shape", f"{node.name}/mask_shape", axis=0)
        ones = g.node("ConstantOfShape", [shape], f"{node.name}/ones", f"{node.name}/ones",
                      value=numpy_helper.from_array(np.array([1.0], np.float32)))
        mask = g.node("Pad", [ones, pad_spec], f"{node.name}/mask", f"{node.name}/pad_mask")
        sums = g.node("AveragePool", [padded], f"{node.name}/sums", f"{node.name}/sums", **window)
        counts = g.node("AveragePool", [mask], f"{node.name}/counts", f"{node.name}/counts", **window)
        return g.node("Div", [sums, counts], node.name, node.name)

    def emit_maxpool(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        return self._pool(node, inputs, g, "MaxPool")

    def emit_avgpool(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        return self._pool(node, inputs, g, "AveragePool")

    def _global(self, node: PlanNode, inputs: list[str], g: _Graph, op_type: str) -> str:
        if node.args.keepdims:  # N x C x 1 x 1 as ONNX's global pooling gives it
            return g.node(op_type, [inputs[0]], node.name, node.name)
        pooled = g.node(op_type, [inputs[0]], f"{node.name}/pooled", f"{node.name}/pool")
        return g.node("Flatten", [pooled], node.name, node.name, axis=1)

    def emit_globalavgpool(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        return self._global(node, inputs, g, "GlobalAveragePool")

    def emit_globalmaxpool(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        return self._global(node, inputs, g, "GlobalMaxPool")

    def emit_dense(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        return g.node("Gemm", [inputs[0], *g.weights(node).values()], node.name, node.name, transB=1)

    def emit_batchnorm(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        a = node.args
        c = node.in_shapes[0][-1]
        w = g.weights(node)
        scale = w.get("weight") or g.constant(f"{node.name}/unit_scale", np.ones(c, np.float32))
        shift = w.get("bias") or g.constant(f"{node.name}/zero_shift", np.zeros(c, np.float32))
        return g.node("BatchNormalization", [inputs[0], scale, shift, w["running_mean"], w["running_var"]],
                      node.name, node.name, epsilon=a.epsilon, momentum=a.momentum)

    def emit_lrn(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        a = node.args
        # Krizhevsky's alpha multiplies the plain sum; ONNX's is divided by the size first.
        attrs = dict(size=a.size, alpha=a.alpha * a.size, beta=a.beta, bias=a.k)
        if len(node.in_shapes[0]) == 3:
            return g.node("LRN", inputs, node.name, node.name, **attrs)
        axes = g.constant(f"{node.name}/axes", np.array([2, 3], np.int64))  # LRN wants N x C x H x W
        grown = g.node("Unsqueeze", [inputs[0], axes], f"{node.name}/nchw", f"{node.name}/unsqueeze")
        normed = g.node("LRN", [grown], f"{node.name}/lrn", f"{node.name}/lrn", **attrs)
        return g.node("Squeeze", [normed, axes], node.name, node.name)

    def emit_dropout(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        ratio = g.constant(f"{node.name}/ratio", np.array(node.args.rate, np.float32))
        return g.node("Dropout", [inputs[0], ratio], node.name, node.name)  # identity at inference

    # ---- channel split, channel shuffle, zero-padding shortcuts

    def emit_split(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        size = node.shape[-1]
        start = node.args.part * size
        starts = g.constant(f"{node.name}/starts", np.array([start], np.int64))
        ends = g.constant(f"{node.name}/ends", np.array([start + size], np.int64))
        axes = g.constant(f"{node.name}/axes", np.array([1], np.int64))
        return g.node("Slice", [inputs[0], starts, ends, axes], node.name, node.name)

    def emit_shuffle(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        h, w, c = node.in_shapes[0]
        groups = node.args.groups
        # N x C x H x W -> N x groups x C/groups x H x W (0 keeps the batch), swap the two, flatten back
        grouped_shape = g.constant(f"{node.name}/grouped_shape", np.array([0, groups, c // groups, h, w], np.int64))
        grouped = g.node("Reshape", [inputs[0], grouped_shape], f"{node.name}/grouped", f"{node.name}/group")
        swapped = g.node("Transpose", [grouped], f"{node.name}/swapped", f"{node.name}/transpose", perm=[0, 2, 1, 3, 4])
        shape = g.constant(f"{node.name}/shape", np.array([0, c, h, w], np.int64))
        return g.node("Reshape", [swapped, shape], node.name, node.name)

    def emit_zeropad(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        a = node.args
        h, w, c = node.in_shapes[0]
        x = inputs[0]
        if a.stride != (1, 1):  # rows and columns 0, s, 2s, ...
            starts = g.constant(f"{node.name}/starts", np.array([0, 0], np.int64))
            ends = g.constant(f"{node.name}/ends", np.array([h, w], np.int64))
            axes = g.constant(f"{node.name}/axes", np.array([2, 3], np.int64))
            steps = g.constant(f"{node.name}/steps", np.array(a.stride, np.int64))
            x = g.node("Slice", [x, starts, ends, axes, steps], f"{node.name}/subsampled", f"{node.name}/subsample")
        before, after = OPS["zeropad"].pads(a, c)
        pads = g.constant(f"{node.name}/pads", np.array([0, before, 0, 0, 0, after, 0, 0], np.int64))
        return g.node("Pad", [x, pads], node.name, node.name)

    def emit_relu6(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        low = g.constant(f"{node.name}/min", np.array(0.0, np.float32))
        high = g.constant(f"{node.name}/max", np.array(6.0, np.float32))
        return g.node("Clip", [inputs[0], low, high], node.name, node.name)

    # squeeze-excitation and mobile activations (issue 12)

    def emit_silu(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        gate = g.node("Sigmoid", [inputs[0]], f"{node.name}/sigmoid", f"{node.name}/sigmoid")
        return g.node("Mul", [inputs[0], gate], node.name, node.name)

    def emit_multiply(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        """Mul broadcasts as numpy does over N x C x H x W; a flat N x C input beside maps becomes N x C x 1 x 1."""
        xs = list(inputs)
        for i, shape in enumerate(node.in_shapes):
            if len(shape) < len(node.shape):
                axes = g.constant(f"{node.name}/axes{i + 1}", np.array([2, 3], np.int64))
                xs[i] = g.node("Unsqueeze", [xs[i], axes], f"{node.name}/in{i + 1}", f"{node.name}/unsqueeze{i + 1}")
        if len(xs) == 1:
            return g.node("Identity", xs, node.name, node.name)
        out = xs[0]
        for i, other in enumerate(xs[1:], 2):
            last = i == len(xs)
            out = g.node("Mul", [out, other], node.name if last else f"{node.name}/product{i}",
                         node.name if last else f"{node.name}/mul{i}")
        return out


    # ---- resampling and U-Net's merge (issue 12)

    def emit_convtranspose(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        a = node.args
        ph, pw = a.crop()
        return g.node("ConvTranspose", [inputs[0], *g.weights(node).values()], node.name, node.name,
                      kernel_shape=list(a.kernel), strides=list(a.stride), pads=[ph, pw, ph, pw],
                      output_padding=list(a.output_padding))

    def emit_upsample(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        a = node.args
        # by the language's table (archc.ops.UpsampleArgs.source_index): Gather rows and columns, interpolate.
        # (Resize would need the batch size among its `sizes`, or float scales, and ONNX's shape inference
        # loses the symbolic batch through it.)
        (h, w, _), (oh, ow, _) = node.in_shapes[0], node.shape
        x = inputs[0]
        for axis, table, tag in ((2, a.source_index(oh, h), "rows"), (3, a.source_index(ow, w), "cols")):
            out = node.name if axis == 3 else f"{node.name}/{tag}"
            low = g.constant(f"{node.name}/{tag}_low", np.array([r[0] for r in table], np.int64))
            if all(r[2] == 0.0 for r in table):
                x = g.node("Gather", [x, low], out, out, axis=axis)
                continue
            high = g.constant(f"{node.name}/{tag}_high", np.array([r[1] for r in table], np.int64))
            shape = (len(table), 1) if axis == 2 else (len(table),)
            t = g.constant(f"{node.name}/{tag}_t", np.array([r[2] for r in table], np.float32).reshape(shape))
            lo = g.node("Gather", [x, low], f"{out}/low", f"{out}/low", axis=axis)
            hi = g.node("Gather", [x, high], f"{out}/high", f"{out}/high", axis=axis)
            step = g.node("Mul", [g.node("Sub", [hi, lo], f"{out}/diff", f"{out}/diff"), t], f"{out}/step",
                          f"{out}/step")
            x = g.node("Add", [lo, step], out, out)
        return x

    def emit_cropconcat(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        from ..ops import CropConcat

        cropped = []
        axes = g.constant(f"{node.name}/axes", np.array([2, 3], np.int64))
        for i, (x, shape, (top, left)) in enumerate(zip(inputs, node.in_shapes, CropConcat.crops(
                list(node.in_shapes), node.shape), strict=True)):
            if shape[:2] != node.shape[:2]:
                starts = g.constant(f"{node.name}/starts{i + 1}", np.array([top, left], np.int64))
                ends = g.constant(f"{node.name}/ends{i + 1}",
                                  np.array([top + node.shape[0], left + node.shape[1]], np.int64))
                x = g.node("Slice", [x, starts, ends, axes], f"{node.name}/crop{i + 1}", f"{node.name}/crop{i + 1}")
            cropped.append(x)
        return g.node("Concat", cropped, node.name, node.name, axis=1)

    # ---- ConvNeXt's kinds (issue 12)

    def emit_gelu(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        # opset 19 has no Gelu (it arrived in 20): written out from Erf / Tanh, as torch defines each form
        x, n = inputs[0], node.name
        half = g.constant(f"{n}/half", np.array(0.5, np.float32))
        one = g.constant(f"{n}/one", np.array(1.0, np.float32))
        if node.args.approximate == "none":
            root2 = g.constant(f"{n}/sqrt2", np.array(math.sqrt(2.0), np.float32))
            inner = g.node("Div", [x, root2], f"{n}/scaled", f"{n}/scale")
            curve = g.node("Erf", [inner], f"{n}/erf", f"{n}/erf")
        else:  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
            coef = g.constant(f"{n}/coef", np.array(0.044715, np.float32))
            three = g.constant(f"{n}/three", np.array(3.0, np.float32))
            root = g.constant(f"{n}/sqrt_2_pi", np.array(math.sqrt(2.0 / math.pi), np.float32))
            cube = g.node("Pow", [x, three], f"{n}/cube", f"{n}/cube")
            inner = g.node("Add", [x, g.node("Mul", [cube, coef], f"{n}/cubic", f"{n}/cubic")], f"{n}/sum",
                           f"{n}/sum")
            curve = g.node("Tanh", [g.node("Mul", [inner, root], f"{n}/arg", f"{n}/arg")], f"{n}/tanh", f"{n}/tanh")
        gate = g.node("Mul", [g.node("Add", [curve, one], f"{n}/cdf2", f"{n}/cdf2"), half], f"{n}/cdf", f"{n}/cdf")
        return g.node("Mul", [x, gate], n, n)

    def emit_layernorm(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        w = g.weights(node)
        attrs = dict(axis=-1, epsilon=node.args.epsilon)
        if len(node.in_shapes[0]) == 1:
            return g.node("LayerNormalization", [inputs[0], w["weight"], w["bias"]], node.name, node.name, **attrs)
        # over the channels of each position: N x H x W x C, normalise the last axis, back to N x C x H x W
        nhwc = g.node("Transpose", [inputs[0]], f"{node.name}/nhwc", f"{node.name}/to_nhwc", perm=[0, 2, 3, 1])
        normed = g.node("LayerNormalization", [nhwc, w["weight"], w["bias"]], f"{node.name}/normed",
                        f"{node.name}/norm", **attrs)
        return g.node("Transpose", [normed], node.name, node.name, perm=[0, 3, 1, 2])

    def emit_layer_scale(self, node: PlanNode, inputs: list[str], g: _Graph) -> str:
        return g.node("Mul", [inputs[0], g.weights(node)["weight"]], node.name, node.name)  # C x 1 x 1 broadcasts


def _arrays_of(source: Any) -> dict[str, np.ndarray]:
    """{name: array} from an ONNX model, a PyTorch module or state dict, or a mapping of arrays."""
    if isinstance(source, onnx.ModelProto):
        return {init.name: numpy_helper.to_array(init) for init in source.graph.initializer}
    if hasattr(source, "state_dict") and callable(source.state_dict):
        source = source.state_dict()
    if hasattr(source, "items"):
        out = {}
        for name, value in source.items():
            if hasattr(value, "detach"):  # a torch tensor, without importing torch here
                value = value.detach().cpu().numpy()
            out[str(name)] = np.asarray(value)
        return out
    raise backend_error("A431", f"the onnx backend cannot read weights from a `{type(source).__name__}`",
                 help="pass an ONNX model, a PyTorch module or state dict, or a {name: array} mapping")
