"""The init families: one room each, with the numbers that parametrise them, and
:data:`KINDS`, the one table of the kinds a spec writes as ``{KEY: {PARAMS}}``.

``random`` -- normal, truncated normal and uniform draws given by their own numbers, from the
same per-tensor streams as VarianceScaling; ``matrix`` -- orthogonal, identity and dirac;
``formula`` -- computed tensors; ``gains`` -- PyTorch's gains of nonlinearities.

The spec's normalisation builds each kind's init from this table, its expressions know from
it which parameters may be expressions and what their values must be, and the tests hold the
schema's and the docs' account of each kind to it.  The engine turns inits into plan entries
and :mod:`vsconf.draw` entries into values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vsconf.inits.formula import FormulaInit
from vsconf.inits.matrix import DiracInit, IdentityInit, OrthogonalInit
from vsconf.inits.random import NormalInit, TruncatedNormalInit, UniformInit

# What a parameter's value must be (vsconf.spec.expressions.slot_problem says why not):
# number -- any finite number; positive -- > 0; count -- an integer >= 1; choice -- one of
# the words the schema lists (never an expression).
NUMERIC_SLOTS = ("number", "positive", "count")
REQUIRED = object()  # a parameter without a default


@dataclass(frozen=True)
class Kind:
    """One kind of init: its spec key, its init class, and each parameter's slot and default.

    ``seeded``: the init takes a ``seed`` beside its key (it draws); ``frameworks``: what it
    is in the libraries people port from (the docs name them).
    """

    key: str
    init: Callable[..., Any]
    params: Mapping[str, tuple[str, Any]]
    seeded: bool
    frameworks: str

    def build(self, params: Mapping[str, Any], seed: Any, number: Callable[[Any], Any]) -> Any:
        """The init from the spec's mapping under ``key`` (defaults filled in): numbers through
        ``number`` (a float, or the expression the planner computes per tensor)."""
        values = {}
        for name, (slot, default) in self.params.items():
            value = params.get(name, default)
            values[name] = number(value) if slot in ("number", "positive") and value is not None else value
        return self.init(**values, seed=seed) if self.seeded else self.init(**values)


KINDS: tuple[Kind, ...] = (
    Kind("normal", NormalInit, {"mean": ("number", 0.0), "std": ("positive", 1.0)}, True,
         "torch normal_, Keras RandomNormal"),
    Kind(
        "truncated_normal", TruncatedNormalInit,
        {"mean": ("number", 0.0), "std": ("positive", 1.0), "a": ("number", None), "b": ("number", None), "cutoff": ("positive", None)},
        True, "torch trunc_normal_, Keras TruncatedNormal",
    ),
    Kind("uniform", UniformInit, {"low": ("number", REQUIRED), "high": ("number", REQUIRED)}, True,
         "torch uniform_, Keras RandomUniform"),
    Kind("orthogonal", OrthogonalInit, {"gain": ("number", 1.0), "layout": ("choice", None)}, True,
         "torch orthogonal_, Keras Orthogonal"),
    Kind("identity", IdentityInit, {"gain": ("number", 1.0)}, False, "torch eye_, Keras Identity"),
    Kind("dirac", DiracInit, {"groups": ("count", 1)}, False, "torch dirac_"),
)
# `formula` is a kind whose whole value is one expression: {formula: EXPR}.
FORMULA = Kind("formula", FormulaInit, {"formula": ("formula", REQUIRED)}, False, "computed tensors (arange, A_log, sinusoids)")
BY_KEY: Mapping[str, Kind] = {kind.key: kind for kind in (*KINDS, FORMULA)}
