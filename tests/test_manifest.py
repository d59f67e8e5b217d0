"""Shapes manifests: a model of names, shapes and dtypes whose checkpoint vsconf creates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import vsconf
from vsconf.cli import main
from vsconf.draw import generate
from vsconf import formats
from vsconf.errors import MatchError, ModelError
from vsconf.formats.manifest import ShapesManifest
from vsconf.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
SPEC_TEXT = (
    "vsconf: 1\nseed: 3\nlayout: torch\nrules:\n"
    "  - match: '*.bias'\n    init: zeros\n"
    "  - match: '*.weight'\n    init: he_uniform\n"
)
SPEC = parse_spec(SPEC_TEXT, source="init.yaml")
TENSORS = {"fc1.weight": {"shape": [32, 16]}, "fc1.bias": {"shape": [32], "dtype": "float16"}, "fc2.weight": {"shape": [4, 32], "dtype": "bfloat16"}}


def manifest(tmp_path: Path, data, name: str = "m.shapes.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_json_and_yaml_manifests_read_the_same(tmp_path):
    from_json = ShapesManifest(manifest(tmp_path, {"tensors": TENSORS}))
    yaml_text = "tensors:\n" + "".join(
        f"  {name}: {{shape: {entry['shape']}" + (f", dtype: {entry['dtype']}" if "dtype" in entry else "") + "}\n"
        for name, entry in TENSORS.items()
    )
    from_yaml = ShapesManifest(manifest(tmp_path, yaml_text, "m.shapes.yaml"))
    assert from_json.tensors() == from_yaml.tensors()
    assert [(t.name, t.shape, t.dtype.name) for t in from_json.tensors()] == [
        ("fc1.weight", (32, 16), "float32"),  # float32 when the dtype is left out
        ("fc1.bias", (32,), "float16"),
        ("fc2.weight", (4, 32), "bfloat16"),
    ]
    assert from_json.metadata == {"format": "pt"}


@pytest.mark.parametrize(
    "data, message",
    [
        ('{"tensors": {"a": {"shape": [1,]}}}', r"m.shapes.json:1:32: invalid JSON: Expecting value"),
        ("[1, 2]", r"m.shapes.json: a manifest is a mapping with `tensors`, not a list"),
        ({"tensor": {}}, r"m.shapes.json: tensor: unknown key \(a manifest has `tensors` and `metadata`\)"),
        ({"metadata": {}}, r"m.shapes.json: tensors: missing"),
        ({"tensors": {"a": [3, 4]}}, r"m.shapes.json: tensors.a: expected a mapping with `shape` and `dtype`, got a list"),
        ({"tensors": {"a": {"shape": [3, -1]}}}, r"tensors.a.shape: expected a list of at most 64 non-negative integers, got \[3, -1\]"),
        ({"tensors": {"a": {"shape": [3, True]}}}, r"tensors.a.shape: expected a list of at most 64 non-negative integers"),
        ({"tensors": {"a": {"shape": [3], "dtype": "int64"}}}, r"tensors.a.dtype: expected one of .* \(vsconf creates float tensors only\), got 'int64'"),
        ({"tensors": {"a": {"shape": [3], "dtyp": "float32"}}}, r"tensors.a.dtyp: unknown key"),
        ({"tensors": {"a": {"shape": [2**40, 2**40]}}}, r"tensors.a.shape: \[1099511627776, 1099511627776\] of float32 needs more than 2\*\*63 bytes"),
        ({"tensors": {}, "metadata": {"format": 1}}, r"metadata: expected a mapping of strings to strings"),
        ('{"tensors": {"a": {"shape": [1]}, "a": {"shape": [2]}}}', r"m.shapes.json: key 'a' is given twice"),
    ],
)
def test_bad_entries_are_located_errors(tmp_path, data, message):
    path = manifest(tmp_path, data)
    with pytest.raises(ModelError, match=message):
        ShapesManifest(path)


def test_yaml_errors_have_positions_and_aliases_are_refused(tmp_path):
    with pytest.raises(ModelError, match=r"m.shapes.yaml:3:1: invalid YAML: did not find expected node content"):
        ShapesManifest(manifest(tmp_path, "tensors:\n  a: [\n", "m.shapes.yaml"))
    bomb = "tensors:\n  a: &s {shape: [1]}\n  b: *s\n"
    with pytest.raises(ModelError, match=r"m.shapes.yaml:3:6: a manifest cannot use YAML aliases"):
        ShapesManifest(manifest(tmp_path, bomb, "m.shapes.yaml"))


def test_manifest_to_checkpoint_to_verify_round_trip(tmp_path, capsys):
    model = manifest(tmp_path, {"tensors": TENSORS})
    spec = tmp_path / "init.yaml"
    spec.write_text(SPEC_TEXT)
    assert main(["apply", str(model), str(spec), "-o", str(tmp_path / "ckpt") + "/", "--lock", str(tmp_path / "init.lock")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'ckpt'}: 2 filled, 1 set to constants (seed 3")
    assert main(["verify", str(tmp_path / "ckpt"), str(spec), "--lock", str(tmp_path / "init.lock")]) == 0
    assert "every tensor matches the spec and the lock" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "ckpt"), str(spec), "--seed", "4"]) == 1
    # The default output: a folder named after the manifest, beside it.
    assert main(["apply", str(model), str(spec), "--quiet"]) == 0
    assert not vsconf.verify(tmp_path / "m.init", SPEC)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_a_manifest_can_become_one_file(tmp_path, suffix):
    model = manifest(tmp_path, {"tensors": TENSORS})
    if suffix == ".npz":
        with pytest.raises(ModelError, match=r"tensor 'fc2.weight' is bfloat16, which an .npz file cannot hold"):
            vsconf.apply(model, SPEC, tmp_path / "out.npz")
        model = manifest(tmp_path, {"tensors": {**TENSORS, "fc2.weight": {"shape": [4, 32], "dtype": "float64"}}})
    result = vsconf.apply(model, SPEC, tmp_path / f"out{suffix}", lock=tmp_path / "init.lock")
    assert not vsconf.verify(tmp_path / f"out{suffix}", SPEC, lock=tmp_path / "init.lock")
    with formats.open_model(tmp_path / f"out{suffix}") as adapter:
        stored = adapter.read("fc2.weight")
    assert stored.tobytes() == generate(result.plan.entry("fc2.weight")).tobytes()


def test_tensors_no_rule_fills_are_refused_not_left_uninitialized(tmp_path):
    model = manifest(tmp_path, {"tensors": {**TENSORS, "norm.scale": {"shape": [32]}}})
    with pytest.raises(MatchError, match=r"1 would be left uninitialized: 'norm.scale' \(unmatched\)"):
        vsconf.apply(model, SPEC, tmp_path / "ckpt")
    keep = parse_spec(SPEC_TEXT + "  - match: norm.scale\n    init: keep\n", source="k.yaml")
    with pytest.raises(MatchError, match=r"'norm.scale' \(kept by rules\[2\]"):
        vsconf.apply(model, keep, tmp_path / "ckpt")
    ones = parse_spec(SPEC_TEXT + "  - match: norm.scale\n    init: ones\n", source="o.yaml")
    vsconf.apply(model, ones, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt.lock").exists() and not vsconf.verify(tmp_path / "ckpt", ones)


def test_a_manifest_has_no_values_to_verify_or_replace(tmp_path):
    model = manifest(tmp_path, {"tensors": TENSORS})
    with pytest.raises(ModelError, match="a shapes manifest holds no values"):
        vsconf.verify(model, SPEC)
    with pytest.raises(ModelError, match="cannot be replaced by its checkpoint"):
        vsconf.apply(model, SPEC, in_place=True)
    with pytest.raises(ModelError, match=r"out.onnx: the output of m.shapes.json is a folder, a .safetensors or an .npz file"):
        vsconf.apply(model, SPEC, tmp_path / "out.onnx")


def test_the_cli_reports_a_bad_manifest_in_one_line(tmp_path):
    manifest(tmp_path, {"tensors": {"a": {"shape": "3x4"}}})
    spec = tmp_path / "init.yaml"
    spec.write_text(SPEC_TEXT)
    done = subprocess.run(
        [sys.executable, "-m", "vsconf", "apply", "m.shapes.json", "init.yaml", "-o", "ckpt/"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert done.returncode == 1
    assert done.stderr == 'vsconf: error: m.shapes.json: tensors.a.shape: expected a list of at most 64 non-negative integers, got "3x4"\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init.yaml", "m.shapes.json"]
