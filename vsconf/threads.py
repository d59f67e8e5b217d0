"""Threads in one process: how many cores it may use, and overlapping work.

:func:`available_cores` is how many threads are worth running (the values never depend on
it).  :func:`prefetch` runs an iterator in a background thread, ``depth`` items ahead of its
consumer, so that generating values (NumPy, which releases the GIL) and writing bytes
(the file system) proceed at the same time with at most ``depth + 1`` items in memory.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """The items of ``items``, produced by a background thread up to ``depth`` ahead.

    An exception in the producer is raised in the consumer at the same point; closing
    the returned generator early (or an interrupt in the consumer) stops the producer.
    The first two items are made here, without a thread: most tensors are one chunk, and
    a thread per tensor (started, handed to, joined) costs a millisecond -- minutes for a
    model of a million tiny tensors.  Longer runs overlap from the third item on.
    """
    items = iter(items)
    head = list(itertools.islice(items, 2))
    if len(head) < 2:
        yield from head
        return
    yield head[0]
    yield from _prefetch_rest(head[1], items, depth)


def _prefetch_rest(second: T, items: Iterator[T], depth: int) -> Iterator[T]:
    handoff: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(_Failed(error))

    producer = threading.Thread(target=produce, name="vsconf-prefetch", daemon=True)
    producer.start()
    try:
        yield second
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        producer.join()
