"""State dicts: ``.npz`` and ``.safetensors`` files, one tensor in memory at a time where the
format allows it.  All I/O; the values come from the engine.
"""

from __future__ import annotations

import shutil
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from vsconf.engine import FanHint, Plan, PlanEntry, state_dict_hints
from vsconf.errors import ModelError
from vsconf.files import Transaction, describe_os_error
from vsconf.matching import TensorInfo

Values = Callable[[PlanEntry], "np.ndarray | None"]
# Fixed member timestamps make an .npz a function of its contents alone.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# DEFLATE cannot expand data more than ~1032 times; a member claiming more is lying.
_MAX_DEFLATE_RATIO = 1100
# What reading a damaged archive member can raise, besides OSError.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
_INT64_MAX = 2**63 - 1
_COMPRESSIONS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


def _npy_header(handle) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of an ``.npy`` stream, its declared sizes checked."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in shape {list(shape)}")
    if dtype.hasobject:
        raise ValueError("it holds Python objects, which vsconf never unpickles")
    return tuple(shape), dtype, handle.tell()


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The bytes a C-order array of ``shape`` and ``dtype`` takes; ValueError past int64."""
    total = dtype.itemsize
    for dim in shape:
        total *= dim
        if total > _INT64_MAX:
            raise ValueError(f"shape {list(shape)} of {dtype.name} needs more than 2**63 bytes")
    return total


class _StateDict:
    """What every state dict tells the engine: names, shapes and dtypes; biases' weights by name."""

    target = "state_dict"
    path: Path | None = None
    recorded_seed: int | None = None
    recorded_seed_problem: str | None = None
    _infos: list[TensorInfo]

    def files(self) -> list[Path]:
        """Every file the model is made of."""
        return [] if self.path is None else [self.path]

    def stale_data_files(self, output: Path) -> tuple[list[Path], list[str]]:
        """State dicts are one file each: replacing one leaves nothing else behind."""
        return [], []

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def hints(self) -> dict[str, FanHint]:
        return state_dict_hints(self._infos)

    def _untouched(self, name: str) -> np.ndarray:
        """A tensor no rule changes, as it goes into a new state dict."""
        return self.read(name)

    def arrays(self, plan: Plan, values: Values, progress=None) -> dict[str, np.ndarray]:
        """Every tensor after ``plan``: new values where it fills, the input's elsewhere."""
        out = {}
        for done, entry in enumerate(plan, 1):
            array = values(entry)
            out[entry.name] = self._untouched(entry.name) if array is None else array
            if progress:
                progress(done, len(plan), entry.name)
        return out


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
            with self._zip.open(member) as handle:
                shape, dtype, header = _npy_header(handle)
            need = header + _nbytes(shape, dtype)
        except (OSError, *_ZIP_ERRORS) as exc:
            raise ModelError(f"{where}: cannot read: {_reason(exc)}") from None
        except (ValueError, SyntaxError, TypeError) as exc:
            raise ModelError(f"{where} is not a NumPy array: {_reason(exc)}") from None
        if member.file_size != need:
            raise ModelError(
                f"{where}: holds {member.file_size - header} bytes of data, "
                f"its header's shape {list(shape)} ({dtype.name}) needs {need - header}"
            )
        return shape, dtype

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
        members = sorted(self._zip.infolist(), key=lambda m: m.filename)
        temp = transaction.stage(output)
        try:
            self._write_members(temp, members, entries, values, progress)
        except (OSError, zipfile.LargeZipFile) as exc:
            raise ModelError(f"{output}: cannot write: {_reason(exc)}") from None

    def _write_members(self, temp: Path, members, entries, values: Values, progress) -> None:
        with zipfile.ZipFile(temp, "w", allowZip64=True) as out:
            for done, member in enumerate(members, 1):
                name = member.filename[: -len(".npy")] if member.filename.endswith(".npy") else None
                info = zipfile.ZipInfo(member.filename, date_time=_ZIP_EPOCH)
                info.compress_type = member.compress_type
                info.external_attr = 0o644 << 16
                array = values(entries[name]) if name in entries else None
                with out.open(info, "w", force_zip64=True) as sink:
                    if array is None:
                        self._copy_member(member, sink)
                    else:
                        np.lib.format.write_array(sink, array, allow_pickle=False)
                if progress:
                    progress(done, len(members), member.filename)

    def _copy_member(self, member: zipfile.ZipInfo, sink) -> None:
        """Copy an untouched member byte for byte; its CRC is checked as it is read."""
        try:
            with self._zip.open(member) as source:
                shutil.copyfileobj(source, sink, 1 << 20)
        except _ZIP_ERRORS as exc:
            raise ModelError(f"{self.path}: member {member.filename!r}: cannot read: {_reason(exc)}") from None


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
    """A ``.safetensors`` file, read through the safetensors library."""

    def __init__(self, path: Path):
        self.path = path
        self._lib = _safetensors()
        try:
            self._file = self._lib.safe_open(str(path), framework="numpy")
            self._infos = []
            for name in self._file.keys():
                view = self._file.get_slice(name)
                # Types NumPy cannot hold (float8...) show as raw bytes: never filled, copied through.
                dtype = np.dtype(_SAFETENSORS_DTYPES.get(view.get_dtype(), "V1"))
                self._infos.append(TensorInfo(name, tuple(view.get_shape()), dtype))
            self.metadata = dict(self._file.metadata() or {})
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{path}: cannot read as .safetensors: {exc}") from None

    def close(self) -> None:
        self._file = None

    def read(self, name: str) -> np.ndarray:
        try:
            return self._file.get_tensor(name)
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{self.path}: tensor {name!r}: cannot read: {exc}") from None

    def write(
        self, output: Path, plan: Plan, values: Values, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
        arrays = self.arrays(plan, values, progress)
        temp = transaction.stage(output)
        try:
            self._lib.numpy.save_file(arrays, str(temp), metadata={**self.metadata, **metadata})
        except Exception as exc:  # safetensors wraps OSErrors in its own types
            raise ModelError(f"{output}: cannot write: {exc}") from None


_SAFETENSORS_DTYPES = {
    "BF16": ml_dtypes.bfloat16, "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}


class DictStateDict(_StateDict):
    """An in-memory ``dict[str, ndarray]`` (the Python API)."""

    path = None

    def __init__(self, mapping: Mapping[str, np.ndarray]):
        self._arrays = {}
        for name, value in mapping.items():
            if not isinstance(name, str):
                raise TypeError(f"State dict keys must be strings. Received: {type(name).__name__}")
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

    def close(self) -> None:
        pass

    def _untouched(self, name: str) -> np.ndarray:
        # the new dict must not share memory with the caller's arrays
        return self._arrays[name].copy()


def open_state_dict(path: Path):
    if path.suffix == ".npz":
        return NpzStateDict(path)
    if path.suffix == ".safetensors":
        return SafetensorsStateDict(path)
    raise ModelError(f"{path}: unknown model format {path.suffix!r}; expected .onnx, .npz or .safetensors")

