"""The protobuf wire format, as far as vsconf needs it: a model's structure without its
tensor bytes, and an output put back together around new ones.

A serialized message is a run of fields, each a tag (field number << 3 | wire type) and a
value: a varint, 8 bytes, 4 bytes, a group, or a varint length and that many bytes
(sub-messages, strings, bytes, packed numbers).  A model's weights are the ``raw_data``
bytes of ``TensorProto`` messages nested in the model -- the graph's initializers, node
attributes, subgraphs, functions, training graphs.  The contract:

* :func:`skeleton` copies a serialized ``ModelProto`` with every ``raw_data`` of at least
  :data:`PAYLOAD_MIN` bytes replaced by a 24-byte *marker*, recomputing the length prefix
  of every enclosing message.  It rewrites only ``raw_data`` values and lengths, so
  protobuf parses the skeleton into the message it would have parsed from the original
  (merged duplicate fields, the last ``raw_data`` winning, unknown fields: all the same),
  with markers for payloads.  It never reads a payload byte: the cost is the graph's.
  It raises :class:`WireError` on bytes it cannot walk (then the caller parses as onnx
  would, or refuses the file).
* :func:`splice` is the inverse for an output: the bytes of a serialized skeleton as
  literal pieces and the :class:`References` its markers stand for, with every length
  prefix recomputed for the referenced sizes.  Protobuf writes a message as its fields in
  field-number order, each sub-message as tag, length and its own serialization, so the
  spliced bytes are exactly what ``SerializeToString()`` of the full model would give.

The fields that lead to tensors are read from onnx's own message descriptors.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Protocol

from vsconf.formats.onnx import proto

# raw_data shorter than this stays in the skeleton: a marker would not save anything.
PAYLOAD_MIN = 256
# Deeper than this, messages are copied as they are (protobuf refuses deeper nesting anyway).
_MAX_DEPTH = 100
_MARKER_SIZE = 24
_MESSAGES = (
    proto.ModelProto,
    proto.GraphProto,
    proto.NodeProto,
    proto.AttributeProto,
    proto.TensorProto,
    proto.SparseTensorProto,
    proto.FunctionProto,
    proto.TrainingInfoProto,
)
_KINDS = {message.DESCRIPTOR.full_name for message in _MESSAGES}
# For each message kind: field number -> the kind of message that field holds.
_CHILDREN: dict[str, dict[int, str]] = {
    message.DESCRIPTOR.full_name: {
        field.number: field.message_type.full_name
        for field in message.DESCRIPTOR.fields
        if field.message_type is not None and field.message_type.full_name in _KINDS
    }
    for message in _MESSAGES
}
_MODEL = proto.ModelProto.DESCRIPTOR.full_name
_TENSOR = proto.TensorProto.DESCRIPTOR.full_name
_RAW_DATA = proto.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


class WireError(Exception):
    """Bytes that are not protobuf's wire format where a message was expected."""


class Sized(Protocol):
    length: int


Piece = Any  # literal bytes, or a source with a ``length`` that a marker stood for


class References:
    """The sources that markers stand for: ``add`` one, get its marker; ``find`` a marker's
    source.  A marker is 16 random bytes of this table (a file cannot forge them) and an
    index; :meth:`extended` shares the markers made so far and adds its own."""

    def __init__(self, magic: bytes | None = None, sources: list[Sized] | None = None):
        self._magic = magic or secrets.token_bytes(_MARKER_SIZE - 8)
        self._sources: list[Sized] = sources if sources is not None else []

    def add(self, source: Sized) -> bytes:
        self._sources.append(source)
        return self._magic + (len(self._sources) - 1).to_bytes(8, "little")

    def find(self, raw: bytes) -> Sized | None:
        if len(raw) != _MARKER_SIZE or raw[: _MARKER_SIZE - 8] != self._magic:
            return None
        return self._sources[int.from_bytes(raw[_MARKER_SIZE - 8 :], "little")]

    def extended(self) -> References:
        return References(self._magic, list(self._sources))

    @property
    def magic(self) -> bytes:
        return self._magic


# --------------------------------------------------------------------------- varints


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _skip(buf, pos: int, end: int, wire: int, number: int) -> int:
    """The position after a field's value that is not length-delimited."""
    if wire == 0:
        return _varint(buf, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 3:  # a group: fields up to the matching end-group tag (protobuf lets field 0 pass here)
        while True:
            tag, pos = _varint(buf, pos, end)
            if tag & 7 == 4:
                if tag >> 3 != number:
                    raise WireError("mismatched end of group")
                return pos
            if tag & 7 == 2:
                length, pos = _varint(buf, pos, end)
                pos += length
            else:
                pos = _skip(buf, pos, end, tag & 7, tag >> 3)
            if pos > end:
                raise WireError("truncated group")
    else:
        raise WireError(f"wire type {wire}")
    if pos > end:
        raise WireError("truncated field")
    return pos


def _field_end(buf, pos: int, end: int, tag: int) -> int:
    if tag >> 3 == 0:
        raise WireError("field number 0")
    if tag & 7 == 2:
        length, pos = _varint(buf, pos, end)
        if pos + length > end:
            raise WireError("length past the end of its message")
        return pos + length
    return _skip(buf, pos, end, tag & 7, tag >> 3)


# --------------------------------------------------------------------------- rewriting messages

# A payload handler: (position of a raw_data value, its length) -> its replacement pieces
# and their total length, or None to keep it.
_Payload = Callable[[int, int], "tuple[list[Piece], int] | None"]
# Whether to look inside the message at [start, end).
_Descend = Callable[[int, int], bool]


def _rewrite(buf, start: int, end: int, kind: str, depth: int, payload: _Payload, descend: _Descend):
    """The message at [start, end) with its payloads replaced, as (pieces, length), or None
    when nothing in it changed."""
    if depth > _MAX_DEPTH or not descend(start, end):
        return None
    children = _CHILDREN[kind]
    tensor = kind == _TENSOR
    pieces: list[Piece] | None = None
    size = 0
    copied = start  # the bytes before this are in ``pieces``
    pos = start
    while pos < end:
        tag, after_tag = _varint(buf, pos, end)
        if tag & 7 != 2:
            pos = _field_end(buf, after_tag, end, tag)
            continue
        if tag >> 3 == 0:
            raise WireError("field number 0")
        length, value = _varint(buf, after_tag, end)
        value_end = value + length
        if value_end > end:
            raise WireError("length past the end of its message")
        number = tag >> 3
        replaced = None
        if tensor and number == _RAW_DATA:
            replaced = payload(value, length)
        elif number in children:
            replaced = _rewrite(buf, value, value_end, children[number], depth + 1, payload, descend)
        if replaced is not None:
            inner, inner_size = replaced
            if pieces is None:
                pieces = []
            head = buf[copied:after_tag]
            prefix = encode_varint(inner_size)
            pieces += [head, prefix, *inner]
            size += len(head) + len(prefix) + inner_size
            copied = value_end
        pos = value_end
    if pieces is None:
        return None
    tail = buf[copied:end]
    pieces.append(tail)
    return pieces, size + len(tail)


def _merged(pieces: list[Piece]) -> list[Piece]:
    """Adjacent literal pieces joined."""
    out: list[Piece] = []
    run: list[bytes] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            run.append(piece)
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(piece)
    if run:
        out.append(b"".join(run))
    return [piece for piece in out if not isinstance(piece, bytes) or piece]


def skeleton(buf, size: int, add: Callable[[int, int], bytes]) -> bytes:
    """The serialized ``ModelProto`` in ``buf[:size]`` with every ``raw_data`` of at least
    :data:`PAYLOAD_MIN` bytes replaced by ``add(offset, length)`` (a marker).

    Raises :class:`WireError` where the bytes are not wire format.
    """

    def payload(offset: int, length: int):
        if length < PAYLOAD_MIN:
            return None
        marker = add(offset, length)
        return [marker], len(marker)

    # A message shorter than PAYLOAD_MIN cannot hold a payload worth replacing.
    rewritten = _rewrite(buf, 0, size, _MODEL, 0, payload, lambda start, end: end - start >= PAYLOAD_MIN)
    if rewritten is None:
        return bytes(buf[:size])
    return b"".join(_merged(rewritten[0]))


def splice(data: bytes, references: References) -> tuple[list[Piece], int]:
    """The serialized skeleton ``data`` with each marker of ``references`` replaced by its
    source: (literal bytes and sources in order, the total length)."""
    magic = references.magic

    def payload(offset: int, length: int):
        source = references.find(data[offset : offset + length]) if length == _MARKER_SIZE else None
        return None if source is None else ([source], source.length)

    rewritten = _rewrite(data, 0, len(data), _MODEL, 0, payload, lambda start, end: data.find(magic, start, end) != -1)
    if rewritten is None:
        return ([data] if data else []), len(data)
    return _merged(rewritten[0]), rewritten[1]
