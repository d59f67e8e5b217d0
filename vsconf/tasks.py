"""Writing a checkpoint as independent tasks, run by threads, processes or a Dask cluster.

A task is a short, picklable description of bytes to put in files: which stream, which
range of elements, which dtype, which file and at which offset (:class:`Fill`), or which
byte range of which file to copy (:class:`Copy`).  A worker needs nothing else -- no plan,
no model, no spec -- and the bytes a task writes depend only on its description (the
streams' contract, :mod:`vsconf.streams`), so the files come out identical whatever runs
the tasks, in whatever order, however many times (a retried task writes the same bytes
again).  Files are preallocated by the caller; a task opens its file, writes its slice at
its offset with ``os.pwrite`` and closes it, holding at most its own slice in memory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

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
# How many times a failed task runs again before the run fails (Dask's ``retries=``,
# and a broken process pool's resubmissions).
RETRIES = 3
SCHEDULERS = ("threads", "processes")
_COPY_STEP = 16 << 20
_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


@dataclass(frozen=True, slots=True)
class Fill:
    """Elements ``start:stop`` of a tensor's values, written at ``offset`` of ``path``.

    ``kind`` is a stream kind of :mod:`vsconf.streams` (``param`` its std or limit) or
    ``"constant"`` (``param`` the value); ``key`` the tensor's stream key, ``stream`` the
    version of the streams that draws it.
    """

    name: str
    key: int
    total: int
    start: int
    stop: int
    dtype: str
    kind: str
    param: float
    path: str
    offset: int
    stream: int

    @property
    def nbytes(self) -> int:
        return (self.stop - self.start) * _dtype(self.dtype).itemsize


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


@functools.lru_cache(maxsize=16)
def _dtype(name: str) -> np.dtype:
    from vsconf.initializers import float_dtype

    return float_dtype(name)


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
    itemsize = _dtype(piece.dtype).itemsize
    step = max(block, (task_bytes // itemsize) // block * block)
    # Boundaries at multiples of the block in the tensor's own indices.
    first = piece.start
    while first < piece.stop:
        stop = min(piece.stop, (first // step + 1) * step)
        yield Fill(
            piece.name, piece.key, piece.total, first, stop, piece.dtype, piece.kind, piece.param,
            piece.path, piece.offset + (first - piece.start) * itemsize, piece.stream,
        )
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
    from vsconf import narrow, streams

    dtype = _dtype(piece.dtype)
    count = piece.stop - piece.start
    values = _buffer(count, dtype)
    if piece.kind == "constant":
        narrow.fill(values, piece.param)
    else:
        streams.draw_flat(
            piece.key, piece.total, piece.start, piece.stop, dtype, piece.kind, piece.param,
            stream=piece.stream, out=values,
        )
    if values.dtype.byteorder == ">":  # files hold little-endian values
        values = values.astype(values.dtype.newbyteorder("<"))
    pwrite_all(fd, memoryview(values.view(np.uint8)), piece.offset)
    return values.nbytes


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


def _die_with(parent: int) -> None:
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


# --------------------------------------------------------------------------- schedulers


@dataclass(frozen=True)
class Scheduler:
    """Where tasks run: ``"threads"`` or ``"processes"`` (``workers`` of them, on this
    machine), or a Dask scheduler's ``address`` (``tcp://host:8786``), or a local Dask
    cluster of ``workers`` processes started for the run (``kind="dask"`` without address)."""

    kind: str = "threads"
    workers: int = 1
    address: str | None = None

    @property
    def remote(self) -> bool:
        """Whether workers may run on other machines (they fsync what they write)."""
        return self.kind == "dask" and self.address is not None


def parse_scheduler(text: str, workers: int, dask_workers: int | None = None) -> Scheduler:
    """``threads``, ``processes``, or a Dask scheduler address; ``dask_workers`` starts a
    local Dask cluster instead.  ValueError names what is wrong."""
    if dask_workers is not None:
        if text not in ("threads", "dask"):
            raise ValueError(f"give either a scheduler ({text!r}) or a number of local Dask workers, not both")
        return Scheduler("dask", dask_workers)
    if text in SCHEDULERS:
        return Scheduler(text, workers)
    if _ADDRESS.match(text):
        return Scheduler("dask", workers, text)
    raise ValueError(f"expected threads, processes or a Dask scheduler address like tcp://host:8786, got {text!r}")


Progress = Callable[[int, int, str], None]


def run(tasks: Sequence[Task], scheduler: Scheduler, progress: Progress | None = None) -> None:
    """Run every task; raises the first failure (after the scheduler's retries)."""
    if not tasks:
        return
    from vsconf._version import __version__

    tasks = [Task(task.pieces, sync=scheduler.remote, version=__version__) for task in tasks]
    if scheduler.kind == "threads":
        _run_threads(tasks, scheduler.workers, progress)
    elif scheduler.kind == "processes":
        _run_processes(tasks, scheduler.workers, progress)
    else:
        _run_dask(tasks, scheduler, progress)


def _label(task: Task) -> str:
    names = dict.fromkeys(piece.name for piece in task.pieces)
    first = next(iter(names))
    return first if len(names) == 1 else f"{first} and {len(names) - 1} more"


def _run_threads(tasks: Sequence[Task], workers: int, progress: Progress | None) -> None:
    if workers <= 1:
        for done, task in enumerate(tasks, 1):
            run_task(task)
            if progress:
                progress(done, len(tasks), _label(task))
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(tasks)), thread_name_prefix="vsconf-task")
    try:
        _drain(pool.submit, tasks, progress, retries=0)
    finally:  # on an error or interrupt, drop the tasks not started yet
        pool.shutdown(wait=True, cancel_futures=True)


def _drain(submit: Callable[..., Future], tasks: Sequence[Task], progress: Progress | None, retries: int) -> None:
    """Submit every task, then wait; a failed task is submitted again up to ``retries`` times."""
    attempts = {index: 0 for index in range(len(tasks))}
    pending = {submit(run_task, task): index for index, task in enumerate(tasks)}
    done_count = 0
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            index = pending.pop(future)
            error = future.exception()
            if error is not None:
                if attempts[index] >= retries or not _retryable(error):
                    raise error
                attempts[index] += 1
                pending[submit(run_task, tasks[index])] = index
                continue
            done_count += 1
            if progress:
                progress(done_count, len(tasks), _label(tasks[index]))


def _retryable(error: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(error, (BrokenProcessPool, OSError)) and not isinstance(error, FileNotFoundError)


def _run_processes(tasks: Sequence[Task], workers: int, progress: Progress | None) -> None:
    """A local process pool (started fresh: ``spawn``, never a fork of this threaded process).

    A worker that dies breaks the whole pool; the pool is then started again and every
    unfinished task resubmitted, each at most :data:`RETRIES` times.  Workers die with
    this process (:func:`_die_with`): a killed coordinator leaves no orphan writing.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    remaining = list(range(len(tasks)))
    attempts = dict.fromkeys(remaining, 0)
    done_count = 0
    while remaining:
        pool = ProcessPoolExecutor(
            max_workers=max(1, min(workers, len(remaining))), mp_context=context, initializer=_die_with, initargs=(os.getpid(),)
        )
        broken = False
        finished_before = done_count
        try:
            futures = {pool.submit(run_task, tasks[index]): index for index in remaining}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = futures[future]
                    error = future.exception()
                    if error is None:
                        remaining.remove(index)
                        done_count += 1
                        if progress:
                            progress(done_count, len(tasks), _label(tasks[index]))
                    elif isinstance(error, BrokenProcessPool):
                        broken = True
                    else:
                        raise error
                if broken:
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if broken:
            for index in remaining:
                attempts[index] += 1
                if attempts[index] > RETRIES:
                    hint = (
                        "; its processes died before running a task (a script using the processes scheduler "
                        "must guard its code with `if __name__ == '__main__':`)"
                        if done_count == finished_before
                        else ""
                    )
                    raise ModelError(
                        f"a worker process died {RETRIES + 1} times while writing {_label(tasks[index])!r}; giving up{hint}"
                    )


def _dask():
    try:
        import distributed
    except ImportError:
        raise ModelError("the Dask scheduler needs the optional extra: pip install 'vsconf[dask]'") from None
    return distributed


def _run_dask(tasks: Sequence[Task], scheduler: Scheduler, progress: Progress | None) -> None:
    distributed = _dask()
    with contextlib.ExitStack() as stack:
        if scheduler.address is None:
            try:
                cluster = stack.enter_context(
                    distributed.LocalCluster(
                        n_workers=scheduler.workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=logging.ERROR,
                    )
                )
            except (RuntimeError, OSError) as exc:
                raise ModelError(
                    f"cannot start a local Dask cluster: {exc} (a script starting one must guard its code "
                    "with `if __name__ == '__main__':`)"
                ) from None
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(scheduler.address, timeout="20s"))
            except (OSError, TimeoutError, ValueError) as exc:
                raise ModelError(f"cannot reach the Dask scheduler at {scheduler.address}: {exc}") from None
        futures = client.map(run_task, list(tasks), retries=RETRIES, pure=False)
        index_of = {future.key: index for index, future in enumerate(futures)}
        try:
            for done_count, future in enumerate(distributed.as_completed(futures), 1):
                try:
                    future.result()
                except distributed.KilledWorker as exc:
                    raise ModelError(f"Dask workers died running the task for {_label(tasks[index_of[future.key]])!r}: {exc}") from None
                if progress:
                    progress(done_count, len(tasks), _label(tasks[index_of[future.key]]))
        finally:
            client.cancel(futures)
