"""Writing files without losing anything: temporary file in the target directory, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vsconf.errors import ModelError


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename.

    On any error the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ModelError(f"cannot write in {directory}: {exc.strerror}") from None
    os.close(handle)
    temp_path = Path(temp)
    try:
        yield temp_path
        if target.exists():
            # Keep the permissions of the file being replaced (--in-place, --force).
            os.chmod(temp_path, target.stat().st_mode & 0o7777)
        else:
            os.chmod(temp_path, 0o666 & ~_umask())
        os.replace(temp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()
        raise


def little_endian_bytes(array: np.ndarray) -> bytes:
    """The array's bytes as files store them: C order, little-endian."""
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_output(model: Path) -> Path:
    """``model.npz`` -> ``model.init.npz`` beside the input."""
    return model.with_name(f"{model.stem}.init{model.suffix}")


def resolve_output(model: Path, output: Path | None, *, in_place: bool, force: bool) -> Path:
    """Where ``apply`` writes, refusing to overwrite an existing file unless asked."""
    if in_place:
        if output is not None:
            raise ModelError("give either -o/--output or --in-place, not both")
        return model
    target = Path(output) if output is not None else default_output(model)
    if target.resolve() == model.resolve():
        raise ModelError(f"the output {target} is the input; use --in-place to replace it")
    if target.exists() and not force:
        raise ModelError(f"{target} exists; use --force to overwrite it, or -o to write elsewhere")
    return target
