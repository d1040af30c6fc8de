"""Readers: a framework's model as archc's own structures, for `archc.load_weights` (an archc.match.Graph, see
`torch.read_module`) and for `archc import` (an archc.flat.FlatNetwork: `read_flat(source, input_shape)` in
`torch.py`, `onnx.py` and `keras.py`). Each reader imports its framework when called, never at import time;
this module dispatches a source to its reader and imports nothing heavy itself (`archc check` must not load
torch or tensorflow).

`read_source` takes what `archc import SOURCE` and `archc.import_model(obj)` take:
  * `module:callable` (`torchvision.models:resnet50`): the module is imported and the callable called with no
    arguments; the object it returns is read as below;
  * a file: `.onnx` (readers.onnx), `.keras` / `.h5` (readers.keras), `.arch` / `.json` (a spec: its plan as a
    flat network, useful for tests and for seeing how archc would write a spec);
  * an object: a torch `nn.Module` (readers.torch), a Keras model (readers.keras), an ONNX `ModelProto`
    (readers.onnx), an archc Plan or spec IR.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..diagnostics import ArchcError, Diagnostic
from ..flat import FlatNetwork, Unsupported

# reader -> (its module, the extra that installs its framework)
READERS = {"torch": ("archc.readers.torch", "torch"), "onnx": ("archc.readers.onnx", "onnx"),
           "keras": ("archc.readers.keras", "keras")}
FILE_READERS = {".onnx": "onnx", ".keras": "keras", ".h5": "keras"}
SPEC_FILES = (".arch", ".json")


def _error(code: str, message: str, help: str | None = None) -> ArchcError:
    return ArchcError([Diagnostic(code, message, None, help=help)])


def reader_of(obj: Any) -> str | None:
    """Which reader reads an in-memory model, from its class's module (without importing any framework)."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module.startswith("torch.") or module == "torch":
            return "torch"
        if module.split(".")[0] in ("keras", "tf_keras") or module.startswith("tensorflow."):
            return "keras"
        if module.split(".")[0] == "onnx":
            return "onnx"
    return None


def read_flat(reader: str, source: Any, input_shape: tuple[int, ...] | None, what: str) -> FlatNetwork:
    """Call `archc.readers.READER.read_flat(source, input_shape)`; a reader or framework that is missing is a
    diagnostic with the line that installs it."""
    module_name, extra = READERS[reader]
    from ..codes import install_hint

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise _error("A502", f"archc cannot read {reader} models yet ({what})",
                         help="the readers archc has are listed in docs/importing.md") from None
        raise _error("A403", f"reading {what} needs a package that is not installed: {e.name or e}",
                     help=install_hint(extra)) from None
    except ImportError as e:
        raise _error("A403", f"reading {what} needs a package that is not installed: {e.name or e}",
                     help=install_hint(extra)) from None
    read = getattr(module, "read_flat", None)
    if read is None:
        raise _error("A502", f"archc cannot read {reader} models into a spec yet ({what})",
                     help="docs/importing.md lists what `archc import` reads")
    try:
        net = read(source, input_shape)
    except (Unsupported, ArchcError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - a malformed source may break a reader anywhere: say so, with where
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}" if str(e) else type(e).__name__
        raise _error("A503", f"archc could not read {what}: {reason}",
                     help="the source may be malformed (for ONNX, `onnx.checker.check_model` says); if it loads "
                          "and runs in its framework, this is a bug in archc's reader: please report it") from None
    if not net.source:
        net.source = what
    return net


def read_source(source: Any, input_shape: tuple[int, ...] | None = None) -> FlatNetwork:
    """Any source `archc import` takes (see the module's docstring) -> its FlatNetwork. Raises ArchcError;
    a reader's archc.flat.Unsupported passes through (the caller decides about `--partial`)."""
    if isinstance(source, (str, Path)):
        return _read_named(source, input_shape)
    return _read_object(source, input_shape, type(source).__name__)


def _read_named(source: str | Path, input_shape: tuple[int, ...] | None) -> FlatNetwork:
    text = str(source)
    path = Path(text)
    suffix = path.suffix.lower()
    if isinstance(source, Path) or suffix in FILE_READERS or suffix in SPEC_FILES or path.exists():
        if not path.is_file():
            raise _error("A004", f"cannot read `{text}`: no such file",
                         help="SOURCE is a file (.onnx, .keras, .h5, .arch, .json) or `module:callable`")
        if suffix in SPEC_FILES:
            return _read_spec(path, input_shape)
        if suffix not in FILE_READERS:
            raise _error("A502", f"archc cannot tell what kind of model `{text}` is from its extension",
                         help="archc import reads .onnx, .keras, .h5, .arch and .json files, or `module:callable`")
        return read_flat(FILE_READERS[suffix], text, input_shape, text)
    if ":" not in text:
        raise _error("A503", f"`{text}` is neither a file nor `module:callable`",
                     help="for example `torchvision.models:resnet50` or `model.onnx`")
    return _read_object(_call(text), input_shape, text)


def _call(text: str) -> Any:
    """Import `module` and call `callable` (a dotted attribute path) with no arguments."""
    module_name, _, attr = text.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any failure of the user's import is reported, never a traceback
        from ..codes import install_hint

        if isinstance(e, ModuleNotFoundError) and e.name in ("torch", "tensorflow", "keras", "onnx"):
            extra = {"tensorflow": "keras"}.get(e.name, e.name)
            raise _error("A403", f"importing `{module_name}` needs a package that is not installed: {e.name}",
                         help=install_hint(extra)) from None
        raise _error("A503", f"cannot import `{module_name}`: {type(e).__name__}: {e}",
                     help="SOURCE `module:callable` names an importable module (on PYTHONPATH)") from None
    target: Any = module
    for part in attr.split("."):
        if not part or not hasattr(target, part):
            raise _error("A503", f"`{module_name}` has no `{attr}`",
                         help="SOURCE `module:callable` names a function or class that builds the model") from None
        target = getattr(target, part)
    if not callable(target):
        raise _error("A503", f"`{text}` is not callable", help="name a function or class that builds the model")
    from ..flat import Unsupported

    try:
        return target()
    except (ArchcError, Unsupported):  # archc's own words about the model pass through
        raise
    except Exception as e:  # noqa: BLE001
        raise _error("A503", f"calling `{text}()` failed: {type(e).__name__}: {e}",
                     help="the callable is called with no arguments; wrap it in a function that passes them") \
            from None


def _read_object(obj: Any, input_shape: tuple[int, ...] | None, what: str) -> FlatNetwork:
    from ..flat import flat_of_plan
    from ..ir import Spec
    from ..plan import Plan

    if isinstance(obj, FlatNetwork):
        return obj
    if isinstance(obj, Plan):
        return flat_of_plan(obj)
    if isinstance(obj, Spec):
        from .. import check

        overrides = {"input": input_shape} if input_shape else {}
        return flat_of_plan(check(obj, **overrides))
    reader = reader_of(obj)
    if reader is None:
        raise _error("A502", f"archc cannot read a `{type(obj).__module__}.{type(obj).__qualname__}` ({what})",
                     help="archc import reads PyTorch modules, Keras models and ONNX models")
    return read_flat(reader, obj, input_shape, what)


def _read_spec(path: Path, input_shape: tuple[int, ...] | None) -> FlatNetwork:
    from .. import check
    from ..flat import flat_of_plan

    overrides = {"input": input_shape} if input_shape else {}
    net = flat_of_plan(check(path, **overrides))
    net.source = str(path)
    return net
