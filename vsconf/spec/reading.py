"""Reading a spec file, bounded: a regular file, at most :data:`MAX_SPEC_BYTES` bytes, UTF-8.

A FIFO or a device is refused before it is opened for reading (and what was opened is
checked again), so that reading never blocks; a file past the limit is refused after
reading one byte more than the limit.  The text must be UTF-8 (a UTF-8 byte-order mark is
allowed): UTF-16 and UTF-32 are named as such, and otherwise the line and column of the
first byte that is not UTF-8 are reported.  Every failure is a :class:`~vsconf.errors.SpecError`
with one problem that says why.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vsconf.errors import Problem, SpecError
from vsconf.spec.document import line_column

MAX_SPEC_BYTES = 1 << 20  # a spec is a short text file; 1 MiB leaves room for generated ones
_TOO_LARGE = f"cannot read the spec: it is larger than 1 MiB ({MAX_SPEC_BYTES} bytes), the limit for a spec"
_O_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def read_spec_text(path: Path, source: str) -> str:
    """The text of the spec file at ``path``, named ``source`` in messages."""
    return _decode(_read_bytes(path, source), source)


def too_large(source: str) -> SpecError:
    """The error for a spec past :data:`MAX_SPEC_BYTES`, whether a file or a text."""
    return SpecError([Problem(source, 0, 0, "", _TOO_LARGE)])


def _unreadable(source: str, reason: str, line: int = 0, column: int = 0) -> SpecError:
    return SpecError([Problem(source, line, column, "", f"cannot read the spec: {reason}")])


def _read_bytes(path: Path, source: str) -> bytes:
    """At most ``MAX_SPEC_BYTES + 1`` bytes of a regular file; never opens a FIFO for a
    blocking read (the kind is checked before opening, and again on what was opened)."""
    try:
        _require_regular(os.stat(path).st_mode, source)
        fd = os.open(path, _O_FLAGS)
        try:
            _require_regular(os.fstat(fd).st_mode, source)
            data = _read_at_most(fd, MAX_SPEC_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _unreadable(source, exc.strerror or str(exc)) from None
    except ValueError:  # os.stat refuses a path with a NUL character in it
        raise _unreadable(source, "the path holds a NUL character") from None
    if len(data) > MAX_SPEC_BYTES:
        raise too_large(source)
    return data


def _require_regular(mode: int, source: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((word for test, word in _FILE_KINDS if test(mode)), "a special file")
        raise _unreadable(source, f"it is {kind}, not a regular file")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text (a UTF-8 BOM is allowed); else the position of the first bad byte."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            reason = f"it is {name} text (it starts with a {name} byte-order mark); save it as UTF-8"
            raise _unreadable(source, reason, 1, 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8")
        line, column = line_column(before, len(before))
        reason = f"byte 0x{data[exc.start]:02x}: {exc.reason}"
        raise _unreadable(source, f"it is not UTF-8 text ({reason}); save it as UTF-8", line, column) from None
