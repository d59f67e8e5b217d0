"""ONNX models: find every float weight, read the graph for fans, write a new model.

All I/O and graph reading; the values come from the engine.  The onnx library's traps
are avoided on purpose: the model is loaded without external data (weights are read
by offset), ``onnx.save`` is never called (it mutates the model and appends to data
files), and output data always goes to a fresh file beside the output.
"""

from __future__ import annotations

import contextlib
import functools
import math
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from vsconf.engine import FanHint, Plan
from vsconf.errors import ModelError
from vsconf.fans import Axes, axes_fans
from vsconf.files import atomic_path, little_endian_bytes
from vsconf.matching import Consumer, TensorInfo

# Protobuf refuses messages over 2 GiB; stay clear of it with room for the graph.
_INLINE_LIMIT = 1_800_000_000
# Tensors at least this large go to the data file when writing external data.
_EXTERNAL_THRESHOLD = 1024
_ALIGNMENT = 4096
# Ops that pass a weight on to its real consumer, whose axes vsconf can follow.
LOOK_THROUGH = frozenset({"Identity", "Cast", "Transpose", "Unsqueeze", "Squeeze", "Slice", "Concat"})
# The formal inputs of contrib ops that onnx.defs does not know.
_CONTRIB_INPUTS = {
    ("com.microsoft", "Attention"): ["input", "weights", "bias", "mask_index", "past", "attention_bias", "past_sequence_length"],
}
_FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}
)
# Which input of a node is "its weight", for ``fans_from: weight``.
_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "LSTM": 1, "GRU": 1, "RNN": 1, "Attention": 1}


@dataclass
class _Stored:
    """A float-or-not tensor stored in the model: an initializer, a Constant node, or a
    ConstantOfShape output made real by --materialize."""

    name: str
    proto: onnx.TensorProto
    graph: onnx.GraphProto
    kind: str  # "initializer" or "constant"


@dataclass
class _Edge:
    node: onnx.NodeProto
    index: int
    graph: onnx.GraphProto


@dataclass
class _Reach:
    """A terminal consumer reached from a stored tensor, with the axis map on the way."""

    node: onnx.NodeProto
    index: int
    axis_map: tuple[int | None, ...]  # for each axis at the consumer: the stored axis, or None


@dataclass
class _Index:
    """Who reads and who writes each value, across the main graph and every subgraph."""

    edges: dict[str, list[_Edge]] = field(default_factory=dict)
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph under it (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _graphs(sub)


def _attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


@functools.cache
def _formal_inputs(domain: str, op_type: str, version: int) -> tuple[str, ...]:
    if (domain, op_type) in _CONTRIB_INPUTS:
        return tuple(_CONTRIB_INPUTS[(domain, op_type)])
    try:
        schema = onnx.defs.get_schema(op_type, version, domain)
    except Exception:  # an op the installed onnx does not know
        return ()
    return tuple(i.name for i in schema.inputs)


def _np_dtype(data_type: int) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    except (KeyError, TypeError, ValueError):
        return np.dtype("V1")  # a type NumPy cannot hold: never filled, never read


class OnnxModel:
    """An ONNX model file: its float tensors, their consumers, and a writer."""

    target = "onnx"

    def __init__(self, path: Path, *, materialize: bool = False, untie: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            raise ModelError(f"{path}: no such file")
        try:
            self.model = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ModelError(f"{path}: cannot read as ONNX: {exc}") from None
        self.base = self.path.parent
        self.opsets = {o.domain or "": o.version for o in self.model.opset_import}
        if "ai.onnx" in self.opsets:
            self.opsets.setdefault("", self.opsets["ai.onnx"])
        self.recorded_seed = _recorded_seed(self.model)
        if materialize:
            self._materialize()
        self._stored = self._collect()
        for item in self._stored.values():  # refuse a bad data location before doing any work
            if item.proto.data_location == onnx.TensorProto.EXTERNAL:
                self._data_path(item.proto)
        if untie:
            self._untie()
            self._stored = self._collect()
        self._index = self._build_index()
        self._infos, self._hints = self._analyse()

    # ------------------------------------------------------------------ reading

    def close(self) -> None:
        pass

    def _collect(self) -> dict[str, _Stored]:
        stored: dict[str, _Stored] = {}

        def add(item: _Stored) -> None:
            if item.name in stored:
                raise ModelError(
                    f"{self.path}: two tensors are named {item.name!r}; vsconf needs unique tensor names"
                )
            stored[item.name] = item

        for graph in _graphs(self.model.graph):
            for tensor in graph.initializer:
                add(_Stored(tensor.name, tensor, graph, "initializer"))
            for node in graph.node:
                if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
                    for attribute in node.attribute:
                        if attribute.name == "value" and attribute.type == onnx.AttributeProto.TENSOR:
                            add(_Stored(node.output[0], attribute.t, graph, "constant"))
        return stored

    def _data_path(self, tensor: onnx.TensorProto) -> Path:
        """The data file of an external tensor; only files inside the model's folder are read."""
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        candidate = (self.base / location).resolve()
        if not location or Path(location).is_absolute() or self.base.resolve() not in candidate.parents:
            raise ModelError(f"{self.path}: tensor {tensor.name!r} has external data outside the model's folder: {location!r}")
        return candidate

    def _tensor_bytes(self, tensor: onnx.TensorProto) -> bytes:
        """Raw little-endian bytes of an external tensor, read by offset from its data file."""
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        candidate = self._data_path(tensor)
        offset = int(info.get("offset", 0))
        try:
            with open(candidate, "rb") as handle:
                handle.seek(offset)
                length = int(info["length"]) if "length" in info else None
                data = handle.read() if length is None else handle.read(length)
        except OSError as exc:
            raise ModelError(f"{self.path}: tensor {tensor.name!r}: cannot read {location}: {exc.strerror}") from None
        if length is not None and len(data) != length:
            raise ModelError(f"{self.path}: tensor {tensor.name!r}: {location} ends before offset {offset} + {length}")
        return data

    def _array(self, tensor: onnx.TensorProto) -> np.ndarray:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            dtype = _np_dtype(tensor.data_type).newbyteorder("<")
            data = self._tensor_bytes(tensor)
            return np.frombuffer(data, dtype=dtype).reshape(tuple(tensor.dims))
        return numpy_helper.to_array(tensor)

    def read(self, name: str) -> np.ndarray:
        return self._array(self._stored[name].proto)

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def hints(self) -> dict[str, FanHint]:
        return dict(self._hints)

    # ------------------------------------------------------------------ graph analysis

    def _build_index(self) -> _Index:
        index = _Index()
        position = 0
        for graph in _graphs(self.model.graph):
            for node in graph.node:
                index.names[id(node)] = node.name or f"{node.op_type}#{position}"
                position += 1
                for i, name in enumerate(node.input):
                    if name:
                        index.edges.setdefault(name, []).append(_Edge(node, i, graph))
                for name in node.output:
                    if name:
                        index.producers[name] = node
        return index

    def _constant_ints(self, name: str) -> list[int] | None:
        item = self._stored.get(name)
        if item is None:
            return None
        try:
            return [int(v) for v in self._array(item.proto).ravel()]
        except ModelError:
            return None

    def _formal(self, node: onnx.NodeProto, index: int) -> str:
        domain = node.domain or ""
        names = _formal_inputs(domain, node.op_type, self.opsets.get(domain, 1))
        if not names:
            return f"input{index}"
        return names[index] if index < len(names) else names[-1]

    def _through(self, node: onnx.NodeProto, index: int, axis_map: tuple[int | None, ...]) -> tuple[int | None, ...] | None:
        """The axis map after a look-through op, or None when vsconf cannot follow it."""
        op = node.op_type
        if op in ("Identity", "Cast", "Slice"):
            return axis_map if index == 0 else None
        if op == "Concat":
            return axis_map
        if index != 0:
            return None
        rank = len(axis_map)
        if op == "Transpose":
            perm = _attribute(node, "perm") or list(reversed(range(rank)))
            return tuple(axis_map[p] for p in perm)
        axes = _attribute(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self._constant_ints(node.input[1])
        if op == "Unsqueeze":
            if axes is None:
                return None
            out_rank = rank + len(axes)
            inserted = sorted(a % out_rank for a in axes)
            mapped = list(axis_map)
            for a in inserted:
                mapped.insert(a, None)
            return tuple(mapped)
        if op == "Squeeze":
            if axes is None:
                return None  # squeezing "every size-1 axis" needs shapes vsconf does not track
            removed = {a % rank for a in axes}
            return tuple(m for i, m in enumerate(axis_map) if i not in removed)
        return None

    def _reach(self, name: str, rank: int) -> tuple[list[_Reach], list[str]]:
        """Terminal consumers of stored tensor ``name``, and the look-through ops we could not follow."""
        reached: list[_Reach] = []
        stuck: list[str] = []
        seen: set[tuple[str, tuple]] = set()
        stack = [(name, tuple(range(rank)))]
        while stack:
            value, axis_map = stack.pop()
            if (value, axis_map) in seen:
                continue
            seen.add((value, axis_map))
            for edge in self._index.edges.get(value, []):
                node = edge.node
                if node.op_type in LOOK_THROUGH and node.domain in ("", "ai.onnx"):
                    after = self._through(node, edge.index, axis_map)
                    if after is None:
                        stuck.append(f"{node.op_type} ({self._index.names[id(node)]})")
                        continue
                    stack.extend((out, after) for out in node.output if out)
                else:
                    reached.append(_Reach(node, edge.index, axis_map))
        return reached, stuck

    def _role(self, reach: _Reach) -> tuple[list[int], list[int], list[int], str] | None:
        """(in, out, batch) axes at the consumer, and a label, for the weight inputs vsconf knows."""
        node, index = reach.node, reach.index
        op, domain = node.op_type, node.domain or ""
        rank = len(reach.axis_map)
        formal = self._formal(node, index)
        label = f"{op} {formal}"
        if domain == "com.microsoft" and op == "Attention" and formal == "weights" and rank == 2:
            return [0], [1], [], label
        if domain not in ("", "ai.onnx"):
            return None
        if op in ("Conv", "ConvTranspose") and formal == "W" and rank >= 3:
            return [1], [0], [], label
        if op == "Gemm" and rank == 2 and formal in ("A", "B"):
            flag = "transA" if formal == "A" else "transB"
            transposed = bool(_attribute(node, flag, 0))
            if formal == "B":  # [K, N], or [N, K] when transposed
                k_axis = 1 if transposed else 0
            else:  # [M, K], or [K, M] when transposed
                k_axis = 0 if transposed else 1
            return [k_axis], [1 - k_axis], [], f"{label} ({flag}={int(transposed)})"
        if op == "MatMul" and formal in ("A", "B") and rank >= 1:
            if rank == 1:
                return [0], [], [], label
            k_axis, other = (rank - 2, rank - 1) if formal == "B" else (rank - 1, rank - 2)
            return [k_axis], [other], list(range(rank - 2)), label
        if op in ("LSTM", "GRU", "RNN") and formal in ("W", "R") and rank == 3:
            return [2], [1], [0], label
        if op == "Gather" and formal == "data" and rank == 2 and _attribute(node, "axis", 0) == 0:
            return [0], [1], [], label
        return None

    def _weight_of(self, node: onnx.NodeProto, depth: int = 0) -> str | None:
        """The stored tensor that is ``node``'s weight, following look-through ops backwards."""
        op = node.op_type
        if op in ("Add", "Sum") and depth == 0:
            for value in node.input:
                producer = self._index.producers.get(value)
                if producer is not None and producer.op_type in _WEIGHT_INPUT:
                    found = self._weight_of(producer, depth + 1)
                    if found:
                        return found
            return None
        slot = _WEIGHT_INPUT.get(op)
        if slot is None or len(node.input) <= slot:
            return None
        candidates = [node.input[slot]] + ([node.input[0]] if op in ("Gemm", "MatMul") else [])
        for value in candidates:
            for _ in range(16):
                if value in self._stored:
                    return value
                producer = self._index.producers.get(value)
                if producer is None or producer.op_type not in LOOK_THROUGH or not producer.input:
                    break
                value = producer.input[0]
        return None

    def _analyse(self) -> tuple[list[TensorInfo], dict[str, FanHint]]:
        infos: list[TensorInfo] = []
        hints: dict[str, FanHint] = {}
        for name, item in self._stored.items():
            shape = tuple(int(d) for d in item.proto.dims)
            dtype = _np_dtype(item.proto.data_type)
            reached, stuck = self._reach(name, len(shape))
            consumers: list[Consumer] = []
            roles: list[tuple[Axes, str, tuple[int, int]]] = []
            weight = None
            for reach in reached:
                node = reach.node
                node_name = self._index.names[id(node)]
                consumer = Consumer(node.op_type, self._formal(node, reach.index), node_name, node.domain or "")
                if consumer not in consumers:
                    consumers.append(consumer)
                role = self._role(reach)
                if role is not None:
                    in_axes, out_axes, batch_axes, label = role
                    stored_axes = [
                        [reach.axis_map[a] for a in axes if reach.axis_map[a] is not None]
                        for axes in (in_axes, out_axes, batch_axes)
                    ]
                    axes = Axes(*stored_axes)
                    roles.append((axes, f"{label} ({node_name})", axes_fans(shape, axes)))
                weight = weight or self._weight_of(node)
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
            hints[name] = FanHint(axes=axes, source=source, weight=weight, conflict=conflict)
            infos.append(TensorInfo(name, shape, dtype, tuple(consumers)))
        return infos, hints

    # ------------------------------------------------------------------ rewrites

    def _materialize(self) -> None:
        """Turn ``ConstantOfShape`` nodes with a constant shape into initializers of that shape.

        The new initializer holds the node's fill value (so ``keep`` keeps it), and shape
        tensors that nothing reads any more are dropped with their graph inputs.  Tensors
        are built in place: big models are not copied message by message.
        """
        uses: dict[str, int] = {}
        for graph in _graphs(self.model.graph):
            for node in graph.node:
                for value in node.input:
                    uses[value] = uses.get(value, 0) + 1
        for graph in _graphs(self.model.graph):
            shapes = {t.name: t for t in graph.initializer}

            def replaceable(node: onnx.NodeProto) -> bool:
                return node.op_type == "ConstantOfShape" and bool(node.input) and node.input[0] in shapes

            replaced = [node for node in graph.node if replaceable(node)]
            for node in replaced:
                shape = [int(d) for d in self._array(shapes[node.input[0]]).ravel()]
                value = _attribute(node, "value")
                fill = numpy_helper.to_array(value).ravel()[:1] if value is not None else np.zeros(1, np.float32)
                made = graph.initializer.add()
                made.name = node.output[0]
                made.data_type = onnx.helper.np_dtype_to_tensor_dtype(fill.dtype)
                made.dims.extend(shape)
                made.raw_data = little_endian_bytes(np.broadcast_to(fill, shape))
                if self.model.ir_version < 4:  # IR 3 lists every initializer among the graph inputs
                    graph.input.append(onnx.helper.make_tensor_value_info(made.name, made.data_type, shape))
                uses[node.input[0]] -= 1
            if not replaced:
                continue
            outputs = {o.name for o in graph.output}
            unused = {n.input[0] for n in replaced if uses[n.input[0]] == 0 and n.input[0] not in outputs}
            _remove(graph.node, replaceable)
            _remove(graph.initializer, lambda tensor: tensor.name in unused)
            _remove(graph.input, lambda item: item.name in unused)

    def _untie(self) -> None:
        """Give every direct consumer of a shared float initializer its own copy, ``<name>:<node>``.

        Shared non-float tensors (shapes, axes) stay shared: vsconf never fills them.
        """
        index = self._build_index()
        for name, item in list(self._stored.items()):
            edges = index.edges.get(name, [])
            floating = item.proto.data_type in _FLOAT_TYPES
            if len(edges) < 2 or item.kind != "initializer" or not floating:
                continue
            for edge in edges:
                copy = onnx.TensorProto()
                copy.CopyFrom(item.proto)
                copy.name = f"{name}:{index.names[id(edge.node)]}"
                item.graph.initializer.append(copy)
                edge.node.input[edge.index] = copy.name
                if self.model.ir_version < 4:
                    item.graph.input.append(onnx.helper.make_tensor_value_info(copy.name, copy.data_type, list(copy.dims)))
            if not any(o.name == name for o in item.graph.output):
                _remove(item.graph.initializer, lambda tensor: tensor.name == name)
                _remove(item.graph.input, lambda entry: entry.name == name)

    # ------------------------------------------------------------------ writing

    def write(self, output: Path, plan: Plan, values, metadata: Mapping[str, str], progress=None) -> None:
        """Write the model with new values to ``output``; the input's files are never written.

        With external data (the input had some, or the output would pass protobuf's 2 GiB),
        tensors go to a fresh data file beside the output, renamed into place before the
        model that names it.  Data files that only the replaced file used are removed after.
        """
        entries = {entry.name: entry for entry in plan}
        input_files = _external_locations(self.model)
        replacing_input = output.resolve() == self.path.resolve()
        replaced_files = input_files if replacing_input else self._data_files_of(output)
        inline_bytes = sum(_nbytes(item.proto) for item in self._stored.values())
        data_path = None
        if input_files or inline_bytes > _INLINE_LIMIT:
            data_path = output.parent / _fresh_data_name(output)
        try:
            if data_path is not None:
                with atomic_path(data_path) as temp, open(temp, "wb") as data:
                    self._store(entries, values, progress, data, data_path.name)
            else:
                self._store(entries, values, progress, None, None)
            _set_metadata(self.model, metadata)
            with atomic_path(output) as temp:
                temp.write_bytes(self.model.SerializeToString())
        except BaseException:
            if data_path is not None:
                data_path.unlink(missing_ok=True)
            raise
        protected = set() if replacing_input else input_files
        for name in replaced_files - protected - ({data_path.name} if data_path else set()):
            with contextlib.suppress(OSError):
                (output.parent / name).unlink()

    def _store(self, entries, values, progress, data, location: str | None) -> None:
        """Put every tensor's bytes in place: new values, and in external mode every big initializer."""
        total = len(self._stored)
        for done, (name, item) in enumerate(self._stored.items(), 1):
            entry = entries.get(name)
            array = values(entry) if entry is not None else None
            movable = data is not None and item.kind == "initializer" and item.proto.data_type != onnx.TensorProto.STRING
            is_external = item.proto.data_location == onnx.TensorProto.EXTERNAL
            if array is not None or is_external or (movable and _nbytes(item.proto) >= _EXTERNAL_THRESHOLD):
                raw = little_endian_bytes(array) if array is not None else self._raw(item.proto)
                if movable and len(raw) >= _EXTERNAL_THRESHOLD:
                    _write_external(item.proto, data, location, raw)
                else:
                    _set_inline(item.proto, raw)
            if progress:
                progress(done, total, name)

    def _raw(self, tensor: onnx.TensorProto) -> bytes:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            return self._tensor_bytes(tensor)
        return little_endian_bytes(numpy_helper.to_array(tensor))

    def _data_files_of(self, output: Path) -> set[str]:
        if not output.exists():
            return set()
        try:
            other = onnx.load(str(output), load_external_data=False)
        except Exception:
            return set()
        return _external_locations(other)


def _external_locations(model: onnx.ModelProto) -> set[str]:
    names = set()
    for graph in _graphs(model.graph):
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                names |= {e.value for e in tensor.external_data if e.key == "location"}
    return names


def _nbytes(tensor: onnx.TensorProto) -> int:
    """The tensor's data size, without touching the data (serializing it to measure is slow)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        info = {e.key: e.value for e in tensor.external_data}
        return int(info.get("length", 0))
    dtype = _np_dtype(tensor.data_type)
    if dtype.kind == "V" and dtype.itemsize == 1 or tensor.data_type == onnx.TensorProto.STRING:
        return tensor.ByteSize()
    return math.prod(tensor.dims) * dtype.itemsize


def _fresh_data_name(output: Path) -> str:
    """``<output>.data``, or a random variant when that file exists (it may be in use)."""
    name = f"{output.name}.data"
    while (output.parent / name).exists():
        name = f"{output.name}.{secrets.token_hex(4)}.data"
    return name


_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def _set_inline(tensor: onnx.TensorProto, raw: bytes) -> None:
    """Store ``raw`` as the tensor's raw_data, keeping its name, dtype and dims."""
    for name in _TYPED_FIELDS:
        tensor.ClearField(name)
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT
    tensor.raw_data = raw


def _write_external(tensor: onnx.TensorProto, data, location: str, raw: bytes) -> None:
    """Append ``raw`` to the open data file (page-aligned) and point the tensor at it."""
    position = data.tell()
    padding = (-position) % _ALIGNMENT
    if padding:
        data.write(b"\0" * padding)
        position += padding
    data.write(raw)
    _set_inline(tensor, b"")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(position)), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _remove(field, unwanted) -> None:
    """Delete the items of a repeated protobuf field for which ``unwanted(item)`` holds, in
    place (rebuilding the field would copy every other message)."""
    for index in reversed([i for i, item in enumerate(field) if unwanted(item)]):
        del field[index]


def _set_metadata(model: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _recorded_seed(model: onnx.ModelProto) -> int | None:
    for prop in model.metadata_props:
        if prop.key == "vsconf.seed":
            with contextlib.suppress(ValueError):
                return int(prop.value)
    return None

