"""Hostile files and paths around the model: what a model path may be, .npz and
.safetensors contents, where outputs and locks may go, and lock files to verify with."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from bad_inputs.common import GOOD_SPEC, npy_bytes, npz_bytes, zip_members, make_fifo, make_folder
from bad_inputs.harness import Case

NPZ = {"m.npz": npz_bytes(), "spec.yaml": GOOD_SPEC}
USAGE_APPLY = (
    "usage: vsconf apply [-h] [-o OUTPUT | --in-place] [--force] [--seed SEED]\n"
    "                    [--jobs JOBS] [--lock LOCK] [--materialize]\n"
    "                    [--untie [all|conflicts]] [--dry-run] [--quiet]\n"
    "                    [--var NAME=VALUE] [--vars FILE] [--shard-size SIZE]\n"
    "                    [--scheduler SCHEDULER] [--dask-workers N]\n"
    "                    [--task-size SIZE]\n"
    "                    MODEL SPEC\n"
)


def _npy_with_header(header: str, data: bytes) -> bytes:
    """An .npy stream (format 1.0) with this header dict text and these data bytes, unchecked."""
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _npz_with(members: dict[str, bytes]) -> bytes:
    return zip_members(list(members.items()))


def _bad_crc_npz() -> bytes:
    """A stored member (int64 steps, which vsconf copies) whose data no longer fits its CRC."""
    good = zip_members([("w.npy", npy_bytes(np.ones((2, 2), np.float32))), ("steps.npy", npy_bytes(np.arange(4)))])
    index = good.rindex(npy_bytes(np.arange(4))[-8:])
    return good[:index] + b"\xff" + good[index + 1 :]


def _odd_compression_npz() -> bytes:
    """A member (not even an array) whose local and central headers name compression method 99."""
    data = bytearray(zip_members([("w.npy", npy_bytes(np.ones(2, np.float32))), ("notes.txt", b"hello")]))
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.index(signature, data.index(signature) + 1)  # the second member's header
        data[at + offset : at + offset + 2] = (99).to_bytes(2, "little")
    return bytes(data)


def _link(name: str, target: str):
    def build(folder: Path) -> None:
        os.symlink(target, folder / name)

    return build


def _lock(payload) -> str:
    return payload if isinstance(payload, str) else json.dumps(payload)


GOOD_LOCK = {"vsconf_lock": 1, "seed": 7, "spec_sha256": "x", "tensors": [], "kept": []}


CASES = [
    # ------------------------------------------------------------------ the model path
    Case(
        "model-missing",
        ("plan", "missing.npz", "spec.yaml"),
        1,
        "vsconf: error: missing.npz: no such file\n",
        files={"spec.yaml": GOOD_SPEC},
    ),
    Case(
        "model-is-a-folder",
        ("apply", "dir.npz", "spec.yaml"),
        1,
        "vsconf: error: dir.npz: the model is a folder, not a regular file\n",
        files={"spec.yaml": GOOD_SPEC},
        build=make_folder("dir.npz"),
    ),
    Case(
        "model-is-a-fifo",
        ("plan", "pipe.onnx", "spec.yaml"),
        1,
        "vsconf: error: pipe.onnx: the model is a FIFO, not a regular file\n",
        files={"spec.yaml": GOOD_SPEC},
        build=make_fifo("pipe.onnx"),
    ),
    Case(
        "model-is-dev-zero",
        ("apply", "/dev/zero", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: /dev/zero: the model is a character device, not a regular file\n",
        files={"spec.yaml": GOOD_SPEC},
    ),
    Case(
        "model-symlink-loop",
        ("inspect", "loop.npz"),
        1,
        "vsconf: error: loop.npz: cannot read the model: Too many levels of symbolic links\n",
        build=_link("loop.npz", "loop.npz"),
    ),
    Case(
        "model-dangling-symlink",
        ("plan", "gone.npz", "spec.yaml"),
        1,
        "vsconf: error: gone.npz: no such file\n",
        files={"spec.yaml": GOOD_SPEC},
        build=_link("gone.npz", "nowhere.npz"),
    ),
    Case(
        "model-unknown-suffix",
        ("plan", "model.pt", "spec.yaml"),
        1,
        "vsconf: error: model.pt: unknown model format '.pt'; expected .onnx, .npz or .safetensors\n",
        files={"model.pt": b"\x80\x02}q\x00.", "spec.yaml": GOOD_SPEC},
    ),
    # ------------------------------------------------------------------ .npz contents
    Case(
        "npz-empty-file",
        ("plan", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: cannot read as .npz: File is not a zip file\n",
        files={"m.npz": b"", "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "npz-garbage",
        ("apply", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: cannot read as .npz: File is not a zip file\n",
        files={"m.npz": b"PK\x03\x04" + b"\x00" * 200, "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "npz-truncated",
        ("apply", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: cannot read as .npz: File is not a zip file\n",
        files={"m.npz": npz_bytes()[:-40], "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "npz-duplicate-members",
        ("apply", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: two members are named 'w.npy'\n",
        files={
            "m.npz": zip_members(
                [("w.npy", npy_bytes(np.ones(3, np.float32))), ("w.npy", npy_bytes(np.ones(5, np.float32)))]
            ),
            "spec.yaml": GOOD_SPEC,
        },
    ),
    Case(
        "npz-header-lies-about-shape",
        ("apply", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'w.npy': holds 12 bytes of data, its header's shape [100] (float32) needs 400\n",
        files={
            "m.npz": _npz_with({"w.npy": _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (100,), }", b"\0" * 12)}),
            "spec.yaml": GOOD_SPEC,
        },
    ),
    Case(
        "npz-header-needs-petabytes",
        ("plan", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'w.npy': holds 16 bytes of data, its header's shape [1125899906842624] (float32) needs 4503599627370496\n",
        files={
            "m.npz": _npz_with({"w.npy": _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2**50,), }".replace("2**50", str(2**50)), b"\0" * 16)}),
            "spec.yaml": GOOD_SPEC,
        },
    ),
    Case(
        "npz-header-overflows-int64",
        ("plan", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'w.npy' is not a NumPy array: shape [4611686018427387904, 4611686018427387904] of float32 needs more than 2**63 bytes\n",
        files={
            "m.npz": _npz_with({"w.npy": _npy_with_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({2**62}, {2**62}), }}", b"")}),
            "spec.yaml": GOOD_SPEC,
        },
    ),
    Case(
        "npz-negative-dimension",
        ("plan", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'w.npy' is not a NumPy array: negative dimension in shape [-4, 3]\n",
        files={
            "m.npz": _npz_with({"w.npy": _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-4, 3), }", b"\0" * 48)}),
            "spec.yaml": GOOD_SPEC,
        },
    ),
    Case(
        "npz-object-array",
        ("apply", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'w.npy' is not a NumPy array: it holds Python objects, which vsconf never unpickles\n",
        files={
            "m.npz": _npz_with({"w.npy": _npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", b"\x80\x04N.")}),
            "spec.yaml": GOOD_SPEC,
        },
    ),
    Case(
        "npz-member-not-npy",
        ("plan", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'w.npy' is not a NumPy array: "
        "the magic string is not correct; expected b'\\x93NUMPY', got b'hello '\n",
        files={"m.npz": _npz_with({"w.npy": b"hello world"}), "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "npz-header-not-a-dict",
        ("plan", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'w.npy' is not a NumPy array: Header is not a dictionary: [1, 2]\n",
        files={"m.npz": _npz_with({"w.npy": _npy_with_header("[1, 2]", b"")}), "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "npz-bad-crc-in-a-copied-member",
        ("apply", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'steps.npy': cannot read: Bad CRC-32 for file 'steps.npy'\n",
        files={"m.npz": _bad_crc_npz(), "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "npz-bad-crc-in-place",
        ("apply", "m.npz", "spec.yaml", "--in-place"),
        1,
        "vsconf: error: m.npz: member 'steps.npy': cannot read: Bad CRC-32 for file 'steps.npy'\n",
        files={"m.npz": _bad_crc_npz(), "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "npz-unknown-compression-method",
        ("apply", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.npz: member 'notes.txt' uses compression method 99, which vsconf cannot read "
        "(stored, deflate, bzip2 and lzma can be read)\n",
        files={"m.npz": _odd_compression_npz(), "spec.yaml": GOOD_SPEC},
    ),
    # ------------------------------------------------------------------ .safetensors contents
    Case(
        "safetensors-garbage",
        ("plan", "m.safetensors", "spec.yaml"),
        1,
        "vsconf: error: m.safetensors: cannot read as .safetensors: Error while deserializing header: header too large\n",
        files={"m.safetensors": b"\xff" * 64, "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "safetensors-empty",
        ("plan", "m.safetensors", "spec.yaml"),
        1,
        "vsconf: error: m.safetensors: cannot read as .safetensors: Error while deserializing header: header too small\n",
        files={"m.safetensors": b"", "spec.yaml": GOOD_SPEC},
    ),
    Case(
        "safetensors-offsets-past-the-data",
        ("apply", "m.safetensors", "spec.yaml"),
        1,
        "vsconf: error: m.safetensors: cannot read as .safetensors: Error while deserializing header: "
        "incomplete metadata, file not fully covered\n",
        files={
            "m.safetensors": (
                lambda header: struct.pack("<Q", len(header)) + header + b"\0" * 8
            )(json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()),
            "spec.yaml": GOOD_SPEC,
        },
    ),
    # ------------------------------------------------------------------ where the output goes
    Case(
        "output-exists-without-force",
        ("apply", "m.npz", "spec.yaml", "-o", "out.npz"),
        1,
        "vsconf: error: out.npz: exists; use --force to overwrite it, or -o to write elsewhere\n",
        files={**NPZ, "out.npz": b"precious"},
    ),
    Case(
        "default-output-exists-without-force",
        ("apply", "m.npz", "spec.yaml"),
        1,
        "vsconf: error: m.init.npz: exists; use --force to overwrite it, or -o to write elsewhere\n",
        files={**NPZ, "m.init.npz": b"precious"},
    ),
    Case(
        # A folder output is one checkpoint among the folder's files: the others stay as they are.
        "folder-output-beside-other-files-with-force",
        ("apply", "m.npz", "spec.yaml", "-o", "outdir", "--force", "--quiet"),
        0,
        "spec.yaml: warning: layout: auto reads state-dict shapes with the tf rule (..., in, out) for rules[0] (line 4); "
        "write `layout: torch` for PyTorch state dicts ([out, in, k...])\n",
        files={**NPZ, "outdir/notes.txt": "mine"},
        created=frozenset({"outdir/model-00001-of-00001.safetensors", "outdir/model.safetensors.index.json"}),
    ),
    Case(
        "output-is-a-fifo",
        ("apply", "m.npz", "spec.yaml", "-o", "out.npz", "--force"),
        1,
        "vsconf: error: out.npz: cannot write the output: it is not a regular file\n",
        files=NPZ,
        build=make_fifo("out.npz"),
    ),
    Case(
        "output-folder-missing-is-made",
        ("apply", "m.npz", "spec.yaml", "-o", "nope/deeper/out.npz", "--quiet"),
        0,
        "spec.yaml: warning: layout: auto reads state-dict shapes with the tf rule (..., in, out) for rules[0] (line 4); "
        "write `layout: torch` for PyTorch state dicts ([out, in, k...])\n",
        files=NPZ,
        created=frozenset({"nope", "nope/deeper", "nope/deeper/out.npz"}),
    ),
    Case(
        "output-folder-under-a-file",
        ("apply", "m.npz", "spec.yaml", "-o", "spec.yaml/out.npz"),
        1,
        "vsconf: error: spec.yaml/out.npz: cannot write the output: spec.yaml is not a folder\n",
        files=NPZ,
    ),
    Case(
        "output-is-the-spec-even-with-force",
        ("apply", "m.npz", "spec.yaml", "-o", "spec.yaml", "--force"),
        1,
        "vsconf: error: spec.yaml: the output would replace the spec\n",
        files=NPZ,
    ),
    Case(
        "output-is-the-input-spelled-differently",
        ("apply", "m.npz", "spec.yaml", "-o", "./sub/../m.npz", "--force"),
        1,
        "vsconf: error: sub/../m.npz: the output is the input model; use --in-place to replace it\n",
        files=NPZ,
        build=make_folder("sub"),
    ),
    Case(
        "output-is-a-link-to-the-input",
        ("apply", "m.npz", "spec.yaml", "-o", "alias.npz", "--force"),
        1,
        "vsconf: error: alias.npz: the output is the input model; use --in-place to replace it\n",
        files=NPZ,
        build=_link("alias.npz", "m.npz"),
    ),
    Case(
        "output-and-in-place",
        ("apply", "m.npz", "spec.yaml", "-o", "out.npz", "--in-place"),
        2,
        USAGE_APPLY + "vsconf apply: error: argument --in-place: not allowed with argument -o/--output\n",
        files=NPZ,
    ),
    Case(
        "force-replaces-only-the-output",
        ("apply", "m.npz", "spec.yaml", "-o", "out.npz", "--force", "--quiet"),
        0,
        "",
        files={**NPZ, "spec.yaml": GOOD_SPEC + "layout: torch\n", "out.npz": b"old output", "out.npz.data": b"x"},
        changed=frozenset({"out.npz"}),
        stdout="",
    ),
    # ------------------------------------------------------------------ where the lock goes
    Case(
        "lock-is-the-input",
        ("apply", "m.npz", "spec.yaml", "--lock", "m.npz", "--force"),
        1,
        "vsconf: error: m.npz: the lock would replace the input model\n",
        files=NPZ,
    ),
    Case(
        "lock-is-the-spec",
        ("apply", "m.npz", "spec.yaml", "--lock", "spec.yaml", "--force"),
        1,
        "vsconf: error: spec.yaml: the lock would replace the spec\n",
        files=NPZ,
    ),
    Case(
        "lock-is-the-output",
        ("apply", "m.npz", "spec.yaml", "-o", "out.npz", "--lock", "out.npz"),
        1,
        "vsconf: error: out.npz: the lock would replace the output\n",
        files=NPZ,
    ),
    Case(
        "lock-is-the-output-in-place",
        ("apply", "m.npz", "spec.yaml", "--in-place", "--lock", "./m.npz"),
        1,
        "vsconf: error: m.npz: the lock would replace the input model\n",
        files=NPZ,
    ),
    Case(
        "lock-exists-without-force",
        ("apply", "m.npz", "spec.yaml", "--lock", "old.lock.json"),
        1,
        "vsconf: error: old.lock.json: exists; use --force to overwrite it\n",
        files={**NPZ, "old.lock.json": "{}"},
    ),
    Case(
        "lock-folder-missing-is-made",
        ("apply", "m.npz", "spec.yaml", "--lock", "nope/m.lock.json", "--quiet"),
        0,
        "spec.yaml: warning: layout: auto reads state-dict shapes with the tf rule (..., in, out) for rules[0] (line 4); "
        "write `layout: torch` for PyTorch state dicts ([out, in, k...])\n",
        files=NPZ,
        created=frozenset({"m.init.npz", "nope", "nope/m.lock.json"}),
    ),
    Case(
        "lock-is-a-folder",
        ("apply", "m.npz", "spec.yaml", "--lock", "locks", "--force"),
        1,
        "vsconf: error: locks: cannot write the lock: it is a folder\n",
        files=NPZ,
        build=make_folder("locks"),
    ),
    Case(
        "lock-takes-the-data-file-name",
        ("apply", "m.npz", "spec.yaml", "-o", "out.onnx.npz", "--lock", "out.onnx.npz.data"),
        1,
        "vsconf: error: out.onnx.npz.data: the lock would take the name of the output's data file\n",
        files=NPZ,
    ),
    # ------------------------------------------------------------------ lock files given to verify
    Case(
        "verify-lock-missing",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: no such file\n",
        files=NPZ,
    ),
    Case(
        "verify-lock-is-a-fifo",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: the lock is a FIFO, not a regular file\n",
        files=NPZ,
        build=make_fifo("m.lock.json"),
    ),
    Case(
        "verify-lock-not-json",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json:2:3: the lock is not JSON: Expecting property name enclosed in double quotes\n",
        files={**NPZ, "m.lock.json": "{\n  seed: 7}"},
    ),
    Case(
        "verify-lock-not-utf8",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: the lock is not UTF-8 (byte 1)\n",
        files={**NPZ, "m.lock.json": b"{\xff}"},
    ),
    Case(
        "verify-lock-is-a-list",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: not a vsconf lock file (format 1): expected a JSON object at the top\n",
        files={**NPZ, "m.lock.json": "[1, 2]"},
    ),
    Case(
        "verify-lock-tensors-not-a-list",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: not a vsconf lock file (format 1): `tensors` must be a list\n",
        files={**NPZ, "m.lock.json": _lock({**GOOD_LOCK, "tensors": {"w": 1}})},
    ),
    Case(
        "verify-lock-tensor-name-not-a-string",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: not a vsconf lock file (format 1): tensors[1].name must be a string\n",
        files={**NPZ, "m.lock.json": _lock({**GOOD_LOCK, "tensors": [{"name": "w"}, {"name": 3}]})},
    ),
    Case(
        "verify-lock-seed-not-a-seed",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: not a vsconf lock file (format 1): `seed` must be an integer, 0 <= seed < 2**63\n",
        files={**NPZ, "m.lock.json": _lock({**GOOD_LOCK, "seed": -5})},
    ),
    Case(
        "verify-lock-seed-of-thousands-of-digits",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: the lock is not a vsconf lock file: Exceeds the limit (4300 digits) for integer string conversion\n",
        files={**NPZ, "m.lock.json": '{"vsconf_lock": 1, "seed": ' + "9" * 5000 + "}"},
    ),
    Case(
        "verify-lock-nested-too-deeply",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: the lock is not a vsconf lock file: nested too deeply\n",
        files={**NPZ, "m.lock.json": "[" * 100_000 + "]" * 100_000},
    ),
    Case(
        "verify-lock-of-another-format",
        ("verify", "m.npz", "spec.yaml", "--lock", "m.lock.json"),
        1,
        "vsconf: error: m.lock.json: not a vsconf lock file (format 1): `vsconf_lock` must be 1\n",
        files={**NPZ, "m.lock.json": _lock({**GOOD_LOCK, "vsconf_lock": 2})},
    ),
    # ------------------------------------------------------------------ command-line values
    Case(
        "seed-of-thousands-of-digits-on-the-command-line",
        ("plan", "m.npz", "spec.yaml", "--seed", "9" * 5000),
        2,
        "usage: vsconf plan [-h] [--format {table,json}] [--seed SEED] [--materialize]\n"
        "                   [--untie [all|conflicts]] [--stats] [--var NAME=VALUE]\n"
        "                   [--vars FILE]\n"
        "                   MODEL SPEC\n"
        "vsconf plan: error: argument --seed: expected an integer, 0 <= seed < 2**63, "
        f"got '{'9' * 20}... (5000 characters)'\n",
        files=NPZ,
    ),
    Case(
        "negative-seed-on-the-command-line",
        ("apply", "m.npz", "spec.yaml", "--seed=-1"),
        2,
        USAGE_APPLY + "vsconf apply: error: argument --seed: must satisfy 0 <= seed < 2**63, got -1\n",
        files=NPZ,
    ),
    Case(
        "jobs-out-of-range",
        ("apply", "m.npz", "spec.yaml", "--jobs", "100000"),
        2,
        USAGE_APPLY + "vsconf apply: error: argument --jobs: expected an integer from 1 to 1024, got 100000\n",
        files=NPZ,
    ),
]
