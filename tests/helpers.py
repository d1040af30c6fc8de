"""Shared test helpers."""

from __future__ import annotations

from archc import ir


def strip_spans(data):
    """An IR dump without positions, so whitespace does not churn comparisons."""
    if isinstance(data, ir.Node):
        data = data.model_dump(mode="json")
    if isinstance(data, dict):
        return {k: strip_spans(v) for k, v in data.items() if k not in ("span", "input_span")}
    if isinstance(data, list):
        return [strip_spans(v) for v in data]
    return data
