"""Hostile ONNX models: files that are not models, graphs vsconf cannot order, tensors
whose declared sizes lie, external data that points anywhere, attributes of the wrong
type, --materialize asked for petabytes, bad recorded seeds, and old outputs whose data
files are not vsconf's to remove.  Each is one class of hostility; the model is always
``model.onnx`` beside a good ``spec.yaml``."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from bad_inputs.common import GOOD_SPEC, onnx_bytes
from bad_inputs.harness import Case
from bad_inputs.onnx_cases_util import (
    W_BYTES,
    bad_attribute,
    big_model,
    edited,
    external,
    external_model,
    fifo,
    folder,
    gemm_through,
    graph_input,
    ints,
    metadata,
    nested_ifs,
    old_output,
    old_output_at,
    opset,
    raw_data_twice,
    set_tensor,
    symlink,
    with_nodes,
)

PLAN = ("plan", "model.onnx", "spec.yaml")
APPLY = ("apply", "model.onnx", "spec.yaml")
INSPECT = ("inspect", "model.onnx")
VERIFY = ("verify", "model.onnx", "spec.yaml")
FORCE_OUT = ("apply", "model.onnx", "spec.yaml", "-o", "out.onnx", "--force")
WROTE_OUT = "wrote out.onnx: 2 filled (seed 7, spec sha256 357d2116a3671043)\n"


def refused(case_id: str, model: bytes, message: str, argv=PLAN, build=None, **files) -> Case:
    """``vsconf <argv>`` on ``model.onnx`` exits 1 with one ``vsconf: error:`` line."""
    return Case(
        case_id,
        argv,
        1,
        f"vsconf: error: model.onnx: {message}\n",
        files={"model.onnx": model, "spec.yaml": GOOD_SPEC, **files},
        build=build,
        stdout="",
    )


W_NEEDS = "its dims [4, 3] (float32) need"
GEMM = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")

CASES: list[Case] = [
    # ------------------------------------------------------------ not a model at all
    refused("onnx-empty-file", b"", "not an ONNX model: the file is empty"),
    refused("onnx-unparseable-bytes", b"\x08\x07garbage\xff\xff\xff", "not an ONNX model: protobuf cannot parse it"),
    refused("onnx-parses-but-no-graph", b"\x08\x07", "not an ONNX model: it has no graph"),
    refused("onnx-yaml-named-onnx", GOOD_SPEC.encode(), "not an ONNX model: protobuf cannot parse it", argv=INSPECT),
    refused(
        "onnx-cut-inside-a-weight",  # the reader walks the file's structure: a weight cut short is no model
        onnx_bytes(big_model())[:2000],
        "not an ONNX model: protobuf cannot parse it",
        argv=APPLY,
    ),
    refused(
        "onnx-weight-length-past-the-end",
        onnx_bytes(big_model()).replace(b"J\xa0\x1f", b"J\xa0\x7f"),  # raw_data's length: 4000 -> 16288 bytes
        "not an ONNX model: protobuf cannot parse it",
        argv=INSPECT,
    ),
    refused(
        "onnx-nesting-past-protobufs-limit",  # 40 Ifs deep, a weight at the bottom: never walked past the limit
        nested_ifs(40),
        "not an ONNX model: protobuf cannot parse it",
    ),
    refused(
        "onnx-ir-version-0",
        edited(lambda m: m.ClearField("ir_version")),
        "not an ONNX model: it has no ir_version",
    ),
    refused(
        "onnx-no-opset-import",
        edited(lambda m: m.ClearField("opset_import")),
        "not an ONNX model: it imports no operator set (opset_import is empty)",
    ),
    refused(
        "onnx-op-type-not-utf8",  # protobuf hands such a field to Python as bytes, not str
        onnx_bytes().replace(b"Gemm", b"\xc9emm"),
        "not an ONNX model: graph.node[0].op_type is not UTF-8 text",
        argv=APPLY,
    ),
    refused(
        "onnx-external-location-not-utf8",
        external_model("w.bin", offset="0", length="48").replace(b"w.bin", b"\xc9.bin"),
        "not an ONNX model: graph.initializer[0].external_data[0].value is not UTF-8 text",
    ),
    # ------------------------------------------------------------ graphs vsconf cannot order
    refused(
        "onnx-graph-cycle",
        edited(
            with_nodes(
                [
                    helper.make_node("Relu", ["loop_b"], ["loop_a"], name="first"),
                    helper.make_node("Relu", ["loop_a"], ["loop_b"], name="second"),
                    GEMM,
                ]
            )
        ),
        "node 'first' (Relu) reads 'loop_b', which nothing defines before it (a cycle, or nodes out of topological order)",
        argv=APPLY,
    ),
    refused(
        "onnx-graph-out-of-order-unnamed-nodes",
        edited(
            with_nodes([helper.make_node("Relu", ["h"], ["y2"]), helper.make_node("Gemm", ["x", "w", "b"], ["h"])])
        ),
        "node 'Relu#0' (Relu) reads 'h', which nothing defines before it (a cycle, or nodes out of topological order)",
    ),
    refused(
        "onnx-subgraph-reads-a-later-value",
        edited(
            with_nodes(
                [
                    helper.make_node(
                        "If",
                        ["cond"],
                        ["z"],
                        name="branch",
                        then_branch=helper.make_graph(
                            [helper.make_node("Identity", ["later"], ["t"], name="inner")], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)]
                        ),
                        else_branch=helper.make_graph(
                            [helper.make_node("Identity", ["x"], ["e"], name="inner2")], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)]
                        ),
                    ),
                    helper.make_node("Relu", ["x"], ["later"], name="after"),
                    GEMM,
                ]
            ),
            graph_input("cond"),
        ),
        "node 'inner' (Identity) reads 'later', which nothing defines before it (a cycle, or nodes out of topological order)",
    ),
    refused(
        "onnx-value-defined-twice",
        edited(with_nodes([helper.make_node("Relu", ["x"], ["w"], name="clobber"), GEMM])),
        "node 'clobber' (Relu) writes 'w', which is already defined in its graph",
    ),
    refused(
        "onnx-duplicate-initializer-names",
        edited(lambda m: m.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "b"))),
        "two tensors are named 'b'; vsconf needs unique tensor names",
        argv=APPLY,
    ),
    refused(
        "onnx-subgraph-initializer-shadows-main",
        edited(
            with_nodes(
                [
                    helper.make_node(
                        "If",
                        ["cond"],
                        ["z"],
                        name="branch",
                        then_branch=helper.make_graph(
                            [helper.make_node("Identity", ["w"], ["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
                            [numpy_helper.from_array(np.zeros(2, np.float32), "w")],
                        ),
                        else_branch=helper.make_graph(
                            [helper.make_node("Identity", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)]
                        ),
                    ),
                    GEMM,
                ]
            ),
            graph_input("cond"),
        ),
        "two tensors are named 'w'; vsconf needs unique tensor names",
    ),
    # ------------------------------------------------------------ declared sizes that lie
    refused("onnx-negative-dims", edited(set_tensor(dims=[4, -3])), "tensor 'w': dims [4, -3] have a negative dimension", argv=APPLY),
    refused(
        "onnx-dims-overflow-int64",
        edited(set_tensor(dims=[2**40, 2**40])),
        "tensor 'w': dims [1099511627776, 1099511627776] (float32) need more than 2**63 bytes",
    ),
    refused(
        "onnx-zero-size-with-huge-dims",  # no elements, but NumPy could not even make the empty array
        edited(set_tensor(dims=[0, 2**62], raw_data=b"")),
        "tensor 'w': dims [0, 4611686018427387904] (float32) hold no elements, but their other dims pass 2**63 bytes",
        argv=APPLY,
    ),
    refused(
        "onnx-dims-need-petabytes",
        edited(set_tensor(dims=[2**48])),
        "tensor 'w': raw_data holds 48 bytes, its dims [281474976710656] (float32) need 1125899906842624",
        argv=APPLY,
    ),
    refused(
        "onnx-hundred-thousand-dims",
        edited(set_tensor(dims=[1] * 100_000)),
        "tensor 'w': raw_data holds 48 bytes, its dims [1, 1, 1, 1, 1, 1, 1, 1, ... (100000 dims)] (float32) need 4",
        argv=INSPECT,
    ),
    refused("onnx-unknown-data-type", edited(set_tensor(data_type=99)), "tensor 'w': data_type 99 is not an element type vsconf knows"),
    refused(
        "onnx-undefined-data-type",
        edited(set_tensor(data_type=TensorProto.UNDEFINED)),
        "tensor 'w': data_type is 0 (UNDEFINED), not an element type",
    ),
    refused("onnx-raw-data-short", edited(set_tensor(raw_data=W_BYTES[:40])), f"tensor 'w': raw_data holds 40 bytes, {W_NEEDS} 48", argv=APPLY),
    refused("onnx-raw-data-long", edited(set_tensor(raw_data=W_BYTES + b"\0" * 4)), f"tensor 'w': raw_data holds 52 bytes, {W_NEEDS} 48"),
    refused(
        "onnx-bias-raw-data-short-copied-only",  # 'b' is kept, not filled: still checked
        edited(set_tensor("b", raw_data=b"\0" * 8)),
        "tensor 'b': raw_data holds 8 bytes, its dims [3] (float32) need 12",
        argv=("apply", "model.onnx", "keep.yaml"),
        **{"keep.yaml": 'vsconf: 1\nseed: 7\nrules:\n  - match: "w"\n    init: he_normal\n  - match: "b"\n    init: keep\n'},
    ),
    refused(
        "onnx-float-data-wrong-count",
        edited(set_tensor(raw_data=b""), lambda m: m.graph.initializer[0].ClearField("raw_data"), set_tensor(float_data=[1.0] * 5)),
        f"tensor 'w': float_data holds 5 values, {W_NEEDS} 12",
    ),
    refused(
        "onnx-no-data-at-all",
        edited(lambda m: m.graph.initializer[0].ClearField("raw_data")),
        f"tensor 'w': it has no data, but {W_NEEDS} 12 values",
        argv=APPLY,
    ),
    refused(
        "onnx-raw-data-and-float-data",
        edited(set_tensor(float_data=[0.0] * 12)),
        "tensor 'w': it has both raw_data and float_data; a tensor stores its values in one of them",
    ),
    refused(
        "onnx-wrong-typed-field",
        edited(lambda m: m.graph.initializer[0].ClearField("raw_data"), set_tensor(int64_data=[0] * 12)),
        "tensor 'w': it keeps its values in int64_data, but float32 tensors keep them in float_data",
    ),
    refused("onnx-segment", edited(set_tensor(segment=(0, 12))), "tensor 'w': it is stored in segments, which vsconf does not read"),
    refused(
        "onnx-string-tensor-in-raw-data",
        edited(set_tensor(data_type=TensorProto.STRING)),
        "tensor 'w': a string tensor cannot use raw_data",
        argv=INSPECT,
    ),
    refused(
        "onnx-raw-data-twice-the-last-is-long",  # protobuf keeps the last raw_data: the first, right-sized, does not count
        raw_data_twice(W_BYTES, W_BYTES * 8),
        f"tensor 'w': raw_data holds 384 bytes, {W_NEEDS} 48",
    ),
    Case(
        "onnx-raw-data-twice-the-last-is-right",  # ... and a long first one does not either
        APPLY,
        0,
        "",
        files={"model.onnx": raw_data_twice(W_BYTES * 8, W_BYTES), "spec.yaml": GOOD_SPEC},
        created=frozenset({"model.init.onnx"}),
        stdout="wrote model.init.onnx: 2 filled (seed 7, spec sha256 357d2116a3671043)\n",
    ),
    refused(
        "onnx-large-raw-data-short",
        edited(set_tensor(raw_data=bytes(4000), dims=[1001])),
        "tensor 'w': raw_data holds 4000 bytes, its dims [1001] (float32) need 4004",
        argv=APPLY,
    ),
    refused(
        "onnx-int4-raw-data-unpacked",  # two int4 values share a byte: 5 elements need 3 bytes
        edited(lambda m: m.graph.initializer.append(TensorProto(name="q", data_type=TensorProto.INT4, dims=[5], raw_data=b"\x01" * 5))),
        "tensor 'q': raw_data holds 5 bytes, its dims [5] (int4) need 3",
    ),
    refused(
        "onnx-float16-int32-data-short",
        edited(
            lambda m: m.graph.initializer.append(helper.make_tensor("h", TensorProto.FLOAT16, [4, 3], np.zeros(12, np.float16))),
            lambda m: m.graph.initializer[-1].int32_data.__delitem__(slice(6, None)),
        ),
        "tensor 'h': int32_data holds 6 values, its dims [4, 3] (float16) need 12",
    ),
    refused(
        "onnx-constant-node-raw-data-short",
        edited(
            with_nodes(
                [
                    helper.make_node(
                        "Constant", [], ["wc"], name="c", value=TensorProto(name="anything", data_type=TensorProto.FLOAT, dims=[4, 3], raw_data=W_BYTES[:40])
                    ),
                    helper.make_node("Gemm", ["x", "wc", "b"], ["y"], name="fc"),
                ]
            )
        ),
        f"tensor 'wc': raw_data holds 40 bytes, {W_NEEDS} 48",
    ),
    # ------------------------------------------------------------ external data that points anywhere
    refused(
        "onnx-external-absolute-location",
        external_model("/etc/passwd", offset="0", length="48"),
        "tensor 'w' has external data outside the model's folder: '/etc/passwd'",
        argv=APPLY,
    ),
    Case(
        "onnx-external-dotdot-location",
        APPLY,
        1,
        "vsconf: error: model.onnx: tensor 'w' has external data outside the model's folder: '../outside.bin'\n",
        files={"model.onnx": external_model("../outside.bin", length="48"), "spec.yaml": GOOD_SPEC},
        outside={"outside.bin": W_BYTES},
    ),
    Case(
        "onnx-external-symlink-out-of-folder",
        APPLY,
        1,
        "vsconf: error: model.onnx: tensor 'w' has external data outside the model's folder: 'w.bin'\n",
        files={"model.onnx": external_model("w.bin", length="48"), "spec.yaml": GOOD_SPEC},
        outside={"outside.bin": W_BYTES},
        build=symlink("w.bin", "../outside.bin"),
    ),
    refused("onnx-external-missing-file", external_model("w.bin"), "tensor 'w': w.bin: no such file"),
    refused(
        "onnx-external-fifo",
        external_model("w.bin"),
        "tensor 'w': w.bin: the external data file is a FIFO, not a regular file",
        argv=APPLY,
        build=fifo("w.bin"),
    ),
    refused(
        "onnx-external-folder",
        external_model("w.bin"),
        "tensor 'w': w.bin: the external data file is a folder, not a regular file",
        build=folder("w.bin"),
    ),
    refused("onnx-external-no-location", edited(external(offset="0")), "tensor 'w': its external data has no location"),
    refused(
        "onnx-external-nul-in-location",
        external_model("w\0.bin"),
        "tensor 'w': external data location 'w\\x00.bin' is not a file name",
    ),
    refused(
        "onnx-external-offset-not-a-number",
        external_model("w.bin", offset="abc"),
        "tensor 'w': external data offset is 'abc', not a decimal integer in [0, 2**63)",
        **{"w.bin": W_BYTES},
    ),
    refused(
        "onnx-external-offset-negative",
        external_model("w.bin", offset="-1"),
        "tensor 'w': external data offset is '-1', not a decimal integer in [0, 2**63)",
        **{"w.bin": W_BYTES},
    ),
    refused(
        "onnx-external-offset-2-pow-70",
        external_model("w.bin", offset=str(2**70)),
        "tensor 'w': external data offset is '1180591620717411303424', not a decimal integer in [0, 2**63)",
        argv=APPLY,
        **{"w.bin": W_BYTES},
    ),
    refused(
        "onnx-external-length-in-exponent-notation",
        external_model("w.bin", length="1e3"),
        "tensor 'w': external data length is '1e3', not a decimal integer in [0, 2**63)",
        **{"w.bin": W_BYTES},
    ),
    refused(
        "onnx-external-length-short",
        external_model("w.bin", length="40"),
        f"tensor 'w': external data length is 40 bytes, {W_NEEDS} 48",
        argv=APPLY,
        **{"w.bin": W_BYTES},
    ),
    refused(
        "onnx-external-offset-past-end-no-length",
        external_model("w.bin", offset="8"),
        "tensor 'w': w.bin holds 48 bytes; offset 8 + the 48 bytes its dims need pass its end",
        argv=APPLY,
        **{"w.bin": W_BYTES},
    ),
    refused(
        "onnx-external-offset-plus-length-past-end",
        external_model("w.bin", offset="4096", length="48"),
        "tensor 'w': w.bin holds 48 bytes; offset 4096 + length 48 pass its end",
        **{"w.bin": W_BYTES},
    ),
    refused(
        "onnx-external-and-raw-data",
        edited(external(location="w.bin"), set_tensor(raw_data=W_BYTES)),
        "tensor 'w': it is external data and also has raw_data; a tensor stores its values in one place",
        **{"w.bin": W_BYTES},
    ),
    # ------------------------------------------------------------ --materialize asked for too much
    refused(
        "onnx-materialize-negative-shape",
        edited(with_nodes([helper.make_node("ConstantOfShape", ["shape"], ["z"], name="zeros"), GEMM], [ints("shape", [3, -1])])),
        "ConstantOfShape 'zeros': its shape [3, -1] has a negative dimension",
        argv=("plan", "model.onnx", "spec.yaml", "--materialize"),
    ),
    refused(
        "onnx-materialize-petabytes",
        edited(with_nodes([helper.make_node("ConstantOfShape", ["shape"], ["z"], name="zeros"), GEMM], [ints("shape", [2**20, 2**20, 2**10])])),
        "ConstantOfShape 'zeros': a float32 tensor of shape [1048576, 1048576, 1024] needs 4503599627370496 bytes; "
        "vsconf materializes at most 2**40 bytes",
        argv=("apply", "model.onnx", "spec.yaml", "--materialize"),
    ),
    refused(
        "onnx-materialize-empty-shape-with-huge-dims",
        edited(with_nodes([helper.make_node("ConstantOfShape", ["shape"], ["z"], name="zeros"), GEMM], [ints("shape", [0, 2**62])])),
        "ConstantOfShape 'zeros': its output's dims [0, 4611686018427387904] (float32) hold no elements, "
        "but their other dims pass 2**63 bytes",
        argv=("apply", "model.onnx", "spec.yaml", "--materialize"),
    ),
    refused(
        "onnx-materialize-shape-too-long",
        edited(with_nodes([helper.make_node("ConstantOfShape", ["shape"], ["z"], name="zeros"), GEMM], [ints("shape", [1] * 1000)])),
        "ConstantOfShape 'zeros': its shape 'shape' is not a list of at most 64 integers",
        argv=("inspect", "model.onnx", "--materialize"),
    ),
    refused(
        "onnx-materialize-value-of-wrong-type",
        edited(
            with_nodes([helper.make_node("ConstantOfShape", ["shape"], ["z"], name="zeros"), GEMM], [ints("shape", [2, 2])]),
            bad_attribute("ConstantOfShape", "value", helper.make_attribute("value", 3)),
        ),
        "ConstantOfShape 'zeros': its value attribute is not a tensor",
        argv=("plan", "model.onnx", "spec.yaml", "--materialize"),
    ),
    # ------------------------------------------------------------ a recorded seed that is not one
    refused(
        "onnx-recorded-seed-negative",
        edited(metadata("vsconf.seed", "-5")),
        "metadata vsconf.seed is '-5', not a seed (0 <= seed < 2**63); give the seed explicitly",
        argv=VERIFY,
    ),
    refused(
        "onnx-recorded-seed-thousands-of-digits",
        edited(metadata("vsconf.seed", "9" * 5000)),
        "metadata vsconf.seed is '99999999999999999999'... (5000 characters), not a seed (0 <= seed < 2**63); "
        "give the seed explicitly",
        argv=VERIFY,
    ),
    # ------------------------------------------------------------ old outputs: never remove what vsconf did not make
    Case(
        "onnx-force-old-output-names-dotdot",
        FORCE_OUT,
        0,
        "vsconf: warning: kept ../outside.txt: not a data file vsconf made for out.onnx\n",
        files={"model.onnx": onnx_bytes(), "spec.yaml": GOOD_SPEC, "out.onnx": old_output("../outside.txt")},
        outside={"outside.txt": "precious\n"},
        changed=frozenset({"out.onnx"}),
        stdout=WROTE_OUT,
    ),
    Case(
        "onnx-force-old-output-names-absolute-path",
        FORCE_OUT,
        0,
        "vsconf: warning: kept {dir}/secret.txt: not a data file vsconf made for out.onnx\n",
        files={"model.onnx": onnx_bytes(), "spec.yaml": GOOD_SPEC, "secret.txt": "precious\n"},
        build=old_output_at("out.onnx", lambda folder: str(folder / "secret.txt")),
        changed=frozenset({"out.onnx"}),
        stdout=WROTE_OUT,
    ),
    Case(
        "onnx-force-old-output-names-the-spec",
        FORCE_OUT,
        0,
        "vsconf: warning: kept spec.yaml: not a data file vsconf made for out.onnx\n",
        files={"model.onnx": onnx_bytes(), "spec.yaml": GOOD_SPEC, "out.onnx": old_output("spec.yaml")},
        changed=frozenset({"out.onnx"}),
        stdout=WROTE_OUT,
    ),
    Case(
        "onnx-force-old-data-file-is-a-symlink-out",
        FORCE_OUT,
        0,
        "vsconf: warning: kept out.onnx.data: it is a symbolic link\n",
        files={"model.onnx": onnx_bytes(), "spec.yaml": GOOD_SPEC, "out.onnx": old_output("out.onnx.data")},
        outside={"outside.txt": "precious\n"},
        build=symlink("out.onnx.data", "../outside.txt"),
        changed=frozenset({"out.onnx"}),
        stdout=WROTE_OUT,
    ),
    Case(
        "onnx-force-removes-vsconfs-own-old-data-file",
        FORCE_OUT,
        0,
        "",
        files={"model.onnx": onnx_bytes(), "spec.yaml": GOOD_SPEC, "out.onnx": old_output("out.onnx.data"), "out.onnx.data": W_BYTES},
        changed=frozenset({"out.onnx"}),
        removed=frozenset({"out.onnx.data"}),
        stdout=WROTE_OUT,
    ),
    Case(
        "onnx-force-old-output-not-onnx",
        FORCE_OUT,
        0,
        "vsconf: warning: kept every file out.onnx names: it is not a readable ONNX model\n",
        files={"model.onnx": onnx_bytes(), "spec.yaml": GOOD_SPEC, "out.onnx": b"\xff\xff not a model"},
        changed=frozenset({"out.onnx"}),
        stdout=WROTE_OUT,
    ),
    Case(
        "onnx-in-place-keeps-a-data-file-the-user-named",
        ("apply", "model.onnx", "spec.yaml", "--in-place"),
        0,
        "vsconf: warning: kept weights.bin: not a data file vsconf made for model.onnx\n",
        files={"model.onnx": external_model("weights.bin", offset="0", length="48"), "spec.yaml": GOOD_SPEC, "weights.bin": W_BYTES},
        changed=frozenset({"model.onnx"}),
        created=frozenset({"model.onnx.data"}),
        stdout="wrote model.onnx: 2 filled (seed 7, spec sha256 357d2116a3671043)\n",
    ),
]

# ---------------------------------------------------------------- graphs vsconf cannot follow: inspect still works


def followed(case_id: str, model: bytes, table: str) -> Case:
    """``vsconf inspect`` on a graph with something vsconf cannot follow: the tensor falls
    back to the tf rule and the table says why; nothing else changes."""
    return Case(case_id, INSPECT, 0, "", files={"model.onnx": model}, stdout=table)


def _table(*rows: str) -> str:
    return "\n".join(rows) + "\n"


CASES += [
    followed(
        "onnx-transpose-perm-wrong-length",
        gemm_through("Transpose", perm=[1, 0, 2]),
        _table(
            "name  shape  dtype    role   fan_in  fan_out  fans from                               role from                                               consumers",
            "w     [4,3]  float32  other  4       3        tf (auto: cannot follow Transpose (t))  read through Transpose (t), which vsconf cannot follow  -",
            "b     [3]    float32  bias   3       3        tf (auto: no fan rule for Gemm C)       Gemm C (fc)                                             Gemm.C (fc)",
        ),
    ),
    followed(
        "onnx-transpose-perm-repeated",
        gemm_through("Transpose", perm=[0, 0]),
        _table(
            "name  shape  dtype    role   fan_in  fan_out  fans from                               role from                                               consumers",
            "w     [4,3]  float32  other  4       3        tf (auto: cannot follow Transpose (t))  read through Transpose (t), which vsconf cannot follow  -",
            "b     [3]    float32  bias   3       3        tf (auto: no fan rule for Gemm C)       Gemm C (fc)                                             Gemm.C (fc)",
        ),
    ),
    followed(
        "onnx-unsqueeze-axes-out-of-range",
        gemm_through("Unsqueeze", axes=[9]),
        _table(
            "name  shape  dtype    role   fan_in  fan_out  fans from                               role from                                               consumers",
            "w     [4,3]  float32  other  4       3        tf (auto: cannot follow Unsqueeze (t))  read through Unsqueeze (t), which vsconf cannot follow  -",
            "b     [3]    float32  bias   3       3        tf (auto: no fan rule for Gemm C)       Gemm C (fc)                                             Gemm.C (fc)",
        ),
    ),
    followed(
        "onnx-unsqueeze-axes-a-huge-constant",  # never read: more than 64 elements
        gemm_through("Unsqueeze", ["ax"], [ints("ax", list(range(1000)))]),
        _table(
            "name  shape   dtype    role      fan_in  fan_out  fans from                                  role from                                               consumers",
            "w     [4,3]   float32  other     4       3        tf (auto: cannot follow Unsqueeze (t))     read through Unsqueeze (t), which vsconf cannot follow  -",
            "b     [3]     float32  bias      3       3        tf (auto: no fan rule for Gemm C)          Gemm C (fc)                                             Gemm.C (fc)",
            "ax    [1000]  int64    constant  1000    1000     tf (auto: no fan rule for Unsqueeze axes)  read only as Unsqueeze axes (t)                         Unsqueeze.axes (t)",
        ),
    ),
    followed(
        "onnx-squeeze-axes-repeated",
        gemm_through("Squeeze", ["ax"], [ints("ax", [0, 0])]),
        _table(
            "name  shape  dtype    role      fan_in  fan_out  fans from                                role from                                             consumers",
            "w     [4,3]  float32  other     4       3        tf (auto: cannot follow Squeeze (t))     read through Squeeze (t), which vsconf cannot follow  -",
            "b     [3]    float32  bias      3       3        tf (auto: no fan rule for Gemm C)        Gemm C (fc)                                           Gemm.C (fc)",
            "ax    [2]    int64    constant  2       2        tf (auto: no fan rule for Squeeze axes)  read only as Squeeze axes (t)                         Squeeze.axes (t)",
        ),
    ),
    followed(
        "onnx-gemm-trans-b-is-a-string",
        edited(bad_attribute("Gemm", "transB", helper.make_attribute("transB", "yes"))),
        _table(
            "name  shape  dtype    role    fan_in  fan_out  fans from                           role from    consumers",
            "w     [4,3]  float32  weight  4       3        tf (auto: cannot follow Gemm (fc))  Gemm B (fc)  Gemm.B (fc)",
            "b     [3]    float32  bias    3       3        tf (auto: no fan rule for Gemm C)   Gemm C (fc)  Gemm.C (fc)",
        ),
    ),
    followed(
        "onnx-gather-axis-is-a-float",
        edited(with_nodes([helper.make_node("Gather", ["w", "x"], ["y"], name="lookup", axis=0.5)])),
        _table(
            "name  shape  dtype    role       fan_in  fan_out  fans from                                 role from             consumers",
            "w     [4,3]  float32  embedding  4       3        tf (auto: cannot follow Gather (lookup))  Gather data (lookup)  Gather.data (lookup)",
            "b     [3]    float32  constant   3       3        tf (auto: no known consumer)              read by no node       -",
        ),
    ),
    followed(
        "onnx-opset-negative",
        edited(opset(-5)),
        _table(
            "name  shape  dtype    role   fan_in  fan_out  fans from                               role from                 consumers",
            "w     [4,3]  float32  other  4       3        tf (auto: no fan rule for Gemm input1)  read by Gemm input1 (fc)  Gemm.input1 (fc)",
            "b     [3]    float32  other  3       3        tf (auto: no fan rule for Gemm input2)  read by Gemm input2 (fc)  Gemm.input2 (fc)",
        ),
    ),
    followed(
        "onnx-opset-a-billion",
        edited(opset(10**9)),
        _table(
            "name  shape  dtype    role    fan_in  fan_out  fans from                          role from    consumers",
            "w     [4,3]  float32  weight  4       3        Gemm B (transB=0) (fc)             Gemm B (fc)  Gemm.B (fc)",
            "b     [3]    float32  bias    3       3        tf (auto: no fan rule for Gemm C)  Gemm C (fc)  Gemm.C (fc)",
        ),
    ),
    followed(
        "onnx-unknown-op-and-domain",
        edited(with_nodes([helper.make_node("Frobnicate", ["x", "w", "b"], ["y"], domain="com.example")])),
        _table(
            "name  shape  dtype    role   fan_in  fan_out  fans from                                                 role from                                             consumers",
            "w     [4,3]  float32  other  4       3        tf (auto: no fan rule for com.example.Frobnicate input1)  read by com.example.Frobnicate input1 (Frobnicate#0)  com.example.Frobnicate.input1 (Frobnicate#0)",
            "b     [3]    float32  other  3       3        tf (auto: no fan rule for com.example.Frobnicate input2)  read by com.example.Frobnicate input2 (Frobnicate#0)  com.example.Frobnicate.input2 (Frobnicate#0)",
        ),
    ),
    followed(
        "onnx-node-without-outputs-or-names",
        edited(with_nodes([helper.make_node("Relu", ["w"], []), helper.make_node("Gemm", ["x", "w", "b"], ["y"])])),
        _table(
            "name  shape  dtype    role    fan_in  fan_out  fans from                          role from        consumers",
            "w     [4,3]  float32  weight  4       3        Gemm B (transB=0) (Gemm#1)         Gemm B (Gemm#1)  Relu.X (Relu#0), Gemm.B (Gemm#1)",
            "b     [3]    float32  bias    3       3        tf (auto: no fan rule for Gemm C)  Gemm C (Gemm#1)  Gemm.C (Gemm#1)",
        ),
    ),
]
