"""State dicts: ``.npz`` and ``.safetensors`` files, one tensor in memory at a time where the
format allows it.  All I/O; the values come from the engine.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np

from vsconf.adapters import AdapterBase, Values
from vsconf.dtypes import DtypeTable
from vsconf.engine import FanHint, Plan, PlanEntry, state_dict_hints
from vsconf.errors import ModelError
from vsconf.files import Transaction, describe_os_error, little_endian_bytes, pread_range
from vsconf.initializers import float_dtype
from vsconf.threads import prefetch
from vsconf.record import recorded_stream
from vsconf.matching import TensorInfo

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


class _StateDict(AdapterBase):
    """What every state dict tells the engine: names, shapes and dtypes; biases' weights by name.
    One file each (the defaults of :class:`~vsconf.adapters.AdapterBase`)."""

    target = "state_dict"
    _infos: list[TensorInfo]

    def tensors(self) -> list[TensorInfo]:
        return guess_roles(self._infos)

    def listing(self) -> list[TensorInfo]:
        """Names, shapes and dtypes alone, in the file's order (no roles guessed)."""
        return self._infos

    def hints(self) -> dict[str, FanHint]:
        return state_dict_hints(self._infos)


# --------------------------------------------------------------------------- roles by name

# Buffers that PyTorch and Keras name the same way everywhere.
_RUNNING_STATS = frozenset({"running_mean", "running_var", "num_batches_tracked", "moving_mean", "moving_variance"})
_CONSTANT_BUFFERS = frozenset({"masked_bias", "inv_freq", "position_ids", "token_type_ids"})
# A module whose last name part says "norm": bn1, ln_f, norm2, layer_norm, LayerNorm, gn...
_NORM_MODULE = re.compile(r"(?i)^(?:bn|ln|gn|rms|norm|batchnorm|batch_norm|layernorm|layer_norm|groupnorm|rmsnorm)(?:_?\w*?\d*)$|norm")
_EMBEDDING_MODULE = re.compile(r"(?i)embed|^wte$|^wpe$|^emb$|^tok_embeddings$")


def _split(name: str) -> tuple[str, str]:
    """(module path, last part) of a parameter name: ``layer1.0.bn1``, ``running_mean``."""
    for separator in (".", "/"):
        if separator in name:
            module, _, leaf = name.rpartition(separator)
            return module, leaf
    return "", name


def guess_roles(infos: list[TensorInfo]) -> list[TensorInfo]:
    """Each tensor with the role its name says under PyTorch's and Keras's conventions
    (marked as a guess: a state dict has no consumers to ask)."""
    splits = [_split(info.name) for info in infos]
    modules_with_stats = {module for module, leaf in splits if leaf in _RUNNING_STATS}
    reasons: dict[str, str] = {}  # one string per reason, shared by every tensor it explains
    out = []
    for info, (module, leaf) in zip(infos, splits):
        role, why = _role_by_name(info, module, leaf, modules_with_stats)
        role_from = reasons.get(why)
        if role_from is None:
            role_from = reasons[why] = f"name: {why}"
        out.append(TensorInfo(info.name, info.shape, info.dtype, info.consumers, role, role_from, True))
    return out


def _role_by_name(info: TensorInfo, module: str, leaf: str, modules_with_stats: set[str]) -> tuple[str, str]:
    last_module = _split(module)[1] if module else ""
    if leaf in _RUNNING_STATS:
        return "running_stat", f"{leaf!r} is a normalization's running statistic"
    if leaf in _CONSTANT_BUFFERS:
        return "constant", f"{leaf!r} is a buffer, not a parameter"
    normish = module in modules_with_stats or bool(last_module and _NORM_MODULE.search(last_module))
    if leaf in ("gamma", "beta") or (normish and leaf in ("weight", "scale", "bias")):
        why = "a sibling running statistic" if module in modules_with_stats else f"module {last_module or module!r}"
        return ("norm_bias" if leaf in ("beta", "bias") else "norm_scale"), f"{leaf!r} of a normalization ({why})"
    if "bias" in leaf:
        return "bias", f"{leaf!r}"
    if leaf == "embeddings" or ("weight" in leaf and len(info.shape) == 2 and _EMBEDDING_MODULE.search(last_module or "")):
        return "embedding", f"{leaf!r} of an embedding ({last_module or leaf!r})"
    if leaf == "kernel" or ("weight" in leaf and len(info.shape) >= 2):
        return "weight", f"{leaf!r} of rank {len(info.shape)}"
    return "other", f"{leaf!r} follows no convention vsconf knows"



class NpzStateDict(_StateDict):
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
        encoding = "utf-8" if member.flag_bits & 0x800 else (self._zip.metadata_encoding or "cp437")
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
        self, output: Path, plan: Plan, values: Values, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
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


def is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogate, which no file format can hold)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ModelError(
            ".safetensors files need the optional extra: pip install 'vsconf[safetensors]'"
        ) from None
    return safetensors


class SafetensorsStateDict(_StateDict):
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


class DictStateDict(_StateDict):
    """An in-memory ``dict[str, ndarray]`` (the Python API)."""

    path = None

    def __init__(self, mapping: Mapping[str, np.ndarray]):
        self._arrays = {}
        for name, value in mapping.items():
            if not isinstance(name, str):
                raise TypeError(f"State dict keys must be strings. Received: {type(name).__name__}")
            if not is_unicode(name):
                raise ValueError(f"State dict key {name!r} is not valid Unicode text (it holds a lone surrogate)")
            try:
                array = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise TypeError(f"State dict value {name!r} is not an array: {exc}") from None
            if array.dtype.hasobject:
                raise TypeError(f"State dict value {name!r} is not an array of numbers (dtype object)")
            self._arrays[name] = array
        self._infos = [TensorInfo(name, a.shape, a.dtype) for name, a in self._arrays.items()]

    def read(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def write(
        self, output: Path, plan: Plan, values: Values, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
        """Stage the dict as an ``.npz`` file: members in name order, stored, fixed timestamps."""
        entries = {entry.name: entry for entry in plan}
        members = []
        for name in sorted(self._arrays):
            chunks = values(entries[name]) if name in entries else None
            if chunks is None:
                write = functools.partial(_write_array, array=self._arrays[name])
            else:
                write = functools.partial(write_npy, entry=entries[name], chunks=chunks)
            members.append(NpzMember(name + ".npy", name, zipfile.ZIP_STORED, write))
        write_npz(output, members, transaction, progress)

    def arrays(self, plan: Plan, generate: Callable[[PlanEntry], "np.ndarray | None"]) -> dict[str, np.ndarray]:
        """Every tensor after ``plan``: new values where it changes, a copy of the input's
        elsewhere (the new dict never shares memory with the caller's arrays)."""
        out = {}
        for entry in plan:
            array = generate(entry)
            out[entry.name] = self._arrays[entry.name].copy() if array is None else array
        return out


def open_state_dict(path: Path):
    if path.suffix == ".npz":
        return NpzStateDict(path)
    if path.suffix == ".safetensors":
        return SafetensorsStateDict(path)
    raise ModelError(f"{path}: unknown model format {path.suffix!r}; expected .onnx, .npz or .safetensors")

