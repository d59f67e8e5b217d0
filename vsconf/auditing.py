"""Is a checkpoint initialised the way a spec says?  ``vsconf audit`` and :func:`vsconf.audit`.

``verify`` asks whether a model holds vsconf's own bits; an audit asks the question of any
checkpoint -- a colleague's, a library's ``_init_weights``, a converted one: does each
tensor look drawn from the distribution the spec assigns it?

* Random inits (VarianceScaling, normal, truncated normal, uniform) are tested with a
  one-sample Kolmogorov-Smirnov test against the exact CDF, as the tensor's dtype rounds it
  (:mod:`vsconf.ks`).  The family-wise level ``alpha`` (default 0.01) holds across all of
  them with Holm's step-down procedure: a correct model of any size fails with probability
  at most ``alpha``.  A tensor of more than ``cap`` elements is tested on a deterministic
  subsample of ``cap`` elements (the same every run, seeded by its name), and says so.
* What is exact is checked exactly, on every element: constants, zero rows, identity,
  dirac and computed tensors (their values do not depend on a random stream), ``same_as``,
  values beyond a truncated normal's or a uniform's bounds (one is enough to fail), and
  non-finite values.  An orthogonal tensor must be orthogonal (its Gram matrix gain^2 I,
  to the dtype's precision); its values are a rotation no tool shares.
* A failing tensor says why in words (``std 1.14x expected``, ``3 values beyond the bound
  +-0.04``, ``all zeros``) and names the nearest alternatives that fit better: the other fan
  modes, the other layout's fans, another distribution of the same variance, truncated
  instead of not, and a truncated normal's std correction applied without truncation.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vsconf import arguments, formats, ks
from vsconf.api import SpecLike, plan_of
from vsconf.draw import draw_of, generate
from vsconf.engine import PlanEntry
from vsconf.fans import compute_fans
from vsconf.initializers import TRUNCATED_NORMAL_STD, float_dtype
from vsconf.tally import TensorStats, tensor_stats

DEFAULT_ALPHA = 0.01
DEFAULT_CAP = 1 << 17  # elements a KS test reads at most: D's resolution 1.4e-3 at alpha 0.01
_FILLING = ("fill", "constant")


@dataclass(frozen=True)
class Verdict:
    r"""One tensor (or one part of one) against what the spec assigns it.

    Args:
        name: The tensor's name (a part's is ``NAME[part k]``).
        ok: True consistent, False not, None nothing to check (the spec keeps it, or no
            rule fills it).
        expected: The distribution or value, in words.
        test: ``ks``, ``exact`` or ``none``.
        reason: Why it fails, in words (empty when it passes).
        alternatives: What fits better, nearest first.
        statistic, p_value, tested, subsampled: A KS test's D, its p-value, the sample
            size, and whether the tensor was larger than the cap.
        stats: The tensor's :class:`~vsconf.TensorStats`.

    Raises:
        Nothing: verdicts are made by :func:`vsconf.audit`.

    Example:
        >>> import numpy as np, vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: b\n    init: zeros\n")
        >>> (verdict,) = vsconf.audit({"b": np.array([0.0, 0.5, 0.0], np.float32)}, spec).verdicts
        >>> verdict.ok, verdict.test, verdict.reason
        (False, 'exact', '1 of 3 values differ from constant 0 (max |difference| 0.5)')
    """

    name: str
    ok: bool | None
    expected: str
    test: str = "exact"
    reason: str = ""
    alternatives: tuple[str, ...] = ()
    statistic: float | None = None
    p_value: float | None = None
    tested: int = 0
    subsampled: bool = False
    stats: TensorStats | None = None
    null: ks.Null | None = None  # the distribution a KS test compared against (for pictures)
    dtype: str = ""
    # What a KS test says if Holm's procedure rejects it (worked out while the sample is at
    # hand, for every p-value at or below alpha): its words and the alternatives that fit.
    ks_reason: str = ""
    ks_alternatives: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name, "ok": self.ok, "expected": self.expected, "test": self.test, "reason": self.reason,
            "alternatives": list(self.alternatives), "statistic": self.statistic, "p_value": self.p_value,
            "tested": self.tested, "subsampled": self.subsampled,
        }
        if self.stats is not None:
            out["stats"] = self.stats.as_dict()
        return out


@dataclass(frozen=True)
class Audit:
    r"""What :func:`vsconf.audit` found: every tensor's verdict, in the model's order.

    Args:
        verdicts: One :class:`Verdict` per tensor (per part of a ``parts`` tensor).
        alpha: The family-wise level the KS tests were held to.
        correction: How (``holm``: Holm's step-down procedure).
        warnings: The plan's warnings, as lines.
        report: The HTML page written (``report=``), or None.

    Raises:
        Nothing: audits are made by :func:`vsconf.audit`.

    Example:
        >>> import numpy as np, vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: b\n    init: zeros\n")
        >>> result = vsconf.audit({"b": np.zeros(3, np.float32)}, spec)
        >>> result.ok, result.failed, result.as_dict()["correction"]
        (True, (), 'holm')
    """

    verdicts: tuple[Verdict, ...]
    alpha: float
    correction: str = "holm"
    warnings: tuple[str, ...] = field(default=())
    report: Path | None = None  # the HTML page written, when one was asked for

    @property
    def ok(self) -> bool:
        return all(v.ok is not False for v in self.verdicts)

    @property
    def failed(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.ok is False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "alpha": self.alpha, "correction": self.correction,
            "tested": sum(1 for v in self.verdicts if v.ok is not None), "failed": len(self.failed),
            "tensors": [v.as_dict() for v in self.verdicts],
        }


def audit(
    model: Any,
    spec: SpecLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    cap: int = DEFAULT_CAP,
    seed: int | None = None,
    vars: Mapping[str, Any] | None = None,
    untie: bool = False,
    report: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Audit:
    r"""Test every tensor of ``model`` against the distribution ``spec`` assigns it.

    Args:
        model: A ``.onnx``, ``.npz`` or ``.safetensors`` path, a sharded checkpoint's folder
            or index, or a dict of arrays.
        spec: A :class:`~vsconf.Spec`, or the path of a spec file (a recipe).
        alpha: The family-wise level: a model initialised as the spec says fails with
            probability at most ``alpha`` (Holm's procedure over the KS tests).
        cap: The most elements one KS test reads (a larger tensor is subsampled,
            deterministically; exact checks read every element).
        seed: Only used where a value depends on it (none of the audited properties do).
        vars: Numbers the spec's expressions read.
        untie: The model was made with ``untie=True`` (ONNX).
        report: Also write an HTML page with a histogram per tensor into this folder
            (``index.html`` and ``img/``; needs matplotlib, ``pip install 'vsconf[plot]'``).
            The folder appears whole or not at all.
        force: Replace a folder that holds an earlier report (never one holding other files).

    Returns:
        An :class:`Audit`: ``ok``, and a :class:`Verdict` per tensor, in the model's order.

    Raises:
        TypeError, ValueError: An argument has a bad type or value.
        SpecError, MatchError, ModelError: As :func:`vsconf.verify`.

    Example:
        >>> import numpy as np, vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 7\nlayout: torch\nrules:\n  - match: '*.weight'\n    init: {normal: {std: 0.02}}\n  - match: '*.bias'\n    init: zeros\n")
        >>> rng = np.random.default_rng(0)
        >>> model = {"fc.weight": rng.normal(0, 0.02 * 1.14, (256, 256)).astype(np.float32), "fc.bias": np.zeros(256, np.float32)}
        >>> result = vsconf.audit(model, spec)
        >>> result.ok, [(v.name, v.ok, v.reason) for v in result.verdicts]
        (False, [('fc.weight', False, 'std 1.14x expected (0.02279 vs 0.02)'), ('fc.bias', True, '')])
    """
    alpha = _probability(alpha)
    cap = _cap(cap)
    force = arguments.flag(force, "force")
    spec = arguments.spec(spec, arguments.seed(seed), vars)
    report_path = arguments.path(report, "report", optional=True)
    pictures = None
    if report_path is not None:
        from vsconf.report import Report

        pictures = Report(report_path, force=force)
    try:
        result = _audit(model, spec, alpha, cap, untie, pictures)
    except BaseException:
        if pictures is not None:
            pictures.abort()
        raise
    if pictures is None:
        return result
    shown = os.fspath(model) if isinstance(model, (str, os.PathLike)) else "a dict of arrays"
    title = f"vsconf audit: {shown} against {spec.source}"
    return replace(result, report=pictures.finish(result, title))


def _audit(model: Any, spec: Any, alpha: float, cap: int, untie: bool, pictures: Any) -> Audit:
    with formats.open_model(model, untie=untie, spec_untie=spec.untie) as adapter:
        plan = plan_of(adapter, spec)
        values: dict[str, np.ndarray] = {}

        def read(name: str) -> np.ndarray:
            if name not in values:
                values[name] = np.asarray(adapter.read(name))
            return values[name]

        # alternatives must fit at the level a single test of the family is held to
        level = _Level(alpha, alpha / max(sum(1 for entry in plan for _ in _ks_pieces(entry)), 1), cap)
        flat: list[Verdict] = []
        for entry in plan:
            if entry.action not in _FILLING:
                flat.append(Verdict(entry.name, None, _kept_text(entry), test="none", dtype=entry.dtype))
                continue
            for verdict, piece in _tensor(entry, read(entry.name), read, level):
                if pictures is not None:
                    pictures.picture(len(flat), verdict, piece)
                flat.append(verdict)
            values.clear()
    tests = [i for i, v in enumerate(flat) if v.test == "ks"]
    for i, reject in zip(tests, ks.holm([flat[i].p_value or 0.0 for i in tests], alpha)):
        verdict = flat[i]
        if reject:
            said = [part for text in (verdict.reason, verdict.ks_reason) if text for part in text.split("; ")]
            reason = "; ".join(dict.fromkeys(said))  # "all zeros" is both an exact finding and the KS's word
            flat[i] = replace(verdict, ok=False, reason=reason, alternatives=verdict.ks_alternatives)
        else:  # an exact check may still have failed it: then its alternatives stand too
            flat[i] = replace(verdict, ok=not verdict.reason, alternatives=verdict.ks_alternatives if verdict.reason else ())
    return Audit(tuple(flat), alpha, warnings=tuple(w.message for w in plan.warnings))


@dataclass(frozen=True)
class _Level:
    alpha: float  # the family's level: p-values above it are never rejected
    local: float  # a single test's share (Bonferroni): what an alternative must reach to fit
    cap: int


def _ks_pieces(entry: PlanEntry) -> Iterator[PlanEntry]:
    """The pieces of ``entry`` a KS test reads: itself or its parts, where drawn at random."""
    for piece in entry.parts or (entry,):
        if piece.action == "fill" and piece.distribution in ks.KINDS and not piece.same_as:
            yield piece


def _probability(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"Argument `alpha` must be a number between 0 and 1. Received: {alpha!r}")
    return float(alpha)


def _cap(cap: Any) -> int:
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 100:
        raise ValueError(f"Argument `cap` must be an integer of at least 100. Received: {cap!r}")
    return cap


def _kept_text(entry: PlanEntry) -> str:
    if entry.action == "keep":
        return "kept (not checked)"
    if entry.action == "unmatched":
        return "no rule (not checked)"
    return "not a float (not checked)"


# --------------------------------------------------------------------------- one tensor


_Part = tuple[str, PlanEntry, np.ndarray]


def _tensor(entry: PlanEntry, array: np.ndarray, read: Any, level: _Level) -> Iterator[tuple[Verdict, np.ndarray]]:
    """The verdicts of one tensor, each with the values it read: one, or one per part."""
    stats = tensor_stats(array)
    expected_shape = tuple(entry.shape)
    if tuple(array.shape) != expected_shape:
        yield Verdict(entry.name, False, "-", reason=f"its shape is {list(array.shape)}, the plan's {list(expected_shape)}", stats=stats), array
        return
    if stats.nonfinite:
        yield Verdict(entry.name, False, "finite values", reason=f"{stats.nonfinite} non-finite values", stats=stats), array
        return
    if entry.parts:
        axis = entry.parts_axis or 0
        start = 0
        for k, part in enumerate(entry.parts):
            size = part.shape[axis]
            piece = np.take(array, np.arange(start, start + size), axis=axis)
            start += size
            label = f"{entry.name}[part {k}]"
            yield _one(replace(part, name=label), piece, read, level, tensor_stats(piece)), piece
        return
    yield _one(entry, array, read, level, stats), array


def _one(entry: PlanEntry, array: np.ndarray, read: Any, level: _Level, stats: TensorStats) -> Verdict:
    dtype = np.dtype(float_dtype(entry.dtype))
    rest = array
    problems = []
    if entry.zero_rows:
        bad = [row for row in entry.zero_rows if np.any(array[row] != 0)]
        if bad:
            problems.append(f"row{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad[:5]))}{'...' if len(bad) > 5 else ''} not zero")
        keep = np.ones(array.shape[0], bool)
        keep[list(entry.zero_rows)] = False
        rest = array[keep]
    if entry.action == "constant" or entry.same_as or entry.distribution in ("identity", "dirac", "formula"):
        return _exact(entry, array, read, stats, problems, dtype)
    if entry.distribution == "orthogonal":
        return _orthogonal(entry, array, stats, problems, dtype)
    draw = draw_of(entry)
    assert draw is not None
    null = ks.Null(draw.kind, draw.param, draw.shift, draw.bounds)
    flat = rest.reshape(-1)
    low, high = null.support
    if math.isfinite(low) or math.isfinite(high):
        beyond = _beyond(flat, low, high, dtype)
        if beyond:
            edge = f"±{high:.4g}" if null.shift == 0 and math.isclose(-low, high) else f"[{low:.4g}, {high:.4g}]"
            problems.append(f"{beyond} value{'s' if beyond > 1 else ''} beyond the bound{'s' if not edge.startswith('±') else ''} {edge}")
    if flat.size and float(np.max(np.abs(flat.astype(np.float64)))) == 0.0:
        problems.append("all zeros")
    sample, subsampled = _subsample(flat, level.cap, entry.name)
    d = ks.statistic(sample, null, dtype) if sample.size else 0.0
    p = ks.p_value(d, sample.size)
    # worked out while the sample is at hand: for a test Holm may reject, or a tensor that
    # already failed an exact check (values beyond a bound: which other draw has them?)
    explain = p <= level.alpha or bool(problems)
    words, alternatives = _explain(entry, null, sample, d, p, dtype, level.local, flat) if explain else ("", ())
    return Verdict(
        entry.name, None, null.describe(), test="ks", statistic=d, p_value=p, tested=int(sample.size),
        subsampled=subsampled, stats=stats, null=null, dtype=dtype.name, reason="; ".join(problems),
        ks_reason=words, ks_alternatives=alternatives,
    )


def _beyond(flat: np.ndarray, low: float, high: float, dtype: np.dtype) -> int:
    """How many values lie beyond [low, high] by more than the dtype's rounding of a bound."""
    edges = np.array([low if math.isfinite(low) else 0.0, high if math.isfinite(high) else 0.0])
    down, up = ks.neighbours(edges.astype(dtype), dtype)
    wide = flat.astype(np.float64)
    count = 0
    if math.isfinite(low):
        count += int(np.count_nonzero(wide < min(low, 2 * down[0] - edges.astype(dtype).astype(np.float64)[0])))
    if math.isfinite(high):
        count += int(np.count_nonzero(wide > max(high, 2 * up[1] - edges.astype(dtype).astype(np.float64)[1])))
    return count


def _subsample(flat: np.ndarray, cap: int, name: str) -> tuple[np.ndarray, bool]:
    if flat.size <= cap:
        return flat, False
    seed = int.from_bytes(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:8], "little")
    index = np.sort(np.random.default_rng(seed).choice(flat.size, cap, replace=False))
    return flat[index], True


def _exact(entry: PlanEntry, array: np.ndarray, read: Any, stats: TensorStats, problems: list[str], dtype: np.dtype) -> Verdict:
    if entry.same_as:
        expected = np.asarray(read(entry.same_as))
        what = f"the values of {entry.same_as}"
    else:
        expected = generate(entry)
        what = f"constant {entry.value:g}" if entry.action == "constant" else entry.distribution or "computed"
    assert expected is not None
    differ = int(np.count_nonzero(array.astype(np.float64) != expected.astype(np.float64)))
    if differ and not problems:
        if entry.action == "constant" and stats.std == 0 and stats.count:
            problems.append(f"all {stats.count} values are {stats.mean:.6g}, not {entry.value:g}")
        else:
            worst = float(np.max(np.abs(array.astype(np.float64) - expected.astype(np.float64))))
            problems.append(f"{differ} of {array.size} values differ from {what} (max |difference| {worst:.4g})")
    return Verdict(entry.name, not problems, what, reason="; ".join(problems), stats=stats, tested=int(array.size), dtype=dtype.name)


def _orthogonal(entry: PlanEntry, array: np.ndarray, stats: TensorStats, problems: list[str], dtype: np.dtype) -> Verdict:
    gain = float(entry.gain or 1.0)
    shape = array.shape
    matrix = array.reshape(shape[0], -1) if entry.layout == "torch" else array.reshape(-1, shape[-1])
    m = matrix.astype(np.float64)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    worst = float(np.max(np.abs(gram - gain * gain * np.eye(gram.shape[0]))))
    tolerance = 8 * float(np.finfo(np.float32 if dtype.name == "float64" else dtype).eps if dtype.name != "bfloat16" else 2.0**-7) * gain * gain
    if dtype.name == "float64":
        tolerance = 8 * float(np.finfo(np.float64).eps) * gain * gain * math.sqrt(max(shape))
    if worst > tolerance:
        problems.append(f"not orthogonal: its Gram matrix is {gain:g}^2 I to within {worst:.3g} (the dtype allows {tolerance:.3g})")
    return Verdict(entry.name, not problems, f"orthogonal (gain {gain:g})", reason="; ".join(problems), stats=stats, tested=int(array.size), dtype=dtype.name)


# --------------------------------------------------------------------------- reasons


def _explain(
    entry: PlanEntry, null: ks.Null, sample: np.ndarray, d: float, p: float, dtype: np.dtype, local: float, values: np.ndarray,
) -> tuple[str, tuple[str, ...]]:
    """Why a sample does not fit ``null``, in words, and the alternatives that fit it: a KS
    p-value above ``local`` and every one of ``values`` within the alternative's bounds."""
    x = sample.astype(np.float64)
    n = max(x.size, 2)
    std, mean = float(x.std()), float(x.mean())
    words = []
    if std == 0:
        words.append("all zeros" if mean == 0 else f"all values equal {mean:.6g}")
    else:
        ratio = std / null.std if null.std else math.inf
        if abs(ratio - 1) > 4 * math.sqrt(0.5 / n):  # a sample std's relative standard error, about
            words.append(f"std {ratio:.3g}x expected ({std:.4g} vs {null.std:.4g})")
        if abs(mean - null.mean) > 5 * std / math.sqrt(n):  # the sample mean's standard error, from the sample
            words.append(f"mean {mean:.4g}, expected {null.mean:.4g}")
    if not words:
        words.append(f"the shape of its distribution differs (KS D = {d:.3g}, p = {p:.2g})")
    fits: list[tuple[float, str]] = []
    if std > 0:
        fits = _fitting(_candidates(entry, null), sample, values, dtype, local)
        if not fits:  # nothing near fits: which distribution does, at the sample's own mean and std
            fits = _fitting(_fitted(mean, std), sample, values, dtype, local)
    return "; ".join(words), tuple(label for _, label in sorted(fits, reverse=True))


def _fitting(
    candidates: Iterator[tuple[str, ks.Null]], sample: np.ndarray, values: np.ndarray, dtype: np.dtype, local: float,
) -> list[tuple[float, str]]:
    fits = []
    for label, other in candidates:
        if _beyond(values, *other.support, dtype):
            continue
        other_p = ks.p_value(ks.statistic(sample, other, dtype), sample.size)
        if other_p > local:
            fits.append((other_p, label))
    return fits


def _fitted(mean: float, std: float) -> Iterator[tuple[str, ks.Null]]:
    yield f"a normal of mean {mean:.3g} and std {std:.4g} fits", ks.Null("untruncated_normal", std, mean)
    yield (
        f"a truncated normal (+-2 sigma) of std {std:.4g} fits",
        ks.Null("truncated_normal", std / TRUNCATED_NORMAL_STD, mean),
    )
    limit = std * math.sqrt(3)
    yield f"a uniform [{mean - limit:.4g}, {mean + limit:.4g}] fits", ks.Null("uniform", limit, mean)


def _candidates(entry: PlanEntry, null: ks.Null) -> Iterator[tuple[str, ks.Null]]:
    """The nearest alternatives to ``null``: another distribution of the same variance,
    truncated or not, the truncated normal's std correction without its cut, and for
    VarianceScaling the other fan modes and the other layout's fans."""
    variance = null.std**2
    same_variance = {
        "untruncated_normal": ("a normal of the same variance fits", ks.Null("untruncated_normal", math.sqrt(variance), null.shift)),
        "truncated_normal": (
            "a truncated normal (+-2 sigma) of the same variance fits",
            ks.Null("truncated_normal", math.sqrt(variance) / TRUNCATED_NORMAL_STD, null.shift),
        ),
        "uniform": ("a uniform of the same variance fits", ks.Null("uniform", math.sqrt(3 * variance), null.shift)),
    }
    for kind, candidate in same_variance.items():
        if kind != null.kind:
            yield candidate
    if null.kind == "truncated_normal":
        yield (
            f"an untruncated normal of std {null.param:.4g} fits: the truncated normal's std correction without its cut",
            ks.Null("untruncated_normal", null.param, null.shift),
        )
    if null.kind == "untruncated_normal":
        yield "a normal truncated at +-2 std fits", ks.Null("truncated_normal", null.param, null.shift, null.bounds)
    init = entry.init if isinstance(entry.init, Mapping) else {}
    if "mode" not in init or entry.fan_in is None or entry.fan_out is None:
        return
    scale, mode = float(init["scale"]), str(init["mode"])
    fans = {"fan_in": entry.fan_in, "fan_out": entry.fan_out, "fan_avg": (entry.fan_in + entry.fan_out) / 2}
    for other_mode, fan in fans.items():
        if other_mode != mode and fan and fan != fans[mode]:
            yield f"looks like a different fan mode ({other_mode} fits)", _rescaled(null, scale / fan)
    for layout in ("tf", "torch"):
        if len(entry.shape) < 2 or (entry.fans_from or "").startswith(layout):
            continue
        fan_in, fan_out = compute_fans(entry.shape, layout)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        if fan and fan != fans[mode]:
            yield f"looks like {layout} layout's fans ({mode} {fan:g} fits)", _rescaled(null, scale / fan)


def _rescaled(null: ks.Null, variance: float) -> ks.Null:
    """``null``'s kind with the given variance (a truncated normal keeps its correction)."""
    factor = math.sqrt(variance) / null.std if null.std else 1.0
    return ks.Null(null.kind, null.param * factor, null.shift, null.bounds)


