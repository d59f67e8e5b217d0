"""vsconf's performance against the references of issue 9, side by side, from one run.

    python benchmarks/run.py [--quick] [--out FILE] [--scratch DIR] [--repeats N] [--only SECTION...]

Three sections, each building its own inputs in a scratch folder (removed at the end):

1. **fill** -- M float32 elements/s of ``vsconf.streams.draw`` (truncated normal,
   untruncated normal, uniform) for jobs = 1, 2, 4, ... and ``os.cpu_count()`` (vsconf's
   default), against ``torch.nn.init`` (``trunc_normal_``, ``normal_``, ``kaiming_normal_``,
   ``uniform_``, ``kaiming_uniform_`` on a preallocated CPU tensor, ``torch.set_num_threads``
   = jobs; skipped when torch is not importable) and a plain NumPy ``Generator`` (one
   thread).  Best of ``--repeats`` in-process timings.  vsconf's output bytes must be the
   same for every jobs value (SHA-256).
2. **inline** -- a 1 GB inline ONNX model (16 chained MatMul weights 4096x4096), spec
   ``match: "*"`` + ``he_normal``.  Whole processes, each started fresh: ``vsconf apply``
   (default jobs, and ``--jobs 1`` to compare the outputs' tensor digests), a hand-written
   ``onnx.load`` -> NumPy -> ``from_array`` -> ``onnx.save`` script, ``cp`` of the model,
   ``vsconf plan``, ``inspect`` and ``verify``.
3. **external** -- a >= 4 GB external-data model (64 weights 4096x4096 in a ``.data``
   file): ``vsconf apply`` (default jobs and ``--jobs 1``), ``plan``, ``verify``, and the
   fill-only time -- ``streams.draw`` of the same tensors at the same jobs, in-process --
   whose SHA-256s must equal the output's.

4. **seed** -- a seed checkpoint created from a shapes manifest (8.6 GB; ``--quick`` 1 GB) by
   threads, a process pool and a 2-worker local Dask cluster: wall time, peak RSS of the
   largest process, the ratio to the fill-only time, and byte-identical outputs.
5. **startup** -- ``vsconf --help``, ``validate`` and ``plan`` of the bundled 5 KB ONNX
   example as whole processes, beside ``python -c pass`` (median and best of
   ``max(--repeats, 5)`` runs).
6. **tiny** -- 200,000 float32[2] tensors (``--quick`` 20,000) as .npz, .safetensors, a
   manifest and ONNX: ``plan`` and ``apply`` wall time, peak RSS, and RSS per tensor.

Processes are timed by wall clock; peak RSS is the child's ``ru_maxrss`` from ``os.wait4``,
spawned from a small launcher process (Linux carries the spawner's peak into the child's).
Before each, ``os.sync()`` flushes earlier writes (untimed); inputs are in the page cache,
having just been written.  ``--quick`` shrinks every size (16M elements, a 256 MB inline
model, a 1 GB external model) for a smoke test.  A section is skipped, and says so, when
the scratch folder's disk lacks room for it.  The figures, the issue's targets with
PASS/MISS, and the machine (CPUs, versions, date, commit) are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this checkout's vsconf

import fillrate
import onnxcases
import seedcases
import startup
import targets
import tinycases
from measure import machine_info

SECTIONS = ("fill", "inline", "external", "seed", "startup", "tiny")
GB = 1e9
_START = time.perf_counter()


@dataclass(frozen=True)
class Sizes:
    fill_shape: tuple[int, int]
    inline: tuple[int, int]  # (weights, dim): weights of [dim, dim] float32
    external: tuple[int, int]
    seed: tuple[int, int]  # (tensors, dim) of the manifest: 8.6 GB / 1.07 GB
    tiny: int  # float32[2] tensors of the many-tiny-tensors models


FULL = Sizes(fill_shape=(8192, 8192), inline=(16, 4096), external=(64, 4096), seed=(128, 4096), tiny=200_000)
QUICK = Sizes(fill_shape=(4096, 4096), inline=(16, 2048), external=(16, 4096), seed=(16, 4096), tiny=20_000)


def _bytes(weights_and_dim: tuple[int, int]) -> int:
    weights, dim = weights_and_dim
    return weights * dim * dim * 4


def _disk_needed(section: str, sizes: Sizes) -> int:
    """Scratch bytes a section holds at once: inline keeps the model, apply's output and one more
    file; external keeps the data and apply's output."""
    if section == "inline":
        return 3 * _bytes(sizes.inline) + GB // 4
    if section == "external":
        return 2 * _bytes(sizes.external) + GB
    if section == "seed":  # one output at a time
        return _bytes(sizes.seed) + GB
    return 0


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def format_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: the first left-aligned, the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = (str(cell) for cell in cells)
        return "  ".join([first.ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(rest, widths[1:])]).rstrip()

    return "\n".join([title, line(header), *(line(row) for row in rows)])


def _print(table: tuple[str, Sequence[str], Sequence[Sequence[str]]]) -> None:
    print("\n" + format_table(*table), flush=True)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _run_sections(args: argparse.Namespace, sizes: Sizes, folder: Path, torch: Any) -> tuple[dict, dict, list[str]]:
    """Each chosen section's results, the flat figures the targets read, and what was skipped."""
    cpus = os.cpu_count() or 1
    results: dict[str, Any] = {}
    figures: dict[str, float] = {}
    skipped: list[str] = []
    for section in args.only:
        free, needed = shutil.disk_usage(folder).free, _disk_needed(section, sizes)
        if free < needed:
            skipped.append(f"{section}: needs {needed / GB:.1f} GB free in {folder}, has {free / GB:.1f} GB")
            print(f"\nskipped {skipped[-1]}", flush=True)
            continue
        if section == "fill":
            results[section] = fillrate.run(sizes.fill_shape, args.repeats, torch, _log, str(folder))
            figures.update(fillrate.figures(results[section]))
            for table in fillrate.tables(results[section]):
                _print(table)
        elif section == "inline":
            results[section] = onnxcases.inline(folder, *sizes.inline, _log)
            figures.update(onnxcases.inline_figures(results[section]))
            _print(onnxcases.inline_table(results[section], cpus))
        elif section == "external":
            results[section] = onnxcases.external(folder, *sizes.external, _log)
            figures.update(onnxcases.external_figures(results[section]))
            _print(onnxcases.external_table(results[section], cpus))
        elif section == "startup":
            results[section] = startup.run(folder, max(args.repeats, 5), _log)
            figures.update(startup.figures(results[section]))
            _print(startup.table(results[section]))
        elif section == "seed":
            results[section] = seedcases.seed(folder, *sizes.seed, _log)
            figures.update(seedcases.seed_figures(results[section]))
            _print(seedcases.seed_table(results[section], cpus))
        else:
            results[section] = tinycases.tiny(folder, sizes.tiny, _log)
            figures.update(tinycases.tiny_figures(results[section]))
            _print(tinycases.tiny_table(results[section], cpus))
    return results, figures, skipped


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", type=Path, help="JSON results (default: benchmarks/results[-quick].json)")
    parser.add_argument("--scratch", type=Path, help="folder for the inputs and outputs (default: the system's temp folder)")
    parser.add_argument("--repeats", type=int, default=3, help="fill rate: best of this many timings (default 3)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these sections")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.out is None:
        args.out = here / ("results-quick.json" if args.quick else "results.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    torch = _import_torch()
    machine = machine_info(torch)
    cpus = machine["cpu_count"]
    print(
        f"vsconf {machine['vsconf']} ({machine['git_commit'] or 'no git'}{', dirty' if machine['git_dirty'] else ''}) "
        f"on {cpus} CPUs ({machine['cpu_model']}, load {machine['load_average_at_start']:.1f}), "
        f"{machine['memory_bytes'] / GB:.0f} GB RAM; "
        f"python {machine['python']}, numpy {machine['numpy']}, onnx {machine['onnx']}, torch {machine['torch']}; "
        f"{machine['date']}" + (" -- QUICK sizes" if args.quick else ""),
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="vsconf-bench-", dir=args.scratch))
    try:
        results, figures, skipped = _run_sections(args, sizes, folder, torch)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    checked = targets.check(figures, cpus, args.quick)
    _print(targets.table(checked))
    report = {
        "machine": machine,
        "quick": args.quick,
        "sizes": sizes.__dict__,
        **results,
        "skipped": skipped,
        "targets": checked,
        "load_average_at_end": os.getloadavg()[0],
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nload average now {report['load_average_at_end']:.1f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
