"""Start-up: the light commands as whole processes, beside ``python -c pass`` in the same run.

Issue 19: ``vsconf validate`` and ``vsconf plan`` of a small model must start in under
0.5 s; ml_dtypes (about a second to import with 0.7), onnx and jsonschema load only when a
command needs them.  Each command runs ``repeats`` times from a fresh process (interpreter
start-up and imports included); the median and the fastest are reported, in seconds.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from measure import REPO, run_process

_EXAMPLE, _SPEC = REPO / "examples" / "small_cnn.onnx", REPO / "configs" / "pytorch_defaults.yaml"
COMMANDS = (
    ("python -c pass", [sys.executable, "-c", "pass"]),
    ("vsconf --help", [sys.executable, "-m", "vsconf", "--help"]),
    ("vsconf validate", [sys.executable, "-m", "vsconf", "validate", _SPEC]),
    ("vsconf plan (5 KB ONNX example)", [sys.executable, "-m", "vsconf", "plan", _EXAMPLE, _SPEC]),
)


def run(folder: Path, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    results = {}
    for label, argv in COMMANDS:
        log(f"start-up: {label}, {repeats} runs")
        runs = [run_process(argv, folder / "startup.log") for _ in range(repeats)]
        walls = [r.wall_s for r in runs]
        results[label] = {
            "median_s": statistics.median(walls),
            "best_s": min(walls),
            "peak_rss_bytes": max(r.peak_rss_bytes for r in runs),
            "runs_s": walls,
        }
    return results


def figures(results: dict[str, Any]) -> dict[str, float]:
    return {
        "startup.validate_s": results["vsconf validate"]["median_s"],
        "startup.plan_s": results["vsconf plan (5 KB ONNX example)"]["median_s"],
    }


def table(results: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    rows = [
        [label, f"{r['median_s']:.3f}", f"{r['best_s']:.3f}", f"{r['peak_rss_bytes'] / 1e6:.0f}"]
        for label, r in results.items()
    ]
    return "start-up (whole processes, s)", ["command", "median", "best", "peak RSS MB"], rows
