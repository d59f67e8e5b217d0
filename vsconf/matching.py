"""Matching: which rule fills which tensor.  The result is a plain value that the
engine and ``vsconf plan`` both read.

A rule matches a tensor when every filter it has holds: ``match`` (any of its globs or
``re:`` regexes matches the name), ``op`` (a consumer of the tensor has that op type; a
bare name is an ONNX operator, other domains are written ``com.microsoft.Attention``)
and ``input`` (that same consumer reads the tensor as that formal input).  The first
matching rule wins.  Only float tensors are ever filled.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vsconf.errors import MatchError, did_you_mean
from vsconf.saferegex import RegexError, compile_pattern
from vsconf.spec import REGEX_PREFIX, Rule, Spec, pattern_problem

FILLABLE_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
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
    if rule.op:
        return any(
            c.qualified_op in rule.op and (not rule.input or c.input_name in rule.input)
            for c in tensor.consumers
        )
    return True


@dataclass(frozen=True)
class Matching:
    """For every float tensor, the index of the rule that fills it (None: no rule)."""

    rules: dict[str, int | None]
    warnings: tuple[str, ...] = field(default=())

    def rule_of(self, name: str) -> int | None:
        return self.rules.get(name)

    @property
    def unmatched(self) -> tuple[str, ...]:
        return tuple(name for name, rule in self.rules.items() if rule is None)


def match_tensors(spec: Spec, tensors: Sequence[TensorInfo]) -> Matching:
    """Assign rules to tensors; raises :class:`MatchError` listing every problem at once."""
    errors: list[str] = []
    warnings: list[str] = []
    where = f"{spec.source}: "
    floats = [t for t in tensors if t.is_float]
    for tensor in tensors:
        if tensor.is_float:
            continue
        for rule in spec.rules:
            if any(is_literal(p) and p == tensor.name for p in rule.match):
                errors.append(
                    f"{where}{rule.label}: tensor {tensor.name!r} is {tensor.dtype.name}; "
                    "vsconf only fills float tensors"
                )

    assigned: dict[str, int | None] = {}
    matched_by: dict[int, list[str]] = {rule.index: [] for rule in spec.rules}
    for tensor in floats:
        winner = None
        for rule in spec.rules:
            if rule_matches(rule, tensor):
                matched_by[rule.index].append(tensor.name)
                if winner is None:
                    winner = rule.index
        assigned[tensor.name] = winner

    names = [t.name for t in tensors]
    for rule in spec.rules:
        hits = matched_by[rule.index]
        if not hits:
            if rule.optional:
                continue
            errors.append(f"{where}{rule.label}: matches no tensor ({_describe_filters(rule)})" + _hint(rule, names, tensors))
        elif all(assigned[name] != rule.index for name in hits):
            earlier = sorted({assigned[name] for name in hits})
            warnings.append(
                f"{where}{rule.label}: never applies; every tensor it matches is taken by "
                + ", ".join(spec.rules[i].label for i in earlier)
            )

    unmatched = [name for name, rule in assigned.items() if rule is None]
    if spec.unmatched == "error" and unmatched:
        errors.append(
            f"{where}unmatched: error, and no rule matches {len(unmatched)} float tensor(s): "
            + ", ".join(unmatched)
        )
    if errors:
        raise MatchError("\n".join(errors))
    return Matching(rules=assigned, warnings=tuple(warnings))


def _describe_filters(rule: Rule) -> str:
    parts = []
    for key in ("match", "op", "input"):
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
