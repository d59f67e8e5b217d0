"""The spec: read it, load YAML, validate it (schema, then meaning), and normalise it.

Every problem is reported at once, each as ``FILE:LINE:COL: PATH: message`` with the
line and column of the offending YAML node.  A valid spec becomes a :class:`Spec`
whose rules each carry one explicit init; its canonical JSON and SHA-256 identify it.

Contracts on hostile input: :func:`load_spec` and :func:`parse_spec` raise only
:class:`SpecError` (or ``TypeError`` for an argument of the wrong type), and their work is
bounded whatever the input:

* only regular files are read (a FIFO or a device is refused before it is opened for
  reading), and at most :data:`MAX_SPEC_BYTES` bytes of them;
* the text must be UTF-8 (the position of the first bad byte is reported) and hold only
  characters YAML allows;
* the YAML document may nest at most :data:`MAX_DEPTH` levels and may have at most
  :data:`MAX_NODES` nodes once every alias is expanded (a recursive alias is refused), so
  an alias bomb stops at the alias that would overflow it;
* an integer is read only when it has at most :data:`MAX_INT_DIGITS` digits, so no
  message ever holds a huge number; ``integer`` in the schema means a YAML integer (not
  ``7.0``), and every number must be finite;
* a ``re:`` pattern is compiled by :mod:`vsconf.saferegex`, which matches in linear time
  and refuses what it cannot match so (backreferences, lookarounds, huge repeats).

YAML is read as YAML 1.1 (PyYAML's safe schema) with one addition from YAML 1.2 and JSON:
a number with an exponent (``1e-3``, ``2E+5``) or a signed leading dot (``-.5``) is a
float, so that every JSON number means what it means in JSON -- the canonical form, which
is JSON, loads back as the same spec.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union

import jsonschema
import yaml

from vsconf.errors import Problem, SpecError, did_you_mean
from vsconf.fans import Axes, axes_from_config
from vsconf.initializers import CONSTANTS, PRESETS
from vsconf.saferegex import RegexError, compile_pattern

PathKey = tuple[Union[str, int], ...]
REGEX_PREFIX = "re:"

MAX_SPEC_BYTES = 1 << 20  # a spec is a short text file; 1 MiB leaves room for generated ones
MAX_DEPTH = 64  # a valid spec nests 6 levels deep; PyYAML's composer recurses per level
MAX_NODES = 50_000  # nodes with every alias expanded: what is walked and validated (~3 s)
MAX_INT_DIGITS = 40  # a seed needs 19; Python refuses to print an int of over 4300 digits

# Keras's class names for the presets vsconf knows by their snake_case names.
KERAS_PRESETS = {
    "GlorotUniform": "glorot_uniform",
    "GlorotNormal": "glorot_normal",
    "HeNormal": "he_normal",
    "HeUniform": "he_uniform",
    "LecunNormal": "lecun_normal",
    "LecunUniform": "lecun_uniform",
}
_VS_DEFAULTS = {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class VarianceScalingInit:
    """A fully resolved VarianceScaling init; ``seed=None`` means the spec's seed."""

    scale: float
    mode: str
    distribution: str
    seed: int | None = None
    axes: Axes | None = None

    def canonical(self) -> dict[str, Any]:
        """The init as a spec mapping: the canonical form of a spec is itself a valid spec."""
        out: dict[str, Any] = {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
        }
        if self.axes is not None:
            out.update(self.axes.config())
        return out


@dataclass(frozen=True)
class ConstantInit:
    value: float

    def canonical(self) -> dict[str, Any]:
        return {"constant": self.value}


@dataclass(frozen=True)
class KeepInit:
    def canonical(self) -> str:
        return "keep"


Init = Union[VarianceScalingInit, ConstantInit, KeepInit]


@dataclass(frozen=True)
class Rule:
    index: int
    init: Init
    match: tuple[str, ...] = ()
    op: tuple[str, ...] = ()
    input: tuple[str, ...] = ()
    optional: bool = False
    fans_from: str | None = None
    line: int = 0
    # The roles the rule selects; "any" opts in to running statistics and constants too.
    role: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How messages name the rule: ``rules[2] (line 14)``."""
        return f"rules[{self.index}]" + (f" (line {self.line})" if self.line else "")

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"init": self.init.canonical()}
        for key in ("match", "op", "input", "role"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.optional:
            out["optional"] = True
        if self.fans_from:
            out["fans_from"] = self.fans_from
        return out


@dataclass(frozen=True)
class Spec:
    r"""A loaded, validated spec: every rule carries one explicit init.

    Made by :func:`load_spec` or :func:`parse_spec`, never by hand in normal use; its
    :meth:`canonical` form (presets and defaults expanded, comments gone) is itself a
    valid spec, and :attr:`sha256` -- recorded in locks and model metadata -- identifies it.

    Args:
        seed: The global seed, 0 <= seed < 2**63.
        rules: The rules, in order: the first that matches a tensor fills it.
        layout: ``"auto"``, ``"tf"`` or ``"torch"``: how fans are read from shapes.
        unmatched: ``"keep"`` or ``"error"``: what happens to float tensors no rule matches.
        source: Where the spec came from (its file name), for messages.
        warnings: :class:`~vsconf.Problem` records of what is valid but suspicious.
        untie: ``"conflicts"`` to untie shared tensors whose consumers disagree, or None.
        stream: The version of the random streams the spec pins (1 or 2), or None for the latest.

    Raises:
        Nothing itself; :func:`load_spec` and :func:`parse_spec` raise :class:`~vsconf.SpecError`.

    Example:
        >>> import vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 7\nrules:\n  - match: '*.weight'\n    init: he_normal\n")
        >>> spec.seed, spec.layout, len(spec.rules)
        (7, 'auto', 1)
        >>> spec.rules[0].init
        VarianceScalingInit(scale=2.0, mode='fan_in', distribution='truncated_normal', seed=None, axes=None)
        >>> spec.with_seed(8).seed, spec.with_seed(8).sha256 != spec.sha256
        (8, True)
    """

    seed: int
    rules: tuple[Rule, ...]
    layout: str = "auto"
    unmatched: str = "keep"
    source: str = "<spec>"
    warnings: tuple[Problem, ...] = ()
    untie: str | None = None  # "conflicts": untie shared tensors whose consumers disagree
    stream: int | None = None  # the stream version the spec pins; None: the latest

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "vsconf": 1,
            "seed": self.seed,
            "layout": self.layout,
            "unmatched": self.unmatched,
            "rules": [rule.canonical() for rule in self.rules],
        }
        if self.untie is not None:  # absent when unset, so that older specs keep their digest
            out["untie"] = self.untie
        if self.stream is not None:
            out["stream"] = self.stream
        return out

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()

    def with_seed(self, seed: int) -> Spec:
        return dataclasses.replace(self, seed=seed)

    def with_stream(self, stream: int) -> Spec:
        return dataclasses.replace(self, stream=stream)


# --------------------------------------------------------------------------- schema


@functools.lru_cache(maxsize=1)
def schema_text() -> str:
    """The JSON Schema of format 1, as shipped inside the package."""
    return resources.files("vsconf").joinpath("vsconf.schema.json").read_text(encoding="utf-8")


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 7.0 as an integer; YAML tells 7 from 7.0, and a seed must be 7.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker: Any, instance: Any) -> bool:
    # JSON has no NaN or infinity; YAML has .nan and .inf, and they must not pass as numbers.
    return _is_integer(checker, instance) or (isinstance(instance, float) and math.isfinite(instance))


def _item_key(item: Any) -> str:
    """A hashable stand-in for a list item: equal items (by JSON) have equal keys."""
    try:
        return json.dumps(item, sort_keys=True)
    except (TypeError, ValueError):
        return repr(item)


def _unique_items(validator: Any, unique: bool, instance: Any, schema: Any) -> Iterable[jsonschema.ValidationError]:
    # jsonschema's own check falls back to comparing every pair of items: quadratic.
    if unique and validator.is_type(instance, "array"):
        keys = [_item_key(item) for item in instance]
        if len(set(keys)) < len(keys):
            yield jsonschema.ValidationError("has repeated items")


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    """The schema's validator, with YAML's notion of integers and finite numbers only."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    cls = jsonschema.validators.extend(base, validators={"uniqueItems": _unique_items}, type_checker=checker)
    return cls(json.loads(schema_text()))


# --------------------------------------------------------------------------- YAML, bounded

_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"
# Keys PyYAML itself turns into strings or merges away (<< and =).
_KEY_TAGS = frozenset({_STR_TAG, "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})
# YAML 1.2's and JSON's floats that YAML 1.1 reads as strings: an exponent without a dot
# or without a sign (1e-3, 1.0e5), or a sign before a leading dot (-.5).
_JSON_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+|[-+]\.[0-9][0-9_]*)$"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_TAG_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "timestamp": "a date",
    "binary": "base64 data",
    "str": "a string",
    "seq": "a list",
    "map": "a mapping",
}


def _tag_word(tag: str) -> str:
    """``tag:yaml.org,2002:int`` -> ``an integer``; other tags by their name."""
    name = tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag
    return _TAG_WORDS.get(name, f"!!{name}")


class _LimitError(yaml.MarkedYAMLError):
    """Valid YAML that vsconf refuses to read: too deep, too large, recursive."""

    def __init__(self, message: str, mark: yaml.Mark):
        super().__init__(problem=message, problem_mark=mark)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: nesting depth and expanded size are counted while
    composing, before anything recursive or exponential can run.

    An alias contributes the expanded size and depth of its target, both known when the
    alias is read (a target still being composed is an alias to an enclosing node:
    recursive, refused).
    """

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0
        self._nodes = 0
        self._shape: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, expanded depth)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._count_alias(event, target)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitError(f"the spec nests deeper than {MAX_DEPTH} levels", event.start_mark)
        self._count(1, event.start_mark, None)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._shape[id(node)] = self._expanded(node)
        return node

    def _count_alias(self, event: yaml.AliasEvent, target: yaml.Node) -> None:
        shape, alias = self._shape.get(id(target)), _cut(event.anchor)
        if shape is None:
            raise _LimitError(f"alias *{alias} refers to a node that contains it; a spec cannot be recursive", event.start_mark)
        size, depth = shape
        if self._depth + depth > MAX_DEPTH:
            raise _LimitError(f"alias *{alias} nests the spec deeper than {MAX_DEPTH} levels", event.start_mark)
        self._count(size, event.start_mark, alias)

    def _count(self, size: int, mark: yaml.Mark, alias: str | None) -> None:
        self._nodes += size
        if self._nodes > MAX_NODES:
            what = f"expanding alias *{alias} makes the spec" if alias else "the spec is"
            raise _LimitError(f"{what} larger than {MAX_NODES} nodes, the limit", mark)

    def _expanded(self, node: yaml.Node) -> tuple[int, int]:
        if isinstance(node, yaml.ScalarNode):
            return 1, 1
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        shapes = [self._shape[id(child)] for child in children]
        return 1 + sum(size for size, _ in shapes), 1 + max((depth for _, depth in shapes), default=0)

    def scan_flow_scalar(self, style: str) -> yaml.ScalarToken:
        # "\ud83d\ude00" (how JSON, hence the canonical form, escapes U+1F600) is one
        # character, as in JSON; PyYAML would keep two lone surrogates.
        token = super().scan_flow_scalar(style)
        if _SURROGATE.search(token.value):
            token.value = token.value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return token

    def scan_flow_scalar_non_spaces(self, double: bool, start_mark: yaml.Mark) -> list[str]:
        # PyYAML turns "\U00110000" into chr(0x110000), a ValueError.
        try:
            return super().scan_flow_scalar_non_spaces(double, start_mark)
        except ValueError:
            raise yaml.scanner.ScannerError(
                "while scanning a double-quoted scalar", start_mark, "an escape beyond U+10FFFF", self.get_mark()
            ) from None

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's scalar constructors raise ValueError & co. on explicit tags and on
        # dates like 2001-13-45; every such failure becomes an error at the node.
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError):
            what = _show(node.value) if isinstance(node, yaml.ScalarNode) else "this node"
            raise yaml.constructor.ConstructorError(
                problem=f"{what} is not {_tag_word(node.tag)}", problem_mark=node.start_mark
            ) from None


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _JSON_FLOAT, list("-+.0123456789"))


class _Document:
    """The YAML data (``yaml.safe_load`` semantics) plus the position of every node."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.problems: list[Problem] = []
        self.values: dict[PathKey, tuple[int, int]] = {}
        self.keys: dict[PathKey, tuple[int, int]] = {}
        self.data: Any = None
        self._unreadable = False  # a scalar that must not be constructed (a huge integer)
        try:
            loader = _Loader(text)
        except yaml.reader.ReaderError as exc:
            self.problems.append(self._character_problem(exc, text))
            return
        try:
            node = loader.get_single_node()
            if node is not None:
                self._walk(node, ())
                if not self._unreadable:
                    self.data = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            self.problems.append(self._yaml_problem(exc, text))
        except yaml.YAMLError as exc:  # unmarked errors have no position
            self.problems.append(Problem(source, 1, 1, "", f"invalid YAML: {exc}"))
        finally:
            loader.dispose()

    def _character_problem(self, exc: yaml.reader.ReaderError, text: str) -> Problem:
        """A character YAML refuses (NUL, other control characters, lone surrogates)."""
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        if code == 0:
            what = "a NUL character (U+0000); is this a binary file?"
        elif chr(code).isprintable() or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            what = f"character U+{code:04X}, which YAML does not allow"
        else:
            what = f"control character U+{code:04X}, which YAML does not allow"
        line, column = line_column(text, exc.position)
        return Problem(self.source, line, column, "", f"invalid YAML: {what}")

    def _yaml_problem(self, exc: yaml.MarkedYAMLError, text: str) -> Problem:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        if isinstance(exc, _LimitError):
            return Problem(self.source, line, column, "", exc.problem)
        plain = _plain_yaml_problem(exc)
        if plain:
            return Problem(self.source, line, column, "", f"invalid YAML: {plain}")
        problem = exc.problem or "syntax error"
        if mark is not None and mark.index < len(text) and text[mark.index] == "\t":
            problem = "a tab character; YAML indents with spaces only"
        elif "\t" in problem:
            problem = problem.replace("'\\t'", "a tab")
        message = f"invalid YAML: {problem}"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        return Problem(self.source, line, column, "", message)

    def _walk(self, node: yaml.Node, path: PathKey) -> None:
        self.values[path] = _position(node)
        if isinstance(node, yaml.ScalarNode):
            self._check_scalar(node, path)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"<{_tag_word(key_node.tag)}>"
                child = path + (key,)
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag not in _KEY_TAGS:
                    self._check_key(key_node, child)
                if key in seen:
                    message = f"duplicate key {_show(key)} (first given at line {seen[key]})"
                    self.problems.append(self._at(key_node, child, message))
                    continue
                seen[key] = _position(key_node)[0]
                self.keys[child] = _position(key_node)
                self._walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, path + (index,))

    def _check_scalar(self, node: yaml.ScalarNode, path: PathKey) -> None:
        if node.tag == _INT_TAG:
            digits = len(re.sub(r"^[-+]?(0[box])?|[_:]", "", node.value))
            if digits > MAX_INT_DIGITS:
                self._unreadable = True
                self.problems.append(
                    self._at(node, path, f"an integer of {digits} digits; expected at most {MAX_INT_DIGITS} digits")
                )

    def _check_key(self, key_node: yaml.ScalarNode, path: PathKey) -> None:
        """Every key of a spec is a string; YAML reads ``1:``, ``yes:``, ``~:`` otherwise."""
        self._check_scalar(key_node, path)
        self.problems.append(
            self._at(
                key_node,
                path,
                f"a key must be a string; YAML reads {_show(key_node.value)} as {_tag_word(key_node.tag)} (quote it)",
            )
        )

    def _at(self, node: yaml.Node, path: PathKey, message: str) -> Problem:
        line, column = _position(node)
        return Problem(self.source, line, column, format_path(path), message)

    def problem(self, path: Iterable[str | int], message: str, *, at_key: bool = False) -> Problem:
        path = tuple(path)
        position = (self.keys.get(path) if at_key else None) or self._nearest(path)
        return Problem(self.source, position[0], position[1], format_path(path), message)

    def _nearest(self, path: PathKey) -> tuple[int, int]:
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))


_UNKNOWN_TAG = re.compile(r"could not determine a constructor for the tag '(.*)'", re.DOTALL)
_DUPLICATE_ANCHOR = re.compile(r"found duplicate anchor '(.*)'; first occurrence", re.DOTALL)
_UNDEFINED_ALIAS = re.compile(r"found undefined alias '(.*)'", re.DOTALL)


def _plain_yaml_problem(exc: yaml.MarkedYAMLError) -> str | None:
    """PyYAML's wording where it names its own machinery, in a user's words (else None)."""
    problem, context = exc.problem or "", exc.context or ""
    unknown = _UNKNOWN_TAG.fullmatch(problem)
    if unknown:
        tag = unknown.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"unknown tag {_cut(tag)}; a spec holds plain YAML values"
    undefined = _UNDEFINED_ALIAS.fullmatch(problem)
    if undefined:
        return f"alias *{_cut(undefined.group(1))} is not defined; its anchor must come before it"
    duplicate = _DUPLICATE_ANCHOR.fullmatch(context)
    if duplicate and exc.context_mark is not None:
        return f"anchor &{_cut(duplicate.group(1))} is defined twice (first at line {exc.context_mark.line + 1})"
    return None


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def line_column(text: str, index: int) -> tuple[int, int]:
    """The 1-based line and column of ``text[index]``, counting lines and columns as
    PyYAML does (CR LF, CR, LF, NEL, LS and PS break lines; a BOM takes no column)."""
    line, start = 1, 0
    for match in _LINE_BREAK.finditer(text, 0, index):
        line, start = line + 1, match.end()
    return line, index - start - text.count("\ufeff", start, index) + 1


def format_path(path: Iterable[Any]) -> str:
    """``("rules", 1, "init", "mode")`` -> ``rules[1].init.mode``; a long key is cut short."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            part = _cut(str(part))
            out += f".{part}" if out else part
    return out


# --------------------------------------------------------------------------- messages


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}
_SHOW_LIMIT = 60
# YAML 1.1 reads 08 and 09 (not octal) as strings.
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9_]+$")


def _cut(text: str) -> str:
    """``text``, or its start and its length when it is too long for a message."""
    if len(text) <= _SHOW_LIMIT:
        return text
    return f"{text[:_SHOW_LIMIT - 20]}...({len(text)} characters)"


def _show(value: Any) -> str:
    """``repr(value)`` for a message, cut short when long (a key, a pattern, an enum miss)."""
    if isinstance(value, str) and len(value) > _SHOW_LIMIT:
        return f"{value[:_SHOW_LIMIT - 20]!r}...({len(value)} characters)"
    return repr(value)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan (not a number)"
        if math.isinf(value):
            return f"{'-' if value < 0 else ''}.inf (infinity)"
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({_show(value)})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"a date ({value.isoformat()})"
    if isinstance(value, bytes):
        return "binary data (!!binary)"
    if isinstance(value, set):
        return "a set (!!set)"
    return type(value).__name__


def _bound(value: Any) -> str:
    return "2**63 - 1" if value == 2**63 - 1 else repr(value)


def _choices(values: Iterable[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def _schema_problems(doc: _Document, error: jsonschema.ValidationError) -> list[Problem]:
    path = tuple(error.absolute_path)
    schema, instance, kind = error.schema, error.instance, error.validator
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        return [
            doc.problem(
                path + (key,),
                f"unknown key {_show(key)}" + (did_you_mean(key, allowed) or f"; allowed keys: {_choices(allowed)}"),
                at_key=True,
            )
            for key in instance
            if key not in allowed and isinstance(key, str)  # other keys: see _Document._check_key
        ]
    if kind == "required":
        return [
            doc.problem(path, f"missing required key {key!r}")
            for key in error.validator_value
            if key not in instance
        ]
    if kind == "dependentRequired":
        return [
            doc.problem(path + (key,), f"`{key}` needs {' and '.join(f'`{r}`' for r in needed)} beside it", at_key=True)
            for key, needed in error.validator_value.items()
            if key in instance and any(r not in instance for r in needed)
        ]
    if kind in ("anyOf", "oneOf"):
        if "x-vsconf-message" in schema:
            return [doc.problem(path, schema["x-vsconf-message"])]
        return _branch_problems(doc, error)
    return [doc.problem(path, _message(error))]


def _message(error: jsonschema.ValidationError) -> str:
    kind, value, instance = error.validator, error.validator_value, error.instance
    if kind == "enum":
        return f"{_show(instance)} is not one of {_choices(value)}" + did_you_mean(instance, value)
    if kind == "const":
        return f"must be {value!r}, got {_describe(instance)}"
    if kind == "type":
        types = [value] if isinstance(value, str) else list(value)
        words = [_TYPE_WORDS[t] for t in types]
        if isinstance(instance, float) and not math.isfinite(instance) and "number" in types:
            words[types.index("number")] = "a finite number"
        message = f"expected {' or '.join(words)}, got {_describe(instance)}"
        if isinstance(instance, str) and _LEADING_ZERO.match(instance) and {"number", "integer"} & set(types):
            message += f" (YAML 1.1 reads {instance} as a string, as it starts with 0 but is not octal)"
        return message
    if kind == "minItems":
        return "must not be empty" if value == 1 else f"needs at least {value} items"
    if kind == "minLength":
        return "must not be empty"
    if kind == "minimum":
        return f"must be >= {_bound(value)}, got {instance!r}"
    if kind == "maximum":
        return f"must be <= {_bound(value)}, got {instance!r}"
    if kind == "exclusiveMinimum":
        return f"must be > {_bound(value)}, got {instance!r}"
    if kind == "exclusiveMaximum":
        return f"must be < {_bound(value)}, got {instance!r}"
    if kind == "uniqueItems":
        counts = collections.Counter(_item_key(v) for v in instance)
        return f"repeats {', '.join(sorted(key for key, n in counts.items() if n > 1))}"
    return error.message


def _branch_problems(doc: _Document, error: jsonschema.ValidationError) -> list[Problem]:
    """For a failed oneOf/anyOf, explain the branch meant for this kind of value."""
    branches: dict[int, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = {
        index: errors
        for index, errors in branches.items()
        if not any(e.validator == "type" and tuple(e.absolute_path) == tuple(error.absolute_path) for e in errors)
    }
    if not fitting:
        types = []
        for branch in error.validator_value:
            t = branch.get("type")
            types.extend([t] if isinstance(t, str) else t or [])
        words = " or ".join(dict.fromkeys(_TYPE_WORDS[t] for t in types))
        return [doc.problem(error.absolute_path, f"expected {words}, got {_describe(error.instance)}")]
    best = min(fitting.values(), key=len)
    return [p for sub in best for p in _schema_problems(doc, sub)]


# --------------------------------------------------------------------------- semantic checks


@functools.lru_cache(maxsize=1)
def _onnx_ops() -> dict[str, list[list[str]]]:
    """Formal input names of every operator the installed onnx knows, per op type."""
    import onnx.defs

    ops: dict[str, list[list[str]]] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        ops.setdefault(schema.name, []).append([i.name for i in schema.inputs])
    return ops


@functools.lru_cache(maxsize=1)
def _onnx_ops_lowered() -> dict[str, str]:
    return {name.lower(): name for name in _onnx_ops()}


@functools.lru_cache(maxsize=1024)
def _op_hint(op: str) -> str:
    return did_you_mean(op, _onnx_ops())


def pattern_problem(pattern: str) -> str | None:
    """Why a ``match`` pattern cannot be matched in linear time, or None when it can.

    Only ``re:`` patterns can fail: a glob is matched by ``fnmatch``, whose translation
    makes every star an atomic group (a lookahead and a backreference before Python 3.11),
    so globs such as ``*a*a*a*b`` never backtrack.
    """
    if not pattern.startswith(REGEX_PREFIX):
        return None
    try:
        compile_pattern(pattern[len(REGEX_PREFIX) :])
    except RegexError as exc:
        return f"invalid regular expression: {exc.message} at position {exc.position}"
    return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class _Checker:
    """Checks of meaning that a schema cannot express; collects problems and warnings."""

    def __init__(self, doc: _Document):
        self.doc = doc
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def run(self, data: Mapping[str, Any]) -> None:
        if isinstance(data.get("defaults"), dict):
            self.vs_mapping(data["defaults"], ("defaults",))
        rules = data.get("rules")
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                self.rule(rule, ("rules", index))

    def rule(self, rule: Mapping[str, Any], path: PathKey) -> None:
        for i, pattern in enumerate(_as_list(rule.get("match", []))):
            where = path + ("match",) + ((i,) if isinstance(rule["match"], list) else ())
            message = pattern_problem(pattern) if isinstance(pattern, str) else None
            if message:
                self.errors.append(self.doc.problem(where, message))
        ops = [op for op in _as_list(rule.get("op", [])) if isinstance(op, str)]
        known = _onnx_ops()
        for i, op in enumerate(ops):
            if op in known or "." in op:
                continue
            where = path + ("op",) + ((i,) if isinstance(rule["op"], list) else ())
            problem = self.doc.problem(where, f"{_show(op)} is not an ONNX operator" + _op_hint(op))
            # Op types are case-sensitive: 'conv' is a typo of 'Conv', while an unknown
            # name may be a custom operator and only earns a warning.
            (self.errors if op.lower() in _onnx_ops_lowered() else self.warnings).append(problem)
        if ops and all(op in known for op in ops):
            formal = list(dict.fromkeys(name for op in ops for names in known[op] for name in names))
            for i, name in enumerate(_as_list(rule.get("input", []))):
                if isinstance(name, str) and name not in formal:
                    where = path + ("input",) + ((i,) if isinstance(rule["input"], list) else ())
                    self.errors.append(
                        self.doc.problem(
                            where,
                            f"{'/'.join(ops)} has no input {_show(name)}; its inputs are {_choices(formal)}"
                            + did_you_mean(name, formal),
                        )
                    )
        init = rule.get("init")
        if isinstance(init, dict):
            if "class_name" in init:
                if isinstance(init.get("config"), dict):
                    self.vs_mapping(init["config"], path + ("init", "config"))
            elif "constant" not in init:
                self.vs_mapping(init, path + ("init",))

    def vs_mapping(self, mapping: Mapping[str, Any], path: PathKey) -> None:
        if mapping.get("distribution") == "normal":
            self.warnings.append(
                self.doc.problem(
                    path + ("distribution",),
                    "'normal' is a deprecated alias of 'truncated_normal' (TF1's meaning); write "
                    "'truncated_normal', or 'untruncated_normal' for JAX's and PyTorch's normal",
                )
            )
        axes = mapping.get("axes")
        if isinstance(axes, dict):
            seen: dict[int, str] = {}
            for role in ("in", "out", "batch"):
                for axis in _as_list(axes.get(role, [])):
                    if not isinstance(axis, int):
                        continue
                    if axis in seen and seen[axis] != role:
                        self.errors.append(
                            self.doc.problem(
                                path + ("axes", role),
                                f"axis {axis} is already named in `{seen[axis]}`; an axis has one role",
                            )
                        )
                    seen.setdefault(axis, role)
        keras_axes = [k for k in ("input_axes", "output_axes") if mapping.get(k) is not None]
        if axes is not None and keras_axes:
            self.errors.append(
                self.doc.problem(path + ("axes",), "give either `axes` or Keras's `input_axes`/`output_axes`, not both")
            )
        elif len(keras_axes) == 1:
            self.warnings.append(
                self.doc.problem(
                    path + (keras_axes[0],),
                    "Keras uses `input_axes`/`output_axes` only when both are given; this one is ignored",
                )
            )


# --------------------------------------------------------------------------- normalisation


def _variance_scaling(mapping: Mapping[str, Any], preset: str | None, defaults: Mapping[str, Any]) -> VarianceScalingInit:
    """Precedence: keys written in the init > its preset > the spec's defaults > TF1's defaults."""
    merged: dict[str, Any] = dict(_VS_DEFAULTS)
    merged.update({k: v for k, v in defaults.items() if k != "dtype"})
    if preset is not None:
        merged.update(zip(("scale", "mode", "distribution"), PRESETS[preset]))
    merged.update({k: v for k, v in mapping.items() if k not in ("preset", "dtype")})
    return VarianceScalingInit(
        scale=float(merged["scale"]),
        mode=merged["mode"],
        distribution=merged["distribution"],
        seed=merged.get("seed"),
        axes=axes_from_config(merged),
    )


def _init(value: Any, defaults: Mapping[str, Any]) -> Init:
    if isinstance(value, str):
        if value == "keep":
            return KeepInit()
        if value in CONSTANTS:
            return ConstantInit(CONSTANTS[value])
        return _variance_scaling({}, value, defaults)
    if "constant" in value:
        return ConstantInit(float(value["constant"]))
    if "class_name" in value:
        name, config = value["class_name"], value["config"]
        if name in ("Zeros", "Ones"):
            return ConstantInit(0.0 if name == "Zeros" else 1.0)
        if name == "Constant":
            return ConstantInit(float(config["value"]))
        return _variance_scaling(config, KERAS_PRESETS.get(name), defaults)
    return _variance_scaling(value, value.get("preset"), defaults)


def _normalise(data: Mapping[str, Any], doc: _Document, warnings: list[Problem]) -> Spec:
    defaults = data.get("defaults", {})
    rules = []
    for index, rule in enumerate(data["rules"]):
        rules.append(
            Rule(
                index=index,
                init=_init(rule["init"], defaults),
                match=tuple(_as_list(rule.get("match", []))),
                op=tuple(_as_list(rule.get("op", []))),
                input=tuple(_as_list(rule.get("input", []))),
                optional=bool(rule.get("optional", False)),
                fans_from=rule.get("fans_from"),
                line=doc.values.get(("rules", index), (0, 0))[0],
                role=tuple(_as_list(rule.get("role", []))),
            )
        )
    return Spec(
        seed=data["seed"],
        rules=tuple(rules),
        layout=data.get("layout", "auto"),
        unmatched=data.get("unmatched", "keep"),
        source=doc.source,
        warnings=tuple(warnings),
        untie=data.get("untie"),
        stream=data.get("stream"),
    )


# --------------------------------------------------------------------------- entry points


def parse_spec(text: str, source: str = "<string>") -> Spec:
    r"""Parse, validate and normalise spec ``text``; raises :class:`SpecError` with every problem.

    Args:
        text: The spec's YAML (or JSON) text.
        source: The name messages give the spec, e.g. its file name.

    Returns:
        The :class:`Spec`.

    Raises:
        TypeError: ``text`` or ``source`` is not a str.
        SpecError: The spec is not valid; ``problems`` lists every problem, in file order,
            each with its line, column and path into the document.

    Example:
        >>> import vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {preset: he_normal, mode: fan_out}\n")
        >>> spec.rules[0].init.scale, spec.rules[0].init.mode
        (2.0, 'fan_out')
        >>> try:
        ...     vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normall\n", "init.yaml")
        ... except vsconf.SpecError as error:
        ...     print(error.problems[0].line, error.problems[0].path)
        5 rules[0].init
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_spec: text must be a str, got {type(text).__name__}")
    if not isinstance(source, str):
        raise TypeError(f"parse_spec: source must be a str, got {type(source).__name__}")
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError([Problem(source, 0, 0, "", _TOO_LARGE)])
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM takes no column
    doc = _Document(text, source)
    problems = list(doc.problems)
    warnings: list[Problem] = []
    data = doc.data
    # The YAML may have been read with problems of its own (a duplicate key...): the data
    # is still checked then, so that every problem is reported at once.
    if data is None and not problems:
        problems.append(
            Problem(source, 1, 1, "", "the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`")
        )
    elif data is not None and not isinstance(data, dict):
        problems.append(doc.problem((), f"expected a mapping at the top of the spec, got {_describe(data)}"))
    elif isinstance(data, dict):
        problems.extend(_validation_problems(doc, data, warnings))
    if problems:
        unique = {(p.line, p.column, p.path, p.message): p for p in problems}
        raise SpecError(sorted(unique.values(), key=lambda p: (p.line, p.column, p.path, p.message)))
    warnings.sort(key=lambda p: (p.line, p.column))
    return _normalise(data, doc, warnings)


def _validation_problems(doc: _Document, data: dict[Any, Any], warnings: list[Problem]) -> list[Problem]:
    """Problems the schema finds, then those only vsconf's own checks find."""
    problems = []
    typed: set[PathKey] = set()
    for error in _validator().iter_errors(data):
        # A value of the wrong type fails every branch below it too; the first
        # (outermost) type error says it best.
        if error.validator == "type":
            if tuple(error.absolute_path) in typed:
                continue
            typed.add(tuple(error.absolute_path))
        problems.extend(_schema_problems(doc, error))
    checker = _Checker(doc)
    checker.run(data)
    warnings.extend(checker.warnings)
    return problems + checker.errors


# --------------------------------------------------------------------------- reading files


_TOO_LARGE = f"cannot read the spec: it is larger than 1 MiB ({MAX_SPEC_BYTES} bytes), the limit for a spec"
_O_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Load the spec file at ``path``; raises :class:`SpecError` with every problem found.

    The file must be a regular file of at most :data:`MAX_SPEC_BYTES` bytes of UTF-8.

    Args:
        path: The spec file (YAML; JSON is YAML too).

    Returns:
        The :class:`Spec`, whose ``source`` is ``path``.

    Raises:
        TypeError: ``path`` is not a str or path.
        SpecError: The file cannot be read, or the spec is not valid (every problem at once).

    Example:
        >>> import vsconf
        >>> spec = vsconf.load_spec("init.yaml")     # a spec file in the current folder
        >>> spec.source, spec.layout, [rule.match for rule in spec.rules]
        ('init.yaml', 'torch', [('*.bias',), ('*.weight',)])
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_spec: path must be a str or an os.PathLike, got {type(path).__name__}")
    path = Path(path)
    source = str(path)
    return parse_spec(_decode(_read_bytes(path, source), source), source=source)


def _unreadable(source: str, reason: str, line: int = 0, column: int = 0) -> SpecError:
    return SpecError([Problem(source, line, column, "", f"cannot read the spec: {reason}")])


def _read_bytes(path: Path, source: str) -> bytes:
    """At most ``MAX_SPEC_BYTES + 1`` bytes of a regular file; never opens a FIFO for a
    blocking read (the kind is checked before opening, and again on what was opened)."""
    try:
        _require_regular(os.stat(path).st_mode, source)
        fd = os.open(path, _O_FLAGS)
        try:
            _require_regular(os.fstat(fd).st_mode, source)
            data = _read_at_most(fd, MAX_SPEC_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _unreadable(source, exc.strerror or str(exc)) from None
    except ValueError:  # os.stat refuses a path with a NUL character in it
        raise _unreadable(source, "the path holds a NUL character") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([Problem(source, 0, 0, "", _TOO_LARGE)])
    return data


def _require_regular(mode: int, source: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((word for test, word in _FILE_KINDS if test(mode)), "a special file")
        raise _unreadable(source, f"it is {kind}, not a regular file")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text (a UTF-8 BOM is allowed); else the position of the first bad byte."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            reason = f"it is {name} text (it starts with a {name} byte-order mark); save it as UTF-8"
            raise _unreadable(source, reason, 1, 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8")
        line, column = line_column(before, len(before))
        reason = f"byte 0x{data[exc.start]:02x}: {exc.reason}"
        raise _unreadable(source, f"it is not UTF-8 text ({reason}); save it as UTF-8", line, column) from None
