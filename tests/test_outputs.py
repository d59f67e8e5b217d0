"""Where a run may write: folder outputs own only their checkpoint, commits never clobber.

The property test runs random sequences of ``apply`` (new outputs, ``force``,
``in_place``, locks) over a folder holding several checkpoints, specs and unrelated
files, and after every step compares the whole tree with what the step declared it
would write -- computed here from the files themselves (the indexes' weight maps), not
from vsconf's own bookkeeping.  The race tests start 2 or 4 processes at one barrier,
all writing one output.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import make_model

import racer
from bad_inputs.harness import snapshot as tree
import vsconf
from vsconf import files, schedule
from vsconf.errors import ModelError

SPEC = "vsconf: 1\nseed: 1\nlayout: torch\nrules:\n  - match: '*'\n    init: he_normal\n"
SHAPES = {"a.weight": [64, 32], "a.bias": [64], "b.weight": [16, 64], "c.weight": [8, 8]}


def checkpoint_files(folder: Path, prefix: str) -> set[str]:
    """The files of checkpoint ``prefix`` in ``folder``, read from its index (and its single file)."""
    found = set()
    index = folder / f"{prefix}.safetensors.index.json"
    if index.is_file():
        found.add(index.name)
        found.update(json.loads(index.read_text()).get("weight_map", {}).values())
    if (folder / f"{prefix}.safetensors").is_file():
        found.add(f"{prefix}.safetensors")
    return {f"{folder.name}/{name}" for name in found}


def manifest(path: Path, shapes=SHAPES) -> Path:
    path.write_text(json.dumps({"tensors": {name: {"shape": shape} for name, shape in shapes.items()}}))
    return path


def gemm_onnx(path: Path, *, external: bool = False, width: int = 8) -> Path:
    """x[1, width] @ fc.weight[width, 4] + fc.bias; with ``external``, its tensors in a data file."""
    w = numpy_helper.from_array(np.zeros((width, 4), np.float32), "fc.weight")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "fc.bias")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w, b],
    )
    model = make_model(graph, (("", 17),), ir_version=8)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------- folder ownership


def test_a_spec_inside_the_output_folder_is_never_replaced_or_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    model = manifest(tmp_path / "m.shapes.json")
    # A spec whose name the new checkpoint would take is refused before any work...
    (out / "model.safetensors.index.json").write_text(SPEC)
    before = tree(tmp_path)
    with pytest.raises(ModelError, match="cannot tell which files that checkpoint owns"):
        vsconf.apply(model, out / "model.safetensors.index.json", out, force=True)
    assert tree(tmp_path) == before
    # ...and one an old index names is kept, with a note, when that checkpoint is replaced.
    (out / "model.safetensors.index.json").unlink()
    vsconf.apply(model, SPEC_FILE(tmp_path), out, shard_size="10KB")
    spec = out / "spec.safetensors"
    spec.write_text(SPEC)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    index["weight_map"]["c.weight"] = "spec.safetensors"  # an index that lies about a file
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    result = vsconf.apply(model, spec, out, force=True)
    assert spec.read_text() == SPEC
    assert any("kept" in note and "spec.safetensors" in note for note in result.notes)


def SPEC_FILE(folder: Path) -> Path:
    path = folder / "init.yaml"
    path.write_text(SPEC)
    return path


def test_another_checkpoint_in_the_folder_is_kept_and_never_overwritten(tmp_path):
    out = tmp_path / "out"
    model = manifest(tmp_path / "m.shapes.json")
    spec = SPEC_FILE(tmp_path)
    vsconf.apply(model, spec, str(out) + "/ema.safetensors.index.json", shard_size="10KB")
    ema = tree(out)
    vsconf.apply(model, spec, out, shard_size="10KB")
    vsconf.apply(model, spec, out, shard_size="4KB", force=True, seed=3)  # more shards than before
    assert {k: v for k, v in tree(out).items() if k.startswith("ema")} == ema
    # A checkpoint whose new shard names would land on another checkpoint's files is refused.
    index = out / "ema.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {name: "model-00001-of-00001.safetensors" for name in data["weight_map"]}
    index.write_text(json.dumps(data))
    before = tree(tmp_path)
    with pytest.raises(ModelError, match=r"would replace model-00001-of-00001.safetensors \(the checkpoint ema.safetensors.index.json names it\)"):
        vsconf.apply(model, spec, out, force=True)
    assert tree(tmp_path) == before


def test_a_single_file_form_of_the_same_checkpoint_is_replaced_too(tmp_path):
    """Hugging Face's loaders prefer model.safetensors to the index: a stale one would win."""
    out = tmp_path / "out"
    model = manifest(tmp_path / "m.shapes.json")
    spec = SPEC_FILE(tmp_path)
    out.mkdir()
    vsconf.apply(model, spec, out / "model.safetensors", seed=4)
    vsconf.apply(model, spec, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["model-00001-of-00001.safetensors", "model.safetensors.index.json"]


def test_a_failed_run_leaves_the_folders_it_made_and_nothing_else(tmp_path, monkeypatch):
    model = manifest(tmp_path / "m.shapes.json")
    spec = SPEC_FILE(tmp_path)
    before = tree(tmp_path)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(schedule, "run", broken)
    with pytest.raises(ModelError, match="No space left on device"):
        vsconf.apply(model, spec, tmp_path / "a" / "b" / "ckpt", lock=tmp_path / "locks" / "x.lock")
    assert tree(tmp_path) == before


def test_a_target_that_appears_while_vsconf_works_is_left_alone(tmp_path):
    target = tmp_path / "out.npz"
    with files.Transaction() as transaction:
        transaction.stage(target).write_bytes(b"new")
        target.write_bytes(b"theirs")  # appears meanwhile
        with pytest.raises(ModelError, match="appeared while vsconf worked and was left as it is"):
            transaction.commit()
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_no_replace_renames_refuse_files_and_folders(tmp_path):
    for make in (lambda p: p.write_text("x"), lambda p: p.mkdir()):
        source, target = tmp_path / "s", tmp_path / "t"
        make(source)
        target.mkdir()
        with pytest.raises(FileExistsError):
            files.rename_new(source, target)
        assert source.exists() and target.is_dir()
        files.rename_new(source, tmp_path / "u")
        assert not source.exists() and (tmp_path / "u").exists()
        for path in (target, tmp_path / "u"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


# --------------------------------------------------------------------------- random sequences


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["manifest->out", "ckpt->out", "ema->out", "ckpt-in-place", "ema-in-place", "npz->x", "onnx->y", "manifest->ckpt"]),
        st.booleans(),  # force
        st.sampled_from([None, "out/run.lock", "run.lock", "spec.yaml", "out/model.safetensors.index.json"]),  # lock
        st.sampled_from([None, "4KB", "9KB", "1GB"]),  # shard size
        st.integers(0, 3),  # seed
    ),
    min_size=1,
    max_size=6,
)


def _world(root: Path) -> None:
    """A folder as people keep one: two checkpoints (weights, EMA), specs, notes, a model of each format."""
    (root / "spec.yaml").write_text(SPEC)
    (root / "notes.txt").write_text("mine")
    model = manifest(root / "m.shapes.json")
    vsconf.apply(model, root / "spec.yaml", str(root / "ckpt") + "/", shard_size="9KB")
    vsconf.apply(model, root / "spec.yaml", str(root / "ckpt") + "/ema.safetensors.index.json", shard_size="4KB", seed=9)
    (root / "ckpt" / "config.json").write_text('{"model_type": "toy"}')
    (root / "ckpt" / "spec.yaml").write_text(SPEC)
    (root / "out").mkdir()
    (root / "out" / "README.md").write_text("keep me")
    np.savez(root / "m.npz", **{"fc.weight": np.zeros((4, 8), np.float32), "steps": np.arange(3)})
    gemm_onnx(root / "m.onnx", external=True, width=4096)


def _declared(root: Path, op: str, lock: str | None) -> tuple[set[str], tuple[str, str] | None, dict]:
    """What a step may change before it runs (the checkpoint it replaces, copies, the lock),
    the (folder, prefix) of the checkpoint it writes, and the call that makes it."""
    folder_outputs = {
        "manifest->out": ("m.shapes.json", "out/", "out", "model"),
        "ckpt->out": ("ckpt", "out/", "out", "model"),
        "ema->out": ("ckpt/ema.safetensors.index.json", "out/", "out", "model"),
        "manifest->ckpt": ("m.shapes.json", "ckpt/", "ckpt", "model"),
    }
    may: set[str] = set()
    written = None
    if op in folder_outputs:
        source, output, folder, prefix = folder_outputs[op]
        call = {"model": root / source, "output": str(root / output)}
        written = (folder, prefix)
        if source.startswith("ckpt"):  # the source folder's other files are copied if not there
            may |= {f"{folder}/{name}" for name in ("config.json", "spec.yaml") if not (root / folder / name).exists()}
    elif op in ("ckpt-in-place", "ema-in-place"):
        prefix = "model" if op == "ckpt-in-place" else "ema"
        call = {"model": root / ("ckpt" if prefix == "model" else "ckpt/ema.safetensors.index.json"), "in_place": True}
        written = ("ckpt", prefix)
    elif op == "npz->x":
        call = {"model": root / "m.npz", "output": root / "x.npz"}
        may |= {"x.npz"}
    else:
        call = {"model": root / "m.onnx", "output": root / "y.onnx"}
        may |= {name for name in os.listdir(root) if name.startswith("y.onnx")} | {"y.onnx"}
    if written is not None:
        may |= checkpoint_files(root / written[0], written[1])
    if lock is not None:
        call["lock"] = root / lock
        may.add(lock)
    return may, written, call


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_random_sequences_change_only_the_declared_output(tmp_path_factory, ops):
    root = tmp_path_factory.mktemp("world")
    _world(root)
    for op, force, lock, shard_size, seed in ops:
        before = tree(root)
        may, written, call = _declared(root, op, lock)
        if shard_size is not None and "->" in op and op not in ("npz->x", "onnx->y"):
            call["shard_size"] = shard_size
        try:
            vsconf.apply(spec=root / "spec.yaml", force=force, seed=seed, **call)
        except ModelError:
            assert tree(root) == before, f"{op}: a refused run changed files"
            continue
        after = tree(root)
        if op == "onnx->y":  # a new data file may carry a random suffix
            may |= {name for name in after if name.startswith("y.onnx")}
        if written is not None:  # the new checkpoint, as its own index says
            may |= checkpoint_files(root / written[0], written[1])
        changed = {key for key in set(before) | set(after) if before.get(key) != after.get(key)}
        assert changed <= may, f"{op} force={force} lock={lock}: changed {sorted(changed - may)}"
        assert not [key for key in after if key.endswith(files.TEMP_SUFFIX)]
        for kept in ("spec.yaml", "notes.txt", "out/README.md", "ckpt/config.json", "ckpt/spec.yaml"):
            assert after.get(kept) == before.get(kept), kept
        # Every checkpoint in the tree still loads as what its index says (a lock may wear an index's name).
        for folder in ("ckpt", "out"):
            for index in (root / folder).glob("*.safetensors.index.json"):
                if "weight_map" in json.loads(index.read_text()):
                    assert len(vsconf.plan(index, root / "spec.yaml")) == len(SHAPES)


# --------------------------------------------------------------------------- races


def _race(root: Path, model: Path, output: str, racers: int, force: bool, seeds: list[int]) -> list[tuple[int, str]]:
    context = multiprocessing.get_context("forkserver")
    barrier, results = context.Barrier(racers), context.Queue()
    processes = [
        context.Process(target=racer.race, args=(barrier, str(model), str(root / "spec.yaml"), output, seed, force, results))
        for seed in seeds
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    return [results.get(timeout=5) for _ in processes]


@pytest.mark.slow
@pytest.mark.parametrize("racers", [2, 4])
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("kind", ["folder", "onnx"])
def test_racing_runs_leave_one_whole_output_and_nothing_behind(tmp_path, racers, force, kind):
    multiprocessing.set_forkserver_preload(["racer"])
    (tmp_path / "spec.yaml").write_text(SPEC.replace("layout: torch\n", ""))
    if kind == "folder":
        model, output = manifest(tmp_path / "m.shapes.json"), str(tmp_path / "out") + "/"
    else:
        model, output = gemm_onnx(tmp_path / "m.onnx", external=True, width=4096), str(tmp_path / "out.onnx")
    for repetition in range(4):
        seeds = [100 * repetition + k for k in range(racers)]
        results = _race(tmp_path, model, output, racers, force, seeds)
        winners = [seed for seed, outcome in results if outcome == "ok"]
        if force:
            assert len(winners) == racers, results
        else:
            assert len(winners) == 1, results
            for _, outcome in results:
                assert outcome == "ok" or "appeared while vsconf worked" in outcome or "exists" in outcome or "holds the checkpoint" in outcome
        target = Path(output.rstrip("/"))
        # Exactly one run's output, whole: it verifies with one seed and no other.
        matching = [seed for seed in seeds if not vsconf.verify(target, tmp_path / "spec.yaml", seed=seed)]
        assert len(matching) == 1 and matching[0] in winners, (matching, winners)
        leftovers = [p.name for p in tmp_path.rglob("*") if files.TEMP_SUFFIX in p.name]
        assert not leftovers
        if kind == "onnx":
            data = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out.onnx."))
            assert len(data) == 1, data  # the one data file the output names, no orphan
        else:
            names = sorted(p.name for p in target.iterdir())
            assert names == ["model-00001-of-00001.safetensors", "model.safetensors.index.json"]
        if not force:
            shutil.rmtree(target) if target.is_dir() else [p.unlink() for p in tmp_path.glob("out.onnx*")]
