"""What a task is: bytes to put in files, described in a few numbers, written by any worker.

A task is a short, picklable description of bytes to put in files: which values (a
:class:`~vsconf.draw.Draw`), which range of elements, which file and at which offset
(:class:`Fill`), or which byte range of which file to copy (:class:`Copy`).  A worker needs nothing else -- no plan,
no model, no spec -- and the bytes a task writes depend only on its description (the
streams' contract, :mod:`vsconf.streams`), so the files come out identical whatever runs
the tasks, in whatever order, however many times (a retried task writes the same bytes
again).  Files are preallocated by the caller; a task opens its file, writes its slice at
its offset with ``os.pwrite`` and closes it, holding at most a few MiB of values in memory
(a stream fill is drawn and written 16 blocks at a time; a matrix init, whole).
:mod:`vsconf.schedule` runs tasks on threads, processes or a Dask cluster.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vsconf import draw
from vsconf.draw import Draw
from vsconf.errors import ModelError
from vsconf.files import pread_range

# What one task writes at most, unless --task-size says otherwise: big enough that a
# task's overhead (a Dask round trip is ~1 ms) is noise, small enough for 2 tasks a core
# to fit in a few hundred MB.
DEFAULT_TASK_BYTES = 64 << 20
# What one task writes at least (a smaller --task-size counts as this): one float32 stream
# block, the piece a fill is never cut below.  Copies get the same floor, so a checkpoint of
# B bytes and T tensors makes at most B / MIN_TASK_BYTES + T tasks, whatever the option.
MIN_TASK_BYTES = 4 << 16  # streams.BLOCK_SIZE (1 << 16) float32 elements; a test holds them equal
_COPY_STEP = 16 << 20


@dataclass(frozen=True, slots=True)
class Fill:
    """Elements ``start:stop`` of the values ``draw`` describes (tensor ``name``), written
    at ``offset`` of ``path``."""

    name: str
    draw: Draw
    start: int
    stop: int
    path: str
    offset: int

    @property
    def nbytes(self) -> int:
        return (self.stop - self.start) * self.draw.itemsize


@dataclass(frozen=True, slots=True)
class Copy:
    """``length`` bytes at ``source_offset`` of ``source``, written at ``offset`` of ``path``."""

    name: str
    source: str
    source_offset: int
    length: int
    path: str
    offset: int

    @property
    def nbytes(self) -> int:
        return self.length


@dataclass(frozen=True, slots=True)
class Task:
    """Pieces one worker writes in one go; ``sync``: fsync the files before returning
    (workers on other machines: the coordinator's fsync cannot reach their caches)."""

    pieces: tuple[Fill | Copy, ...]
    sync: bool = False
    # The coordinator's vsconf: a worker running another version could draw other values.
    version: str = ""

    @property
    def nbytes(self) -> int:
        return sum(piece.nbytes for piece in self.pieces)


def split(pieces: Iterable[Fill | Copy], task_bytes: int) -> list[Task]:
    """Cut ``pieces`` into tasks of at most ``task_bytes`` (a piece alone may reach one
    stream block more), in order: big pieces are cut at stream-block boundaries (no block
    is drawn twice), small ones are packed together.  ``task_bytes`` below
    :data:`MIN_TASK_BYTES` counts as that floor, so no piece is cut smaller: the tasks
    number at most ``total bytes / MIN_TASK_BYTES`` plus one per piece."""
    from vsconf.streams import BLOCK_SIZE

    task_bytes = max(task_bytes, MIN_TASK_BYTES)
    tasks: list[Task] = []
    batch: list[Fill | Copy] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        if batch:
            tasks.append(Task(tuple(batch)))
        batch, batch_bytes = [], 0

    for piece in pieces:
        for part in _cut(piece, task_bytes, BLOCK_SIZE):
            if batch_bytes + part.nbytes > task_bytes:
                flush()
            batch.append(part)
            batch_bytes += part.nbytes
    flush()
    return tasks


def _cut(piece: Fill | Copy, task_bytes: int, block: int) -> Iterable[Fill | Copy]:
    if piece.nbytes <= task_bytes:
        yield piece
        return
    if isinstance(piece, Copy):
        for lo in range(0, piece.length, task_bytes):
            length = min(task_bytes, piece.length - lo)
            yield Copy(piece.name, piece.source, piece.source_offset + lo, length, piece.path, piece.offset + lo)
        return
    itemsize = piece.draw.itemsize
    step = max(block, (task_bytes // itemsize) // block * block)
    # Boundaries at multiples of the block in the tensor's own indices.
    first = piece.start
    while first < piece.stop:
        stop = min(piece.stop, (first // step + 1) * step)
        yield Fill(piece.name, piece.draw, first, stop, piece.path, piece.offset + (first - piece.start) * itemsize)
        first = stop


# --------------------------------------------------------------------------- one task


def run_task(task: Task) -> int:
    """Write ``task``'s pieces; returns the bytes written.  Runs in any worker."""
    from vsconf._version import __version__

    if task.version and task.version != __version__:
        raise ModelError(f"a worker runs vsconf {__version__}, the coordinator vsconf {task.version}: install the same version")
    written = 0
    touched: dict[str, int] = {}
    spans: dict[int, tuple[int, int]] = {}  # per file, the byte range this task wrote
    try:
        for piece in task.pieces:
            fd = touched.get(piece.path)
            if fd is None:
                fd = touched[piece.path] = os.open(piece.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            written += _fill(fd, piece) if isinstance(piece, Fill) else _copy(fd, piece)
            low, high = spans.get(fd, (piece.offset, piece.offset))
            spans[fd] = (min(low, piece.offset), max(high, piece.offset + piece.nbytes))
        for fd, (low, high) in spans.items():  # once a file, not once a piece: a task may hold thousands
            _start_writeback(fd, low, high - low)
        if task.sync:
            for fd in touched.values():
                os.fsync(fd)
    finally:
        for fd in touched.values():
            os.close(fd)
    return written


_BUFFER = threading.local()


def _buffer(count: int, dtype: np.dtype) -> np.ndarray:
    """This thread's output buffer, reused from task to task: a fresh 64 MiB array per task
    would cost as many page faults as writing it."""
    data = getattr(_BUFFER, "data", None)
    if data is None or data.nbytes < count * dtype.itemsize:
        data = _BUFFER.data = np.empty(count * dtype.itemsize, np.uint8)
    return data[: count * dtype.itemsize].view(dtype)


def _fill(fd: int, piece: Fill) -> int:
    itemsize = piece.draw.itemsize
    for start, stop in _steps(piece):
        values = draw.values(piece.draw, start, stop, out=_buffer(stop - start, piece.draw.numpy_dtype))
        if values.dtype.byteorder == ">":  # files hold little-endian values
            values = values.astype(values.dtype.newbyteorder("<"))
        pwrite_all(fd, memoryview(values.view(np.uint8)), piece.offset + (start - piece.start) * itemsize)
    return piece.nbytes


# A stream fill is drawn and written this many elements at a time (16 stream blocks): the
# values are still in the core's cache when pwrite copies them, and a task holds this
# much, not its whole slice.  Boundaries fall at multiples of it in the tensor's indices,
# so no block is drawn twice.
_FILL_STEP = 16 << 16


def _steps(piece: Fill) -> Iterable[tuple[int, int]]:
    if piece.draw.kind in draw.SHAPED:  # a matrix or a formula is made whole, once
        yield piece.start, piece.stop
        return
    first = piece.start
    while first < piece.stop:
        stop = min(piece.stop, (first // _FILL_STEP + 1) * _FILL_STEP)
        yield first, stop
        first = stop


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing these pages to disk now, without waiting (Linux starts writeback on
    ``POSIX_FADV_DONTNEED``): the final fsync then has little left to do, and a checkpoint
    bigger than the page cache does not crowd out everything else."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        try:
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _copy(fd: int, piece: Copy) -> int:
    source = os.open(piece.source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        done = 0
        for chunk in pread_range(source, piece.source_offset, piece.length, f"{piece.source} (tensor {piece.name!r})", _COPY_STEP):
            pwrite_all(fd, memoryview(chunk), piece.offset + done)
            done += len(chunk)
    finally:
        os.close(source)
    return piece.length


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        _check_parent()
        count = os.pwrite(fd, data, offset)
        data, offset = data[count:], offset + count


# --------------------------------------------------------------------------- orphans

# In a process-pool worker, the coordinator's pid; None elsewhere (threads, Dask workers).
_PARENT: int | None = None
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_ORPHAN_POLL_S = 0.2


def _check_parent() -> None:
    """A pool worker whose coordinator died writes nothing more: it exits at once."""
    if _PARENT is not None and os.getppid() != _PARENT:
        os._exit(1)


def die_with(parent: int) -> None:
    """Pool initializer: this worker process dies with the coordinator ``parent``.

    On Linux the kernel kills it (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); the parent is
    checked after asking, since it may have died before.  Everywhere, every write checks
    the parent first (:func:`_check_parent`), and elsewhere a thread watches for a new
    parent, so that an idle worker does not wait forever for tasks that cannot come.
    """
    global _PARENT
    _PARENT = parent
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            _watch_parent()
    else:
        _watch_parent()
    _check_parent()


def _watch_parent() -> None:
    def watch() -> None:
        while True:
            _check_parent()
            time.sleep(_ORPHAN_POLL_S)

    threading.Thread(target=watch, name="vsconf-parent-watch", daemon=True).start()
