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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vsconf.errors import MatchError, Problem, did_you_mean, rule_problem
from vsconf.saferegex import RegexError, compile_pattern
from vsconf.spec import REGEX_PREFIX, KeepInit, Rule, Spec, pattern_problem

FILLABLE_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
# The roles a tensor can have (SPEC 3a), and those rules leave alone unless asked.
ROLES = ("weight", "bias", "embedding", "norm_scale", "norm_bias", "running_stat", "constant", "other")
PROTECTED_ROLES = frozenset({"running_stat", "constant"})
ANY_ROLE = "any"
_ROLE_WORDS = {"running_stat": "running statistics", "constant": "constants"}
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class TensorInfo:
    """What matching and the engine know of a tensor: never its values."""

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
        return self.dtype.name in FILLABLE_DTYPES


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


def match_tensors(spec: Spec, tensors: Sequence[TensorInfo]) -> Matching:
    """Assign rules to tensors; raises :class:`MatchError` listing every problem at once."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    floats = [t for t in tensors if t.is_float]
    for tensor in tensors:
        if tensor.is_float:
            continue
        for rule in spec.rules:
            if any(is_literal(p) and p == tensor.name for p in rule.match):
                errors.append(
                    rule_problem(
                        spec.source, rule, f"it is {tensor.dtype.name}; vsconf only fills float tensors", tensor=tensor.name
                    )
                )

    assigned: dict[str, int | None] = {}
    matched_by: dict[int, list[str]] = {rule.index: [] for rule in spec.rules}
    protected_by: dict[int, list[TensorInfo]] = {rule.index: [] for rule in spec.rules}
    kept: dict[str, tuple[int, str]] = {}
    for tensor in floats:
        winner = None
        for rule in spec.rules:
            if not rule_matches(rule, tensor):
                continue
            reason = protection(rule, tensor)
            if reason is not None:
                protected_by[rule.index].append(tensor)
                if winner is None:
                    kept.setdefault(tensor.name, (rule.index, reason))
                continue
            matched_by[rule.index].append(tensor.name)
            if winner is None:
                winner = rule.index
        assigned[tensor.name] = winner
        if winner is not None:
            kept.pop(tensor.name, None)

    names = [t.name for t in tensors]
    for rule in spec.rules:
        hits = matched_by[rule.index]
        if not hits:
            if rule.optional:
                continue
            protected = protected_by[rule.index]
            if protected:  # it matched something: not a typo, but it fills nothing
                listed = ", ".join(f"{t.name!r} ({t.role})" for t in protected[:5]) + (", ..." if len(protected) > 5 else "")
                roles = sorted({t.role for t in protected})
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
            errors.append(
                rule_problem(spec.source, rule, f"matches no tensor ({_describe_filters(rule)})" + _hint(rule, names, tensors))
            )
        elif all(assigned[name] != rule.index for name in hits):
            earlier = sorted({assigned[name] for name in hits})
            warnings.append(
                rule_problem(
                    spec.source,
                    rule,
                    "never applies; every tensor it matches is taken by " + ", ".join(spec.rules[i].label for i in earlier),
                )
            )

    unmatched = [name for name, rule in assigned.items() if rule is None and name not in kept]
    if spec.unmatched == "error" and unmatched:
        errors.append(
            Problem(
                spec.source, 0, 0, "unmatched",
                f"error, and no rule matches {len(unmatched)} float tensor(s): " + ", ".join(unmatched),
            )
        )
    if errors:
        raise MatchError(errors)
    return Matching(rules=assigned, warnings=tuple(warnings), kept=kept)


def _describe_filters(rule: Rule) -> str:
    parts = []
    for key in ("match", "op", "input", "role"):
        values = getattr(rule, key)
        if values:
            parts.append(f"{key} " + ", ".join(repr(v) for v in values))
    return "; ".join(parts)


def _hint(rule: Rule, names: list[str], tensors: Sequence[TensorInfo]) -> str:
    if rule.op and not any(t.consumers for t in tensors):
        return "; `op` and `input` filters only apply to ONNX models"
    for pattern in rule.match:
        if is_literal(pattern):
            hint = did_you_mean(pattern, names)
            if hint:
                return hint
    return "; mark it `optional: true` if that is expected"
