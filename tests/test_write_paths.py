"""One write path (#24): every output whose layout is known up front -- ONNX inline and with
external data, ``.safetensors``, a sharded folder -- is written by tasks, and the bytes are
the same whatever runs them: one thread, several threads with small tasks, a process pool,
a local Dask cluster; under both stream versions.  An ``.npz`` is written by one writer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import make_model

import vsconf

SPEC = """\
vsconf: 1
seed: 5
layout: torch
stream: {stream}
rules:
  - match: '*.weight'
    init: he_normal
  - match: '*.bias'
    init: {{uniform: {{low: -0.1, high: 0.1}}}}
  - match: '*.scale'
    init: {{normal: {{mean: 1, std: 0.02}}}}
"""
# about 1.4 MB: several tasks at a 300 kB task size
ARRAYS = {
    "a.weight": np.zeros((256, 512), np.float32),
    "a.bias": np.zeros(256, np.float32),
    "b.weight": np.zeros((384, 256), np.float16),
    "b.scale": np.zeros(384, np.float32),
    "c.weight": np.zeros((300, 301), np.float32),
}


# The ONNX model reads each as a parameter (a glob never fills a Constant's tensor): a chain
# Gemm -> Gemm -> LayerNormalization -> Gemm, all float32 (ONNX ops do not mix dtypes).
ONNX_ARRAYS = {
    "a.weight": np.zeros((256, 512), np.float32),
    "a.bias": np.zeros(256, np.float32),
    "b.weight": np.zeros((384, 256), np.float32),
    "b.scale": np.zeros(384, np.float32),
    "c.weight": np.zeros((300, 384), np.float32),
}


def _onnx(folder: Path, external: bool) -> Path:
    nodes = [
        helper.make_node("Gemm", ["x", "a.weight", "a.bias"], ["y1"], transB=1),
        helper.make_node("Gemm", ["y1", "b.weight"], ["y2"], transB=1),
        helper.make_node("LayerNormalization", ["y2", "b.scale"], ["y3"], axis=-1),
        helper.make_node("Gemm", ["y3", "c.weight"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 300])],
        [numpy_helper.from_array(a, name) for name, a in ONNX_ARRAYS.items()],
    )
    model = make_model(graph, (("", 17),), ir_version=8)
    path = folder / "m.onnx"
    if external:
        onnx.save_model(model, path, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    else:
        onnx.save_model(model, path)
    return path


def _safetensors(folder: Path) -> Path:
    from safetensors.numpy import save_file

    path = folder / "m.safetensors"
    save_file(ARRAYS, path)
    return path


def _manifest(folder: Path) -> Path:
    path = folder / "m.shapes.json"
    tensors = {name: {"shape": list(a.shape), "dtype": a.dtype.name} for name, a in ARRAYS.items()}
    path.write_text(json.dumps({"tensors": tensors}))
    return path


FORMATS = {  # name -> (build the input, the output's name, apply's extra options)
    "onnx-inline": (lambda folder: _onnx(folder, False), "out.onnx", {}),
    "onnx-external": (lambda folder: _onnx(folder, True), "out.onnx", {}),
    "safetensors": (_safetensors, "out.safetensors", {}),
    "sharded-folder": (_manifest, "ckpt", {"shard_size": "600kB"}),
}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
    ) as running:
        yield running.scheduler_address


@pytest.mark.parametrize("stream", [1, 2])
@pytest.mark.parametrize("form", list(FORMATS))
def test_every_schedule_writes_the_single_thread_bytes(form, stream, tmp_path, cluster):
    build, output, extra = FORMATS[form]
    source = tmp_path / "in"
    source.mkdir()
    model = build(source)
    spec = vsconf.parse_spec(SPEC.format(stream=stream), source="spec.yaml")
    assert all(entry.changes for entry in vsconf.plan(model, spec))  # every tensor gets new values
    runs = {
        "one-thread": dict(jobs=1),
        "threads-small-tasks": dict(jobs=2, task_size=300_000),
        "processes": dict(jobs=2, scheduler="processes", task_size=300_000),
        "dask": dict(scheduler=cluster, task_size=300_000),
    }
    seen = {}
    for name, options in runs.items():
        folder = tmp_path / name
        folder.mkdir()
        vsconf.apply(model, spec, folder / output, **extra, **options)
        seen[name] = _digests(folder / output if form == "sharded-folder" else folder)
    assert all(found == seen["one-thread"] for found in seen.values()), seen
    written = tmp_path / "processes" / output
    assert vsconf.verify(written, spec) == []
    if form.startswith("onnx"):
        onnx.checker.check_model(str(written))
        assert (tmp_path / "processes" / "out.onnx.data").exists() is (form == "onnx-external")


def test_a_lock_records_the_written_bytes_whatever_runs_the_tasks(tmp_path):
    model = _onnx(tmp_path, True)
    spec = vsconf.parse_spec(SPEC.format(stream=2), source="spec.yaml")
    vsconf.apply(model, spec, tmp_path / "a.onnx", lock=tmp_path / "a.lock", jobs=1)
    vsconf.apply(model, spec, tmp_path / "b.onnx", lock=tmp_path / "b.lock", jobs=2, scheduler="processes", task_size=300_000)
    records = [{t["name"]: t["sha256"] for t in json.loads((tmp_path / f"{k}.lock").read_text())["tensors"]} for k in "ab"]
    assert records[0] == records[1] and len(records[0]) == len(ONNX_ARRAYS)
    assert vsconf.verify(tmp_path / "b.onnx", spec, lock=tmp_path / "b.lock") == []


def test_an_npz_is_written_by_one_writer_and_says_why_it_takes_no_scheduler(tmp_path):
    np.savez(tmp_path / "m.npz", **ARRAYS)
    spec = vsconf.parse_spec(SPEC.format(stream=1), source="spec.yaml")
    with pytest.raises(vsconf.ModelError, match=r"each member's header holds its CRC-32"):
        vsconf.apply(tmp_path / "m.npz", spec, tmp_path / "o.npz", scheduler="processes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


# --------------------------------------------------------------------------- failures of the new paths


def _big_onnx(folder: Path) -> Path:
    """A 256 MiB model with external data: 8 Gemm weights of [2048, 4096] float32."""
    weights = [numpy_helper.from_array(np.zeros((2048, 4096), np.float32), f"l{i}.weight") for i in range(8)]
    nodes, current = [], "x"
    for i in range(8):
        nodes.append(helper.make_node("Gemm", [current, f"l{i}.weight"], [f"h{i}"], transB=1 if i % 2 == 0 else 0))
        current = f"h{i}"
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, 4096])], weights,
    )
    path = folder / "big.onnx"
    onnx.save_model(make_model(graph, (("", 17),), ir_version=8), path, save_as_external_data=True, location="big.onnx.data")
    (folder / "spec.yaml").write_text("vsconf: 1\nseed: 5\nlayout: torch\nstream: 2\nrules:\n  - match: '*'\n    init: he_normal\n")
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """The big model and the digests of the output an uninterrupted one-thread run makes."""
    folder = tmp_path_factory.mktemp("big")
    model = _big_onnx(folder)
    vsconf.apply(model, folder / "spec.yaml", folder / "reference" / "out.onnx", jobs=1)
    return folder, _digests(folder / "reference")


def _work(tmp_path: Path, big) -> Path:
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    for name in ("big.onnx", "big.onnx.data", "spec.yaml"):
        shutil.copy(big[0] / name, work / name)
    return work


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc")
def test_a_killed_process_worker_is_replaced_and_the_bytes_are_the_same(tmp_path, big):
    """SIGKILL one pool worker while an ONNX model's data file is written by processes: the
    task it held runs again, and the output is the one-thread output, byte for byte."""
    import os
    import signal
    import time

    from test_safety import _children, _start

    work = _work(tmp_path, big)
    proc = _start(["apply", "big.onnx", "spec.yaml", "-o", "out.onnx", "--scheduler", "processes", "--jobs", "2", "--task-size", "16MiB"], work)
    deadline, victim = time.monotonic() + 60, None
    while time.monotonic() < deadline and proc.poll() is None:
        workers = _children(proc.pid)
        staged = [p for p in work.glob(".*vsconf-tmp*") if p.is_file() and p.stat().st_blocks]
        if len(workers) >= 2 and staged:
            victim = min(workers)
            break
        time.sleep(0.02)
    assert victim is not None, "the run ended before a worker could be killed: make the model bigger"
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert {k: v for k, v in _digests(work).items() if k.startswith("out.")} == big[1]


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_sigint_while_tasks_write_leaves_nothing_and_no_worker(tmp_path, big, scheduler):
    import signal
    import time

    from test_safety import _alive, _children, _start

    work = _work(tmp_path, big)
    before = sorted(p.name for p in work.iterdir())
    for moment in (0.6, 1.0, 1.5):
        proc = _start(["apply", "big.onnx", "spec.yaml", "-o", "out.onnx", "--scheduler", scheduler, "--jobs", "2", "--quiet"], work)
        time.sleep(moment)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert b"Traceback" not in err
        time.sleep(0.5)
        assert not [pid for pid in workers if _alive(pid)], "a worker outlived the interrupted run"
        after = sorted(p.name for p in work.iterdir())
        if proc.returncode == 0 or after != before:  # the signal came after the commit: the whole output
            assert {k: v for k, v in _digests(work).items() if k.startswith("out.")} == big[1]
            for name in set(after) - set(before):
                (work / name).unlink()
            continue
        assert proc.returncode in (130, -signal.SIGINT), err  # -SIGINT: before vsconf installed its handlers
        if proc.returncode == 130:
            assert err.decode().strip() == "vsconf: interrupted", err
        assert after == before, f"SIGINT at {moment} s left {sorted(set(after) - set(before))}"


def test_a_full_disk_stops_an_onnx_output_before_any_task_and_leaves_nothing(tmp_path):
    """The staged files are made their full size first: a disk without room fails there, with
    one clear line, and nothing is left (a file-size limit stands in for a small disk)."""
    import resource
    import signal
    import subprocess
    import sys

    _onnx(tmp_path, True)
    (tmp_path / "spec.yaml").write_text(SPEC.format(stream=1))
    before = sorted(p.name for p in tmp_path.iterdir())

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, 100 * 1024))

    for scheduler in ("threads", "processes"):
        proc = subprocess.run(
            [sys.executable, "-m", "vsconf", "apply", "m.onnx", "spec.yaml", "-o", "out.onnx", "--scheduler", scheduler],
            cwd=tmp_path, capture_output=True, preexec_fn=limit,
        )
        assert proc.returncode == 1
        assert proc.stderr.decode() == "vsconf: error: out.onnx.data: cannot write: File too large\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == before
