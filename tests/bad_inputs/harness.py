"""The hostile-input corpus: each case is a folder of files, a ``vsconf`` command run in it,
and what must come out -- exit code and the exact message -- with the invariants every
case shares checked by :func:`run_case`:

* no traceback, and the run ends in under ``TIME_LIMIT`` seconds under an address-space
  limit of ``MEMORY_LIMIT`` bytes;
* every file that was in the folder has the same bytes after the run (unless the case
  lists it in ``changed``), and no file appears that the case does not list in ``created``
  (so temporary files left behind fail the case).

``stderr`` is compared exactly, after replacing ``{dir}`` with the case folder's absolute
path.  Cases live in ``cases_*.py`` beside this file, each module exporting ``CASES``.
"""

from __future__ import annotations

import hashlib
import os
import resource
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TIME_LIMIT = 5.0
MEMORY_LIMIT = 1 << 30

Build = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One hostile input and the answer vsconf must give.

    ``files``: name -> contents (str is written as UTF-8) created in the case folder;
    ``build``: a function that makes anything else there (FIFOs, symlinks, big files).
    ``argv``: the arguments after ``vsconf``; the command runs in the case folder.
    """

    id: str
    argv: tuple[str, ...]
    rc: int
    stderr: str
    files: Mapping[str, bytes | str] = field(default_factory=dict)
    build: Build | None = None
    stdout: str | None = None  # exact, when given
    created: frozenset[str] = frozenset()  # files the run may leave (a successful run's output)
    changed: frozenset[str] = frozenset()  # files the run may rewrite (--force, --in-place)
    removed: frozenset[str] = frozenset()  # files the run may delete (vsconf's own old data files)
    outside: Mapping[str, bytes | str] = field(default_factory=dict)  # files in the parent folder, guarded too


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (not following links): its kind and, for files, a digest."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                state[key] = "link:" + os.readlink(path)
            elif stat.S_ISREG(mode):
                state[key] = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISDIR(mode):
                state[key] = "dir"
            else:
                state[key] = "special"
    return state


def prepare(case: Case, base: Path) -> Path:
    """Lay out the case: ``base/outside files`` and ``base/case/<files>``; returns the case folder."""
    folder = base / "case"
    folder.mkdir()
    for name, content in case.outside.items():
        (base / name).write_bytes(content.encode() if isinstance(content, str) else content)
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    if case.build is not None:
        case.build(folder)
    return folder


def run_case(case: Case, base: Path) -> None:
    folder = prepare(case, base)
    before = snapshot(base)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSCONF_")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "vsconf", *case.argv],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIME_LIMIT * 6,
        preexec_fn=_limit_memory,
        env=env,
    )
    elapsed = time.monotonic() - started
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    after = snapshot(base)
    where = f"case {case.id}: vsconf {' '.join(case.argv)}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr, where
    assert elapsed < TIME_LIMIT, f"{where}\ntook {elapsed:.1f} s"
    assert stderr == case.stderr.replace("{dir}", str(folder)), where
    assert proc.returncode == case.rc, where
    if case.stdout is not None:
        assert stdout == case.stdout.replace("{dir}", str(folder)), where
    allowed_changes = {f"case/{n}" for n in case.changed | case.removed}
    for key, state in before.items():
        if key in allowed_changes:
            continue
        assert after.get(key) == state, f"{where}\n{key} was changed or removed"
    for key in case.removed:
        assert f"case/{key}" not in after, f"{where}\n{key} should have been removed"
    new = set(after) - set(before)
    allowed = {f"case/{n}" for n in case.created}
    assert new <= allowed, f"{where}\nnew files: {sorted(new - allowed)}"
