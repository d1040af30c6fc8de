"""archc: an architecture-spec compiler for convolutional networks.

    plan = archc.check("specs/resnet50.arch")                 # shapes, parameters, MACs
    model = archc.compile("specs/resnet50.arch", backend="torch", classes=10)
"""

from __future__ import annotations

from typing import Any

from ._version import __version__  # noqa: F401 - the package's version, re-exported
from .diagnostics import ArchcError, Diagnostic

__all__ = ["ArchcError", "Diagnostic", "load", "check", "compile", "load_weights", "transfer_weights",
           "import_model"]


def load(spec: Any = None, allow: list | None = None, *, text: str | None = None):
    """A spec path, spec text (`.arch` or JSON) or IR -> a self-contained `archc.ir.Spec`: the blocks it
    imports are copied in (its own win, as in the file) and its imports emptied, so it can be checked,
    compiled or saved as JSON anywhere.

    A `pathlib.Path` is always read as a file and `text=` is always spec text. A plain string is a file when
    it names one that exists (or is one line ending in `.arch`/`.json`), and spec text otherwise."""
    loaded = _load_any(spec, allow, text)
    own = {block.name for block in loaded.spec.blocks}
    imported = [block for name, block in loaded.blocks.items() if name not in own]
    return loaded.spec.model_copy(update={"blocks": imported + list(loaded.spec.blocks), "imports": []})


def _overrides(loaded, overrides: dict[str, Any]) -> dict[str, Any]:
    from .diagnostics import did_you_mean
    from .loader import parse_value

    known = {p.name for p in loaded.spec.params} | {"input"}
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in known:
            hint = did_you_mean(name, known)
            raise ArchcError([Diagnostic("A108", f"the spec has no parameter `{name}`", None,
                                         help=hint or f"its parameters are {', '.join(sorted(known))}")],
                             loaded.sources)
        if isinstance(value, str):
            value = parse_value(value, name)
        if isinstance(value, list):
            value = tuple(value)
        out[name] = value
    return out


def _load_any(spec: Any, allow: list | None, text: str | None):
    from .loader import load as _load

    try:
        return _load(spec, allow, text=text)
    except RecursionError:
        raise _too_deep() from None


def _too_deep() -> ArchcError:
    return ArchcError([Diagnostic("A301", "the spec nests too deeply to process", None)])


def check(spec: Any = None, *, text: str | None = None, max_layers: int | None = None, allow: list | None = None,
          **overrides: Any):
    """Run inference: -> `archc.plan.Plan` with every layer's name, shape, parameters and MACs.

    `spec` is read as `archc.load` reads it; `text=` is always spec text. Other keyword arguments override the
    spec's network parameters (`classes=10`, `input=(32, 32, 3)`). Raises ArchcError carrying every diagnostic.
    """
    from .infer import MAX_LAYERS, infer
    loaded = _load_any(spec, allow, text)
    try:
        return infer(loaded.spec, loaded.blocks, _overrides(loaded, overrides), loaded.sources, loaded.file,
                     max_layers=max_layers or MAX_LAYERS)
    except RecursionError:
        raise _too_deep() from None


def compile(spec: Any = None, backend: str = "torch", *, text: str | None = None, logits: bool = False,
            **overrides: Any):
    """Build the spec's model with a backend (`torch`, `keras`, or a plug-in's name)."""
    from .backends import get_backend

    plan = spec if _is_plan(spec) else check(spec, text=text, **overrides)
    return get_backend(backend).build(plan, logits=logits)


def _is_plan(obj: Any) -> bool:
    from .plan import Plan

    return isinstance(obj, Plan)


def load_weights(model: Any, source: Any):
    """Copy parameters and buffers from `source`, a model of the same architecture, into `model`; returns `model`.

    Into a compiled PyTorch spec from a PyTorch module (torchvision's, a hand-written one, another compiled
    spec), layers are matched through the structure: each layer with weights pairs with the source's layer at
    the same place in the data flow with the same shapes, whatever order either creates its modules in
    (docs/matching.md). From a state dict or the path of a saved one, tensors are copied by position. Nothing is
    copied unless everything fits; otherwise ArchcError A406 names the spec's layer, its line and the source's
    module. ONNX models take weights by name, Keras models from another Keras model by position or from a
    compiled PyTorch model of the same spec."""
    from .backends import backend_of

    return backend_of(model).load_weights(model, source)


def transfer_weights(src: Any, dst: Any):
    """Move weights between two backends' models of one spec (PyTorch <-> Keras)."""
    from .backends import backend_of, transfer

    if transfer.is_torch_keras_pair(src, dst):  # the layouts of both frameworks are known in one place
        return transfer.transfer_weights(src, dst)
    return backend_of(dst).transfer_weights(src, dst)


def import_model(obj: Any, input_shape: Any = None, *, partial: bool = False) -> str:
    """A model back into the spec a person would have written (docs/importing.md): -> `.arch` text, checked to
    be the same network. `obj` is a PyTorch module, a Keras model, an ONNX model, a path (`.onnx`, `.keras`,
    `.h5`, `.arch`, `.json`) or `"module:callable"`; `input_shape` the input's size in archc's layout, HxWxC
    (`(224, 224, 3)` or `"224x224x3"`), where the model does not say it. What the language cannot express raises
    ArchcError A501 naming the operation and where it sits; `partial=True` writes what comes before it."""
    from .decompile import import_model as _import

    if isinstance(input_shape, str):
        from .loader import parse_value

        input_shape = parse_value(input_shape, "input")
    if input_shape is not None:
        input_shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    return _import(obj, input_shape, partial=partial)
