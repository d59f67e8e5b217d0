"""Writing a model: the output built from a skeleton and the sources of its bytes, streamed.

The writer never holds the model.  It copies the (rewritten) skeleton, points each
stored tensor at the source of its bytes -- new values, a materialized fill, or bytes of
the input copied by range -- serializes that small skeleton, and lays the file out with
:func:`vsconf.formats.onnx.wire.splice`: literal bytes between sources, every length prefix known
up front from the tensors' dims.  Then it writes sequentially, new values generated in a
background thread a chunk or two ahead (:func:`vsconf.threads.prefetch`).  The contract:

* **The bytes are protobuf's.**  The file is exactly what ``SerializeToString()`` of the
  whole edited model gives (and what vsconf wrote before it streamed).
* **External data** when the input has any, or the tensors pass 1.8 GB (protobuf's limit
  is 2 GiB): initializers of 1 KiB or more go, page-aligned and in the order of the
  stored tensors, to a fresh data file beside the output (``<output>.data``, or a random
  variant when that name is taken or the input reads it), staged before the model that
  names it.  Other external tensors come inline (the output may be in another folder).
* **Values are asked for once, in the order they are written**: ``values(entry)`` for
  each planned tensor, before anything is written -- those of the data file first, then
  the model's in file order -- and the iterators are then consumed whole, one after the
  other, in that order.  Chunks are flat arrays of the tensor's dtype that add up to its
  size; the writer holds a few of them at once, so each must be a fresh array.
* **The disk works while values are generated**: every 128 MiB written, a background
  ``fdatasync`` puts the bytes on disk, so that the transaction's fsync finds little left
  to do; a data file's pages then leave the page cache.  Memory stays bounded: one or
  two chunks ahead, a few MiB of copied bytes, the skeleton.
* **Nothing vsconf did not create is touched**: ``onnx.save`` is never called (it mutates
  the model and appends to data files); the outputs are staged in the caller's
  :class:`~vsconf.files.Transaction` and not committed here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vsconf.formats.onnx import proto
from vsconf.formats.onnx.proto import TensorProto

from vsconf.errors import ModelError
from vsconf.files import Transaction, describe_os_error, little_endian_bytes
from vsconf.formats.onnx.checks import TYPED_FIELDS, data_bytes, element_count, movable, stored_bytes
from vsconf.formats.onnx.graph import Stored, all_tensors, stored_tensors
from vsconf.formats.onnx.reader import PROTOBUF_LIMIT, FileRange, ModelFile, resolved
from vsconf.formats.onnx.wire import splice
from vsconf.threads import prefetch

# Tensors past this many bytes in all go to a data file (protobuf refuses 2 GiB; room for the graph).
_INLINE_LIMIT = 1_800_000_000
# Tensors at least this large go to the data file when writing external data.
_EXTERNAL_THRESHOLD = 1024
_ALIGNMENT = 4096
# A materialized fill is written this many bytes at a time.
_FILL_CHUNK = 16 << 20
# New values generated ahead of the write, in chunks.
_PREFETCH_DEPTH = 2
# Written bytes are put on disk in the background every this many bytes.
_WRITE_BEHIND = 128 << 20
_END = object()

Values = Callable[[Any], "Iterator[np.ndarray] | None"]
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, eq=False)
class _Generated:
    """A tensor's new values, from the caller's iterator of chunks."""

    name: str
    chunks: Iterator[np.ndarray]
    length: int


@dataclass(frozen=True, eq=False)
class _Filled:
    """A materialized tensor: ``count`` copies of ``value``."""

    value: np.ndarray
    count: int
    length: int


@dataclass(frozen=True, eq=False)
class _Literal:
    """Bytes already in memory (a typed field converted to raw bytes)."""

    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)


def write(
    file: ModelFile,
    model: proto.ModelProto,
    fills: Mapping[str, np.ndarray],
    input_files: list[Path],
    output: Path,
    plan: Iterable[Any],
    values: Values,
    metadata: Mapping[str, str],
    progress: Progress | None,
    transaction: Transaction,
) -> None:
    """Stage ``model`` (a skeleton of ``file``, rewritten) with new values as ``output`` in
    ``transaction``, not committed.  ``input_files``: the data files the input reads
    (external data in, or a fresh data file out)."""
    output = Path(output)
    out = proto.ModelProto()
    out.CopyFrom(model)
    stored, _ = stored_tensors(out)
    inline_bytes = sum(stored_bytes(item.proto) for item in stored.values())
    external = bool(input_files) or inline_bytes > _INLINE_LIMIT
    moving = [name for name, item in stored.items() if external and _moves(item)]
    moves = set(moving)
    order = moving + [name for name in _file_order(out, stored) if name not in moves]
    if len(order) != len(stored):
        raise RuntimeError("the ONNX writer did not find every stored tensor in the output")
    entries = {entry.name: entry for entry in plan}
    sources: dict[str, Any] = {}
    for name in order:  # values(entry) in the order the bytes are written
        source = _source(file, stored[name], entries.get(name), values, fills, moves=name in moves)
        if source is not None:
            sources[name] = source

    files: list[tuple[Path, list[Any]]] = []
    if moving:
        data_path = output.parent / _fresh_data_name(output, input_files)
        data_pieces: list[Any] = []
        position = 0
        for name in moving:
            padding = (-position) % _ALIGNMENT
            if padding:
                data_pieces.append(bytes(padding))
            position += padding
            data_pieces.append(sources[name])
            _set_external(stored[name].proto, data_path.name, position, sources[name].length)
            position += sources[name].length
        files.append((data_path, data_pieces))
    references = file.references.extended()
    for name in order[len(moving) :]:
        if name in sources:
            _set_inline(stored[name].proto, references.add(sources[name]))
    kept = {id(item.proto) for item in stored.values()}
    for tensor in all_tensors(out.graph):  # other external tensors come inline
        if tensor.data_location == TensorProto.EXTERNAL and id(tensor) not in kept:
            _set_inline(tensor, references.add(file.external(tensor, tensor.name or "(unnamed)")))
    _set_metadata(out, metadata)
    try:
        model_pieces, size = splice(out.SerializeToString(), references)
    except ValueError:  # protobuf's 2 GiB limit: the graph itself is too large
        size = PROTOBUF_LIMIT + 1
    if size > PROTOBUF_LIMIT:
        raise ModelError(f"{output}: cannot write: the model would pass protobuf's 2 GiB limit")
    files.append((output, model_pieces))
    _check_layout(files, references.magic, [sources[name] for name in order if name in sources])
    _stream(file, files, _Reporter(order, progress, {id(source): name for name, source in sources.items()}), transaction)


def _stream(file: ModelFile, files: list[tuple[Path, list[Any]]], report: _Reporter, transaction: Transaction) -> None:
    """Stage and write ``files`` (path, literal bytes and sources; the model last), the
    generated sources produced in the background in the order they are written."""
    staged = [(target, transaction.stage(target), pieces) for target, pieces in files]
    generated = [piece for _, pieces in files for piece in pieces if isinstance(piece, (_Generated, _Filled))]
    stream = prefetch(_produce(generated), depth=_PREFETCH_DEPTH)
    try:
        for target, temp, pieces in staged:
            _write_pieces(file, target, temp, pieces, stream, report, drop=target != files[-1][0])
    finally:
        stream.close()
    report.finish()


def _source(file: ModelFile, item: Stored, entry: Any, values: Values, fills: Mapping[str, np.ndarray], *, moves: bool) -> Any:
    """Where a stored tensor's output bytes come from, or None when it stays as it is
    (``moves``: it goes to the data file)."""
    proto, name = item.proto, item.name
    chunks = values(entry) if entry is not None else None
    if chunks is not None:
        return _Generated(name, iter(chunks), data_bytes(proto))
    if name in fills:
        return _Filled(fills[name], element_count(proto), data_bytes(proto))
    if proto.data_location == TensorProto.EXTERNAL or moves:
        found = file.source(proto, name)
        return found if found is not None else _Literal(file.raw_bytes(proto, name))
    return None


def _moves(item: Stored) -> bool:
    """Whether the tensor goes to the data file when the output has one (its new values
    have the size its dims declare)."""
    return item.kind == "initializer" and movable(item.proto) and stored_bytes(item.proto) >= _EXTERNAL_THRESHOLD


def _file_order(model: proto.ModelProto, stored: Mapping[str, Stored]) -> list[str]:
    """The stored tensors in the order protobuf writes them: a graph's nodes (field 1, with
    their attributes' tensors and subgraphs) before its initializers (field 5)."""
    names = {id(item.proto): name for name, item in stored.items()}

    def walk(graph: proto.GraphProto) -> Iterator[str]:
        for node in graph.node:
            for attribute in node.attribute:  # t (5), g (6), graphs (11)
                if attribute.HasField("t") and id(attribute.t) in names:
                    yield names[id(attribute.t)]
                if attribute.HasField("g"):
                    yield from walk(attribute.g)
                for sub in attribute.graphs:
                    yield from walk(sub)
        for tensor in graph.initializer:
            if id(tensor) in names:
                yield names[id(tensor)]

    return list(walk(model.graph))


def _check_layout(files: list[tuple[Path, list[Any]]], magic: bytes, requested: list[Any]) -> None:
    """Every marker was replaced, and the sources come in the order their values were asked for."""
    pieces = [piece for _, pieces in files for piece in pieces]
    if any(isinstance(piece, bytes) and magic in piece for piece in pieces):
        raise RuntimeError("the ONNX writer left a marker in the output")
    written = [piece for piece in pieces if isinstance(piece, (_Generated, _Filled, _Literal))]
    expected = [source for source in requested if not isinstance(source, FileRange)]
    if len(written) != len(expected) or any(a is not b for a, b in zip(written, expected)):
        raise RuntimeError("the ONNX writer would write tensors in another order than it asked for their values")


# --------------------------------------------------------------------------- the output's tensors


def _set_inline(tensor: TensorProto, raw: bytes) -> None:
    """Store ``raw`` as the tensor's raw_data, keeping its name, dtype and dims."""
    for name in TYPED_FIELDS:
        tensor.ClearField(name)
    del tensor.external_data[:]
    tensor.data_location = TensorProto.DEFAULT
    tensor.raw_data = raw


def _set_external(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    """Point the tensor at ``length`` bytes at ``offset`` of the data file ``location``."""
    _set_inline(tensor, b"")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _set_metadata(model: proto.ModelProto, metadata: Mapping[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _fresh_data_name(output: Path, input_files: list[Path]) -> str:
    """``<output>.data``, or a random variant when that name is taken by any file (it
    may be in use) or by a file the input names."""
    taken = {resolved(path) for path in input_files}
    name = f"{output.name}.data"
    while os.path.lexists(output.parent / name) or resolved(output.parent / name) in taken:
        name = f"{output.name}.{secrets.token_hex(4)}.data"
    return name


# --------------------------------------------------------------------------- streaming


def _produce(sources: list[Any]) -> Iterator[Any]:
    """The bytes of each generated source in turn, each followed by ``_END``."""
    for source in sources:
        if isinstance(source, _Filled):
            yield from _fill_chunks(source.value, source.count)
        else:
            written = 0
            for chunk in source.chunks:
                data = _chunk_bytes(chunk)
                written += data.nbytes
                yield data
            if written != source.length:
                raise RuntimeError(f"the values of {source.name!r} are {written} bytes; the tensor holds {source.length}")
        yield _END


def _chunk_bytes(chunk: np.ndarray) -> memoryview:
    """A chunk's bytes as files store them (little-endian), without a copy when they already are."""
    array = np.ascontiguousarray(chunk).reshape(-1)
    order = array.dtype.byteorder
    if order == ">" or (order == "=" and sys.byteorder == "big"):
        return memoryview(little_endian_bytes(array))
    return memoryview(array.view(np.uint8))


def _fill_chunks(fill: np.ndarray, count: int) -> Iterator[bytes]:
    """``count`` copies of ``fill``'s bytes, about 16 MiB at a time."""
    one = little_endian_bytes(fill)
    per_chunk = max(1, _FILL_CHUNK // max(len(one), 1))
    full = one * min(per_chunk, count)
    for start in range(0, count, per_chunk):
        yield full if count - start >= per_chunk else one * (count - start)


class _Reporter:
    """Calls ``progress(done, total, name)`` for every stored tensor, in the order written."""

    def __init__(self, order: list[str], progress: Progress | None, names: dict[int, str]):
        self.order, self.progress, self.names = order, progress, names
        self.position = {name: k for k, name in enumerate(order)}
        self.done = 0

    def written(self, piece: Any) -> None:
        name = self.names.get(id(piece))
        if name is not None:
            self._through(self.position[name] + 1)

    def finish(self) -> None:
        self._through(len(self.order))

    def _through(self, count: int) -> None:
        while self.done < count:
            self.done += 1
            if self.progress:
                self.progress(self.done, len(self.order), self.order[self.done - 1])


def _write_pieces(
    file: ModelFile, target: Path, temp: Path, pieces: list[Any], stream: Iterator[Any], report: _Reporter, *, drop: bool
) -> None:
    """Write ``pieces`` to ``temp`` (``drop``: a data file, whose pages leave the cache once on disk)."""
    with _writing(target), open(temp, "wb") as handle:
        behind = _WriteBehind(handle, drop=drop)
        try:
            for piece in pieces:
                if isinstance(piece, bytes):
                    behind.write(piece)
                elif isinstance(piece, _Literal):
                    behind.write(piece.data)
                elif isinstance(piece, FileRange):
                    for chunk in file.chunks(piece):
                        behind.write(chunk)
                else:
                    while (chunk := next(stream)) is not _END:
                        behind.write(chunk)
                report.written(piece)
        finally:
            behind.wait()
        behind.check()


class _WriteBehind:
    """Writes to ``handle``, and every ``_WRITE_BEHIND`` bytes has a background thread
    put them on disk (``fdatasync``), so that the fsync before the rename finds little
    left to do: the disk works while the next values are generated.  With ``drop``, the
    pages on disk then leave the page cache (``POSIX_FADV_DONTNEED``): a data file of many
    GB does not push everything else out of memory, and the cache does not grow with it
    (writes into a page cache of several GB are several times slower on the virtual
    machines measured in benchmarks/)."""

    def __init__(self, handle, *, drop: bool):
        self.handle = handle
        self.drop = drop and hasattr(os, "posix_fadvise")
        self.pending = 0
        self.thread: threading.Thread | None = None
        self.error: OSError | None = None

    def write(self, data) -> None:
        self.handle.write(data)
        self.pending += len(data) if isinstance(data, bytes) else data.nbytes
        if self.pending >= _WRITE_BEHIND and (self.thread is None or not self.thread.is_alive()):
            self.check()
            self.handle.flush()
            self.pending = 0
            self.thread = threading.Thread(target=self._sync, args=(self.handle.tell(),), name="vsconf-write-behind", daemon=True)
            self.thread.start()

    def _sync(self, written: int) -> None:
        try:
            _datasync(self.handle.fileno())
            if self.drop:
                os.posix_fadvise(self.handle.fileno(), 0, written, os.POSIX_FADV_DONTNEED)
        except OSError as exc:  # raised in the writing thread: a later fsync might not see it again
            self.error = exc

    def wait(self) -> None:
        """Let the flush in flight finish (before the file is closed)."""
        if self.thread is not None:
            self.thread.join()

    def check(self) -> None:
        if self.error is not None:
            raise self.error


_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """OSErrors while writing ``target`` (a full disk) as one clear error."""
    try:
        yield
    except OSError as exc:
        raise ModelError(f"{target}: cannot write: {describe_os_error(exc)}") from None
