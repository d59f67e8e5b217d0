"""Timing helpers: best-of-N in-process timing, whole-process wall time and peak RSS, machine facts."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def best_of(repeats: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest of ``repeats`` timings of ``work()`` in seconds, and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeats):
        result = None  # let the previous result go before the next one is made
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


@dataclass(frozen=True)
class ProcessRun:
    wall_s: float
    peak_rss_bytes: int

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall_s, "peak_rss_bytes": self.peak_rss_bytes}


def child_env() -> dict[str, str]:
    """The environment of measured children: this checkout's vsconf comes first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    return env


# Spawns the command from a small, fresh interpreter: Linux carries the spawning process's
# peak RSS into the child's ru_maxrss across exec, so spawning from the benchmark itself
# (which holds hundreds of MB) would inflate every figure.  This floor is ~10 MB instead.
_LAUNCHER = """
import os, sys, time
log, argv = sys.argv[1], sys.argv[2:]
actions = [
    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    (os.POSIX_SPAWN_DUP2, 1, 2),
]
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))  # KiB on Linux
"""


def run_process(argv: Sequence[str], log: Path) -> ProcessRun:
    """Run ``argv`` as a fresh process; its wall time and peak RSS (``wait4``'s ``ru_maxrss``).

    Dirty pages are flushed first (``os.sync``, not timed), so that writeback left over
    from earlier work does not land on this run.  stdout and stderr go to ``log``; a
    non-zero exit raises with the log's tail.
    """
    os.sync()
    argv = [str(arg) for arg in argv]
    launcher = [sys.executable, "-c", _LAUNCHER, str(log), *argv]
    done = subprocess.run(launcher, env=child_env(), capture_output=True, text=True, check=True)
    wall, rss, code = done.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {code}:\n{log.read_text(errors='replace')[-3000:]}")
    return ProcessRun(float(wall), int(rss))


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info(torch: Any) -> dict[str, Any]:
    import numpy
    import onnx

    import vsconf

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg()[0],  # other work on the machine skews every figure
        "cpu_model": _cpu_model(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "onnx": onnx.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "torch_default_threads": torch.get_num_threads() if torch is not None else None,
        "vsconf": vsconf.__version__,
        "vsconf_path": str(Path(vsconf.__file__).parent),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }
