"""The spec's YAML, read with bounded work: the data, the position of every node, and
every problem met on the way.

:class:`Document` reads a text as ``yaml.safe_load`` would, and records the line and
column of every value and key, so that any later check can say where a problem is
(:meth:`Document.problem`).  It never raises on bad input; what it cannot read becomes a
:class:`~vsconf.errors.Problem` in ``problems``:

* the document may nest at most :data:`MAX_DEPTH` levels and may have at most
  :data:`MAX_NODES` nodes once every alias is expanded (a recursive alias is refused), so
  an alias bomb stops at the alias that would overflow it -- both are counted while
  composing, before anything recursive or exponential runs;
* an integer is read only when it has at most :data:`MAX_INT_DIGITS` digits, so no message
  ever holds a huge number;
* only characters YAML allows, keys that are strings, and no key twice.

YAML is read as YAML 1.1 (PyYAML's safe schema) with one addition from YAML 1.2 and JSON:
a number with an exponent (``1e-3``, ``2E+5``) or a signed leading dot (``-.5``) is a
float, so that every JSON number means what it means in JSON -- the canonical form, which
is JSON, loads back as the same spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Union

import yaml

from vsconf.errors import Problem
from vsconf.spec.words import cut, format_path, show

PathKey = tuple[Union[str, int], ...]

MAX_DEPTH = 64  # a valid spec nests 6 levels deep; PyYAML's composer recurses per level
MAX_NODES = 50_000  # nodes with every alias expanded: what is walked and validated (~3 s)
MAX_INT_DIGITS = 40  # a seed needs 19; Python refuses to print an int of over 4300 digits


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
        shape, alias = self._shape.get(id(target)), cut(event.anchor)
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
            what = show(node.value) if isinstance(node, yaml.ScalarNode) else "this node"
            raise yaml.constructor.ConstructorError(
                problem=f"{what} is not {_tag_word(node.tag)}", problem_mark=node.start_mark
            ) from None


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _JSON_FLOAT, list("-+.0123456789"))


class Document:
    """The YAML data (``yaml.safe_load`` semantics) plus the position of every node."""

    def __init__(self, text: str, source: str):
        self.source = source
        self._text = text
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
                    message = f"duplicate key {show(key)} (first given at line {seen[key]})"
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
                f"a key must be a string; YAML reads {show(key_node.value)} as {_tag_word(key_node.tag)} (quote it)",
            )
        )

    def _at(self, node: yaml.Node, path: PathKey, message: str) -> Problem:
        line, column = _position(node)
        return Problem(self.source, line, column, format_path(path), message)

    def problem(self, path: Iterable[str | int], message: str, *, at_key: bool = False) -> Problem:
        path = tuple(path)
        position = (self.keys.get(path) if at_key else None) or self._nearest(path)
        return Problem(self.source, position[0], position[1], format_path(path), message)

    def quoted(self, line: int, column: int) -> bool:
        """Whether the scalar at ``line``:``column`` (1-based) starts with a quote."""
        lines = _LINE_BREAK.split(self._text, maxsplit=line)
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        return text[column - 1 : column] in ("'", '"')

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
        return f"unknown tag {cut(tag)}; a spec holds plain YAML values"
    undefined = _UNDEFINED_ALIAS.fullmatch(problem)
    if undefined:
        return f"alias *{cut(undefined.group(1))} is not defined; its anchor must come before it"
    duplicate = _DUPLICATE_ANCHOR.fullmatch(context)
    if duplicate and exc.context_mark is not None:
        return f"anchor &{cut(duplicate.group(1))} is defined twice (first at line {exc.context_mark.line + 1})"
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


def as_list(value: Any) -> list[Any]:
    """A key that takes one item or a list of them (``match``, ``op``, ``axes.in``...), as a list."""
    return value if isinstance(value, list) else [value]
