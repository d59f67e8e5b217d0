"""Linear-time matching of Python-syntax regular expressions (the ``re:`` name patterns).

Contract: :func:`compile_pattern` turns a pattern written in Python :mod:`re` syntax into a
predicate that tells whether the pattern matches a WHOLE name, exactly as
``re.fullmatch(pattern, name) is not None`` would, in time linear in the length of the
name (times the size of the pattern).  It never backtracks, so a hostile pattern such as
``(a+)+b`` or ``(.*a){20}`` answers as fast as ``layer\\d+\\.weight``.

How: the standard library's own parser reads the pattern (so syntax, error messages and
error positions are Python's), the parse tree becomes a Thompson NFA, and the NFA runs as a
set of states (Pike VM) over the name, one character at a time.  Sets of states met before
are cached as DFA states, so the usual cost per character is one dictionary lookup; the
cache is bounded and is flushed when full.  Single-character tests (literals, ``.``,
classes, with their flags) are compiled by :mod:`re` itself, one character each, so that
case-insensitive and Unicode semantics are Python's to the letter.

Supported: literals and escapes, ``.``, character classes (ranges, negation, ``\\d \\w
\\s`` and their negations), alternation, capturing, named and non-capturing groups, greedy
and lazy quantifiers ``* + ? {m} {m,} {,n} {m,n}`` (laziness changes which match is found,
never whether a full match exists), the anchors ``^ $ \\A \\Z`` and the word boundaries
``\\b \\B``, and the flags ``i a s x m u`` (``(?i)``) and scoped flags (``(?i:...)``).

Refused with :class:`RegexError` (each says what and why, with the position of the first
such construct): backreferences, conditional groups, lookahead and lookbehind assertions,
atomic groups and possessive quantifiers (their meaning is defined by backtracking),
patterns longer than 32768 characters, groups nested more than 100 deep, patterns whose
NFA would exceed 10000 states once counted repeats are expanded (sizes are computed
before anything is expanded, so refusing is fast), and character classes whose ranges
together span more than 2**20 characters.  Syntax errors are Python's own message and
position.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

try:  # Python >= 3.11
    from re import _constants as _sre
    from re import _parser
except ImportError:  # Python 3.10
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

_MAX_PATTERN_LENGTH = 32_768
_MAX_NESTING = 100
_MAX_STATES = 10_000
_MAX_CLASS_SPAN = 1 << 20
_CACHE_LIMIT = 20_000  # NFA states in cached sets, plus transitions
# The cost of matching, in steps of about 0.1 us of work, as `python benchmarks/matchcost.py`
# measured them on one core of a shared 2-core Xeon VM (Python 3.11): reading a name costs
# a step, and _CHARACTERS_PER_STEP characters of it a step more when the cache knows the
# way (a dictionary look-up per segment or character, 0.1-0.15 us a step); a cache miss
# costs _MISS_STEPS (new sets and a new cached state, ~6 us) plus _VISIT_STEPS for every
# NFA state it visits (~0.3 us each: a character test compiled by `re`).
_CHARACTERS_PER_STEP = 2
_MISS_STEPS = 60
_VISIT_STEPS = 3
# What matching the names of one model against one spec's patterns may cost in all: about
# a second (1e7 steps of 0.1 us).  A pattern of S states over names of C characters costs
# at most C x (_MISS_STEPS + _VISIT_STEPS x S) steps, and usually far less (the cache).
# Past the budget, matching stops with an error that names the rule whose pattern ran over.
MATCH_STEPS = 10_000_000

_LINEAR = "vsconf matches regexes in linear time, without backtracking"
_REFUSALS = {
    "backreference": "backreferences are not supported (" + _LINEAR + ")",
    "conditional": "conditional groups (?(id)yes|no) are not supported (" + _LINEAR + ")",
    "lookahead": "lookahead assertions (?=...) and (?!...) are not supported (" + _LINEAR + ")",
    "lookbehind": "lookbehind assertions (?<=...) and (?<!...) are not supported (" + _LINEAR + ")",
    "atomic": "atomic groups (?>...) are not supported (" + _LINEAR + ")",
    "possessive": "possessive quantifiers (*+, ++, ?+, {m,n}+) are not supported (" + _LINEAR + ")",
}
_TOO_LONG = f"pattern is too long: more than {_MAX_PATTERN_LENGTH} characters"
_TOO_DEEP = f"pattern is nested too deeply: more than {_MAX_NESTING} levels of groups"
_TOO_LARGE = (
    f"pattern is too large: matching it in linear time takes an automaton of more than {_MAX_STATES} "
    "states (counted repeats such as {m,n} are expanded)"
)
_TOO_WIDE = (
    f"character classes are too wide: their ranges span more than {_MAX_CLASS_SPAN} characters in all"
)
_TOO_MANY_REPEATS = "the repetition number is too large"  # Python's words for its OverflowError

_TYPE_FLAGS = re.ASCII | re.LOCALE | re.UNICODE
_CHAR_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII
_GROUP_KINDS = (  # what follows "(?"
    ("=", "lookahead"),
    ("!", "lookahead"),
    ("<=", "lookbehind"),
    ("<!", "lookbehind"),
    ("(", "conditional"),
    (">", "atomic"),
)
_FLAG_LETTERS = frozenset("aiLmsux-")
_GROUP_DIGITS = frozenset("123456789")
_OCTAL_DIGITS = frozenset("01234567")
_COUNTS = re.compile(r"\{([0-9]*)(?:,([0-9]*))?\}")  # no nested quantifier: linear
_CATEGORIES = {
    _sre.CATEGORY_DIGIT: r"\d", _sre.CATEGORY_NOT_DIGIT: r"\D",
    _sre.CATEGORY_SPACE: r"\s", _sre.CATEGORY_NOT_SPACE: r"\S",
    _sre.CATEGORY_WORD: r"\w", _sre.CATEGORY_NOT_WORD: r"\W",
}
_CHAR_OPS = (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN)
_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT)
_POSSESSIVE_REPEAT = getattr(_sre, "POSSESSIVE_REPEAT", None)  # Python >= 3.11
_ATOMIC_GROUP = getattr(_sre, "ATOMIC_GROUP", None)  # Python >= 3.11
_UNBOUNDED = _sre.MAXREPEAT

_CHAR, _FORK, _ASSERT, _MATCH = range(4)

Predicate = Callable[[str], Any]
Assertion = Callable[[str | None, str | None, bool], bool]


class Budget:
    """Steps that matching may still take (:data:`MATCH_STEPS` by default), shared by every
    pattern of a spec over every name of a model: :meth:`spend` raises
    :class:`BudgetExceeded` once they run out."""

    def __init__(self, steps: int = MATCH_STEPS):
        self.steps = steps
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise BudgetExceeded(self.steps)


class BudgetExceeded(Exception):
    """Matching ran out of its :class:`Budget` (``steps``: the budget it had)."""

    def __init__(self, steps: int):
        super().__init__(steps)
        self.steps = steps


class RegexError(ValueError):
    """A pattern vsconf refuses or cannot parse.

    ``message`` says what is wrong (no position in it); ``position`` is a 0-based offset
    into the pattern text (best effort: 0 when unknown).
    """

    def __init__(self, message: str, position: int):
        super().__init__(message, position)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return f"{self.message} at position {self.position}"


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A predicate: does `pattern` (Python ``re`` syntax) match the WHOLE name (like
    ``re.fullmatch``)?  Linear time.  Raises :class:`RegexError` for syntax errors and for
    constructs it refuses."""
    if len(pattern) > _MAX_PATTERN_LENGTH:
        raise RegexError(_TOO_LONG, _MAX_PATTERN_LENGTH)
    found = _Scanner(pattern).scan()
    try:
        tree = _parse(pattern, found)
        if _cost(tree, found) > _MAX_STATES:
            raise RegexError(_TOO_LARGE, 0)
        return _Matcher(_Builder().build(tree), *_literal_ends(tree))
    except RecursionError:
        raise RegexError(_TOO_DEEP, 0) from None


_START_ANCHORS = (_sre.AT_BEGINNING, _sre.AT_BEGINNING_STRING)  # true at a name's start, as fullmatch runs
_END_ANCHORS = (_sre.AT_END, _sre.AT_END_STRING)  # true at its end


def _literal_ends(tree: Any) -> tuple[str, str]:
    """(prefix, suffix): the literal characters a pattern starts and ends with outside any
    group, past anchors that hold at the ends of a name.  Under IGNORECASE, none."""
    if tree.state.flags & re.IGNORECASE:
        return "", ""
    nodes = list(tree)
    start, stop = 0, len(nodes)
    while start < stop and nodes[start][0] is _sre.AT and nodes[start][1] in _START_ANCHORS:
        start += 1
    while stop > start and nodes[stop - 1][0] is _sre.AT and nodes[stop - 1][1] in _END_ANCHORS:
        stop -= 1
    prefix = []
    while start < stop and nodes[start][0] is _sre.LITERAL:
        prefix.append(chr(nodes[start][1]))
        start += 1
    suffix = []
    while stop > start and nodes[stop - 1][0] is _sre.LITERAL:
        suffix.append(chr(nodes[stop - 1][1]))
        stop -= 1
    return "".join(prefix), "".join(reversed(suffix))


def _parse(pattern: str, found: dict[str, int]) -> Any:
    """The standard library's parse tree of `pattern`; its failures as :class:`RegexError`."""
    try:
        return _parser.parse(pattern)
    except re.error as exc:
        raise RegexError(exc.msg, exc.pos or 0) from None
    except (OverflowError, ValueError) as exc:  # a{4294967296}; a{<5000 digits>}; (?a)(?u)
        if "count" in found:
            raise RegexError(_TOO_MANY_REPEATS, found["count"]) from None
        raise RegexError(str(exc), 0) from None


class _Scanner:
    """A light lexer over the pattern text: it refuses groups nested too deeply (before the
    recursive parser runs) and notes where each refused construct first occurs, since the
    parse tree keeps no positions.  It need only be right on patterns that parse; on other
    text it merely terminates."""

    def __init__(self, pattern: str):
        self.text = pattern
        self.found: dict[str, int] = {}
        self.verbose = [False]  # one entry per open group, plus the top level

    def scan(self) -> dict[str, int]:
        """Kind of construct -> offset of its first occurrence."""
        i = 0
        while i < len(self.text):
            i = self._token(i)
        return self.found

    def _token(self, i: int) -> int:
        c = self.text[i]
        if c == "\\":
            if _is_backreference(self.text, i):
                self.found.setdefault("backreference", i)
            return i + 2
        if c == "[":
            return _class_end(self.text, i)
        if c == "(":
            return self._group(i)
        if c == ")":
            if len(self.verbose) > 1:
                self.verbose.pop()
            return i + 1
        if c in "*+?":
            return self._suffix(i, i + 1)
        if c == "{":
            return self._counts(i)
        if c == "#" and self.verbose[-1]:
            end = self.text.find("\n", i)
            return len(self.text) if end < 0 else end + 1
        return i + 1

    def _group(self, i: int) -> int:
        text = self.text
        if not text.startswith("?", i + 1):
            return self._push(i, self.verbose[-1], i + 1)
        if text.startswith("#", i + 2):
            return _comment_end(text, i + 3)
        if text.startswith("P=", i + 2):
            self.found.setdefault("backreference", i)
            end = text.find(")", i)
            return len(text) if end < 0 else end + 1
        for prefix, kind in _GROUP_KINDS:
            if text.startswith(prefix, i + 2):
                self.found.setdefault(kind, i)
        end = i + 2
        while end < len(text) and text[end] in _FLAG_LETTERS:
            end += 1
        letters = text[i + 2 : end]
        if letters and text.startswith(")", end):  # global flags: no group is opened
            if "x" in letters:
                self.verbose = [True] * len(self.verbose)
            return end + 1
        if text.startswith(":", end):
            on, _, off = letters.partition("-")
            verbose = ("x" in on or self.verbose[-1]) and "x" not in off
            return self._push(i, verbose, end + 1)
        return self._push(i, self.verbose[-1], i + 2)

    def _push(self, i: int, verbose: bool, after: int) -> int:
        if len(self.verbose) > _MAX_NESTING:
            raise RegexError(_TOO_DEEP, i)
        self.verbose.append(verbose)
        return after

    def _counts(self, i: int) -> int:
        counts = _COUNTS.match(self.text, i)
        if counts is None or counts.group() == "{}":
            return i + 1  # a literal "{"
        if any(_too_many(digits) for digits in counts.groups() if digits):
            self.found.setdefault("count", i)
        return self._suffix(i, counts.end())

    def _suffix(self, start: int, i: int) -> int:
        """Past a quantifier's lazy ``?`` or possessive ``+``, if any."""
        if self.text.startswith("+", i):
            self.found.setdefault("possessive", start)
            return i + 1
        return i + 1 if self.text.startswith("?", i) else i


def _is_backreference(text: str, i: int) -> bool:
    """At a backslash outside a class: ``\\1``..``\\99``, not a three-digit octal escape."""
    digits = text[i + 1 : i + 4]
    octal = len(digits) == 3 and set(digits) <= _OCTAL_DIGITS
    return digits[:1] in _GROUP_DIGITS and not octal


def _class_end(text: str, i: int) -> int:
    """Past the character class opening at `i` (a first ``]`` is a member)."""
    i += 1
    if text.startswith("^", i):
        i += 1
    if text.startswith("]", i):
        i += 1
    while i < len(text) and text[i] != "]":
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _comment_end(text: str, i: int) -> int:
    """Past the ``)`` that closes a ``(?#...)`` comment."""
    while i < len(text) and text[i] != ")":
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _too_many(digits: str) -> bool:
    significant = digits.lstrip("0")
    return len(significant) > len(str(_UNBOUNDED)) or int(significant or "0") >= _UNBOUNDED


def _cost(sub: Sequence[Any], found: dict[str, int]) -> int:
    """An upper bound on the states (and work) that building `sub` takes, computed without
    expanding anything; raises :class:`RegexError` at the first refused construct."""
    return sum(_node_cost(op, av, found) for op, av in sub)


def _node_cost(op: Any, av: Any, found: dict[str, int]) -> int:
    if op in _CHAR_OPS or op is _sre.AT:
        return 1 + (len(av) if op is _sre.IN else 0)
    if op is _sre.BRANCH:
        return 1 + sum(1 + _cost(alternative, found) for alternative in av[1])
    if op is _sre.SUBPATTERN:
        return 1 + _cost(av[3], found)
    if op in _REPEATS:
        low, high, item = av
        copies = low + 1 if high == _UNBOUNDED else high
        return 1 + copies * (1 + _cost(item, found))
    kind = _refused_kind(op, av)
    if kind is None:
        raise RegexError(f"unsupported regex construct {op}", 0)
    raise RegexError(_REFUSALS[kind], found.get(kind, 0))


def _refused_kind(op: Any, av: Any) -> str | None:
    if op is _sre.GROUPREF:
        return "backreference"
    if op is _sre.GROUPREF_EXISTS:
        return "conditional"
    if op is _sre.ASSERT or op is _sre.ASSERT_NOT:
        return "lookahead" if av[0] == 1 else "lookbehind"
    if op is _ATOMIC_GROUP:
        return "atomic"
    if op is _POSSESSIVE_REPEAT:
        return "possessive"
    return None


class _Nfa:
    """A Thompson NFA.  ``states[i]`` is ``(kind, arg, out)``: _CHAR (arg tests a character,
    then go to `out`), _FORK (arg: the tuple of next states), _ASSERT (arg: a predicate on
    (previous char, next char, next is the last char); go to `out` if it holds), _MATCH."""

    def __init__(self, states: list[tuple[int, Any, int]], start: int, needs_previous: bool):
        self.states = states
        self.start = start
        self.needs_previous = needs_previous  # do assertions look at the previous character?

    def step(
        self, kernel: frozenset[int], prev: str | None, cur: str | None, last: bool
    ) -> tuple[frozenset[int], bool, int]:
        """From the states in `kernel` at one position, between `prev` and `cur` (None:
        the start or the end of the name): the states after `cur`, whether the pattern
        matched here, and how many states the step visited (its cost)."""
        reached = set(kernel)
        pending = list(kernel)
        after: set[int] = set()
        matched = False
        while pending:
            kind, arg, out = self.states[pending.pop()]
            if kind == _CHAR:
                if cur is not None and arg(cur):
                    after.add(out)
            elif kind == _MATCH:
                matched = True
            else:
                successors = arg if kind == _FORK else (out,) if arg(prev, cur, last) else ()
                for state in successors:
                    if state not in reached:
                        reached.add(state)
                        pending.append(state)
        return frozenset(after), matched, len(reached)


class _Builder:
    """Parse tree -> :class:`_Nfa`, built backwards from the final _MATCH state."""

    def __init__(self) -> None:
        self.states: list[tuple[int, Any, int]] = [(_MATCH, None, 0)]
        self.tests: dict[tuple[str, int], Predicate] = {}
        self.span_left = _MAX_CLASS_SPAN
        self.needs_previous = False

    def build(self, tree: Any) -> _Nfa:
        start = self.sequence(tree, tree.state.flags, 0)
        return _Nfa(self.states, start, self.needs_previous)

    def add(self, kind: int, arg: Any, out: int = 0) -> int:
        self.states.append((kind, arg, out))
        return len(self.states) - 1

    def sequence(self, sub: Sequence[Any], flags: int, out: int) -> int:
        for op, av in reversed(sub):
            out = self.node(op, av, flags, out)
        return out

    def node(self, op: Any, av: Any, flags: int, out: int) -> int:
        if op is _sre.BRANCH:
            alternatives = tuple(self.sequence(alternative, flags, out) for alternative in av[1])
            return self.add(_FORK, alternatives)
        if op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            return self.sequence(sub, _combine_flags(flags, add_flags, del_flags), out)
        if op in _REPEATS:
            return self.repeat(*av, flags, out)
        if op is _sre.AT:
            return self.add(_ASSERT, self.assertion(av, flags), out)
        return self.add(_CHAR, self.char_test(op, av, flags), out)

    def repeat(self, low: int, high: int, item: Sequence[Any], flags: int, out: int) -> int:
        """``item{low,high}`` as `low` copies, then a loop or ``high - low`` nested options."""
        if high == _UNBOUNDED:
            start = self.add(_FORK, ())
            self.states[start] = (_FORK, (self.sequence(item, flags, start), out), 0)
        else:
            start = out
            for _ in range(high - low):
                start = self.add(_FORK, (self.sequence(item, flags, start), out))
        for _ in range(low):
            start = self.sequence(item, flags, start)
        return start

    def assertion(self, code: Any, flags: int) -> Assertion:
        multiline = flags & re.MULTILINE
        if code is _sre.AT_BEGINNING_STRING or (code is _sre.AT_BEGINNING and not multiline):
            return _at_start
        if code is _sre.AT_END_STRING:
            return _at_end
        if code is _sre.AT_END:
            return _at_line_end if multiline else _at_end_or_final_newline
        self.needs_previous = True
        if code is _sre.AT_BEGINNING:
            return _at_line_start
        word = _UNICODE_WORD if flags & re.UNICODE else _ASCII_WORD
        if code is _sre.AT_BOUNDARY:
            return functools.partial(_at_boundary, word)
        if code is _sre.AT_NON_BOUNDARY:
            return functools.partial(_at_non_boundary, word)
        raise RegexError(f"unsupported regex assertion {code}", 0)

    def char_test(self, op: Any, av: Any, flags: int) -> Predicate:
        """A one-character test, compiled by :mod:`re` with the flags that apply to it."""
        key = (_char_regex(op, av), flags & _CHAR_FLAGS)
        test = self.tests.get(key)
        if test is None:
            if op is _sre.IN:
                self.spend_span(av)
            test = self.tests[key] = re.compile(*key).fullmatch
        return test

    def spend_span(self, items: Sequence[tuple[Any, Any]]) -> None:
        """Charge a new class's ranges: :mod:`re` compiles a range in time proportional to its
        width (up to 65536 characters), so their total width bounds the compile time."""
        for op, av in items:
            if op is _sre.RANGE:
                self.span_left -= min(av[1] - av[0] + 1, 1 << 16)
        if self.span_left < 0:
            raise RegexError(_TOO_WIDE, 0)


def _combine_flags(flags: int, add_flags: int, del_flags: int) -> int:
    """The flags inside a ``(?flags-flags:...)`` group, as Python's compiler combines them."""
    if add_flags & _TYPE_FLAGS:
        flags &= ~_TYPE_FLAGS
    return (flags | add_flags) & ~del_flags


def _char_regex(op: Any, av: Any) -> str:
    """The text of a regex matching one character as parse-tree node (op, av) does."""
    if op is _sre.LITERAL:
        return _escape(av)
    if op is _sre.NOT_LITERAL:
        return f"[^{_escape(av)}]"
    if op is _sre.ANY:
        return "."
    return "[" + "".join(_class_item(item_op, item_av) for item_op, item_av in av) + "]"


def _class_item(op: Any, av: Any) -> str:
    if op is _sre.NEGATE:
        return "^"
    if op is _sre.LITERAL:
        return _escape(av)
    if op is _sre.RANGE:
        return f"{_escape(av[0])}-{_escape(av[1])}"
    if op is _sre.CATEGORY and av in _CATEGORIES:
        return _CATEGORIES[av]
    raise RegexError(f"unsupported character class item {op} {av}", 0)


def _escape(code: int) -> str:
    return f"\\U{code:08x}"


_ASCII_WORD = re.compile(r"\w", re.ASCII).fullmatch
_UNICODE_WORD = re.compile(r"\w").fullmatch
_NON_BOUNDARY_IN_EMPTY = re.fullmatch(r"\B", "") is not None  # False until Python 3.14


def _at_start(prev: str | None, cur: str | None, last: bool) -> bool:
    return prev is None


def _at_line_start(prev: str | None, cur: str | None, last: bool) -> bool:
    return prev is None or prev == "\n"


def _at_end(prev: str | None, cur: str | None, last: bool) -> bool:
    return cur is None


def _at_line_end(prev: str | None, cur: str | None, last: bool) -> bool:
    return cur is None or cur == "\n"


def _at_end_or_final_newline(prev: str | None, cur: str | None, last: bool) -> bool:
    return cur is None or (last and cur == "\n")


def _is_word(word: Predicate, char: str | None) -> bool:
    return char is not None and word(char) is not None


def _at_boundary(word: Predicate, prev: str | None, cur: str | None, last: bool) -> bool:
    return _is_word(word, prev) != _is_word(word, cur)


def _at_non_boundary(word: Predicate, prev: str | None, cur: str | None, last: bool) -> bool:
    if prev is None and cur is None:
        return _NON_BOUNDARY_IN_EMPTY
    return _is_word(word, prev) == _is_word(word, cur)


class _DState:
    """A set of NFA states met at some position, with the transitions found from it: by one
    character (or, at either end of a name, by its context) in ``steps``, by a whole
    segment of a name between dots in ``segments``."""

    __slots__ = ("dotted", "ends", "kernel", "segments", "steps")

    def __init__(self, kernel: frozenset[int]):
        self.kernel = kernel
        self.steps: dict[str | tuple[str | None, str, bool], _DState] = {}
        self.segments: dict[str, _DState] = {}  # by a segment
        self.dotted: dict[str, _DState] = {}  # by a dot, then a segment
        self.ends: dict[str | None, bool] = {}


class _Matcher:
    """The predicate: runs the NFA over a name, caching its state sets as a lazy DFA.

    Each character costs one dictionary lookup when cached, one :meth:`_Nfa.step` (at most
    every NFA state once) otherwise; between a name's first and last characters, a segment
    between dots met before costs one lookup whatever its length (the names of a model
    repeat their segments: ``layers``, ``12``, ``self_attn``).  The cache is dropped once it
    holds more than ``_CACHE_LIMIT`` states and transitions, so memory stays bounded.

    :meth:`select` matches many names under a :class:`Budget`.  Its prefilter keeps the
    semantics: a pattern that begins (ends) with literal characters outside any group can
    only match names that begin (end) with them.
    """

    def __init__(self, nfa: _Nfa, prefix: str = "", suffix: str = ""):
        self._nfa = nfa
        self.states = len(nfa.states)
        self.prefix = prefix
        self.suffix = suffix
        self._running = threading.local()  # the budget select() charges, per thread
        self._flush()

    def _flush(self) -> None:
        self._states: dict[frozenset[int], _DState] = {}
        self._cached = 0
        self._start = self._state(frozenset((self._nfa.start,)))

    def _state(self, kernel: frozenset[int]) -> _DState:
        state = self._states.get(kernel)
        if state is None:
            if self._cached > _CACHE_LIMIT:
                self._flush()
            state = self._states[kernel] = _DState(kernel)
            self._cached += 1 + len(kernel)
        return state

    def _advance(self, state: _DState, key: Any, prev: str | None, cur: str, last: bool) -> _DState:
        """The state after `cur` (its transition under `key`), found and cached if new."""
        after = state.steps.get(key)
        if after is None:
            kernel, _, visited = self._nfa.step(state.kernel, prev, cur, last)
            budget = getattr(self._running, "budget", None)
            if budget is not None:
                budget.spend(_MISS_STEPS + _VISIT_STEPS * visited)
            after = state.steps[key] = self._state(kernel)
            self._cached += 1
        return after

    def _run(self, state: _DState, text: str, cache: dict[str, _DState], key: str) -> _DState:
        """The state after the middle characters `text` (which no assertion looks past),
        found character by character and cached in `cache` under `key`."""
        after = state
        for cur in text:
            after = self._advance(after, cur, "", cur, False)
            if not after.kernel:
                break
        cache[key] = after
        self._cached += 1
        return after

    def __call__(self, name: str) -> bool:
        last = len(name) - 1
        if self._nfa.needs_previous or last < 2:
            return self._match_by_characters(name)
        # The first and last characters see the ends of the name; between them a character
        # alone decides a step, so the segments between dots are cached whole.
        state = self._advance(self._start, (None, name[0], False), None, name[0], False)
        first, *rest = name[1:last].split(".")
        if state.kernel:
            state = state.segments.get(first) or self._run(state, first, state.segments, first)
        for segment in rest:
            if not state.kernel:
                return False
            state = state.dotted.get(segment) or self._run(state, "." + segment, state.dotted, segment)
        if not state.kernel:
            return False
        state = self._advance(state, ("", name[last], True), "", name[last], True)
        return bool(state.kernel) and self._end(state, "")

    def _match_by_characters(self, name: str) -> bool:
        state = self._start
        prev: str | None = None
        last = len(name) - 1
        needs_previous = self._nfa.needs_previous
        for i, cur in enumerate(name):
            # Between the first and the last character, the character alone decides a step
            # unless assertions look at the previous one: the short key is three times faster.
            key = (prev, cur, i == last) if needs_previous or not 0 < i < last else cur
            state = self._advance(state, key, prev, cur, i == last)
            if not state.kernel:
                return False
            prev = cur if needs_previous else ""  # "": somewhere after the start
        return self._end(state, prev)

    def _end(self, state: _DState, prev: str | None) -> bool:
        matched = state.ends.get(prev)
        if matched is None:
            matched = state.ends[prev] = self._nfa.step(state.kernel, prev, None, False)[1]
        return matched

    def select(self, names: Sequence[str], budget: Budget) -> list[int]:
        """The positions of the names this pattern matches, charging `budget`: before
        running, a step for every name it will read and for every :data:`_CHARACTERS_PER_STEP`
        characters; while running, what every miss of the cache costs."""
        prefix, suffix = self.prefix, self.suffix
        if prefix or suffix:
            shortest = len(prefix) + len(suffix)
            candidates = [
                i for i, name in enumerate(names) if name.startswith(prefix) and name.endswith(suffix) and len(name) >= shortest
            ]
        else:
            candidates = range(len(names))
        budget.spend(len(candidates) + sum(len(names[i]) for i in candidates) // _CHARACTERS_PER_STEP)
        self._running.budget = budget
        try:
            return [i for i in candidates if self(names[i])]
        finally:
            self._running.budget = None
