"""Where a run may write, checked before any work starts, and put in place without loss.

The rule (SPEC §8): vsconf never modifies or deletes a file it did not create for this
run.  Concretely:

* **Files a run reads are never written or removed**, whatever their names: the model,
  its data files or shards, the spec.  They are known by identity (device and inode), so
  no spelling, link or hard link of a path gets around it (:class:`Reads`).
* **A file output** replaces only its own target, and only with ``force`` (or
  ``in_place``, where the target is the model); a target that appears while the run
  works is left alone and the commit fails (:class:`~vsconf.files.Transaction`).
* **A folder output is one checkpoint among whatever else the folder holds.**  It owns
  exactly the files its format says the replaced checkpoint is made of (for a sharded
  safetensors checkpoint: its index and the shards that index names, or a single
  ``PREFIX.safetensors``); only those are replaced or removed, after the new checkpoint
  is in place.  A new name that would land on any other file -- another checkpoint's
  shard, a config, a spec -- refuses the run before any work (:class:`FolderStep`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vsconf.errors import ModelError
from vsconf.files import (
    appeared,
    copy_mode,
    default_output,
    describe_os_error,
    fsync_directory,
    fsync_path,
    is_data_name,
    parent_folder,
    rename_new,
    temporary_file,
    temporary_folder,
)


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` names (links followed), or None if there is none."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


class Reads:
    """The files a run reads, by identity, each with how messages name it."""

    def __init__(self) -> None:
        self._what: dict[tuple[int, int], str] = {}

    def add(self, path: Path | None, what: str) -> None:
        key = None if path is None else identity(path)
        if key is not None:
            self._what.setdefault(key, what)

    def what(self, path: Path) -> str | None:
        """What the run reads at ``path`` (``the spec``...), or None if it reads nothing there."""
        key = identity(path)
        return None if key is None else self._what.get(key)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (or would, once created)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def writable_target(path: Path, what: str) -> None:
    """``path`` may become a file: it is not a folder or a special file, and the nearest
    existing folder above it is a folder (missing ones are made when the run commits)."""
    if os.path.lexists(path) and not os.path.isfile(path):
        kind = "a folder" if os.path.isdir(path) else "not a regular file"
        raise ModelError(f"{path}: cannot write the {what}: it is {kind}")
    writable_folder(parent_folder(path), path, what)


def writable_folder(folder: Path, target: Path, what: str) -> None:
    """``folder`` is a folder, or can be made: the nearest existing path above it is one."""
    probe = Path(folder)
    while not os.path.lexists(probe) and probe != probe.parent and str(probe) not in ("", "."):
        probe = probe.parent
    if os.path.lexists(probe) and not os.path.isdir(probe):
        raise ModelError(f"{target}: cannot write the {what}: {probe} is not a folder")


def resolve_file(model: Path, output: Path | None, *, in_place: bool, force: bool, reads: Reads) -> Path:
    """Where ``apply`` writes a file, refusing to overwrite anything it was not asked to."""
    if in_place:
        return model
    target = output if output is not None else default_output(model)
    writable_target(target, "output")
    if same_file(target, model):
        raise ModelError(
            f"{target}: the output is the input model; pass in_place=True to replace it",
            cli_message=f"{target}: the output is the input model; use --in-place to replace it",
        )
    what = reads.what(target)
    if what is not None:
        raise ModelError(f"{target}: the output would replace {what}")
    if os.path.lexists(target) and not force:
        raise ModelError(
            f"{target}: exists; pass force=True to overwrite it, or another output",
            cli_message=f"{target}: exists; use --force to overwrite it, or -o to write elsewhere",
        )
    return target


def check_lock(lock: Path, reads: Reads, output: Path, *, force: bool, taken: Sequence[tuple[Path, str]] = ()) -> None:
    """The lock never replaces a file that the run reads or writes, nor any file without ``force``.

    ``taken``: other files the output consists of or replaces (a folder's), each with how
    messages name it.
    """
    writable_target(lock, "lock")
    what = reads.what(lock) or next((what for path, what in taken if same_file(lock, path)), None)
    if what is None and same_file(lock, output):
        what = "the output"
    if what is not None:
        raise ModelError(f"{lock}: the lock would replace {what}")
    if os.path.realpath(parent_folder(lock)) == os.path.realpath(parent_folder(output)) and is_data_name(lock.name, output.name):
        raise ModelError(f"{lock}: the lock would take the name of the output's data file")
    if os.path.lexists(lock) and not force:
        raise ModelError(
            f"{lock}: exists; pass force=True to overwrite it",
            cli_message=f"{lock}: exists; use --force to overwrite it",
        )


# --------------------------------------------------------------------------- folder outputs


@dataclass(frozen=True)
class Owned:
    """What an output folder's existing checkpoint -- the one an output replaces -- is made of.

    ``name``: how messages name it (its index or its single file), None when the folder
    holds no such checkpoint; ``files``: the entries it owns; ``others``: every name
    another checkpoint of the folder names, there or not (name -> that checkpoint): never
    written, replaced or removed; ``problem``: why it cannot be replaced at all (an index
    that cannot be read).
    """

    name: str | None = None
    files: frozenset[str] = frozenset()
    others: Mapping[str, str] = field(default_factory=dict)
    problem: str | None = None


def guard_folder(
    folder: Path,
    owned: Owned,
    new: Iterable[str],
    reads: Reads,
    *,
    replace: bool,
) -> tuple[list[Path], list[str]]:
    """Check that the names ``new`` may be written into ``folder`` in place of ``owned``;
    returns (the old checkpoint's files to remove once the new one is in place, notes on
    the ones kept).  ``replace``: ``force`` or ``in_place`` was given."""
    if owned.problem is not None:
        raise ModelError(owned.problem)
    if owned.name is not None and not replace:
        raise ModelError(
            f"{folder}: holds the checkpoint {owned.name}; pass force=True to replace it, or another output",
            cli_message=f"{folder}: holds the checkpoint {owned.name}; use --force to replace it, or -o to write elsewhere",
        )
    new = set(new)
    for name in sorted(new):
        path = folder / name
        if not os.path.lexists(path) and name not in owned.others:
            continue
        why = _not_replaceable(path, name, owned, reads)
        if why is not None:
            raise ModelError(f"{folder}: the output would replace {name} ({why}); vsconf replaces only the files of the checkpoint it writes")
    removals, notes = [], []
    for name in sorted(owned.files - new):
        path = folder / name
        if not os.path.lexists(path):
            continue
        why = _not_replaceable(path, name, owned, reads)
        if why is None:
            removals.append(path)
        else:
            notes.append(f"kept {path}: {why}")
    return removals, notes


def _not_replaceable(path: Path, name: str, owned: Owned, reads: Reads) -> str | None:
    """Why the entry ``name`` of an output folder must stay; None if it may be replaced."""
    if name in owned.others:
        return f"the checkpoint {owned.others[name]} names it"
    if name not in owned.files:
        return "not part of the checkpoint it replaces"
    what = reads.what(path) if not os.path.islink(path) else None
    if what is not None:
        return f"it is {what}"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None  # gone meanwhile: nothing to keep
    except OSError as exc:
        return f"cannot look at it: {describe_os_error(exc)}"
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        return "not a regular file"
    return None


class FolderStep:
    """A checkpoint written into a folder, as one step of a :class:`~vsconf.files.Transaction`.

    When the folder does not exist, the checkpoint is built in a temporary sibling folder
    that becomes the folder with one no-replace rename.  When it exists, each file is
    staged as a temporary inside it, and committing renames them onto their names --
    replacing only files ``guard()`` says the old checkpoint owns -- then removes the old
    checkpoint's other files.  ``guard()`` (the same check as before the work) runs again
    while the folder is locked, so a checkpoint another run committed meanwhile is
    treated exactly as one that was there from the start.
    """

    def __init__(self, folder: Path, guard: Callable[[Iterable[str]], tuple[list[Path], list[str]]]):
        self.folder = Path(folder)
        self._guard = guard
        self._inside = os.path.isdir(self.folder) and not os.path.islink(self.folder)
        self._temp_folder = None if self._inside else temporary_folder(self.folder)
        self._members: list[tuple[Path, str]] = []
        self._whole = False
        self._removals: list[Path] = []
        self._installed: set[Path] = set()
        # What the commit kept of the old checkpoint, and why.
        self.notes: list[str] = []

    @property
    def names(self) -> list[str]:
        return [name for _, name in self._members]

    def stage(self, name: str) -> Path:
        """An empty temporary file that becomes ``folder/name`` (stage the index last)."""
        if self._temp_folder is not None:
            path = self._temp_folder / name
            path.touch()
        else:
            path = temporary_file(self.folder / name)
        self._members.append((path, name))
        return path

    def folders(self) -> list[Path]:
        return [parent_folder(self.folder), self.folder]

    def targets(self) -> list[Path]:
        return [self.folder / name for _, name in self._members]

    def sync(self) -> None:
        try:
            for path, name in self._members:
                fsync_path(path)
                copy_mode(path, self.folder / name)
            if self._temp_folder is not None:
                copy_mode(self._temp_folder, self.folder, folder=True)
                fsync_directory(self._temp_folder)
        except OSError as exc:
            raise ModelError(f"{self.folder}: cannot write: {describe_os_error(exc)}") from None

    def check(self) -> None:
        if not os.path.lexists(self.folder):
            if self._temp_folder is None:
                raise ModelError(f"{self.folder}: the output folder was removed while vsconf worked")
            self._whole = True
            return
        if os.path.islink(self.folder) or not os.path.isdir(self.folder):
            raise ModelError(f"{self.folder}: cannot write the output folder: it exists and is not a folder")
        self._whole = False
        self._removals, self.notes = self._guard(self.names)

    def install(self) -> list[Path]:
        try:
            if self._whole:
                try:
                    rename_new(self._temp_folder, self.folder)
                except FileExistsError:
                    raise appeared(self.folder) from None
                self._temp_folder = None
                self._installed = {path for path, _ in self._members}
                return []
            for path, name in self._members:
                target = self.folder / name
                if os.path.lexists(target):  # the guard found it the old checkpoint's own
                    os.replace(path, target)
                else:
                    try:
                        rename_new(path, target)
                    except FileExistsError:
                        raise appeared(target) from None
                self._installed.add(path)
            if self._temp_folder is not None:
                os.rmdir(self._temp_folder)
                self._temp_folder = None
        except OSError as exc:
            raise ModelError(f"{self.folder}: cannot write: {describe_os_error(exc)}") from None
        return self._removals

    def abort(self) -> None:
        for path, _ in self._members:
            if path not in self._installed:
                with contextlib.suppress(OSError):
                    path.unlink()
        if self._temp_folder is not None:
            shutil.rmtree(self._temp_folder, ignore_errors=True)  # a folder this step made
            self._temp_folder = None
