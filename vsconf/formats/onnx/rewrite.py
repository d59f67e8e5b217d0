"""``--materialize`` and ``--untie``: functions from a model (skeleton) to a new one.

Neither touches the model it is given, nor any tensor's bytes: the result is a copy of
the skeleton with nodes and initializers changed, and a map ``fills`` from the name of a
tensor whose bytes do not exist yet to the one value that fills it.  The contracts:

* :func:`materialize` turns each ``ConstantOfShape`` whose shape is a stored constant into
  an initializer of that shape holding the node's fill value, and drops shape tensors
  that nothing reads any more (with their graph inputs).  A shape that is not a short
  list of non-negative integers, or a tensor past 1 TiB, is a ModelError; the bytes are
  made only when written or read, so planning allocates nothing.
* :func:`untie` gives each direct consumer of a shared float initializer its own copy,
  ``<name>:<node>`` (all of them, or only those whose consumers disagree: ``--untie
  conflicts``); shared non-float tensors (shapes, axes) stay shared.
* Before IR 4 every initializer is also a graph input: new ones are declared there too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
from vsconf.formats.onnx import proto
from vsconf.formats.onnx.proto import AttributeProto, TensorProto

from vsconf.errors import ModelError
from vsconf.formats.onnx.checks import DATA_TYPES, FLOAT_TYPES, data_bytes, data_problem, element_count, is_sub_byte, layout_problem, shown
from vsconf.formats.onnx.graph import MAX_RANK, CannotFollow, ConstantInts, Edge, attribute, build_index, graphs, node_labels, stored_tensors
from vsconf.formats.onnx.reader import ModelFile

# --materialize refuses to build a tensor larger than this (1 TiB) instead of trying.
MATERIALIZE_LIMIT = 2**40
Fills = dict[str, np.ndarray]


def _copy(model: proto.ModelProto) -> proto.ModelProto:
    copy = proto.ModelProto()
    copy.CopyFrom(model)
    return copy


def _remove(items, unwanted: Callable) -> None:
    """Delete the items of a repeated protobuf field for which ``unwanted(item)`` holds, in
    place (rebuilding the field would copy every other message)."""
    for index in reversed([i for i, item in enumerate(items) if unwanted(item)]):
        del items[index]


def _value_names(model: proto.ModelProto) -> set[str]:
    """Every value name of the model, in every graph: initializers, inputs, outputs, node outputs."""
    names: set[str] = set()
    for graph in graphs(model.graph):
        names.update(tensor.name for tensor in graph.initializer)
        names.update(tensor.values.name for tensor in graph.sparse_initializer)
        names.update(value.name for value in graph.input)
        names.update(value.name for value in graph.output)
        for node in graph.node:
            names.update(node.output)
    return names


def _declare_input(model: proto.ModelProto, graph: proto.GraphProto, tensor: TensorProto) -> None:
    if model.ir_version < 4:  # IR 3 lists every initializer among the graph inputs
        from onnx import helper  # IR < 4 models only: the rest of onnx comes with it

        graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))


def materialize(model: proto.ModelProto, file: ModelFile, constant_ints: ConstantInts) -> tuple[proto.ModelProto, Fills]:
    """The model with its ConstantOfShape nodes made initializers, and their fill values."""
    model = _copy(model)
    fills: Fills = {}
    nodes, labels = node_labels(model.graph)
    uses: dict[str, int] = {}
    for node in nodes:
        for value in node.input:
            uses[value] = uses.get(value, 0) + 1
    for graph in graphs(model.graph):
        shapes = {t.name: t for t in graph.initializer}
        candidates = [
            node
            for node in graph.node
            if node.op_type == "ConstantOfShape"
            and node.domain in ("", "ai.onnx")
            and node.input
            and node.input[0] in shapes
            and node.output
            and node.output[0]
        ]
        replaced = []
        for node in candidates:
            where = f"{file.path}: ConstantOfShape {shown(labels[id(node)])}"
            made = _materialized(node, where, file, constant_ints, fills)
            if made is None:
                continue
            graph.initializer.append(made)
            _declare_input(model, graph, made)
            uses[node.input[0]] -= 1
            replaced.append(node)
        if not replaced:
            continue
        done = {id(node) for node in replaced}
        outputs = {o.name for o in graph.output}
        unused = {n.input[0] for n in replaced if uses[n.input[0]] == 0 and n.input[0] not in outputs}
        _remove(graph.node, lambda node: id(node) in done)
        _remove(graph.initializer, lambda tensor: tensor.name in unused)
        _remove(graph.input, lambda item: item.name in unused)
    del nodes
    return model, fills


def _materialized(node: proto.NodeProto, where: str, file: ModelFile, constant_ints: ConstantInts, fills: Fills) -> TensorProto | None:
    """The initializer a ConstantOfShape node stands for, or None for a fill value of a
    type vsconf cannot lay out (strings, sub-byte types): that node stays."""
    shape = constant_ints(node.input[0])
    if shape is None:
        raise ModelError(f"{where}: its shape {shown(node.input[0])} is not a list of at most {MAX_RANK} integers")
    if any(d < 0 for d in shape):
        raise ModelError(f"{where}: its shape {shape} has a negative dimension")
    fill = _fill_value(node, where, file)
    if fill is None:
        return None
    made = TensorProto(name=node.output[0], data_type=DATA_TYPES[fill.dtype.name], dims=shape)
    problem = layout_problem(made)  # an empty shape's other dims too must fit NumPy
    if problem:
        raise ModelError(f"{where}: its output's {problem}")
    nbytes = data_bytes(made)
    if nbytes > MATERIALIZE_LIMIT:
        raise ModelError(
            f"{where}: a {fill.dtype.name} tensor of shape {shape} needs {nbytes} bytes; vsconf materializes at most 2**40 bytes"
        )
    fills[made.name] = fill  # its bytes are made when written (or read), not now
    return made


def _fill_value(node: proto.NodeProto, where: str, file: ModelFile) -> np.ndarray | None:
    """The fill value as a 0-d array (float32 0 by default), or None for strings and sub-byte types."""
    try:
        value = attribute(node, "value", AttributeProto.TENSOR)
    except CannotFollow:
        raise ModelError(f"{where}: its value attribute is not a tensor") from None
    if value is None:
        return np.zeros((), np.float32)
    problem = layout_problem(value) or data_problem(value, file.raw_size(value))
    if problem:
        raise ModelError(f"{where}: its value: {problem}")
    if element_count(value) != 1:
        raise ModelError(f"{where}: its value attribute is not a one-element tensor")
    if value.data_type == TensorProto.STRING or is_sub_byte(value.data_type):
        return None
    return file.array(value, value.name or "(unnamed)").reshape(())


def untie(
    model: proto.ModelProto, fills: Fills, only: Collection[str] | None = None, *, where: object = "the model"
) -> tuple[proto.ModelProto, Fills, dict[str, list[str]]]:
    """The model with every shared float initializer copied per consumer (or only those
    named in ``only``), the fills extended to the copies of materialized tensors, and
    which tensors became which copies.

    A copy is ``<name>:<node>``; with ``only``, a node that reads the tensor through
    several inputs (BatchNormalization's scale and var, deduplicated) gets one copy per
    input, ``<name>:<node>:<input position>``, since those inputs are what disagree.
    """
    model = _copy(model)
    fills = dict(fills)
    stored, _ = stored_tensors(model)
    index = build_index(model)
    untied: dict[str, list[str]] = {}
    taken = _value_names(model)
    for name, item in stored.items():
        if only is not None and name not in only:
            continue
        edges = index.edges.get(name, [])
        consumers = {id(edge.node): index.labels[id(edge.node)] for edge in edges}  # a node may read it twice
        floating = item.proto.data_type in FLOAT_TYPES
        positions: dict[int, set[int]] = {}
        for edge in edges:
            positions.setdefault(id(edge.node), set()).add(edge.index)
        by_input = {node for node, found in positions.items() if only is not None and len(found) > 1}
        if (len(consumers) < 2 and not by_input) or item.kind != "initializer" or not floating:
            continue

        def copy_name(edge: Edge) -> str:
            label = f"{name}:{consumers[id(edge.node)]}"
            return f"{label}:{edge.index}" if id(edge.node) in by_input else label

        copies = list(dict.fromkeys(copy_name(edge) for edge in edges))
        for copy_of in copies:
            if copy_of in taken:
                raise ModelError(
                    f"{where}: tensor {name!r}: its untied copy would be named {copy_of!r}, which the model already uses; "
                    "rename that value or untie fewer tensors"
                )
            taken.add(copy_of)
            copy = TensorProto()
            copy.CopyFrom(item.proto)
            copy.name = copy_of
            if name in fills:
                fills[copy.name] = fills[name]
            item.graph.initializer.append(copy)
            _declare_input(model, item.graph, copy)
        for edge in edges:
            edge.node.input[edge.index] = copy_name(edge)
        untied[name] = copies
        if not any(o.name == name for o in item.graph.output):
            _remove(item.graph.initializer, lambda tensor: tensor.name == name)
            _remove(item.graph.input, lambda entry: entry.name == name)
    return model, fills, untied
