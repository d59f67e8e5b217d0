"""State dicts: ``.npz`` and ``.safetensors`` files, one tensor in memory at a time where the
format allows it.  All I/O; the values come from the engine.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from vsconf.engine import FanHint, Plan, PlanEntry, state_dict_hints
from vsconf.errors import ModelError
from vsconf.files import atomic_path
from vsconf.matching import TensorInfo

Values = Callable[[PlanEntry], "np.ndarray | None"]
# Fixed member timestamps make an .npz a function of its contents alone.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _npy_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    return tuple(shape), dtype


class _StateDict:
    """What every state dict tells the engine: names, shapes and dtypes; biases' weights by name."""

    target = "state_dict"
    _infos: list[TensorInfo]

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
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path}: cannot read as .npz: {getattr(exc, 'strerror', None) or exc}") from None
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._infos: list[TensorInfo] = []
        for member in self._zip.infolist():
            if not member.filename.endswith(".npy"):
                continue
            name = member.filename[: -len(".npy")]
            try:
                with self._zip.open(member) as handle:
                    shape, dtype = _npy_header(handle)
            except ValueError as exc:
                raise ModelError(f"{path}: member {member.filename!r} is not a NumPy array: {exc}") from None
            self._members[name] = member
            self._infos.append(TensorInfo(name, shape, dtype))

    def close(self) -> None:
        self._zip.close()

    def read(self, name: str) -> np.ndarray:
        with self._zip.open(self._members[name]) as handle:
            return np.lib.format.read_array(handle, allow_pickle=False)

    def write(self, output: Path, plan: Plan, values: Values, metadata: Mapping[str, str], progress=None) -> None:
        # Members go out in name order with fixed timestamps, so the output bytes do not
        # depend on the input's member order.  Untouched members are copied byte for byte.
        entries = {entry.name: entry for entry in plan}
        members = sorted(self._zip.infolist(), key=lambda m: m.filename)
        with atomic_path(output) as temp, zipfile.ZipFile(temp, "w", allowZip64=True) as out:
            for done, member in enumerate(members, 1):
                name = member.filename[: -len(".npy")] if member.filename.endswith(".npy") else None
                info = zipfile.ZipInfo(member.filename, date_time=_ZIP_EPOCH)
                info.compress_type = member.compress_type
                info.external_attr = 0o644 << 16
                array = values(entries[name]) if name in entries else None
                with out.open(info, "w", force_zip64=True) as sink:
                    if array is None:
                        with self._zip.open(member) as source:
                            shutil.copyfileobj(source, sink, 1 << 20)
                    else:
                        np.lib.format.write_array(sink, array, allow_pickle=False)
                if progress:
                    progress(done, len(members), member.filename)


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
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{path}: cannot read as .safetensors: {exc}") from None
        self._infos = []
        for name in self._file.keys():
            view = self._file.get_slice(name)
            # Types NumPy cannot hold (float8...) show as raw bytes: never filled, copied through.
            dtype = np.dtype(_SAFETENSORS_DTYPES.get(view.get_dtype(), "V1"))
            self._infos.append(TensorInfo(name, tuple(view.get_shape()), dtype))
        self.metadata = dict(self._file.metadata() or {})

    def close(self) -> None:
        self._file = None

    def read(self, name: str) -> np.ndarray:
        return self._file.get_tensor(name)

    def write(self, output: Path, plan: Plan, values: Values, metadata: Mapping[str, str], progress=None) -> None:
        arrays = self.arrays(plan, values, progress)
        with atomic_path(output) as temp:
            self._lib.numpy.save_file(arrays, str(temp), metadata={**self.metadata, **metadata})


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
                raise ModelError(f"state dict keys must be strings, got {name!r}")
            self._arrays[name] = np.asarray(value)
        self._infos = [TensorInfo(name, a.shape, a.dtype) for name, a in self._arrays.items()]

    def read(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def close(self) -> None:
        pass

    def _untouched(self, name: str) -> np.ndarray:
        # the new dict must not share memory with the caller's arrays
        return self._arrays[name].copy()


def open_state_dict(path: Path):
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.suffix == ".npz":
        return NpzStateDict(path)
    if path.suffix == ".safetensors":
        return SafetensorsStateDict(path)
    raise ModelError(f"{path}: unknown model format {path.suffix!r}; expected .onnx, .npz or .safetensors")

