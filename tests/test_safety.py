"""What vsconf promises when things go wrong around it: killed at any moment, interrupted,
out of disk space, or writing into a closed pipe -- the target holds the old file or the
complete new one, never a part, and no temporary file is left behind (except after
SIGKILL, which no program can clean up after)."""

from __future__ import annotations

import hashlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import vsconf
from vsconf import files

SPEC = "vsconf: 1\nseed: 3\nlayout: torch\nrules:\n  - match: '*'\n    init: he_uniform\n"
# 8 tensors of 8M float32: a 256 MiB model, long enough to be killed in the middle.
BIG = {f"layer{i}.weight": (2048, 4096) for i in range(8)}


def sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_npz(tmp_path_factory) -> dict[str, Path | str]:
    """The big model, the spec, and the output an uninterrupted run makes (with its digest)."""
    folder = tmp_path_factory.mktemp("big")
    model = folder / "big.npz"
    rng = np.random.default_rng(0)
    with open(model, "wb") as handle:
        np.savez(handle, **{name: rng.standard_normal(shape, dtype=np.float32) for name, shape in BIG.items()})
    spec = folder / "spec.yaml"
    spec.write_text(SPEC)
    reference = folder / "reference.npz"
    started = time.monotonic()
    vsconf.apply(model, spec, reference)
    return {"model": model, "spec": spec, "reference": sha(reference), "input": sha(model), "seconds": time.monotonic() - started}


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vsconf", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )


def _workdir(tmp_path: Path, big_npz) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(big_npz["model"], work / "big.npz")
    shutil.copy(big_npz["spec"], work / "spec.yaml")
    return work


def _moments(big_npz, count: int, seed: int) -> list[float]:
    """Random moments over a whole run: Python's start-up, planning, generating, writing, renaming."""
    rng = random.Random(seed)
    span = 0.6 + 1.3 * big_npz["seconds"]
    return sorted(rng.uniform(0.05, span) for _ in range(count))


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_the_old_output_or_the_whole_new_one(tmp_path, big_npz):
    work = _workdir(tmp_path, big_npz)
    output = work / "out.npz"
    output.write_bytes(b"the previous output")
    previous = sha(output)
    outcomes = []
    for moment in _moments(big_npz, 10, seed=1):
        proc = _start(["apply", "big.npz", "spec.yaml", "-o", "out.npz", "--force", "--quiet"], work)
        time.sleep(moment)
        proc.kill()
        proc.communicate()
        state = sha(output)
        assert state in (previous, big_npz["reference"]), f"killed at {moment:.2f} s: out.npz is partial"
        outcomes.append(state == previous)
        assert sha(work / "big.npz") == big_npz["input"]
        if state != previous:  # start the next round from the old output again
            output.write_bytes(b"the previous output")
        for leftover in work.glob(f"*{files.TEMP_SUFFIX}"):
            leftover.unlink()  # SIGKILL cannot clean up; the next round starts clean
    assert any(outcomes), "no kill landed before the rename: the moments do not cover the run"


@pytest.mark.slow
def test_sigkill_during_in_place_never_loses_the_original(tmp_path, big_npz):
    work = _workdir(tmp_path, big_npz)
    model = work / "big.npz"
    for moment in _moments(big_npz, 10, seed=2):
        proc = _start(["apply", "big.npz", "spec.yaml", "--in-place", "--quiet"], work)
        time.sleep(moment)
        proc.kill()
        proc.communicate()
        state = sha(model)
        assert state in (big_npz["input"], big_npz["reference"]), f"killed at {moment:.2f} s: the model is partial"
        if state != big_npz["input"]:
            shutil.copy(big_npz["model"], model)
        for leftover in work.glob(f"*{files.TEMP_SUFFIX}"):
            leftover.unlink()


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_interrupts_remove_every_temporary_file(tmp_path, big_npz, signum, code):
    work = _workdir(tmp_path, big_npz)
    before = sorted(p.name for p in work.iterdir())
    for moment in _moments(big_npz, 3, seed=signum):
        proc = _start(["apply", "big.npz", "spec.yaml", "-o", "out.npz", "--lock", "out.lock.json", "--quiet"], work)
        time.sleep(moment)
        proc.send_signal(signum)
        _, err = proc.communicate()
        assert b"Traceback" not in err
        after = sorted(p.name for p in work.iterdir())
        if proc.returncode == 0:  # the signal came after the work was done
            assert after == sorted(before + ["out.npz", "out.lock.json"])
            assert sha(work / "out.npz") == big_npz["reference"]
            (work / "out.npz").unlink()
            (work / "out.lock.json").unlink()
            continue
        assert proc.returncode in (code, -signum), err  # -signum: before vsconf installed its handlers
        if after != before:  # the signal came after the commit: both files, whole
            assert after == sorted(before + ["out.npz", "out.lock.json"]), f"signal at {moment:.2f} s left {after}"
            assert sha(work / "out.npz") == big_npz["reference"]
            (work / "out.npz").unlink()
            (work / "out.lock.json").unlink()
        if proc.returncode == code:
            assert err.decode().strip() in ("vsconf: interrupted", f"vsconf: stopped by {signal.Signals(signum).name}")


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _written(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_process_workers_die_with_a_killed_coordinator_and_write_nothing_after(tmp_path):
    """SIGKILL the command while its process pool writes a 2 GB checkpoint: a second later no
    worker is alive, and nothing under the folder changes any more."""
    tensors = {f"layer{i}.weight": {"shape": [4096, 4096]} for i in range(32)}
    (tmp_path / "m.shapes.json").write_text(__import__("json").dumps({"tensors": tensors}))
    (tmp_path / "spec.yaml").write_text(SPEC)
    proc = _start(["apply", "m.shapes.json", "spec.yaml", "-o", "ckpt/", "--scheduler", "processes", "--jobs", "2"], tmp_path)
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # until the pool writes
        workers |= _children(proc.pid)
        staged = [p for p in tmp_path.glob(".ckpt.*.vsconf-tmp/*.safetensors") if p.stat().st_blocks]
        if len(workers) >= 2 and staged:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    workers |= _children(proc.pid)
    assert proc.poll() is None, "the run ended before it could be killed: make the checkpoint bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.05)  # a write the kill caught inside the kernel may still stamp its file
    killed_at = _written(tmp_path)
    assert killed_at  # the staged shards, part written
    time.sleep(1.0)
    assert len(workers) >= 2 and not [pid for pid in workers if _alive(pid)]
    assert _written(tmp_path) == killed_at
    assert not (tmp_path / "ckpt").exists()


def _full_disk(tmp_path: Path) -> Path | None:
    """A 2 MiB tmpfs, where the platform lets this process mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    return mount if done.returncode == 0 else None


@pytest.fixture
def small_disk(tmp_path):
    mount = _full_disk(tmp_path)
    if mount is None:
        pytest.skip("cannot mount a tmpfs here; the file-size limit test covers the same path")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _model_on(folder: Path) -> None:
    np.savez(folder / "m.npz", **{"w": np.ones((256, 256), np.float32)})  # 256 KiB
    (folder / "spec.yaml").write_text(SPEC)


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(small_disk):
    _model_on(small_disk)
    free = os.statvfs(small_disk)
    with open(small_disk / "filler", "wb") as handle:  # leave 64 KiB: less than the output needs
        handle.write(b"\0" * (free.f_bavail * free.f_frsize - 64 * 1024))
    before = sorted(p.name for p in small_disk.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "vsconf", "apply", "m.npz", "spec.yaml", "-o", "out.npz"], cwd=small_disk, capture_output=True
    )
    assert proc.returncode == 1
    assert proc.stderr.decode() == "vsconf: error: out.npz: cannot write: No space left on device\n"
    assert sorted(p.name for p in small_disk.iterdir()) == before


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, write() fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, 100 * 1024))


def test_a_file_size_limit_is_a_clear_error_and_leaves_nothing(tmp_path):
    _model_on(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "vsconf", "apply", "m.npz", "spec.yaml", "-o", "out.npz"],
        cwd=tmp_path,
        capture_output=True,
        preexec_fn=_limit_file_size,
    )
    assert proc.returncode == 1
    assert proc.stderr.decode() == "vsconf: error: out.npz: cannot write: File too large\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_closed_stdout_ends_quietly(tmp_path):
    model = Path(__file__).resolve().parent.parent / "examples" / "small_cnn.onnx"
    spec = Path(__file__).resolve().parent.parent / "configs" / "pytorch_defaults.yaml"
    reader, writer = os.pipe()
    os.close(reader)  # nobody will read: the first write fails with EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "vsconf", "plan", str(model), str(spec), "--format", "json"], stdout=writer, stderr=subprocess.PIPE
    )
    os.close(writer)
    assert proc.stderr == b""
    assert proc.returncode == 141


def test_head_reads_a_few_lines_of_a_plan():
    root = Path(__file__).resolve().parent.parent
    shell = subprocess.run(
        f"set -o pipefail; '{sys.executable}' -m vsconf plan examples/small_cnn.onnx configs/pytorch_defaults.yaml | head -n 1",
        shell=True,
        executable="/bin/bash",
        cwd=root,
        capture_output=True,
    )
    assert shell.stdout.decode().startswith("name ")
    assert b"Traceback" not in shell.stderr and b"Exception ignored" not in shell.stderr


def test_commit_makes_files_durable_before_renaming(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd)))
    real_rename_new = files.rename_new
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("rename", str(b))), real_replace(a, b)))
    monkeypatch.setattr(files, "rename_new", lambda a, b: (events.append(("rename", str(b))), real_rename_new(a, b)))
    with files.Transaction() as transaction:
        for name in ("model.onnx.data", "model.onnx", "model.lock.json"):
            transaction.stage(tmp_path / name).write_text(name)
        transaction.commit()
    kinds = [kind for kind, _ in events]
    # every file is fsynced before the first rename, and the folder after the last one
    assert kinds == ["fsync"] * 3 + ["rename"] * 3 + ["fsync"]
    assert [target for kind, target in events if kind == "rename"] == [
        str(tmp_path / n) for n in ("model.onnx.data", "model.onnx", "model.lock.json")
    ]
    assert events[-1] == ("fsync", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.lock.json", "model.onnx", "model.onnx.data"]


def test_an_error_before_commit_leaves_no_target_and_no_temporary(tmp_path):
    (tmp_path / "model.onnx").write_text("old")
    with pytest.raises(RuntimeError), files.Transaction() as transaction:
        transaction.stage(tmp_path / "model.onnx").write_text("new")
        transaction.stage(tmp_path / "model.lock.json").write_text("lock")
        raise RuntimeError("the lock could not be built")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_text() == "old"
