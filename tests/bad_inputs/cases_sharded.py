"""Hostile sharded checkpoints, shapes manifests and folder outputs."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from bad_inputs.common import GOOD_SPEC
from bad_inputs.harness import Case


def st_bytes(tensors: dict[str, int]) -> bytes:
    """A .safetensors file of float32 vectors (name -> length), all zeros."""
    header, offset = {}, 0
    for name, length in tensors.items():
        header[name] = {"dtype": "F32", "shape": [length], "data_offsets": [offset, offset + 4 * length]}
        offset += 4 * length
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(offset)


def index(weight_map, **metadata) -> str:
    return json.dumps({"metadata": metadata, "weight_map": weight_map} if metadata else {"weight_map": weight_map})


SHARD = st_bytes({"w": 4})
GOOD = {"ckpt/a.safetensors": SHARD, "spec.yaml": GOOD_SPEC}


def _escaping_link(folder: Path) -> None:
    (folder.parent / "outside.safetensors").write_bytes(SHARD)
    os.symlink("../../outside.safetensors", folder / "ckpt" / "a.safetensors")


CASES = [
    Case(
        "index-bad-json",
        ("plan", "ckpt", "spec.yaml"),
        1,
        "vsconf: error: ckpt/model.safetensors.index.json:1:15: invalid JSON: Expecting ':' delimiter\n",
        files={**GOOD, "ckpt/model.safetensors.index.json": '{"weight_map" {}}'},
    ),
    Case(
        "index-shard-escapes-with-dotdot",
        ("plan", "ckpt/model.safetensors.index.json", "spec.yaml"),
        1,
        "vsconf: error: ckpt/model.safetensors.index.json: weight_map['w']: shard \"../a.safetensors\" "
        "is not a file name in the index's folder\n",
        files={**GOOD, "a.safetensors": SHARD, "ckpt/model.safetensors.index.json": index({"w": "../a.safetensors"})},
    ),
    Case(
        "index-shard-absolute",
        ("plan", "ckpt", "spec.yaml"),
        1,
        "vsconf: error: ckpt/model.safetensors.index.json: weight_map['w']: shard \"/etc/passwd\" "
        "is not a file name in the index's folder\n",
        files={**GOOD, "ckpt/model.safetensors.index.json": index({"w": "/etc/passwd"})},
    ),
    Case(
        "index-shard-links-out",
        ("plan", "ckpt", "spec.yaml"),
        1,
        "vsconf: error: ckpt/model.safetensors.index.json: weight_map['w']: shard 'a.safetensors' "
        "is a link to a file outside the index's folder\n",
        files={"spec.yaml": GOOD_SPEC, "ckpt/model.safetensors.index.json": index({"w": "a.safetensors"})},
        build=_escaping_link,
    ),
    Case(
        "index-names-a-missing-tensor",
        ("apply", "ckpt", "spec.yaml", "-o", "out/"),
        1,
        "vsconf: error: ckpt/model.safetensors.index.json: weight_map maps tensor 'v' to 'a.safetensors', "
        "which does not hold it\n",
        files={**GOOD, "ckpt/model.safetensors.index.json": index({"w": "a.safetensors", "v": "a.safetensors"})},
    ),
    Case(
        "index-total-size-lies",
        ("verify", "ckpt", "spec.yaml"),
        1,
        "vsconf: error: ckpt/model.safetensors.index.json: metadata.total_size is 1000, "
        "but the shards' tensors hold 16 bytes\n",
        files={**GOOD, "ckpt/model.safetensors.index.json": index({"w": "a.safetensors"}, total_size=1000)},
    ),
    Case(
        "index-shard-is-garbage",
        ("plan", "ckpt", "spec.yaml"),
        1,
        "vsconf: error: ckpt/a.safetensors: cannot read as .safetensors: Error while deserializing header: header too large\n",
        files={
            "spec.yaml": GOOD_SPEC,
            "ckpt/a.safetensors": b"\xff" * 64,
            "ckpt/model.safetensors.index.json": index({"w": "a.safetensors"}),
        },
    ),
    Case(
        "manifest-negative-dimension",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/"),
        1,
        "vsconf: error: m.shapes.json: tensors.w.shape: expected a list of at most 64 non-negative integers, got [4, -4]\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": '{"tensors": {"w": {"shape": [4, -4]}}}'},
    ),
    Case(
        "manifest-yaml-alias-bomb",
        ("plan", "m.shapes.yaml", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.yaml:2:22: a manifest cannot use YAML aliases\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.yaml": "a: &a [4, 4]\ntensors: {w: {shape: *a}}\n"},
    ),
    Case(
        "manifest-unfilled-tensors",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/"),
        1,
        "vsconf: error: m.shapes.json: a manifest holds no values, so every tensor needs a rule that fills it; "
        "1 would be left uninitialized: 'w' (kept by rules[0] (line 4)) (write `init: zeros` where zeros are meant)\n",
        files={
            "spec.yaml": "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: keep\n",
            "m.shapes.json": '{"tensors": {"w": {"shape": [4]}}}',
        },
    ),
    Case(
        "folder-output-keeps-other-files-with-force",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out", "--force", "--quiet"),
        0,
        "",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": '{"tensors": {"w": {"shape": [4]}}}', "out/notes.txt": "mine"},
        created=frozenset({"out/model-00001-of-00001.safetensors", "out/model.safetensors.index.json"}),
    ),
    Case(
        "manifest-to-checkpoint",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/", "--quiet", "--shard-size", "20"),
        0,
        "spec.yaml: warning: layout: auto reads state-dict shapes with the tf rule (..., in, out) for rules[0] (line 4); "
        "write `layout: torch` for PyTorch state dicts ([out, in, k...])\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": '{"tensors": {"w": {"shape": [4]}, "v": {"shape": [2, 3]}}}'},
        created=frozenset(
            {"out", "out/model.safetensors.index.json", "out/model-00001-of-00002.safetensors", "out/model-00002-of-00002.safetensors"}
        ),
    ),
]
