"""Section 4: a seed checkpoint created from a shapes manifest, by threads, processes and Dask."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from measure import ProcessRun, run_process

from vsconf import streams
from vsconf.initializers import sampling

MB = 1e6
SEED = 20
SPEC = f"""\
vsconf: 1
seed: {SEED}
layout: torch
rules:
  - match: "*"
    init: he_normal
"""
# (label, extra arguments of `vsconf apply`)
RUNS = (
    ("threads (default jobs)", ()),
    ("processes (default jobs)", ("--scheduler", "processes")),
    ("local Dask cluster, 2 workers", ("--dask-workers", "2")),
)


def _names(count: int) -> list[str]:
    return [f"layers.{i}.weight" for i in range(count)]


def _tensor_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every tensor's bytes, read from the shards' headers and data."""
    digests = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with open(shard, "rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(size))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                begin, end = info["data_offsets"]
                handle.seek(8 + size + begin)
                digest, left = hashlib.sha256(), end - begin
                while left:
                    chunk = handle.read(min(left, 64 << 20))
                    digest.update(chunk)
                    left -= len(chunk)
                digests[name] = digest.hexdigest()
    return digests


def _fill_only(count: int, dim: int, jobs: int, expected: dict[str, str]) -> tuple[float, bool]:
    """Seconds in ``streams.draw_flat`` for every tensor at ``jobs`` threads (hashing untimed)."""
    kind, param = sampling("truncated_normal", 2.0 / dim)
    seconds, same = 0.0, True
    total = dim * dim
    for name in _names(count):
        start = time.perf_counter()
        values = streams.draw_flat(streams.stream_key(SEED, name), total, 0, total, np.dtype(np.float32), kind, param, jobs=jobs)
        seconds += time.perf_counter() - start
        same &= hashlib.sha256(values.data).hexdigest() == expected.get(name)
        del values
    return seconds, same


def seed(folder: Path, count: int, dim: int, log) -> dict[str, Any]:
    """Each scheduler writes the checkpoint (5 GB shards), whole processes; then the fill-only time."""
    manifest, spec = folder / "seed.shapes.json", folder / "spec.yaml"
    manifest.write_text(json.dumps({"tensors": {name: {"shape": [dim, dim]} for name in _names(count)}}))
    spec.write_text(SPEC)
    size = count * dim * dim * 4
    out = folder / "seed.ckpt"
    runs: dict[str, ProcessRun] = {}
    digests: dict[str, dict[str, str]] = {}
    for label, extra in RUNS:
        argv = [sys.executable, "-m", "vsconf", "apply", manifest, spec, "-o", f"{out}/", "--quiet", *extra]
        log(f"seed: {label}: {' '.join(map(str, argv))}")
        name = "".join(c if c.isalnum() else "-" for c in label)
        runs[label] = run_process(argv, folder / f"seed-{name}.log")
        log(f"seed: {label}: {runs[label].wall_s:.1f} s; digests of the output")
        digests[label] = _tensor_digests(out)
        shutil.rmtree(out)
    jobs = os.cpu_count() or 1
    log(f"seed: fill-only, streams.draw_flat of every tensor at jobs={jobs}")
    first = digests[RUNS[0][0]]
    fill_s, fill_same = _fill_only(count, dim, jobs, first)
    manifest.unlink()
    return {
        "model": {"tensors": count, "shape": [dim, dim], "bytes": size},
        "runs": {label: r.as_dict() for label, r in runs.items()},
        "fill_only": {"jobs": jobs, "seconds": fill_s, "digests_equal_apply_output": fill_same},
        "outputs_identical": all(found == first for found in digests.values()),
        "ratios": {
            "threads_over_fill": runs[RUNS[0][0]].wall_s / fill_s,
            "processes_over_fill": runs[RUNS[1][0]].wall_s / fill_s,
            "dask2_over_fill": runs[RUNS[2][0]].wall_s / fill_s,
            "threads_peak_rss_mb": runs[RUNS[0][0]].peak_rss_bytes / MB,
            "processes_peak_rss_mb": runs[RUNS[1][0]].peak_rss_bytes / MB,
            "dask2_peak_rss_mb": runs[RUNS[2][0]].peak_rss_bytes / MB,
        },
    }


def seed_figures(result: dict[str, Any]) -> dict[str, float]:
    return {f"seed.{key}": value for key, value in result["ratios"].items()}


def seed_table(result: dict[str, Any], cpus: int) -> tuple[str, list[str], list[list[str]]]:
    size = result["model"]["bytes"]
    fill = result["fill_only"]
    rows = [
        [label, f"{run['wall_s']:.2f}", f"{run['peak_rss_bytes'] / MB:.0f}", f"{run['wall_s'] / fill['seconds']:.2f}", f"{size / run['wall_s'] / 1e9:.2f}"]
        for label, run in result["runs"].items()
    ]
    rows.append([f"fill-only in-process, jobs={fill['jobs']}", f"{fill['seconds']:.2f}", "-", "1.00", f"{size / fill['seconds'] / 1e9:.2f}"])
    title = (
        f"seed checkpoint from a manifest: {result['model']['tensors']} tensors {result['model']['shape']} float32, "
        f"{size / 1e9:.2f} GB in 5 GB shards, He normal, whole processes on {cpus} CPUs "
        "(peak RSS: the largest process, the command or one of its workers)\n"
        f"outputs of every scheduler: {'identical' if result['outputs_identical'] else 'DIFFERENT'}  "
        f"fill-only digests vs output: {'identical' if fill['digests_equal_apply_output'] else 'DIFFERENT'}"
    )
    return title, ["command", "wall s", "peak RSS MB", "wall / fill-only", "GB/s"], rows
