"""Work that stays linear in the input and bounded in the options, names that cannot forge
lines, and requests too big for memory (issue 18): each case is answered -- a result or one
line -- within the harness's 5 s, under its 1 GiB address-space limit."""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path

import numpy as np

from bad_inputs.cases_sharded import index, st_bytes
from bad_inputs.common import GOOD_SPEC, npz_bytes, onnx_bytes
from bad_inputs.harness import Case

KEEP_BIG = "vsconf: 1\nseed: 1\nlayout: torch\nrules:\n  - match: big\n    init: keep\n  - match: '*'\n    init: zeros\n"
ZEROS = "vsconf: 1\nseed: 1\nlayout: torch\nrules:\n  - match: '*'\n    init: zeros\n"
# Names a crafted model may hold: a newline that would print a forged error line, a carriage
# return and an escape sequence that would rewrite the screen, a line separator, a
# right-to-left override that would reverse what follows, a C1 "next line".
FORGED = ["w\nvsconf: error: forged", "x\r\x1b[2J", "y\u2028z\u202e", "v\x85"]
OVER_BUDGET = "takes more than 10000000 steps (the budget, about a second of work)"


def _manifest(tensors: dict[str, list[int]]) -> str:
    return json.dumps({"tensors": {name: {"shape": shape} for name, shape in tensors.items()}})


def _many_shards(count: int):
    """A sharded checkpoint of ``count`` shards, one tensor each (was quadratic to open)."""

    def build(folder: Path) -> None:
        ckpt = folder / "ckpt"
        ckpt.mkdir()
        weight_map = {}
        for i in range(count):
            name = f"s{i:05d}.safetensors"
            (ckpt / name).write_bytes(st_bytes({f"t{i:05d}": 2}))
            weight_map[f"t{i:05d}"] = name
        (ckpt / "model.safetensors.index.json").write_text(index(weight_map))

    return build


def _big_copy(folder: Path) -> None:
    """A checkpoint with 4 MiB of a tensor that is copied, not filled."""
    ckpt = folder / "ckpt"
    ckpt.mkdir()
    (ckpt / "a.safetensors").write_bytes(st_bytes({"big": 1 << 20, "small": 4}))
    (ckpt / "model.safetensors.index.json").write_text(index({"big": "a.safetensors", "small": "a.safetensors"}))


def _over_the_tensor_limit(folder: Path) -> None:
    """A million and one entries (numbers, not tensors: the count is checked first)."""
    with open(folder / "m.shapes.json", "w") as handle:
        handle.write('{"tensors": {')
        handle.write(",".join(f'"t{i}": 0' for i in range(1_000_001)))
        handle.write("}}")


def _random_ab_names(folder: Path) -> None:
    rng = random.Random(18)
    names = ["".join(rng.choice("ab") for _ in range(400)) for _ in range(400)]
    (folder / "m.shapes.json").write_text(_manifest({name: [1] for name in names}))


def _sparse_npz(folder: Path) -> None:
    """An .npz whose one stored member holds a float32 vector of 1 GiB + 4 bytes (a sparse
    file, so it costs no disk): more than the 1 GiB the harness lets a case allocate."""
    count = (1 << 28) + 1
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
    data_size = len(buffer.getvalue()) + 4 * count
    name = b"w.npy"
    local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 33, 0, data_size, data_size, len(name), 0)
    central = struct.pack(
        "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 0, 20, 0, 0, 0, 0, 33, 0, data_size, data_size, len(name), 0, 0, 0, 0, 0, 0
    )
    directory_at = len(local) + len(name) + data_size
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), directory_at, 0)
    with open(folder / "big.npz", "wb") as handle:
        handle.write(local + name + buffer.getvalue())
        handle.seek(directory_at)
        handle.write(central + name + end)


def _forged_safetensors(folder: Path) -> None:
    (folder / "f.safetensors").write_bytes(st_bytes({name: 2 for name in FORGED}))


def _tangled_onnx(folder: Path) -> None:
    """2,000 weights concatenated, then 2,000 Identity nodes before their MatMul: each
    weight's consumer lies 2,001 look-through steps away (was tensors x chain: quadratic)."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_builders import make_model

    count = 2000
    weights = [numpy_helper.from_array(np.ones((1, 4), np.float32), f"w{i}") for i in range(count)]
    nodes = [helper.make_node("Concat", [w.name for w in weights], ["c"], axis=0, name="cat")]
    nodes += [helper.make_node("Identity", ["c" if j == 0 else f"i{j - 1}"], [f"i{j}"], name=f"id{j}") for j in range(count)]
    nodes.append(helper.make_node("MatMul", ["x", f"i{count - 1}"], ["y"], name="mm"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, count])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]
    model = make_model(helper.make_graph(nodes, "g", inputs, outputs, weights), (("", 17),), ir_version=8)
    (folder / "model.onnx").write_bytes(model.SerializeToString())


def _widely_read_onnx(folder: Path) -> None:
    """One weight read by 30,000 nodes (its consumers were deduplicated in a list: quadratic)."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_builders import make_model

    count = 30_000
    nodes = [helper.make_node("Add", ["x", "w"], [f"y{i}"], name=f"add{i}") for i in range(count)]
    nodes.append(helper.make_node("Sum", [f"y{i}" for i in range(count)], ["out"], name="sum"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])]
    weight = numpy_helper.from_array(np.ones(4, np.float32), "w")
    model = make_model(helper.make_graph(nodes, "g", inputs, outputs, [weight]), (("", 17),), ir_version=8)
    (folder / "model.onnx").write_bytes(model.SerializeToString())


def _complex_npz() -> bytes:
    return npz_bytes({"w": np.ones(4, np.float32), "c": np.ones(2, np.complex64)})


CASES = [
    Case(
        "bounds-tiny-task-size-over-copied-tensors",
        ("apply", "ckpt", "spec.yaml", "-o", "out/", "--quiet", "--task-size", "1"),
        0,
        "",
        files={"spec.yaml": KEEP_BIG},
        build=_big_copy,
        created=frozenset({"out", "out/model.safetensors.index.json", "out/a.safetensors"}),  # the input's shard kept
    ),
    Case(
        "bounds-tiny-task-size-over-filled-tensors",
        ("apply", "m.shapes.json", "spec.yaml", "-o", "out/", "--quiet", "--task-size", "1", "--scheduler", "threads"),
        0,
        "",
        files={"spec.yaml": ZEROS, "m.shapes.json": _manifest({"a": [1024, 1024], **{f"b{i}": [3] for i in range(500)}})},
        created=frozenset({"out", "out/model.safetensors.index.json", "out/model-00001-of-00001.safetensors"}),
    ),
    Case(
        "bounds-index-of-many-shards",
        ("plan", "ckpt", "spec.yaml", "--format", "json"),
        0,
        "",
        files={"spec.yaml": ZEROS},
        build=_many_shards(12_000),
    ),
    Case(
        "bounds-manifest-over-the-tensor-limit",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.json: names 1000001 tensors, more than 1000000, the limit\n",
        files={"spec.yaml": ZEROS},
        build=_over_the_tensor_limit,
    ),
    Case(
        "bounds-yaml-manifest-over-its-size",
        ("plan", "m.shapes.yaml", "spec.yaml"),
        1,
        "vsconf: error: m.shapes.yaml: cannot read the YAML manifest: it is larger than 1,048,576 bytes, the limit\n",
        files={"spec.yaml": ZEROS, "m.shapes.yaml": "tensors:\n  a: {shape: [" + "1," * (1 << 19) + "1]}\n"},
    ),
    Case(
        "bounds-regex-over-the-cost-budget",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: spec.yaml:4:12: rules[0].match: 're:[ab]*a[ab]{300}': matching the spec's patterns, up to this one, "
        f"against the model's 400 tensor names {OVER_BUDGET}; narrow the pattern, or name the tensors with globs or literally\n",
        files={"spec.yaml": "vsconf: 1\nseed: 1\nrules:\n  - match: 're:[ab]*a[ab]{300}'\n    init: zeros\n"},
        build=_random_ab_names,
    ),
    Case(
        "bounds-regex-over-the-cost-budget-in-a-list",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: spec.yaml:4:16: rules[0].match[1]: 're:(?:a|b)*a(?:a|b){300}': matching the spec's patterns, up to this "
        f"one, against the model's 400 tensor names {OVER_BUDGET}; narrow the pattern, or name the tensors with globs or literally\n",
        files={
            "spec.yaml": "vsconf: 1\nseed: 1\nrules:\n  - match: [x, 're:(?:a|b)*a(?:a|b){300}']\n    init: zeros\n    optional: true\n"
            "  - match: '*'\n    init: ones\n"
        },
        build=_random_ab_names,
    ),
    Case(
        "bounds-many-rules-over-many-tensors",
        ("plan", "m.shapes.json", "spec.yaml"),
        1,
        "vsconf: error: spec.yaml: rules[498] (line 1498): matching the spec's rules, up to this one, against the model's 50000 "
        f"tensors {OVER_BUDGET}; use fewer rules\n",
        files={
            "spec.yaml": "vsconf: 1\nseed: 1\nrules:\n"
            + "  - role: [weight, other]\n    init: zeros\n    optional: true\n" * 600,
            "m.shapes.json": _manifest({f"layer{i}.weight": [2, 2] for i in range(50_000)}),
        },
    ),
    Case(
        "bounds-onnx-look-through-paths-past-the-limit",
        ("plan", "model.onnx", "spec.yaml"),
        1,
        "vsconf: error: model.onnx: following the ops vsconf looks through (Identity, Cast, Transpose, Concat...) from its "
        "2000 stored tensors to their consumers takes more than 1032000 steps, the limit\n",
        files={"spec.yaml": GOOD_SPEC},
        build=_tangled_onnx,
    ),
    Case(
        "bounds-onnx-weight-read-by-thirty-thousand-nodes",
        ("plan", "model.onnx", "spec.yaml", "--format", "json"),
        0,
        "",
        files={"spec.yaml": GOOD_SPEC},
        build=_widely_read_onnx,
    ),
    Case(
        "bounds-forged-names-in-plan",
        ("plan", "m.shapes.json", "spec.yaml"),
        0,
        "",
        files={"spec.yaml": ZEROS, "m.shapes.json": _manifest({name: [2] for name in FORGED})},
        stdout=(
            'name                      shape  dtype    role           rule               init        fan_in  fan_out  std/limit  fans from\n'
            'w\\nvsconf: error: forged  [2]    float32  other (guess)  rules[0] (line 5)  constant 0  -       -        -          -\n'
            'x\\r\\x1b[2J                [2]    float32  other (guess)  rules[0] (line 5)  constant 0  -       -        -          -\n'
            'y\\u2028z\\u202e            [2]    float32  other (guess)  rules[0] (line 5)  constant 0  -       -        -          -\n'
            'v\\x85                     [2]    float32  other (guess)  rules[0] (line 5)  constant 0  -       -        -          -\n'
        ),
    ),
    Case(
        "bounds-forged-names-in-inspect",
        ("inspect", "m.shapes.json"),
        0,
        "",
        files={"m.shapes.json": _manifest({name: [2] for name in FORGED})},
        stdout=(
            'name                      shape  dtype    role           fan_in  fan_out  fans from  role from                                                            consumers\n'
            "w\\nvsconf: error: forged  [2]    float32  other (guess)  2       2        tf (auto)  name: 'w\\nvsconf: error: forged' follows no convention vsconf knows  -\n"
            "x\\r\\x1b[2J                [2]    float32  other (guess)  2       2        tf (auto)  name: 'x\\r\\x1b[2J' follows no convention vsconf knows                -\n"
            "y\\u2028z\\u202e            [2]    float32  other (guess)  2       2        tf (auto)  name: 'y\\u2028z\\u202e' follows no convention vsconf knows            -\n"
            "v\\x85                     [2]    float32  other (guess)  2       2        tf (auto)  name: 'v\\x85' follows no convention vsconf knows                     -\n"
        ),
    ),
    Case(
        "bounds-forged-names-in-verify",
        ("verify", "f.safetensors", "spec.yaml"),
        1,
        (
            "f.safetensors: tensor 'v\\x85': 2 of 2 elements differ from what the spec produces (max |difference| 1)\n"
            "f.safetensors: tensor 'w\\nvsconf: error: forged': 2 of 2 elements differ from what the spec produces (max |difference| 1)\n"
            "f.safetensors: tensor 'x\\r\\x1b[2J': 2 of 2 elements differ from what the spec produces (max |difference| 1)\n"
            "f.safetensors: tensor 'y\\u2028z\\u202e': 2 of 2 elements differ from what the spec produces (max |difference| 1)\n"
            'vsconf: error: f.safetensors: 4 mismatches\n'
        ),
        files={"spec.yaml": "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: ones\n"},
        build=_forged_safetensors,
    ),
    Case(
        "bounds-forged-names-in-apply-summary-and-warnings",
        ("apply", "f.safetensors", "s\npec.yaml", "-o", "o\nvsconf: error: x.safetensors"),
        0,
        's\\npec.yaml: rules[1] (line 6): warning: never applies; every tensor it matches is taken by rules[0] (line 4)\n',
        files={"s\npec.yaml": "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: ones\n  - match: '*'\n    init: zeros\n"},
        build=_forged_safetensors,
        created=frozenset({"o\nvsconf: error: x.safetensors"}),
        stdout=(
            'wrote o\\nvsconf: error: x.safetensors: 4 set to constants (seed 1, spec sha256 36facc3a6d979cc1)\n'
        ),
    ),
    Case(
        "bounds-forged-path-in-an-error",
        ("plan", "m\nvsconf: error: forged.npz", "spec.yaml"),
        1,
        "vsconf: error: m\\nvsconf: error: forged.npz: no such file\n",
        files={"spec.yaml": ZEROS},
    ),
    Case(
        "bounds-forged-name-in-a-literal-rule-error",
        ("plan", "m.npz", "spec.yaml"),
        1,
        (
            "vsconf: error: spec.yaml: rules[0] (line 4): tensor 's\\u2028teps': it is int64; vsconf only fills float tensors\n"
            "spec.yaml: rules[0] (line 4): matches no tensor (match 's\\u2028teps'); did you mean 's\\u2028teps'?\n"
        ),
        files={
            "spec.yaml": 'vsconf: 1\nseed: 1\nrules:\n  - match: "s\\u2028teps"\n    init: zeros\n',
            "m.npz": npz_bytes({"w": np.ones(2, np.float32), "s\u2028teps": np.zeros((), np.int64)}),
        },
    ),
    Case(
        "bounds-onnx-to-a-folder-names-the-output",
        ("apply", "model.onnx", "spec.yaml", "-o", "out/"),
        1,
        "vsconf: error: out/: model.onnx is an ONNX model, written as .onnx, not as a sharded checkpoint\n",
        files={"spec.yaml": GOOD_SPEC, "model.onnx": onnx_bytes()},
    ),
    Case(
        "bounds-checkpoint-options-name-the-output",
        ("apply", "m.npz", "spec.yaml", "-o", "o.npz", "--task-size", "1MiB"),
        1,
        "vsconf: error: o.npz: an .npz output is written by one writer, in order (each member's header holds its "
        "CRC-32): --scheduler, --dask-workers and --task-size do not apply\n",
        files={"spec.yaml": GOOD_SPEC, "m.npz": npz_bytes()},
    ),
    Case(
        "bounds-unstorable-dtype-names-the-output",
        ("apply", "m.npz", "spec.yaml", "-o", "out/"),
        1,
        "vsconf: error: out: tensor 'c': dtype complex64 cannot be stored in a .safetensors file\n",
        files={"spec.yaml": "vsconf: 1\nseed: 1\nrules:\n  - match: w\n    init: zeros\n", "m.npz": _complex_npz()},
    ),
    Case(
        "bounds-verify-of-a-tensor-bigger-than-memory",
        ("verify", "big.npz", "spec.yaml"),
        1,
        "vsconf: error: big.npz: tensor 'w': verifying it reads 1073741828 bytes at once, more than 1073741824 "
        "bytes, the most vsconf allocates (this machine's memory, or the process's address-space limit)\n",
        files={"spec.yaml": ZEROS},
        build=_sparse_npz,
    ),
]
