"""ONNX models, in rooms: ``reader`` (the file's structure and where each tensor's bytes
lie, without loading them; ``wire``: protobuf's wire format), ``checks`` (what a tensor
declares against what it stores), ``graph`` and ``optable`` (consumers, look-through and
fans, over an index of the graph), ``rewrite`` (``--materialize`` and ``--untie``, model to
model), ``writer`` (the output, streamed tensor by tensor) and ``model`` (the adapter,
:class:`OnnxModel`, that ties them together)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["OnnxModel"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that `from vsconf.formats.onnx import proto` (spec checks need the
    # operator schemas) does not load the whole adapter.
    if name == "OnnxModel":
        from vsconf.formats.onnx.model import OnnxModel

        return OnnxModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from vsconf.formats.onnx.model import OnnxModel  # noqa: F401
