"""Writing files without losing anything, and reading only what is safe to read.

Every file vsconf writes is first written to a temporary file in the target's own
folder, flushed and fsynced, and only then renamed onto the target (and the folder
fsynced), so a reader sees the old file or the new one, never a part.  Files that
belong together -- a model, its external data, a lock, the shards of a checkpoint --
are staged in one :class:`Transaction` and renamed together after all of them are
complete, while the target folders are locked against other vsconf runs; a target that
nobody said to replace is renamed onto with a no-replace rename, so it is never lost.
On any error, signal or interrupt the temporaries are removed and no target is touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import functools
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from vsconf.errors import ModelError

if TYPE_CHECKING:
    import numpy as np

TEMP_SUFFIX = ".vsconf-tmp"
# Every transaction not yet committed or aborted, so a signal handler can clean up.
_OPEN: weakref.WeakSet[Transaction] = weakref.WeakSet()


def describe_os_error(exc: OSError) -> str:
    """``No space left on device`` rather than ``[Errno 28] ...``."""
    return exc.strerror or str(exc)


class Transaction:
    """Files that appear together or not at all, and never over a file nobody said to replace.

    ``stage(target)`` returns a temporary path beside ``target`` to write into;
    :meth:`add` takes any other :class:`Step` (a folder output is one).  ``commit()``
    makes every staged file durable, then, holding a lock on each target folder (so
    that two vsconf runs never commit into one folder at once), checks that no target
    appeared that may not be replaced, and renames everything into place in the order it
    was staged.  A target may be replaced only if it was named in ``replaceable`` or the
    transaction was opened with ``force``; any other target is renamed with a no-replace
    rename, so a file that appears while the run works is never lost -- the commit fails
    instead, naming it.  Leaving the ``with`` block by an exception (or calling
    ``abort()``) removes every temporary file, every folder :meth:`make_parents` made,
    and touches no target.
    """

    def __init__(self, *, force: bool = False, replaceable: Iterable[Path] = ()) -> None:
        self.force = force
        self._replaceable = {_absolute(path) for path in replaceable}
        self._steps: list[Step] = []
        self._made: list[Path] = []  # folders make_parents created, deepest last
        # What commit() removed after the renames could not remove, and why.
        self.notes: list[str] = []
        self._done = False
        _OPEN.add(self)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None or not self._done:
            self.abort()

    def may_replace(self, target: Path) -> bool:
        """Whether ``target`` may be replaced if it exists when the transaction commits."""
        return self.force or _absolute(target) in self._replaceable

    def make_parents(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents; an aborted transaction removes them again."""
        missing = []
        folder = Path(folder)
        while str(folder) and not os.path.lexists(folder) and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                continue  # made meanwhile by someone else: not ours to remove
            except OSError as exc:
                raise ModelError(f"{path}: cannot make the folder: {describe_os_error(exc)}") from None
            self._made.append(path)

    def stage(self, target: Path) -> Path:
        target = Path(target)
        temp = temporary_file(target)
        self._steps.append(_FileStep(temp, target, self.may_replace(target)))
        return temp

    def add(self, step: Step) -> None:
        """Commit ``step`` with the staged files, in the order it was added."""
        self._steps.append(step)

    def commit(self, prepare: Callable[[], tuple[list[Path], list[str]]] | None = None) -> None:
        """fsync every staged file; then, holding the target folders' locks, check every
        step, call ``prepare`` (what to remove once everything is in place, and notes),
        rename each step into place, remove those files, and fsync the folders."""
        for step in self._steps:
            step.sync()
        folders = sorted({_absolute(folder) for step in self._steps for folder in step.folders()}, key=str)
        with folder_locks(folders), signals_deferred():
            for step in self._steps:
                step.check()
            removals, notes = prepare() if prepare is not None else ([], [])
            self.notes.extend(notes)
            for step in self._steps:
                removals.extend(step.install())
            self._done = True
            _OPEN.discard(self)
            written = {_absolute(target) for step in self._steps for target in step.targets()}
            for path in dict.fromkeys(path for path in removals if _absolute(path) not in written):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    self.notes.append(f"{path}: could not remove it: {describe_os_error(exc)}")
        for folder in folders:
            fsync_directory(folder)

    def abort(self) -> None:
        """Remove every temporary that has not been renamed into place, and the folders made for them."""
        for step in self._steps:
            step.abort()
        self._steps = []
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):  # not empty: someone else put something there
                os.rmdir(folder)
        self._made = []
        self._done = True
        _OPEN.discard(self)


class Step(Protocol):
    """Something a :class:`Transaction` commits: temporaries made, then put in place."""

    def folders(self) -> list[Path]:
        """The folders whose entries the step changes (locked while committing)."""
        ...

    def targets(self) -> list[Path]:
        """The paths the step writes (never removed as an old output's leftovers)."""
        ...

    def sync(self) -> None:
        """Make the staged data durable (before any rename)."""
        ...

    def check(self) -> None:
        """Raise :class:`ModelError` if the step cannot be put in place (nothing renamed yet)."""
        ...

    def install(self) -> list[Path]:
        """Rename into place; returns files to remove once every step is installed."""
        ...

    def abort(self) -> None:
        """Remove what is staged and not installed."""
        ...


class _FileStep:
    """One staged file and its target."""

    def __init__(self, temp: Path, target: Path, replace: bool):
        self.temp, self.target, self.replace = temp, target, replace
        self.installed = False

    def folders(self) -> list[Path]:
        return [parent_folder(self.target)]

    def targets(self) -> list[Path]:
        return [self.target]

    def sync(self) -> None:
        try:
            fsync_path(self.temp)
            copy_mode(self.temp, self.target)
        except OSError as exc:
            raise ModelError(f"{self.target}: cannot write: {describe_os_error(exc)}") from None

    def check(self) -> None:
        if not self.replace and os.path.lexists(self.target):
            raise appeared(self.target)

    def install(self) -> list[Path]:
        try:
            if self.replace:
                os.replace(self.temp, self.target)
            else:
                rename_new(self.temp, self.target)
        except FileExistsError:
            raise appeared(self.target) from None
        except OSError as exc:
            raise ModelError(f"{self.target}: cannot write: {describe_os_error(exc)}") from None
        self.installed = True
        return []

    def abort(self) -> None:
        if not self.installed:
            with contextlib.suppress(OSError):
                self.temp.unlink()


def appeared(target: Path) -> ModelError:
    """The error of a target that appeared while vsconf worked (and was left alone)."""
    return ModelError(
        f"{target}: appeared while vsconf worked and was left as it is; pass force=True to overwrite it",
        cli_message=f"{target}: appeared while vsconf worked and was left as it is; use --force to overwrite it",
    )


def parent_folder(path: Path) -> Path:
    """The folder ``path`` is in (``.`` for a bare name)."""
    path = Path(path)
    return path.parent if str(path.parent) else Path(".")


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def temporary_file(target: Path) -> Path:
    """A new empty file beside ``target``, named ``.<name>.*.vsconf-tmp``."""
    directory = parent_folder(target)
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{Path(target).name[:200]}.", suffix=TEMP_SUFFIX, dir=directory)
    except OSError as exc:
        raise ModelError(f"{target}: cannot write in {directory}: {describe_os_error(exc)}") from None
    os.close(handle)
    return Path(temp)


def temporary_folder(target: Path) -> Path:
    """A new empty folder beside ``target``, named ``.<name>.*.vsconf-tmp``."""
    directory = parent_folder(target)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{Path(target).name[:200]}.", suffix=TEMP_SUFFIX, dir=directory))
    except OSError as exc:
        raise ModelError(f"{target}: cannot write in {directory}: {describe_os_error(exc)}") from None


def abort_all() -> None:
    """Remove the temporaries of every open transaction (for signal handlers)."""
    for transaction in list(_OPEN):
        transaction.abort()


# --------------------------------------------------------------------------- no-replace renames

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


@functools.lru_cache(maxsize=1)
def _renameat2() -> Callable[..., int] | None:
    """Linux's ``renameat2`` (glibc 2.28+), or None where the C library has none."""
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def rename_new(source: Path, target: Path) -> None:
    """Rename ``source`` (a file or a folder) to ``target`` only if nothing is there:
    ``FileExistsError`` otherwise, and ``target`` is never replaced.

    ``renameat2(RENAME_NOREPLACE)`` where the kernel and file system have it; else a hard
    link for a file (which fails on an existing name) and, for a folder or a file system
    without hard links, a check then a rename -- which other vsconf runs cannot race,
    since they commit into a folder only while holding its lock (:func:`folder_locks`).
    """
    function = _renameat2()
    if function is not None:
        import ctypes

        if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        error = ctypes.get_errno()
        if error not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise OSError(error, os.strerror(error), str(target))
    if not os.path.isdir(source) or os.path.islink(source):
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
                raise
        else:
            os.unlink(source)
            return
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


# How long a commit waits for another vsconf run to finish committing into the same folder.
LOCK_WAIT_SECONDS = 60.0


@contextlib.contextmanager
def folder_locks(folders: Sequence[Path]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on each existing folder of ``folders``, taken in the
    order given (callers sort them, so two runs never wait for each other in a circle).

    Folders whose file system has no locks are committed into without one.
    """
    import fcntl

    held: list[int] = []
    try:
        for folder in folders:
            try:
                fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue  # not there (yet): nothing in it to protect
            held.append(fd)
            deadline = time.monotonic() + LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ModelError(
                            f"{folder}: another vsconf run has been committing into this folder for "
                            f"{LOCK_WAIT_SECONDS:.0f} s; try again when it has finished"
                        ) from None
                    time.sleep(0.01)
                except OSError:
                    break  # no locks on this file system
        yield
    finally:
        for fd in held:
            os.close(fd)  # closing releases the lock


_DEFERRED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back while the renames of a commit run, so that
    the renames are not cut in half; a signal that came meanwhile is delivered after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved = {}
    for name in _DEFERRED_SIGNALS:
        number = getattr(signal, name, None)
        if number is None or signal.getsignal(number) is None:  # None: a handler Python did not install
            continue
        try:
            saved[number] = signal.signal(number, lambda signum, frame: pending.append(signum))
        except (ValueError, OSError):
            continue
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
        for number in pending:
            signal.raise_signal(number)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def copy_mode(temp: Path, target: Path, *, folder: bool = False) -> None:
    """The new file keeps the permissions of the file it replaces, else the umask's."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = (0o777 if folder else 0o666) & ~_umask()
    os.chmod(temp, mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two regular files hold the same bytes (read a piece at a time)."""
    try:
        if not os.path.isfile(b) or os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as first, open(b, "rb") as second:
            while True:
                x, y = first.read(1 << 20), second.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def copy_file(source: Path, temp: Path) -> None:
    """The bytes of ``source`` into the staged ``temp``."""
    try:
        with open(source, "rb") as reader, open(temp, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
    except OSError as exc:
        raise ModelError(f"{source}: cannot copy it beside the new checkpoint: {describe_os_error(exc)}") from None


def regular_file(path: Path, what: str) -> Path:
    """``path`` if it names an existing regular file (links followed), else a clear error.

    FIFOs, devices and folders are refused before anything opens them: reading one
    could block forever or never end.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the {what}: {describe_os_error(exc)}") from None
    if not stat.S_ISREG(mode):
        raise ModelError(f"{path}: the {what} is {_kind(mode)}, not a regular file")
    return path


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def little_endian_bytes(array: np.ndarray) -> bytes:
    """The array's bytes as files store them: C order, little-endian."""
    import numpy as np

    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()


def is_data_name(name: str, output_name: str) -> bool:
    """``<output>.data`` or ``<output>.<8 lowercase hex>.data``: the names vsconf gives the
    external data of an output named ``output_name`` (and the only ones it ever removes)."""
    return re.fullmatch(re.escape(output_name) + r"(\.[0-9a-f]{8})?\.data", name) is not None


def default_output(model: Path) -> Path:
    """``model.npz`` -> ``model.init.npz`` beside the input."""
    return model.with_name(f"{model.stem}.init{model.suffix}")


def pread_range(fd: int, offset: int, length: int, where: str, step: int = 16 << 20) -> Iterator[bytes]:
    """Bytes ``offset:offset+length`` of the open file ``fd``, at most ``step`` at a time.

    A read error, or a file that ends first (it shrank, or a header lied), is a
    :class:`ModelError` naming ``where``.
    """
    done = 0
    while done < length:
        try:
            piece = os.pread(fd, min(step, length - done), offset + done)
        except OSError as exc:
            raise ModelError(f"{where}: cannot read: {describe_os_error(exc)}") from None
        if not piece:
            raise ModelError(f"{where}: the file ends before offset {offset} + {length}")
        done += len(piece)
        yield piece


def preallocate(path: Path, size: int, header: bytes = b"") -> None:
    """Make the staged file ``path`` ``size`` bytes long, starting with ``header``, before
    tasks write the rest at their offsets (space reserved where the file system can: a full
    disk fails here, before any work)."""
    with open(path, "r+b") as handle:
        handle.write(header)
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except (AttributeError, OSError) as exc:  # not every file system reserves space
            if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
                raise
            handle.truncate(size)


def range_digest(path: Path, offset: int, length: int) -> str:
    """The SHA-256 of bytes ``offset:offset+length`` of ``path``, read back a piece at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in pread_range(handle.fileno(), offset, length, str(path)):
            digest.update(chunk)
    return digest.hexdigest()


def read_text(path: Path, what: str, limit: int) -> str:
    """The UTF-8 text of the regular file ``path`` (the ``what`` of a message), refusing
    more than ``limit`` bytes without reading them."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ModelError(f"{path}: the {what} is not a regular file")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the {what}: {describe_os_error(exc)}") from None
    if len(data) > limit:
        raise ModelError(f"{path}: cannot read the {what}: it is larger than {limit:,} bytes, the limit")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: the {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def load_json(text: str, path: Path):
    """JSON with every error located (``FILE:LINE:COL``) and duplicate keys refused."""
    import json

    def unique(pairs: list) -> dict:
        out = dict(pairs)  # at C speed: a manifest or an index may hold a million objects
        if len(out) != len(pairs):
            seen = set()
            for key, _ in pairs:
                if key in seen:
                    raise ModelError(f"{path}: key {key!r} is given twice")
                seen.add(key)
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits, deep nesting
        raise ModelError(f"{path}: invalid JSON: {exc}") from None
