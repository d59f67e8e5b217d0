"""Writing files without losing anything, and reading only what is safe to read.

Every file vsconf writes is first written to a temporary file in the target's own
folder, flushed and fsynced, and only then renamed over the target (and the folder
fsynced), so a reader sees the old file or the new one, never a part.  Files that
belong together -- a model, its external data, a lock -- are staged in one
:class:`Transaction` and renamed together after all of them are complete; on any
error, signal or interrupt the temporaries are removed and no target is touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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
    """Files that appear together or not at all.

    ``stage(target)`` returns a temporary path beside ``target`` to write into;
    ``commit()`` makes every staged file durable, then renames them into place in
    the order they were staged.  Leaving the ``with`` block by an exception (or
    calling ``abort()``) removes every temporary file and touches no target.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self._folders: set[Path] = set()  # staged temporaries that are folders
        # Folders that committed folders replaced, renamed away: the caller removes them.
        self.displaced: list[Path] = []
        self._done = False
        _OPEN.add(self)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None or not self._done:
            self.abort()

    def stage(self, target: Path) -> Path:
        target = Path(target)
        directory = target.parent if str(target.parent) else Path(".")
        try:
            handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=directory)
        except OSError as exc:
            raise ModelError(f"{target}: cannot write in {directory}: {describe_os_error(exc)}") from None
        os.close(handle)
        self._staged.append((Path(temp), target))
        return Path(temp)

    def stage_folder(self, target: Path) -> Path:
        """A temporary folder beside ``target`` to build a folder output in.  ``commit()``
        fsyncs its files and renames it into place; an existing ``target`` is first renamed
        away, and listed in :attr:`displaced` for the caller to remove (or keep)."""
        target = Path(target)
        directory = target.parent if str(target.parent) else Path(".")
        try:
            temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=directory))
        except OSError as exc:
            raise ModelError(f"{target}: cannot write in {directory}: {describe_os_error(exc)}") from None
        self._staged.append((temp, target))
        self._folders.add(temp)
        return temp

    def commit(self) -> None:
        """fsync every staged file, then rename each over its target, then fsync the folders."""
        for temp, target in self._staged:
            try:
                if temp in self._folders:
                    _fsync_folder(temp)
                    _copy_mode(temp, target, folder=True)
                else:
                    _fsync_path(temp)
                    _copy_mode(temp, target)
            except OSError as exc:
                raise ModelError(f"{target}: cannot write: {describe_os_error(exc)}") from None
        folders = []
        for temp, target in self._staged:
            try:
                if temp in self._folders:
                    self._replace_folder(temp, target)
                else:
                    os.replace(temp, target)
            except OSError as exc:
                raise ModelError(f"{target}: cannot write: {describe_os_error(exc)}") from None
            folders.append(target.parent if str(target.parent) else Path("."))
        self._done = True
        _OPEN.discard(self)
        for folder in dict.fromkeys(folders):
            _fsync_directory(folder)

    def abort(self) -> None:
        """Remove every temporary file that has not been renamed into place."""
        for temp, _ in self._staged:
            if temp in self._folders:
                shutil.rmtree(temp, ignore_errors=True)  # a folder this transaction made
                continue
            with contextlib.suppress(OSError):
                temp.unlink()
        self._staged = []
        self._done = True
        _OPEN.discard(self)


    def _replace_folder(self, temp: Path, target: Path) -> None:
        """Rename ``temp`` to ``target``; a folder already there is renamed away first (a
        folder cannot be renamed over a full one) and put back if the rename fails."""
        if not os.path.lexists(target):
            os.rename(temp, target)
            return
        directory = target.parent if str(target.parent) else Path(".")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".vsconf-old", dir=directory))
        os.rename(target, old)  # over the empty folder just made: a name nobody else holds
        try:
            os.rename(temp, target)
        except OSError:
            os.rename(old, target)
            raise
        self.displaced.append(old)


def abort_all() -> None:
    """Remove the temporaries of every open transaction (for signal handlers)."""
    for transaction in list(_OPEN):
        transaction.abort()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_mode(temp: Path, target: Path, *, folder: bool = False) -> None:
    """The new file keeps the permissions of the file it replaces, else the umask's."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = (0o777 if folder else 0o666) & ~_umask()
    os.chmod(temp, mode)


def _fsync_folder(folder: Path) -> None:
    """fsync every file of a staged folder, then the folder itself."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                _fsync_path(Path(entry.path))
    _fsync_directory(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
