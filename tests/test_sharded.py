"""Sharded safetensors checkpoints: Hugging Face's layout in and out, whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import vsconf
from vsconf import arguments, schedule, tasks
from vsconf.formats import sharded
from vsconf.cli import main
from vsconf.draw import generate
from vsconf.errors import ModelError
from vsconf.spec import parse_spec

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SPEC = parse_spec(
    "vsconf: 1\nseed: 11\nlayout: torch\nrules:\n"
    "  - match: '*.bias'\n    init: zeros\n"
    "  - match: 'norm.weight'\n    optional: true\n    init: ones\n"
    "  - match: '*.weight'\n    init: he_normal\n",
    source="spec.yaml",
)
SHAPES = {
    "embed.weight": ([500, 64], "float32"),  # 128000 bytes
    "fc1.weight": ([256, 64], "bfloat16"),  # 32768
    "fc1.bias": ([256], "float32"),
    "norm.weight": ([256], "float16"),
    "fc2.weight": ([10, 256], "float64"),  # 20480
    "fc2.bias": ([10], "float32"),
}


def write_manifest(folder: Path, shapes=SHAPES) -> Path:
    path = folder / "m.shapes.json"
    tensors = {name: {"shape": shape, "dtype": dtype} for name, (shape, dtype) in shapes.items()}
    path.write_text(json.dumps({"tensors": tensors}))
    return path


def check_checkpoint(folder: Path, plan) -> dict:
    """The index is consistent with the shards, and every tensor is what the plan makes."""
    index = json.loads((folder / sharded.INDEX_NAME).read_text())
    weight_map = index["weight_map"]
    assert sorted(weight_map) == sorted(entry.name for entry in plan)
    shards = sorted(set(weight_map.values()))
    assert sorted(p.name for p in folder.iterdir()) == sorted(shards + [sharded.INDEX_NAME])
    count = len(shards)
    assert shards == [f"model-{k:05d}-of-{count:05d}.safetensors" for k in range(1, count + 1)]
    total = 0
    for shard in shards:
        arrays = safetensors_numpy.load_file(str(folder / shard))
        assert sorted(arrays) == sorted(n for n, s in weight_map.items() if s == shard)
        for name, array in arrays.items():
            total += array.nbytes
            expected = generate(plan.entry(name))
            assert array.dtype == expected.dtype and array.shape == expected.shape
            assert array.tobytes() == expected.tobytes(), name
    assert index["metadata"]["total_size"] == total
    return index


def test_parse_size_reads_hugging_face_units():
    assert arguments.parse_size("5GB") == 5 * 10**9
    assert arguments.parse_size("500MB") == 500 * 10**6
    assert arguments.parse_size("2GiB") == 2 << 30
    assert arguments.parse_size("1.5kb") == 1500
    assert arguments.parse_size("4096") == 4096
    for bad in ("", "5 GiBs", "-1", "0", "GB", "1e9"):
        with pytest.raises(ValueError, match="expected a size"):
            arguments.parse_size(bad)


def test_shards_are_assigned_as_hugging_face_splits_them():
    # huggingface_hub split_state_dict_into_shards_factory: a tensor over the limit gets a
    # shard of its own, appended where it is met (before the shard still filling).
    sizes = [("a", 40), ("b", 50), ("c", 20), ("big", 500), ("d", 30), ("e", 100), ("f", 1)]
    assert sharded.assign_shards(sizes, 100) == [["a", "b"], ["big"], ["c", "d"], ["e"], ["f"]]
    assert sharded.assign_shards([], 100) == []
    assert sharded.assign_shards([("x", 0)], 1) == [["x"]]


def test_a_manifest_becomes_a_sharded_checkpoint_that_safetensors_loads(tmp_path):
    model = write_manifest(tmp_path)
    result = vsconf.apply(model, SPEC, tmp_path / "ckpt", shard_size="100KB", jobs=2)
    assert result.output == tmp_path / "ckpt"
    index = check_checkpoint(tmp_path / "ckpt", result.plan)
    # embed.weight (128 kB) is over 100 kB: a shard of its own, then the rest in plan order.
    assert index["weight_map"]["embed.weight"] == "model-00001-of-00002.safetensors"
    assert {index["weight_map"][n] for n in SHAPES if n != "embed.weight"} == {"model-00002-of-00002.safetensors"}
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / "model-00002-of-00002.safetensors"), framework="numpy") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == "pt" and metadata["vsconf.seed"] == "11"
    assert not vsconf.verify(tmp_path / "ckpt", SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "m.shapes.json"]  # no temporaries


def test_one_shard_still_has_its_index_and_the_index_path_names_the_prefix(tmp_path):
    model = write_manifest(tmp_path)
    result = vsconf.apply(model, SPEC, tmp_path / "out" / "weights.safetensors.index.json")
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["weights-00001-of-00001.safetensors", "weights.safetensors.index.json"]
    assert not vsconf.verify(tmp_path / "out" / "weights.safetensors.index.json", SPEC)
    assert result.output == tmp_path / "out"


def test_output_bytes_do_not_depend_on_shard_count_of_the_input(tmp_path):
    """A sharded model in, re-sharded out: the kept tensors are copied byte for byte."""
    model = write_manifest(tmp_path)
    vsconf.apply(model, SPEC, tmp_path / "a", shard_size="40KB")
    keep_norm = parse_spec(
        "vsconf: 1\nseed: 12\nlayout: torch\nrules:\n  - match: 'norm.weight'\n    init: keep\n"
        "  - match: '*.weight'\n    init: glorot_uniform\n  - match: '*.bias'\n    init: {constant: 0.5}\n",
        source="s2.yaml",
    )
    first = vsconf.apply(tmp_path / "a", keep_norm, tmp_path / "b", shard_size="5GB")
    second = vsconf.apply(tmp_path / "a" / sharded.INDEX_NAME, keep_norm, tmp_path / "c.safetensors")
    b = {}
    for shard in (tmp_path / "b").glob("*.safetensors"):
        b.update(safetensors_numpy.load_file(str(shard)))
    c = safetensors_numpy.load_file(str(tmp_path / "c.safetensors"))
    assert sorted(b) == sorted(c) == sorted(SHAPES)
    for name in SHAPES:
        assert b[name].tobytes() == c[name].tobytes()
    assert np.all(b["norm.weight"] == 1)  # kept from the input (ones)
    assert np.all(b["fc1.bias"] == 0.5)
    assert not vsconf.verify(tmp_path / "b", keep_norm) and not vsconf.verify(tmp_path / "c.safetensors", keep_norm)
    assert first.plan.entry("norm.weight").action == "keep" and second.output == tmp_path / "c.safetensors"


def test_a_state_dict_with_integer_tensors_goes_to_a_folder(tmp_path):
    arrays = {"fc.weight": np.ones((8, 4), np.float32), "fc.bias": np.ones(8, np.float32), "steps": np.arange(3)}
    np.savez(tmp_path / "m.npz", **arrays)
    result = vsconf.apply(tmp_path / "m.npz", SPEC, str(tmp_path / "out") + "/")
    loaded = safetensors_numpy.load_file(str(tmp_path / "out" / "model-00001-of-00001.safetensors"))
    assert loaded["steps"].tolist() == [0, 1, 2] and loaded["steps"].dtype == np.int64
    assert loaded["fc.weight"].tobytes() == generate(result.plan.entry("fc.weight")).tobytes()


def test_force_replaces_only_the_checkpoint_and_in_place_rewrites_it(tmp_path):
    model = write_manifest(tmp_path)
    out = tmp_path / "ckpt"
    vsconf.apply(model, SPEC, out, shard_size="50KB")
    shards = sorted(p.name for p in out.iterdir())
    with pytest.raises(ModelError, match="holds the checkpoint model.safetensors.index.json; pass force=True"):
        vsconf.apply(model, SPEC, out)
    (out / "README.md").write_text("mine")
    reseeded = vsconf.apply(model, SPEC, out, force=True, seed=99, shard_size="50KB")
    assert reseeded.plan.seed == 99 and not vsconf.verify(out, SPEC, seed=99)
    assert sorted(p.name for p in out.iterdir()) == sorted(shards + ["README.md"])
    # --in-place: the same folder, new values, still whole, the README untouched.
    vsconf.apply(out, SPEC, in_place=True, seed=5)
    assert not vsconf.verify(out, SPEC, seed=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "m.shapes.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(shards + ["README.md"])
    assert (out / "README.md").read_text() == "mine"
    # Fewer shards: the old checkpoint's other shards go, nothing else does.
    vsconf.apply(model, SPEC, out, force=True, shard_size="5GB")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model-00001-of-00001.safetensors", "model.safetensors.index.json"]


def test_a_failed_write_leaves_no_folder_and_no_temporaries(tmp_path, monkeypatch):
    model = write_manifest(tmp_path)

    def broken(task_list, scheduler, progress=None):
        tasks.run_task(task_list[0])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(schedule, "run", broken)
    with pytest.raises(ModelError, match="ckpt: cannot write: No space left on device"):
        vsconf.apply(model, SPEC, tmp_path / "ckpt", lock=tmp_path / "ckpt.lock")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.shapes.json"]


def test_lock_of_a_sharded_output_records_the_written_bytes(tmp_path):
    model = write_manifest(tmp_path)
    result = vsconf.apply(model, SPEC, tmp_path / "ckpt", lock=tmp_path / "init.lock", shard_size="60KB")
    records = {record["name"]: record["sha256"] for record in result.lock["tensors"]}
    import hashlib

    assert records["fc2.weight"] == hashlib.sha256(generate(result.plan.entry("fc2.weight")).tobytes()).hexdigest()
    assert not vsconf.verify(tmp_path / "ckpt", SPEC, lock=tmp_path / "init.lock")
    with pytest.raises(ModelError, match="the lock would replace model.safetensors.index.json, a file of the output"):
        vsconf.apply(model, SPEC, tmp_path / "ckpt", lock=tmp_path / "ckpt" / "model.safetensors.index.json", force=True)
    beside = vsconf.apply(model, SPEC, tmp_path / "ckpt", lock=tmp_path / "ckpt" / "init.lock", force=True, shard_size="60KB")
    assert beside.lock is not None and (tmp_path / "ckpt" / "init.lock").is_file()


def _index(folder: Path, weight_map: dict, total: int | None = None) -> Path:
    index = {"weight_map": weight_map}
    if total is not None:
        index["metadata"] = {"total_size": total}
    path = folder / sharded.INDEX_NAME
    path.write_text(json.dumps(index))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: (f / sharded.INDEX_NAME).write_text("{'weight_map': 1}"), r"model.safetensors.index.json:1:2: invalid JSON"),
        (lambda f: _index(f, {"w": "../m.safetensors"}), r"weight_map\['w'\]: shard \"../m.safetensors\" is not a file name"),
        (lambda f: _index(f, {"w": "/etc/passwd"}), r"shard \"/etc/passwd\" is not a file name in the index's folder"),
        (lambda f: _index(f, {"w": "a.safetensors", "ghost": "a.safetensors"}), r"maps tensor 'ghost' to 'a.safetensors', which does not hold it"),
        (lambda f: _index(f, {"w": "a.safetensors"}, total=3), r"metadata.total_size is 3, but the shards' tensors hold 48 bytes"),
        (lambda f: _index(f, {"w": "b.safetensors"}), r"shard 'b.safetensors': no such file"),
        (
            lambda f: safetensors_numpy.save_file({"w": np.ones((3, 4), np.float32), "v": np.ones(1)}, str(f / "a.safetensors")),
            r"a.safetensors: holds tensor 'v', which the index does not name",
        ),
        (lambda f: (f / sharded.INDEX_NAME).write_text('{"weight_map": []}'), r"weight_map is a list, not an object"),
    ],
    ids=["bad-json", "dotdot", "absolute", "missing-tensor", "total-size", "missing-shard", "unnamed-tensor", "not-an-object"],
)
def test_hostile_indexes_are_one_line_errors(tmp_path, capsys, change, message):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    safetensors_numpy.save_file({"w": np.ones((3, 4), np.float32)}, str(folder / "a.safetensors"))
    _index(folder, {"w": "a.safetensors"})
    change(folder)
    (tmp_path / "spec.yaml").write_text("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normal\n")
    assert main(["plan", str(folder), str(tmp_path / "spec.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vsconf: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    import re

    assert re.search(message, err), err


def test_a_shard_that_links_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    safetensors_numpy.save_file({"w": np.ones(2, np.float32)}, str(tmp_path / "outside.safetensors"))
    os.symlink(tmp_path / "outside.safetensors", folder / "a.safetensors")
    _index(folder, {"w": "a.safetensors"})
    with pytest.raises(ModelError, match="shard 'a.safetensors' is a link to a file outside the index's folder"):
        vsconf.plan(folder, SPEC)


def test_a_folder_of_one_model_safetensors_is_that_file(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    safetensors_numpy.save_file({"fc.weight": np.ones((4, 2), np.float32)}, str(folder / "model.safetensors"))
    anything = parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normal\n")
    assert [entry.name for entry in vsconf.plan(folder, anything)] == ["fc.weight"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="the model is a folder, not a regular file"):
        vsconf.plan(tmp_path / "empty", anything)


def test_an_index_over_the_size_limit_is_not_read(tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    safetensors_numpy.save_file({"w": np.ones(2, np.float32)}, str(folder / "a.safetensors"))
    _index(folder, {"w": "a.safetensors"})
    monkeypatch.setattr(sharded, "MAX_INDEX_BYTES", 16)
    with pytest.raises(ModelError, match="cannot read the index: it is larger than 16 bytes, the limit"):
        vsconf.plan(folder, SPEC)
