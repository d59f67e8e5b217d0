"""Section 1: fill rate of vsconf's streams vs ``torch.nn.init`` vs a plain NumPy Generator."""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
from measure import best_of

from vsconf import streams

STD = 0.02
LIMIT = math.sqrt(3.0) * STD
# vsconf's stream kind -> the torch.nn.init functions drawing that distribution (the first is
# the one the ratio is taken against) and the plain NumPy Generator method, if any.
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "truncated_normal": (("trunc_normal_",), None),
    "untruncated_normal": (("normal_", "kaiming_normal_"), "standard_normal"),
    "uniform": (("uniform_", "kaiming_uniform_"), "random"),
}
_PARAM = {"truncated_normal": STD, "untruncated_normal": STD, "uniform": LIMIT}


def job_counts(cpus: int) -> list[int]:
    """1, 2, 4, ... below ``cpus``, and ``cpus`` itself."""
    counts = [1 << i for i in range(cpus.bit_length()) if 1 << i < cpus]
    return counts + [cpus]


def _torch_fills(torch: Any) -> dict[str, Callable[[Any], Any]]:
    init = torch.nn.init
    return {
        "trunc_normal_": lambda t: init.trunc_normal_(t, std=STD, a=-2 * STD, b=2 * STD),
        "normal_": lambda t: init.normal_(t, std=STD),
        "kaiming_normal_": lambda t: init.kaiming_normal_(t),
        "uniform_": lambda t: init.uniform_(t, -LIMIT, LIMIT),
        "kaiming_uniform_": lambda t: init.kaiming_uniform_(t),
    }


def _rate(elements: int, seconds: float) -> float:
    return elements / seconds / 1e6


# Normals are what stream 2 changes: its rates are measured beside the default stream's.
STREAM_2_KINDS = ("truncated_normal", "untruncated_normal")


def _vsconf_rates(
    shape: tuple[int, ...], jobs_list: Sequence[int], repeats: int, log, *, stream: int = streams.DEFAULT_STREAM, kinds=DISTRIBUTIONS
) -> tuple[dict, dict]:
    """M elements/s per kind and jobs, and whether every jobs value gave the same bytes.

    Drawn into one array made (and touched) beforehand, as torch fills its tensor in place
    and as a writer's task draws into its reused buffer: a fresh array each time would time
    the kernel's page faults too."""
    elements = math.prod(shape)
    out = np.zeros(elements, np.float32)
    key = streams.stream_key(1, "bench.weight")
    rates: dict[str, dict[int, float]] = {}
    identical: dict[str, bool] = {}
    for kind in kinds:
        rates[kind], digests = {}, set()
        for jobs in jobs_list:
            log(f"fill: vsconf stream {stream} {kind}, jobs={jobs}")
            draw = partial(streams.draw_flat, key, elements, 0, elements, np.float32, kind, _PARAM[kind], jobs=jobs, out=out, stream=stream)
            seconds, values = best_of(repeats, draw)
            rates[kind][jobs] = _rate(elements, seconds)
            digests.add(hashlib.sha256(values.data).hexdigest())
        identical[kind] = len(digests) == 1
    return rates, identical


def _process_rates(shape: tuple[int, ...], jobs: int, repeats: int, log, scratch: str) -> dict[str, Any]:
    """M elements/s of the normals drawn by a pool of ``jobs`` processes (stream 1 and 2), as
    ``apply`` draws them: Fill tasks of 64 MiB written into a preallocated file in memory
    (``/dev/shm`` where there is one).  The pool is started first and runs one tiny task a
    worker (a pool starts no more processes than it has tasks): ``start_s``, what each run
    pays once (fresh interpreters importing vsconf and NumPy, and this script's main
    module).  The same warm pool then draws: the rates are the drawing's alone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from vsconf import tasks
    from vsconf.draw import Draw
    from vsconf.files import preallocate

    elements = math.prod(shape)
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else scratch
    path = os.path.join(folder, f"vsconf-fill-{os.getpid()}.bin")
    open(path, "wb").close()
    rates: dict[str, dict[str, float]] = {}
    context = multiprocessing.get_context("spawn")
    try:
        preallocate(path, elements * 4)
        tiny = [tasks.Task((tasks.Fill("tiny", Draw("uniform", 1.0, 1, 2, "float32", 1), 0, 1, path, 4 * k),)) for k in range(jobs)]
        log(f"fill: starting a pool of {jobs} processes, one tiny task each")
        started = time.perf_counter()
        pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=tasks.die_with, initargs=(os.getpid(),))
        with pool:
            list(pool.map(tasks.run_task, tiny))
            start_s = time.perf_counter() - started
            for stream in (1, 2):
                for kind in STREAM_2_KINDS:
                    log(f"fill: vsconf stream {stream} {kind}, {jobs} processes")
                    draw = Draw(kind, _PARAM[kind], 1, stream, "float32", elements)
                    work = tasks.split([tasks.Fill("bench.weight", draw, 0, elements, path, 0)], tasks.DEFAULT_TASK_BYTES)
                    seconds, _ = best_of(repeats, lambda: list(pool.map(tasks.run_task, work)))
                    rates.setdefault(f"stream{stream}", {})[kind] = _rate(elements, seconds)
    finally:
        os.remove(path)
    return {"start_s": start_s, "rates": rates}


def _torch_rates(torch: Any, shape: tuple[int, ...], jobs_list: Sequence[int], repeats: int, log) -> dict[str, dict[int, float]]:
    elements = math.prod(shape)
    tensor = torch.empty(shape, dtype=torch.float32)
    rates: dict[str, dict[int, float]] = {}
    default_threads = torch.get_num_threads()
    try:
        for name, fill in _torch_fills(torch).items():
            rates[name] = {}
            for jobs in jobs_list:
                log(f"fill: torch {name}, threads={jobs}")
                torch.set_num_threads(jobs)
                seconds, _ = best_of(repeats, partial(fill, tensor))
                rates[name][jobs] = _rate(elements, seconds)
    finally:
        torch.set_num_threads(default_threads)
    return rates


def _numpy_rates(shape: tuple[int, ...], repeats: int, log) -> dict[str, float]:
    """One thread: a Generator has no threads of its own."""
    elements = math.prod(shape)
    rng = np.random.default_rng(1)
    rates = {}
    for method in ("standard_normal", "random"):
        log(f"fill: numpy Generator.{method}")
        seconds, _ = best_of(repeats, partial(getattr(rng, method), shape, dtype=np.float32))
        rates[method] = _rate(elements, seconds)
    return rates


def run(shape: tuple[int, ...], repeats: int, torch: Any, log, scratch: str = "/tmp") -> dict[str, Any]:
    """Every rate (M elements/s) and the ratios the targets need."""
    cpus = os.cpu_count() or 1
    jobs_list = job_counts(cpus)
    vsconf_rates, identical = _vsconf_rates(shape, jobs_list, repeats, log)
    stream_2_rates, _ = _vsconf_rates(shape, jobs_list, repeats, log, stream=2, kinds=STREAM_2_KINDS)
    pool = _process_rates(shape, cpus, repeats, log, scratch)
    process_rates = pool["rates"]
    torch_rates = _torch_rates(torch, shape, jobs_list, repeats, log) if torch is not None else None
    numpy_rates = _numpy_rates(shape, repeats, log)
    efficiency = {kind: {j: rates[j] / (j * rates[1]) for j in jobs_list} for kind, rates in vsconf_rates.items()}
    vs_torch = processes_vs_torch = None
    if torch_rates is not None:
        vs_torch = {
            kind: {j: vsconf_rates[kind][j] / torch_rates[torch_names[0]][j] for j in jobs_list}
            for kind, (torch_names, _) in DISTRIBUTIONS.items()
        }
        processes_vs_torch = {
            stream: {kind: rate / torch_rates[DISTRIBUTIONS[kind][0][0]][cpus] for kind, rate in by_kind.items()}
            for stream, by_kind in process_rates.items()
        }
    # a pool of `cpus` processes against `cpus` times one thread of the same stream
    one_thread = {"stream1": vsconf_rates, "stream2": stream_2_rates}
    processes_efficiency = {
        stream: {kind: rate / (cpus * one_thread[stream][kind][1]) for kind, rate in by_kind.items()}
        for stream, by_kind in process_rates.items()
    }
    return {
        "shape": list(shape),
        "elements": math.prod(shape),
        "dtype": "float32",
        "repeats": repeats,
        "jobs": jobs_list,
        "default_jobs": cpus,
        "stream": streams.DEFAULT_STREAM,
        "vsconf": vsconf_rates,
        "vsconf_stream_2": stream_2_rates,
        "vsconf_identical_across_jobs": identical,
        "torch": torch_rates,
        "numpy_1_thread": numpy_rates,
        "vsconf_over_torch": vs_torch,
        "vsconf_scaling_efficiency": efficiency,
        "processes": {
            "jobs": cpus, "start_s": pool["start_s"], "rates": process_rates, "over_torch": processes_vs_torch,
            "efficiency": processes_efficiency,
        },
    }


def figures(result: dict[str, Any]) -> dict[str, float]:
    """The flat figures the targets read: ``fill.vs_torch.<kind>.jobs<j>``, ``fill.efficiency.<kind>.jobs<j>``."""
    out = {}
    for kind, by_jobs in result["vsconf_scaling_efficiency"].items():
        out.update({f"fill.efficiency.{kind}.jobs{j}": value for j, value in by_jobs.items()})
    for kind, by_jobs in (result["vsconf_over_torch"] or {}).items():
        out.update({f"fill.vs_torch.{kind}.jobs{j}": value for j, value in by_jobs.items()})
    processes = result["processes"]
    for stream, by_kind in (processes["over_torch"] or {}).items():
        out.update({f"fill.processes_vs_torch.{stream}.{kind}": value for kind, value in by_kind.items()})
    for stream, by_kind in processes["efficiency"].items():
        out.update({f"fill.processes_efficiency.{stream}.{kind}": value for kind, value in by_kind.items()})
    return out


def tables(result: dict[str, Any]) -> list[tuple[str, Sequence[str], list[Sequence[str]]]]:
    """(title, header, rows) of the rates and of the ratios."""
    jobs_list, default = result["jobs"], result["default_jobs"]
    header = ["M elements/s"] + [f"jobs={j}" + (" (default)" if j == default else "") for j in jobs_list]
    rows = []
    for kind, (torch_names, numpy_method) in DISTRIBUTIONS.items():
        rows.append([f"vsconf {kind}"] + [f"{result['vsconf'][kind][j]:.0f}" for j in jobs_list])
        if kind in result.get("vsconf_stream_2", {}):
            rows.append([f"  vsconf stream 2 {kind}"] + [f"{result['vsconf_stream_2'][kind][j]:.0f}" for j in jobs_list])
        if result["torch"] is not None:
            for name in torch_names:
                rows.append([f"  torch {name}"] + [f"{result['torch'][name][j]:.0f}" for j in jobs_list])
        if numpy_method is not None:
            numpy_rate = f"{result['numpy_1_thread'][numpy_method]:.0f}"
            rows.append([f"  numpy {numpy_method} (1 thread)", numpy_rate] + ["-"] * (len(jobs_list) - 1))
    shape = "x".join(map(str, result["shape"]))
    title = f"fill rate, float32, {result['elements']:,} elements ({shape}), best of {result['repeats']}"
    if result["torch"] is None:
        title += " -- torch not importable: its rows are skipped"
    over_torch, efficiency = result["vsconf_over_torch"], result["vsconf_scaling_efficiency"]
    ratio_rows = []
    for kind, (torch_names, _) in DISTRIBUTIONS.items():
        if over_torch is not None:
            ratio_rows.append([f"vsconf / torch {torch_names[0]}"] + [f"{over_torch[kind][j]:.2f}" for j in jobs_list])
        ratio_rows.append([f"vsconf {kind} scaling efficiency"] + [f"{efficiency[kind][j]:.0%}" for j in jobs_list])
    same = ", ".join(f"{kind} {'identical' if ok else 'DIFFERENT'}" for kind, ok in result["vsconf_identical_across_jobs"].items())
    ratio_title = f"fill ratios (efficiency = rate at j / (j x rate at 1)); vsconf sha256 across jobs {jobs_list}:\n{same}"
    processes = result["processes"]
    process_rows = []
    for stream, by_kind in processes["rates"].items():
        for kind, rate in by_kind.items():
            over = processes["over_torch"][stream][kind] if processes["over_torch"] else None
            process_rows.append([
                f"vsconf {stream} {kind}", f"{rate:.0f}", "-" if over is None else f"{over:.2f}",
                f"{processes['efficiency'][stream][kind]:.0%}",
            ])
    process_title = (
        f"normals drawn by a warm pool of {processes['jobs']} processes (64 MiB Fill tasks into memory; the pool's "
        f"start, {processes['start_s']:.2f} s, paid before)"
    )
    process_header = ["M elements/s", "rate", f"/ torch, {processes['jobs']} threads", "/ (jobs x 1 thread)"]
    return [(title, header, rows), (ratio_title, ["ratio"] + header[1:], ratio_rows), (process_title, process_header, process_rows)]
