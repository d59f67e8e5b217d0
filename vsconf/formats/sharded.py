"""Hugging Face-style sharded safetensors checkpoints, read as a model and written by tasks.

A sharded checkpoint is a folder holding ``model.safetensors.index.json`` --
``{"metadata": {"total_size": N}, "weight_map": {tensor: shard file}}`` -- and the shards
``model-0000k-of-0000n.safetensors`` it names.  Reading checks the index as hostile
input: its size, its JSON, every shard a plain file name inside the index's folder (no
``..``, no absolute path, no link leading out), every shard a safetensors file that holds
exactly the tensors the index maps to it, and ``total_size`` equal to their bytes.

Writing: :func:`output_layout` lays the whole output out from the plan before any value
exists -- tensors go to shards in plan order as Hugging Face's
``split_torch_state_dict_into_shards`` assigns them -- and
:func:`vsconf.formats.safetensors.write_checkpoint` (which writes every ``.safetensors``
file vsconf makes, one or many) computes each shard's header up front, preallocates the
files and has :mod:`vsconf.tasks` write the values at their offsets, by whichever scheduler.
The folder is built as a temporary sibling and renamed into place whole by the
:class:`~vsconf.files.Transaction`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsconf import record
from vsconf.formats.protocol import Layout
from vsconf.errors import ModelError
from vsconf.files import TEMP_SUFFIX, describe_os_error, load_json, read_text
from vsconf.matching import TensorInfo
from vsconf.outputs import Owned
from vsconf.formats.names import NamedTensors
from vsconf.formats.safetensors import SafetensorsStateDict

INDEX_SUFFIX = ".safetensors.index.json"
INDEX_NAME = "model" + INDEX_SUFFIX
# Hugging Face's default ``max_shard_size`` ("5GB", decimal units as it reads them).
DEFAULT_SHARD_BYTES = 5 * 10**9
# An index lists names and file names: tens of thousands of tensors take a few MB.
MAX_INDEX_BYTES = 64 << 20
MAX_INDEX_TENSORS = 1_000_000


# --------------------------------------------------------------------------- paths


def index_file(path: Path) -> Path | None:
    """The index of the sharded checkpoint at ``path`` (its folder or its index), or None."""
    if path.name.endswith(INDEX_SUFFIX) and not path.is_dir():
        return path
    if path.is_dir():
        if (path / INDEX_NAME).exists():
            return path / INDEX_NAME
        found = sorted(p for p in path.glob("*" + INDEX_SUFFIX))
        if len(found) == 1:
            return found[0]
    return None


def single_file(path: Path) -> Path | None:
    """A folder holding ``model.safetensors`` and no index is that one file."""
    if path.is_dir() and index_file(path) is None and (path / "model.safetensors").is_file():
        return path / "model.safetensors"
    return None


def is_folder_output(output: str | os.PathLike) -> bool:
    """Whether ``-o OUTPUT`` names a sharded checkpoint: a folder (existing, written with a
    trailing ``/``, or a name without a suffix) or an index file ``*.safetensors.index.json``."""
    text = os.fspath(output)
    path = Path(text)
    return (
        text.endswith(("/", os.sep))
        or path.name.endswith(INDEX_SUFFIX)
        or path.is_dir()
        or (path.suffix == "" and not path.exists())
    )


def folder_and_prefix(output: str | os.PathLike) -> tuple[Path, str]:
    """``ckpt/`` -> (ckpt, "model"); ``ckpt/foo.safetensors.index.json`` -> (ckpt, "foo")."""
    path = Path(os.fspath(output))
    if path.name.endswith(INDEX_SUFFIX):
        prefix = path.name[: -len(INDEX_SUFFIX)]
        if not prefix:
            raise ModelError(f"{path}: an index needs a name before {INDEX_SUFFIX}")
        return (path.parent if str(path.parent) else Path(".")), prefix
    return path, "model"


def shard_name(prefix: str, index: int, count: int) -> str:
    """Hugging Face's pattern: ``model-00001-of-00003.safetensors``."""
    return f"{prefix}-{index + 1:05d}-of-{count:05d}.safetensors"


def owned(folder: Path, prefix: str) -> Owned:
    """The checkpoint ``prefix`` in ``folder`` as an output replacing it sees it: its index
    and the shards that index names, and a ``prefix.safetensors`` beside them -- one
    checkpoint in two forms, which Hugging Face's loaders prefer to the index, so a stale
    one would shadow the new shards.  Names that other indexes of the folder name are
    theirs (``others``), even where the index and another one both name a file."""
    index_name, single_name = prefix + INDEX_SUFFIX, prefix + ".safetensors"
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        return Owned()
    except OSError as exc:
        raise ModelError(f"{folder}: cannot read the output folder: {describe_os_error(exc)}") from None
    others: dict[str, str] = {}
    for name in sorted(names):
        if name.endswith(INDEX_SUFFIX) and name != index_name:
            others.setdefault(name, name)
            with contextlib.suppress(ModelError):  # an unreadable index names nothing we can know
                for shard in _named_shards(folder / name):
                    others.setdefault(shard, name)
    files: set[str] = set()
    if index_name in names:
        try:
            files = {index_name} | (_named_shards(folder / index_name) & names)
        except ModelError as exc:
            problem = f"{exc}; vsconf cannot tell which files that checkpoint owns, so it replaces none"
            return Owned(name=index_name, others=others, problem=problem)
    if single_name in names and single_name not in others:
        files.add(single_name)
    if not files:
        return Owned(others=others)
    name = index_name if index_name in files else single_name
    return Owned(name=name, files=frozenset(files), others=others)


def _named_shards(index: Path) -> set[str]:
    """The plain file names an index's weight_map names (anything else is never touched)."""
    if not os.path.isfile(index):
        raise ModelError(f"{index}: the index is not a regular file")
    weight_map = _read_index(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise ModelError(f"{index}: has no weight_map")
    return {shard for shard in set(weight_map.values()) if isinstance(shard, str) and _plain_name(shard)}


def _plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name and len(name) <= 255


# Files of other weight formats: not copied beside a new checkpoint (the new weights replace them).
_WEIGHT_FILE = re.compile(
    r"\.(safetensors|bin|pt|pth|ckpt|h5|msgpack|gguf|onnx|npz|npy|pdparams|tflite|keras|ot)(\.index\.json)?$|\.onnx\.data$",
    re.IGNORECASE,
)


def companion_files(source: Any) -> list[Path]:
    """The other regular files of the folder a checkpoint was read from -- ``config.json``,
    ``generation_config.json``, tokenizer files, a README -- which a new checkpoint made from
    it needs beside its shards to load as the model it was: every regular file at the top of
    the folder (links to one followed), except files of any weight format and vsconf's
    temporaries.  Folders inside are not copied."""
    folder = source.folder
    if folder is None:
        return []
    own = {os.path.realpath(path) for path in source.files()}
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if _WEIGHT_FILE.search(entry.name) or entry.name.endswith(TEMP_SUFFIX):
                continue
            path = Path(entry.path)
            if os.path.realpath(path) in own or not entry.is_file(follow_symlinks=True):
                continue
            found.append(path)
    return sorted(found)


# --------------------------------------------------------------------------- reading


def _read_index(path: Path) -> dict[str, Any]:
    index = load_json(read_text(path, "index", MAX_INDEX_BYTES), path)
    if not isinstance(index, dict):
        raise ModelError(f"{path}: the index must be a JSON object with a weight_map, not {_json_type(index)}")
    return index


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


class ShardedSafetensors(NamedTensors):
    """A sharded safetensors checkpoint: the index and every shard it names, checked together."""

    target = "state_dict"
    recorded_seed: int | None = None
    recorded_seed_problem: str | None = None
    recorded_stream: int | None = None

    def __init__(self, index: Path):
        self.path = index
        self.folder = index.parent if str(index.parent) else Path(".")
        data = _read_index(index)
        weight_map, total_size = self._check_index(data)
        self._shards: dict[str, Any] = {}
        self._where: dict[str, str] = {}
        first_name: dict[str, str] = {}  # each shard's first tensor in the index, for messages
        for name, shard in weight_map.items():
            first_name.setdefault(shard, name)
        try:
            for shard in sorted(first_name):
                self._shards[shard] = SafetensorsStateDict(self._shard_path(shard, first_name[shard]))
            self._check_shards(weight_map, total_size)
        except BaseException:
            self.close()
            raise
        self.metadata = dict(next(iter(self._shards.values())).metadata) if self._shards else {}
        self.recorded_stream = record.recorded_stream(self.metadata)
        self._read_seed()

    def _check_index(self, data: dict[str, Any]) -> tuple[dict[str, str], int | None]:
        where = self.path
        weight_map = data.get("weight_map")
        if not isinstance(weight_map, dict):
            what = "has no weight_map" if weight_map is None else f"weight_map is {_json_type(weight_map)}, not an object"
            raise ModelError(f"{where}: {what}")
        if len(weight_map) > MAX_INDEX_TENSORS:
            raise ModelError(f"{where}: names {len(weight_map)} tensors, more than {MAX_INDEX_TENSORS}, the limit")
        for name, shard in weight_map.items():
            if not isinstance(shard, str):
                raise ModelError(f"{where}: weight_map[{name!r}] is {_json_type(shard)}, not a shard file name")
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ModelError(f"{where}: metadata is {_json_type(metadata)}, not an object")
        total_size = metadata.get("total_size")
        if total_size is not None and (isinstance(total_size, bool) or not isinstance(total_size, int) or total_size < 0):
            raise ModelError(f"{where}: metadata.total_size is {_show(total_size)}, not a number of bytes")
        return weight_map, total_size

    def _shard_path(self, shard: str, name: str) -> Path:
        """The shard file ``shard``, checked; ``name`` is a tensor the index maps to it."""
        where = f"{self.path}: weight_map[{name!r}]"
        plain = shard not in ("", ".", "..") and "/" not in shard and "\\" not in shard and "\0" not in shard
        if not plain or len(shard) > 255:
            raise ModelError(f"{where}: shard {_show(shard)} is not a file name in the index's folder")
        path = self.folder / shard
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise ModelError(f"{where}: shard {shard!r}: no such file") from None
        # A plain name that is not a link lies in the folder: only links need resolving.
        if stat.S_ISLNK(mode):
            if os.path.dirname(os.path.realpath(path)) != os.path.realpath(self.folder):
                raise ModelError(f"{where}: shard {shard!r} is a link to a file outside the index's folder")
            mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise ModelError(f"{where}: shard {shard!r} is not a regular file")
        return path

    def _check_shards(self, weight_map: Mapping[str, str], total_size: int | None) -> None:
        held: dict[str, str] = {}
        for shard, reader in self._shards.items():
            for info in reader.listing():  # names, shapes and dtypes; roles are guessed once, for the whole model
                if info.name in held:
                    raise ModelError(
                        f"{self.path}: tensor {info.name!r} is held by both {held[info.name]!r} and {shard!r}; "
                        "a checkpoint holds each tensor once"
                    )
                held[info.name] = shard
        for name, shard in weight_map.items():
            if held.get(name) != shard:
                raise ModelError(f"{self.path}: weight_map maps tensor {name!r} to {shard!r}, which does not hold it")
        for name, shard in held.items():
            if name not in weight_map:
                raise ModelError(f"{self.folder / shard}: holds tensor {name!r}, which the index does not name")
        self._infos: list[TensorInfo] = []
        total = 0
        for shard, reader in self._shards.items():
            infos = sorted(reader.listing(), key=lambda info: reader.stored(info.name)[2])
            for info in infos:
                self._infos.append(info)
                self._where[info.name] = shard
                total += reader.stored(info.name)[3]
        if total_size is not None and total_size != total:
            raise ModelError(f"{self.path}: metadata.total_size is {total_size}, but the shards' tensors hold {total} bytes")

    def _read_seed(self) -> None:
        seeds = {reader.metadata.get("vsconf.seed") for reader in self._shards.values()}
        if seeds == {None}:
            return
        seed = next(iter(seeds)) if len(seeds) == 1 else None
        value = record.seed_from_text(seed) if isinstance(seed, str) else None
        if value is not None:
            self.recorded_seed = value
        else:
            self.recorded_seed_problem = (
                f"{self.path}: the shards record no single vsconf.seed ({', '.join(sorted(map(str, seeds)))}); "
                "give the seed explicitly"
            )

    def read(self, name: str) -> np.ndarray:
        return self._shards[self._where[name]].read(name)

    def stored(self, name: str) -> tuple[str, str, int, int]:
        """(safetensors dtype, file, offset, length) of a tensor's bytes."""
        return self._shards[self._where[name]].stored(name)

    def files(self) -> list[Path]:
        return [self.path] + [self.folder / shard for shard in self._shards]

    def layout(self) -> Layout:
        """How the checkpoint's tensors lie in its files: each shard's name and tensors, in data order."""
        shards: dict[str, list[str]] = {shard: [] for shard in self._shards}
        for info in self._infos:
            shards[self._where[info.name]].append(info.name)
        prefix = self.path.name[: -len(INDEX_SUFFIX)]
        return Layout(tuple((shard, tuple(names)) for shard, names in shards.items()), prefix + INDEX_SUFFIX)

    def stale_data_files(self, output: Path) -> tuple[list[Path], list[str]]:
        return [], []

    def write(self, output, plan, writing, metadata, progress, transaction) -> None:
        raise ModelError(f"{output}: a sharded checkpoint is written as a folder or a .safetensors file")

    def close(self) -> None:
        for reader in self._shards.values():
            reader.close()


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:40] + f"...({len(text)} characters)"


class FolderSafetensors(SafetensorsStateDict):
    """A folder holding one ``model.safetensors`` and no index: that file, as a checkpoint
    whose layout (one file, no index) a new checkpoint made from it keeps."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.folder = path.parent

    def layout(self) -> Layout:
        return Layout(((self.path.name, tuple(info.name for info in self._infos)),), None)


def open_sharded(path: Path):
    """The model at ``path``: a sharded checkpoint's folder or index, or a folder holding
    one ``model.safetensors``."""
    index = index_file(path)
    if index is not None:
        return ShardedSafetensors(index)
    single = single_file(path)
    if single is not None:
        return FolderSafetensors(single)
    raise ModelError(f"{path}: the model is a folder, not a regular file")


# --------------------------------------------------------------------------- writing


def assign_shards(sizes: Sequence[tuple[str, int]], max_bytes: int) -> list[list[str]]:
    """Tensor names per shard, as ``huggingface_hub.split_torch_state_dict_into_shards``
    assigns them: in order, a new shard when the next tensor would pass ``max_bytes``; a
    tensor bigger than ``max_bytes`` gets a shard of its own, placed where it is met."""
    shards: list[list[str]] = []
    current: list[str] = []
    current_bytes = 0
    for name, size in sizes:
        if size > max_bytes:
            shards.append([name])
            continue
        if current_bytes + size > max_bytes:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(name)
        current_bytes += size
    if current:
        shards.append(current)
    return shards


def output_layout(
    source: Any, sizes: Sequence[tuple[str, int]], *, prefix: str, shard_bytes: int | None, index: bool = True
) -> Layout:
    """The layout of a checkpoint made from ``source`` (tensor name, bytes in plan order).

    Without ``shard_bytes``, a sharded checkpoint keeps its shards -- the same tensors in
    the same files, named as in the input when the prefix is the input's -- and a folder of
    one ``model.safetensors`` stays one file (unless ``index`` asks for one).  Otherwise,
    and for every other source, tensors are cut into shards of ``shard_bytes`` (default
    5 GB) as Hugging Face cuts them, with an index even for one shard.
    """
    layout = source.layout()
    if shard_bytes is None and layout is not None:
        groups = [names for _, names in layout.files]
        if layout.index is None and not index:
            return Layout(((prefix + ".safetensors", groups[0]),), None)
        if layout.index == prefix + INDEX_SUFFIX:
            return Layout(layout.files, layout.index)
        names = [shard_name(prefix, k, len(groups)) for k in range(len(groups))]
        return Layout(tuple(zip(names, groups)), prefix + INDEX_SUFFIX)
    groups = assign_shards(sizes, shard_bytes or DEFAULT_SHARD_BYTES)
    names = [shard_name(prefix, k, len(groups)) for k in range(len(groups))]
    return Layout(tuple((name, tuple(group)) for name, group in zip(names, groups)), prefix + INDEX_SUFFIX)


def layout_words(layout: Layout, shard_bytes: int | None, kept: bool) -> str:
    """How a summary line says where the shards came from."""
    count = len(layout.files)
    files = f"{count} shard{'s' if count != 1 else ''}" if layout.index else "one file"
    if shard_bytes is None and kept:
        return f"{files}, laid out as in the input"
    return f"{files} of at most {shard_bytes or DEFAULT_SHARD_BYTES:,} bytes"
