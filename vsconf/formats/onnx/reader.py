"""An ONNX file's structure, and where each tensor's bytes lie, without loading them.

:class:`ModelFile` memory-maps the model and walks protobuf's wire format
(:mod:`vsconf.formats.onnx.wire`) to a *skeleton*: the ``ModelProto`` with every large ``raw_data``
replaced by a marker that records its byte range in the file.  Opening a model therefore
costs time and memory in proportion to its graph, not its weights; a tensor's bytes are
read (``pread``, one tensor at a time) only when asked for.  The contract:

* **Nothing is trusted before it is checked.**  A file is refused unless it is at most
  2 GiB (protobuf's limit), parses as a ``ModelProto`` with a graph, an ``ir_version`` and
  (from IR 3) an ``opset_import``, and every string field is UTF-8 (protobuf hands any
  other to Python as bytes).  Every refusal is a :class:`~vsconf.errors.ModelError` that
  starts with the model's path.
* **External data stays inside the model's folder.**  :meth:`ModelFile.external` checks a
  tensor's location (relative, no escape, a regular file), its offset and length (decimal,
  in int64) and that the bytes lie within the file, before anything reads them.
* The skeleton is the file's message: protobuf would have parsed the same fields from the
  whole file, with the markers' bytes in their place (:func:`vsconf.formats.onnx.wire.skeleton`).
  Where the walk cannot follow the bytes, the file is parsed whole, as onnx would.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from vsconf.errors import ModelError
from vsconf.files import describe_os_error, little_endian_bytes, pread_range, regular_file
from vsconf.formats.onnx import proto
from vsconf.formats.onnx.checks import data_bytes, decimal, is_sub_byte, need_text, np_dtype, plain, shown
from vsconf.formats.onnx.proto import TensorProto
from vsconf.formats.onnx.wire import References, WireError, skeleton

# Protobuf refuses messages over 2 GiB.
PROTOBUF_LIMIT = 2**31 - 1
# Bytes copied at a time.
COPY_CHUNK = 8 << 20


@dataclass(frozen=True)
class FileRange:
    """``length`` bytes at ``offset`` in the file ``path``; ``where`` starts a message about them."""

    path: Path
    offset: int
    length: int
    where: str


class ModelFile:
    """An opened ONNX file: its skeleton ``model``, and the bytes of any tensor on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.base = self.path.parent
        self.references = References()
        self._fd = _open(self.path)
        try:
            self.model = self._parse()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------ structure

    def _parse(self) -> proto.ModelProto:
        size = os.fstat(self._fd).st_size
        if size == 0:
            raise ModelError(f"{self.path}: not an ONNX model: the file is empty")
        try:
            mapped = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{self.path}: cannot read: {_reason(exc)}") from None
        try:
            data = skeleton(mapped, size, self._reference)
        except WireError:  # let protobuf decide about bytes the walk does not follow
            self.references = References()
            data = mapped[:size]
        finally:
            mapped.close()
        model = proto.ModelProto()
        try:
            model.ParseFromString(data)
        except Exception:  # protobuf's DecodeError; nesting past protobuf's limit
            raise ModelError(f"{self.path}: not an ONNX model: protobuf cannot parse it") from None
        problem = model_problem(model) or text_problem(model)
        if problem:
            raise ModelError(f"{self.path}: not an ONNX model: {problem}")
        return model

    def _reference(self, offset: int, length: int) -> bytes:
        return self.references.add(FileRange(self.path, offset, length, str(self.path)))

    # ------------------------------------------------------------------ where bytes lie

    def raw_size(self, tensor: TensorProto) -> int | None:
        """How many bytes the tensor's raw_data holds, or None when it has none."""
        if not tensor.HasField("raw_data"):
            return None
        found = self.references.find(tensor.raw_data)
        return len(tensor.raw_data) if found is None else found.length

    def source(self, tensor: TensorProto, name: str) -> FileRange | None:
        """Where a checked tensor's raw bytes lie in a file: its external data, or the
        range of the model file its raw_data marker stands for; None when they are in
        the skeleton itself."""
        if tensor.data_location == TensorProto.EXTERNAL:
            return self.external(tensor, name)
        if tensor.HasField("raw_data"):
            return self.references.find(tensor.raw_data)
        return None

    def external(self, tensor: TensorProto, name: str) -> FileRange:
        """Where the external tensor ``name``'s bytes are, every key checked against the data file's size."""
        where = f"{self.path}: tensor {shown(name)}"
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        path = self._data_path(where, location)
        numbers = {}
        for key in ("offset", "length"):
            if key in info:
                numbers[key] = decimal(info[key])
                if numbers[key] is None:
                    raise ModelError(
                        f"{where}: external data {key} is {shown(info[key])}, not a decimal integer in [0, 2**63)"
                    )
        offset, length = numbers.get("offset", 0), numbers.get("length")
        need = data_bytes(tensor)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise ModelError(f"{where}: {plain(location)}: cannot read: {describe_os_error(exc)}") from None
        if length is not None and length != need:
            raise ModelError(f"{where}: external data length is {length} bytes, {need_text(tensor)} {need}")
        if offset + need > size:
            span = f"offset {offset} + length {length}" if length is not None else f"offset {offset} + the {need} bytes its dims need"
            raise ModelError(f"{where}: {plain(location)} holds {size} bytes; {span} pass its end")
        return FileRange(path, offset, need, f"{where}: {plain(location)}")

    def _data_path(self, where: str, location: str) -> Path:
        """The data file ``location`` of an external tensor: a regular file inside the model's folder."""
        if not location:
            raise ModelError(f"{where}: its external data has no location")
        if "\0" in location:
            raise ModelError(f"{where}: external data location {shown(location)} is not a file name")
        candidate = resolved(self.base / location)
        base = resolved(self.base)
        if Path(location).is_absolute() or candidate is None or base is None or base not in candidate.parents:
            raise ModelError(f"{where} has external data outside the model's folder: {shown(location)}")
        named = self.base / location
        try:
            regular_file(named, "external data file")
        except ModelError as exc:  # "w.bin: no such file", "w.bin: the external data file is a FIFO, ..."
            reason = str(exc).removeprefix(f"{named}: ")
            raise ModelError(f"{where}: {plain(str(named))}: {reason}") from None
        return candidate

    # ------------------------------------------------------------------ reading bytes

    def chunks(self, source: FileRange, size: int = COPY_CHUNK) -> Iterator[bytes]:
        """The bytes of ``source``, at most ``size`` at a time."""
        own = source.path == self.path and self._fd is not None
        try:
            fd = self._fd if own else os.open(source.path, os.O_RDONLY)
        except OSError as exc:
            raise ModelError(f"{source.where}: cannot read: {describe_os_error(exc)}") from None
        try:
            yield from pread_range(fd, source.offset, source.length, source.where, size)
        finally:
            if not own:
                os.close(fd)

    def raw_bytes(self, tensor: TensorProto, name: str) -> bytes:
        """The checked tensor's values as raw_data stores them: little-endian, sub-byte types packed."""
        source = self.source(tensor, name)
        if source is not None:
            return b"".join(self.chunks(source, max(source.length, 1)))
        if tensor.HasField("raw_data"):
            return tensor.raw_data
        return little_endian_bytes(typed_values(tensor))

    def array(self, tensor: TensorProto, name: str) -> np.ndarray:
        """The values a checked tensor stores (``name`` is for messages); a copy, never a view of the file."""
        source = self.source(tensor, name)
        if source is None and not tensor.HasField("raw_data"):
            return typed_values(tensor)
        data = self.raw_bytes(tensor, name)
        if is_sub_byte(tensor.data_type):  # packed sub-byte types: onnx unpacks them
            from onnx import numpy_helper

            return numpy_helper.to_array(TensorProto(data_type=tensor.data_type, dims=list(tensor.dims), raw_data=data))
        dtype = np_dtype(tensor.data_type).newbyteorder("<")
        return np.frombuffer(data, dtype=dtype).reshape(tuple(tensor.dims))


# The float types vsconf fills, from the typed field onnx.proto puts them in: float32 and
# float64 as they are, float16 and bfloat16 as their bits in the low half of int32_data.
_TYPED_FLOATS = {TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data"}
_TYPED_HALVES = (TensorProto.FLOAT16, TensorProto.BFLOAT16)


def typed_values(tensor: TensorProto) -> np.ndarray:
    """The values of a tensor that stores them in a typed field (no raw_data).  The float
    types vsconf fills are read here, bit for bit; the others are left to onnx's
    ``numpy_helper`` (then onnx loads whole)."""
    dims = tuple(tensor.dims)
    if tensor.data_type in _TYPED_FLOATS:
        return np.array(getattr(tensor, _TYPED_FLOATS[tensor.data_type]), dtype=np_dtype(tensor.data_type)).reshape(dims)
    if tensor.data_type in _TYPED_HALVES:
        bits = np.array(tensor.int32_data, dtype=np.int64) & 0xFFFF
        return bits.astype(np.uint16).view(np_dtype(tensor.data_type)).reshape(dims)
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


def _open(path: Path) -> int:
    """A descriptor of the model file, refused past protobuf's 2 GiB before it is read."""
    try:
        if os.stat(path).st_size > PROTOBUF_LIMIT:
            raise ModelError(f"{path}: not an ONNX model: it is larger than protobuf's 2 GiB limit")
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {describe_os_error(exc)}") from None


def _reason(exc: Exception) -> str:
    return describe_os_error(exc) if isinstance(exc, OSError) else str(exc)


def resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):  # NUL bytes, symlink loops
        return None


def model_problem(model: proto.ModelProto) -> str | None:
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


def text_problem(message: Message, where: str = "") -> str | None:
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
                problem = text_problem(item, at)
                if problem:
                    return problem
    return None
