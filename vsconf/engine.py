"""The engine: (tensor facts, normalised spec, fan hints) -> plan -> arrays.

Pure: no file formats here.  Adapters hand in :class:`~vsconf.matching.TensorInfo`
(name, shape, dtype, consumers) and optional :class:`FanHint`s, and write out what
:func:`generate` returns.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vsconf import streams
from vsconf.errors import MatchError
from vsconf.fans import Axes, axes_fans, compute_fans, scaled_variance
from vsconf.initializers import float_dtype, sampling
from vsconf.matching import TensorInfo, match_tensors
from vsconf.spec import ConstantInit, KeepInit, Rule, Spec, VarianceScalingInit


@dataclass(frozen=True)
class FanHint:
    """What an adapter knows about a tensor's fans beyond its shape.

    ``axes``: the roles of the stored tensor's axes, read from its consumer (``source``
    says which, e.g. ``"Conv W"``).  ``weight``: the weight tensor of the node that reads
    this one (for ``fans_from: weight``).  ``conflict``: why the consumers disagree.
    """

    axes: Axes | None = None
    source: str = ""
    weight: str | None = None
    conflict: str | None = None


@dataclass(frozen=True)
class PlanEntry:
    """What happens to one tensor, and why."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    # "fill" (VarianceScaling), "constant", "keep" (a rule says so), "unmatched", or "skip" (not float)
    action: str
    rule: str | None = None
    init: Any = None  # the init's canonical form
    seed: int | None = None
    fan_in: int | None = None
    fan_out: int | None = None
    fans_from: str | None = None  # which rule gave the fans: tf, torch, axes, a consumer, a weight
    std: float | None = None
    limit: float | None = None
    value: float | None = None
    distribution: str | None = None  # the sampling rule: truncated_normal, untruncated_normal, uniform
    variance: float | None = None
    consumers: tuple[str, ...] = ()

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
        out["consumers"] = list(self.consumers)
        return out

    @property
    def changes(self) -> bool:
        return self.action in ("fill", "constant")


@dataclass(frozen=True)
class Plan:
    entries: tuple[PlanEntry, ...]
    spec_sha256: str
    seed: int
    warnings: tuple[str, ...] = field(default=())

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


def consumer_labels(tensor: TensorInfo) -> tuple[str, ...]:
    return tuple(f"{c.qualified_op}.{c.input_name}" + (f" ({c.node})" if c.node else "") for c in tensor.consumers)


class _Planner:
    def __init__(self, spec: Spec, tensors: Sequence[TensorInfo], hints: Mapping[str, FanHint], target: str):
        self.spec = spec
        self.by_name = {t.name: t for t in tensors}
        self.hints = hints
        self.target = target
        self.errors: list[str] = []
        self.auto_tf_rules: list[Rule] = []

    def layout_fans(self, tensor: TensorInfo, rule: Rule) -> tuple[int, int, str]:
        layout = self.spec.layout
        if layout in ("tf", "torch"):
            return (*compute_fans(tensor.shape, layout), layout)
        hint = self.hints.get(tensor.name)
        if hint is not None and hint.conflict:
            self.errors.append(
                f"{self.spec.source}: {rule.label}: tensor {tensor.name!r}: {hint.conflict}; "
                "give the rule explicit `axes`"
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
                self.errors.append(f"{self.spec.source}: {rule.label}: tensor {tensor.name!r}: {exc}")
                return (1, 1, "axes")
        if rule.fans_from == "weight":
            hint = self.hints.get(tensor.name)
            weight = self.by_name.get(hint.weight) if hint is not None and hint.weight else None
            if weight is None:
                self.errors.append(
                    f"{self.spec.source}: {rule.label}: tensor {tensor.name!r} takes `fans_from: weight`, "
                    "but no weight reads alongside it"
                    + (f" (expected {_sibling_weight(tensor.name)!r})" if self.target == "state_dict" else "")
                )
                return (1, 1, "weight")
            fan_in, fan_out, source = self.layout_fans(weight, rule)
            return fan_in, fan_out, f"weight {weight.name} ({source})"
        return self.layout_fans(tensor, rule)

    def entry(self, tensor: TensorInfo, rule: Rule | None) -> PlanEntry:
        base = {
            "name": tensor.name,
            "shape": tensor.shape,
            "dtype": tensor.dtype.name,
            "consumers": consumer_labels(tensor),
        }
        if rule is None:
            return PlanEntry(action="unmatched", **base)
        init = rule.init
        common = {"rule": rule.label, "init": init.canonical(), **base}
        if isinstance(init, KeepInit):
            return PlanEntry(action="keep", **common)
        if isinstance(init, ConstantInit):
            return PlanEntry(action="constant", value=init.value, **common)
        assert isinstance(init, VarianceScalingInit)
        fan_in, fan_out, source = self.fans(tensor, rule, init)
        variance = scaled_variance(init.scale, init.mode, fan_in, fan_out)
        kind, param = sampling(init.distribution, variance)
        spread = {"limit": param} if kind == "uniform" else {"std": math.sqrt(variance)}
        return PlanEntry(
            action="fill",
            seed=self.spec.seed if init.seed is None else init.seed,
            fan_in=fan_in,
            fan_out=fan_out,
            fans_from=source,
            distribution=kind,
            variance=variance,
            **spread,
            **common,
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


def _sibling_weight(name: str) -> str:
    stem, _, _ = name.rpartition(".")
    return f"{stem}.weight" if stem else "weight"


def state_dict_hints(tensors: Sequence[TensorInfo]) -> dict[str, FanHint]:
    """For state dicts, a bias's weight is its sibling: ``fc.bias`` -> ``fc.weight`` (and a
    weight is its own)."""
    names = {t.name for t in tensors}
    return {t.name: FanHint(weight=_sibling_weight(t.name)) for t in tensors if _sibling_weight(t.name) in names}


def make_plan(
    tensors: Sequence[TensorInfo],
    spec: Spec,
    hints: Mapping[str, FanHint] | None = None,
    *,
    target: str = "state_dict",
) -> Plan:
    """Decide, for every tensor, which rule fills it and with which fans and spread.

    ``target`` is ``"state_dict"`` or ``"onnx"``: it only changes how ``layout: auto``
    explains itself.  Raises :class:`MatchError` listing every problem at once.
    """
    matching = match_tensors(spec, tensors)
    planner = _Planner(spec, tensors, hints or {}, target)
    entries = []
    for tensor in tensors:
        if not tensor.is_float:
            entries.append(PlanEntry(tensor.name, tensor.shape, tensor.dtype.name, "skip", consumers=consumer_labels(tensor)))
            continue
        index = matching.rule_of(tensor.name)
        entries.append(planner.entry(tensor, None if index is None else spec.rules[index]))
    if planner.errors:
        raise MatchError("\n".join(planner.errors))
    warnings = list(spec_warning.format("warning") for spec_warning in spec.warnings) + list(matching.warnings)
    if planner.auto_tf_rules:
        labels = ", ".join(rule.label for rule in planner.auto_tf_rules)
        warnings.append(
            f"{spec.source}: warning: layout: auto reads state-dict shapes with the tf rule "
            f"(..., in, out) for {labels}; write `layout: torch` for PyTorch state dicts ([out, in, k...])"
        )
    return Plan(tuple(entries), spec.sha256, spec.seed, tuple(warnings))


def generate(entry: PlanEntry, *, jobs: int = 1) -> np.ndarray | None:
    """The new values of ``entry``'s tensor, or None when it keeps its values."""
    if not entry.changes:
        return None
    dtype = float_dtype(entry.dtype)
    if entry.action == "constant":
        return np.full(entry.shape, entry.value, dtype=dtype)
    total = math.prod(entry.shape)
    kind, param = sampling(entry.distribution, entry.variance)
    key = streams.stream_key(entry.seed, entry.name)
    return streams.draw_flat(key, total, 0, total, dtype, kind, param, jobs=jobs).reshape(entry.shape)


def chunk_elements(jobs: int, itemsize: int) -> int:
    """How many elements a chunk holds: 16 MiB, or more so that every thread has blocks."""
    per_round = jobs * streams.BLOCKS_PER_TASK * streams.BLOCK_SIZE
    return max((16 << 20) // itemsize, 2 * per_round)


def generate_chunks(entry: PlanEntry, *, jobs: int = 1, step: int | None = None) -> Iterator[np.ndarray] | None:
    """The new values of ``entry``'s tensor as flat C-order chunks of ``step`` elements, or
    None when it keeps its values.  Writers stream these; any ``step`` gives the same values."""
    if not entry.changes:
        return None
    dtype = float_dtype(entry.dtype)
    total = math.prod(entry.shape)
    step = step or chunk_elements(jobs, dtype.itemsize)
    if entry.action == "constant":
        return (np.full(min(step, total - lo), entry.value, dtype=dtype) for lo in range(0, total, step))
    kind, param = sampling(entry.distribution, entry.variance)
    key = streams.stream_key(entry.seed, entry.name)
    return (
        streams.draw_flat(key, total, lo, min(total, lo + step), dtype, kind, param, jobs=jobs)
        for lo in range(0, total, step)
    )
