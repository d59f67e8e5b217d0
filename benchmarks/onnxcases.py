"""Sections 2 and 3: whole-process runs on an inline and an external-data ONNX model."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxfiles
from measure import ProcessRun, run_process

from vsconf import streams

MB = 1e6


def _vsconf(*args: Any) -> list[str]:
    return [sys.executable, "-m", "vsconf", *map(str, args)]


class _Runner:
    """Runs commands in ``folder``, keeping each run's log there, and collects the runs by label."""

    def __init__(self, folder: Path, log):
        self.folder = folder
        self.log = log
        self.runs: dict[str, ProcessRun] = {}

    def __call__(self, label: str, argv: list[str]) -> ProcessRun:
        self.log(f"{label}: {' '.join(map(str, argv))}")
        name = "".join(c if c.isalnum() else "-" for c in label)
        self.runs[label] = run_process(argv, self.folder / f"{name}.log")
        return self.runs[label]


def _row(label: str, run: ProcessRun, size: int) -> list[str]:
    return [label, f"{run.wall_s:.2f}", f"{run.peak_rss_bytes / MB:.0f}", f"{run.peak_rss_bytes / size:.2f}"]


# --------------------------------------------------------------------------- inline


def _durable_copy(source: Path, target: Path) -> list[str]:
    """``cp`` as apply writes: the copy made durable (fsync) before the process ends --
    apply fsyncs its output before renaming it into place, and ``cp`` alone leaves the
    bytes in the page cache."""
    code = "import os, shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2]); fd = os.open(sys.argv[2], os.O_RDONLY); os.fsync(fd)"
    return [sys.executable, "-c", code, str(source), str(target)]


def _write_floor(target: Path, size: int) -> list[str]:
    """A process that writes ``size`` bytes (64 MiB of random bytes over and over) to
    ``target`` and fsyncs it: the I/O an apply that replaces every tensor cannot avoid."""
    code = (
        "import os, sys; size = int(sys.argv[2]); block = os.urandom(64 << 20)\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
        "done = 0\n"
        "while done < size:\n"
        "    done += os.write(fd, memoryview(block)[: min(len(block), size - done)])\n"
        "os.fsync(fd)"
    )
    return [sys.executable, "-c", code, str(target), str(size)]


def inline(folder: Path, count: int, dim: int, log) -> dict[str, Any]:
    """apply (default jobs and --jobs 1), the hand script, cp, plan, inspect, verify."""
    model, spec, hand = folder / "inline.onnx", folder / "spec.yaml", folder / "hand.py"
    log(f"inline: writing {count} x [{dim},{dim}] float32 to {model}")
    onnxfiles.write_inline_model(model, count, dim)
    spec.write_text(onnxfiles.SPEC)
    hand.write_text(onnxfiles.HAND_SCRIPT)
    size = model.stat().st_size
    out, out1, other = folder / "inline.out.onnx", folder / "inline.jobs1.onnx", folder / "inline.other.onnx"
    run = _Runner(folder, log)
    run("cp", ["cp", model, other])
    other.unlink()
    run("cp, then fsync", _durable_copy(model, other))
    other.unlink()
    run("vsconf apply", _vsconf("apply", model, spec, "-o", out, "--force", "--quiet"))
    for scheduler in ("threads", "processes"):
        run(f"vsconf apply --scheduler {scheduler}", _vsconf("apply", model, spec, "-o", out1, "--force", "--quiet", "--scheduler", scheduler))
        onnxfiles.remove_model(out1)
    run("vsconf apply --jobs 1", _vsconf("apply", model, spec, "-o", out1, "--force", "--quiet", "--jobs", 1))
    log("inline: digests of both outputs")
    same = onnxfiles.tensor_digests(out) == onnxfiles.tensor_digests(out1)
    onnxfiles.remove_model(out1)
    run("hand script", [sys.executable, hand, model, other])
    other.unlink()
    run("vsconf plan", _vsconf("plan", model, spec))
    run("vsconf inspect", _vsconf("inspect", model))
    run("vsconf verify", _vsconf("verify", out, spec))
    for path in (model, out):
        onnxfiles.remove_model(path)
    runs = run.runs
    apply = runs["vsconf apply"]
    best = min(runs[label].wall_s for label in ("vsconf apply", "vsconf apply --scheduler threads", "vsconf apply --scheduler processes"))
    return {
        "model": {"weights": count, "shape": [dim, dim], "file_bytes": size},
        "runs": {label: r.as_dict() for label, r in runs.items()},
        "digest_jobs1_equals_default": same,
        "ratios": {
            "apply_over_hand": apply.wall_s / runs["hand script"].wall_s,
            "apply_over_cp": apply.wall_s / runs["cp"].wall_s,
            "best_over_cp": best / runs["cp"].wall_s,
            "best_over_durable_cp": best / runs["cp, then fsync"].wall_s,
            "threads_over_processes": runs["vsconf apply --scheduler threads"].wall_s / runs["vsconf apply --scheduler processes"].wall_s,
            "apply_rss_over_file": apply.peak_rss_bytes / size,
            "verify_over_apply": runs["vsconf verify"].wall_s / apply.wall_s,
            "apply_jobs1_over_default": runs["vsconf apply --jobs 1"].wall_s / apply.wall_s,
        },
    }


def inline_figures(result: dict[str, Any]) -> dict[str, float]:
    runs = result["runs"]
    out = {f"inline.{key}": value for key, value in result["ratios"].items()}
    for command in ("plan", "inspect"):
        out[f"inline.{command}_wall_s"] = runs[f"vsconf {command}"]["wall_s"]
        out[f"inline.{command}_rss_mb"] = runs[f"vsconf {command}"]["peak_rss_bytes"] / MB
    return out


def inline_table(result: dict[str, Any], cpus: int) -> tuple[str, list[str], list[list[str]]]:
    size = result["model"]["file_bytes"]
    rows = [_row(label, ProcessRun(**run), size) for label, run in result["runs"].items()]
    r = result["ratios"]
    title = (
        f"inline ONNX, {result['model']['weights']} MatMul weights {result['model']['shape']} float32, "
        f"{size / 1e9:.2f} GB file, He normal, whole processes on {cpus} CPUs (apply: default jobs)\n"
        f"apply/hand {r['apply_over_hand']:.2f}  apply/cp {r['apply_over_cp']:.2f} (best schedule {r['best_over_cp']:.2f}; "
        f"/ cp then fsync {r['best_over_durable_cp']:.2f})  "
        f"threads/processes {r['threads_over_processes']:.2f}  "
        f"apply RSS/file {r['apply_rss_over_file']:.2f}  verify/apply {r['verify_over_apply']:.2f}  "
        f"apply jobs1/default {r['apply_jobs1_over_default']:.2f}  "
        f"output digest --jobs 1 vs default: {'identical' if result['digest_jobs1_equals_default'] else 'DIFFERENT'}"
    )
    return title, ["command", "wall s", "peak RSS MB", "RSS/file"], rows


# --------------------------------------------------------------------------- external


def _fill_only(count: int, dim: int, jobs: int, expected: dict[str, str]) -> tuple[float, bool]:
    """Seconds spent in ``streams.draw`` for every weight at ``jobs`` (results discarded after
    hashing, which is not timed), and whether the hashes equal ``expected``."""
    seconds, same = 0.0, True
    param = onnxfiles.he_param(dim)
    values = np.zeros(dim * dim, np.float32)  # one array, touched before: a writer's buffers are reused too
    for name in onnxfiles.weight_names(count):
        key = streams.stream_key(onnxfiles.SEED, name)
        start = time.perf_counter()
        streams.draw_flat(key, dim * dim, 0, dim * dim, np.float32, "truncated_normal", param, jobs=jobs, out=values)
        seconds += time.perf_counter() - start
        same &= hashlib.sha256(values.data).hexdigest() == expected.get(name)
    return seconds, same


def _fill_only_processes(count: int, dim: int, jobs: int, scratch: str) -> float:
    """Seconds for a pool of ``jobs`` processes to draw every weight (the apply's 64 MiB Fill
    tasks, one pool for all), into one tensor-sized file in memory that each weight
    overwrites: drawing alone, the pool's start included."""
    from vsconf import schedule, tasks
    from vsconf.draw import Draw
    from vsconf.files import preallocate

    folder = "/dev/shm" if os.path.isdir("/dev/shm") else scratch
    path = os.path.join(folder, f"vsconf-fill-{os.getpid()}.bin")
    open(path, "wb").close()
    try:
        preallocate(path, dim * dim * 4)
        param = onnxfiles.he_param(dim)
        pieces = [
            tasks.Fill(name, Draw("truncated_normal", param, streams.stream_key(onnxfiles.SEED, name), streams.DEFAULT_STREAM, "float32", dim * dim), 0, dim * dim, path, 0)
            for name in onnxfiles.weight_names(count)
        ]
        start = time.perf_counter()
        schedule.run(tasks.split(pieces, tasks.DEFAULT_TASK_BYTES), schedule.Scheduler("processes", jobs))
        return time.perf_counter() - start
    finally:
        os.remove(path)


def external(folder: Path, count: int, dim: int, log) -> dict[str, Any]:
    """apply (default jobs and --jobs 1), plan, verify, and the fill-only time at the default jobs."""
    model, spec, data_name = folder / "external.onnx", folder / "spec.yaml", "external.data"
    log(f"external: writing {count} x [{dim},{dim}] float32 to {folder / data_name}")
    onnxfiles.write_external_model(model, data_name, count, dim)
    spec.write_text(onnxfiles.SPEC)
    data_size = (folder / data_name).stat().st_size
    out, out1 = folder / "external.out.onnx", folder / "external.jobs1.onnx"
    run = _Runner(folder, log)
    run("vsconf apply", _vsconf("apply", model, spec, "-o", out, "--force", "--quiet"))
    for scheduler in ("threads", "processes"):
        run(f"vsconf apply --scheduler {scheduler}", _vsconf("apply", model, spec, "-o", out1, "--force", "--quiet", "--scheduler", scheduler))
        onnxfiles.remove_model(out1)
    run("vsconf plan", _vsconf("plan", model, spec))
    run("vsconf verify", _vsconf("verify", out, spec))
    floor = folder / "floor.data"
    run("write the data's size, then fsync", _write_floor(floor, data_size))
    floor.unlink()
    log("external: digests of the output")
    digests = onnxfiles.tensor_digests(out)
    onnxfiles.remove_model(out)
    run("vsconf apply --jobs 1", _vsconf("apply", model, spec, "-o", out1, "--force", "--quiet", "--jobs", 1))
    same = onnxfiles.tensor_digests(out1) == digests
    onnxfiles.remove_model(out1)
    jobs = os.cpu_count() or 1
    log(f"external: fill-only, streams.draw of every weight at jobs={jobs}")
    fill_s, fill_same = _fill_only(count, dim, jobs, digests)
    log(f"external: fill-only, the same draws by a pool of {jobs} processes")
    fill_processes_s = _fill_only_processes(count, dim, jobs, str(folder))
    (folder / data_name).unlink()
    model.unlink()
    runs = run.runs
    apply = runs["vsconf apply"]
    best_apply = min(runs[label].wall_s for label in ("vsconf apply", "vsconf apply --scheduler threads", "vsconf apply --scheduler processes"))
    fill_best = min(fill_s, fill_processes_s)
    write_floor = runs["write the data's size, then fsync"].wall_s
    return {
        "model": {"weights": count, "shape": [dim, dim], "data_bytes": data_size},
        "runs": {label: r.as_dict() for label, r in runs.items()},
        "fill_only": {
            "jobs": jobs, "seconds": fill_s, "processes_seconds": fill_processes_s, "best_seconds": min(fill_s, fill_processes_s),
            "digests_equal_apply_output": fill_same,
        },
        "digest_jobs1_equals_default": same,
        "ratios": {
            "apply_rss_over_data": apply.peak_rss_bytes / data_size,
            "apply_over_fill": apply.wall_s / fill_best,
            "best_apply_over_fill": best_apply / fill_best,
            "best_apply_over_io_floor": best_apply / max(fill_best, write_floor),
            "verify_over_apply": runs["vsconf verify"].wall_s / apply.wall_s,
            "apply_jobs1_over_default": runs["vsconf apply --jobs 1"].wall_s / apply.wall_s,
        },
    }


def external_figures(result: dict[str, Any]) -> dict[str, float]:
    return {f"external.{key}": value for key, value in result["ratios"].items()}


def external_table(result: dict[str, Any], cpus: int) -> tuple[str, list[str], list[list[str]]]:
    size = result["model"]["data_bytes"]
    rows = [_row(label, ProcessRun(**run), size) for label, run in result["runs"].items()]
    fill = result["fill_only"]
    rows.append([f"fill-only in-process, jobs={fill['jobs']}", f"{fill['seconds']:.2f}", "-", "-"])
    rows.append([f"fill-only, {fill['jobs']} processes, into memory", f"{fill['processes_seconds']:.2f}", "-", "-"])
    r = result["ratios"]
    title = (
        f"external-data ONNX, {result['model']['weights']} MatMul weights {result['model']['shape']} float32, "
        f"{size / 1e9:.2f} GB data, He normal, whole processes on {cpus} CPUs (apply: default jobs)\n"
        f"apply RSS/data {r['apply_rss_over_data']:.3f}  apply/fill-only {r['apply_over_fill']:.2f} "
        f"(best schedule {r['best_apply_over_fill']:.2f}; / max(fill-only, write floor) {r['best_apply_over_io_floor']:.2f})  "
        f"verify/apply {r['verify_over_apply']:.2f}  apply jobs1/default {r['apply_jobs1_over_default']:.2f}  "
        f"output digest --jobs 1 vs default: {'identical' if result['digest_jobs1_equals_default'] else 'DIFFERENT'}  "
        f"fill-only digests vs apply output: {'identical' if fill['digests_equal_apply_output'] else 'DIFFERENT'}"
    )
    return title, ["command", "wall s", "peak RSS MB", "RSS/data"], rows
