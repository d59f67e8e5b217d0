"""Hostile ONNX files for ``cases_onnx.py``: the good Gemm model of ``common.py``, edited.

Each helper returns the bytes of a model (or a ``build`` function for what bytes cannot
say: FIFOs, symlinks, absolute paths), so that a case reads as the one thing it breaks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bad_inputs.common import onnx_model
from vsconf.formats.onnx.wire import encode_varint as varint

Edit = Callable[[onnx.ModelProto], None]

W_BYTES = (np.arange(12, dtype=np.float32).reshape(4, 3) / 12).tobytes()  # the good model's 'w', 48 bytes


def edited(*edits: Edit) -> bytes:
    """The good model with ``edits`` applied, serialized without any check."""
    model = onnx_model()
    for edit in edits:
        edit(model)
    return model.SerializeToString()


def tensor(model: onnx.ModelProto, name: str = "w") -> TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def set_tensor(name: str = "w", **fields) -> Edit:
    """Replace fields of initializer ``name``: dims, data_type, raw_data, float_data, ..."""

    def edit(model: onnx.ModelProto) -> None:
        t = tensor(model, name)
        for key, value in fields.items():
            if key in ("dims", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                t.ClearField(key)
                getattr(t, key).extend(value)
            elif key == "segment":
                t.segment.begin, t.segment.end = value
            else:
                setattr(t, key, value)

    return edit


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint((number << 3) | 2) + varint(len(payload)) + payload  # tag: field number, wire type 2


def big_model(elements: int = 1000) -> onnx.ModelProto:
    """The good model with ``w`` of ``elements`` float32 values (its raw_data left out of the skeleton)."""
    model = onnx_model()
    tensor(model).CopyFrom(numpy_helper.from_array(np.arange(elements, dtype=np.float32), "w"))
    return model


def raw_data_twice(first: bytes, last: bytes) -> bytes:
    """The good model whose ``w`` stores raw_data twice, ``first`` then ``last`` (protobuf
    keeps the last).  ``w`` comes after ``b``: it is given by a second graph field."""
    model = onnx_model()
    w = tensor(model)
    model.graph.initializer.remove(w)
    w.ClearField("raw_data")
    return model.SerializeToString() + field(7, field(5, w.SerializeToString() + field(9, first) + field(9, last)))


def nested_ifs(depth: int) -> bytes:
    """The good model with an If nested ``depth`` deep (three messages a level) around a
    1000-element weight: past protobuf's nesting limit of 100, built as bytes since onnx
    cannot build it."""
    graph = field(5, numpy_helper.from_array(np.zeros(1000, np.float32), "deep").SerializeToString())
    for level in range(depth):
        attribute = field(1, b"then_branch") + varint(20 << 3) + varint(5) + field(6, graph)
        graph = field(1, field(1, b"x") + field(2, f"o{level}".encode()) + field(4, b"If") + field(5, attribute))
    return onnx_model().SerializeToString() + field(7, graph)


def external(name: str = "w", **keys: str) -> Edit:
    """Make initializer ``name`` external data with these key/values (location, offset, length)."""

    def edit(model: onnx.ModelProto) -> None:
        t = tensor(model, name)
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        for key, value in keys.items():
            entry = t.external_data.add()
            entry.key, entry.value = key, value

    return edit


def external_model(location: str = "w.bin", **keys: str) -> bytes:
    """The good model with 'w' in ``location`` (offset and length as given)."""
    return edited(external(location=location, **keys))


def with_nodes(nodes: list[onnx.NodeProto], initializers: list[TensorProto] = ()) -> Edit:
    """Replace the graph's nodes (and add initializers)."""

    def edit(model: onnx.ModelProto) -> None:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(initializers)

    return edit


def graph_input(name: str, elem: int = TensorProto.BOOL) -> Edit:
    def edit(model: onnx.ModelProto) -> None:
        model.graph.input.append(helper.make_tensor_value_info(name, elem, []))

    return edit


def opset(version: int) -> Edit:
    def edit(model: onnx.ModelProto) -> None:
        model.opset_import[0].version = version

    return edit


def metadata(key: str, value: str) -> Edit:
    def edit(model: onnx.ModelProto) -> None:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value

    return edit


def ints(name: str, values: list[int]) -> TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def gemm_through(op: str, inputs: list[str] = (), initializers: list[TensorProto] = (), **attributes) -> bytes:
    """``w -> op -> Gemm B``: a look-through op in front of the good model's Gemm."""
    first = helper.make_node(op, ["w", *inputs], ["w2"], name="t", **attributes)
    gemm = helper.make_node("Gemm", ["x", "w2", "b"], ["y"], name="fc")
    return edited(with_nodes([first, gemm], list(initializers)))


def bad_attribute(node_op: str, name: str, attribute: onnx.AttributeProto) -> Edit:
    """Give the first ``node_op`` node an attribute of another type than ONNX says."""

    def edit(model: onnx.ModelProto) -> None:
        node = next(n for n in model.graph.node if n.op_type == node_op)
        attribute.name = name
        node.attribute.append(attribute)

    return edit


def old_output(location: str) -> bytes:
    """A previous output whose 'w' names ``location`` as external data."""
    return external_model(location, offset="0", length="48")


def old_output_at(name: str, target: Callable[[Path], str]) -> Callable[[Path], None]:
    """A ``build`` that writes the old output ``name`` naming ``target(folder)`` (an absolute path)."""

    def build(folder: Path) -> None:
        (folder / name).write_bytes(old_output(target(folder)))

    return build


def fifo(name: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        os.mkfifo(folder / name)

    return build


def folder(name: str) -> Callable[[Path], None]:
    def build(base: Path) -> None:
        (base / name).mkdir()

    return build


def symlink(name: str, target: str) -> Callable[[Path], None]:
    def build(base: Path) -> None:
        os.symlink(target, base / name)

    return build

