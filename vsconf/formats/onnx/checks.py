"""What a stored tensor declares against what it stores, and how messages show it.

Pure functions over ``TensorProto`` messages (skeletons included: the size of a
``raw_data`` that a marker stands for is passed in).  The contract: a tensor is usable
only if its ``data_type`` is an element type, its dims are non-negative and fit in int64
bytes (NumPy refuses a shape whose non-zero dims pass 2**63 bytes, even an empty one),
and it stores its values in exactly one place holding exactly what the dims need --
``raw_data`` (sub-byte types packed), the typed field onnx.proto assigns to its type, or
external data.  Each ``*_problem`` function returns what is wrong, as a message names it
after ``tensor 'NAME': ``, or None.
"""

from __future__ import annotations

import math

import numpy as np

from vsconf.dtypes import DtypeTable
from vsconf.formats.onnx.proto import TensorProto

INT64_LIMIT = 2**63
FLOAT_TYPES = frozenset({TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE})
INT_TYPES = frozenset(
    {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64}
    | {TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}
)

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
BITS = {getattr(TensorProto, name): bits for name, bits in _BITS_BY_NAME.items() if hasattr(TensorProto, name)}
# The typed field each element type uses when it has no raw_data, and how many entries
# of that field one element takes (onnx.proto: complex numbers take two; int32_data
# packs two 4-bit or four 2-bit elements into one entry; every other type not listed
# keeps one element per int32_data entry: float16 and bfloat16 as their bits).
TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
_FIELD_BY_NAME = {
    "FLOAT": ("float_data", 1, 1), "COMPLEX64": ("float_data", 2, 1),
    "DOUBLE": ("double_data", 1, 1), "COMPLEX128": ("double_data", 2, 1),
    "INT64": ("int64_data", 1, 1), "UINT32": ("uint64_data", 1, 1), "UINT64": ("uint64_data", 1, 1),
    "STRING": ("string_data", 1, 1),
    "UINT4": ("int32_data", 1, 2), "INT4": ("int32_data", 1, 2), "FLOAT4E2M1": ("int32_data", 1, 2),
    "UINT2": ("int32_data", 1, 4), "INT2": ("int32_data", 1, 4),
}  # fmt: skip
_FIELD = {code: _FIELD_BY_NAME.get(name, ("int32_data", 1, 1)) for name, code in TensorProto.DataType.items() if code in BITS}


# --------------------------------------------------------------------------- names in messages


# Each element type's NumPy dtype, by name: onnx's own table as of 1.19-1.23 (where it
# took the 16-, 8-, 4-, 2- and 6-bit floats and integers from ml_dtypes), kept here so
# that no onnx version decides -- onnx up to 1.18 called bfloat16 float32 -- and
# ml_dtypes loads only for a model that has such a tensor.
_DTYPE_NAMES = {
    "FLOAT": "float32", "UINT8": "uint8", "INT8": "int8", "UINT16": "uint16", "INT16": "int16",
    "INT32": "int32", "INT64": "int64", "STRING": "object", "BOOL": "bool", "FLOAT16": "float16",
    "DOUBLE": "float64", "UINT32": "uint32", "UINT64": "uint64", "COMPLEX64": "complex64",
    "COMPLEX128": "complex128", "BFLOAT16": "bfloat16",
    "FLOAT8E4M3FN": "float8_e4m3fn", "FLOAT8E4M3FNUZ": "float8_e4m3fnuz", "FLOAT8E5M2": "float8_e5m2",
    "FLOAT8E5M2FNUZ": "float8_e5m2fnuz", "FLOAT8E8M0": "float8_e8m0fnu", "UINT4": "uint4", "INT4": "int4",
    "FLOAT4E2M1": "float4_e2m1fn", "UINT2": "uint2", "INT2": "int2", "FLOAT6E2M3": "float6_e2m3fn",
    "FLOAT6E3M2": "float6_e3m2fn",
}  # fmt: skip
_DTYPES = DtypeTable({getattr(TensorProto, name): dtype for name, dtype in _DTYPE_NAMES.items() if hasattr(TensorProto, name)})
# The other way, for tensors vsconf makes from a NumPy array (--materialize).
DATA_TYPES = {dtype: code for code, dtype in _DTYPES.names.items()}


def np_dtype(data_type: int) -> np.dtype:
    try:
        return _DTYPES[data_type]
    except (KeyError, TypeError, AttributeError):  # AttributeError: an ml_dtypes without the type
        return np.dtype("V1")  # a type NumPy cannot hold: never filled, never read


def type_text(data_type: int) -> str:
    """``float32``, ``bfloat16``, ``int4``, ``string``: the names users know."""
    if data_type == TensorProto.STRING:
        return "string"
    dtype = np_dtype(data_type)
    if dtype.kind == "V" and dtype.itemsize == 1:
        return TensorProto.DataType.Name(data_type).lower() if data_type in BITS else f"data_type {data_type}"
    return dtype.name


def dims_text(dims) -> str:
    shown = [str(d) for d in dims[:8]]
    if len(dims) > 8:
        shown.append(f"... ({len(dims)} dims)")
    return "[" + ", ".join(shown) + "]"


def shown(text: str) -> str:
    """A name or value from the file as a message shows it: quoted, and cut when long."""
    if len(text) <= 200:
        return repr(text)
    return f"{text[:20]!r}... ({len(text)} characters)"


def plain(text: str) -> str:
    """A file or op name from the model as a message shows it: as is, unless it would mislead."""
    return text if text.isprintable() and len(text) <= 200 else shown(text)


def decimal(text: str) -> int | None:
    """``text`` as an integer in [0, 2**63) if it is written in decimal digits, else None
    (never ``int()`` on thousands of digits)."""
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > 19:
        return None
    value = int(digits)
    return value if value < INT64_LIMIT else None


# --------------------------------------------------------------------------- sizes


def layout_problem(tensor: TensorProto) -> str | None:
    """What is wrong with the tensor's declared element type and dims, or None."""
    if tensor.data_type not in BITS:
        if tensor.data_type == TensorProto.UNDEFINED:
            return "data_type is 0 (UNDEFINED), not an element type"
        return f"data_type {tensor.data_type} is not an element type vsconf knows"
    if any(d < 0 for d in tensor.dims):
        return f"dims {dims_text(tensor.dims)} have a negative dimension"
    # NumPy refuses a shape whose non-zero dims pass 2**63 bytes even when a 0 empties it.
    element_bytes = -(-(BITS[tensor.data_type] or 64) // 8)
    span = element_bytes
    for d in tensor.dims:
        span *= max(d, 1)
        if span >= INT64_LIMIT:
            break
    if span < INT64_LIMIT:
        return None
    declared = f"dims {dims_text(tensor.dims)} ({type_text(tensor.data_type)})"
    if 0 in tensor.dims:
        return f"{declared} hold no elements, but their other dims pass 2**63 bytes"
    return f"{declared} need more than 2**63 bytes"


def element_count(tensor: TensorProto) -> int:
    """The number of elements (dims already checked by :func:`layout_problem`)."""
    return math.prod(tensor.dims)


def data_bytes(tensor: TensorProto) -> int:
    """The bytes the dims need in raw_data or external data (layout already checked)."""
    return -(-element_count(tensor) * (BITS[tensor.data_type] or 0) // 8)


def stored_bytes(tensor: TensorProto) -> int:
    """The tensor's data size from its dims, without touching the data (strings: the message's size)."""
    if tensor.data_type == TensorProto.STRING:
        return tensor.ByteSize()
    return data_bytes(tensor)


def is_sub_byte(data_type: int) -> bool:
    return (BITS[data_type] or 0) % 8 != 0


def need_text(tensor: TensorProto) -> str:
    return f"its dims {dims_text(tensor.dims)} ({type_text(tensor.data_type)}) need"


def data_problem(tensor: TensorProto, raw_size: int | None) -> str | None:
    """What is wrong with how the tensor stores its values (layout already checked), or None.

    ``raw_size``: how many bytes its raw_data holds (a skeleton's marker stands for them),
    None when it has none.
    """
    if tensor.HasField("segment"):
        return "it is stored in segments, which vsconf does not read"
    typed = [name for name in TYPED_FIELDS if len(getattr(tensor, name))]
    stores = (["raw_data"] if raw_size is not None else []) + typed
    is_string = tensor.data_type == TensorProto.STRING
    if tensor.data_location == TensorProto.EXTERNAL:
        if stores:
            return f"it is external data and also has {stores[0]}; a tensor stores its values in one place"
        return "a string tensor cannot be external data" if is_string else None
    if len(stores) > 1:
        return f"it has both {stores[0]} and {stores[1]}; a tensor stores its values in one of them"
    count = element_count(tensor)
    if not stores:
        return f"it has no data, but {need_text(tensor)} {count} values" if count else None
    if stores == ["raw_data"]:
        if is_string:
            return "a string tensor cannot use raw_data"
        need = data_bytes(tensor)
        return f"raw_data holds {raw_size} bytes, {need_text(tensor)} {need}" if raw_size != need else None
    expected, per_element, per_entry = _FIELD[tensor.data_type]
    if typed[0] != expected:
        return f"it keeps its values in {typed[0]}, but {type_text(tensor.data_type)} tensors keep them in {expected}"
    need = -(-count * per_element // per_entry)
    have = len(getattr(tensor, expected))
    return f"{expected} holds {have} values, {need_text(tensor)} {need}" if have != need else None


def movable(tensor: TensorProto) -> bool:
    """Whether the tensor's bytes can go to a data file: not strings, and sub-byte types
    only when their bytes are already packed (raw_data or external)."""
    if tensor.data_type == TensorProto.STRING:
        return False
    packed = tensor.HasField("raw_data") or tensor.data_location == TensorProto.EXTERNAL
    return not is_sub_byte(tensor.data_type) or packed
