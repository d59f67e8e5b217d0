"""ONNX models: find every float weight, read the graph for fans, write a new model.

All I/O and graph reading; the values come from the engine.  The contracts:

* **Nothing is trusted before it is checked.**  A file is refused unless it parses as a
  ``ModelProto`` with a graph, an ``ir_version`` and (from IR 3) an ``opset_import``,
  whose every string field is UTF-8 (protobuf hands any other to Python as bytes);
  every node must read only values defined before it (graph inputs, initializers,
  earlier nodes, or the enclosing graphs' values for If/Loop/Scan bodies), so a cycle
  is an error, not a hang.  Every stored tensor -- the ones vsconf fills and the ones it
  merely copies -- has its ``data_type``, ``dims`` and stored bytes checked against each
  other *before* anything is allocated: sizes must fit in int64, ``raw_data`` or the
  typed field must hold exactly what the dims need, and external data must lie inside
  the model's folder, in a regular file, within that file's size.  Every refusal is a
  :class:`~vsconf.errors.ModelError` that starts with the model's path and names the
  tensor or node.  ``--materialize`` refuses a ConstantOfShape past 1 TiB and makes
  the bytes of the others only when they are written.
* **Graph analysis never fails on what it cannot follow.**  An attribute of the wrong
  type or out of range, an unknown operator or opset, a huge constant: the tensor's
  fans fall back to the tf rule and the plan says "cannot follow <op>".
* **Writing never touches a file vsconf did not create.**  The onnx library's traps are
  avoided on purpose: the model is loaded without external data (weights are read by
  offset), ``onnx.save`` is never called (it mutates the model and appends to data
  files), and output data always goes to a fresh file beside the output.  The data file
  and the model are staged in the caller's :class:`~vsconf.files.Transaction`, data
  first; :meth:`OnnxModel.stale_data_files` says which files of a replaced output may be
  removed afterwards -- only data files vsconf itself named for that output.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import AttributeProto, TensorProto, numpy_helper

from vsconf.engine import FanHint, Plan
from vsconf.errors import ModelError
from vsconf.fans import Axes, axes_fans
from vsconf.files import Transaction, describe_os_error, is_data_name, little_endian_bytes, regular_file
from vsconf.matching import Consumer, TensorInfo

# Protobuf refuses messages over 2 GiB; stay clear of it with room for the graph.
_PROTOBUF_LIMIT = 2**31 - 1
_INLINE_LIMIT = 1_800_000_000
# Tensors at least this large go to the data file when writing external data.
_EXTERNAL_THRESHOLD = 1024
_ALIGNMENT = 4096
# --materialize refuses to build a tensor larger than this (1 TiB) instead of trying.
_MATERIALIZE_LIMIT = 2**40
# Shapes, axes and perms are short: a constant with more elements is not read as one.
_MAX_RANK = 64
# Look-through steps followed from one stored tensor before vsconf gives up on its fans.
_MAX_REACH = 4096
_INT64_LIMIT = 2**63
# Ops that pass a weight on to its real consumer, whose axes vsconf can follow.
LOOK_THROUGH = frozenset({"Identity", "Cast", "Transpose", "Unsqueeze", "Squeeze", "Slice", "Concat"})
# The formal inputs of contrib ops that onnx.defs does not know.
_CONTRIB_INPUTS = {
    ("com.microsoft", "Attention"): ["input", "weights", "bias", "mask_index", "past", "attention_bias", "past_sequence_length"],
}
_FLOAT_TYPES = frozenset({TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE})
_INT_TYPES = frozenset(
    {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64}
    | {TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}
)
# Which input of a node is "its weight", for ``fans_from: weight``.
_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "LSTM": 1, "GRU": 1, "RNN": 1, "Attention": 1}

# Bits per element of every TensorProto element type; raw_data packs sub-byte types
# (two 4-bit, four 2-bit values a byte; 6-bit values as one bit stream).  STRING has
# no fixed size.  Names this onnx does not define are skipped.
_BITS_BY_NAME = {
    "FLOAT": 32, "UINT8": 8, "INT8": 8, "UINT16": 16, "INT16": 16, "INT32": 32, "INT64": 64,
    "STRING": None, "BOOL": 8, "FLOAT16": 16, "DOUBLE": 64, "UINT32": 32, "UINT64": 64,
    "COMPLEX64": 64, "COMPLEX128": 128, "BFLOAT16": 16,
    "FLOAT8E4M3FN": 8, "FLOAT8E4M3FNUZ": 8, "FLOAT8E5M2": 8, "FLOAT8E5M2FNUZ": 8, "FLOAT8E8M0": 8,
    "UINT4": 4, "INT4": 4, "FLOAT4E2M1": 4, "UINT2": 2, "INT2": 2, "FLOAT6E2M3": 6, "FLOAT6E3M2": 6,
}  # fmt: skip
_BITS = {getattr(TensorProto, name): bits for name, bits in _BITS_BY_NAME.items() if hasattr(TensorProto, name)}
# The typed field each element type uses when it has no raw_data, and how many entries
# of that field one element takes (onnx.proto: complex numbers take two; int32_data
# packs two 4-bit or four 2-bit elements into one entry; every other type not listed
# keeps one element per int32_data entry: float16 and bfloat16 as their bits).
_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
_FIELD_BY_NAME = {
    "FLOAT": ("float_data", 1, 1), "COMPLEX64": ("float_data", 2, 1),
    "DOUBLE": ("double_data", 1, 1), "COMPLEX128": ("double_data", 2, 1),
    "INT64": ("int64_data", 1, 1), "UINT32": ("uint64_data", 1, 1), "UINT64": ("uint64_data", 1, 1),
    "STRING": ("string_data", 1, 1),
    "UINT4": ("int32_data", 1, 2), "INT4": ("int32_data", 1, 2), "FLOAT4E2M1": ("int32_data", 1, 2),
    "UINT2": ("int32_data", 1, 4), "INT2": ("int32_data", 1, 4),
}  # fmt: skip
_FIELD = {code: _FIELD_BY_NAME.get(name, ("int32_data", 1, 1)) for name, code in TensorProto.DataType.items() if code in _BITS}


class _CannotFollow(Exception):
    """An attribute vsconf needs to follow a node is there but not what ONNX says it is."""


@dataclass
class _Stored:
    """A float-or-not tensor stored in the model: an initializer, a Constant node, or a
    ConstantOfShape output made real by --materialize."""

    name: str
    proto: TensorProto
    graph: onnx.GraphProto
    kind: str  # "initializer" or "constant"


@dataclass
class _Edge:
    node: onnx.NodeProto
    index: int
    graph: onnx.GraphProto


@dataclass
class _Reach:
    """A terminal consumer reached from a stored tensor, with the axis map on the way."""

    node: onnx.NodeProto
    index: int
    axis_map: tuple[int | None, ...]  # for each axis at the consumer: the stored axis, or None


@dataclass
class _Index:
    """Who reads and who writes each value, across the main graph and every subgraph."""

    edges: dict[str, list[_Edge]] = field(default_factory=dict)
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _External:
    """Where an external tensor's bytes are: checked, but not yet read."""

    location: str
    path: Path
    offset: int
    length: int


# --------------------------------------------------------------------------- walking graphs


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The bodies of an If/Loop/Scan (any GRAPH or GRAPHS attribute)."""
    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == AttributeProto.GRAPHS:
            yield from attribute.graphs


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph under it, depth first."""
    yield graph
    for node in graph.node:
        for sub in _subgraphs(node):
            yield from _graphs(sub)


def _node_labels(graph: onnx.GraphProto) -> tuple[list[onnx.NodeProto], dict[int, str]]:
    """Every node, and its name or ``Op#k`` (k: its position in a walk of the main graph,
    then the subgraphs).  Keep the list alive while using the ids."""
    nodes = [node for sub in _graphs(graph) for node in sub.node]
    return nodes, {id(node): node.name or f"{node.op_type}#{k}" for k, node in enumerate(nodes)}


_FIELD_OF_ATTRIBUTE = {AttributeProto.INT: "i", AttributeProto.INTS: "ints", AttributeProto.TENSOR: "t"}


def _attribute(node: onnx.NodeProto, name: str, kind: int, default: Any = None) -> Any:
    """Attribute ``name`` of ``node`` if it has type ``kind`` (ints as a list), ``default``
    when absent; :class:`_CannotFollow` when present with another type.  IR 1 models
    carry no type: the field that is set decides."""
    for attribute in node.attribute:
        if attribute.name != name:
            continue
        field_name = _FIELD_OF_ATTRIBUTE[kind]
        untyped = attribute.type == AttributeProto.UNDEFINED
        if attribute.type == kind or (untyped and _attribute_has(attribute, field_name)):
            value = getattr(attribute, field_name)
            return list(value) if kind == AttributeProto.INTS else value
        raise _CannotFollow(name)
    return default


def _attribute_has(attribute: AttributeProto, field_name: str) -> bool:
    return len(attribute.ints) > 0 if field_name == "ints" else attribute.HasField(field_name)


def _formal_inputs(domain: str, op_type: str, version: int) -> tuple[str, ...]:
    if (domain, op_type) in _CONTRIB_INPUTS:
        return tuple(_CONTRIB_INPUTS[(domain, op_type)])
    key = (domain, op_type, version)
    if key not in _SCHEMA_INPUTS:
        try:
            schema = onnx.defs.get_schema(op_type, version, domain)
            _SCHEMA_INPUTS[key] = tuple(i.name for i in schema.inputs)
        except Exception:  # an op or an opset version the installed onnx does not know
            _SCHEMA_INPUTS[key] = ()
    return _SCHEMA_INPUTS[key]


_SCHEMA_INPUTS: dict[tuple[str, str, int], tuple[str, ...]] = {}


# --------------------------------------------------------------------------- tensors as declared


def _np_dtype(data_type: int) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    except (KeyError, TypeError, ValueError):
        return np.dtype("V1")  # a type NumPy cannot hold: never filled, never read


def _type_text(data_type: int) -> str:
    """``float32``, ``bfloat16``, ``int4``, ``string``: the names users know."""
    if data_type == TensorProto.STRING:
        return "string"
    dtype = _np_dtype(data_type)
    if dtype.kind == "V" and dtype.itemsize == 1:
        return TensorProto.DataType.Name(data_type).lower() if data_type in _BITS else f"data_type {data_type}"
    return dtype.name


def _dims_text(dims) -> str:
    shown = [str(d) for d in dims[:8]]
    if len(dims) > 8:
        shown.append(f"... ({len(dims)} dims)")
    return "[" + ", ".join(shown) + "]"


def _shown(text: str) -> str:
    """A name or value from the file as a message shows it: quoted, and cut when long."""
    if len(text) <= 200:
        return repr(text)
    return f"{text[:20]!r}... ({len(text)} characters)"


def _plain(text: str) -> str:
    """A file or op name from the model as a message shows it: as is, unless it would mislead."""
    return text if text.isprintable() and len(text) <= 200 else _shown(text)


def _layout_problem(tensor: TensorProto) -> str | None:
    """What is wrong with the tensor's declared element type and dims, or None."""
    if tensor.data_type not in _BITS:
        if tensor.data_type == TensorProto.UNDEFINED:
            return "data_type is 0 (UNDEFINED), not an element type"
        return f"data_type {tensor.data_type} is not an element type vsconf knows"
    if any(d < 0 for d in tensor.dims):
        return f"dims {_dims_text(tensor.dims)} have a negative dimension"
    # NumPy refuses a shape whose non-zero dims pass 2**63 bytes even when a 0 empties it.
    element_bytes = -(-(_BITS[tensor.data_type] or 64) // 8)
    span = element_bytes
    for d in tensor.dims:
        span *= max(d, 1)
        if span >= _INT64_LIMIT:
            break
    if span < _INT64_LIMIT:
        return None
    declared = f"dims {_dims_text(tensor.dims)} ({_type_text(tensor.data_type)})"
    if 0 in tensor.dims:
        return f"{declared} hold no elements, but their other dims pass 2**63 bytes"
    return f"{declared} need more than 2**63 bytes"


def _element_count(tensor: TensorProto) -> int:
    """The number of elements (dims already checked by :func:`_layout_problem`)."""
    return math.prod(tensor.dims)


def _data_bytes(tensor: TensorProto) -> int:
    """The bytes the dims need in raw_data or external data (layout already checked)."""
    return -(-_element_count(tensor) * (_BITS[tensor.data_type] or 0) // 8)


def _need_text(tensor: TensorProto) -> str:
    return f"its dims {_dims_text(tensor.dims)} ({_type_text(tensor.data_type)}) need"


def _data_problem(tensor: TensorProto) -> str | None:
    """What is wrong with how the tensor stores its values (layout already checked), or None."""
    if tensor.HasField("segment"):
        return "it is stored in segments, which vsconf does not read"
    typed = [name for name in _TYPED_FIELDS if len(getattr(tensor, name))]
    stores = (["raw_data"] if tensor.HasField("raw_data") else []) + typed
    is_string = tensor.data_type == TensorProto.STRING
    if tensor.data_location == TensorProto.EXTERNAL:
        if stores:
            return f"it is external data and also has {stores[0]}; a tensor stores its values in one place"
        return "a string tensor cannot be external data" if is_string else None
    if len(stores) > 1:
        return f"it has both {stores[0]} and {stores[1]}; a tensor stores its values in one of them"
    count = _element_count(tensor)
    if not stores:
        return f"it has no data, but {_need_text(tensor)} {count} values" if count else None
    if stores == ["raw_data"]:
        if is_string:
            return "a string tensor cannot use raw_data"
        need = _data_bytes(tensor)
        have = len(tensor.raw_data)
        return f"raw_data holds {have} bytes, {_need_text(tensor)} {need}" if have != need else None
    expected, per_element, per_entry = _FIELD[tensor.data_type]
    if typed[0] != expected:
        return f"it keeps its values in {typed[0]}, but {_type_text(tensor.data_type)} tensors keep them in {expected}"
    need = -(-count * per_element // per_entry)
    have = len(getattr(tensor, expected))
    return f"{expected} holds {have} values, {_need_text(tensor)} {need}" if have != need else None


def _decimal(text: str) -> int | None:
    """``text`` as an integer in [0, 2**63) if it is written in decimal digits, else None
    (never ``int()`` on thousands of digits)."""
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > 19:
        return None
    value = int(digits)
    return value if value < _INT64_LIMIT else None


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):  # NUL bytes, symlink loops
        return None


# --------------------------------------------------------------------------- loading


def _load(path: Path) -> onnx.ModelProto:
    """The model at ``path``, refused unless it is one: parsed, with a graph, an IR version and opsets."""
    try:
        if os.stat(path).st_size > _PROTOBUF_LIMIT:
            raise ModelError(f"{path}: not an ONNX model: it is larger than protobuf's 2 GiB limit")
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {describe_os_error(exc)}") from None
    if not data:
        raise ModelError(f"{path}: not an ONNX model: the file is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError; nesting past protobuf's limit
        raise ModelError(f"{path}: not an ONNX model: protobuf cannot parse it") from None
    problem = _model_problem(model) or _text_problem(model)
    if problem:
        raise ModelError(f"{path}: not an ONNX model: {problem}")
    return model


def _model_problem(model: onnx.ModelProto) -> str | None:
    """Random bytes often parse as a near-empty ModelProto: what a real one must have."""
    if not model.HasField("graph"):
        return "it has no graph"
    if model.ir_version <= 0:
        return "it has no ir_version" if model.ir_version == 0 else f"its ir_version is {model.ir_version}"
    if model.ir_version >= 3 and not model.opset_import:  # IR 1 and 2 had no opset_import
        return "it imports no operator set (opset_import is empty)"
    return None


_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def _text_problem(message: Message, where: str = "") -> str | None:
    """The first string field that is not UTF-8, or None.  Protobuf hands such a field to
    Python as ``bytes`` instead of ``str`` -- a name, an op type, an external-data
    location -- and nothing downstream expects that.  A tensor's data is never touched."""
    if isinstance(message, TensorProto):  # listing its fields would copy raw_data
        fields = [(TensorProto.DESCRIPTOR.fields_by_name[n], getattr(message, n)) for n in ("name", "doc_string", "external_data")]
    else:
        fields = message.ListFields()
    for descriptor, value in fields:
        name = f"{where}.{descriptor.name}" if where else descriptor.name
        repeated = descriptor.is_repeated if hasattr(descriptor, "is_repeated") else descriptor.label == descriptor.LABEL_REPEATED
        items = list(enumerate(value)) if repeated else [(None, value)]
        for index, item in items:
            at = name if index is None else f"{name}[{index}]"
            if descriptor.type == _STRING and isinstance(item, bytes):
                return f"{at} is not UTF-8 text"
            if descriptor.type == _MESSAGE:
                problem = _text_problem(item, at)
                if problem:
                    return problem
    return None


def _recorded_seed(path: Path, model: onnx.ModelProto) -> tuple[int | None, str | None]:
    """The ``vsconf.seed`` metadata as a seed, or why it is not one (an error only when used)."""
    for prop in model.metadata_props:
        if prop.key == "vsconf.seed":
            seed = _decimal(prop.value)
            if seed is None:
                return None, (
                    f"{path}: metadata vsconf.seed is {_shown(prop.value)}, not a seed (0 <= seed < 2**63); "
                    "give the seed explicitly"
                )
            return seed, None
    return None, None


class OnnxModel:
    """An ONNX model file: its float tensors, their consumers, and a writer."""

    target = "onnx"

    def __init__(self, path: Path, *, materialize: bool = False, untie: bool = False):
        self.path = Path(path)
        self.base = self.path.parent
        self.model = _load(self.path)
        self.opsets = {o.domain or "": o.version for o in self.model.opset_import}
        if "ai.onnx" in self.opsets:
            self.opsets.setdefault("", self.opsets["ai.onnx"])
        self.recorded_seed, self.recorded_seed_problem = _recorded_seed(self.path, self.model)
        self._check_order()
        self._stored = self._collect()
        for item in self._stored.values():  # every declared size, before any work
            self._check_stored(item.name, item.proto)
        self._loose = self._loose_external()
        self._input_locations = _external_locations(self.model)
        # Materialized tensors hold no bytes until they are written: name -> fill value.
        self._fills: dict[str, np.ndarray] = {}
        if materialize:
            self._materialize()
            self._stored = self._collect()
        if untie:
            self._untie()
            self._stored = self._collect()
        self._index = self._build_index()
        self._infos, self._hints = self._analyse()

    def close(self) -> None:
        pass

    def files(self) -> list[Path]:
        """The data files the input model reads (as the model names them, beside it)."""
        return [self.base / location for location in self._input_locations]

    # ------------------------------------------------------------------ checking

    def _check_order(self) -> None:
        """Every node reads only values defined before it; no value is defined twice in a graph."""
        nodes, labels = _node_labels(self.model.graph)

        def walk(graph: onnx.GraphProto, scopes: list[set[str]]) -> None:
            defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
            defined |= {s.values.name for s in graph.sparse_initializer}
            scopes = [*scopes, defined]
            for node in graph.node:
                where = f"{self.path}: node {_shown(labels[id(node)])} ({_plain(node.op_type)})"
                for value in node.input:
                    if value and not any(value in scope for scope in scopes):
                        raise ModelError(
                            f"{where} reads {_shown(value)}, which nothing defines before it "
                            "(a cycle, or nodes out of topological order)"
                        )
                for sub in _subgraphs(node):
                    walk(sub, scopes)
                for value in node.output:
                    if value and value in defined:
                        raise ModelError(f"{where} writes {_shown(value)}, which is already defined in its graph")
                    defined.add(value)

        walk(self.model.graph, [])
        del nodes

    def _collect(self) -> dict[str, _Stored]:
        stored: dict[str, _Stored] = {}

        def add(item: _Stored) -> None:
            if item.name in stored:
                raise ModelError(
                    f"{self.path}: two tensors are named {_shown(item.name)}; vsconf needs unique tensor names"
                )
            stored[item.name] = item

        for graph in _graphs(self.model.graph):
            for tensor in graph.initializer:
                add(_Stored(tensor.name, tensor, graph, "initializer"))
            for node in graph.node:
                if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output and node.output[0]:
                    for attribute in node.attribute:
                        if attribute.name == "value" and attribute.type == AttributeProto.TENSOR:
                            add(_Stored(node.output[0], attribute.t, graph, "constant"))
        return stored

    def _check_stored(self, name: str, tensor: TensorProto) -> None:
        """Refuse a tensor whose type, dims and stored bytes do not agree (external data too)."""
        problem = _layout_problem(tensor) or _data_problem(tensor)
        if problem:
            raise ModelError(f"{self.path}: tensor {_shown(name)}: {problem}")
        if tensor.data_location == TensorProto.EXTERNAL:
            self._external(tensor, name)

    def _loose_external(self) -> list[tuple[str, TensorProto]]:
        """External tensors that are not weights (a ConstantOfShape's value, sparse
        initializers), checked like weights: the writer brings them inline, since the
        output may be in another folder."""
        weights = {id(item.proto) for item in self._stored.values()}  # the items keep these protos alive
        loose = []
        for tensor in _all_tensors(self.model.graph):
            if tensor.data_location == TensorProto.EXTERNAL and id(tensor) not in weights:
                name = tensor.name or "(unnamed)"
                self._check_stored(name, tensor)
                loose.append((name, tensor))
        return loose

    def _external(self, tensor: TensorProto, name: str) -> _External:
        """Where the external tensor ``name``'s bytes are, every key checked against the data file's size."""
        where = f"{self.path}: tensor {_shown(name)}"
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        path = self._data_path(where, location)
        numbers = {}
        for key in ("offset", "length"):
            if key in info:
                numbers[key] = _decimal(info[key])
                if numbers[key] is None:
                    raise ModelError(
                        f"{where}: external data {key} is {_shown(info[key])}, not a decimal integer in [0, 2**63)"
                    )
        offset, length = numbers.get("offset", 0), numbers.get("length")
        need = _data_bytes(tensor)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise ModelError(f"{where}: {_plain(location)}: cannot read: {describe_os_error(exc)}") from None
        if length is not None and length != need:
            raise ModelError(f"{where}: external data length is {length} bytes, {_need_text(tensor)} {need}")
        if offset + need > size:
            span = f"offset {offset} + length {length}" if length is not None else f"offset {offset} + the {need} bytes its dims need"
            raise ModelError(f"{where}: {_plain(location)} holds {size} bytes; {span} pass its end")
        return _External(location, path, offset, need)

    def _data_path(self, where: str, location: str) -> Path:
        """The data file ``location`` of an external tensor: a regular file inside the model's folder."""
        if not location:
            raise ModelError(f"{where}: its external data has no location")
        if "\0" in location:
            raise ModelError(f"{where}: external data location {_shown(location)} is not a file name")
        candidate = _resolved(self.base / location)
        base = _resolved(self.base)
        if Path(location).is_absolute() or candidate is None or base is None or base not in candidate.parents:
            raise ModelError(f"{where} has external data outside the model's folder: {_shown(location)}")
        shown = self.base / location
        try:
            regular_file(shown, "external data file")
        except ModelError as exc:  # "w.bin: no such file", "w.bin: the external data file is a FIFO, ..."
            reason = str(exc).removeprefix(f"{shown}: ")
            raise ModelError(f"{where}: {_plain(str(shown))}: {reason}") from None
        return candidate

    # ------------------------------------------------------------------ reading

    def _tensor_bytes(self, tensor: TensorProto, name: str) -> bytes:
        """Raw little-endian bytes of an external tensor, read by offset from its data file."""
        ref = self._external(tensor, name)
        where = f"{self.path}: tensor {_shown(name)}: {_plain(ref.location)}"
        try:
            with open(ref.path, "rb") as handle:
                handle.seek(ref.offset)
                data = handle.read(ref.length)
        except OSError as exc:
            raise ModelError(f"{where}: cannot read: {describe_os_error(exc)}") from None
        if len(data) != ref.length:
            raise ModelError(f"{where}: the file ends before offset {ref.offset} + {ref.length}")
        return data

    def _array(self, tensor: TensorProto, name: str) -> np.ndarray:
        """The values a checked tensor stores (``name`` is for messages)."""
        if tensor.data_location != TensorProto.EXTERNAL:
            return numpy_helper.to_array(tensor)
        data = self._tensor_bytes(tensor, name)
        if (_BITS[tensor.data_type] or 0) % 8:  # packed sub-byte types: onnx unpacks them
            return numpy_helper.to_array(TensorProto(data_type=tensor.data_type, dims=list(tensor.dims), raw_data=data))
        dtype = _np_dtype(tensor.data_type).newbyteorder("<")
        return np.frombuffer(data, dtype=dtype).reshape(tuple(tensor.dims))

    def read(self, name: str) -> np.ndarray:
        """One stored tensor's values (a materialized one is made now)."""
        proto = self._stored[name].proto
        if name in self._fills:
            return np.full(tuple(proto.dims), self._fills[name])
        return self._array(proto, name)

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def hints(self) -> dict[str, FanHint]:
        return dict(self._hints)

    # ------------------------------------------------------------------ graph analysis

    def _build_index(self) -> _Index:
        index = _Index()
        nodes, index.names = _node_labels(self.model.graph)
        for graph in _graphs(self.model.graph):
            for node in graph.node:
                for i, name in enumerate(node.input):
                    if name:
                        index.edges.setdefault(name, []).append(_Edge(node, i, graph))
                for name in node.output:
                    if name:
                        index.producers[name] = node
        del nodes  # the edges and producers keep every node that the names refer to
        return index

    def _constant_ints(self, name: str, limit: int = _MAX_RANK) -> list[int] | None:
        """A small stored integer tensor's values (shapes, axes), or None: anything larger
        than ``limit`` elements is never read."""
        item = self._stored.get(name)
        if item is None or item.proto.data_type not in _INT_TYPES or _element_count(item.proto) > limit:
            return None
        try:
            return [int(v) for v in self.read(name).ravel()]
        except (ModelError, ValueError, TypeError):
            return None

    def _formal(self, node: onnx.NodeProto, index: int) -> str:
        domain = node.domain or ""
        names = _formal_inputs(domain, node.op_type, self.opsets.get(domain, 1))
        if not names:
            return f"input{index}"
        return names[index] if index < len(names) else names[-1]

    def _through(self, node: onnx.NodeProto, index: int, axis_map: tuple[int | None, ...]) -> tuple[int | None, ...] | None:
        """The axis map after a look-through op, or None when vsconf cannot follow it."""
        op = node.op_type
        if op in ("Identity", "Cast", "Slice"):
            return axis_map if index == 0 else None
        if op == "Concat":
            return axis_map
        if index != 0:
            return None
        rank = len(axis_map)
        if op == "Transpose":
            perm = _attribute(node, "perm", AttributeProto.INTS) or list(reversed(range(rank)))
            if sorted(perm) != list(range(rank)):
                return None
            return tuple(axis_map[p] for p in perm)
        axes = _attribute(node, "axes", AttributeProto.INTS)
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self._constant_ints(node.input[1])
        if axes is None:
            return None  # Squeeze without axes removes "every size-1 axis": shapes vsconf does not track
        if op == "Unsqueeze":
            return _unsqueezed(axis_map, axes)
        if op == "Squeeze":
            return _squeezed(axis_map, axes)
        return None

    def _reach(self, name: str, rank: int) -> tuple[list[_Reach], list[str]]:
        """Terminal consumers of stored tensor ``name``, and the look-through ops we could not follow."""
        reached: list[_Reach] = []
        stuck: list[str] = []
        seen: set[tuple[str, tuple]] = set()
        stack = [(name, tuple(range(rank)))]
        while stack:
            value, axis_map = stack.pop()
            if (value, axis_map) in seen:
                continue
            if len(seen) >= _MAX_REACH:
                stuck.append(f"more than {_MAX_REACH} look-through steps")
                break
            seen.add((value, axis_map))
            for edge in self._index.edges.get(value, []):
                node = edge.node
                if node.op_type in LOOK_THROUGH and node.domain in ("", "ai.onnx"):
                    try:
                        after = self._through(node, edge.index, axis_map)
                    except _CannotFollow:
                        after = None
                    if after is None:
                        stuck.append(f"{node.op_type} ({self._index.names[id(node)]})")
                        continue
                    stack.extend((out, after) for out in node.output if out)
                else:
                    reached.append(_Reach(node, edge.index, axis_map))
        return reached, stuck

    def _role(self, reach: _Reach) -> tuple[list[int], list[int], list[int], str] | None:
        """(in, out, batch) axes at the consumer, and a label, for the weight inputs vsconf knows.

        Raises :class:`_CannotFollow` when an attribute it needs has the wrong type.
        """
        node, index = reach.node, reach.index
        op, domain = node.op_type, node.domain or ""
        rank = len(reach.axis_map)
        formal = self._formal(node, index)
        label = f"{op} {formal}"
        if domain == "com.microsoft" and op == "Attention" and formal == "weights" and rank == 2:
            return [0], [1], [], label
        if domain not in ("", "ai.onnx"):
            return None
        if op in ("Conv", "ConvTranspose") and formal == "W" and rank >= 3:
            return [1], [0], [], label
        if op == "Gemm" and rank == 2 and formal in ("A", "B"):
            flag = "transA" if formal == "A" else "transB"
            transposed = bool(_attribute(node, flag, AttributeProto.INT, 0))
            if formal == "B":  # [K, N], or [N, K] when transposed
                k_axis = 1 if transposed else 0
            else:  # [M, K], or [K, M] when transposed
                k_axis = 0 if transposed else 1
            return [k_axis], [1 - k_axis], [], f"{label} ({flag}={int(transposed)})"
        if op == "MatMul" and formal in ("A", "B") and rank >= 1:
            if rank == 1:
                return [0], [], [], label
            k_axis, other = (rank - 2, rank - 1) if formal == "B" else (rank - 1, rank - 2)
            return [k_axis], [other], list(range(rank - 2)), label
        if op in ("LSTM", "GRU", "RNN") and formal in ("W", "R") and rank == 3:
            return [2], [1], [0], label
        if op == "Gather" and formal == "data" and rank == 2 and _attribute(node, "axis", AttributeProto.INT, 0) == 0:
            return [0], [1], [], label
        return None

    def _weight_of(self, node: onnx.NodeProto, depth: int = 0) -> str | None:
        """The stored tensor that is ``node``'s weight, following look-through ops backwards."""
        op = node.op_type
        if op in ("Add", "Sum") and depth == 0:
            for value in node.input:
                producer = self._index.producers.get(value)
                if producer is not None and producer.op_type in _WEIGHT_INPUT:
                    found = self._weight_of(producer, depth + 1)
                    if found:
                        return found
            return None
        slot = _WEIGHT_INPUT.get(op)
        if slot is None or len(node.input) <= slot:
            return None
        candidates = [node.input[slot]] + ([node.input[0]] if op in ("Gemm", "MatMul") else [])
        for value in candidates:
            for _ in range(16):
                if value in self._stored:
                    return value
                producer = self._index.producers.get(value)
                if producer is None or producer.op_type not in LOOK_THROUGH or not producer.input:
                    break
                value = producer.input[0]
        return None

    def _analyse(self) -> tuple[list[TensorInfo], dict[str, FanHint]]:
        infos: list[TensorInfo] = []
        hints: dict[str, FanHint] = {}
        for name, item in self._stored.items():
            shape = tuple(int(d) for d in item.proto.dims)
            dtype = _np_dtype(item.proto.data_type)
            reached, stuck = self._reach(name, len(shape))
            consumers: list[Consumer] = []
            roles: list[tuple[Axes, str, tuple[int, int]]] = []
            weight = None
            for reach in reached:
                node = reach.node
                node_name = self._index.names[id(node)]
                consumer = Consumer(node.op_type, self._formal(node, reach.index), node_name, node.domain or "")
                if consumer not in consumers:
                    consumers.append(consumer)
                try:
                    role = self._role(reach)
                except _CannotFollow:
                    stuck.append(f"{node.op_type} ({node_name})")
                    role = None
                if role is not None:
                    in_axes, out_axes, batch_axes, label = role
                    stored_axes = [
                        [reach.axis_map[a] for a in axes if reach.axis_map[a] is not None]
                        for axes in (in_axes, out_axes, batch_axes)
                    ]
                    axes = Axes(*stored_axes)
                    roles.append((axes, f"{label} ({node_name})", axes_fans(shape, axes)))
                weight = weight or self._weight_of(node)
            conflict = None
            distinct = {fans for _, _, fans in roles}
            if len(distinct) > 1:
                conflict = "its consumers disagree on fans: " + "; ".join(
                    f"{source} gives (fan_in, fan_out) = {fans}" for _, source, fans in roles
                )
            axes, source = (roles[0][0], roles[0][1]) if roles else (None, "")
            if not roles and stuck:
                source = "tf (auto: cannot follow " + ", ".join(stuck) + ")"
            elif not roles and consumers:
                source = "tf (auto: no fan rule for " + ", ".join(f"{c.qualified_op} {c.input_name}" for c in consumers) + ")"
            hints[name] = FanHint(axes=axes, source=source, weight=weight, conflict=conflict)
            infos.append(TensorInfo(name, shape, dtype, tuple(consumers)))
        return infos, hints

    # ------------------------------------------------------------------ rewrites

    def _materialize(self) -> None:
        """Turn ``ConstantOfShape`` nodes with a constant shape into initializers of that shape.

        The new initializer holds the node's fill value (so ``keep`` keeps it), and shape
        tensors that nothing reads any more are dropped with their graph inputs.  Its bytes
        are made only when it is written or read (``self._fills``), so ``plan`` and
        ``inspect`` allocate nothing.  A shape that is not a short list of non-negative
        integers, or a tensor past 1 TiB, is an error.
        """
        nodes, labels = _node_labels(self.model.graph)
        uses: dict[str, int] = {}
        for node in nodes:
            for value in node.input:
                uses[value] = uses.get(value, 0) + 1
        for graph in _graphs(self.model.graph):
            shapes = {t.name: t for t in graph.initializer}
            candidates = [
                node
                for node in graph.node
                if node.op_type == "ConstantOfShape"
                and node.domain in ("", "ai.onnx")
                and node.input
                and node.input[0] in shapes
                and node.output
                and node.output[0]
            ]
            replaced = []
            for node in candidates:
                made = self._materialized(node, labels[id(node)])
                if made is None:
                    continue
                graph.initializer.append(made)
                if self.model.ir_version < 4:  # IR 3 lists every initializer among the graph inputs
                    graph.input.append(onnx.helper.make_tensor_value_info(made.name, made.data_type, list(made.dims)))
                uses[node.input[0]] -= 1
                replaced.append(node)
            if not replaced:
                continue
            done = {id(node) for node in replaced}
            outputs = {o.name for o in graph.output}
            unused = {n.input[0] for n in replaced if uses[n.input[0]] == 0 and n.input[0] not in outputs}
            _remove(graph.node, lambda node: id(node) in done)
            _remove(graph.initializer, lambda tensor: tensor.name in unused)
            _remove(graph.input, lambda item: item.name in unused)
        del nodes

    def _materialized(self, node: onnx.NodeProto, label: str) -> TensorProto | None:
        """The initializer a ConstantOfShape node stands for, or None for a fill value of a
        type vsconf cannot lay out (strings, sub-byte types): that node stays."""
        where = f"{self.path}: ConstantOfShape {_shown(label)}"
        shape = self._constant_ints(node.input[0])
        if shape is None:
            raise ModelError(f"{where}: its shape {_shown(node.input[0])} is not a list of at most {_MAX_RANK} integers")
        if any(d < 0 for d in shape):
            raise ModelError(f"{where}: its shape {shape} has a negative dimension")
        fill = self._fill_value(node, where)
        if fill is None:
            return None
        made = TensorProto(name=node.output[0], data_type=onnx.helper.np_dtype_to_tensor_dtype(fill.dtype), dims=shape)
        problem = _layout_problem(made)  # an empty shape's other dims too must fit NumPy
        if problem:
            raise ModelError(f"{where}: its output's {problem}")
        nbytes = _data_bytes(made)
        if nbytes > _MATERIALIZE_LIMIT:
            raise ModelError(
                f"{where}: a {fill.dtype.name} tensor of shape {shape} needs {nbytes} bytes; "
                f"vsconf materializes at most 2**40 bytes"
            )
        self._fills[made.name] = fill  # its bytes are made when written (or read), not now
        return made

    def _fill_value(self, node: onnx.NodeProto, where: str) -> np.ndarray | None:
        """The fill value as a 0-d array (float32 0 by default), or None for strings and sub-byte types."""
        try:
            value = _attribute(node, "value", AttributeProto.TENSOR)
        except _CannotFollow:
            raise ModelError(f"{where}: its value attribute is not a tensor") from None
        if value is None:
            return np.zeros((), np.float32)
        problem = _layout_problem(value) or _data_problem(value)
        if problem:
            raise ModelError(f"{where}: its value: {problem}")
        if _element_count(value) != 1:
            raise ModelError(f"{where}: its value attribute is not a one-element tensor")
        if value.data_type == TensorProto.STRING or (_BITS[value.data_type] or 0) % 8:
            return None
        return self._array(value, value.name or "(unnamed)").reshape(())

    def _untie(self) -> None:
        """Give every direct consumer of a shared float initializer its own copy, ``<name>:<node>``.

        Shared non-float tensors (shapes, axes) stay shared: vsconf never fills them.
        """
        index = self._build_index()
        for name, item in list(self._stored.items()):
            edges = index.edges.get(name, [])
            consumers = {id(edge.node): index.names[id(edge.node)] for edge in edges}  # a node may read it twice
            floating = item.proto.data_type in _FLOAT_TYPES
            if len(consumers) < 2 or item.kind != "initializer" or not floating:
                continue
            for consumer in dict.fromkeys(consumers.values()):
                copy = TensorProto()
                copy.CopyFrom(item.proto)
                copy.name = f"{name}:{consumer}"
                if name in self._fills:
                    self._fills[copy.name] = self._fills[name]
                item.graph.initializer.append(copy)
                if self.model.ir_version < 4:
                    item.graph.input.append(onnx.helper.make_tensor_value_info(copy.name, copy.data_type, list(copy.dims)))
            for edge in edges:
                edge.node.input[edge.index] = f"{name}:{consumers[id(edge.node)]}"
            if not any(o.name == name for o in item.graph.output):
                _remove(item.graph.initializer, lambda tensor: tensor.name == name)
                _remove(item.graph.input, lambda entry: entry.name == name)

    # ------------------------------------------------------------------ writing

    def write(
        self, output: Path, plan: Plan, values, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
        """Stage the model with new values as ``output`` in ``transaction`` (not committed).

        With external data (the input had some, or the output would pass protobuf's 2 GiB),
        tensors of 1 KiB or more go to a fresh data file beside the output (none when no
        tensor is that large), staged before the model that names it so that the commit
        renames it into place first.
        """
        output = Path(output)
        entries = {entry.name: entry for entry in plan}
        inline_bytes = sum(_nbytes(item.proto) for item in self._stored.values())
        external = bool(self._input_locations) or inline_bytes > _INLINE_LIMIT
        data_path = None
        if external and any(self._moves(item) for item in self._stored.values()):
            data_path = output.parent / self._fresh_data_name(output)
        if data_path is not None:
            temp = transaction.stage(data_path)
            with _writing(data_path), open(temp, "wb") as data:
                self._store(entries, values, progress, data, data_path.name)
        else:
            self._store(entries, values, progress, None, None)
        for name, tensor in self._loose:
            _set_inline(tensor, self._tensor_bytes(tensor, name))
        _set_metadata(self.model, metadata)
        try:
            serialized = self.model.SerializeToString()
        except ValueError:  # protobuf's 2 GiB limit: the graph itself is too large
            raise ModelError(f"{output}: cannot write: the model would pass protobuf's 2 GiB limit") from None
        temp = transaction.stage(output)
        with _writing(output):
            temp.write_bytes(serialized)

    def _store(self, entries, values, progress, data, location: str | None) -> None:
        """Put every tensor's bytes in place: new values, materialized fills, and in
        external mode every big initializer (``data``: the open data file, or None)."""
        total = len(self._stored)
        for done, (name, item) in enumerate(self._stored.items(), 1):
            entry = entries.get(name)
            chunks = values(entry) if entry is not None else None
            target = data if data is not None and self._moves(item) else None
            if chunks is not None:
                _put(item.proto, (little_endian_bytes(chunk) for chunk in chunks), target, location)
            elif name in self._fills:
                _put(item.proto, _fill_chunks(self._fills[name], _element_count(item.proto)), target, location)
            elif item.proto.data_location == TensorProto.EXTERNAL or target is not None:
                _put(item.proto, [self._raw(item.proto, name)], target, location)
            if progress:
                progress(done, total, name)

    @staticmethod
    def _moves(item: _Stored) -> bool:
        """Whether the tensor goes to the data file when the output has one (its new values
        have the size its dims declare)."""
        return item.kind == "initializer" and _movable(item.proto) and _nbytes(item.proto) >= _EXTERNAL_THRESHOLD

    def _raw(self, tensor: TensorProto, name: str) -> bytes:
        """The tensor's bytes as raw_data stores them."""
        if tensor.data_location == TensorProto.EXTERNAL:
            return self._tensor_bytes(tensor, name)
        if tensor.HasField("raw_data"):
            return tensor.raw_data
        return little_endian_bytes(numpy_helper.to_array(tensor))

    def _fresh_data_name(self, output: Path) -> str:
        """``<output>.data``, or a random variant when that name is taken by any file (it
        may be in use) or by a file the input names."""
        taken = {_resolved(path) for path in self.files()}
        name = f"{output.name}.data"
        while os.path.lexists(output.parent / name) or _resolved(output.parent / name) in taken:
            name = f"{output.name}.{secrets.token_hex(4)}.data"
        return name

    def stale_data_files(self, output: Path) -> tuple[list[Path], list[str]]:
        """The data files that may be removed once a new model has replaced ``output``, and
        a note for every other file the old ``output`` names (kept, and why).

        A file may go only if the model now at ``output`` names it as external data, it
        has the name vsconf gives data files for that output (``<output>.data`` or
        ``<output>.<8 hex>.data``, beside it), it is a regular file and not a symbolic
        link, and the input model does not name it (unless ``output`` is the input).
        """
        output = Path(output)
        if not os.path.lexists(output):
            return [], []
        in_place = _resolved(output) == _resolved(self.path)
        if in_place:
            locations = self._input_locations
        else:
            try:
                locations = _external_locations(_load(output))
            except ModelError:
                return [], [f"kept every file {output} names: it is not a readable ONNX model"]
        input_files = set() if in_place else {_resolved(path) for path in self.files()}
        stale: list[Path] = []
        notes: list[str] = []
        for location in locations:
            reason = self._keep_reason(output, location, input_files)
            if reason is None:
                stale.append(output.parent / location)
            elif reason:
                notes.append(f"kept {_plain(location)}: {reason}")
        return stale, notes

    def _keep_reason(self, output: Path, location: str, input_files: set[Path | None]) -> str | None:
        """Why the old output's data file ``location`` stays; None if it may go, '' if it is not there."""
        if not is_data_name(location, output.name):
            return f"not a data file vsconf made for {output.name}"
        path = output.parent / location
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return ""
        except OSError as exc:
            return f"cannot look at it: {describe_os_error(exc)}"
        if stat.S_ISLNK(mode):
            return "it is a symbolic link"
        if not stat.S_ISREG(mode):
            return "not a regular file"
        if _resolved(path) in input_files:
            return f"the input model {self.path.name} names it too"
        if _resolved(path) == _resolved(self.path):
            return "it is the input model"
        return None


def _unsqueezed(axis_map: tuple[int | None, ...], axes: list[int]) -> tuple[int | None, ...] | None:
    """The axis map after inserting ``axes`` (ONNX's Unsqueeze), or None if they are not valid axes."""
    out_rank = len(axis_map) + len(axes)
    if len(axes) > _MAX_RANK or not all(-out_rank <= a < out_rank for a in axes):
        return None
    inserted = sorted({a % out_rank for a in axes})
    if len(inserted) != len(axes):
        return None
    mapped = list(axis_map)
    for a in inserted:
        mapped.insert(a, None)
    return tuple(mapped)


def _squeezed(axis_map: tuple[int | None, ...], axes: list[int]) -> tuple[int | None, ...] | None:
    """The axis map after removing ``axes`` (ONNX's Squeeze), or None if they are not valid axes."""
    rank = len(axis_map)
    if not all(-rank <= a < rank for a in axes):
        return None
    removed = {a % rank for a in axes}
    if len(removed) != len(axes):
        return None
    return tuple(m for i, m in enumerate(axis_map) if i not in removed)


def _all_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Every tensor a graph stores: initializers and tensor attributes, subgraphs included."""
    for sub in _graphs(graph):
        yield from sub.initializer
        for sparse in sub.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in sub.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors


def _external_locations(model: onnx.ModelProto) -> list[str]:
    """The data files a model names, in order of first mention."""
    names: dict[str, None] = {}
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            names.update({e.value: None for e in tensor.external_data if e.key == "location"})
    return list(names)


def _nbytes(tensor: TensorProto) -> int:
    """The tensor's data size from its dims, without touching the data."""
    if tensor.data_type == TensorProto.STRING:
        return tensor.ByteSize()
    return _data_bytes(tensor)


def _movable(tensor: TensorProto) -> bool:
    """Whether the tensor's bytes can go to a data file: not strings, and sub-byte types
    only when their bytes are already packed (raw_data or external)."""
    if tensor.data_type == TensorProto.STRING:
        return False
    packed = tensor.HasField("raw_data") or tensor.data_location == TensorProto.EXTERNAL
    return (_BITS[tensor.data_type] or 0) % 8 == 0 or packed


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """OSErrors while writing ``target`` (a full disk) as one clear error."""
    try:
        yield
    except OSError as exc:
        raise ModelError(f"{target}: cannot write: {describe_os_error(exc)}") from None


def _set_inline(tensor: TensorProto, raw: bytes) -> None:
    """Store ``raw`` as the tensor's raw_data, keeping its name, dtype and dims."""
    for name in _TYPED_FIELDS:
        tensor.ClearField(name)
    del tensor.external_data[:]
    tensor.data_location = TensorProto.DEFAULT
    tensor.raw_data = raw


def _put(tensor: TensorProto, chunks: Iterable[bytes], data, location: str | None) -> None:
    """Store the bytes ``chunks`` make as the tensor's values: appended to the open data
    file ``data`` when given, else inline as raw_data."""
    if data is None:
        _set_inline(tensor, b"".join(chunks))
    else:
        _write_external(tensor, data, location, chunks)


def _fill_chunks(fill: np.ndarray, count: int) -> Iterator[bytes]:
    """``count`` copies of ``fill``'s bytes, at most about 64 MiB at a time."""
    one = little_endian_bytes(fill)
    per_chunk = max(1, (64 << 20) // max(len(one), 1))
    for start in range(0, count, per_chunk):
        yield one * min(per_chunk, count - start)


def _write_external(tensor: TensorProto, data, location: str, chunks: Iterable[bytes]) -> None:
    """Append the bytes ``chunks`` make to the open data file (page-aligned) and point the tensor at it."""
    position = data.tell()
    padding = (-position) % _ALIGNMENT
    if padding:
        data.write(b"\0" * padding)
        position += padding
    length = 0
    for chunk in chunks:
        data.write(chunk)
        length += len(chunk)
    _set_inline(tensor, b"")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(position)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _remove(field, unwanted) -> None:
    """Delete the items of a repeated protobuf field for which ``unwanted(item)`` holds, in
    place (rebuilding the field would copy every other message)."""
    for index in reversed([i for i, item in enumerate(field) if unwanted(item)]):
        del field[index]


def _set_metadata(model: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
