r"""The expression language of specs: arithmetic over names, parsed by vsconf's own parser.

A spec's numeric parameters may be written as expressions (``"0.02 / sqrt(2 * (layer + 1))"``)
and a ``formula`` computes every element of a tensor from its indices (``"log(1 + i1)"``).
:func:`parse` reads the text with a tokenizer and an operator-precedence parser written
here -- never ``eval``, ``compile`` or ``ast`` -- into an :class:`Expr`, which tells the names
it reads, its value when it reads none, and evaluates itself on numbers or, vectorised, on
NumPy arrays (one NumPy operation per operation of the expression, never a loop over
elements).

The language is Python's arithmetic, restricted:

* decimal numbers (``2``, ``0.5``, ``1e-6``, ``.5``); names ``[A-Za-z_][A-Za-z0-9_]*``; a name
  indexed by an integer expression (``shape[0]``, ``shape[-1]``);
* ``+ - * / // % **``, unary ``+``/``-``, parentheses, comparisons ``< <= > >= == !=`` (chained
  as in Python: ``0 <= x < n``), ``and``/``or``/``not``, and ``a if c else b`` -- with Python's
  precedence and associativity (``-2 ** 2 == -4``, ``2 ** 3 ** 2 == 512``);
* the functions in :data:`FUNCTIONS` and the constants ``pi`` and ``e``.

Numbers behave as in Python: an integer stays an integer (``layer + 1``), ``/`` always gives
a float, ``//`` and ``%`` floor as Python does, ``floor``/``ceil``/``round`` give integers,
a comparison is ``True``/``False`` (1/0 as a result), ``and``/``or`` give one of their
operands.  What differs from Python, on purpose:

* integers are exact only within ``±2**53`` (:data:`INTEGER_LIMIT`): beyond, a result is an
  error rather than a big integer, so that every integer converts to a float exactly and an
  array computes what the numbers do;
* a float that overflows (``1e308 * 10``, ``exp(1000)``), a division or modulo by zero,
  ``sqrt`` or ``log`` out of their domain, zero to a negative power and a negative number to
  a fractional power are errors (Python gives ``inf`` or a complex number for some);
* ``pi`` and ``e`` are constants that no name passed in can replace: an expression that reads
  ``e`` while the names bind ``e`` is an error, never a silent choice.

Bounds, so that hostile text costs little: at most :data:`MAX_LENGTH` characters (checked
before anything is read), :data:`MAX_NODES` numbers, names and operations, :data:`MAX_DEPTH`
levels of brackets and of operations inside operations (so that neither the parser nor the
evaluation nears Python's recursion limit), and the magnitudes above -- ``9**9**9**9`` is
refused from the sizes of its operands, before anything large is computed.

Every error is an :class:`ExprError` carrying the 0-based ``offset`` of the character it is
about.  On arrays, an operation that fails for any element it computes names the first such
element by the values of the arrays there (``division by zero where i0 = 3, i1 = 0``); an
element that a condition leaves out (``log(i1) if i1 > 0 else 0``) is never an error, and
NumPy's warnings never leak.

Determinism: ``+ - * / // % abs min max floor ceil round sqrt`` and comparisons are exact
IEEE operations, so their results are bit-identical on every machine, for numbers and arrays
alike.  ``log log2 log10 exp sin cos tanh`` and ``**`` on floats are not: numbers use Python's
:mod:`math` (the platform's libm), arrays use NumPy, whose SIMD kernels may differ from libm,
and from one CPU to another, in the last bit.

Example:
    >>> from vsconf.expr import parse
    >>> std = parse("0.02 / sqrt(2 * (layer + 1))")
    >>> sorted(std.names()), std.constant
    (['layer'], None)
    >>> std.evaluate({"layer": 1})
    0.01
    >>> parse("2 ** 3 ** 2 - -2 ** 2").constant
    516
    >>> parse("fan_in // 3 if fan_in % 3 == 0 else fan_in / 3").evaluate({"fan_in": 12})
    4
    >>> import numpy as np
    >>> parse("i0 * 10 + i1").evaluate(index_grids((2, 3)))
    array([[ 0,  1,  2],
           [10, 11, 12]])
    >>> parse("1 / (i1 - 2)").evaluate(index_grids((2, 3)))
    Traceback (most recent call last):
    ...
    vsconf.expr.ExprError: division by zero where i1 = 2 at position 2
    >>> parse("9**9**9**9")
    Traceback (most recent call last):
    ...
    vsconf.expr.ExprError: the value overflows: 9 ** 387420489 is beyond the integer range ±2**53 at position 4
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from vsconf.errors import did_you_mean

# The longest expression a real recipe needs is under 100 characters (the sinusoidal
# position table is about 90): 4096 holds any of them many times over, and a megabyte of
# text is refused by its length before a token is read.
MAX_LENGTH = 4096
# Levels of brackets, and of operations inside operations: the parser and the evaluation
# recurse once a level (a few Python frames each), far below Python's limit of 1000.
MAX_DEPTH = 64
# Numbers, names and operations: a formula costs one NumPy pass per operation over the
# elements it is evaluated on, so this bounds the work a formula may ask for.
MAX_NODES = 256
# Integers are exact within ±2**53, where every integer is also a float (so int64 arrays
# and Python ints agree, and no int64 operation can wrap around).
INTEGER_LIMIT = 2**53

CONSTANTS: Mapping[str, float] = {"pi": math.pi, "e": math.e}
KEYWORDS = frozenset({"and", "or", "not", "if", "else"})
# Python's other keywords are not names here: a spec that writes one meant Python.
_PYTHON_KEYWORDS = frozenset({
    "False", "None", "True", "as", "assert", "async", "await", "break", "class", "continue", "def",
    "del", "elif", "except", "finally", "for", "from", "global", "import", "in", "is", "lambda",
    "nonlocal", "pass", "raise", "return", "try", "while", "with", "yield",
})  # fmt: skip

Number = Union[int, float]
Value = Union[int, float, np.ndarray]


class ExprError(ValueError):
    """An expression vsconf cannot read or evaluate.

    ``message`` says what is wrong (no position in it); ``offset`` is the 0-based position
    in the expression's text of the character it is about (``len(text)`` for its end).

    Args:
        message: What is wrong, in words.
        offset: Where, as an index into the text.

    Example:
        >>> from vsconf.expr import ExprError, parse
        >>> try:
        ...     parse("sqrt(2) + fan_inn").evaluate({"fan_in": 4})
        ... except ExprError as error:
        ...     print(error.offset, error.message)
        10 unknown name 'fan_inn'; did you mean 'fan_in'?
    """

    def __init__(self, message: str, offset: int):
        super().__init__(message, offset)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        return f"{self.message} at position {self.offset}"


# ---------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "keyword", "op", "end", or "error" (text is then the message)
    text: str
    offset: int


_OPERATORS = ("**", "//", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%", "<", ">", "(", ")", "[", "]", ",")
_REFUSED_CHARACTERS = {
    "'": "strings are not part of expressions",
    '"': "strings are not part of expressions",
    ".": "'.' is not an operator: expressions have no attributes",
    ";": "';' is not allowed: an expression is one expression",
    ":": "':' is not allowed: expressions have no slices, lambdas or mappings",
    "=": "'=' is not an operator: expressions assign nothing and take no keyword arguments; did you mean '=='?",
    "!": "'!' is not an operator; did you mean 'not' or '!='?",
    "&": "'&' is not an operator; did you mean 'and'?",
    "|": "'|' is not an operator; did you mean 'or'?",
    "^": "'^' is not an operator; did you mean '**'?",
    "~": "'~' is not an operator; did you mean 'not' or '-'?",
    "{": "'{' is not allowed: expressions have no mappings or sets",
    "}": "'}' is not allowed: expressions have no mappings or sets",
    "@": "'@' is not an operator",
}
_SPACE = frozenset(" \t\r\n")
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARACTERS = _NAME_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")


def _tokens(text: str) -> list[_Token]:
    """The tokens of ``text``, ending with an "end" token, or with an "error" token at the
    first character no token can start with (the parser reports it when it gets there, so
    that the first problem from the left is the one reported)."""
    found: list[_Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in _SPACE:
            i += 1
        elif c in _DIGITS or c == "." and text[i + 1 : i + 2] in _DIGITS:
            end = _number_end(text, i)
            found.append(_Token("number", text[i:end], i))
            i = end
        elif c in _NAME_START:
            end = i + 1
            while end < len(text) and text[end] in _NAME_CHARACTERS:
                end += 1
            word = text[i:end]
            if word in _PYTHON_KEYWORDS:
                return [*found, _Token("error", f"{word!r} is a Python keyword, not part of expressions", i)]
            found.append(_Token("keyword" if word in KEYWORDS else "name", word, i))
            i = end
        else:
            operator_ = next((op for op in _OPERATORS if text.startswith(op, i)), None)
            if operator_ is None:
                message = _REFUSED_CHARACTERS.get(c, f"unexpected character {c!r}")
                return [*found, _Token("error", message, i)]
            found.append(_Token("op", operator_, i))
            i += len(operator_)
    return [*found, _Token("end", "", len(text))]


def _number_end(text: str, i: int) -> int:
    """Past the number starting at ``i`` and whatever letters, digits, dots and underscores
    run into it (``2x``, ``1..2``, ``1_000``: one malformed number, not two tokens)."""
    end = i
    while end < len(text) and (text[end] in _NAME_CHARACTERS or text[end] == "."):
        if text[end] in "eE" and text[end + 1 : end + 2] in ("+", "-") and end + 2 < len(text) and text[end + 2] in _DIGITS:
            end += 2  # an exponent's sign
        end += 1
    return end


_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(token: _Token) -> Number:
    text = token.text
    if not _NUMBER.fullmatch(text):
        raise ExprError(f"invalid number {_cut(text)!r}", token.offset)
    if not set(text) <= _DIGITS:
        value = float(text)
        if not math.isfinite(value):
            raise ExprError(f"the number {_cut(text)} is too large for a float", token.offset)
        return value
    if len(text) > 1 and text[0] == "0" and text.strip("0"):
        raise ExprError(f"leading zeros are not allowed in an integer ({_cut(text)!r}); write {int(text)}", token.offset)
    if len(text) > 16 or int(text) > INTEGER_LIMIT:
        raise ExprError(f"the integer {_cut(text)} is beyond the integer range ±2**53; write it as a float ({_cut(text)}.0)", token.offset)
    return int(text)


def _cut(text: str, limit: int = 40) -> str:
    """``text``, or its start and its length when it is too long for a message."""
    return text if len(text) <= limit else f"{text[: limit - 10]}...({len(text)} characters)"


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end"
    if token.kind == "name":
        return f"name {_cut(token.text)!r}"
    if token.kind == "number":
        return f"number {_cut(token.text)}"
    return repr(token.text)


# ---------------------------------------------------------------------------------------
# The tree: frozen values, each with the offset of the token it is about.


@dataclass(frozen=True)
class _Literal:
    offset: int
    value: Number


@dataclass(frozen=True)
class _Name:
    offset: int
    name: str


@dataclass(frozen=True)
class _Constant:
    offset: int
    name: str


@dataclass(frozen=True)
class _Index:
    offset: int  # the name's
    name: str
    index: _Node


@dataclass(frozen=True)
class _Unary:
    offset: int
    ops: tuple[tuple[int, str], ...]  # (offset, "-" | "+" | "not"), applied right to left
    operand: _Node


@dataclass(frozen=True)
class _Arithmetic:  # a left-associative chain: first op1 x1 op2 x2 ...
    offset: int
    first: _Node
    rest: tuple[tuple[int, str, _Node], ...]


@dataclass(frozen=True)
class _Compare:  # a chain as Python's: a < b <= c is (a < b) and (b <= c), b once
    offset: int
    first: _Node
    rest: tuple[tuple[int, str, _Node], ...]


@dataclass(frozen=True)
class _Logical:  # x1 and x2 and ...: the first falsy operand, else the last (or: truthy)
    offset: int
    op: str
    operands: tuple[_Node, ...]


@dataclass(frozen=True)
class _Power:  # x1 ** x2 ** ... ** xn, right-associative; ops: the offsets of the **
    offset: int
    operands: tuple[_Node, ...]
    ops: tuple[int, ...]


@dataclass(frozen=True)
class _Conditional:
    offset: int
    body: _Node
    condition: _Node
    orelse: _Node


@dataclass(frozen=True)
class _Call:
    offset: int
    function: str
    args: tuple[_Node, ...]


_Node = Union[_Literal, _Name, _Constant, _Index, _Unary, _Arithmetic, _Compare, _Logical, _Power, _Conditional, _Call]

# Binding powers, Python's order; prefix operators carry theirs too.
_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _SIGN, _POWER = range(1, 9)
_BINARY = {
    "or": _OR, "and": _AND,
    "<": _COMPARE, "<=": _COMPARE, ">": _COMPARE, ">=": _COMPARE, "==": _COMPARE, "!=": _COMPARE,
    "+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "//": _PRODUCT, "%": _PRODUCT, "**": _POWER,
}  # fmt: skip


@dataclass(frozen=True)
class _Function:
    arguments: tuple[int, int | None]  # the fewest and the most (None: no most)
    scalar: Callable[..., Any] | None  # on numbers (math); None: computed by the evaluation
    array: Callable[..., Any] | None  # on arrays (a NumPy ufunc)


_FUNCTIONS: dict[str, _Function] = {
    "sqrt": _Function((1, 1), math.sqrt, np.sqrt),
    "log": _Function((1, 1), math.log, np.log),
    "log2": _Function((1, 1), math.log2, np.log2),
    "log10": _Function((1, 1), math.log10, np.log10),
    "exp": _Function((1, 1), math.exp, np.exp),
    "sin": _Function((1, 1), math.sin, np.sin),
    "cos": _Function((1, 1), math.cos, np.cos),
    "tanh": _Function((1, 1), math.tanh, np.tanh),
    "abs": _Function((1, 1), abs, np.abs),
    "floor": _Function((1, 1), math.floor, np.floor),
    "ceil": _Function((1, 1), math.ceil, np.ceil),
    "round": _Function((1, 1), round, np.rint),  # both round half to even
    "min": _Function((2, None), min, np.minimum),
    "max": _Function((2, None), max, np.maximum),
    "pow": _Function((2, 2), None, None),  # a ** b
    "where": _Function((3, 3), None, None),  # where(c, a, b) is a if c else b
}
FUNCTIONS = frozenset(_FUNCTIONS)
_LOGS = ("log", "log2", "log10")
_ROUNDINGS = ("floor", "ceil", "round")


@dataclass
class _Pending:
    """An operator waiting on the parser's stack."""

    op: str
    offset: int
    power: int
    prefix: bool


@dataclass
class _Operand:
    """A parsed operand: its node, its height, and the binding power of the chain that
    built it (None for a primary, a parenthesized expression included), so that
    ``a - b + c`` becomes one chain and ``(a < b) < c`` stays two comparisons."""

    node: _Node
    height: int
    chain: int | None = None


class _Parser:
    def __init__(self, text: str):
        if len(text) > MAX_LENGTH:  # before a token is read
            raise ExprError(f"the expression is too long: more than {MAX_LENGTH} characters", MAX_LENGTH)
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0
        self.depth = -1  # the whole expression is level 0; each bracket and 'else' one more
        self.nodes = 0

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def next(self) -> _Token:
        token = self.tokens[self.position]
        if token.kind == "error":
            raise ExprError(token.text, token.offset)
        if token.kind != "end":
            self.position += 1
        return token

    def count(self, offset: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExprError(f"the expression is too large: more than {MAX_NODES} numbers, names and operations", offset)

    def height(self, height: int, offset: int) -> int:
        if height > MAX_DEPTH:
            raise ExprError(f"the expression is nested too deeply: more than {MAX_DEPTH} levels", offset)
        return height

    def parse(self) -> _Node:
        tree = self.expression(0)
        token = self.peek()
        if token.kind == "error":
            self.next()
        if token.kind != "end":
            closing = {")": "unmatched ')'", "]": "unmatched ']'", ",": "',' outside a call: an expression is one value"}
            message = closing.get(token.text) if token.kind == "op" else None
            if token.text == "else":
                message = "'else' without 'if'"
            raise ExprError(message or f"expected an operator or the end, found {_describe(token)}", token.offset)
        return tree.node

    def expression(self, opened_at: int) -> _Operand:
        """A whole expression (``a if c else b`` included), one level deeper than its caller."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"the expression is nested too deeply: more than {MAX_DEPTH} levels", opened_at)
        body = self.operators()
        token = self.peek()
        if token.kind == "keyword" and token.text == "if":
            self.next()
            self.count(token.offset)
            condition = self.operators()
            otherwise = self.peek()
            if otherwise.text != "else" or otherwise.kind != "keyword":
                self.next()  # an error token raises its own message
                raise ExprError(
                    f"expected 'else' for the 'if' at position {token.offset}, found {_describe(otherwise)}", otherwise.offset
                )
            self.next()
            orelse = self.expression(otherwise.offset)
            height = self.height(1 + max(body.height, condition.height, orelse.height), token.offset)
            body = _Operand(_Conditional(body.node.offset, body.node, condition.node, orelse.node), height)
        self.depth -= 1
        return body

    def operators(self) -> _Operand:
        """Operands and the operators between them, by binding power and without recursion
        (a shunting yard); stops at a token that can neither continue nor end an operand."""
        operands: list[_Operand] = []
        pending: list[_Pending] = []
        expecting_operand = True
        while True:
            token = self.peek()
            if expecting_operand:
                if token.kind == "op" and token.text in ("-", "+") or token.kind == "keyword" and token.text == "not":
                    if token.text == "not" and pending and pending[-1].power > _NOT:
                        raise ExprError(f"'not' cannot follow {pending[-1].op!r}; put it in parentheses: (not ...)", token.offset)
                    self.next()
                    self.count(token.offset)
                    if len(pending) >= MAX_DEPTH and all(op.prefix for op in pending[-MAX_DEPTH:]):
                        raise ExprError(f"the expression is nested too deeply: more than {MAX_DEPTH} levels", token.offset)
                    pending.append(_Pending(token.text, token.offset, _NOT if token.text == "not" else _SIGN, True))
                    continue
                operands.append(self.primary())
                expecting_operand = False
                continue
            power = _BINARY.get(token.text) if token.kind in ("op", "keyword") else None
            if power is None:
                self.refuse_after_operand(token)
                break
            while pending and (pending[-1].power > power or pending[-1].power == power and power != _POWER):
                self.reduce(operands, pending.pop())
            self.next()
            self.count(token.offset)
            pending.append(_Pending(token.text, token.offset, power, False))
            expecting_operand = True
        while pending:
            self.reduce(operands, pending.pop())
        return operands[0]

    def refuse_after_operand(self, token: _Token) -> None:
        """What may follow a complete operand is an operator, ``if``/``else``, a closing
        bracket, a comma or the end; anything else is refused here, where it stands."""
        if token.kind == "error":
            self.next()
        if token.kind in ("name", "number") or token.text == "not":
            raise ExprError(f"expected an operator, found {_describe(token)}", token.offset)
        if token.text == "(":
            raise ExprError("only a function's name can be called, as in sqrt(x); is an operator missing?", token.offset)
        if token.text == "[":
            raise ExprError("only a name can be indexed, as in shape[0]", token.offset)

    def reduce(self, operands: list[_Operand], op: _Pending) -> None:
        """Apply the operator ``op`` to the operands on top of the stack.  A chain of one
        binding power grows in place (``a - b + c`` is one node, as deep as its deepest
        operand), so that a long flat sum is not a deep tree; a prefix operator counts a
        level each."""
        if op.prefix:
            operand = operands.pop()
            if operand.chain in (_SIGN, _NOT) and isinstance(operand.node, _Unary):
                node = _Unary(op.offset, ((op.offset, op.op), *operand.node.ops), operand.node.operand)
            else:
                node = _Unary(op.offset, ((op.offset, op.op),), operand.node)
            operands.append(_Operand(node, self.height(operand.height + 1, op.offset), op.power))
            return
        right = operands.pop()
        left = operands.pop()
        merged: _Node
        if op.power == _POWER and right.chain == _POWER and isinstance(right.node, _Power):
            merged = _Power(left.node.offset, (left.node, *right.node.operands), (op.offset, *right.node.ops))
            height = max(right.height, left.height + 1)
        elif op.power == _POWER:
            merged = _Power(left.node.offset, (left.node, right.node), (op.offset,))
            height = max(left.height, right.height) + 1
        elif left.chain == op.power and isinstance(left.node, _Logical):
            merged = _Logical(left.node.offset, op.op, (*left.node.operands, right.node))
            height = max(left.height, right.height + 1)
        elif op.power in (_OR, _AND):
            merged = _Logical(left.node.offset, op.op, (left.node, right.node))
            height = max(left.height, right.height) + 1
        elif left.chain == op.power and isinstance(left.node, (_Compare, _Arithmetic)):
            merged = type(left.node)(left.node.offset, left.node.first, (*left.node.rest, (op.offset, op.op, right.node)))
            height = max(left.height, right.height + 1)
        else:
            kind = _Compare if op.power == _COMPARE else _Arithmetic
            merged = kind(left.node.offset, left.node, ((op.offset, op.op, right.node),))
            height = max(left.height, right.height) + 1
        operands.append(_Operand(merged, self.height(height, op.offset), op.power))

    def primary(self) -> _Operand:
        token = self.next()
        if token.kind == "number":
            self.count(token.offset)
            return _Operand(_Literal(token.offset, _number(token)), 1)
        if token.kind == "name":
            return self.named(token)
        if token.kind == "op" and token.text == "(":
            inner = self.expression(token.offset)
            self.expect(")", f"to close the '(' at position {token.offset}")
            return _Operand(inner.node, inner.height)
        if token.kind == "op" and token.text == "[":
            raise ExprError("lists are not part of expressions", token.offset)
        raise ExprError(f"expected an expression, found {_describe(token)}", token.offset)

    def named(self, token: _Token) -> _Operand:
        name = token.text
        self.count(token.offset)
        after = self.peek()
        if after.kind == "op" and after.text == "(":
            return self.call(token)
        if after.kind == "op" and after.text == "[":
            self.next()
            index = self.expression(after.offset)
            self.expect("]", f"to close the '[' at position {after.offset}")
            if name in CONSTANTS:
                raise ExprError(f"{name!r} is a constant; only a name can be indexed", after.offset)
            return _Operand(_Index(token.offset, name, index.node), self.height(index.height + 1, token.offset))
        if name in CONSTANTS:
            return _Operand(_Constant(token.offset, name), 1)
        return _Operand(_Name(token.offset, name), 1)

    def call(self, token: _Token) -> _Operand:
        name = token.text
        function = _FUNCTIONS.get(name)
        if function is None:
            hint = did_you_mean(name, _FUNCTIONS) or f"; the functions are {', '.join(sorted(_FUNCTIONS))}"
            raise ExprError(f"unknown function {_cut(name)!r}{hint}", token.offset)
        opening = self.next()
        args: list[_Operand] = []
        if self.peek().text != ")" or self.peek().kind != "op":
            while True:
                args.append(self.expression(opening.offset))
                if self.peek().kind == "op" and self.peek().text == ",":
                    self.next()
                    continue
                break
        self.expect(")", f"to close the '(' of {name}() at position {opening.offset}")
        fewest, most = function.arguments
        if len(args) < fewest or most is not None and len(args) > most:
            wanted = f"{fewest} or more arguments" if most is None else f"{fewest} argument{'s' if fewest > 1 else ''}"
            raise ExprError(f"{name}() takes {wanted}, got {len(args)}", token.offset)
        height = self.height(1 + max(arg.height for arg in args), token.offset)
        if name == "where":
            condition, body, orelse = (arg.node for arg in args)
            return _Operand(_Conditional(token.offset, body, condition, orelse), height)
        if name == "pow":
            return _Operand(_Power(token.offset, (args[0].node, args[1].node), (token.offset,)), height)
        return _Operand(_Call(token.offset, name, tuple(arg.node for arg in args)), height)

    def expect(self, text: str, why: str) -> None:
        token = self.peek()
        if token.kind == "op" and token.text == text:
            self.next()
            return
        self.next()  # an error token raises its own message
        raise ExprError(f"expected {text!r} {why}, found {_describe(token)}", token.offset)


def _children(node: _Node) -> tuple[_Node, ...]:
    if isinstance(node, _Index):
        return (node.index,)
    if isinstance(node, _Unary):
        return (node.operand,)
    if isinstance(node, (_Arithmetic, _Compare)):
        return (node.first, *(operand for _, _, operand in node.rest))
    if isinstance(node, (_Logical, _Power)):
        return node.operands
    if isinstance(node, _Conditional):
        return (node.body, node.condition, node.orelse)
    if isinstance(node, _Call):
        return node.args
    return ()


def _walk(node: _Node) -> Iterable[_Node]:
    """Every node of the tree (its height is bounded, and so is this walk's stack)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(_children(current))


# ---------------------------------------------------------------------------------------
# The public face


@dataclass(frozen=True)
class Expr:
    """A parsed expression: its text, the names it reads, and its value.

    Made by :func:`parse`; immutable, comparable and picklable (a plan may carry one to
    another process).

    Args:
        text: The expression as written.
        tree: Its parse tree (private: the language's own nodes).

    Raises:
        ExprError: From :meth:`evaluate` and :meth:`check_names`.

    Example:
        >>> from vsconf.expr import parse
        >>> expr = parse("shape[0] * shape[-1] ** -0.5")
        >>> expr.text, sorted(expr.names()), expr.constant
        ('shape[0] * shape[-1] ** -0.5', ['shape'], None)
        >>> expr.evaluate({"shape": (6, 4)})
        3.0
    """

    text: str
    tree: _Node = field(repr=False)
    constant: int | float | None = field(default=None, compare=False)
    _names: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __repr__(self) -> str:
        return f"Expr({self.text!r})"

    def names(self) -> frozenset[str]:
        """The names the expression reads (``shape`` for ``shape[0]``; never ``pi`` or ``e``)."""
        return self._names

    def check_names(self, known: Collection[str]) -> None:
        """Raise :class:`ExprError` at the first name (from the left) not in ``known``.

        Example:
            >>> from vsconf.expr import parse
            >>> parse("fan_in + lyer").check_names({"fan_in", "layer"})
            Traceback (most recent call last):
            ...
            vsconf.expr.ExprError: unknown name 'lyer'; did you mean 'layer'? at position 9
        """
        unknown = [node for node in _walk(self.tree) if isinstance(node, (_Name, _Index)) and node.name not in known]
        if unknown:
            first = min(unknown, key=lambda node: node.offset)
            raise ExprError(_unknown_name(first.name, known), first.offset)

    def evaluate(self, names: Mapping[str, Any] | None = None) -> Value:
        """The value of the expression for ``names``.

        Args:
            names: Each name's value: a number (a bool is an int; NumPy scalars too), a list
                or tuple of numbers (read as ``name[i]``), or a NumPy array of numbers
                (a formula's index grids, broadcast against each other).  Names the
                expression does not read are ignored.

        Returns:
            A Python ``int`` or ``float`` when no array is read (``True``/``False`` come back
            as 1/0), else an ``int64`` or ``float64`` array of the arrays' broadcast shape
            (or a number, when every element takes a branch that reads no array).

        Raises:
            ExprError: An unknown name, a value out of range or out of a function's domain,
                an overflow; on arrays, naming the first element where it happens.

        Example:
            >>> from vsconf.expr import index_grids, parse
            >>> parse("log(1 + i1)").evaluate(index_grids((1, 3))).round(4)
            array([[0.    , 0.6931, 1.0986]])
        """
        evaluation = _Evaluation(names or {})
        return evaluation.result(evaluation.value(self.tree, None))


def parse(text: str) -> Expr:
    """Read ``text`` as an expression; compute its value at once when it reads no names.

    Args:
        text: The expression.

    Returns:
        The :class:`Expr`; its ``constant`` is the value when it reads no names, else None.

    Raises:
        ExprError: The text is not an expression of the language, exceeds a bound, or (when
            it reads no names) has no value, as ``1 / 0``; ``offset`` says where.
        TypeError: ``text`` is not a string.

    Example:
        >>> from vsconf.expr import parse
        >>> parse("-log(1000)").constant
        -6.907755278982137
        >>> parse("__import__('os')")
        Traceback (most recent call last):
        ...
        vsconf.expr.ExprError: unknown function '__import__'; the functions are abs, ceil, cos, exp, floor, log, log10, log2, max, min, pow, round, sin, sqrt, tanh, where at position 0
    """
    if not isinstance(text, str):
        raise TypeError(f"an expression is a string, not {type(text).__name__}")
    tree = _Parser(text).parse()
    names = frozenset(node.name for node in _walk(tree) if isinstance(node, (_Name, _Index)))
    constant = None if names else Expr(text, tree).evaluate()
    return Expr(text, tree, constant, names)


@functools.lru_cache(maxsize=256)
def parsed(text: str) -> Expr:
    """:func:`parse`, cached: the expressions a plan evaluates per tensor, or per box of a
    formula, are parsed once (an :class:`Expr` is never changed after it is made)."""
    return parse(text)


def index_grids(shape: Sequence[int], start: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The index names of a formula over a box of a tensor: ``i0, i1, ...`` as ``int64``
    ranges shaped to broadcast against each other (``i0`` down, ``i1`` across, ...).

    Args:
        shape: The box's shape.
        start: Where the box starts in the tensor (zeros by default).

    Returns:
        ``{"i0": ..., "i1": ..., ...}``, one array of ``len(shape)`` dimensions an axis.

    Example:
        >>> from vsconf.expr import index_grids
        >>> grids = index_grids((2, 3), start=(4, 0))
        >>> grids["i0"].tolist(), grids["i1"].tolist()
        ([[4], [5]], [[0, 1, 2]])
    """
    start = tuple(start) if start is not None else (0,) * len(shape)
    return {
        f"i{axis}": np.arange(first, first + size, dtype=np.int64).reshape([size if k == axis else 1 for k in range(len(shape))])
        for axis, (size, first) in enumerate(zip(shape, start))
    }


def _unknown_name(name: str, known: Collection[str]) -> str:
    known = sorted(k for k in known if isinstance(k, str))
    message = f"unknown name {_cut(name)!r}"
    if name in _FUNCTIONS:
        return f"{message}: {name} is a function; call it, as in {name}(x)"
    hint = did_you_mean(name, [*known, *CONSTANTS])
    if hint:
        return message + hint
    if not known:
        return f"{message}; no names are defined here"
    shown = ", ".join(_cut(k) for k in known[:12])
    return f"{message}; names here: {shown}" + (f", ... ({len(known)} in all)" if len(known) > 12 else "")


# ---------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class _Grid:
    """An array during evaluation, with bounds on its live elements (``low <= x <= high``):
    an operation whose bounds prove it safe (no overflow, no zero divisor, inside its
    domain) runs without a check, and only the others look at the elements.  Bounds are
    computed with the same IEEE operations as the elements (rounding is monotone, so they
    hold), and with room for a few ulps after NumPy's transcendental kernels."""

    data: Any  # an ndarray; a Python number where one stands in an operation with arrays
    low: Number
    high: Number
    integer: bool


@dataclass(frozen=True)
class _List:
    name: str
    values: tuple[Number, ...]


_Item = Union[int, float, bool, _Grid, _List]
_Mask = Union[np.ndarray, None]  # the elements that are live (None: all of them)

_ARITHMETIC = {
    "+": operator.add, "-": operator.sub, "*": operator.mul,
    "/": operator.truediv, "//": operator.floordiv, "%": operator.mod,
}  # fmt: skip
_UFUNCS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "//": np.floor_divide, "%": np.remainder}
_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
_SLACK = 1e-9  # relative room for NumPy's transcendental kernels in bounds
# The least value each logarithm takes on a positive double (that of the least subnormal).
_LOG_FLOORS = {"log": -745.2, "log2": -1075.0, "log10": -323.7}
_INTEGER_OVERFLOW = "the value overflows the integer range ±2**53"


class _Evaluation:
    """One evaluation: the names given (each converted once, when first read) and the
    work node by node.  ``mask`` says which elements are live where a node is evaluated: a
    branch of a condition over arrays is computed for every element, and only its live
    elements may fail."""

    def __init__(self, names: Mapping[str, Any]):
        self.given = names
        self.items: dict[str, _Item] = {}
        self.inputs: set[int] = set()  # the ids of arrays given (a result is never one of them)

    def value(self, node: _Node, mask: _Mask) -> _Item:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Name):
            item = self.lookup(node.name, node.offset)
            if isinstance(item, _List):
                shown = _cut(node.name)
                raise ExprError(f"{shown!r} is a list of {len(item.values)} numbers; write {shown}[i]", node.offset)
            return item
        if isinstance(node, _Constant):
            if node.name in self.given:
                raise ExprError(
                    f"{node.name!r} is the constant {CONSTANTS[node.name]!r} here; the name {node.name!r} passed in "
                    "cannot be read (rename it)",
                    node.offset,
                )
            return CONSTANTS[node.name]
        if isinstance(node, _Index):
            return self.index(node, mask)
        if isinstance(node, _Unary):
            return self.unary(node, mask)
        if isinstance(node, _Arithmetic):
            result = self.value(node.first, mask)
            for offset, op, operand in node.rest:
                result = self.arithmetic(op, result, self.value(operand, mask), offset, mask)
            return result
        if isinstance(node, _Power):
            return self.power_chain(node, mask)
        if isinstance(node, _Compare):
            return self.compare(node, mask)
        if isinstance(node, _Logical):
            return self.logical(node, mask)
        if isinstance(node, _Conditional):
            return self.conditional(node, mask)
        return self.call(node, mask)

    def result(self, item: _Item) -> Value:
        if isinstance(item, _Grid):
            data = np.asarray(item.data)
            if data.dtype == np.bool_:
                return data.astype(np.int64)
            return data.copy() if id(item.data) in self.inputs else data
        return int(item) if isinstance(item, bool) else item

    # names -------------------------------------------------------------------------

    def lookup(self, name: str, offset: int) -> _Item:
        item = self.items.get(name)
        if item is None:
            if name not in self.given:
                raise ExprError(_unknown_name(name, list(self.given)), offset)
            item = self.items[name] = self.convert(name, self.given[name], offset)
        return item

    def convert(self, name: str, value: Any, offset: int) -> _Item:
        shown = _cut(name)
        if isinstance(value, np.ndarray) and value.ndim == 0 or isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (bool, int, float)):
            return _checked(int(value) if isinstance(value, bool) else value, offset, lambda: f"the name {shown!r} ({value!r})")
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise ExprError(f"the name {shown!r} holds {value.dtype} values, not numbers", offset)
            integer = value.dtype.kind in "biu"
            if value.dtype.kind == "u" and value.size and value.max() > INTEGER_LIMIT:
                raise ExprError(f"the name {shown!r} holds integers beyond the integer range ±2**53", offset)
            data = value.astype(np.int64 if integer else np.float64, copy=False)
            low, high = _measure(data, None)
            if not _within(low, high, integer):
                what = "integers beyond the integer range ±2**53" if integer else "values that are not finite"
                raise ExprError(f"the name {shown!r} holds {what}", offset)
            self.inputs.add(id(data))
            return _Grid(data, low, high, integer)
        if isinstance(value, (list, tuple)):
            entries = [entry.item() if isinstance(entry, np.generic) else entry for entry in value]
            wrong = next((entry for entry in entries if not isinstance(entry, (bool, int, float))), None)
            if wrong is not None:
                raise ExprError(f"the name {shown!r} is a list holding a {type(wrong).__name__}, not only numbers", offset)
            return _List(name, tuple(_checked(int(e) if isinstance(e, bool) else e, offset, lambda: f"an entry of {shown!r}") for e in entries))
        raise ExprError(f"the name {shown!r} is a {type(value).__name__}, not a number", offset)

    def index(self, node: _Index, mask: _Mask) -> _Item:
        shown = _cut(node.name)
        item = self.lookup(node.name, node.offset)
        if not isinstance(item, _List):
            raise ExprError(f"{shown!r} is not a list; only a list can be indexed", node.offset)
        index = self.value(node.index, mask)
        if isinstance(index, _Grid):
            raise ExprError(f"the index of {shown}[...] must be one integer, not an array", node.offset)
        if isinstance(index, float):
            raise ExprError(f"the index of {shown}[...] must be an integer, not {index!r}", node.offset)
        if not -len(item.values) <= index < len(item.values):
            raise ExprError(f"{shown}[{int(index)}] is out of range: {shown} has {len(item.values)} entries", node.offset)
        return item.values[index]

    # operators ---------------------------------------------------------------------

    def unary(self, node: _Unary, mask: _Mask) -> _Item:
        value = self.value(node.operand, mask)
        for _, op in reversed(node.ops):
            if op == "not":
                value = (not value) if _is_number(value) else _Grid(~_truth(value), 0, 1, True)
            elif _is_number(value):
                value = -value if op == "-" else +value
            else:
                grid = _numeric(value)
                value = _Grid(-grid.data, -grid.high, -grid.low, grid.integer) if op == "-" else grid
        return value

    def arithmetic(self, op: str, a: _Item, b: _Item, offset: int, mask: _Mask) -> _Item:
        if _is_number(a) and _is_number(b):
            if op in ("/", "//", "%") and b == 0:
                raise ExprError("modulo by zero" if op == "%" else "division by zero", offset)
            return _checked(_ARITHMETIC[op](a, b), offset, lambda: f"{a!r} {op} {b!r}")
        a, b = _numeric(a), _numeric(b)
        shape = self.shape(offset, a.data, b.data)
        if op in ("/", "//", "%") and b.low <= 0 <= b.high:
            self.fail(b.data == 0, shape, mask, offset, lambda _: "modulo by zero" if op == "%" else "division by zero")
        integer = a.integer and b.integer and op != "/"
        bounds = _bounds(op, a, b)
        with np.errstate(all="ignore"):
            if integer and op == "*" and (bounds is None or not _within(*bounds, True)):
                product = np.multiply(np.asarray(a.data, dtype=np.float64), b.data)  # exact enough to tell
                self.fail(~(np.abs(product) <= INTEGER_LIMIT), shape, mask, offset, lambda _: _INTEGER_OVERFLOW)
                bounds = None
            data = _UFUNCS[op](a.data, b.data)
        return self.bounded(data, bounds, integer, offset, mask)

    def power_chain(self, node: _Power, mask: _Mask) -> _Item:
        """``a ** b ** c``: the operands from the left, as Python evaluates them; the
        powers from the right."""
        values = [self.value(operand, mask) for operand in node.operands]
        result = values[-1]
        for value, offset in zip(reversed(values[:-1]), reversed(node.ops)):
            result = self.power(value, result, offset, mask)
        return result

    def power(self, a: _Item, b: _Item, offset: int, mask: _Mask) -> _Item:
        if _is_number(a) and _is_number(b):
            return _scalar_power(a, b, offset)
        a, b = _numeric(a), _numeric(b)
        shape = self.shape(offset, a.data, b.data)
        if a.low <= 0 <= a.high and b.low < 0:
            self.fail((a.data == 0) & (b.data < 0), shape, mask, offset, lambda _: "zero to a negative power")
        with np.errstate(all="ignore"):
            if a.integer and b.integer and b.low >= 0:
                return self.integer_power(a, b, shape, offset, mask)
            if a.low < 0 and not (b.integer or b.low == b.high and float(b.low).is_integer()):
                fractional = np.asarray(b.data) != np.floor(b.data)
                message = "a negative number to a fractional power is not a real number"
                self.fail((a.data < 0) & fractional, shape, mask, offset, lambda _: message)
            data = np.power(np.asarray(a.data, dtype=np.float64), b.data)
            if a.integer and b.integer:  # some exponents negative: an integer where one is >= 0, as Python's
                self.fail((b.data >= 0) & ~(np.abs(data) <= INTEGER_LIMIT), shape, mask, offset, lambda _: _INTEGER_OVERFLOW)
        return self.bounded(data, _power_bounds(a, b), False, offset, mask)

    def integer_power(self, a: _Grid, b: _Grid, shape: tuple[int, ...], offset: int, mask: _Mask) -> _Grid:
        largest, exponent = max(abs(a.low), abs(a.high)), b.high
        bounds: tuple[Number, Number] | None = None
        if largest <= 1:
            bounds = (-1, 1)
        elif exponent * math.log2(largest) < 52:
            bound = largest**exponent
            bounds = (0 if a.low >= 0 else -bound, bound)
        else:
            power = np.power(np.asarray(a.data, dtype=np.float64), b.data)  # exact enough to tell
            self.fail(~(np.abs(power) <= INTEGER_LIMIT), shape, mask, offset, lambda _: _INTEGER_OVERFLOW)
        data = np.power(np.asarray(a.data, dtype=np.int64), b.data)
        return self.bounded(data, bounds, True, offset, mask)

    def compare(self, node: _Compare, mask: _Mask) -> _Item:
        """``a < b <= c`` as Python's chain: each operand once, the next only where the
        chain still holds."""
        left = self.value(node.first, mask)
        result: _Item = True
        live = mask
        for offset, op, operand in node.rest:
            if isinstance(result, _Grid) and not live.any():
                return result
            right = self.value(operand, live)
            if _is_number(left) and _is_number(right):
                holds: _Item = _COMPARISONS[op](left, right)
            else:
                a, b = _grid(left), _grid(right)
                self.shape(offset, a.data, b.data)
                holds = _Grid(np.asarray(_COMPARISONS[op](a.data, b.data)), 0, 1, True)
            if _is_number(result):
                result = holds
            else:
                result = _Grid(result.data & _truth(holds), 0, 1, True)
            if _is_number(result) and not result:
                return False
            if isinstance(result, _Grid):
                live = self.narrow(live, result.data, offset)
            left = right
        return result

    def logical(self, node: _Logical, mask: _Mask) -> _Item:
        """``a and b`` is a where a is falsy, else b (``or``: a where a is truthy), as in
        Python; b is computed only where it is the answer."""
        result = self.value(node.operands[0], mask)
        for operand in node.operands[1:]:
            if _is_number(result):
                if bool(result) == (node.op == "or"):
                    return result
                result = self.value(operand, mask)
                continue
            truth = _truth(result)
            takes_next = ~truth if node.op == "or" else truth
            live = self.narrow(mask, takes_next, node.offset)
            if live.any():
                result = self.choose(takes_next, self.value(operand, live), result, node.offset)
        return result

    def conditional(self, node: _Conditional, mask: _Mask) -> _Item:
        condition = self.value(node.condition, mask)
        if _is_number(condition):
            return self.value(node.body if condition else node.orelse, mask)
        truth = _truth(condition)
        live_body, live_orelse = self.narrow(mask, truth, node.offset), self.narrow(mask, ~truth, node.offset)
        if not live_body.any():
            return self.value(node.orelse, mask)
        if not live_orelse.any():
            return self.value(node.body, mask)
        return self.choose(truth, self.value(node.body, live_body), self.value(node.orelse, live_orelse), node.offset)

    # functions ---------------------------------------------------------------------

    def call(self, node: _Call, mask: _Mask) -> _Item:
        name, offset = node.function, node.offset
        args = [self.value(arg, mask) for arg in node.args]
        if all(_is_number(arg) for arg in args):
            return _scalar_call(name, [int(a) if isinstance(a, bool) else a for a in args], offset)
        grids = [_numeric(arg) for arg in args]
        if name in ("min", "max"):
            return self.extremum(name, grids, offset)
        (x,) = grids
        if name == "abs":
            low, high = (x.low, x.high) if x.low >= 0 else (-x.high, -x.low) if x.high <= 0 else (0, max(-x.low, x.high))
            return _Grid(np.abs(x.data), low, high, x.integer)
        if name in _ROUNDINGS:
            return self.rounding(name, x, offset, mask)
        if name == "sqrt":
            if x.low < 0:
                self.fail(x.data < 0, x.data.shape, mask, offset, lambda v: f"sqrt of a negative number ({v!r})", x.data)
            with np.errstate(all="ignore"):  # elements a condition left out may be negative
                return _Grid(np.sqrt(x.data), math.sqrt(max(x.low, 0)), math.sqrt(max(x.high, 0)), False)
        if name in _LOGS and x.low <= 0:
            self.fail(
                x.data <= 0, x.data.shape, mask, offset,
                lambda v: f"{name} of zero" if v == 0 else f"{name} of a negative number ({v!r})", x.data,
            )  # fmt: skip
        with np.errstate(all="ignore"):
            # Contiguous float64, so that a kernel sees the same layout whatever the box.
            data = _FUNCTIONS[name].array(np.ascontiguousarray(x.data, dtype=np.float64))
        return self.bounded(data, _function_bounds(name, x), False, offset, mask)

    def extremum(self, name: str, grids: list[_Grid], offset: int) -> _Grid:
        result = grids[0]
        pick = min if name == "min" else max
        for grid in grids[1:]:
            self.shape(offset, result.data, grid.data)
            data = _FUNCTIONS[name].array(result.data, grid.data)
            result = _Grid(data, pick(result.low, grid.low), pick(result.high, grid.high), result.integer and grid.integer)
        return result

    def rounding(self, name: str, x: _Grid, offset: int, mask: _Mask) -> _Grid:
        """``floor``, ``ceil``, ``round``: integers, as Python's."""
        if x.integer:
            return x
        function = _FUNCTIONS[name]
        data = function.array(x.data)
        low, high = function.scalar(x.low), function.scalar(x.high)
        if not _within(low, high, True):
            out = ~(np.abs(data) <= INTEGER_LIMIT)
            self.fail(out, data.shape, mask, offset, lambda v: f"{name}({v!r}) is beyond the integer range ±2**53", x.data)
        with np.errstate(all="ignore"):  # elements a condition left out may not be finite
            return _Grid(data.astype(np.int64), low, high, True)

    # checks ------------------------------------------------------------------------

    def shape(self, offset: int, *arrays: Any) -> tuple[int, ...]:
        try:
            return np.broadcast_shapes(*(np.shape(array) for array in arrays))
        except ValueError:
            shapes = " and ".join(str(np.shape(array)) for array in arrays)
            raise ExprError(f"arrays of shapes {shapes} do not broadcast together", offset) from None

    def narrow(self, mask: _Mask, condition: np.ndarray, offset: int) -> np.ndarray:
        if mask is None:
            return condition
        self.shape(offset, mask, condition)
        return mask & condition

    def choose(self, condition: np.ndarray, yes: _Item, no: _Item, offset: int) -> _Grid:
        a, b = _grid(yes), _grid(no)
        self.shape(offset, condition, a.data, b.data)
        return _Grid(np.where(condition, a.data, b.data), min(a.low, b.low), max(a.high, b.high), a.integer and b.integer)

    def bounded(self, data: np.ndarray, bounds: tuple[Number, Number] | None, integer: bool, offset: int, mask: _Mask) -> _Grid:
        """``data`` with its bounds: those given where they prove it in range, else those
        of its live elements, measured -- and an error if one of those is out of range."""
        if bounds is not None and _within(*bounds, integer):
            return _Grid(data, *bounds, integer)
        low, high = _measure(data, mask)
        if not _within(low, high, integer):
            out = ~(np.abs(data) <= INTEGER_LIMIT) if integer else ~np.isfinite(data)
            self.fail(out, data.shape, mask, offset, lambda _: _INTEGER_OVERFLOW if integer else "the value overflows")
        return _Grid(data, low, high, integer)

    def fail(
        self,
        bad: Any,
        shape: tuple[int, ...],
        mask: _Mask,
        offset: int,
        message: Callable[[Any], str],
        values: Any = None,
    ) -> None:
        """Raise ``message`` if a live element of ``bad`` (broadcast to ``shape``) is set,
        naming the first such element; ``message`` is given the value of ``values`` there."""
        bad = np.broadcast_to(bad, np.broadcast_shapes(np.shape(bad), shape))
        if mask is not None:
            bad = bad & mask
        if not bad.any():
            return
        if bad.ndim == 0:
            raise ExprError(message(None if values is None else np.asarray(values).item()), offset)
        where = np.unravel_index(int(np.argmax(bad)), bad.shape)
        value = None if values is None else np.broadcast_to(values, bad.shape)[where].item()
        raise ExprError(message(value) + self.describe(where, bad.shape), offset)

    def describe(self, where: tuple[Any, ...], shape: tuple[int, ...]) -> str:
        """`` where i0 = 3, i1 = 0``: the values there of the arrays read that span the
        element's shape, or else the element's index."""
        parts = []
        for name in sorted(self.items):
            item = self.items[name]
            if isinstance(item, _Grid) and np.broadcast_shapes(item.data.shape, shape) == shape:
                parts.append(f"{_cut(name)} = {np.broadcast_to(item.data, shape)[where].item()!r}")
        return f" where {', '.join(parts)}" if parts else f" at element {[int(i) for i in where]}"


def _is_number(value: _Item) -> bool:
    return not isinstance(value, (_Grid, _List))


def _grid(value: _Item) -> _Grid:
    if isinstance(value, _Grid):
        return value
    value = int(value) if isinstance(value, bool) else value
    return _Grid(value, value, value, isinstance(value, int))


def _numeric(value: _Item) -> _Grid:
    """An operand of arithmetic: booleans as the integers 0 and 1."""
    grid = _grid(value)
    if isinstance(grid.data, np.ndarray) and grid.data.dtype == np.bool_:
        return _Grid(grid.data.astype(np.int64), grid.low, grid.high, True)
    return grid


def _truth(value: _Item) -> np.ndarray:
    if _is_number(value):
        return np.asarray(bool(value))
    data = np.asarray(value.data)
    return data if data.dtype == np.bool_ else data != 0


def _within(low: Number, high: Number, integer: bool) -> bool:
    if integer:
        return -INTEGER_LIMIT <= low and high <= INTEGER_LIMIT
    return math.isfinite(low) and math.isfinite(high)


def _checked(value: Number, offset: int, what: Callable[[], str]) -> Number:
    """``value`` if it is in range (an int within ±2**53, a finite float), else an error."""
    if isinstance(value, int):
        if -INTEGER_LIMIT <= value <= INTEGER_LIMIT:
            return value
        raise ExprError(f"the value overflows: {what()} is beyond the integer range ±2**53", offset)
    if math.isfinite(value):
        return value
    if math.isnan(value):  # only a name can bring one in: no operation here makes a NaN
        raise ExprError(f"{what()} is not a number", offset)
    raise ExprError(f"the value overflows: {what()} is too large for a float", offset)


def _scalar_power(a: Number, b: Number, offset: int) -> Number:
    a, b = (int(v) if isinstance(v, bool) else v for v in (a, b))
    shown = " ** ".join(f"({v!r})" if v < 0 else repr(v) for v in (a, b))
    if a == 0 and b < 0:
        raise ExprError(f"zero to a negative power ({shown})", offset)
    if isinstance(a, int) and isinstance(b, int) and b >= 0:
        if abs(a) > 1 and b * math.log2(abs(a)) > 54:  # refused before it is computed
            raise ExprError(f"the value overflows: {shown} is beyond the integer range ±2**53", offset)
        return _checked(a**b, offset, lambda: shown)
    if a < 0 and not float(b).is_integer():
        raise ExprError(f"a negative number to a fractional power is not a real number ({shown})", offset)
    try:
        value = a**b  # a float, computed by the platform's pow
    except OverflowError:
        value = math.inf
    return _checked(value, offset, lambda: shown)


def _scalar_call(name: str, args: list[Number], offset: int) -> Number:
    function = _FUNCTIONS[name]
    if name in ("min", "max"):
        return function.scalar(args)
    (x,) = args
    if name == "sqrt" and x < 0:
        raise ExprError(f"sqrt of a negative number ({x!r})", offset)
    if name in _LOGS and x <= 0:
        raise ExprError(f"{name} of zero" if x == 0 else f"{name} of a negative number ({x!r})", offset)
    try:
        value = function.scalar(x)
    except OverflowError:
        value = math.inf
    return _checked(value, offset, lambda: f"{name}({x!r})")


def _span(*values: Number) -> tuple[Number, Number]:
    return min(values), max(values)


def _bounds(op: str, a: _Grid, b: _Grid) -> tuple[Number, Number] | None:
    """Bounds of ``a op b`` from those of a and b (None where they give none)."""
    if op == "+":
        return a.low + b.low, a.high + b.high
    if op == "-":
        return a.low - b.high, a.high - b.low
    if op == "*":
        return _span(a.low * b.low, a.low * b.high, a.high * b.low, a.high * b.high)
    if op == "%":  # |a % b| <= |b|
        largest = max(abs(b.low), abs(b.high))
        return -largest, largest
    integer = a.integer and b.integer
    if b.low <= 0 <= b.high:  # no live zero (checked), but quotients unbounded -- unless integers
        largest = max(abs(a.low), abs(a.high))
        return (-largest, largest) if op == "//" and integer else None
    if op == "//" and integer:
        return _span(a.low // b.low, a.low // b.high, a.high // b.low, a.high // b.high)
    quotients = _span(a.low / b.low, a.low / b.high, a.high / b.low, a.high / b.high)
    if op == "/":
        return quotients
    if not all(math.isfinite(q) for q in quotients):
        return None
    return math.floor(quotients[0]) - 1, math.floor(quotients[1]) + 1  # NumPy's floor of a divmod


def _widen(low: float, high: float) -> tuple[float, float]:
    return low - _SLACK * (1 + abs(low)), high + _SLACK * (1 + abs(high))


def _power_bounds(a: _Grid, b: _Grid) -> tuple[Number, Number] | None:
    """Bounds of a float power where it is monotone: a fixed positive base, or a fixed
    exponent over non-negative bases."""
    try:
        if a.low == a.high and a.low > 0:
            ends = (math.pow(a.low, b.low), math.pow(a.low, b.high))
        elif b.low == b.high and (a.low > 0 or a.low == 0 and b.low >= 0):
            ends = (math.pow(a.low, b.low), math.pow(a.high, b.low))
        else:
            return None
    except (OverflowError, ValueError):
        return None
    return _widen(*_span(*ends))


def _function_bounds(name: str, x: _Grid) -> tuple[Number, Number] | None:
    if name in ("sin", "cos", "tanh"):
        return _widen(-1.0, 1.0)
    if name == "exp":
        try:
            return _widen(math.exp(x.low), math.exp(x.high))
        except OverflowError:
            return None
    function = _FUNCTIONS[name].scalar  # a logarithm; no live element is <= 0
    low = function(x.low) if x.low > 0 else _LOG_FLOORS[name]
    return _widen(low, function(x.high) if x.high > 0 else low)


def _measure(data: np.ndarray, mask: _Mask) -> tuple[Number, Number]:
    """The least and the greatest live element (NaN if one is); (0, 0) when none is live."""
    if data.size == 0:
        return 0, 0
    where: Any = True if mask is None else _fit(mask, data.shape)
    if data.dtype.kind == "f":
        low, high = np.min(data, initial=np.inf, where=where), np.max(data, initial=-np.inf, where=where)
    else:
        info = np.iinfo(np.int64)
        low, high = np.min(data, initial=info.max, where=where), np.max(data, initial=info.min, where=where)
    if low > high:
        return 0, 0
    return low.item(), high.item()


def _fit(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``mask`` reduced to broadcast onto ``shape``: an element of a smaller array is live
    where any element it stands for is."""
    extra = mask.ndim - len(shape)
    if extra > 0:
        mask = mask.any(axis=tuple(range(extra)))
    aligned = shape[len(shape) - mask.ndim :]
    axes = tuple(axis for axis, (m, s) in enumerate(zip(mask.shape, aligned)) if s == 1 and m != 1)
    return mask.any(axis=axes, keepdims=True) if axes else mask
