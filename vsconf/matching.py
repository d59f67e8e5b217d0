"""Matching: which rule fills which tensor.  The result is a plain value that the
engine and ``vsconf plan`` both read.

A rule matches a tensor when every filter it has holds: ``match`` (any of its globs or
``re:`` regexes matches the name), ``op`` (a consumer of the tensor has that op type; a
bare name is an ONNX operator, other domains are written ``com.microsoft.Attention``)
``input`` (that same consumer reads the tensor as that formal input) and ``role`` (what
the tensor is: see :data:`ROLES`).  The first matching rule wins.  Only float tensors are
ever filled.

Safe defaults: running statistics and constants (exporter scalars, masks, Constant-node
values, tensors that feed no parameter input) are *protected*.  A rule fills one only
when it names the tensor literally, selects it through an explicit formal ``input``, or
names its role in ``role`` (``role: any`` takes every role).  A protected tensor that a
rule would otherwise take is kept, and the plan says why.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vsconf.errors import MatchError, Problem, did_you_mean, rule_problem
from vsconf.saferegex import Budget, BudgetExceeded, RegexError, compile_pattern
from vsconf.spec import REGEX_PREFIX, KeepInit, Rule, Spec, pattern_problem

FILLABLE_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
# The roles a tensor can have (SPEC 3a), and those rules leave alone unless asked.
ROLES = ("weight", "bias", "embedding", "norm_scale", "norm_bias", "running_stat", "constant", "other")
PROTECTED_ROLES = frozenset({"running_stat", "constant"})
ANY_ROLE = "any"
_ROLE_WORDS = {"running_stat": "running statistics", "constant": "constants"}
_GLOB_CHARS = frozenset("*?[")
_GLOB_END = re.compile(r"[*?\[\]]")  # where a glob's literal prefix ends
# Costs in the steps of :class:`~vsconf.saferegex.Budget` (about 0.1 us of work each, as
# benchmarks/matchcost.py measures them): checking a glob's literal ends costs a step per
# _GLOB_SCANS_PER_STEP names, running it on a name _GLOB_NAME_STEPS (~1 us, C and a call),
# and a set operation of the rules' filters a step per _SET_ELEMENTS_PER_STEP elements.
_GLOB_SCANS_PER_STEP = 4
_GLOB_NAME_STEPS = 8
_GLOB_CHARACTERS_PER_STEP = 64
_SET_ELEMENTS_PER_STEP = 5
# "Did you mean" looks among at most this many names in all (difflib: ~3 us a name).
_HINT_NAMES = 200_000


@dataclass(frozen=True, slots=True)
class Consumer:
    """A node that reads a tensor (after looking through Identity, Cast, Transpose...)."""

    op_type: str
    input_name: str
    node: str = ""
    domain: str = ""

    @property
    def qualified_op(self) -> str:
        """``Conv``, or ``com.microsoft.Attention`` outside the default domain."""
        return f"{self.domain}.{self.op_type}" if self.domain not in ("", "ai.onnx") else self.op_type


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """What matching and the engine know of a tensor: never its values.  (Slots: a model
    may hold a million of them.)"""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    consumers: tuple[Consumer, ...] = ()
    # What the tensor is (SPEC 3a): weight, bias, embedding, norm_scale, norm_bias,
    # running_stat, constant or other; "" when the adapter does not say.
    role: str = ""
    role_from: str = ""  # the consumer (or the convention) that decided it
    role_guessed: bool = False  # read from the name alone (state dicts)

    @property
    def is_float(self) -> bool:
        """The dtypes vsconf fills; float8 and other exotic floats pass through untouched."""
        return dtype_name(self.dtype) in FILLABLE_DTYPES


def dtype_name(dtype: np.dtype) -> str:
    """``dtype.name``, which NumPy computes afresh each time (microseconds): once per dtype."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name
    return name


_DTYPE_NAMES: dict[np.dtype, str] = {}


@functools.lru_cache(maxsize=4096)
def name_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate on names, linear in the name's length whatever the pattern.

    ``re:`` regexes must match the whole name and run on :mod:`vsconf.saferegex` (never
    backtracking); a refused one (only a hand-made :class:`Spec` can hold it) raises
    :class:`MatchError`.  Globs use ``fnmatchcase``, which makes each star an atomic group
    (a lookahead and a backreference before Python 3.11): it does not backtrack either.
    """
    if pattern.startswith(REGEX_PREFIX):
        try:
            return compile_pattern(pattern[len(REGEX_PREFIX) :])
        except RegexError:
            raise MatchError(f"{pattern!r}: {pattern_problem(pattern)}") from None
    if not _GLOB_CHARS & set(pattern):
        return lambda name: name == pattern
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def is_literal(pattern: str) -> bool:
    """True for a pattern that names exactly one tensor (no glob characters, no regex)."""
    return not pattern.startswith(REGEX_PREFIX) and not _GLOB_CHARS & set(pattern)


def rule_matches(rule: Rule, tensor: TensorInfo) -> bool:
    if rule.match and not any(name_matcher(p)(tensor.name) for p in rule.match):
        return False
    if rule.role and ANY_ROLE not in rule.role and tensor.role not in rule.role:
        return False
    if rule.op:
        return any(
            c.qualified_op in rule.op and (not rule.input or c.input_name in rule.input)
            for c in tensor.consumers
        )
    return True


def protection(rule: Rule, tensor: TensorInfo) -> str | None:
    """Why ``rule`` may not fill ``tensor`` although it matches it (safe defaults), or None."""
    if tensor.role not in PROTECTED_ROLES or isinstance(rule.init, KeepInit):
        return None
    if any(is_literal(p) and p == tensor.name for p in rule.match):
        return None
    if rule.input or ANY_ROLE in rule.role or tensor.role in rule.role:
        return None
    how = "glob/regex" if rule.match else "op" if rule.op else "role"
    seen = f"{tensor.role} ({tensor.role_from})" if tensor.role_from else tensor.role
    return (
        f"{seen}: {rule.label} selects by {how}, and such rules do not fill {_ROLE_WORDS[tensor.role]}; "
        f"name the tensor, or add `role: {tensor.role}` (or `role: any`) to the rule"
    )


@dataclass(frozen=True)
class Matching:
    """For every float tensor, the index of the rule that fills it (None: no rule);
    ``warnings``: rules that fill nothing or never apply, as :class:`~vsconf.errors.Problem`
    records that name the rule; ``kept``: protected tensors a rule matched but may not fill,
    with the reason."""

    rules: dict[str, int | None]
    warnings: tuple[Problem, ...] = field(default=())
    kept: dict[str, tuple[int, str]] = field(default_factory=dict)

    def rule_of(self, name: str) -> int | None:
        return self.rules.get(name)

    @property
    def unmatched(self) -> tuple[str, ...]:
        return tuple(name for name, rule in self.rules.items() if rule is None)


class _Selection:
    """The float tensors indexed once by name, role and consumer, so that each rule's
    filters are set operations (in C) and each pattern reads every name once, all under
    one :class:`~vsconf.saferegex.Budget`."""

    def __init__(self, floats: Sequence[TensorInfo], budget: Budget):
        self.floats = floats
        self.names = [t.name for t in floats]
        self.budget = budget
        self.everything = frozenset(range(len(floats)))
        self.first: dict[str, int] = {}  # a name's position; a name given twice is also in `repeated`
        self.repeated: dict[str, list[int]] = {}
        self.roles = frozenset(t.role for t in floats)
        self._by_role: dict[str, frozenset[int]] = {}  # made when a rule asks
        self.by_op: dict[str, set[int]] = {}
        self.by_op_input: dict[tuple[str, str], set[int]] = {}
        for i, tensor in enumerate(floats):
            if self.first.setdefault(tensor.name, i) != i:
                self.repeated.setdefault(tensor.name, [self.first[tensor.name]]).append(i)
            for c in tensor.consumers:
                self.by_op.setdefault(c.qualified_op, set()).add(i)
                self.by_op_input.setdefault((c.qualified_op, c.input_name), set()).add(i)
        self._patterns: dict[str, frozenset[int]] = {}

    def positions(self, name: str) -> Iterable[int]:
        if name in self.repeated:
            return self.repeated[name]
        position = self.first.get(name)
        return () if position is None else (position,)

    def by_role(self, role: str) -> frozenset[int]:
        found = self._by_role.get(role)
        if found is None:
            self.budget.spend(1 + len(self.floats) // _SET_ELEMENTS_PER_STEP)
            found = self._by_role[role] = frozenset(i for i, t in enumerate(self.floats) if t.role == role)
        return found

    def union(self, sets: Iterable[Iterable[int]]) -> frozenset[int]:
        sets = list(sets)
        if len(sets) == 1 and isinstance(sets[0], frozenset):
            return sets[0]
        self.spend_on(sets)
        return frozenset().union(*sets)

    def spend_on(self, sets: Iterable[Iterable[int]]) -> None:
        self.budget.spend(1 + sum(len(s) for s in sets) // _SET_ELEMENTS_PER_STEP)  # type: ignore[arg-type]

    def pattern(self, pattern: str) -> frozenset[int]:
        """The positions of the names ``pattern`` matches (each pattern runs once)."""
        found = self._patterns.get(pattern)
        if found is None:
            found = self._patterns[pattern] = frozenset(self._select(pattern))
        return found

    def _select(self, pattern: str) -> Iterable[int]:
        if is_literal(pattern):
            return self.positions(pattern)
        if pattern.startswith(REGEX_PREFIX):
            matcher = name_matcher(pattern)
            return matcher.select(self.names, self.budget)  # type: ignore[attr-defined]
        if not set(pattern) - {"*"}:
            return self.everything
        # A glob's literal ends are necessary: check them first, at C speed.
        prefix = _GLOB_END.split(pattern, 1)[0]
        suffix = _GLOB_END.split(pattern)[-1]
        shortest = len(prefix) + len(suffix)
        names = self.names
        candidates = [
            i for i, name in enumerate(names) if name.startswith(prefix) and name.endswith(suffix) and len(name) >= shortest
        ]
        self.budget.spend(
            len(names) // _GLOB_SCANS_PER_STEP
            + len(candidates) * _GLOB_NAME_STEPS
            + sum(len(names[i]) for i in candidates) // _GLOB_CHARACTERS_PER_STEP
        )
        matches = name_matcher(pattern)
        return [i for i in candidates if matches(names[i])]

    def hits(self, rule: Rule) -> frozenset[int]:
        """The positions of the tensors ``rule`` matches (protected ones included)."""
        found = self.everything
        if rule.match:
            found = self.union(self.pattern(p) for p in rule.match)
        if rule.role and ANY_ROLE not in rule.role:
            found = self.intersect(found, self.union(self.by_role(r) for r in rule.role if r in self.roles))
        if rule.op:
            if rule.input:
                by_op = self.union(self.by_op_input.get((op, i), ()) for op in rule.op for i in rule.input)
            else:
                by_op = self.union(self.by_op.get(op, ()) for op in rule.op)
            found = self.intersect(found, by_op)
        return found

    def intersect(self, a: frozenset[int], b: frozenset[int]) -> frozenset[int]:
        self.spend_on([min(a, b, key=len)])
        return a & b

    def protected(self, rule: Rule, hits: frozenset[int]) -> frozenset[int]:
        """Those of ``hits`` the safe defaults keep from ``rule`` (see :func:`protection`)."""
        if isinstance(rule.init, KeepInit) or rule.input or ANY_ROLE in rule.role:
            return frozenset()
        roles = [r for r in PROTECTED_ROLES if r not in rule.role and r in self.roles]
        if not roles:
            return frozenset()
        named = self.union(self.positions(p) for p in rule.match if is_literal(p))
        return self.intersect(hits, self.union(self.by_role(r) for r in roles)) - named


def match_tensors(
    spec: Spec, tensors: Sequence[TensorInfo], budget: Budget | None = None, aliases: Mapping[str, str] | None = None,
) -> Matching:
    """Assign rules to tensors; raises :class:`MatchError` listing every problem at once.

    ``aliases``: later names of tied tensors (name -> the first name, under which the tensor
    is matched and filled); a rule naming one is told so.

    The work is linear in the tensors for each rule, and bounded: every pattern reads every
    name once, each rule's filters are set operations, and all of it together may take at
    most ``budget`` (:data:`~vsconf.saferegex.MATCH_STEPS`, about a second); past it the
    error names the rule, at its ``match`` where it has one.
    """
    errors: list[Problem] = []
    warnings: list[Problem] = []
    literal_rules: dict[str, list[Rule]] = {}  # a name -> the rules naming it, in order
    # A rule whose `when` is false is left out: it matches nothing, without an error.
    active = [rule for rule in spec.rules if rule.active]
    for rule in active:
        for pattern in dict.fromkeys(p for p in rule.match if is_literal(p)):
            literal_rules.setdefault(pattern, []).append(rule)
    floats = []
    for tensor in tensors:
        if tensor.is_float:
            floats.append(tensor)
            continue
        for rule in literal_rules.get(tensor.name, ()):
            errors.append(
                rule_problem(spec.source, rule, f"it is {tensor.dtype.name}; vsconf only fills float tensors", tensor=tensor.name)
            )

    selection = _Selection(floats, budget or Budget())
    has_consumers = any(t.consumers for t in tensors)
    winner: list[int | None] = [None] * len(floats)
    left = set(range(len(floats)))  # positions no rule has filled yet
    kept: dict[int, tuple[int, str]] = {}
    hint_names = _HINT_NAMES
    for rule in active:
        try:
            hits = selection.hits(rule)
            protected = selection.protected(rule, hits)
            fills = hits - protected if protected else hits
            won = fills & left
            selection.spend_on([hits, protected, won])
        except BudgetExceeded as exc:
            errors.append(_over_budget(spec, rule, exc.steps, len(floats)))
            raise MatchError(errors) from None
        for i in won:
            winner[i] = rule.index
        left -= won
        for i in sorted(i for i in protected & left if i not in kept):
            kept[i] = (rule.index, protection(rule, floats[i]) or "")
        if not fills:
            if rule.optional:
                continue
            if protected:  # it matched something: not a typo, but it fills nothing
                shown = [floats[i] for i in sorted(protected)[:6]]
                listed = ", ".join(f"{t.name!r} ({t.role})" for t in shown[:5]) + (", ..." if len(shown) > 5 else "")
                roles = sorted({floats[i].role for i in protected})
                warnings.append(
                    rule_problem(
                        spec.source,
                        rule,
                        "fills nothing; it matches only tensors that rules selecting by glob, regex or op do not "
                        f"fill: {listed}; add `role: {roles[0] if len(roles) == 1 else '[' + ', '.join(roles) + ']'}` "
                        "(or `role: any`) to fill them",
                    )
                )
                continue
            hint, hint_names = _hint(rule, tensors, has_consumers, hint_names, aliases or {})
            errors.append(rule_problem(spec.source, rule, f"matches no tensor ({_describe_filters(rule)})" + hint))
        elif not won:
            earlier = sorted({winner[i] for i in fills})  # type: ignore[type-var]
            warnings.append(
                rule_problem(
                    spec.source,
                    rule,
                    "never applies; every tensor it matches is taken by " + ", ".join(spec.rules[i].label for i in earlier),
                )
            )

    assigned = {tensor.name: winner[i] for i, tensor in enumerate(floats)}
    kept_names = {floats[i].name: why for i, why in kept.items() if winner[i] is None}
    unmatched = [name for name, rule in assigned.items() if rule is None and name not in kept_names]
    if spec.unmatched == "error" and unmatched:
        errors.append(
            Problem(
                spec.source, 0, 0, "unmatched",
                f"error, and no rule matches {len(unmatched)} float tensor(s): " + ", ".join(unmatched),
            )
        )
    if errors:
        raise MatchError(errors)
    return Matching(rules=assigned, warnings=tuple(warnings), kept=kept_names)


def _over_budget(spec: Spec, rule: Rule, steps: int, count: int) -> Problem:
    """Matching ran out of its budget at ``rule``: a problem at its ``match``, else the rule."""
    budget = f"takes more than {steps} steps (the budget, about a second of work)"
    if not rule.match:
        message = f"matching the spec's rules, up to this one, against the model's {count} tensors {budget}; use fewer rules"
        return rule_problem(spec.source, rule, message)
    pattern = next((p for p in rule.match if not is_literal(p)), rule.match[0])
    position = rule.match_at[rule.match.index(pattern)] if rule.match_at else (f"rules[{rule.index}].match", rule.line, 0)
    path, line, column = position
    message = (
        f"{pattern!r}: matching the spec's patterns, up to this one, against the model's {count} tensor names {budget}; "
        "narrow the pattern, or name the tensors with globs or literally"
    )
    return Problem(spec.source, line, column, path, message, rule=rule.index)


def _describe_filters(rule: Rule) -> str:
    parts = []
    for key in ("match", "op", "input", "role"):
        values = getattr(rule, key)
        if values:
            parts.append(f"{key} " + ", ".join(repr(v) for v in values))
    return "; ".join(parts)


def _hint(
    rule: Rule, tensors: Sequence[TensorInfo], has_consumers: bool, names_left: int, aliases: Mapping[str, str],
) -> tuple[str, int]:
    """What to say after "matches no tensor", and how many names "did you mean" may still
    look among (it compares each, so it stops after :data:`_HINT_NAMES` in all)."""
    if rule.op and not has_consumers:
        return "; `op` and `input` filters only apply to ONNX models", names_left
    for pattern in rule.match:
        if pattern in aliases:
            first = aliases[pattern]
            return f"; {pattern!r} is tied to {first!r}, one tensor filled once under that name: match {first!r}", names_left
    for pattern in rule.match:
        if is_literal(pattern) and names_left >= len(tensors):
            names_left -= len(tensors)
            hint = did_you_mean(pattern, [t.name for t in tensors])
            if hint:
                return hint, names_left
    return "; mark it `optional: true` if that is expected", names_left
