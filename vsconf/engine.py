"""The engine: (tensor facts, normalised spec, fan hints) -> plan -> arrays.

Pure: no file formats here.  Adapters hand in :class:`~vsconf.matching.TensorInfo`
(name, shape, dtype, consumers) and optional :class:`FanHint`s, and write out what
:func:`generate` returns.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vsconf import streams
from vsconf.errors import MatchError, Problem, rule_problem
from vsconf.fans import Axes, axes_fans, compute_fans, scaled_variance
from vsconf.initializers import sampling
from vsconf.inits import matrix
from vsconf.inits.formula import FormulaInit, check_formula
from vsconf.inits.matrix import DiracInit, IdentityInit, OrthogonalInit
from vsconf.inits.random import NormalInit, TruncatedNormalInit, UniformInit
from vsconf.matching import TensorInfo, dtype_name, match_tensors
from vsconf.spec import ConstantInit, KeepInit, Rule, SameAsInit, Spec, VarianceScalingInit
from vsconf.binding import Binder
from vsconf.spec.expressions import ExprError, Param


@dataclass(frozen=True, slots=True)
class FanHint:
    """What an adapter knows about a tensor's fans beyond its shape.

    ``axes``: the roles of the stored tensor's axes, read from its consumer (``source``
    says which, e.g. ``"Conv W"``).  ``weight``: the weight tensor of the node that reads
    this one (for ``fans_from: weight``); ``weights``: each consumer's (label, weight) when
    there are several.  ``conflict``: why the consumers disagree on fans;
    ``role_conflict``: why they disagree on what the tensor is.  ``weight_expected``: where
    the format looks for a weight that is not there (a state dict's sibling ``.weight``),
    for the message of ``fans_from: weight``.
    """

    axes: Axes | None = None
    source: str = ""
    weight: str | None = None
    conflict: str | None = None
    weights: tuple[tuple[str, str], ...] = ()
    role_conflict: str | None = None
    weight_expected: str | None = None


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """What happens to one tensor, and why: one row of ``vsconf plan``.

    Args:
        name: The tensor's name.
        shape: Its shape.
        dtype: Its dtype's name.
        action: ``"fill"`` (VarianceScaling), ``"constant"``, ``"keep"`` (a rule says so,
            or a safe default), ``"unmatched"`` (no rule matches) or ``"skip"`` (not float).
        rule: The rule that decided, as messages name it: ``rules[1] (line 7)``.
        init: The rule's init in canonical form (a VarianceScaling mapping,
            ``{"constant": x}`` or ``"keep"``).
        seed: The effective seed of a filled tensor.
        fan_in: The fans a filled tensor's variance came from, and ``fans_from`` which
            rule gave them (``tf``, ``torch``, ``axes``, a consumer such as
            ``Conv W (/conv1/Conv)``, or ``weight NAME (...)``).
        std: The samples' standard deviation (normal distributions), or ``limit``, the
            bound of a uniform one; ``value`` for a constant.
        The other fields (``distribution``, ``variance``, ``consumers``, roles...) say the
        rest of what ``plan --format json`` shows.

    Raises:
        Nothing: plans are made by :func:`vsconf.plan`, which raises.

    Example:
        >>> import vsconf
        >>> entry = vsconf.plan("model.npz", "init.yaml").entry("fc.weight")
        >>> entry.action, entry.rule, entry.fan_in, entry.fan_out, entry.fans_from, entry.std
        ('fill', 'rules[1] (line 7)', 8, 4, 'torch', 0.5)
        >>> entry.changes
        True
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    # "fill" (VarianceScaling), "constant", "keep" (a rule says so), "unmatched", or "skip" (not float)
    action: str
    rule: str | None = None
    init: Any = None  # the init's canonical form
    seed: int | None = None
    stream: int | None = None  # the stream version that draws a filled tensor
    fan_in: int | None = None
    fan_out: int | None = None
    fans_from: str | None = None  # which rule gave the fans: tf, torch, axes, a consumer, a weight
    std: float | None = None
    limit: float | None = None
    value: float | None = None
    distribution: str | None = None  # the sampling rule: truncated_normal, untruncated_normal, uniform
    variance: float | None = None
    param: float | None = None  # the draw's scale: the (underlying) normal's std, or the uniform's half-width
    mean: float | None = None  # added to every draw: a normal's mean, a uniform's centre (None: 0)
    bounds: tuple[float, float] | None = None  # a truncated normal's cut, in its std (None: VarianceScaling's +-2)
    zero_rows: tuple[int, ...] = ()  # rows (axis 0, from 0) set to zero after the fill
    same_as: str | None = None  # the tensor whose values this one holds (a `same_as` init)
    drawn_as: str | None = None  # the name whose stream draws the values, when not this one's
    consumers: tuple[str, ...] = ()
    role: str = ""  # what the tensor is (SPEC 3a), "" when the adapter does not say
    role_from: str = ""  # the consumer or naming convention that decided it
    role_guessed: bool = False  # read from names alone (state dicts)
    reason: str | None = None  # why a tensor a rule matched is kept (safe defaults)
    untied_from: str | None = None  # the shared tensor this one is a consumer's copy of
    # The rule's expressions for this tensor: (where in the rule, text, value).
    expressions: tuple[tuple[str, str, Any], ...] = ()
    gain: float | None = None  # orthogonal, identity: the factor
    groups: int | None = None  # dirac: the groups of out-channels
    layout: str | None = None  # orthogonal: how the tensor is seen as a matrix (torch or tf)
    formula: str | None = None  # a computed tensor's expression
    names: tuple[tuple[str, Any], ...] = ()  # the names the formula reads besides its indices
    parts: tuple[PlanEntry, ...] = ()  # `parts`: each part's own entry, along `parts_axis`
    parts_axis: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "action": self.action,
            "rule": self.rule,
            "init": self.init,
            "seed": self.seed,
            "fan_in": self.fan_in,
            "fan_out": self.fan_out,
            "fans_from": self.fans_from,
        }
        if self.limit is not None:
            out["limit"] = self.limit
        else:
            out["std"] = self.std
        if self.value is not None:
            out["value"] = self.value
        if self.mean is not None:
            out["mean"] = self.mean
        if self.bounds is not None:  # an open side is null, not JSON's missing Infinity
            out["bounds"] = [None if math.isinf(bound) else bound for bound in self.bounds]
        if self.zero_rows:
            out["zero_rows"] = list(self.zero_rows)
        if self.same_as is not None:
            out["same_as"] = self.same_as
        out["consumers"] = list(self.consumers)
        out["role"] = self.role or None
        out["role_from"] = self.role_from or None
        out["role_guessed"] = self.role_guessed
        if self.reason is not None:
            out["reason"] = self.reason
        if self.untied_from is not None:
            out["untied_from"] = self.untied_from
        if self.expressions:
            out["expressions"] = [{"at": at, "text": text, "value": value} for at, text, value in self.expressions]
        for key in ("gain", "groups", "layout", "formula"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.parts:
            out["parts_axis"] = self.parts_axis
            out["parts"] = [part.as_dict() for part in self.parts]
        return out

    @property
    def changes(self) -> bool:
        return self.action in ("fill", "constant")


@dataclass(frozen=True)
class Plan:
    """Which rule fills which tensor, with fans and spread: what :func:`vsconf.plan` returns.

    Iterating gives the :class:`PlanEntry` of every tensor in the model's order.

    Args:
        entries: One entry per tensor.
        spec_sha256: The SHA-256 of the spec's canonical form (recorded in outputs and locks).
        seed: The effective global seed.
        warnings: What is valid but suspicious, as :class:`~vsconf.Problem` records: the
            spec's own warnings, rules that fill nothing or never apply, ``layout: auto``
            reading a state dict's shapes with the tf rule.  ``problem.format("warning")``
            is the line the command line prints.
        untied: Shared tensors given a copy per consumer: name -> the copies' names.
        stream: The version of the random streams that draws the filled tensors.
        aliases: Names that are another tensor (tied parameters, held and drawn once):
            name -> the tensor's name.
        vars: The numbers the spec's expressions read, by name.

    Raises:
        KeyError: :meth:`entry` of a name the plan does not hold.

    Example:
        >>> import vsconf
        >>> plan = vsconf.plan("model.npz", "init.yaml")
        >>> [(entry.name, entry.action) for entry in plan]
        [('fc.weight', 'fill'), ('fc.bias', 'constant'), ('steps', 'skip')]
        >>> plan.seed, len(plan), plan.entry("fc.bias").value
        (7, 3, 0.0)
    """

    entries: tuple[PlanEntry, ...]
    spec_sha256: str
    seed: int
    warnings: tuple[Problem, ...] = field(default=())
    # Shared tensors given one copy per consumer (--untie, `untie: conflicts`): name -> copies.
    untied: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    stream: int = streams.DEFAULT_STREAM  # the version of the random streams that draws the fills
    aliases: Mapping[str, str] = field(default_factory=dict)
    # The vars the spec's expressions read (after --vars and --var): the lock records them.
    vars: Mapping[str, int | float] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @functools.cached_property
    def _by_name(self) -> dict[str, PlanEntry]:
        return {entry.name: entry for entry in self.entries}

    def entry(self, name: str) -> PlanEntry:
        return self._by_name[name]

    def as_list(self) -> list[dict[str, Any]]:
        return [entry.as_dict() for entry in self.entries]

    def drawn_by(self, stream: int) -> Plan:
        """This plan with its fills drawn by stream version ``stream`` (verifying what an
        older vsconf made); nothing else changes, the spec's digest included."""
        entries = tuple(dataclasses.replace(e, stream=stream) if e.stream is not None else e for e in self.entries)
        return dataclasses.replace(self, entries=entries, stream=stream)


def consumer_labels(tensor: TensorInfo) -> tuple[str, ...]:
    if not tensor.consumers:
        return ()
    return tuple(f"{c.qualified_op}.{c.input_name}" + (f" ({c.node})" if c.node else "") for c in tensor.consumers)


class _Planner:
    def __init__(
        self, spec: Spec, tensors: Sequence[TensorInfo], hints: Mapping[str, FanHint], target: str,
        base_shapes: Mapping[str, tuple[int, ...]] | None = None,
    ):
        self.spec = spec
        self.by_name = {t.name: t for t in tensors}
        self.hints = hints
        self.target = target
        self.errors: list[Problem] = []
        self.auto_tf_rules: list[Rule] = []
        self.ties: dict[str, Rule] = {}  # tensors a `same_as` init fills, and their rules
        self._rule_words: dict[int, tuple[str, Any]] = {}
        self.part_of: dict[str, str] = {}  # NAME[part k] -> NAME
        self.binder = Binder(spec, self.by_name, self.part_of, base_shapes, self.quiet_fans, self.errors)

    def layout_fans(self, tensor: TensorInfo, rule: Rule) -> tuple[int, int, str]:
        layout = self.spec.layout
        if layout in ("tf", "torch"):
            return (*compute_fans(tensor.shape, layout), layout)
        hint = self.hint(tensor.name)
        if hint is not None and hint.conflict:
            self.errors.append(
                rule_problem(self.spec.source, rule, f"{hint.conflict}; give the rule explicit `axes`", tensor=tensor.name)
            )
            return (*compute_fans(tensor.shape, "tf"), "tf")
        fan_in, fan_out, source = auto_fans(tensor, hint, self.target)
        if source == "tf (auto)" and len(tensor.shape) >= 2 and rule not in self.auto_tf_rules:
            self.auto_tf_rules.append(rule)
        return fan_in, fan_out, source

    def fans(self, tensor: TensorInfo, rule: Rule, init: VarianceScalingInit) -> tuple[int, int, str]:
        if init.axes is not None:
            try:
                return (*axes_fans(tensor.shape, init.axes), "axes")
            except ValueError as exc:
                self.errors.append(rule_problem(self.spec.source, rule, str(exc), tensor=tensor.name))
                return (1, 1, "axes")
        if rule.fans_from == "weight":
            hint = self.hint(tensor.name)
            weight = self.by_name.get(hint.weight) if hint is not None and hint.weight else None
            if weight is None:
                self.errors.append(
                    rule_problem(
                        self.spec.source,
                        rule,
                        "it takes `fans_from: weight`, but no weight reads alongside it"
                        + (f" (expected {hint.weight_expected!r})" if hint is not None and hint.weight_expected else ""),
                        tensor=tensor.name,
                    )
                )
                return (1, 1, "weight")
            self.check_weights(tensor, rule, hint)
            fan_in, fan_out, source = self.layout_fans(weight, rule)
            return fan_in, fan_out, f"weight {weight.name} ({source})"
        return self.layout_fans(tensor, rule)

    def quiet_fans(self, tensor: TensorInfo) -> tuple[int, int]:
        """The fans the spec's layout reads from ``tensor``, reporting nothing."""
        if self.spec.layout in ("tf", "torch"):
            return compute_fans(tensor.shape, self.spec.layout)
        return auto_fans(tensor, self.hint(tensor.name), self.target)[:2]

    def check_weights(self, tensor: TensorInfo, rule: Rule, hint: FanHint) -> None:
        """A tensor read beside several weights takes `fans_from: weight` only if they agree."""
        implied = [(label, self.by_name[w]) for label, w in hint.weights if w in self.by_name]
        fans = [(label, weight.name, self.quiet_fans(weight)) for label, weight in implied]
        if len({f for _, _, f in fans}) > 1:
            self.errors.append(
                rule_problem(
                    self.spec.source,
                    rule,
                    "it takes `fans_from: weight`, but its consumers' weights disagree: "
                    + "; ".join(f"{label} has weight {w!r} with (fan_in, fan_out) = {f}" for label, w, f in fans)
                    + f"; {UNTIE_HINT}",
                    tensor=tensor.name,
                )
            )

    def check_role(self, tensor: TensorInfo, rule: Rule) -> None:
        """A tensor whose consumers disagree on what it is is never set from one view."""
        hint = self.hint(tensor.name)
        if hint is not None and hint.role_conflict:
            self.errors.append(rule_problem(self.spec.source, rule, f"{hint.role_conflict}; {UNTIE_HINT}", tensor=tensor.name))

    def zero_rows(self, tensor: TensorInfo, rule: Rule, names: dict[str, Any] | None) -> tuple[int, ...]:
        """The rule's ``zero_rows`` for ``tensor``, counted from 0, each checked against its rows."""
        if not rule.zero_rows:
            return ()
        if not tensor.shape:
            self.errors.append(rule_problem(self.spec.source, rule, "zero_rows: a scalar has no rows", tensor=tensor.name))
            return ()
        rows = tensor.shape[0]
        out = []
        for row in rule.zero_rows:
            row = self.binder.value(row, names, tensor, rule)
            if row is None:
                continue
            if not -rows <= row < rows:
                message = f"zero_rows: row {row} is out of range for a tensor of {rows} rows (shape {list(tensor.shape)})"
                self.errors.append(rule_problem(self.spec.source, rule, message, tensor=tensor.name))
                continue
            out.append(row % rows)
        return tuple(sorted(set(out)))

    def tie(self, entries: list[PlanEntry]) -> list[PlanEntry]:
        """Each `same_as` entry made the tensor it names, drawn by that tensor's stream: its
        values are that tensor's, exactly (a chain is followed; a circle is an error)."""
        by_name = {entry.name: entry for entry in entries}
        out = []
        for entry in entries:
            if entry.same_as is None:
                out.append(entry)
                continue
            rule, seen, source = self.ties[entry.name], [entry.name], by_name.get(entry.same_as)
            while source is not None and source.same_as is not None and source.name not in seen:
                seen.append(source.name)
                source = by_name.get(source.same_as)
            problem = None
            if source is None:
                problem = f"same_as: the model has no tensor {seen[-1] if len(seen) > 1 else entry.same_as!r}"
                if len(seen) > 1:
                    problem = f"same_as: the model has no tensor {by_name[seen[-1]].same_as!r}"
            elif source.name in seen:
                problem = "same_as: the ties form a circle: " + " -> ".join(repr(name) for name in [*seen, source.name])
            elif not source.changes:
                problem = f"same_as: {source.name!r} is not filled by any rule ({source.action}), so it has no values to hold"
            elif (source.shape, source.dtype) != (entry.shape, entry.dtype):
                problem = (
                    f"same_as: {source.name!r} is {source.dtype}{list(source.shape)}, "
                    f"this tensor {entry.dtype}{list(entry.shape)}; a tie holds one tensor's values"
                )
            if problem is not None:
                self.errors.append(rule_problem(self.spec.source, rule, problem, tensor=entry.name))
                out.append(entry)
                continue
            out.append(
                dataclasses.replace(
                    source, name=entry.name, rule=entry.rule, init=entry.init, consumers=entry.consumers,
                    role=entry.role, role_from=entry.role_from, role_guessed=entry.role_guessed,
                    fans_from=f"same_as {source.name}", same_as=entry.same_as, drawn_as=source.drawn_as or source.name,
                    zero_rows=tuple(sorted(set(source.zero_rows) | set(entry.zero_rows))),
                )
            )
        return out

    def rule_words(self, rule: Rule) -> tuple[str, Any]:
        """(label, canonical init) of a rule, made once: a model may have a million tensors.
        Every entry of a rule shares its canonical init; treat it as read-only."""
        words = self._rule_words.get(rule.index)
        if words is None:
            words = self._rule_words[rule.index] = (rule.label, rule.init.canonical())
        return words

    def hint(self, name: str) -> FanHint | None:
        """The adapter's hint of a tensor, or of the tensor a part (``NAME[part k]``) is of."""
        return self.hints.get(self.part_of.get(name, name))

    def entry(self, tensor: TensorInfo, rule: Rule | None, kept: tuple[Rule, str] | None = None) -> PlanEntry:
        def made(action: str, rule: str | None = None, init: Any = None, **more: Any) -> PlanEntry:
            return PlanEntry(
                tensor.name, tensor.shape, dtype_name(tensor.dtype), action, rule, init,
                consumers=consumer_labels(tensor), role=tensor.role, role_from=tensor.role_from,
                role_guessed=tensor.role_guessed, **more,
            )

        if rule is None and kept is not None:
            return made("keep", self.rule_words(kept[0])[0], "keep", reason=kept[1])
        if rule is None:
            return made("unmatched")
        init = rule.init
        label, canonical = self.rule_words(rule)
        if isinstance(init, KeepInit):
            return made("keep", label, canonical)
        self.check_role(tensor, rule)
        names = self.binder.names(tensor, rule, init if rule.parts is None else None)
        zero_rows = self.zero_rows(tensor, rule, names)
        shown = self.binder.shown(rule, names, ("zero_rows", "parts.sizes", "parts.count") if rule.parts is not None else ())
        made = functools.partial(made, rule=label, init=canonical, zero_rows=zero_rows, expressions=shown)
        if isinstance(init, SameAsInit) and rule.parts is None:  # made whole once every tensor is planned (make_plan)
            self.ties[tensor.name] = rule
            return made("fill", same_as=init.name)
        if rule.parts is not None:
            return self.cut(tensor, rule, names, made)
        return self.filled(tensor, rule, init, names, made)

    def filled(self, tensor: TensorInfo, rule: Rule, init: Any, names: dict[str, Any] | None, made: Any) -> PlanEntry:
        """The entry of ``tensor`` filled by ``init`` (the rule's, or a part's), its
        expressions computed for this tensor's ``names``."""
        bound = self.binder.bound(init, names, tensor, rule)
        if bound is None:  # the problem is recorded; plan on to find the others
            return made("fill", distribution="constant", value=0.0)
        init = bound
        if isinstance(init, ConstantInit):
            return made("constant", value=init.value)
        if isinstance(init, FormulaInit):
            text = init.formula.text if isinstance(init.formula, Param) else str(init.formula)
            reads = (init.formula.expr.names() if isinstance(init.formula, Param) else frozenset()) & set(names or {})
            given = tuple(sorted((name, names[name]) for name in reads)) if names else ()
            unknown = sorted(set(init.formula.expr.names() if isinstance(init.formula, Param) else ()) & set(self.binder.bad_names))
            if unknown:
                self.binder.problem(init.formula, self.binder.bad_names[unknown[0]], None, tensor, rule)
                return made("fill", distribution="constant", value=0.0)
            try:
                check_formula(text, dict(given), tensor.shape)
            except ExprError as error:
                self.binder.problem(init.formula, error.message, error.offset, tensor, rule)
            return made("fill", distribution="formula", formula=text, names=given)
        if isinstance(init, (IdentityInit, DiracInit)):
            kind = "identity" if isinstance(init, IdentityInit) else "dirac"
            try:
                zeros = (0,) * len(tensor.shape)
                if kind == "identity":
                    matrix.identity_part(tensor.shape, zeros, zeros, gain=init.gain, dtype="float64")
                else:
                    matrix.dirac_part(tensor.shape, zeros, zeros, groups=init.groups, dtype="float64")
            except ValueError as exc:
                self.errors.append(rule_problem(self.spec.source, rule, f"{kind}: {exc}", tensor=tensor.name))
            more = {"gain": init.gain} if kind == "identity" else {"groups": init.groups}
            return made("fill", distribution=kind, **more)
        seed = self.spec.seed if init.seed is None else init.seed
        stream = self.spec.stream or streams.DEFAULT_STREAM
        if isinstance(init, OrthogonalInit):
            layout = init.layout or self.matrix_layout(tensor)
            try:
                matrix.check_orthogonal(tensor.shape, layout)
            except ValueError as exc:
                self.errors.append(rule_problem(self.spec.source, rule, f"orthogonal: {exc}", tensor=tensor.name))
            return made("fill", seed=seed, stream=stream, distribution="orthogonal", gain=init.gain, layout=layout)
        if isinstance(init, NormalInit):
            return made(
                "fill", seed=seed, stream=stream, distribution="untruncated_normal",
                variance=init.std**2, std=init.std, param=init.std, mean=init.mean or None,
            )
        if isinstance(init, TruncatedNormalInit):
            return made(
                "fill", seed=seed, stream=stream, distribution="truncated_normal",
                variance=init.std**2, std=init.std, param=init.std, mean=init.mean or None, bounds=init.z_bounds(),
            )
        if isinstance(init, UniformInit):
            half = init.half_width
            return made(
                "fill", seed=seed, stream=stream, distribution="uniform",
                variance=half**2 / 3, limit=half, param=half, mean=init.centre or None,
            )
        assert isinstance(init, VarianceScalingInit)
        fan_in, fan_out, source = self.fans(tensor, rule, init)
        variance = scaled_variance(init.scale, init.mode, fan_in, fan_out)
        kind, param = sampling(init.distribution, variance)
        return made(
            "fill",
            seed=seed,
            stream=stream,
            fan_in=fan_in,
            fan_out=fan_out,
            fans_from=source,
            distribution=kind,
            variance=variance,
            param=param,
            **({"limit": param} if kind == "uniform" else {"std": math.sqrt(variance)}),
        )

    def matrix_layout(self, tensor: TensorInfo) -> str:
        """How an orthogonal tensor is seen as a matrix when its init does not say: the
        spec's layout; under ``auto``, torch's when the consumer's output axis is the first
        (a Conv's OIHW weight), else tf's."""
        if self.spec.layout in matrix.LAYOUTS:
            return self.spec.layout
        hint = self.hint(tensor.name)
        if hint is not None and hint.axes is not None and len(tensor.shape) >= 2:
            if tuple(axis % len(tensor.shape) for axis in hint.axes.out_axes) == (0,):
                return "torch"
        return "tf"

    def cut(self, tensor: TensorInfo, rule: Rule, names: dict[str, Any] | None, made: Any) -> PlanEntry:
        """``parts``: each part of ``tensor`` planned as a tensor of its own, ``NAME[part k]``."""
        parts = rule.parts
        assert parts is not None
        if not tensor.shape:
            self.errors.append(rule_problem(self.spec.source, rule, "parts: a scalar has no axis to cut", tensor=tensor.name))
            return made("fill", distribution="constant", value=0.0)
        rank = len(tensor.shape)
        if not -rank <= parts.axis < rank:
            message = f"parts: axis {parts.axis} is out of range for a tensor of {rank} axes (shape {list(tensor.shape)})"
            self.errors.append(rule_problem(self.spec.source, rule, message, tensor=tensor.name))
            return made("fill", distribution="constant", value=0.0)
        axis, length = parts.axis % rank, tensor.shape[parts.axis % rank]
        sizes = self.part_sizes(tensor, rule, names, length)
        if sizes is None:
            return made("fill", distribution="constant", value=0.0)
        pieces = []
        for k, size in enumerate(sizes):
            shape = tensor.shape[:axis] + (size,) + tensor.shape[axis + 1 :]
            piece = dataclasses.replace(tensor, name=f"{tensor.name}[part {k}]", shape=shape)
            self.part_of[piece.name] = tensor.name
            init = parts.init_of(k)
            piece_names = self.binder.names(piece, rule, init)
            written = f"parts.inits[{k if len(parts.inits) > 1 else 0}]"
            piece_made = functools.partial(
                PlanEntry, piece.name, shape, dtype_name(tensor.dtype), rule=rule.label, init=init.canonical(),
                role=tensor.role, expressions=self.binder.shown(rule, piece_names, (written, "init.")),
            )
            pieces.append(self.filled(piece, rule, init, piece_names, piece_made))
        return made("fill", init={"parts": parts.canonical()}, distribution="parts", parts=tuple(pieces), parts_axis=axis)

    def part_sizes(self, tensor: TensorInfo, rule: Rule, names: dict[str, Any] | None, length: int) -> tuple[int, ...] | None:
        parts = rule.parts
        assert parts is not None
        where = f"parts: axis {parts.axis % len(tensor.shape)} of shape {list(tensor.shape)} holds {length}"
        if parts.sizes is not None:
            sizes = [self.binder.value(size, names, tensor, rule) for size in parts.sizes]
            if any(size is None for size in sizes):
                return None
            if sum(sizes) != length:
                message = f"{where}, but the sizes {list(sizes)} add up to {sum(sizes)}"
                self.errors.append(rule_problem(self.spec.source, rule, message, tensor=tensor.name))
                return None
            return tuple(int(size) for size in sizes)
        count = self.binder.value(parts.count, names, tensor, rule)
        if count is None:
            return None
        if length % count:
            message = f"{where}, which does not divide into {count} equal parts"
            self.errors.append(rule_problem(self.spec.source, rule, message, tensor=tensor.name))
            return None
        if len(parts.inits) not in (1, count):
            message = f"parts: {len(parts.inits)} inits for {count} parts; give one for every part, or one for all"
            self.errors.append(rule_problem(self.spec.source, rule, message, tensor=tensor.name))
            return None
        return (length // count,) * int(count)


# Spec words, not command-line flags: the spec's `untie:` works for every caller.
UNTIE_HINT = (
    "vsconf never fills a shared tensor from one consumer's view: add `untie: conflicts` to the spec "
    "to give each consumer its own copy"
)


def auto_fans(tensor: TensorInfo, hint: FanHint | None, target: str) -> tuple[int, int, str]:
    """What ``layout: auto`` reads: the consumer's axes when the adapter knows them, else
    the tf rule, with the reason as the source."""
    if hint is not None and hint.axes is not None:
        return (*axes_fans(tensor.shape, hint.axes), hint.source)
    if hint is not None and hint.source:  # the adapter says why it has no axes
        return (*compute_fans(tensor.shape, "tf"), hint.source)
    source = "tf (auto)" if target == "state_dict" else "tf (auto: no known consumer)"
    return (*compute_fans(tensor.shape, "tf"), source)


def make_plan(
    tensors: Sequence[TensorInfo],
    spec: Spec,
    hints: Mapping[str, FanHint] | None = None,
    *,
    target: str = "state_dict",
    untied: Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
    base_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> Plan:
    """Decide, for every tensor, which rule fills it and with which fans and spread.

    ``target`` is ``"state_dict"`` or ``"onnx"``: it only changes how ``layout: auto``
    explains itself.  ``untied``: the shared tensors the adapter gave one copy per
    consumer, recorded in the plan.  ``base_shapes``: μP's base shape of each tensor (name
    -> shape), which the spec's ``base_fan_in``, ``base_fan_out`` and ``width_mult`` read.
    Raises :class:`MatchError` listing every problem at once.
    """
    matching = match_tensors(spec, tensors, aliases=aliases)
    planner = _Planner(spec, tensors, {} if hints is None else hints, target, base_shapes)
    entries = []
    for tensor in tensors:
        if not tensor.is_float:
            entries.append(
                PlanEntry(
                    tensor.name, tensor.shape, dtype_name(tensor.dtype), "skip", consumers=consumer_labels(tensor),
                    role=tensor.role, role_from=tensor.role_from, role_guessed=tensor.role_guessed,
                )
            )
            continue
        index = matching.rule_of(tensor.name)
        kept = matching.kept.get(tensor.name)
        entries.append(
            planner.entry(
                tensor,
                None if index is None else spec.rules[index],
                None if kept is None else (spec.rules[kept[0]], kept[1]),
            )
        )
    if planner.ties:
        entries = planner.tie(entries)
    if planner.errors:
        raise MatchError(planner.errors)
    warnings = [*spec.warnings, *matching.warnings, *planner.binder.never_cut.values()]
    if planner.auto_tf_rules:
        labels = ", ".join(rule.label for rule in planner.auto_tf_rules)
        warnings.append(
            Problem(
                spec.source, 0, 0, "",
                f"layout: auto reads state-dict shapes with the tf rule (..., in, out) for {labels}; "
                "write `layout: torch` for PyTorch state dicts ([out, in, k...])",
            )
        )
    untied_copies = {name: tuple(copies) for name, copies in (untied or {}).items()}
    origin = {copy: name for name, copies in untied_copies.items() for copy in copies}
    entries = [dataclasses.replace(e, untied_from=origin[e.name]) if e.name in origin else e for e in entries]
    return Plan(
        tuple(entries), spec.sha256, spec.seed, tuple(warnings), untied=untied_copies,
        stream=spec.stream or streams.DEFAULT_STREAM, aliases=dict(aliases or {}), vars=dict(spec.vars),
    )
