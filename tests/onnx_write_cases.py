"""Models for the ONNX writer's byte-identity test (``test_onnx_writer.py``): every shape of
input the writer must reproduce exactly -- real exports, bundled models, Constant nodes,
subgraphs, external data in and out, typed fields, tied weights, materialized fills,
functions and training info, and protobuf encodings that are not canonical.

Each case builds its input in a folder; :func:`write_case` opens it with the adapter and
writes it with the values of a fixed spec (a uniform draw for every float tensor, every
third kept) and fixed metadata, so the output's bytes depend only on the writer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from bad_inputs.onnx_cases_util import field
from onnx_builders import make_model
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from vsconf.formats.onnx.wire import encode_varint as varint

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).parent.parent / "examples"
DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
METADATA = {"vsconf.version": "test", "vsconf.seed": "11", "note": "ü ✓"}
FLOAT_NAMES = {"float16", "float32", "float64", "bfloat16"}


def pattern(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Values that depend only on the name and shape: exact IEEE arithmetic, no random streams."""
    count = math.prod(shape)
    wide = (np.arange(count, dtype=np.float64) * 0.37 + len(name)) % 3.0 - 1.5
    return wide.astype(dtype).reshape(shape)


def plan_of(opened) -> list:
    """Every float tensor as a plan entry drawing uniform(-1.5, 1.5) values (stream 2, seed
    11); every third keeps its values."""
    from vsconf.engine import PlanEntry

    entries = []
    for k, info in enumerate(t for t in opened.tensors() if np.dtype(t.dtype).name in FLOAT_NAMES):
        action = "keep" if k % 3 == 2 else "fill"
        entries.append(PlanEntry(info.name, tuple(info.shape), np.dtype(info.dtype).name, action, seed=11, stream=2, distribution="uniform", param=1.5))
    return entries


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@dataclass(frozen=True)
class WriteCase:
    id: str
    build: Callable[[Path], Path]  # makes the input in a folder, returns the model's path
    materialize: bool = False
    untie: bool = False
    force_external: bool = False  # the writer's inline limit set to 1000 bytes


# ---------------------------------------------------------------- inputs


def _copy(source: Path) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        target = folder / "model.onnx"
        target.write_bytes(source.read_bytes())
        return target

    return build


def _saved(make: Callable[[], onnx.ModelProto], **save_options) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        target = folder / "model.onnx"
        if save_options:
            onnx.save(make(), str(target), **save_options)
        else:
            target.write_bytes(make().SerializeToString())
        return target

    return build


def _model(nodes, inputs, outputs, initializers=(), ir_version=8, opset=17, **kwargs) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers), **kwargs)
    return make_model(graph, (("", opset),), ir_version)


def _value(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _t(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _ramp(*shape, dtype=np.float32):
    return (np.arange(math.prod(shape)) % 7).astype(dtype).reshape(shape)


def _constant_and_if() -> onnx.ModelProto:
    then_graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "outer.w"], ["t"])], "then", [], [_value("t", [2, 40])]
    )
    else_graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "inner.w"], ["e"])],
        "else",
        [],
        [_value("e", [2, 40])],
        [_t("inner.w", _ramp(30, 40))],
    )
    conv_w = helper.make_tensor("w_const", TensorProto.FLOAT, [8, 3, 3, 3], _ramp(216).tolist())
    return _model(
        [
            helper.make_node("Constant", [], ["conv.weight"], value=conv_w),
            helper.make_node("Conv", ["img", "conv.weight"], ["conv_out"]),
            helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph),
        ],
        [_value("cond", [], TensorProto.BOOL), _value("x", [2, 30]), _value("img", [1, 3, 8, 8])],
        [_value("y", [2, 40]), _value("conv_out", [1, 8, 6, 6])],
        [_t("outer.w", _ramp(30, 40)), _t("small", np.ones(3, np.float32))],
    )


def _tied() -> onnx.ModelProto:
    return _model(
        [
            helper.make_node("Gather", ["emb", "ids"], ["h"]),
            helper.make_node("Transpose", ["emb"], ["emb_t"], perm=[1, 0]),
            helper.make_node("MatMul", ["h", "emb_t"], ["logits"], name="lm_head"),
            helper.make_node("Add", ["logits", "bias"], ["out"], name="add"),
            helper.make_node("Add", ["out", "bias"], ["out2"], name="add2"),
        ],
        [_value("ids", [2, 5], TensorProto.INT64)],
        [_value("out2", [2, 5, 50])],
        [_t("emb", _ramp(50, 8)), _t("bias", _ramp(50))],
    )


def _chain() -> onnx.ModelProto:
    """Weights large and small, float16/float64/bfloat16, one of 2 MiB (several chunks), one empty."""
    import ml_dtypes

    return _model(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h1"]),
            helper.make_node("MatMul", ["h1", "w2"], ["h2"]),
            helper.make_node("Cast", ["h2"], ["h3"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["h3", "b"], ["y"]),
            helper.make_node("Identity", ["half"], ["half_out"]),
            helper.make_node("Identity", ["double"], ["double_out"]),
            helper.make_node("Identity", ["brain"], ["brain_out"]),
            helper.make_node("Identity", ["empty"], ["empty_out"]),
        ],
        [_value("x", [2, 64])],
        [_value("y", [2, 8192]), _value("half_out", [16, 16], TensorProto.FLOAT16)]
        + [_value("double_out", [40], TensorProto.DOUBLE), _value("brain_out", [33, 3], TensorProto.BFLOAT16)]
        + [_value("empty_out", [0, 4])],
        [
            _t("w1", _ramp(64, 64)),
            _t("w2", _ramp(64, 8192)),
            _t("b", _ramp(8192)),
            _t("half", _ramp(16, 16, dtype=np.float16)),
            _t("double", _ramp(40, dtype=np.float64)),
            _t("brain", _ramp(33, 3, dtype=ml_dtypes.bfloat16)),
            _t("empty", np.zeros((0, 4), np.float32)),
        ],
    )


def _typed_fields() -> onnx.ModelProto:
    """Tensors kept in float_data, int32_data (float16 bits), int64_data and string_data."""
    floats = helper.make_tensor("typed_f32", TensorProto.FLOAT, [20, 30], _ramp(600).tolist())
    halves = helper.make_tensor("typed_f16", TensorProto.FLOAT16, [300], _ramp(300, dtype=np.float16).tolist())
    doubles = helper.make_tensor("typed_f64", TensorProto.DOUBLE, [200], _ramp(200, dtype=np.float64).tolist())
    longs = helper.make_tensor("typed_i64", TensorProto.INT64, [300], list(range(300)))
    strings = helper.make_tensor("typed_str", TensorProto.STRING, [3], [b"a", b"bc", b"d" * 2000])
    names = ["typed_f32", "typed_f16", "typed_f64", "typed_i64", "typed_str"]
    elems = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.STRING]
    shapes = [[20, 30], [300], [200], [300], [3]]
    return _model(
        [helper.make_node("Identity", [n], [f"{n}_out"]) for n in names],
        [],
        [_value(f"{n}_out", s, e) for n, s, e in zip(names, shapes, elems)],
        [floats, halves, doubles, longs, strings],
    )


def _constant_of_shape(ir_version: int = 8) -> onnx.ModelProto:
    filled = numpy_helper.from_array(np.array([2.5], np.float32), "fill")
    built = _model(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["c"], value=filled),
            helper.make_node("ConstantOfShape", ["shape2"], ["z"]),
            helper.make_node("MatMul", ["c", "z"], ["y"]),
            helper.make_node("Add", ["y", "shared"], ["y2"], name="first"),
            helper.make_node("Mul", ["y2", "shared"], ["y3"], name="second"),
        ],
        [],
        [_value("y3", [300, 200])],
        [_t("shape", np.array([300, 400], np.int64)), _t("shape2", np.array([400, 200], np.int64)), _t("shared", _ramp(300, 200))],
        ir_version=ir_version,
        opset=17 if ir_version >= 8 else 8,
    )
    if ir_version < 4:  # IR 3 lists every initializer among the graph inputs
        for tensor in built.graph.initializer:
            built.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return built


def _external_attributes(folder: Path) -> Path:
    from onnx.external_data_helper import convert_model_to_external_data

    built = _model(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["c"], value=numpy_helper.from_array(np.array([2.5], np.float32), "fill")),
            helper.make_node("Add", ["c", "x"], ["y"]),
            helper.make_node("Constant", [], ["k"], value=_t("kv", _ramp(40, 40))),
            helper.make_node("Add", ["y", "k"], ["y2"]),
        ],
        [_value("x", [40, 40])],
        [_value("y2", [40, 40])],
        [_t("shape", np.array([40, 40], np.int64)), _t("w", _ramp(40, 40))],
    )
    convert_model_to_external_data(built, location="m.bin", size_threshold=0, convert_attribute=True)
    target = folder / "model.onnx"
    onnx.save(built, str(target))
    return target


def _functions_training_sparse() -> onnx.ModelProto:
    """A local function whose Constant holds a big tensor, a training_info graph with an
    initializer, and a sparse initializer: carried over as they are."""
    body = [helper.make_node("Constant", [], ["k"], value=_t("fk", _ramp(30, 30))), helper.make_node("Add", ["a", "k"], ["b"])]
    function = helper.make_function("local", "AddK", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    built = _model(
        [helper.make_node("AddK", ["x"], ["y"], domain="local"), helper.make_node("MatMul", ["y", "w"], ["z"])],
        [_value("x", [30, 30])],
        [_value("z", [30, 30])],
        [_t("w", _ramp(30, 30))],
    )
    built.opset_import.append(helper.make_opsetid("local", 1))
    built.functions.append(function)
    sparse_values = _t("sv", _ramp(400))
    sparse_indices = _t("si", np.arange(400, dtype=np.int64))
    built.graph.sparse_initializer.append(helper.make_sparse_tensor(sparse_values, sparse_indices, [1000]))
    training = built.training_info.add()
    training.initialization.CopyFrom(helper.make_graph([], "init", [], [], [_t("train_w", _ramp(30, 30))]))
    training.algorithm.CopyFrom(helper.make_graph([], "algo", [], []))
    return built


def _unusual_encoding() -> bytes:
    """Protobuf that is valid but not canonical: a second ``graph`` field (merged into the
    first), tensors whose raw_data appears twice (the last wins, large or small), a
    Constant whose tensor attribute comes in two parts (merged), unknown fields in the
    model, the graph and a tensor, and the model's fields out of order."""
    base = _model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        [_value("x", [2, 32])],
        [_value("y", [2, 96]), _value("c_out", [4]), _value("k", [100])],
        [_t("w", _ramp(32, 96))],
    )
    head = base.SerializeToString()
    b_tensor = _t("b", _ramp(96)).SerializeToString()
    b_twice = field(9, b"\x00" * 400) + b_tensor + varint((99 << 3) | 0) + varint(5)
    c_tensor = field(9, b"\x01" * 1000) + _t("c", _ramp(4)).SerializeToString()
    identity = helper.make_node("Identity", ["c"], ["c_out"]).SerializeToString()
    first_part = onnx.TensorProto(dims=[100], data_type=TensorProto.FLOAT).SerializeToString()
    second_part = field(9, _ramp(100).tobytes())
    value = field(1, b"value") + varint((20 << 3) | 0) + varint(AttributeProto.TENSOR)
    value += field(5, first_part) + field(5, second_part)
    constant = field(2, b"k") + field(4, b"Constant") + field(5, value)
    graph_bytes = field(5, b_twice) + field(5, c_tensor) + field(1, identity) + field(1, constant)
    graph_bytes += varint((77 << 3) | 0) + varint(3)
    unknown = varint((1000 << 3) | 2) + varint(4) + b"abcd"
    return unknown + field(7, graph_bytes) + head


def _raw(make_bytes: Callable[[], bytes]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        target = folder / "model.onnx"
        target.write_bytes(make_bytes())
        return target

    return build


def _with_metadata() -> onnx.ModelProto:
    built = _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], [_value("x", [2, 16])], [_value("y", [2, 16])], [_t("w", _ramp(16, 16))]
    )
    for key, value in (("vsconf.seed", "99"), ("author", "someone"), ("note", "old")):
        entry = built.metadata_props.add()
        entry.key, entry.value = key, value
    built.producer_name, built.doc_string = "tests", "a model with metadata"
    return built


def _external_input() -> onnx.ModelProto:
    return _chain()


CASES: list[WriteCase] = [
    *(WriteCase(f"fixture-{p.stem}", _copy(p)) for p in sorted(FIXTURES.glob("*.onnx"))),
    WriteCase("example-small-cnn", _copy(EXAMPLES / "small_cnn.onnx")),
    WriteCase("fixture-torch-cnn-external", _copy(FIXTURES / "torch_cnn_dynamo.onnx"), force_external=True),
    *(
        WriteCase(f"converted-{name}", _copy(DATA / "pytorch-converted" / f"test_{name}" / "model.onnx"))
        for name in ("Conv2d", "ConvTranspose2d", "Embedding", "Linear", "BatchNorm2d_eval", "PReLU_1d_multiparam")
    ),
    *(WriteCase(f"light-{name}-materialize", _copy(DATA / "light" / f"light_{name}.onnx"), materialize=True) for name in ("squeezenet", "shufflenet")),
    WriteCase("light-squeezenet-materialize-external", _copy(DATA / "light" / "light_squeezenet.onnx"), materialize=True, force_external=True),
    WriteCase("constant-and-if", _saved(_constant_and_if)),
    WriteCase("constant-and-if-external", _saved(_constant_and_if), force_external=True),
    WriteCase("tied-untie", _saved(_tied), untie=True),
    WriteCase("tied-untie-external", _saved(_tied), untie=True, force_external=True),
    WriteCase("chain", _saved(_chain)),
    WriteCase("chain-external-in", _saved(_external_input, save_as_external_data=True, location="model.weights", size_threshold=0)),
    WriteCase("chain-forced-external", _saved(_chain), force_external=True),
    WriteCase("typed-fields", _saved(_typed_fields)),
    WriteCase("typed-fields-external", _saved(_typed_fields), force_external=True),
    WriteCase("constant-of-shape-materialize", _saved(_constant_of_shape), materialize=True),
    WriteCase("constant-of-shape-materialize-untie-external", _saved(_constant_of_shape), materialize=True, untie=True, force_external=True),
    WriteCase("ir3-materialize-untie", _saved(lambda: _constant_of_shape(ir_version=3)), materialize=True, untie=True),
    WriteCase("external-attributes", _external_attributes),
    WriteCase("external-attributes-materialize", _external_attributes, materialize=True),
    WriteCase("functions-training-sparse", _saved(_functions_training_sparse)),
    WriteCase("functions-training-sparse-external", _saved(_functions_training_sparse), force_external=True),
    WriteCase("unusual-encoding", _raw(_unusual_encoding)),
    WriteCase("metadata", _saved(_with_metadata)),
]


def write_case(case: WriteCase, folder: Path, adapter, **writing) -> tuple[dict[str, str], dict[str, str]]:
    """Build ``case`` in ``folder``/in, write it to ``folder``/out/out.onnx with ``adapter``
    (the ONNX adapter class; ``writing``: how, as :class:`vsconf.formats.protocol.Writing`
    takes it); the digests of the input files and of the output files."""
    from vsconf.draw import generate_chunks
    from vsconf.files import Transaction
    from vsconf.formats.protocol import Writing

    source_folder, output_folder = folder / "in", folder / "out"
    source_folder.mkdir()
    output_folder.mkdir()
    source = case.build(source_folder)
    inputs = digests(source_folder)
    opened = adapter(source, materialize=case.materialize, untie=case.untie)
    try:
        with Transaction() as transaction:
            opened.write(output_folder / "out.onnx", plan_of(opened), Writing(generate_chunks, **writing), METADATA, None, transaction)
            transaction.commit()
    finally:
        opened.close()
    return inputs, digests(output_folder)
