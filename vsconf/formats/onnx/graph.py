"""The graph: which tensors are stored, who reads them, and the fans their readers imply.

Pure functions over a ``ModelProto`` (a skeleton serves: nothing here reads a payload)
and a :class:`GraphIndex` built from it.  The contracts:

* **Order is checked, not assumed.**  :func:`order_problem` says when a node reads a
  value nothing defined before it (graph inputs, initializers, earlier nodes, or the
  enclosing graphs' values for If/Loop/Scan bodies) or defines one twice, so that a
  cycle is an error and never a hang.
* **Analysis never fails on what it cannot follow.**  An attribute of the wrong type or
  out of range, an unknown operator or opset, a huge constant: the tensor's fans fall
  back to the tf rule and the hint says "cannot follow <op>".  Constants (shapes, axes)
  are read through a callable, and only when they have at most :data:`MAX_RANK` elements.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vsconf.formats.onnx import proto
from vsconf.formats.onnx.proto import AttributeProto, TensorProto

from vsconf.engine import FanHint
from vsconf.fans import Axes, axes_fans, tf_fans
from vsconf.matching import PROTECTED_ROLES, Consumer, TensorInfo
from vsconf.formats.onnx.checks import np_dtype, plain, shown
from vsconf.formats.onnx.optable import FIXED_INPUTS, INDEX_INPUT_NAMES, PARAMETER_ROLES, ROLE_FAMILY, formal_inputs, input_row, looks_through, weight_positions

# Shapes, axes and perms are short: a constant with more elements is not read as one.
MAX_RANK = 64
# Look-through steps followed from one stored tensor before vsconf gives up on its fans.
_MAX_REACH = 4096
# Edges followed from all stored tensors together: linear in the model.  Real graphs take
# one to a few per tensor; a crafted one (thousands of tensors concatenated, then a chain of
# thousands of Identity nodes) would take tensors x chain.  Past it the model is refused.
REACH_STEPS_PER_TENSOR = 16
REACH_STEPS_BASE = 1_000_000
# A small integer constant's values by name, or None when it is not one.
ConstantInts = Callable[[str], "list[int] | None"]


class CannotFollow(Exception):
    """An attribute vsconf needs to follow a node is there but not what ONNX says it is."""


class TooTangled(Exception):
    """Following look-through ops from every stored tensor took more than ``steps`` steps."""

    def __init__(self, steps: int):
        super().__init__(steps)
        self.steps = steps


# --------------------------------------------------------------------------- walking graphs


def subgraphs(node: proto.NodeProto) -> Iterator[proto.GraphProto]:
    """The bodies of an If/Loop/Scan (any GRAPH or GRAPHS attribute)."""
    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == AttributeProto.GRAPHS:
            yield from attribute.graphs


def graphs(graph: proto.GraphProto) -> Iterator[proto.GraphProto]:
    """``graph`` and every subgraph under it, depth first."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from graphs(sub)


def node_labels(graph: proto.GraphProto) -> tuple[list[proto.NodeProto], dict[int, str]]:
    """Every node, and its name or ``Op#k`` (k: its position in a walk of the main graph,
    then the subgraphs).  Keep the list alive while using the ids."""
    nodes = [node for sub in graphs(graph) for node in sub.node]
    return nodes, {id(node): node.name or f"{node.op_type}#{k}" for k, node in enumerate(nodes)}


def all_tensors(graph: proto.GraphProto) -> Iterator[TensorProto]:
    """Every tensor a graph stores: initializers and tensor attributes, subgraphs included."""
    for sub in graphs(graph):
        yield from sub.initializer
        for sparse in sub.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in sub.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors


def external_locations(model: proto.ModelProto) -> list[str]:
    """The data files a model names, in order of first mention."""
    names: dict[str, None] = {}
    for tensor in all_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            names.update({e.value: None for e in tensor.external_data if e.key == "location"})
    return list(names)


def opsets(model: proto.ModelProto) -> dict[str, int]:
    """Opset version by domain ('' for ONNX's own, also when imported as 'ai.onnx')."""
    found = {o.domain or "": o.version for o in model.opset_import}
    if "ai.onnx" in found:
        found.setdefault("", found["ai.onnx"])
    return found


_FIELD_OF_ATTRIBUTE = {AttributeProto.INT: "i", AttributeProto.INTS: "ints", AttributeProto.TENSOR: "t"}


def attribute(node: proto.NodeProto, name: str, kind: int, default: Any = None) -> Any:
    """Attribute ``name`` of ``node`` if it has type ``kind`` (ints as a list), ``default``
    when absent; :class:`CannotFollow` when present with another type.  IR 1 models
    carry no type: the field that is set decides."""
    for item in node.attribute:
        if item.name != name:
            continue
        field_name = _FIELD_OF_ATTRIBUTE[kind]
        untyped = item.type == AttributeProto.UNDEFINED
        if item.type == kind or (untyped and _attribute_has(item, field_name)):
            value = getattr(item, field_name)
            return list(value) if kind == AttributeProto.INTS else value
        raise CannotFollow(name)
    return default


def _attribute_has(item: AttributeProto, field_name: str) -> bool:
    return len(item.ints) > 0 if field_name == "ints" else item.HasField(field_name)


# --------------------------------------------------------------------------- stored tensors


@dataclass
class Stored:
    """A float-or-not tensor stored in the model: an initializer, a Constant node, or a
    ConstantOfShape output made real by --materialize."""

    name: str
    proto: TensorProto
    graph: proto.GraphProto
    kind: str  # "initializer" or "constant"


def stored_tensors(model: proto.ModelProto) -> tuple[dict[str, Stored], str | None]:
    """Every stored tensor by name, in the order of a walk of the graphs; and the problem
    when two share a name (vsconf needs unique names), else None."""
    stored: dict[str, Stored] = {}
    for graph in graphs(model.graph):
        found = [Stored(tensor.name, tensor, graph, "initializer") for tensor in graph.initializer]
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output and node.output[0]:
                for item in node.attribute:
                    if item.name == "value" and item.type == AttributeProto.TENSOR:
                        found.append(Stored(node.output[0], item.t, graph, "constant"))
        for item in found:
            if item.name in stored:
                return stored, f"two tensors are named {shown(item.name)}; vsconf needs unique tensor names"
            stored[item.name] = item
    return stored, None


def order_problem(model: proto.ModelProto) -> str | None:
    """Whether a node reads a value nothing defines before it, or defines one twice in its graph."""
    nodes, labels = node_labels(model.graph)

    def walk(graph: proto.GraphProto, scopes: list[set[str]]) -> str | None:
        defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
        defined |= {s.values.name for s in graph.sparse_initializer}
        scopes = [*scopes, defined]
        for node in graph.node:
            where = f"node {shown(labels[id(node)])} ({plain(node.op_type)})"
            for value in node.input:
                if value and not any(value in scope for scope in scopes):
                    return (
                        f"{where} reads {shown(value)}, which nothing defines before it "
                        "(a cycle, or nodes out of topological order)"
                    )
            for sub in subgraphs(node):
                problem = walk(sub, scopes)
                if problem:
                    return problem
            for value in node.output:
                if value and value in defined:
                    return f"{where} writes {shown(value)}, which is already defined in its graph"
                defined.add(value)
        return None

    problem = walk(model.graph, [])
    del nodes
    return problem


# --------------------------------------------------------------------------- the index


@dataclass
class Edge:
    node: proto.NodeProto
    index: int
    graph: proto.GraphProto


@dataclass
class _Reach:
    """A terminal consumer reached from a stored tensor, with the axis map on the way."""

    node: proto.NodeProto
    index: int
    axis_map: tuple[int | None, ...]  # for each axis at the consumer: the stored axis, or None


@dataclass
class GraphIndex:
    """Who reads and who writes each value, across the main graph and every subgraph;
    ``labels``: each node's name or ``Op#k``, by ``id`` (``nodes`` keeps the ids valid)."""

    edges: dict[str, list[Edge]] = field(default_factory=dict)
    producers: dict[str, proto.NodeProto] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    nodes: list[proto.NodeProto] = field(default_factory=list)
    opsets: dict[str, int] = field(default_factory=dict)


def build_index(model: proto.ModelProto) -> GraphIndex:
    index = GraphIndex(opsets=opsets(model))
    index.nodes, index.labels = node_labels(model.graph)
    for graph in graphs(model.graph):
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name:
                    index.edges.setdefault(name, []).append(Edge(node, i, graph))
            for name in node.output:
                if name:
                    index.producers[name] = node
    return index


def version(index: GraphIndex, node: proto.NodeProto) -> int:
    """The opset version of the node's domain that the model imports (1 when it imports none)."""
    return index.opsets.get(node.domain or "", 1)


def formal(index: GraphIndex, node: proto.NodeProto, position: int) -> str:
    """The formal name of a node's input (``inputN`` when onnx does not know the op)."""
    names = formal_inputs(node.domain or "", node.op_type, version(index, node))
    if not names:
        return f"input{position}"
    return names[position] if position < len(names) else names[-1]


# --------------------------------------------------------------------------- following a weight


def _unsqueezed(axis_map: tuple[int | None, ...], axes: list[int]) -> tuple[int | None, ...] | None:
    """The axis map after inserting ``axes`` (ONNX's Unsqueeze), or None if they are not valid axes."""
    out_rank = len(axis_map) + len(axes)
    if len(axes) > MAX_RANK or not all(-out_rank <= a < out_rank for a in axes):
        return None
    inserted = sorted({a % out_rank for a in axes})
    if len(inserted) != len(axes):
        return None
    mapped = list(axis_map)
    for a in inserted:
        mapped.insert(a, None)
    return tuple(mapped)


def _squeezed(axis_map: tuple[int | None, ...], axes: list[int]) -> tuple[int | None, ...] | None:
    """The axis map after removing ``axes`` (ONNX's Squeeze), or None if they are not valid axes."""
    rank = len(axis_map)
    if not all(-rank <= a < rank for a in axes):
        return None
    removed = {a % rank for a in axes}
    if len(removed) != len(axes):
        return None
    return tuple(m for i, m in enumerate(axis_map) if i not in removed)


def _through(
    node: proto.NodeProto, position: int, axis_map: tuple[int | None, ...], constant_ints: ConstantInts
) -> tuple[int | None, ...] | None:
    """The axis map after a look-through op, or None when vsconf cannot follow it."""
    op = node.op_type
    if op in ("Identity", "Cast", "Slice", "Split"):  # Split: each part keeps the axes, as a Slice does
        return axis_map if position == 0 else None
    if op == "Concat":
        return axis_map
    if position != 0:
        return None
    rank = len(axis_map)
    if op == "Transpose":
        perm = attribute(node, "perm", AttributeProto.INTS) or list(reversed(range(rank)))
        if sorted(perm) != list(range(rank)):
            return None
        return tuple(axis_map[p] for p in perm)
    axes = attribute(node, "axes", AttributeProto.INTS)
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = constant_ints(node.input[1])
    if axes is None:
        return None  # Squeeze without axes removes "every size-1 axis": shapes vsconf does not track
    if op == "Unsqueeze":
        return _unsqueezed(axis_map, axes)
    if op == "Squeeze":
        return _squeezed(axis_map, axes)
    return None


def _reach(
    index: GraphIndex, name: str, rank: int, constant_ints: ConstantInts, budget: list[int]
) -> tuple[list[_Reach], list[str]]:
    """Terminal consumers of stored tensor ``name``, and the look-through ops we could not
    follow; every edge followed is taken from ``budget[0]`` (:class:`TooTangled` past it)."""
    reached: list[_Reach] = []
    stuck: list[str] = []
    seen: set[tuple[str, tuple]] = set()
    stack = [(name, tuple(range(rank)))]
    while stack:
        value, axis_map = stack.pop()
        if (value, axis_map) in seen:
            continue
        if len(seen) >= _MAX_REACH:
            stuck.append(f"more than {_MAX_REACH} look-through steps")
            break
        seen.add((value, axis_map))
        edges = index.edges.get(value, [])
        budget[0] -= 1 + len(edges)
        if budget[0] < 0:
            raise TooTangled(budget[1])
        for edge in edges:
            node = edge.node
            through = looks_through(node.domain, node.op_type)
            if through and edge.index > 0 and node.op_type != "Concat":
                reached.append(_Reach(node, edge.index, axis_map))  # Slice's starts, Unsqueeze's axes: the end
            elif through:
                try:
                    after = _through(node, edge.index, axis_map, constant_ints)
                except CannotFollow:
                    after = None
                if after is None:
                    stuck.append(f"{node.op_type} ({index.labels[id(node)]})")
                    continue
                stack.extend((out, after) for out in node.output if out)
            else:
                reached.append(_Reach(node, edge.index, axis_map))
    return reached, stuck


def role(index: GraphIndex, node: proto.NodeProto, position: int, rank: int) -> tuple[list[int], list[int], list[int], str] | None:
    """(in, out, batch) axes at the consumer, and a label, for the weight inputs vsconf knows:
    the op table's row for the input names a fan rule, and this reads it.

    Raises :class:`CannotFollow` when an attribute it needs has the wrong type.
    """
    op = node.op_type
    name = formal(index, node, position)
    row = input_row(node.domain or "", op, name, version(index, node))
    rule = row.fans if row is not None else None
    label = f"{op} {name}"
    if rule == "dense" and rank == 2:  # [in, out], as com.microsoft.Attention's weights
        return [0], [1], [], label
    if rule == "conv" and rank >= 3:  # [M, C/g, k...]; ConvTranspose's [C, M/g, k...] reads the same
        return [1], [0], [], label
    if rule == "gemm" and rank == 2:
        flag = "transA" if name == "A" else "transB"
        transposed = bool(attribute(node, flag, AttributeProto.INT, 0))
        if name == "B":  # [K, N], or [N, K] when transposed
            k_axis = 1 if transposed else 0
        else:  # [M, K], or [K, M] when transposed
            k_axis = 0 if transposed else 1
        return [k_axis], [1 - k_axis], [], f"{label} ({flag}={int(transposed)})"
    if rule == "matmul" and rank >= 1:
        if rank == 1:
            return [0], [], [], label
        k_axis, other = (rank - 2, rank - 1) if name == "B" else (rank - 1, rank - 2)
        return [k_axis], [other], list(range(rank - 2)), label
    if rule == "rnn" and rank == 3:  # [dirs, G*H, I or H]: Keras's kernel fans, directions are a batch
        return [2], [1], [0], label
    if rule == "embedding" and rank == 2 and attribute(node, "axis", AttributeProto.INT, 0) == 0:
        return [0], [1], [], label
    return None


def _weight_of(index: GraphIndex, stored: Mapping[str, Stored], node: proto.NodeProto, depth: int = 0) -> str | None:
    """The stored tensor that is ``node``'s weight, following look-through ops backwards;
    for an Add or Sum, the weight of the node that made one of its other inputs."""
    op = node.op_type
    if op in ("Add", "Sum") and (node.domain or "") in ("", "ai.onnx") and depth == 0:
        for value in node.input:
            producer = index.producers.get(value)
            if producer is not None and weight_positions(producer.domain or "", producer.op_type, version(index, producer)):
                found = _weight_of(index, stored, producer, depth + 1)
                if found:
                    return found
        return None
    slots = weight_positions(node.domain or "", op, version(index, node))
    for slot in slots:
        if slot >= len(node.input):
            continue
        value = node.input[slot]
        for _ in range(16):
            if value in stored:
                return value
            producer = index.producers.get(value)
            if producer is None or not looks_through(producer.domain, producer.op_type) or not producer.input:
                break
            value = producer.input[0]
    return None


def _feeds_softmax(index: GraphIndex, node: proto.NodeProto, steps: int = 4) -> bool:
    """Whether ``node``'s output reaches a Softmax through a few reshapes and additions:
    what is added there is an attention mask or a position bias, not a parameter."""
    frontier = [node]
    for _ in range(steps):
        following = []
        for current in frontier:
            for value in current.output:
                for edge in index.edges.get(value, []):
                    if edge.node.op_type in ("Softmax", "LogSoftmax"):
                        return True
                    if edge.node.op_type in ("Add", "Sub", "Reshape", "Cast", "Identity", "Where", "Unsqueeze", "Squeeze"):
                        following.append(edge.node)
        frontier = following
    return False


# Names the exporters give tensors they make (folded constants), never a module's
# parameter: TorchScript's onnx::Add_12 and /block/Constant_3_output_0, dynamo's val_12,
# embedding_1, _tensor_constant0.  A parameter keeps its dotted PyTorch name.
EXPORTER_NAME = re.compile(r"^(?:onnx::|/|val_\d+$|_tensor_constant\d+$|lifted_tensor_\d+$|[a-z][a-z0-9]*(?:_[a-z]+)*_\d+$)")

# Ops whose output is a normalized activation, or a step of one written out (RMSNorm as
# x * rsqrt(mean(x^2) + eps); GroupNorm as InstanceNormalization + Reshape).
_NORMALIZING = frozenset(
    {"InstanceNormalization", "LayerNormalization", "GroupNormalization", "BatchNormalization", "RMSNormalization",
     "Sqrt", "Reciprocal", "ReduceMean"}
)
_NORM_STEPS = frozenset({"Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze", "Mul", "Div"})


def _after_normalization(index: GraphIndex, node: proto.NodeProto, stored: Mapping[str, Stored], steps: int = 4) -> bool:
    """Whether another input of ``node`` is a normalized activation a few steps back: a
    stored tensor multiplied into it is a norm's scale, one added to it a norm's shift
    (the affine part of a normalization written out in elementary ops)."""
    frontier = [value for value in node.input if value and value not in stored]
    seen: set[str] = set()
    for _ in range(steps):
        following = []
        for value in frontier:
            producer = index.producers.get(value)
            if producer is None or value in seen:
                continue
            seen.add(value)
            if producer.op_type in _NORMALIZING:
                return True
            if producer.op_type in _NORM_STEPS:
                following.extend(v for v in producer.input if v and v not in stored)
        frontier = following
    return False


def _groupnorm_step(index: GraphIndex, node: proto.NodeProto) -> bool:
    """An InstanceNormalization whose output is reshaped back and then multiplied: GroupNorm
    as the exporters write it, whose own scale and bias are ones and zeros they made up
    (the module's affine parameters are the Mul and Add after it)."""
    if node.op_type != "InstanceNormalization":
        return False
    for value in node.output:
        for edge in index.edges.get(value, []):
            if edge.node.op_type != "Reshape":
                continue
            for after in edge.node.output:
                if any(e.node.op_type == "Mul" for e in index.edges.get(after, [])):
                    return True
    return False


def _after_scaled_normalization(index: GraphIndex, node: proto.NodeProto, stored: Mapping[str, Stored]) -> bool:
    """Whether another input of ``node`` is a normalized activation times a stored scale."""
    for value in node.input:
        producer = index.producers.get(value)
        if producer is not None and producer.op_type == "Mul" and any(v in stored for v in producer.input):
            if _after_normalization(index, producer, stored):
                return True
    return False


@dataclass
class _Roles:
    """What each consumer of one stored tensor says it is."""

    parameter: list[tuple[str, str]] = field(default_factory=list)  # (role, consumer label)
    fixed: list[str] = field(default_factory=list)  # inputs that never hold a parameter
    masks: list[str] = field(default_factory=list)  # additions onto attention scores
    loose: list[str] = field(default_factory=list)  # arithmetic the table does not describe

    def read(
        self, index: GraphIndex, stored: Mapping[str, Stored], node: proto.NodeProto, name: str, label: str, scalar: bool
    ) -> None:
        row = input_row(node.domain or "", node.op_type, name, version(index, node))
        arithmetic = (node.domain or "") in ("", "ai.onnx") and not scalar  # the patterns below
        if row is not None and row.role in ("norm_scale", "norm_bias") and _groupnorm_step(index, node):
            self.fixed.append(label + ", a unit affine an exporter wrote out of a GroupNorm")
        elif row is not None and row.role in PARAMETER_ROLES:
            self.parameter.append((row.role, label))
        elif (row is not None and row.role in FIXED_INPUTS) or (row is None and name in INDEX_INPUT_NAMES):
            self.fixed.append(label)
        elif arithmetic and node.op_type in ("Add", "Sum") and _weight_of(index, stored, node):
            self.parameter.append(("bias", label + " after a weight"))
        elif arithmetic and node.op_type in ("Add", "Sub") and _feeds_softmax(index, node):
            self.masks.append(label)
        elif arithmetic and node.op_type == "Mul" and _after_normalization(index, node, stored):
            self.parameter.append(("norm_scale", label + " after a normalization"))
        elif arithmetic and node.op_type == "Add" and _after_scaled_normalization(index, node, stored):
            self.parameter.append(("norm_bias", label + " after a normalization's scale"))
        else:
            self.loose.append(label)

    def decide(self, item: Stored, shape: tuple[int, ...], stuck: list[str]) -> tuple[str, str, str | None]:
        """(role, what decided it, why the consumers disagree or None)."""
        conflict = None
        families = {ROLE_FAMILY.get(r, r) for r, _ in self.parameter}
        if len(families) > 1:
            conflict = "its consumers disagree on its role: " + "; ".join(
                f"{label} reads it as {found}" for found, label in dict.fromkeys(self.parameter)
            )
        if self.parameter:
            # When consumers disagree, a running statistic's reading wins: safe defaults keep it.
            found, label = next((p for p in self.parameter if p[0] in PROTECTED_ROLES), self.parameter[0])
            return found, label, conflict
        if item.kind == "constant":
            return "constant", "a Constant node", None
        if math.prod(shape) <= 1:
            return "constant", "a scalar", None
        if self.masks:
            return "constant", "added to attention scores (a mask or position bias): " + self.masks[0], None
        if self.fixed and not self.loose:
            return "constant", "read only as " + ", ".join(dict.fromkeys(self.fixed)), None
        if self.loose and EXPORTER_NAME.match(item.name):
            return "constant", "an exporter-made tensor read only by " + ", ".join(dict.fromkeys(self.loose)), None
        if self.loose:
            return "other", "read by " + ", ".join(dict.fromkeys(self.loose)), None
        if stuck:  # read through an op vsconf cannot follow: it may be anything
            return "other", "read through " + ", ".join(dict.fromkeys(stuck)) + ", which vsconf cannot follow", None
        return "constant", "read by no node", None


def analyse(
    stored: Mapping[str, Stored], index: GraphIndex, constant_ints: ConstantInts
) -> tuple[list[TensorInfo], dict[str, FanHint]]:
    """Each stored tensor's facts (name, shape, dtype, consumers, role) and fan hint.

    Raises :class:`TooTangled` when the look-through paths from all tensors pass
    ``REACH_STEPS_BASE + REACH_STEPS_PER_TENSOR`` x tensors edges.
    """
    infos: list[TensorInfo] = []
    hints: dict[str, FanHint] = {}
    steps = REACH_STEPS_BASE + REACH_STEPS_PER_TENSOR * len(stored)
    budget = [steps, steps]  # left, and all there was
    for name, item in stored.items():
        shape = tuple(int(d) for d in item.proto.dims)
        dtype = np_dtype(item.proto.data_type)
        reached, stuck = _reach(index, name, len(shape), constant_ints, budget)
        consumers: list[Consumer] = []
        known: set[Consumer] = set()  # a tensor may have thousands of consumers
        roles: list[tuple[Axes, str, tuple[int, int]]] = []
        said = _Roles()
        weights: dict[str, str] = {}  # consumer label -> its weight
        for reach in reached:
            node = reach.node
            node_name = index.labels[id(node)]
            consumer = Consumer(node.op_type, formal(index, node, reach.index), node_name, node.domain or "")
            if consumer not in known:
                known.add(consumer)
                consumers.append(consumer)
                label = f"{consumer.qualified_op} {consumer.input_name} ({node_name})"
                said.read(index, stored, node, consumer.input_name, label, math.prod(shape) <= 1)
            try:
                found = role(index, node, reach.index, len(reach.axis_map))
            except CannotFollow:
                stuck.append(f"{node.op_type} ({node_name})")
                found = None
            if found is not None:
                in_axes, out_axes, batch_axes, label = found
                stored_axes = [
                    [reach.axis_map[a] for a in axes if reach.axis_map[a] is not None] for axes in (in_axes, out_axes, batch_axes)
                ]
                axes = Axes(*stored_axes)
                roles.append((axes, f"{label} ({node_name})", axes_fans(shape, axes)))
            weight = _weight_of(index, stored, node)
            if weight:
                weights.setdefault(f"{consumer.qualified_op} {consumer.input_name} ({node_name})", weight)
        conflict = None
        distinct = {fans for _, _, fans in roles}
        if len(distinct) > 1:
            conflict = "its consumers disagree on fans: " + "; ".join(
                f"{source} gives (fan_in, fan_out) = {fans}" for _, source, fans in roles
            )
        axes, source = (roles[0][0], roles[0][1]) if roles else (None, "")
        if not roles and stuck:
            source = "tf (auto: cannot follow " + ", ".join(stuck) + ")"
        elif not roles and consumers:
            source = "tf (auto: no fan rule for " + ", ".join(f"{c.qualified_op} {c.input_name}" for c in consumers) + ")"
        kind, decided_by, role_conflict = said.decide(item, shape, stuck)
        first_weight = next(iter(weights.values()), None)
        hints[name] = FanHint(
            axes=axes,
            source=source,
            weight=first_weight,
            conflict=conflict,
            weights=tuple(weights.items()),
            role_conflict=role_conflict,
        )
        infos.append(TensorInfo(name, shape, dtype, tuple(consumers), role=kind, role_from=decided_by))
    return infos, hints


def weight_disagreement(hints: Mapping[str, FanHint], infos: Mapping[str, TensorInfo], name: str) -> str | None:
    """Why the weights of a tensor's consumers imply different fans under ``layout: auto``
    (what ``fans_from: weight`` would take), or None when they agree."""
    hint = hints.get(name)
    if hint is None or len({w for _, w in hint.weights}) < 2:
        return None
    implied = []
    for label, weight in hint.weights:
        info = infos.get(weight)
        if info is None:
            continue
        weight_hint = hints.get(weight)
        fans = axes_fans(info.shape, weight_hint.axes) if weight_hint and weight_hint.axes else tf_fans(info.shape)
        implied.append((label, weight, fans))
    # weights of different shapes may agree under auto and not under another layout: untie them too
    if len({(fans, infos[w].shape) for _, w, fans in implied}) < 2:
        return None
    return "its consumers' weights imply different fans for `fans_from: weight`: " + "; ".join(
        f"{label} has weight {shown(weight)} with (fan_in, fan_out) = {fans}" for label, weight, fans in implied
    )


def conflicts(infos: list[TensorInfo], hints: Mapping[str, FanHint]) -> dict[str, str]:
    """The shared tensors whose consumers disagree, each with why (what ``untie:
    conflicts`` unties): on fans, on role, or on the weights ``fans_from: weight`` reads."""
    by_name = {info.name: info for info in infos}
    found: dict[str, str] = {}
    for info in infos:
        hint = hints.get(info.name)
        if hint is None or not info.is_float:
            continue
        reason = hint.conflict or hint.role_conflict or weight_disagreement(hints, by_name, info.name)
        if reason:
            found[info.name] = reason
    return found
