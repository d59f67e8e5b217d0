"""ONNX models, in rooms: ``reader`` (the file's structure and where each tensor's bytes
lie, without loading them; ``wire``: protobuf's wire format), ``checks`` (what a tensor
declares against what it stores), ``graph`` and ``optable`` (consumers, look-through and
fans, over an index of the graph), ``rewrite`` (``--materialize`` and ``--untie``, model to
model), ``writer`` (the output, streamed tensor by tensor) and ``model`` (the adapter,
:class:`OnnxModel`, that ties them together)."""

from vsconf.onnx.model import OnnxModel

__all__ = ["OnnxModel"]
