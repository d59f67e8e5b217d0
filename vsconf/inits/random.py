"""Random inits given by their own numbers: ``normal``, ``truncated_normal``, ``uniform``.

They draw from the same per-tensor streams as VarianceScaling (:mod:`vsconf.streams`): a
tensor's values depend on the seed, its name, shape and dtype, and these numbers alone.
And they are the same draws -- only parametrised otherwise:

* ``{normal: {mean: M, std: S}}`` is N(M, S²) (torch ``normal_``, Keras ``RandomNormal``);
  with mean 0 it is, bit for bit, the untruncated VarianceScaling whose std is S.
* ``{truncated_normal: {mean: M, std: S, a: A, b: B}}`` is N(M, S²) cut to the *absolute*
  bounds (A, B) (torch ``trunc_normal_``); ``{truncated_normal: {mean, std, cutoff: C}}``
  cuts at M ± C·S (Keras ``TruncatedNormal``: C = 2, OLMo and torchtitan: 3); neither given
  means ``cutoff: 2``.  S is the std of the normal *before* the cut, as in torch and Keras:
  unlike VarianceScaling's ``truncated_normal``, nothing corrects it for the truncation, so
  the samples' std is smaller (0.88·S at C = 2).  With M = 0 and C = 2 it is, bit for bit,
  VarianceScaling's truncated normal whose underlying std is S.
* ``{uniform: {low: L, high: H}}`` is U[L, H) (torch ``uniform_``, Keras ``RandomUniform``);
  with L = -H it is, bit for bit, the VarianceScaling uniform of limit H.

>>> init = TruncatedNormalInit(mean=0.0, std=0.02, a=-2.0, b=2.0)   # ViT's trunc_normal_(std=.02)
>>> init.z_bounds()                                                 # in effect untruncated
(-100.0, 100.0)
>>> round(TruncatedNormalInit(std=1.0, cutoff=2.0).acceptance(), 4)
0.9545
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Below this share of the normal inside the bounds, drawing by rejection would take too
# many rounds (about 1 / share), and the bounds are almost surely a mistake.
MIN_ACCEPTANCE = 0.01
# Bounds farther than this many standard deviations are never reached by a draw (the
# chance is below 2e-9 a value): ``plan`` warns that the truncation never happens.
NEVER_REACHED = 6.0
DEFAULT_CUTOFF = 2.0


def _phi(z: float) -> float:
    """The standard normal's CDF."""
    if math.isinf(z):
        return 0.0 if z < 0 else 1.0
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def written(value: Any) -> Any:
    """A parameter as the canonical spec writes it: a number, or an expression's text (a
    :class:`~vsconf.spec.expressions.Param` the planner computes per tensor)."""
    return value.canonical() if hasattr(value, "canonical") else value


@dataclass(frozen=True)
class NormalInit:
    """N(mean, std²); ``seed=None`` means the spec's seed."""

    mean: float = 0.0
    std: float = 1.0
    seed: int | None = None

    def canonical(self) -> dict[str, Any]:
        return {"normal": {"mean": written(self.mean), "std": written(self.std)}, "seed": self.seed}


@dataclass(frozen=True)
class TruncatedNormalInit:
    """N(mean, std²) cut to absolute bounds ``a``/``b`` (either may be None: unbounded on
    that side), or to mean ± ``cutoff``·std; neither given: ``cutoff`` 2."""

    mean: float = 0.0
    std: float = 1.0
    a: float | None = None
    b: float | None = None
    cutoff: float | None = None
    seed: int | None = None

    def z_bounds(self) -> tuple[float, float]:
        """The bounds in standard deviations of the underlying normal."""
        if self.a is None and self.b is None:
            cutoff = DEFAULT_CUTOFF if self.cutoff is None else self.cutoff
            return -cutoff, cutoff
        low = -math.inf if self.a is None else (self.a - self.mean) / self.std
        high = math.inf if self.b is None else (self.b - self.mean) / self.std
        return low, high

    def acceptance(self) -> float:
        """The share of the normal inside the bounds (what a draw keeps)."""
        low, high = self.z_bounds()
        return _phi(high) - _phi(low)

    def canonical(self) -> dict[str, Any]:
        params: dict[str, Any] = {"mean": written(self.mean), "std": written(self.std)}
        if self.a is None and self.b is None:
            params["cutoff"] = DEFAULT_CUTOFF if self.cutoff is None else written(self.cutoff)
        else:
            params.update({key: written(value) for key, value in (("a", self.a), ("b", self.b)) if value is not None})
        return {"truncated_normal": params, "seed": self.seed}


@dataclass(frozen=True)
class UniformInit:
    """U[low, high); ``seed=None`` means the spec's seed."""

    low: float
    high: float
    seed: int | None = None

    @property
    def centre(self) -> float:
        return (self.low + self.high) / 2

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def canonical(self) -> dict[str, Any]:
        return {"uniform": {"low": written(self.low), "high": written(self.high)}, "seed": self.seed}
