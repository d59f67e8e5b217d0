"""``.safetensors`` files: checked and read through the safetensors library, written
tensor by tensor (the header first: every size is known from the plan).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsconf.dtypes import DtypeTable
from vsconf.engine import Plan
from vsconf.errors import ModelError
from vsconf.files import Transaction, describe_os_error, little_endian_bytes, pread_range
from vsconf.formats.names import NamedTensors, is_unicode
from vsconf.formats.protocol import Values
from vsconf.matching import TensorInfo
from vsconf.record import recorded_stream
from vsconf.threads import prefetch


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ModelError(
            ".safetensors files need the optional extra: pip install 'vsconf[safetensors]'"
        ) from None
    return safetensors


class SafetensorsStateDict(NamedTensors):
    """A ``.safetensors`` file: checked and read through the safetensors library, written
    tensor by tensor (header first: every size is known from the plan)."""

    def __init__(self, path: Path):
        self.path = path
        self._lib = _safetensors()
        try:
            self._file = self._lib.safe_open(str(path), framework="numpy")
            self.metadata = dict(self._file.metadata() or {})
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{path}: cannot read as .safetensors: {exc}") from None
        self.recorded_stream = recorded_stream(self.metadata)
        # The library has checked the header; read it again for the byte ranges, which
        # copying a tensor of a type NumPy cannot hold (float8...) needs.
        with open(path, "rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(size))
        self._data_start = 8 + size
        self._header = {name: info for name, info in header.items() if name != "__metadata__"}
        self._infos = []
        for name in self._file.keys():
            info = self._header[name]
            # Types NumPy cannot hold show as raw bytes: never filled, copied through.
            dtype = np.dtype(SAFETENSORS_DTYPES.get(info["dtype"], "V1"))
            self._infos.append(TensorInfo(name, tuple(info["shape"]), dtype))

    def close(self) -> None:
        self._file = None

    def read(self, name: str) -> np.ndarray:
        try:
            return self._file.get_tensor(name)
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{self.path}: tensor {name!r}: cannot read: {exc}") from None

    def stored(self, name: str) -> tuple[str, str, int, int]:
        """(safetensors dtype, file, offset, length) of a tensor's bytes, for copying them."""
        info = self._header[name]
        begin, end = info["data_offsets"]
        return info["dtype"], str(self.path), self._data_start + begin, end - begin

    def write(
        self, output: Path, plan: Plan, values: Values, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
        """Tensors go out in name order; untouched ones are copied byte for byte."""
        names = sorted(self._header)
        described = []
        for name in names:
            begin, end = self._header[name]["data_offsets"]
            described.append((name, self._header[name]["dtype"], self._header[name]["shape"], end - begin))
        header = safetensors_header(described, {**self.metadata, **metadata}, output)
        entries = {entry.name: entry for entry in plan}
        temp = transaction.stage(output)
        try:
            with open(temp, "wb") as sink, open(self.path, "rb") as source:
                sink.write(header)
                for done, name in enumerate(names, 1):
                    chunks = values(entries[name]) if name in entries else None
                    if chunks is None:
                        begin, end = self._header[name]["data_offsets"]
                        _copy_range(source, sink, self._data_start + begin, end - begin)
                    else:
                        for chunk in prefetch(chunks):
                            sink.write(little_endian_bytes(chunk))
                    if progress:
                        progress(done, len(names), name)
        except OSError as exc:
            raise ModelError(f"{output}: cannot write: {describe_os_error(exc)}") from None


# The safetensors library refuses a longer header ("header too large"; MAX_HEADER_SIZE in
# its Rust crate, checked here against the installed library: 100,000,000 reads, +8 does not).
MAX_SAFETENSORS_HEADER = 100_000_000


def safetensors_name_problem(name: str) -> str | None:
    """Why a tensor called ``name`` cannot be in a safetensors file, or None."""
    if name == "__metadata__":
        return "its name is the key a safetensors header keeps for its metadata"
    if not is_unicode(name):
        return "its name is not valid Unicode text (a lone surrogate), which a safetensors header cannot hold"
    return None


def safetensors_header(tensors: Sequence[tuple[str, str, Sequence[int], int]], metadata: Mapping[str, str], where: Path) -> bytes:
    """A safetensors header for ``(name, dtype code, shape, bytes)`` in data order: 8-byte
    length, then JSON padded with spaces so that the data starts 8-byte aligned, as the
    library writes it.  A name or a size the library would refuse is an error naming it."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, code, shape, nbytes in tensors:
        problem = safetensors_name_problem(name)
        if problem is not None:
            raise ModelError(f"{where}: tensor {name!r}: {problem}")
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    if len(text) > MAX_SAFETENSORS_HEADER:
        raise ModelError(
            f"{where}: the safetensors header would take {len(text):,} bytes; the safetensors library reads at most "
            f"{MAX_SAFETENSORS_HEADER:,} (write more, smaller shards: --shard-size)"
        )
    return struct.pack("<Q", len(text)) + text


def _copy_range(source, sink, offset: int, length: int) -> None:
    for piece in pread_range(source.fileno(), offset, length, source.name):
        sink.write(piece)


SAFETENSORS_DTYPES = DtypeTable({
    "BF16": "bfloat16", "F64": "float64", "F32": "float32", "F16": "float16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
})  # fmt: skip


