"""The operators vsconf knows, as data: which pass a weight on, which input is a node's
weight, and the formal names of each input (from onnx's schemas, by opset, plus the
contrib ops onnx does not define).  :mod:`vsconf.onnx.graph` reads these tables; the
axes each consumer gives a weight are in :func:`vsconf.onnx.graph.role`.
"""

from __future__ import annotations

import onnx

# Ops that pass a weight on to its real consumer, whose axes vsconf can follow.
LOOK_THROUGH = frozenset({"Identity", "Cast", "Transpose", "Unsqueeze", "Squeeze", "Slice", "Concat"})
# Which input of a node is "its weight", for ``fans_from: weight``.
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "LSTM": 1, "GRU": 1, "RNN": 1, "Attention": 1}
# The formal inputs of contrib ops that onnx.defs does not know.
_CONTRIB_INPUTS = {
    ("com.microsoft", "Attention"): ("input", "weights", "bias", "mask_index", "past", "attention_bias", "past_sequence_length"),
}
_SCHEMA_INPUTS: dict[tuple[str, str, int], tuple[str, ...]] = {}


def formal_inputs(domain: str, op_type: str, version: int) -> tuple[str, ...]:
    """The names of an op's inputs at an opset version; () when onnx does not know the op."""
    if (domain, op_type) in _CONTRIB_INPUTS:
        return _CONTRIB_INPUTS[(domain, op_type)]
    key = (domain, op_type, version)
    if key not in _SCHEMA_INPUTS:
        try:
            schema = onnx.defs.get_schema(op_type, version, domain)
            _SCHEMA_INPUTS[key] = tuple(i.name for i in schema.inputs)
        except Exception:  # an op or an opset version the installed onnx does not know
            _SCHEMA_INPUTS[key] = ()
    return _SCHEMA_INPUTS[key]
