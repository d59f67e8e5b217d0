"""The operators vsconf knows, as data keyed by (domain, op type, input name).

Each row says what a tensor read through that input *is* (its role: a weight, a bias, a
norm's scale, a running statistic, an activation, an index...) and, for weights, which
fan rule the consumer implies (``conv``, ``gemm``, ``matmul``, ``rnn``, ``embedding``,
``dense``).  Rows hold for a range of opset versions, so that an op whose inputs changed
meaning or name is read right at every version (BatchNormalization's ``mean``/``var``
became ``input_mean``/``input_var`` at opset 14; ``Attention`` exists in the ONNX domain
only from opset 23, where Q, K and V are activations).  Ops of other domains have rows of
their own: ``com.microsoft.Attention``'s ``weights`` is a weight, ONNX ``Attention``'s K
is not.  :mod:`vsconf.formats.onnx.graph` turns these rows into roles and fans; the axes of each
fan rule are in :func:`vsconf.formats.onnx.graph.role`.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsconf.formats.onnx import proto

ONNX = ""  # ONNX's own domain ('ai.onnx' is read as '')
MS = "com.microsoft"

# Consumer rows name a tensor role (vsconf.matching.ROLES) for parameter inputs ("other":
# a parameter of a kind with no name of its own, as PReLU's slope); "index" and "state" for
# inputs that never hold a parameter (shapes, indices, masks, initial states: a stored
# tensor there is a constant); "activation" for data inputs, where a stored tensor may be
# anything (a weight reshaped on its way to a MatMul).
PARAMETER_ROLES = frozenset({"weight", "bias", "embedding", "norm_scale", "norm_bias", "running_stat", "other"})
FIXED_INPUTS = frozenset({"index", "state"})
# Formal input names that hold shapes, axes or indices in every ONNX op that has them
# (ReduceMean's axes, Slice's starts...): read as "index" when an op has no row of its own.
INDEX_INPUT_NAMES = frozenset(
    {"axes", "shape", "starts", "ends", "steps", "indices", "repeats", "pads", "split", "sizes", "scales", "roi",
     "condition", "sequence_lens", "k", "depth", "delta", "limit", "start", "max_trip_count", "cond"}
)
# Consumers agree on a tensor's role when their roles fall in one family: a tied
# embedding read by Gather and by a MatMul is one matrix (its fans may still disagree).
ROLE_FAMILY = {"embedding": "weight"}


@dataclass(frozen=True)
class InputRow:
    """What a tensor read through one input of one op is, for opsets ``since``..``until``."""

    role: str
    fans: str | None = None  # the fan rule a weight read here follows (see graph.role)
    since: int = 1
    until: int | None = None  # the last opset version the row holds for; None: still


@dataclass(frozen=True)
class OpRow:
    """Facts about an op as a whole."""

    # Its weight inputs, in the order `fans_from: weight` tries them.
    weights: tuple[str, ...] = ()
    # It passes a weight on to its real consumer, and vsconf can follow its axes.
    look_through: bool = False


def _rows(domain: str, op: str, *inputs: tuple[str, InputRow]) -> dict[tuple[str, str, str], tuple[InputRow, ...]]:
    table: dict[tuple[str, str, str], tuple[InputRow, ...]] = {}
    for name, row in inputs:
        table[(domain, op, name)] = table.get((domain, op, name), ()) + (row,)
    return table


_W = InputRow
INPUT_ROWS: dict[tuple[str, str, str], tuple[InputRow, ...]] = {
    **_rows(ONNX, "Conv", ("X", _W("activation")), ("W", _W("weight", "conv")), ("B", _W("bias"))),
    **_rows(ONNX, "ConvTranspose", ("X", _W("activation")), ("W", _W("weight", "conv")), ("B", _W("bias"))),
    # A stored tensor on either side of a Gemm or MatMul is a weight.
    **_rows(ONNX, "Gemm", ("A", _W("weight", "gemm")), ("B", _W("weight", "gemm")), ("C", _W("bias"))),
    **_rows(ONNX, "MatMul", ("A", _W("weight", "matmul")), ("B", _W("weight", "matmul"))),
    **{
        key: rows
        for op in ("LSTM", "GRU", "RNN")
        for key, rows in _rows(
            ONNX, op,
            ("X", _W("activation")), ("W", _W("weight", "rnn")), ("R", _W("weight", "rnn")), ("B", _W("bias")),
            ("sequence_lens", _W("index")), ("initial_h", _W("state")),
        ).items()
    },
    **_rows(ONNX, "LSTM", ("initial_c", _W("state")), ("P", _W("weight"))),  # P: peepholes, a weight with no fan rule
    **_rows(ONNX, "Gather", ("data", _W("embedding", "embedding")), ("indices", _W("index"))),
    **_rows(ONNX, "PRelu", ("X", _W("activation")), ("slope", _W("other"))),
    **_rows(
        ONNX, "BatchNormalization",
        ("X", _W("activation")), ("scale", _W("norm_scale")), ("B", _W("norm_bias")),
        ("mean", _W("running_stat", until=13)), ("var", _W("running_stat", until=13)),
        ("input_mean", _W("running_stat", since=14)), ("input_var", _W("running_stat", since=14)),
    ),
    **_rows(ONNX, "InstanceNormalization", ("input", _W("activation")), ("scale", _W("norm_scale")), ("B", _W("norm_bias"))),
    **_rows(ONNX, "LayerNormalization", ("X", _W("activation", since=17)), ("Scale", _W("norm_scale", since=17)), ("B", _W("norm_bias", since=17))),
    **_rows(ONNX, "GroupNormalization", ("X", _W("activation", since=18)), ("scale", _W("norm_scale", since=18)), ("bias", _W("norm_bias", since=18))),
    **_rows(ONNX, "RMSNormalization", ("X", _W("activation", since=23)), ("scale", _W("norm_scale", since=23))),
    # ONNX Attention (opset 23): Q, K and V are activations -- the projections are MatMuls
    # before it -- so a stored K or V is a fixed memory, never a weight with fans.
    **_rows(
        ONNX, "Attention",
        ("Q", _W("state", since=23)), ("K", _W("state", since=23)), ("V", _W("state", since=23)),
        ("attn_mask", _W("index", since=23)), ("past_key", _W("state", since=23)), ("past_value", _W("state", since=23)),
        ("nonpad_kv_seqlen", _W("index", since=24)),
    ),
    # Inputs that are never parameters: shapes, axes, indices, conditions, exponents.
    **_rows(ONNX, "Reshape", ("data", _W("activation")), ("shape", _W("index", since=5))),
    **_rows(ONNX, "Expand", ("input", _W("activation")), ("shape", _W("index"))),
    **_rows(ONNX, "Tile", ("input", _W("activation")), ("repeats", _W("index", since=6))),
    **_rows(ONNX, "ConstantOfShape", ("input", _W("index"))),
    **_rows(ONNX, "Range", ("start", _W("index")), ("limit", _W("index")), ("delta", _W("index"))),
    **_rows(ONNX, "Where", ("condition", _W("index")), ("X", _W("state")), ("Y", _W("state"))),
    **_rows(ONNX, "Pow", ("X", _W("activation")), ("Y", _W("index"))),
    **_rows(ONNX, "Clip", ("input", _W("activation")), ("min", _W("index", since=11)), ("max", _W("index", since=11))),
    **_rows(
        ONNX, "Pad",
        ("data", _W("activation")), ("pads", _W("index", since=11)), ("constant_value", _W("index", since=11)),
        ("axes", _W("index", since=18)),
    ),
    **_rows(
        ONNX, "Resize",
        ("X", _W("activation")), ("roi", _W("index", since=11)), ("scales", _W("index")), ("sizes", _W("index", since=11)),
    ),
    **_rows(ONNX, "Dropout", ("data", _W("activation")), ("ratio", _W("index", since=12)), ("training_mode", _W("index", since=12))),
    # com.microsoft's contrib ops (onnxruntime): rows of their own.
    **_rows(
        MS, "Attention",
        ("input", _W("activation")), ("weights", _W("weight", "dense")), ("bias", _W("bias")),
        ("mask_index", _W("index")), ("past", _W("state")), ("attention_bias", _W("index")),
        ("past_sequence_length", _W("index")),
    ),
    **_rows(
        MS, "SkipLayerNormalization",
        ("input", _W("activation")), ("skip", _W("activation")), ("gamma", _W("norm_scale")),
        ("beta", _W("norm_bias")), ("bias", _W("bias")),
    ),
}

OP_ROWS: dict[tuple[str, str], OpRow] = {
    (ONNX, "Conv"): OpRow(weights=("W",)),
    (ONNX, "ConvTranspose"): OpRow(weights=("W",)),
    (ONNX, "Gemm"): OpRow(weights=("B", "A")),
    (ONNX, "MatMul"): OpRow(weights=("B", "A")),
    (ONNX, "LSTM"): OpRow(weights=("W",)),
    (ONNX, "GRU"): OpRow(weights=("W",)),
    (ONNX, "RNN"): OpRow(weights=("W",)),
    (MS, "Attention"): OpRow(weights=("weights",)),
    **{
        (ONNX, op): OpRow(look_through=True)
        for op in ("Identity", "Cast", "Transpose", "Unsqueeze", "Squeeze", "Slice", "Split", "Concat")
    },
}

# The formal inputs of contrib ops that onnx.defs does not know.
_CONTRIB_INPUTS = {
    (MS, "Attention"): ("input", "weights", "bias", "mask_index", "past", "attention_bias", "past_sequence_length"),
    (MS, "SkipLayerNormalization"): ("input", "skip", "gamma", "beta", "bias"),
}
_SCHEMA_INPUTS: dict[tuple[str, str, int], tuple[str, ...]] = {}


def _domain(domain: str) -> str:
    return ONNX if domain in ("", "ai.onnx") else domain


def input_row(domain: str, op_type: str, name: str, version: int) -> InputRow | None:
    """The row for input ``name`` of ``op_type`` at opset ``version``, or None."""
    for row in INPUT_ROWS.get((_domain(domain), op_type, name), ()):
        if row.since <= version and (row.until is None or version <= row.until):
            return row
    return None


def op_row(domain: str, op_type: str) -> OpRow | None:
    return OP_ROWS.get((_domain(domain), op_type))


def looks_through(domain: str, op_type: str) -> bool:
    row = op_row(domain, op_type)
    return row is not None and row.look_through


def weight_positions(domain: str, op_type: str, version: int) -> tuple[int, ...]:
    """The positions of an op's weight inputs, in the order ``fans_from: weight`` tries them."""
    row = op_row(domain, op_type)
    if row is None or not row.weights:
        return ()
    names = formal_inputs(domain, op_type, version)
    return tuple(names.index(name) for name in row.weights if name in names)


def formal_inputs(domain: str, op_type: str, version: int) -> tuple[str, ...]:
    """The names of an op's inputs at an opset version; () when onnx does not know the op."""
    domain = _domain(domain)
    if (domain, op_type) in _CONTRIB_INPUTS:
        return _CONTRIB_INPUTS[(domain, op_type)]
    key = (domain, op_type, version)
    if key not in _SCHEMA_INPUTS:
        try:
            schema = proto.defs.get_schema(op_type, version, domain)
            _SCHEMA_INPUTS[key] = tuple(i.name for i in schema.inputs)
        except Exception:  # an op or an opset version the installed onnx does not know
            _SCHEMA_INPUTS[key] = ()
    return _SCHEMA_INPUTS[key]
