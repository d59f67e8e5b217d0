"""``.safetensors`` files: checked and read through the safetensors library, written by
tasks (the header first: every size, so every offset, is known from the plan).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsconf import schedule, tasks
from vsconf.draw import draw_of
from vsconf.dtypes import DtypeTable
from vsconf.engine import Plan, PlanEntry
from vsconf.errors import ModelError
from vsconf.files import Transaction, describe_os_error, preallocate
from vsconf.initializers import float_dtype
from vsconf.formats.names import NamedTensors, is_unicode
from vsconf.formats.protocol import Layout, Writing
from vsconf.matching import TensorInfo
from vsconf.record import recorded_stream


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
        self, output: Path, plan: Plan, writing: Writing, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
        """Tensors go out in name order, written by tasks as one shard of a checkpoint is;
        untouched ones are copied byte for byte."""
        layout = Layout(((output.name, tuple(sorted(self._header))),), None)
        write_checkpoint(
            self, plan, layout, lambda name: transaction.stage(output), metadata={**self.metadata, **metadata},
            scheduler=writing.scheduler, task_bytes=writing.task_bytes, progress=progress, digests=writing.digests, where=output,
        )


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


SAFETENSORS_DTYPES = DtypeTable({
    "BF16": "bfloat16", "F64": "float64", "F32": "float32", "F16": "float16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
})  # fmt: skip


# --------------------------------------------------------------------------- writing files by tasks

# safetensors' dtype codes by NumPy name, from the reader's table (one table for both ways).
_ST_CODES = {name: code for code, name in SAFETENSORS_DTYPES.names.items()}


@dataclass(frozen=True, slots=True)
class _Tensor:
    """One tensor of the output: where its bytes come from, and where they go."""

    entry: PlanEntry
    code: str  # safetensors dtype
    nbytes: int
    source: tuple[str, int] | None = None  # (file, offset) to copy from
    array: bool = False  # read through the adapter (a format without byte ranges)


def _describe(source: Any, entry: PlanEntry, output: Path) -> _Tensor:
    """Where ``entry``'s bytes come from; an error names ``output``, the file it cannot make."""
    if entry.changes:
        dtype = float_dtype(entry.dtype)
        return _Tensor(entry, _ST_CODES[dtype.name], math.prod(entry.shape) * dtype.itemsize)
    stored = getattr(source, "stored", None)
    if stored is not None:
        code, path, offset, length = stored(entry.name)
        return _Tensor(entry, code, length, source=(path, offset))
    if getattr(source, "has_data", True) is False:
        raise ModelError(f"{output}: tensor {entry.name!r}: no rule fills it, and the model holds no values for it")
    code = _ST_CODES.get(entry.dtype)
    if code is None:
        raise ModelError(f"{output}: tensor {entry.name!r}: dtype {entry.dtype} cannot be stored in a .safetensors file")
    itemsize = np.dtype(SAFETENSORS_DTYPES[code]).itemsize
    return _Tensor(entry, code, math.prod(entry.shape) * itemsize, array=True)


def _fill(tensor: _Tensor, path: str, offset: int) -> tasks.Fill:
    draw = draw_of(tensor.entry)
    return tasks.Fill(tensor.entry.name, draw, 0, draw.total, path, offset)


def describe(source: Any, plan: Plan, output: Path) -> list[tuple[str, int]]:
    """(name, bytes in the output) of every tensor of ``plan``, checked to fit a safetensors
    file; an error names ``output``."""
    return [(tensor.entry.name, tensor.nbytes) for tensor in (_describe(source, entry, output) for entry in plan)]


def write_checkpoint(
    source: Any,
    plan: Plan,
    layout: Layout,
    stage: Callable[[str], Path],
    *,
    metadata: Mapping[str, str],
    scheduler: schedule.Scheduler | None = None,
    task_bytes: int | None = None,
    progress=None,
    digests: dict[str, str] | None = None,
    where: Path,
) -> None:
    """Stage ``plan``'s output as the files of ``layout``, each made by ``stage(name)``
    (its index last); changed tensors are generated by tasks, the others copied from
    ``source``.  ``digests`` (if given) receives the SHA-256 of every changed tensor's
    bytes, read back from what was written.  ``where`` names the output in messages."""
    described = [_describe(source, entry, where) for entry in plan]
    by_name = {tensor.entry.name: tensor for tensor in described}
    placed: dict[str, tuple[Path, int]] = {}
    headers = [  # every header first: a name or a size a reader would refuse stops the run before any file
        safetensors_header(
            [(by_name[t].entry.name, by_name[t].code, by_name[t].entry.shape, by_name[t].nbytes) for t in group],
            metadata,
            where if layout.index is None else where / name,
        )
        for name, group in layout.files
    ]
    try:
        for (name, group), header in zip(layout.files, headers):
            file = stage(name)
            offset = len(header)
            for tensor in group:
                placed[tensor] = (file, offset)
                offset += by_name[tensor].nbytes
            preallocate(file, offset, header)
        pieces: list[tasks.Fill | tasks.Copy] = []
        for tensor in described:
            file, offset = placed[tensor.entry.name]
            if tensor.entry.changes:
                pieces.append(_fill(tensor, str(file), offset))
            elif tensor.source is not None:
                pieces.append(tasks.Copy(tensor.entry.name, tensor.source[0], tensor.source[1], tensor.nbytes, str(file), offset))
            else:
                _write_array(source, tensor, file, offset)
        schedule.write(pieces, scheduler, task_bytes=task_bytes, progress=progress, digests=digests)
        if layout.index is not None:
            _write_index(stage(layout.index), layout, described)
    except OSError as exc:
        raise ModelError(f"{where}: cannot write: {describe_os_error(exc)}") from None


def _write_array(source: Any, tensor: _Tensor, file: Path, offset: int) -> None:
    from vsconf.files import little_endian_bytes

    data = little_endian_bytes(source.read(tensor.entry.name))
    if len(data) != tensor.nbytes:
        where = f"{source.path}: " if getattr(source, "path", None) else ""
        raise ModelError(f"{where}tensor {tensor.entry.name!r}: holds {len(data)} bytes, its shape needs {tensor.nbytes}")
    fd = os.open(file, os.O_WRONLY)
    try:
        tasks.pwrite_all(fd, memoryview(data), offset)
    finally:
        os.close(fd)


def _write_index(path: Path, layout: Layout, described: Sequence[_Tensor]) -> None:
    """Hugging Face's index: total_size is the sum of the tensors' bytes; keys sorted."""
    weight_map = {tensor: file for file, group in layout.files for tensor in group}
    index = {"metadata": {"total_size": sum(t.nbytes for t in described)}, "weight_map": weight_map}
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
