"""Tasks and schedulers: the output is the same bytes whoever runs the tasks, in whatever
pieces, and a worker that dies has its task run again."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vsconf
from vsconf import schedule, streams, tasks
from vsconf.draw import Draw
from vsconf.draw import values as draw_values
from vsconf.cli import main
from vsconf.spec import parse_spec

SPEC_TEXT = (
    "vsconf: 1\nseed: 8\nlayout: torch\nrules:\n"
    "  - match: '*.bias'\n    init: {constant: 0.1}\n"
    "  - match: 'up.weight'\n    init: glorot_uniform\n"
    "  - match: '*.weight'\n    init: he_normal\n"
)
SPEC = parse_spec(SPEC_TEXT, source="spec.yaml")
TENSORS = {
    "embed.weight": {"shape": [1000, 256]},  # 1 MB
    "up.weight": {"shape": [700, 1100], "dtype": "bfloat16"},  # 1.5 MB, 12 stream blocks
    "up.bias": {"shape": [700]},
    "down.weight": {"shape": [300, 700], "dtype": "float64"},  # 1.7 MB
    "norm.bias": {"shape": [3]},
}


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "m.shapes.json"
    path.write_text(json.dumps({"tensors": TENSORS}))
    return path


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_split_covers_every_element_once_in_block_aligned_tasks():
    fill = tasks.Fill("w", Draw("uniform", 0.5, 1, streams.LATEST_STREAM, "float32", 1_000_003), 0, 1_000_003, "f", 80)
    small = [tasks.Fill(f"b{i}", Draw("constant", 0.0, 2, 1, "float16", 10), 0, 10, "f", 4_000_092 + 20 * i) for i in range(3)]
    copy = tasks.Copy("c", "src", 8, 3_000_000, "f", 9_000_000)
    task_list = tasks.split([fill, *small, copy], 1 << 20)
    pieces = [piece for task in task_list for piece in task.pieces]
    fills = [p for p in pieces if isinstance(p, tasks.Fill) and p.name == "w"]
    assert [(p.start, p.stop) for p in fills][:2] == [(0, 262144), (262144, 524288)]
    assert fills[-1].stop == 1_000_003 and all(a.stop == b.start for a, b in zip(fills, fills[1:]))
    assert all(p.start % streams.BLOCK_SIZE == 0 for p in fills)
    assert all(p.offset == 80 + 4 * p.start for p in fills)
    copies = [p for p in pieces if isinstance(p, tasks.Copy)]
    assert sum(p.length for p in copies) == 3_000_000 and copies[1].source_offset == 8 + (1 << 20)
    assert all(task.nbytes <= (1 << 20) for task in task_list)
    # The three small fills ride in one task with the end of the big one.
    assert sum(1 for task in task_list if any(p.name.startswith("b") for p in task.pieces)) == 1


def test_the_task_floor_is_one_float32_stream_block():
    assert tasks.MIN_TASK_BYTES == streams.BLOCK_SIZE * 4


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["fill", "copy"]), st.integers(0, 3_000_000), st.sampled_from(["float16", "float32", "float64"])),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 3 << 20),
)
def test_tiny_task_sizes_never_cut_below_the_floor(described, task_bytes):
    """Whatever --task-size asks, fills and copies alike: every byte is written once, no
    piece is cut below the floor, and there are at most bytes / floor + pieces tasks."""
    pieces, offset = [], 0
    for i, (kind, count, dtype) in enumerate(described):
        itemsize = np.dtype(dtype).itemsize
        if kind == "fill":
            pieces.append(tasks.Fill(f"t{i}", Draw("uniform", 1.0, i, 1, dtype, count), 0, count, "out", offset))
            offset += count * itemsize
        else:
            pieces.append(tasks.Copy(f"t{i}", "in", 8 + offset, count, "out", offset))
            offset += count
    task_list = tasks.split(pieces, task_bytes)
    assert len(task_list) <= offset // tasks.MIN_TASK_BYTES + len(pieces)
    parts = [part for task in task_list for part in task.pieces]
    spans = sorted((part.offset, part.offset + part.nbytes) for part in parts if part.nbytes)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and sum(b - a for a, b in spans) == offset
    for piece in pieces:  # a piece cut into parts: each part but the last is a whole number of floors or more
        mine = [part for part in parts if part.name == piece.name]
        assert all(part.nbytes >= min(piece.nbytes, tasks.MIN_TASK_BYTES) for part in mine[:-1])


@pytest.mark.parametrize(
    "described",
    [
        Draw("uniform", 0.5, 11, 1, "float32", 600_001),
        Draw("truncated_normal", 0.02, 12, 2, "bfloat16", 600_001, shift=0.5),
        Draw("untruncated_normal", 1.0, 13, 1, "float64", 600_001, zero_rows=(3, 6), row=60_000),
    ],
    ids=["uniform", "truncated-stream2-bfloat16", "normal-float64-zero-rows"],
)
def test_a_fill_drawn_step_by_step_writes_the_values_of_its_whole_range(tmp_path, described, monkeypatch):
    """A task draws a long fill a few blocks at a time: from an unaligned start, across
    several steps, to an unaligned stop, the file holds exactly the range's values."""
    assert tasks._FILL_STEP % streams.BLOCK_SIZE == 0
    monkeypatch.setattr(tasks, "_FILL_STEP", 2 * streams.BLOCK_SIZE)  # the same cuts, on a smaller tensor
    start, stop = 70_001, 600_000 - 5
    assert stop - start > 3 * tasks._FILL_STEP
    path = tmp_path / "f"
    itemsize = described.itemsize
    path.write_bytes(bytes(16 + (stop - start) * itemsize + 16))
    written = tasks.run_task(tasks.Task((tasks.Fill("w", described, start, stop, str(path), 16),)))
    expected = draw_values(described, start, stop)
    assert written == expected.nbytes
    data = path.read_bytes()
    assert data[16:-16] == expected.tobytes() and data[:16] == bytes(16) == data[-16:]


def test_a_worker_of_another_version_refuses_the_task(tmp_path):
    (tmp_path / "f").write_bytes(bytes(8))
    task = tasks.Task((tasks.Fill("w", Draw("uniform", 1.0, 1, 2, "float32", 2), 0, 2, str(tmp_path / "f"), 0),), version="0.0.1")
    with pytest.raises(vsconf.ModelError, match=r"a worker runs vsconf .*, the coordinator vsconf 0.0.1"):
        tasks.run_task(task)
    assert tasks.run_task(tasks.Task(task.pieces)) == 8 and (tmp_path / "f").read_bytes() != bytes(8)


def test_a_pool_worker_whose_coordinator_is_gone_exits_without_writing(tmp_path):
    """The portable half of the no-orphans rule: before every write, a worker checks that
    its parent is still the coordinator it was started by (the kernel's parent-death
    signal is Linux's other half, tested by killing a real run in test_safety)."""
    import subprocess
    import sys

    target = tmp_path / "f"
    target.write_bytes(bytes(8))
    task = f"tasks.Task((tasks.Fill('w', Draw('uniform', 1.0, 1, 2, 'float32', 2), 0, 2, {str(target)!r}, 0),))"
    for setup in ("tasks._PARENT = os.getppid() + 1", "tasks.die_with(os.getppid() + 1)"):
        code = f"import os\nfrom vsconf import tasks\nfrom vsconf.draw import Draw\n{setup}\ntasks.run_task({task})\nprint('wrote')"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert (done.returncode, done.stdout) == (1, ""), done.stderr
        assert target.read_bytes() == bytes(8)
    code = f"import os\nfrom vsconf import tasks\nfrom vsconf.draw import Draw\ntasks.die_with(os.getppid())\ntasks.run_task({task})\nprint('wrote')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "wrote\n"), done.stderr
    assert target.read_bytes() != bytes(8)


def test_scheduler_names():
    assert schedule.parse_scheduler("threads", 3) == schedule.Scheduler("threads", 3)
    assert schedule.parse_scheduler("processes", 2) == schedule.Scheduler("processes", 2)
    assert schedule.parse_scheduler("tcp://10.0.0.1:8786", 2) == schedule.Scheduler("dask", 2, "tcp://10.0.0.1:8786")
    assert schedule.parse_scheduler("threads", 2, dask_workers=4) == schedule.Scheduler("dask", 4)
    assert schedule.parse_scheduler("auto", 2) == schedule.Scheduler("auto", 2)
    assert schedule.parse_scheduler("auto", 2, dask_workers=3) == schedule.Scheduler("dask", 3)
    with pytest.raises(ValueError, match="expected auto, threads, processes or a Dask scheduler address"):
        schedule.parse_scheduler("dask", 2)
    with pytest.raises(ValueError, match="not both"):
        schedule.parse_scheduler("processes", 2, dask_workers=2)


def test_auto_starts_processes_only_for_big_work_and_a_safe_main(monkeypatch):
    """`auto`: processes from AUTO_PROCESS_BYTES of new values with two workers or more, where
    a spawned worker cannot run the caller's program again; threads otherwise."""
    import sys
    import types

    big, small = schedule.AUTO_PROCESS_BYTES, schedule.AUTO_PROCESS_BYTES - 1
    script = types.ModuleType("__main__")
    script.__file__ = "/home/user/train.py"  # a script: its top level might call vsconf unguarded
    monkeypatch.setattr(schedule, "ENTRY_POINT", False)
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert schedule.Scheduler("auto", 4).resolved(big) == schedule.Scheduler("threads", 4)
    monkeypatch.setattr(schedule, "ENTRY_POINT", True)  # the command line
    assert schedule.Scheduler("auto", 4).resolved(big) == schedule.Scheduler("processes", 4)
    assert schedule.Scheduler("auto", 4).resolved(small) == schedule.Scheduler("threads", 4)
    assert schedule.Scheduler("auto", 1).resolved(big) == schedule.Scheduler("threads", 1)
    monkeypatch.setattr(schedule, "ENTRY_POINT", False)
    interactive = types.ModuleType("__main__")  # a REPL or a notebook: no main file
    monkeypatch.setitem(sys.modules, "__main__", interactive)
    assert schedule.Scheduler("auto", 2).resolved(big).kind == "processes"
    assert schedule.Scheduler("processes", 2).resolved(0) == schedule.Scheduler("processes", 2)


def test_bad_scheduler_options_are_usage_errors(model, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("vsconf: 1\nseed: 1\nrules: []\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["apply", str(model), str(spec), "--scheduler", "gpu"])
    assert exit_info.value.code == 2
    assert "argument --scheduler: expected auto, threads, processes or a Dask scheduler address" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["apply", str(model), str(spec), "--shard-size", "5 gigs"])
    assert "argument --shard-size: expected a size like 5GB" in capsys.readouterr().err


@pytest.mark.parametrize("stream", [1, 2])
def test_threads_processes_and_task_sizes_write_identical_bytes(model, tmp_path, stream):
    spec = SPEC if stream == 1 else parse_spec(SPEC_TEXT + f"stream: {stream}\n", source="spec.yaml")
    runs = {
        "threads-1": dict(jobs=1),
        "threads-2": dict(jobs=2, task_size="1MiB"),
        "threads-small-tasks": dict(jobs=2, task_size=300_000),
        "threads-3MB-tasks": dict(jobs=2, task_size="3MB"),
        "processes-2": dict(jobs=2, scheduler="processes", task_size="1MiB"),
    }
    seen = {}
    for name, options in runs.items():
        vsconf.apply(model, spec, tmp_path / name, shard_size="2MB", **options)
        seen[name] = digests(tmp_path / name)
    assert len(next(iter(seen.values()))) == 4  # three shards and the index
    assert all(found == seen["threads-1"] for found in seen.values()), seen
    assert not vsconf.verify(tmp_path / "processes-2", spec)


def test_options_of_seed_checkpoints_are_refused_for_other_outputs(tmp_path):
    import numpy as np

    np.savez(tmp_path / "m.npz", **{"fc.weight": np.ones((2, 2), np.float32)})
    with pytest.raises(vsconf.ModelError, match="an .npz output is written by one writer, in order"):
        vsconf.apply(tmp_path / "m.npz", SPEC, tmp_path / "o.npz", scheduler="processes")
    with pytest.raises(vsconf.ModelError, match="shard_size applies to sharded checkpoint outputs"):
        vsconf.apply(tmp_path / "m.npz", SPEC, tmp_path / "o.safetensors", shard_size="1MB")


@pytest.mark.slow  # the connection times out after 20 s
def test_an_unreachable_dask_scheduler_is_a_clear_error(model, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(schedule, "DASK_CONNECT_TIMEOUT", "2s")  # the error, not the wait, is under test
    with pytest.raises(vsconf.ModelError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        schedule.run([tasks.Task(())], schedule.Scheduler("dask", 1, "tcp://127.0.0.1:9"))
    assert not (tmp_path / "ckpt").exists()


def test_local_dask_clusters_of_one_and_two_workers_write_identical_bytes(model, tmp_path):
    pytest.importorskip("distributed")
    vsconf.apply(model, SPEC, tmp_path / "threads", shard_size="2MB")
    for workers, task_size in ((1, "1MiB"), (2, "300kB")):
        out = tmp_path / f"dask-{workers}"
        vsconf.apply(model, SPEC, out, shard_size="2MB", dask_workers=workers, task_size=task_size)
        assert digests(out) == digests(tmp_path / "threads")


def test_a_killed_dask_worker_has_its_task_retried_and_the_output_verifies(model, tmp_path):
    distributed = pytest.importorskip("distributed")
    import logging

    marker = tmp_path / "crashed"

    class CrashOnce(distributed.WorkerPlugin):
        """The first task any worker starts kills its process (the nanny starts a new one)."""

        def __init__(self, path: str):
            self.path = path

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and not os.path.exists(self.path):
                with open(self.path, "w"):
                    pass
                os._exit(1)

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
    ) as cluster, distributed.Client(cluster) as client:
        client.register_plugin(CrashOnce(str(marker)))
        vsconf.apply(model, SPEC, tmp_path / "ckpt", shard_size="2MB", task_size="1MiB", scheduler=cluster.scheduler_address)
    assert marker.exists()  # a worker did die
    assert not vsconf.verify(tmp_path / "ckpt", SPEC)
    vsconf.apply(model, SPEC, tmp_path / "threads", shard_size="2MB")
    assert digests(tmp_path / "ckpt") == digests(tmp_path / "threads")


def test_a_killed_worker_process_breaks_the_pool_and_its_tasks_run_again(model, tmp_path):
    """SIGKILL a pool worker after the first task: the pool is started again with the
    unfinished tasks, and the output is still the right bytes."""
    import multiprocessing
    import signal

    killed = []

    def progress(done, total, name):
        if not killed:
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    vsconf.apply(model, SPEC, tmp_path / "ckpt", shard_size="2MB", task_size=300_000, scheduler="processes", jobs=2, progress=progress)
    assert killed
    assert not vsconf.verify(tmp_path / "ckpt", SPEC)
    vsconf.apply(model, SPEC, tmp_path / "threads", shard_size="2MB")
    assert digests(tmp_path / "ckpt") == digests(tmp_path / "threads")
