"""The backend registry. A backend turns a Plan into a framework's model.

Built-in backends are named here as "module:Class" strings and imported only when asked for, so that
`archc check` never imports a framework. Other packages add backends through the `archc.backends`
entry-point group (`name = "package.module:Class"`).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..diagnostics import ArchcError, Diagnostic, did_you_mean

BUILTIN: dict[str, str] = {
    "torch": "archc.backends.torch:TorchBackend",
    "keras": "archc.backends.keras:KerasBackend",
    "onnx": "archc.backends.onnx:OnnxBackend",
}

_loaded: dict[str, Any] = {}


def available() -> dict[str, str]:
    """Backend name -> "module:Class", built-ins and entry points together."""
    found = dict(BUILTIN)
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="archc.backends"):
            found.setdefault(ep.name, ep.value)
    except Exception:  # noqa: BLE001 - a broken third-party install must not break the built-ins
        pass
    return found


def get_backend(name: str):
    if name in _loaded:
        return _loaded[name]
    known = available()
    if name not in known:
        raise ArchcError([Diagnostic("A402", f"unknown backend `{name}`", None,
                                     help=did_you_mean(name, known) or f"the backends are {', '.join(sorted(known))}")])
    module_name, _, cls_name = known[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        from ..codes import install_hint

        extra = name if name in BUILTIN else "all"  # a plug-in's own package is its documentation's to name
        raise ArchcError([Diagnostic("A403", f"the `{name}` backend needs a package that is not installed: "
                                     f"{e.name or e}", None, help=install_hint(extra))]) from None
    backend = getattr(module, cls_name)()
    _loaded[name] = backend
    return backend


def backend_of(model: Any):
    """The backend whose models `model` is one of (for load_weights / transfer_weights)."""
    module = type(model).__module__ or ""
    for name in available():
        if name in _loaded and _loaded[name].owns(model):
            return _loaded[name]
    if module.startswith("torch") or hasattr(model, "state_dict"):
        return get_backend("torch")
    if module.startswith(("keras", "tensorflow")) or hasattr(model, "get_weights"):
        return get_backend("keras")
    if module.startswith("onnx"):
        return get_backend("onnx")
    raise ArchcError([Diagnostic("A402", f"no backend knows models of type `{type(model).__name__}`", None)])
