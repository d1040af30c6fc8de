"""What the properties share: plan invariants, span-free IR, a watchdog for hangs, CLI runs without tracebacks."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from archc.cli import _strip_spans
from archc.diagnostics import ArchcError
from archc.plan import INPUT, Plan

# Every check of a small spec takes milliseconds; this is the bound past which it counts as a hang.
HANG_SECONDS = float(os.environ.get("ARCHC_FUZZ_TIMEOUT", "5"))


class Hang(Exception):
    pass


@contextlib.contextmanager
def within(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail (instead of blocking the suite) when the body runs longer than `seconds`: SIGALRM, main thread."""
    def expire(signum, frame):
        raise Hang(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def ir_data(spec) -> dict:
    """The IR as plain data without source positions: what two equal specs share whatever their layout."""
    return _strip_spans(spec.model_dump(mode="json", exclude_none=True))


def plan_data(plan: Plan) -> dict:
    data = plan.to_json()
    data.pop("file")
    for layer in data["layers"]:
        layer.pop("span")  # where the layer was written: the text or its JSON twin
    return data


def check_plan_invariants(plan: Plan) -> None:
    """What every Plan must satisfy, whatever the spec."""
    names = [n.name for n in plan.nodes]
    assert len(set(names)) == len(names), f"duplicate node names: {sorted(n for n in names if names.count(n) > 1)}"
    assert INPUT not in names
    shapes = {INPUT: plan.input_shape}
    for node in plan.nodes:
        assert node.inputs, node.name
        for producer, in_shape in zip(node.inputs, node.in_shapes, strict=True):
            assert producer in shapes, f"{node.name} reads {producer}, which comes later or not at all"
            assert shapes[producer] == in_shape, f"{node.name}: {in_shape} in, but {producer} gives {shapes[producer]}"
        assert all(isinstance(d, int) and d >= 1 for d in node.shape), (node.name, node.shape)
        assert len(node.shape) in (1, 3)
        assert node.trainable >= 0 and node.non_trainable >= 0 and node.macs >= 0
        if node.op in ("conv", "dense"):
            assert node.trainable > 0
        shapes[node.name] = node.shape
        # Keras joins the path with `_`; a node whose name contains no `.` must still be a valid identifier path.
        assert all(part for part in node.name.split(".")), node.name
    assert plan.output in shapes
    assert plan.total_params == sum(n.trainable + n.non_trainable for n in plan.nodes)
    assert plan.macs == sum(n.macs for n in plan.nodes)
    stages = plan.to_json()["stages"]
    assert sum(s["params"] for s in stages) == plan.total_params


def check_error(error: ArchcError, text: str, *, positioned: bool = False) -> None:
    """A spec error renders (text and JSON) and points inside the source it came from."""
    assert error.diagnostics
    rendered = error.render()
    assert "Traceback" not in rendered
    from archc.diagnostics import render_json

    render_json(error.diagnostics)
    for diag in error.diagnostics:
        assert diag.code.startswith("A") and diag.message, diag
        if positioned:
            assert diag.span is not None, f"no position: {diag.code} {diag.message}"
        if diag.span is not None:
            # A span may point into an imported file: measure it against that file's text.
            source = error.sources.get(diag.span.file or "", text)
            line_count = len(source.splitlines()) + 1
            assert 1 <= diag.span.line <= line_count, (diag.span, line_count)
            assert diag.span.column >= 1
