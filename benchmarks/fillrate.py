"""Section 1: fill rate of vsconf's streams vs ``torch.nn.init`` vs a plain NumPy Generator."""

from __future__ import annotations

import hashlib
import math
import os
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
    """M elements/s per kind and jobs, and whether every jobs value gave the same bytes."""
    elements = math.prod(shape)
    rates: dict[str, dict[int, float]] = {}
    identical: dict[str, bool] = {}
    for kind in kinds:
        rates[kind], digests = {}, set()
        for jobs in jobs_list:
            log(f"fill: vsconf stream {stream} {kind}, jobs={jobs}")
            draw = partial(streams.draw, 1, "bench.weight", shape, np.float32, kind, _PARAM[kind], jobs=jobs, stream=stream)
            seconds, values = best_of(repeats, draw)
            rates[kind][jobs] = _rate(elements, seconds)
            digests.add(hashlib.sha256(values.data).hexdigest())
            del values
        identical[kind] = len(digests) == 1
    return rates, identical


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


def run(shape: tuple[int, ...], repeats: int, torch: Any, log) -> dict[str, Any]:
    """Every rate (M elements/s) and the ratios the targets need."""
    cpus = os.cpu_count() or 1
    jobs_list = job_counts(cpus)
    vsconf_rates, identical = _vsconf_rates(shape, jobs_list, repeats, log)
    stream_2_rates, _ = _vsconf_rates(shape, jobs_list, repeats, log, stream=2, kinds=STREAM_2_KINDS)
    torch_rates = _torch_rates(torch, shape, jobs_list, repeats, log) if torch is not None else None
    numpy_rates = _numpy_rates(shape, repeats, log)
    efficiency = {kind: {j: rates[j] / (j * rates[1]) for j in jobs_list} for kind, rates in vsconf_rates.items()}
    vs_torch = None
    if torch_rates is not None:
        vs_torch = {
            kind: {j: vsconf_rates[kind][j] / torch_rates[torch_names[0]][j] for j in jobs_list}
            for kind, (torch_names, _) in DISTRIBUTIONS.items()
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
    }


def figures(result: dict[str, Any]) -> dict[str, float]:
    """The flat figures the targets read: ``fill.vs_torch.<kind>.jobs<j>``, ``fill.efficiency.<kind>.jobs<j>``."""
    out = {}
    for kind, by_jobs in result["vsconf_scaling_efficiency"].items():
        out.update({f"fill.efficiency.{kind}.jobs{j}": value for j, value in by_jobs.items()})
    for kind, by_jobs in (result["vsconf_over_torch"] or {}).items():
        out.update({f"fill.vs_torch.{kind}.jobs{j}": value for j, value in by_jobs.items()})
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
    return [(title, header, rows), (ratio_title, ["ratio"] + header[1:], ratio_rows)]
