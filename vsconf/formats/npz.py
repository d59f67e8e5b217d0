"""``.npz`` files: read member by member without trusting a declared size, written as
NumPy would, members streamed, every name checked against what the archive can hold.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vsconf.engine import Plan, PlanEntry
from vsconf.errors import ModelError
from vsconf.files import Transaction, describe_os_error, little_endian_bytes
from vsconf.formats.names import NamedTensors, is_unicode
from vsconf.formats.protocol import Values, Writing
from vsconf.initializers import float_dtype
from vsconf.matching import TensorInfo
from vsconf.threads import prefetch

# Fixed member timestamps make an .npz a function of its contents alone.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# DEFLATE cannot expand data more than ~1032 times; a member claiming more is lying.
_MAX_DEFLATE_RATIO = 1100
# What reading a damaged archive member can raise, besides OSError.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
_INT64_MAX = 2**63 - 1
_COMPRESSIONS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


# The header NumPy itself writes, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
# padded with spaces: read without NumPy's parser, which compiles each header as Python
# (~35 us: seconds for an .npz of 200,000 members).  Any other header goes to NumPy's.
_PLAIN_HEADER = re.compile(rb"\{'descr': '([<>|=][a-zA-Z][0-9]*)', 'fortran_order': (?:False|True), 'shape': \(((?:[0-9]+, )*(?:[0-9]+,?)?)\), \} *\n")
_MAX_PLAIN_HEADER = 10_000  # NumPy's max_header_size: longer headers get its own message


def _npy_header(handle) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of an ``.npy`` stream, its declared sizes checked."""
    start = handle.read(12)
    if len(start) == 12 and start[:8] == b"\x93NUMPY\x01\x00":
        size = int.from_bytes(start[8:10], "little")
        text = handle.read(size - 2)
        plain = _PLAIN_HEADER.fullmatch(start[10:] + text) if size <= _MAX_PLAIN_HEADER else None
        if plain is not None:
            shape = tuple(int(d) for d in plain.group(2).split(b",") if d.strip())
            return (*_checked(shape, _descr_dtype(plain.group(1).decode("ascii"))), 10 + size)
        start += text
    handle = _Replayed(start, handle)  # NumPy decides, from the same bytes
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return (*_checked(tuple(shape), dtype), handle.tell())


class _Replayed:
    """A stream that gives ``head`` (bytes already read from ``rest``) and then ``rest``."""

    def __init__(self, head: bytes, rest):
        self._head, self._rest, self._read = head, rest, 0

    def read(self, size: int = -1) -> bytes:
        data = self._head[:size] if size >= 0 else self._head
        self._head = self._head[len(data):]
        if size < 0 or len(data) < size:
            data += self._rest.read(-1 if size < 0 else size - len(data))
        self._read += len(data)
        return data

    def tell(self) -> int:
        return self._read


@functools.lru_cache(maxsize=256)
def _descr_dtype(descr: str) -> np.dtype:
    return np.lib.format.descr_to_dtype(descr)


def _checked(shape: tuple[int, ...], dtype: np.dtype) -> tuple[tuple[int, ...], np.dtype]:
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in shape {list(shape)}")
    if dtype.hasobject:
        raise ValueError("it holds Python objects, which vsconf never unpickles")
    return shape, dtype


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The bytes a C-order array of ``shape`` and ``dtype`` takes; ValueError past int64."""
    total = dtype.itemsize
    for dim in shape:
        total *= dim
        if total > _INT64_MAX:
            raise ValueError(f"shape {list(shape)} of {dtype.name} needs more than 2**63 bytes")
    return total


class NpzStateDict(NamedTensors):
    """An ``.npz`` file: members ``<name>.npy``, read lazily, written member by member."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (OSError, *_ZIP_ERRORS, ValueError) as exc:
            raise ModelError(f"{path}: cannot read as .npz: {_reason(exc)}") from None
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._infos: list[TensorInfo] = []
        seen: set[str] = set()
        for member in self._zip.infolist():
            if member.filename in seen:
                raise ModelError(f"{path}: two members are named {member.filename!r}")
            seen.add(member.filename)
            if member.compress_type not in _COMPRESSIONS:
                raise ModelError(
                    f"{path}: member {member.filename!r} uses compression method {member.compress_type}, "
                    "which vsconf cannot read (stored, deflate, bzip2 and lzma can be read)"
                )
            if not member.filename.endswith(".npy"):
                continue
            name = member.filename[: -len(".npy")]
            shape, dtype = self._check_member(member)
            self._members[name] = member
            self._infos.append(TensorInfo(name, shape, dtype))

    def _check_member(self, member: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
        """Read a member's header and check its declared size against the bytes present."""
        where = f"{self.path}: member {member.filename!r}"
        if member.compress_type != zipfile.ZIP_STORED and member.file_size > _MAX_DEFLATE_RATIO * member.compress_size + 4096:
            raise ModelError(f"{where} claims {member.file_size} bytes from {member.compress_size} compressed ones")
        try:
            start = self._stored_start(member)
            if start is not None:
                shape, dtype, header = _npy_header(io.BytesIO(start))
            else:
                with self._zip.open(member) as handle:
                    shape, dtype, header = _npy_header(handle)
            need = header + _nbytes(shape, dtype)
        except (OSError, *_ZIP_ERRORS) as exc:
            raise ModelError(f"{where}: cannot read: {_reason(exc)}") from None
        except (ValueError, SyntaxError, TypeError, tokenize.TokenError) as exc:  # NumPy's parser, on any text
            raise ModelError(f"{where} is not a NumPy array: {_reason(exc)}") from None
        if member.file_size != need:
            raise ModelError(
                f"{where}: holds {member.file_size - header} bytes of data, "
                f"its header's shape {list(shape)} ({dtype.name}) needs {need - header}"
            )
        return shape, dtype

    def _stored_start(self, member: zipfile.ZipInfo) -> bytes | None:
        """The first bytes of a stored member, through its whole ``.npy`` header, read at once
        (opening a member through :mod:`zipfile` costs ~25 us: seconds for 200,000 of them);
        None for anything else -- compressed, flagged, a header past the first 4 KiB, a local
        header that disagrees with the directory -- which :mod:`zipfile` reads, and judges."""
        if member.compress_type != zipfile.ZIP_STORED or member.flag_bits & ~0x808:
            return None
        try:
            local = os.pread(self._zip.fp.fileno(), 30 + 4096 + len(member.orig_filename) * 4, member.header_offset)
        except (OSError, AttributeError, ValueError):
            return None
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return None
        name_size, extra_size = struct.unpack("<HH", local[26:30])
        name = local[30 : 30 + name_size]
        encoding = "utf-8" if member.flag_bits & 0x800 else (getattr(self._zip, "metadata_encoding", None) or "cp437")  # metadata_encoding: Python 3.11+
        if name.decode(encoding, "replace") != member.orig_filename:
            return None
        begin = 30 + name_size + extra_size
        start = local[begin : begin + min(member.compress_size, 4096)]
        if len(start) == member.compress_size and zlib.crc32(start) != member.CRC:
            return None  # zipfile reads a small member whole, and says its CRC is bad
        whole = len(start) >= 10 and start[:8] == b"\x93NUMPY\x01\x00" and 10 + int.from_bytes(start[8:10], "little") <= len(start)
        return start if whole else None

    def close(self) -> None:
        self._zip.close()

    def read(self, name: str) -> np.ndarray:
        try:
            with self._zip.open(self._members[name]) as handle:
                return np.lib.format.read_array(handle, allow_pickle=False)
        except (OSError, *_ZIP_ERRORS, ValueError) as exc:
            raise ModelError(f"{self.path}: member {name + '.npy'!r}: cannot read: {_reason(exc)}") from None

    def write(
        self, output: Path, plan: Plan, writing: Writing, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
        values = writing.values  # an .npz is streamed by one writer (see Writing)
        # Members go out in name order with fixed timestamps, so the output bytes do not
        # depend on the input's member order.  Untouched members are copied byte for byte.
        entries = {entry.name: entry for entry in plan}
        members = []
        for member in sorted(self._zip.infolist(), key=lambda m: m.filename):
            name = member.filename[: -len(".npy")] if member.filename.endswith(".npy") else None
            entry = entries.get(name) if name is not None else None
            chunks = values(entry) if entry is not None else None
            if chunks is None:
                members.append(NpzMember(member.filename, name, member.compress_type, functools.partial(self._copy_member, member)))
            else:
                members.append(NpzMember(member.filename, name, member.compress_type, functools.partial(write_npy, entry=entry, chunks=chunks)))
        write_npz(output, members, transaction, progress)

    def _copy_member(self, member: zipfile.ZipInfo, sink) -> None:
        """Copy an untouched member byte for byte; its CRC is checked as it is read."""
        try:
            with self._zip.open(member) as source:
                shutil.copyfileobj(source, sink, 1 << 20)
        except _ZIP_ERRORS as exc:
            raise ModelError(f"{self.path}: member {member.filename!r}: cannot read: {_reason(exc)}") from None


def write_npy(sink, entry: PlanEntry, chunks: Iterator[np.ndarray]) -> None:
    """An ``.npy`` stream, header then data chunk by chunk: the bytes ``np.save`` writes."""
    dtype = np.dtype(float_dtype(entry.dtype))
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(entry.shape)}
    try:
        np.lib.format.write_array_header_1_0(sink, header)
    except ValueError:  # a header too long for format 1.0
        np.lib.format.write_array_header_2_0(sink, header)
    for chunk in prefetch(chunks):
        sink.write(little_endian_bytes(chunk))


def _write_array(sink, array: np.ndarray) -> None:
    np.lib.format.write_array(sink, array, allow_pickle=False)


def _write_stored(sink, source, name: str) -> None:
    """A tensor the plan keeps, read from ``source`` only when its member is written."""
    _write_array(sink, source.read(name))


def write_state_npz(source, output: Path, plan: Plan, values: Values, transaction: Transaction, progress) -> None:
    """Stage any state dict's tensors after ``plan`` as the ``.npz`` file ``output``:
    members in name order, stored, fixed timestamps; new values streamed chunk by chunk,
    kept ones read from ``source`` one at a time.  Types an ``.npz`` cannot hold are refused first."""
    members = []
    for entry in sorted(plan, key=lambda entry: entry.name):
        if entry.dtype == "bfloat16" or entry.dtype.startswith("void"):
            raise ModelError(
                f"{output}: tensor {entry.name!r} is {'bfloat16' if entry.dtype == 'bfloat16' else 'of a type NumPy cannot hold'}, "
                "which an .npz file cannot hold (NumPy stores it as raw bytes); write a .safetensors file or a folder"
            )
        chunks = values(entry)
        if chunks is None:
            write = functools.partial(_write_stored, source=source, name=entry.name)
        else:
            write = functools.partial(write_npy, entry=entry, chunks=chunks)
        members.append(NpzMember(entry.name + ".npy", entry.name, zipfile.ZIP_STORED, write))
    write_npz(output, members, transaction, progress)


@dataclass(frozen=True)
class NpzMember:
    """One member of an ``.npz`` output: its file name in the archive, the tensor it holds
    (None for a member that is not an array), how it is compressed, and what writes it."""

    filename: str
    tensor: str | None
    compression: int
    write: Callable[[Any], None]


def write_npz(output: Path, members: Sequence[NpzMember], transaction: Transaction, progress) -> None:
    """Stage ``members``, in order, as the ``.npz`` file ``output``: fixed timestamps (the
    bytes depend on the contents alone), each member streamed by its ``write``.  Names an
    ``.npz`` cannot hold faithfully are refused first, naming the tensor."""
    check_npz_members(output, members)
    temp = transaction.stage(output)
    try:
        with zipfile.ZipFile(temp, "w", allowZip64=True) as out:
            for done, member in enumerate(members, 1):
                info = zipfile.ZipInfo(member.filename, date_time=_ZIP_EPOCH)
                info.compress_type = member.compression
                info.external_attr = 0o644 << 16
                with out.open(info, "w", force_zip64=True) as sink:
                    member.write(sink)
                if progress:
                    progress(done, len(members), member.tensor or member.filename)
    except (OSError, zipfile.LargeZipFile) as exc:
        raise ModelError(f"{output}: cannot write: {_reason(exc)}") from None


_DRIVE = re.compile(r"^[A-Za-z]:")


def npz_name_problem(filename: str) -> str | None:
    """Why an archive member named ``filename`` would not come back intact -- from
    ``numpy.load`` or from unzipping -- or None."""
    if "\0" in filename:
        return "has a NUL character, which cuts a zip member's name short"
    if not is_unicode(filename):
        return "is not valid Unicode text (a lone surrogate)"
    if any(ord(c) < 32 or ord(c) == 127 for c in filename):
        return "has a control character, which unzipping would put in a file name"
    if filename.startswith(("/", "\\")) or _DRIVE.match(filename):
        return "is an absolute path, which unzipping would write outside its folder"
    if ".." in re.split(r"[/\\]", filename):
        return "has a '..' part, which unzipping would follow out of its folder"
    return None


def check_npz_members(output: Path, members: Sequence[NpzMember]) -> None:
    """Every member name survives the archive, and no two load under one key."""
    keys: dict[str, str] = {}
    filenames = {member.filename: member for member in members}
    for member in members:
        what = f"tensor {member.tensor!r}" if member.tensor is not None else f"member {member.filename!r}"
        problem = npz_name_problem(member.filename)
        if problem is not None:
            raise ModelError(f"{output}: {what}: its member name {member.filename!r} {problem}; an .npz file cannot hold it")
        key = member.filename[: -len(".npy")] if member.filename.endswith(".npy") else member.filename
        if key in keys:
            raise ModelError(f"{output}: {what} and {keys[key]} would both load as {key!r} from an .npz file")
        keys[key] = what
        # numpy.load looks a key up as a member's file name first: 'w.npy' finds tensor w's member.
        shadow = filenames.get(key)
        if shadow is not None and shadow is not member:
            owner = f"tensor {shadow.tensor!r}" if shadow.tensor is not None else f"member {shadow.filename!r}"
            raise ModelError(f"{output}: {what} would load from an .npz file as the member {key!r}, which holds {owner}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__


