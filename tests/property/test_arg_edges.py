"""`check` accepts exactly what every backend builds: each registered kind (read from archc.ops.OPS, so a new kind
is covered the day it lands) is checked with argument values at and just past the edges of every argument's
declared range, and whatever `check` accepts must build and run in PyTorch, Keras and ONNX Runtime.

The edges come from the argument models themselves: a field's pydantic bounds (`ge`, `le`, ...), its Literal
words, bool's two values, and for sizes the limits in archc.ops (1, 0 for padding, MAX_DIM). A value just outside
a range is drawn too: if `check` let it through, the backends say so here.
"""

from __future__ import annotations

import math
import types
import typing

import annotated_types
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import PROFILE, THOROUGH_FACTOR
from support import within

import archc
from archc.diagnostics import ArchcError
from archc.ops import MAX_DIM, MAX_REAL, OPS

pytest.importorskip("torch")
pytest.importorskip("keras")
pytest.importorskip("onnxruntime")

INPUTS = ((5, 7, 3), (1, 1, 2), (4, 4, 1), (9,))  # feature maps, a 1x1 one, and a flat vector
RUN_ELEMENTS = 200_000  # a plan whose tensors hold more is built (weights and graph) but not run
BUILD_PARAMS = 10_000_000  # a plan with more is not built here: `archc build` refuses it by --max-params (A302)
EXAMPLES = 6 if PROFILE == "ci" else 6 * THOROUGH_FACTOR  # per kind; most drawn values are refused in microseconds

_INTS = (-1, 0, 1, 2, 3, 4, 5, MAX_DIM - 1, MAX_DIM, MAX_DIM + 1)
_REALS = (-1e308, -MAX_REAL * 1.5, -MAX_REAL, -1.0, 0.0, 1e-300, 1e-12, 1e-5, 0.5, 0.999, 1.0, 2.0, MAX_REAL,
          MAX_REAL * 1.5, 1e308)


def _bounds(info) -> list:
    """The values at and just past each bound the field declares."""
    out = []
    for m in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            bound = getattr(m, attr, None)
            if bound is None:
                continue
            if isinstance(bound, int):
                out += [bound - 1, bound, bound + 1]
            else:
                out += [bound, math.nextafter(bound, -math.inf), math.nextafter(bound, math.inf)]
    return out


def _edges(annotation, info) -> list:
    """Candidate values for a field from its type: edges of numbers, every word of a Literal, both bools."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        fake = types.SimpleNamespace(metadata=[m for m in meta if isinstance(m, annotated_types.BaseMetadata)]
                                     + [x for m in meta for x in getattr(m, "metadata", [])])
        return _edges(base, fake) + _bounds(fake)
    if origin in (typing.Union, types.UnionType):
        return [v for arg in typing.get_args(annotation) for v in _edges(arg, info)]
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    if origin is tuple:
        parts = typing.get_args(annotation)
        singles = _edges(parts[0], info)
        return [tuple([v] * len(parts)) for v in singles] + [tuple(singles[(i * 3 + j) % len(singles)]
                                                                   for j in range(len(parts)))
                                                             for i in range(len(singles))]
    if annotation is type(None):
        return [None]
    if annotation is bool:
        return [True, False]
    if annotation is int:
        return list(_INTS) + _bounds(info)
    if annotation is float:
        return list(_REALS) + _bounds(info)
    return []


def _write(value) -> str:
    """A value as the language writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "(" + ", ".join(_write(v) for v in value) + ")"
    if isinstance(value, str):
        return value
    return repr(value)


@st.composite
def layer_lines(draw, name: str) -> str:
    op = OPS[name]
    shape = draw(st.sampled_from(INPUTS))
    args = []
    for key, info in op.args.model_fields.items():
        candidates = [v for v in _edges(info.annotation, info) if not (isinstance(v, float) and not math.isfinite(v))]
        if not candidates:
            continue
        if info.is_required() or draw(st.booleans()):
            args.append(f"{key}={_write(draw(st.sampled_from(candidates)))}")
    head = "input " + "x".join(map(str, shape))
    if op.inputs == "many":
        return f"{head}\n{name}:\n  a: identity\n  b: identity\n"
    return f"{head}\n{name} {', '.join(args)}\n".replace(f"{name} \n", f"{name}\n")


def _largest(plan) -> int:
    """The most values a tensor of the plan holds, padded inputs of window layers included."""
    sizes = [math.prod(s) for s in [plan.input_shape, *(n.shape for n in plan.nodes)]]
    for n in plan.nodes:
        if hasattr(n.args, "pads") and len(n.in_shapes[0]) == 3:
            top, bottom, left, right = n.args.pads()
            h, w, c = n.in_shapes[0]
            sizes.append((h + top + bottom) * (w + left + right) * c)
    return max(sizes)


def _torch_run(plan, x: np.ndarray, run: bool) -> None:
    import torch

    model = archc.compile(plan, backend="torch").eval()
    if run:
        nchw = torch.from_numpy(np.moveaxis(x, -1, 1).copy() if x.ndim == 4 else x)
        with torch.no_grad():
            out = model(nchw)
        assert tuple(out.shape[1:]) == _channels_first(plan.output_shape)


def _keras_run(plan, x: np.ndarray, run: bool) -> None:
    model = archc.compile(plan, backend="keras")
    if run:
        out = np.asarray(model(x, training=False))
        assert tuple(out.shape[1:]) == tuple(plan.output_shape)


def _onnx_run(plan, x: np.ndarray, run: bool) -> None:
    import onnxruntime as ort

    model = archc.compile(plan, backend="onnx")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    if run:
        feed = np.moveaxis(x, -1, 1).copy() if x.ndim == 4 else x
        out = session.run(None, {"input": feed})[0]
        assert tuple(out.shape[1:]) == _channels_first(plan.output_shape)


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


@pytest.mark.parametrize("kind", sorted(OPS))
def test_what_check_accepts_every_backend_builds_and_runs(kind):
    @settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(layer_lines(kind))
    def accepted_means_built(text: str) -> None:
        try:
            with within(10):
                plan = archc.check(text)
        except ArchcError as e:
            assert all(d.code.startswith(("A1", "A2", "A3")) for d in e.diagnostics), e.render()
            return
        if plan.total_params > BUILD_PARAMS:
            return
        run = _largest(plan) <= RUN_ELEMENTS
        x = np.random.default_rng(0).standard_normal((2, *plan.input_shape)).astype(np.float32)
        for build in (_torch_run, _keras_run, _onnx_run):
            try:
                build(plan, x, run)
            except Exception as e:  # noqa: BLE001 - any failure of an accepted spec is the finding
                raise AssertionError(f"{build.__name__[1:]} failed on an accepted spec:\n{text}\n{e!r}"[:2000]) from e

    accepted_means_built()


@pytest.mark.parametrize("kind", sorted(OPS))
def test_every_argument_has_edges_to_draw(kind):
    """A new argument type the edge finder cannot read would silently go untested."""
    for key, info in OPS[kind].args.model_fields.items():
        assert _edges(info.annotation, info), f"`{kind}`'s argument `{key}` has no values to draw"
