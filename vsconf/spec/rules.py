"""The spec once loaded: :class:`Spec`, its :class:`Rule` objects and the init each rule carries.

These are frozen values, made by :func:`vsconf.spec.parse_spec` (never by hand in normal use)
with every preset and default already expanded: a rule's init is one of
:class:`VarianceScalingInit`, :class:`ConstantInit`, :class:`KeepInit`, or a random init of
:mod:`vsconf.inits.random` (``NormalInit``, ``TruncatedNormalInit``, ``UniformInit``).  Each value's
``canonical()`` is the spec mapping it came from, in its explicit form; the canonical form of
a :class:`Spec` is itself a valid spec, and its SHA-256 identifies the spec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Union

from vsconf.errors import Problem
from vsconf.fans import Axes
from vsconf.inits.formula import FormulaInit
from vsconf.inits.matrix import DiracInit, IdentityInit, OrthogonalInit
from vsconf.inits.random import NormalInit, TruncatedNormalInit, UniformInit, written

# A ``match`` pattern starting with this is a regular expression; any other is a glob.
REGEX_PREFIX = "re:"


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
            "scale": written(self.scale),
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
        }
        if self.axes is not None:
            out.update(self.axes.config())
        return out


@dataclass(frozen=True)
class ConstantInit:
    value: Any  # a number, or a Param the planner computes per tensor

    def canonical(self) -> dict[str, Any]:
        return {"constant": written(self.value)}


@dataclass(frozen=True)
class SameAsInit:
    """The tensor holds exactly the values of the tensor ``name`` (a tie a file keeps twice)."""

    name: str

    def canonical(self) -> dict[str, Any]:
        return {"same_as": self.name}


@dataclass(frozen=True)
class KeepInit:
    def canonical(self) -> str:
        return "keep"


Init = Union[
    VarianceScalingInit, ConstantInit, KeepInit, NormalInit, TruncatedNormalInit, UniformInit, SameAsInit,
    OrthogonalInit, IdentityInit, DiracInit, FormulaInit,
]


@dataclass(frozen=True)
class Parts:
    """A tensor cut along ``axis`` into parts of ``sizes`` (or ``count`` equal ones), part
    ``k`` filled by ``inits[k]`` (one init: every part)."""

    axis: int
    inits: tuple[Init, ...]
    sizes: tuple[Any, ...] | None = None  # ints, or Params computed per tensor
    count: Any = None

    def init_of(self, part: int) -> Init:
        return self.inits[0] if len(self.inits) == 1 else self.inits[part]

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"axis": self.axis}
        if self.sizes is not None:
            out["sizes"] = [written(size) for size in self.sizes]
        else:
            out["count"] = written(self.count)
        out["inits"] = [init.canonical() for init in self.inits]
        return out


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
    # Rows (axis 0) set to zero after the fill; negative ones count from the end (ints or Params).
    zero_rows: tuple[Any, ...] = ()
    # The tensor cut along an axis, each part filled as its own tensor (None: whole).
    parts: Parts | None = None
    # Where each of `match` is written: (path, line, column), e.g. ("rules[2].match[1]", 14, 12).
    match_at: tuple[tuple[str, int, int], ...] = dataclasses.field(default=(), compare=False)
    # `when`: the expression's text (None: always); `active`: its value with the spec's vars.
    when: str | bool | None = None
    active: bool = True
    # The expressions the rule writes: (where, text, value), value None when per tensor.
    shown: tuple[tuple[str, str, Any], ...] = dataclasses.field(default=(), compare=False)

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
        if self.zero_rows:
            out["zero_rows"] = [written(row) for row in self.zero_rows]
        if self.parts is not None:
            out["parts"] = self.parts.canonical()
        if self.when is not None:
            out["when"] = self.when
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
        stream: The version of the random streams the spec pins (1 or 2), or None for the default (1).
        vars: The names the spec's expressions read, with the caller's overrides applied.
        base_shapes, base_model: μP's base shapes (a .bsh file, or a model), as written.

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
    stream: int | None = None  # the stream version the spec pins; None: the default (1)
    # The names expressions read, after --vars and --var: (name, number) in the spec's order.
    vars: tuple[tuple[str, int | float], ...] = ()
    # μP: where the base shapes come from (paths as written, relative to the spec's folder).
    base_shapes: str | None = None
    base_model: str | None = None

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
        if self.vars:  # absent when none, so that older specs keep their digest
            out["vars"] = dict(self.vars)
        for key in ("base_shapes", "base_model"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
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
