"""Folder outputs own only their checkpoint, and every name survives its output format.

A folder as people keep one holds more than one checkpoint's files: an EMA beside the
weights, configs, tokenizer files, specs, notes.  Replacing a checkpoint there (``--force``,
``--in-place``) may change exactly the files its own index names (and its single-file
form), and a run whose new names would land on anything else is refused before any work.
Names an output format cannot hold faithfully are refused, naming the tensor and the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import make_model

from bad_inputs.cases_sharded import index, st_bytes
from bad_inputs.common import GOOD_SPEC, npy_bytes, zip_members
from bad_inputs.harness import Case

WARNING = ""  # rank-1 tensors: no layout warning
SHARD = st_bytes({"w": 4})
SHARD2 = st_bytes({"v": 2})
# A checkpoint "model" of two shards, an EMA of its own, a config, notes and a spec.
FOLDER = {
    "spec.yaml": GOOD_SPEC,
    "ckpt/model-00001-of-00002.safetensors": SHARD,
    "ckpt/model-00002-of-00002.safetensors": SHARD2,
    "ckpt/model.safetensors.index.json": index({"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}),
    "ckpt/ema-00001-of-00001.safetensors": st_bytes({"w": 4, "v": 2}),
    "ckpt/ema.safetensors.index.json": index({"w": "ema-00001-of-00001.safetensors", "v": "ema-00001-of-00001.safetensors"}),
    "ckpt/config.json": '{"model_type": "toy"}',
    "ckpt/notes.txt": "mine",
}
MANIFEST = {"spec.yaml": GOOD_SPEC, "m.shapes.json": '{"tensors": {"w": {"shape": [4]}, "v": {"shape": [2]}}}'}
MODEL_FILES = frozenset(
    {"ckpt/model-00001-of-00002.safetensors", "ckpt/model-00002-of-00002.safetensors", "ckpt/model.safetensors.index.json"}
)


def manifest(tensors: dict) -> str:
    return json.dumps({"tensors": tensors})


def _tied_onnx() -> bytes:
    """w read by two Gemms, and a node output already named like w's first untied copy."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["w:a"], name="a"),
        helper.make_node("Gemm", ["w:a", "w"], ["y"], name="b", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], [w],
    )
    return make_model(graph, (("", 17),), ir_version=8).SerializeToString()


def _linked_output(folder: Path) -> None:
    (folder / "real").mkdir()
    os.symlink("real", folder / "out")


CASES = [
    # ------------------------------------------------------------------ folder ownership
    Case(
        "in-place-changes-only-its-checkpoint",
        ("apply", "ckpt", "spec.yaml", "--in-place", "--quiet"),
        0,
        WARNING,
        files=FOLDER,
        changed=MODEL_FILES,
    ),
    Case(
        "in-place-on-the-ema-index-changes-only-the-ema",
        ("apply", "ckpt/ema.safetensors.index.json", "spec.yaml", "--in-place", "--quiet"),
        0,
        WARNING,
        files=FOLDER,
        changed=frozenset({"ckpt/ema-00001-of-00001.safetensors", "ckpt/ema.safetensors.index.json"}),
    ),
    Case(
        "force-over-a-folder-keeps-the-other-checkpoint",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "ckpt", "--force", "--quiet"),
        0,
        WARNING,
        files={**FOLDER, **MANIFEST},
        changed=frozenset({"ckpt/model.safetensors.index.json"}),
        removed=frozenset({"ckpt/model-00001-of-00002.safetensors", "ckpt/model-00002-of-00002.safetensors"}),
        created=frozenset({"ckpt/model-00001-of-00001.safetensors"}),
    ),
    Case(
        "existing-checkpoint-without-force",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "ckpt"),
        1,
        "vsconf: error: ckpt: holds the checkpoint model.safetensors.index.json; use --force to replace it, "
        "or -o to write elsewhere\n",
        files={**FOLDER, **MANIFEST},
    ),
    Case(
        "a-folder-of-other-files-needs-no-force",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/", "--quiet"),
        0,
        WARNING,
        files={**MANIFEST, "out/config.json": "{}", "out/notes.txt": "mine"},
        created=frozenset({"out/model-00001-of-00001.safetensors", "out/model.safetensors.index.json"}),
    ),
    Case(
        "new-shard-name-lands-on-a-file-no-index-names",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out", "--force"),
        1,
        "vsconf: error: out: the output would replace model-00001-of-00001.safetensors (not part of the checkpoint "
        "it replaces); vsconf replaces only the files of the checkpoint it writes\n",
        files={**MANIFEST, "out/model-00001-of-00001.safetensors": "my own file"},
    ),
    Case(
        "new-shard-name-is-another-checkpoints-shard",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out", "--force"),
        1,
        "vsconf: error: out: the output would replace model-00001-of-00001.safetensors (the checkpoint "
        "ema.safetensors.index.json names it); vsconf replaces only the files of the checkpoint it writes\n",
        files={
            **MANIFEST,
            "out/model-00001-of-00001.safetensors": SHARD,
            "out/ema.safetensors.index.json": index({"w": "model-00001-of-00001.safetensors"}),
        },
    ),
    Case(
        "new-shard-name-another-index-claims-though-absent",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/"),
        1,
        "vsconf: error: out: the output would replace model-00001-of-00001.safetensors (the checkpoint "
        "ema.safetensors.index.json names it); vsconf replaces only the files of the checkpoint it writes\n",
        files={**MANIFEST, "out/ema.safetensors.index.json": index({"w": "model-00001-of-00001.safetensors"})},
    ),
    Case(
        "replaced-index-unreadable",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out", "--force"),
        1,
        "vsconf: error: out/model.safetensors.index.json:1:2: invalid JSON: Expecting property name enclosed in "
        "double quotes; vsconf cannot tell which files that checkpoint owns, so it replaces none\n",
        files={**MANIFEST, "out/model.safetensors.index.json": "{oops", "out/model-00001-of-00001.safetensors": SHARD},
    ),
    Case(
        "old-index-names-the-spec-which-stays",
        ("apply", "m.shapes.json", "out/spec.safetensors", "-o", "out", "--force", "--quiet"),
        0,
        "vsconf: warning: kept out/spec.safetensors: it is the spec\n",
        files={
            **MANIFEST,
            "out/spec.safetensors": GOOD_SPEC,
            "out/model-00001-of-00009.safetensors": SHARD,
            "out/model.safetensors.index.json": index({"w": "model-00001-of-00009.safetensors", "v": "spec.safetensors"}),
        },
        changed=frozenset({"out/model.safetensors.index.json"}),
        removed=frozenset({"out/model-00001-of-00009.safetensors"}),
        created=frozenset({"out/model-00001-of-00001.safetensors"}),
    ),
    Case(
        "a-stale-single-file-form-goes-with-its-checkpoint",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out", "--force", "--quiet"),
        0,
        WARNING,
        files={**MANIFEST, "out/model.safetensors": st_bytes({"w": 4, "v": 2}), "out/tokenizer.json": "{}"},
        removed=frozenset({"out/model.safetensors"}),
        created=frozenset({"out/model-00001-of-00001.safetensors", "out/model.safetensors.index.json"}),
    ),
    Case(
        "new-folder-gets-the-inputs-configs",
        ("apply", "ckpt", "spec.yaml", "-o", "new/deeper/", "--quiet"),
        0,
        WARNING,
        files=FOLDER,
        created=frozenset(
            {
                "new", "new/deeper", "new/deeper/config.json", "new/deeper/notes.txt",
                "new/deeper/model-00001-of-00002.safetensors", "new/deeper/model-00002-of-00002.safetensors",
                "new/deeper/model.safetensors.index.json",
            }
        ),
    ),
    Case(
        "a-differing-config-in-the-output-is-kept",
        ("apply", "ckpt", "spec.yaml", "-o", "out", "--quiet"),
        0,
        WARNING + "vsconf: warning: kept out/config.json: it differs from ckpt/config.json, and vsconf replaces only "
        "the checkpoint's own files\n",
        files={**FOLDER, "out/config.json": '{"model_type": "mine"}'},
        created=frozenset(
            {
                "out/notes.txt", "out/model-00001-of-00002.safetensors", "out/model-00002-of-00002.safetensors",
                "out/model.safetensors.index.json",
            }
        ),
    ),
    Case(
        "output-is-the-input-folder",
        ("apply", "ckpt", "spec.yaml", "-o", "ckpt/"),
        1,
        "vsconf: error: ckpt: the output is the input model; use --in-place to replace it\n",
        files=FOLDER,
    ),
    Case(
        "a-second-checkpoint-beside-the-input",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "ckpt/seed.safetensors.index.json", "--quiet"),
        0,
        WARNING,
        files={**FOLDER, **MANIFEST},
        created=frozenset({"ckpt/seed-00001-of-00001.safetensors", "ckpt/seed.safetensors.index.json"}),
    ),
    Case(
        "lock-would-take-a-shards-name",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/", "--lock", "out/model-00001-of-00001.safetensors"),
        1,
        "vsconf: error: out/model-00001-of-00001.safetensors: the lock would replace "
        "model-00001-of-00001.safetensors, a file of the output\n",
        files=MANIFEST,
    ),
    Case(
        "output-folder-is-a-link",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out", "--force"),
        1,
        "vsconf: error: out: cannot write the output folder: it exists and is not a folder\n",
        files=MANIFEST,
        build=_linked_output,
    ),
    Case(
        "folder-output-under-a-file",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "spec.yaml/out/"),
        1,
        "vsconf: error: spec.yaml/out: cannot write the output: spec.yaml is not a folder\n",
        files=MANIFEST,
    ),
    Case(
        "one-tensor-in-two-shards",
        ("plan", "ckpt", "spec.yaml"),
        1,
        "vsconf: error: ckpt/model.safetensors.index.json: tensor 'w' is held by both 'a.safetensors' and "
        "'b.safetensors'; a checkpoint holds each tensor once\n",
        files={
            "spec.yaml": GOOD_SPEC,
            "ckpt/a.safetensors": SHARD,
            "ckpt/b.safetensors": st_bytes({"v": 2, "w": 4}),
            "ckpt/model.safetensors.index.json": index({"w": "a.safetensors", "v": "b.safetensors"}),
        },
    ),
    Case(
        "npz-to-safetensors-converts",
        ("apply", "m.npz", "spec.yaml", "-o", "out.safetensors", "--quiet"),
        0,
        "",
        files={"spec.yaml": GOOD_SPEC, "m.npz": zip_members([("w.npy", npy_bytes(np.zeros(3, np.float32)))])},
        created=frozenset({"out.safetensors"}),
    ),
    Case(
        "onnx-to-another-format",
        ("apply", "m.onnx", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: out.npz: the output of m.onnx is an .onnx file\n",
        files={"spec.yaml": GOOD_SPEC, "m.onnx": _tied_onnx()},
    ),
    Case(
        "state-dict-to-an-unknown-format",
        ("apply", "m.npz", "spec.yaml", "-o", "out.bin"),
        1,
        "vsconf: error: out.bin: the output of m.npz is an .npz or a .safetensors file, or a folder\n",
        files={"spec.yaml": GOOD_SPEC, "m.npz": zip_members([("w.npy", npy_bytes(np.zeros(3, np.float32)))])},
    ),
    # ------------------------------------------------------------------ names per format
    Case(
        "npz-name-with-nul",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: out.npz: tensor 'a\\x00b': its member name 'a\\x00b.npy' has a NUL character, which cuts "
        "a zip member's name short; an .npz file cannot hold it\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"a\x00b": {"shape": [2]}})},
    ),
    Case(
        "npz-name-climbs-out",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: out.npz: tensor '../x': its member name '../x.npy' has a '..' part, which unzipping would "
        "follow out of its folder; an .npz file cannot hold it\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"../x": {"shape": [2]}})},
    ),
    Case(
        "npz-name-absolute",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: out.npz: tensor '/etc/x': its member name '/etc/x.npy' is an absolute path, which "
        "unzipping would write outside its folder; an .npz file cannot hold it\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"/etc/x": {"shape": [2]}})},
    ),
    Case(
        "npz-name-with-a-newline",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: out.npz: tensor 'a\\nb': its member name 'a\\nb.npy' has a control character, which "
        "unzipping would put in a file name; an .npz file cannot hold it\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"a\nb": {"shape": [2]}})},
    ),
    Case(
        "npz-names-that-load-as-one",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: out.npz: tensor 'w.npy' would load from an .npz file as the member 'w.npy', which holds "
        "tensor 'w'\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"w": {"shape": [2]}, "w.npy": {"shape": [3]}})},
    ),
    Case(
        "npz-copied-member-climbs-out",
        ("apply", "m.npz", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: out.npz: member '../evil': its member name '../evil' has a '..' part, which unzipping "
        "would follow out of its folder; an .npz file cannot hold it\n",
        files={"spec.yaml": GOOD_SPEC, "m.npz": zip_members([("w.npy", npy_bytes(np.zeros(3, np.float32))), ("../evil", b"x")])},
    ),
    Case(
        "safetensors-name-is-the-metadata-key",
        ("apply", "m.npz", "spec.yaml", "-o", "out.safetensors"),
        1,
        "vsconf: error: out.safetensors: tensor '__metadata__': its name is the key a safetensors header keeps "
        "for its metadata\n",
        files={"spec.yaml": GOOD_SPEC, "m.npz": zip_members([("__metadata__.npy", npy_bytes(np.zeros(3, np.float32)))])},
    ),
    Case(
        "sharded-name-is-the-metadata-key",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/"),
        1,
        "vsconf: error: out/model-00001-of-00001.safetensors: tensor '__metadata__': its name is the key a "
        "safetensors header keeps for its metadata\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"__metadata__": {"shape": [2]}})},
    ),
    Case(
        "manifest-lone-surrogate",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.json: tensors.\\ud800: a tensor name must be valid Unicode text (this one holds a "
        "lone surrogate)\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": '{"tensors": {"\\ud800": {"shape": [2]}}}'},
    ),
    Case(
        "manifest-yaml-tensor-twice",
        ("plan", "m.shapes.yaml", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.yaml:4:3: tensors.w: given twice (first at line 2)\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.yaml": "tensors:\n  w: {shape: [4]}\n  v: {shape: [2]}\n  w: {shape: [3]}\n"},
    ),
    Case(
        "manifest-json-tensor-twice",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.json: key 'w' is given twice\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": '{"tensors": {"w": {"shape": [4]}, "w": {"shape": [3]}}}'},
    ),
    Case(
        "manifest-tied-to-nothing",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.json: tensors.head.same_as: expected the name of another tensor of the manifest "
        "(not a tied one), got \"embed\"\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"w": {"shape": [4]}, "head": {"same_as": "embed"}})},
    ),
    Case(
        "manifest-tied-to-a-tied-one",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.json: tensors.b.same_as: expected the name of another tensor of the manifest "
        "(not a tied one), got \"a\"\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"w": {"shape": [4]}, "a": {"same_as": "w"}, "b": {"same_as": "a"}})},
    ),
    Case(
        "manifest-tied-with-another-shape",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.json: tensors.head.shape: [4, 2] differs from the shape of 'w', [4]\n",
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"w": {"shape": [4]}, "head": {"same_as": "w", "shape": [4, 2]}})},
    ),
    Case(
        "manifest-tied-written-once",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/", "--quiet"),
        0,
        WARNING,
        files={"spec.yaml": GOOD_SPEC, "m.shapes.json": manifest({"w": {"shape": [4]}, "head": {"same_as": "w"}})},
        created=frozenset({"out", "out/model-00001-of-00001.safetensors", "out/model.safetensors.index.json"}),
    ),
    Case(
        "untie-copy-name-taken",
        ("plan", "m.onnx", "spec.yaml", "--untie"),
        1,
        "vsconf: error: m.onnx: tensor 'w': its untied copy would be named 'w:a', which the model already uses; "
        "rename that value or untie fewer tensors\n",
        files={"spec.yaml": GOOD_SPEC, "m.onnx": _tied_onnx()},
    ),
]
