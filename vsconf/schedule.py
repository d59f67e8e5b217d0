"""Where tasks run: threads of this process, a pool of fresh processes, or a Dask cluster.

A :class:`Scheduler` names the place; :func:`run` runs a list of
tasks (:class:`~vsconf.tasks.Task`) there and raises the first failure, after the
scheduler's retries.  The bytes never depend on the choice: a task's bytes are a function of its
description alone (see :mod:`vsconf.tasks`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from typing import TYPE_CHECKING

from vsconf.errors import ModelError

if TYPE_CHECKING:
    from vsconf.tasks import Copy, Fill, Task

# How many times a failed task runs again before the run fails (Dask's ``retries=``,
# and a broken process pool's resubmissions).
RETRIES = 3
SCHEDULERS = ("auto", "threads", "processes")
# `auto` starts a process pool when the values to draw reach this many bytes.  Measured on
# 2 cores (`vsconf apply` of inline ONNX models, whole processes, three rounds): 256 MB
# threads 1.03-1.66 s, processes 1.36-1.78 s; 512 MB threads 1.95-2.34 s, processes
# 2.12-2.94 s; 1 GB threads 3.90-4.25 s, processes 3.42-4.01 s.  Below about 1 GB the
# pool's start (fresh interpreters importing vsconf and NumPy) costs what drawing without
# the GIL saves.  README, "Performance".
AUTO_PROCESS_BYTES = 1 << 30
# How long to wait for a Dask scheduler named by address before saying it cannot be reached.
DASK_CONNECT_TIMEOUT = "20s"
# Set by the command line: its main module runs nothing when a spawned worker imports it.
ENTRY_POINT = False
_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


@dataclass(frozen=True)
class Scheduler:
    """Where tasks run: ``"threads"`` or ``"processes"`` (``workers`` of them, on this
    machine), or a Dask scheduler's ``address`` (``tcp://host:8786``), or a local Dask
    cluster of ``workers`` processes started for the run (``kind="dask"`` without address)."""

    kind: str = "threads"
    workers: int = 1
    address: str | None = None

    def resolved(self, new_bytes: int) -> Scheduler:
        """``auto`` made concrete for a run that draws ``new_bytes``: processes when the work
        repays their start-up, there are two workers or more, and starting them is safe (see
        :func:`spawn_is_safe`); threads otherwise.  Any other scheduler stays as it is."""
        if self.kind != "auto":
            return self
        if self.workers >= 2 and new_bytes >= AUTO_PROCESS_BYTES and spawn_is_safe():
            return Scheduler("processes", self.workers)
        return Scheduler("threads", self.workers)

    @property
    def remote(self) -> bool:
        """Whether workers may run on other machines (they fsync what they write)."""
        return self.kind == "dask" and self.address is not None


def spawn_is_safe() -> bool:
    """Whether a spawned worker can start without running the caller's program again: the
    command line (:data:`ENTRY_POINT`), ``python -m`` (multiprocessing does not import a
    ``__main__`` module), or an interactive session (no main file).  A script's own main
    file might call vsconf outside ``if __name__ == '__main__':`` -- so ``auto`` gives a
    script threads, and a script asks for processes by name."""
    import sys

    main = sys.modules.get("__main__")
    if ENTRY_POINT or main is None or getattr(main, "__file__", None) is None:
        return True
    spec = getattr(main, "__spec__", None)
    return spec is not None and spec.name.endswith("__main__")


def parse_scheduler(text: str, workers: int, dask_workers: int | None = None) -> Scheduler:
    """``auto``, ``threads``, ``processes``, or a Dask scheduler address; ``dask_workers``
    starts a local Dask cluster instead.  ValueError names what is wrong."""
    if dask_workers is not None:
        if text not in ("auto", "threads", "dask"):
            raise ValueError(f"give either a scheduler ({text!r}) or a number of local Dask workers, not both")
        return Scheduler("dask", dask_workers)
    if text in SCHEDULERS:
        return Scheduler(text, workers)
    if _ADDRESS.match(text):
        return Scheduler("dask", workers, text)
    raise ValueError(f"expected auto, threads, processes or a Dask scheduler address like tcp://host:8786, got {text!r}")


Progress = Callable[[int, int, str], None]


def run(tasks: Sequence[Task], scheduler: Scheduler, progress: Progress | None = None) -> None:
    """Run every task; raises the first failure (after the scheduler's retries)."""
    if not tasks:
        return
    from vsconf._version import __version__

    from vsconf.tasks import Task  # what runs tasks is light to import: the command line checks --scheduler with it

    tasks = [Task(task.pieces, sync=scheduler.remote, version=__version__) for task in tasks]
    scheduler = scheduler.resolved(sum(task.nbytes for task in tasks))  # a caller that did not resolve `auto`
    if scheduler.kind == "threads":
        _run_threads(tasks, scheduler.workers, progress)
    elif scheduler.kind == "processes":
        _run_processes(tasks, scheduler.workers, progress)
    else:
        _run_dask(tasks, scheduler, progress)


def write(
    pieces: Sequence[Fill | Copy],
    scheduler: Scheduler | None = None,
    *,
    task_bytes: int | None = None,
    progress: Progress | None = None,
    digests: dict[str, str] | None = None,
) -> None:
    """Cut ``pieces`` (each a whole tensor's Fill, or a Copy) into tasks of at most
    ``task_bytes`` and run them on ``scheduler`` (default: one thread).  ``digests``, when
    given, receives the SHA-256 of every Fill's bytes, read back from its file."""
    from pathlib import Path

    from vsconf.files import range_digest
    from vsconf.tasks import DEFAULT_TASK_BYTES, Fill, split

    run(split(pieces, task_bytes or DEFAULT_TASK_BYTES), scheduler or Scheduler(), progress)
    if digests is not None:
        for piece in pieces:
            if isinstance(piece, Fill):
                digests[piece.name] = range_digest(Path(piece.path), piece.offset, piece.nbytes)


def _label(task: Task) -> str:
    names = dict.fromkeys(piece.name for piece in task.pieces)
    first = next(iter(names))
    return first if len(names) == 1 else f"{first} and {len(names) - 1} more"


def _run_threads(tasks: Sequence[Task], workers: int, progress: Progress | None) -> None:
    from vsconf.tasks import run_task

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
    from vsconf.tasks import run_task

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
    this process (:func:`vsconf.tasks.die_with`): a killed coordinator leaves no orphan writing.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from vsconf.tasks import die_with, run_task

    context = multiprocessing.get_context("spawn")
    remaining = list(range(len(tasks)))
    attempts = dict.fromkeys(remaining, 0)
    done_count = 0
    while remaining:
        pool = ProcessPoolExecutor(
            max_workers=max(1, min(workers, len(remaining))), mp_context=context, initializer=die_with, initargs=(os.getpid(),)
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
    from vsconf.tasks import run_task

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
                client = stack.enter_context(distributed.Client(scheduler.address, timeout=DASK_CONNECT_TIMEOUT))
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
