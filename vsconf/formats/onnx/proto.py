"""onnx's protobuf messages and operator schemas, loaded without ``import onnx``.

Reading and planning a model need two parts of the installed onnx: its generated message
classes (``onnx/onnx_ml_pb2.py``) and its operator schemas (the C++ extension
``onnx_cpp2py_export``, whose ``defs`` is what ``onnx.defs`` re-exports).  ``import onnx``
runs the package's ``__init__``, which loads much more -- ml_dtypes among it, about a
second with ml_dtypes 0.7 -- so this module loads those two files by themselves, under
the names onnx gives them: a later ``import onnx`` finds them in ``sys.modules`` and uses
the very same classes.  When onnx is loaded already, or its files are not where onnx
keeps them, it is plain ``import onnx``.

``proto.ModelProto``, ``proto.TensorProto``... are onnx's classes; ``proto.defs`` has
``get_schema`` and ``get_all_schemas_with_history``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

_MESSAGES = frozenset(
    {
        "AttributeProto", "FunctionProto", "GraphProto", "ModelProto", "NodeProto", "OperatorSetIdProto",
        "SparseTensorProto", "StringStringEntryProto", "TensorProto", "TensorShapeProto", "TrainingInfoProto",
        "TypeProto", "ValueInfoProto",
    }
)  # fmt: skip
_loaded: tuple[ModuleType, Any] | None = None
_LOCK = threading.Lock()  # two threads must not both run the generated module


def _load(name: str, path: Path, loader: Any = None) -> ModuleType:
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _light() -> tuple[ModuleType, Any] | None:
    """The message module and the schemas' module, from onnx's files alone; None if not found."""
    spec = importlib.util.find_spec("onnx")  # finds the package without running it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in map(Path, folders):
        messages = folder / "onnx_ml_pb2.py"
        extensions = [folder / f"onnx_cpp2py_export{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
        extension = next((path for path in extensions if path.is_file()), None)
        if messages.is_file() and extension is not None:
            name = "onnx.onnx_cpp2py_export"
            compiled = _load(name, extension, importlib.machinery.ExtensionFileLoader(name, str(extension)))
            return _load("onnx.onnx_ml_pb2", messages), compiled.defs
    return None


def modules() -> tuple[ModuleType, Any]:
    """(the module holding onnx's message classes, the module holding its schema functions)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _LOCK:
        if _loaded is None:
            light = None if "onnx" in sys.modules else _light()
            if light is None:
                import onnx
                import onnx.defs

                light = (onnx, onnx.defs)
            _loaded = light
    return _loaded


def __getattr__(name: str) -> Any:
    if name in _MESSAGES:
        return getattr(modules()[0], name)
    if name == "defs":
        return modules()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
