"""The targets of issue 9, as data, checked against the figures of one run."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

KINDS = ("truncated_normal", "untruncated_normal", "uniform")
_TORCH = {"truncated_normal": "trunc_normal_", "untruncated_normal": "normal_", "uniform": "uniform_"}
_COMPARE = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Target:
    figure: str  # a key of the run's flat figures
    text: str
    op: str  # "<=" or ">="
    limit: float
    cores: int | None = None  # the machine size the issue sets it for, if any


TARGETS = (
    Target("inline.apply_over_hand", "1 GB inline apply wall / hand script", "<=", 0.2, cores=2),
    Target("inline.apply_over_cp", "1 GB inline apply wall (default schedule) / cp", "<=", 4.0, cores=2),
    Target("inline.best_over_cp", "1 GB inline apply wall, best schedule / cp (issue 24)", "<=", 4.0, cores=2),
    Target(
        "inline.best_over_durable_cp", "1 GB inline apply, best schedule / (cp, then fsync: what apply makes durable)", "<=", 4.0, cores=2,
    ),
    Target("inline.apply_rss_over_file", "1 GB inline apply peak RSS / file size", "<=", 0.3, cores=2),
    Target("inline.plan_wall_s", "1 GB inline plan wall, s", "<=", 0.5),
    Target("inline.plan_rss_mb", "1 GB inline plan peak RSS, MB", "<=", 150),
    Target("inline.inspect_wall_s", "1 GB inline inspect wall, s", "<=", 0.5),
    Target("inline.inspect_rss_mb", "1 GB inline inspect peak RSS, MB", "<=", 150),
    Target("inline.verify_over_apply", "1 GB inline verify wall / apply wall", "<=", 1.5),
    Target("startup.validate_s", "vsconf validate start-up, s (issue 19)", "<=", 0.5),
    Target("startup.plan_s", "vsconf plan of the 5 KB example start-up, s (issue 19)", "<=", 0.5),
    Target("external.apply_rss_over_data", ">=4 GB external apply peak RSS / data size", "<=", 0.1),
    Target("external.apply_over_fill", ">=4 GB external apply wall / fill alone (its best schedule; issue 24)", "<=", 1.2),
    Target(
        "external.best_apply_over_io_floor", ">=4 GB external apply, best schedule / max(fill alone, writing the data + fsync)",
        "<=", 1.2,
    ),
    Target("seed.threads_over_fill", "8 GB seed checkpoint, threads: wall / fill-only", "<=", 1.3, cores=2),
    Target("seed.dask2_over_fill", "8 GB seed checkpoint, 2 Dask workers: wall / fill-only", "<=", 1.3, cores=2),
    Target("seed.threads_peak_rss_mb", "8 GB seed checkpoint, threads: peak RSS, MB", "<=", 500),
    Target("seed.dask2_peak_rss_mb", "8 GB seed checkpoint, 2 Dask workers: largest process RSS, MB", "<=", 500),
    *(
        Target(f"fill.vs_torch.{kind}.jobs2", f"fill {kind} / torch {_TORCH[kind]}, 2 jobs", ">=", limit, cores=2)
        for kind, limit in zip(KINDS, (1.5, 0.85, 1.5))
    ),
    Target(
        "fill.processes_vs_torch.stream2.untruncated_normal", "fill stream 2 normal, 2 processes / torch normal_, 2 threads (issue 24)",
        ">=", 1.0, cores=2,
    ),
    Target(
        "fill.processes_efficiency.stream1.untruncated_normal", "fill stream 1 normal, processes / (cores x its 1-thread rate) (issue 24)",
        ">=", 0.9, cores=2,
    ),
    *(
        Target(f"fill.vs_torch.{kind}.jobs16", f"fill {kind} / torch {_TORCH[kind]}, 16 jobs", ">=", 2.0, cores=16)
        for kind in KINDS
    ),
    *(
        Target(f"fill.efficiency.{kind}.jobs16", f"fill {kind} scaling efficiency, 16 jobs vs 1", ">=", 0.6, cores=16)
        for kind in KINDS
    ),
)


def check(figures: dict[str, float], cpus: int, quick: bool) -> list[dict[str, Any]]:
    """Each target with its measured figure and PASS, MISS, or n/a (not measured in this run)."""
    out = []
    for target in TARGETS:
        measured = figures.get(target.figure)
        status = "n/a" if measured is None else ("PASS" if _COMPARE[target.op](measured, target.limit) else "MISS")
        notes = []
        if target.cores is not None and target.cores != cpus:
            notes.append(f"set for {target.cores} cores, run on {cpus}")
        if quick:
            notes.append("--quick sizes")
        out.append({**target.__dict__, "measured": measured, "status": status, "note": "; ".join(notes)})
    return out


def _shown(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(checked: list[dict[str, Any]]) -> tuple[str, list[str], list[list[str]]]:
    rows = [
        [c["text"], _shown(c["measured"]), f"{c['op']} {c['limit']:g}", c["status"], c["note"]]
        for c in checked
    ]
    return "issue 9 targets", ["target", "measured", "target", "status", "note"], rows
