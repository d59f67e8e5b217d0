"""Normalisation: a valid spec's data into a :class:`~vsconf.spec.rules.Spec` whose every
rule carries one explicit init.

An init's keys are resolved by precedence: the keys written in the init, then its preset
(or Keras class), then the spec's ``defaults``, then TF1's defaults (scale 1, ``fan_in``,
``truncated_normal``).  Constants and ``keep`` become :class:`~vsconf.spec.rules.ConstantInit`
and :class:`~vsconf.spec.rules.KeepInit`.  Only data that passed validation comes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vsconf.errors import Problem
from vsconf.fans import axes_from_config
from vsconf.initializers import CONSTANTS, PRESETS
from vsconf.inits.formula import FormulaInit
from vsconf.inits.gains import scale_of
from vsconf.inits.matrix import DiracInit, IdentityInit, OrthogonalInit
from vsconf.inits.random import NormalInit, TruncatedNormalInit, UniformInit
from vsconf.spec.document import Document, as_list
from vsconf.spec.expressions import Expanded
from vsconf.spec.words import format_path
from vsconf.spec.rules import (
    ConstantInit,
    Init,
    KeepInit,
    Parts,
    Rule,
    SameAsInit,
    Spec,
    VarianceScalingInit,
)

# Keras's class names for the presets vsconf knows by their snake_case names.
KERAS_PRESETS = {
    "GlorotUniform": "glorot_uniform",
    "GlorotNormal": "glorot_normal",
    "HeNormal": "he_normal",
    "HeUniform": "he_uniform",
    "LecunNormal": "lecun_normal",
    "LecunUniform": "lecun_uniform",
}
# Keras's initializers given by their own numbers (vsconf.inits.random, vsconf.inits.matrix).
KERAS_RANDOM = ("RandomNormal", "RandomUniform", "TruncatedNormal", "Orthogonal", "Identity")
_VS_DEFAULTS = {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}


def _variance_scaling(mapping: Mapping[str, Any], preset: str | None, defaults: Mapping[str, Any]) -> VarianceScalingInit:
    """Precedence: keys written in the init > its preset > the spec's defaults > TF1's defaults."""
    merged: dict[str, Any] = dict(_VS_DEFAULTS)
    merged.update({k: v for k, v in defaults.items() if k != "dtype"})
    if preset is not None:
        merged.update(zip(("scale", "mode", "distribution"), PRESETS[preset]))
    merged.update({k: v for k, v in mapping.items() if k not in ("preset", "dtype")})
    if "nonlinearity" in mapping:  # the gain's square, in place of the preset's or the defaults' scale
        merged["scale"] = scale_of(mapping["nonlinearity"], mapping.get("negative_slope"))
    return VarianceScalingInit(
        scale=_number(merged["scale"]),
        mode=merged["mode"],
        distribution=merged["distribution"],
        seed=merged.get("seed"),
        axes=axes_from_config(merged),
    )


def _number(value: Any) -> Any:
    """A parameter as an init holds it: a float, or the Param an expression became."""
    return float(value) if isinstance(value, (int, float)) else value


def _optional(value: Any) -> Any:
    return None if value is None else _number(value)


def _init(value: Any, defaults: Mapping[str, Any]) -> Init:
    if isinstance(value, str):
        if value == "keep":
            return KeepInit()
        if value in CONSTANTS:
            return ConstantInit(CONSTANTS[value])
        return _variance_scaling({}, value, defaults)
    if "constant" in value:
        return ConstantInit(_number(value["constant"]))
    if "class_name" in value:
        return _keras(value["class_name"], value["config"], defaults)
    seed = value.get("seed")
    if "normal" in value:
        params = value["normal"]
        return NormalInit(_number(params.get("mean", 0.0)), _number(params.get("std", 1.0)), seed)
    if "truncated_normal" in value:
        params = value["truncated_normal"]
        return TruncatedNormalInit(
            _number(params.get("mean", 0.0)), _number(params.get("std", 1.0)),
            *(_optional(params.get(key)) for key in ("a", "b", "cutoff")), seed,
        )
    if "uniform" in value:
        return UniformInit(_number(value["uniform"]["low"]), _number(value["uniform"]["high"]), seed)
    if "same_as" in value:
        return SameAsInit(value["same_as"])
    if "orthogonal" in value:
        params = value["orthogonal"]
        return OrthogonalInit(_number(params.get("gain", 1.0)), params.get("layout"), seed)
    if "identity" in value:
        return IdentityInit(_number(value["identity"].get("gain", 1.0)))
    if "dirac" in value:
        return DiracInit(value["dirac"].get("groups", 1))
    if "formula" in value:
        return FormulaInit(value["formula"])
    return _variance_scaling(value, value.get("preset"), defaults)


def _keras(name: str, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> Init:
    """A Keras-serialised initializer, meaning what Keras means by it."""
    if name in ("Zeros", "Ones"):
        return ConstantInit(0.0 if name == "Zeros" else 1.0)
    if name == "Constant":
        return ConstantInit(_number(config["value"]))
    seed = config.get("seed")
    if name == "RandomNormal":  # Keras's defaults: mean 0, stddev 0.05
        return NormalInit(_number(config.get("mean", 0.0)), _number(config.get("stddev", 0.05)), seed)
    if name == "TruncatedNormal":  # cut at 2 stddev, as Keras's
        return TruncatedNormalInit(_number(config.get("mean", 0.0)), _number(config.get("stddev", 0.05)), cutoff=2.0, seed=seed)
    if name == "RandomUniform":  # Keras's defaults: [-0.05, 0.05)
        return UniformInit(_number(config.get("minval", -0.05)), _number(config.get("maxval", 0.05)), seed)
    if name == "Orthogonal":  # Keras sees the tensor as [prod(shape[:-1]), shape[-1]]
        return OrthogonalInit(_number(config.get("gain", 1.0)), "tf", seed)
    if name == "Identity":
        return IdentityInit(_number(config.get("gain", 1.0)))
    return _variance_scaling(config, KERAS_PRESETS.get(name), defaults)


def _parts(rule: Mapping[str, Any], defaults: Mapping[str, Any]) -> Parts | None:
    parts = rule.get("parts")
    if parts is None:
        return None
    inits = tuple(_init(init, defaults) for init in (parts["inits"] if "inits" in parts else [rule["init"]]))
    sizes = tuple(parts["sizes"]) if "sizes" in parts else None
    count = None if sizes is not None else parts.get("count", len(inits))
    return Parts(parts.get("axis", 0), inits, sizes, count)


def _match_at(doc: Document, index: int, match: Any) -> tuple[tuple[str, int, int], ...]:
    """Where each pattern of rule ``index``'s ``match`` is written: (path, line, column)."""
    paths = [("rules", index, "match", j) for j in range(len(match))] if isinstance(match, list) else [("rules", index, "match")]
    return tuple((format_path(path), *doc.values.get(path, (0, 0))) for path in paths)


def normalise(data: Mapping[str, Any], doc: Document, warnings: list[Problem], expanded: Expanded) -> Spec:
    """``data``: the spec with its var-only expressions computed (:func:`expand`)."""
    defaults = data.get("defaults", {})
    rules = []
    for index, rule in enumerate(data["rules"]):
        parts = _parts(rule, defaults)
        rules.append(
            Rule(
                index=index,
                # A rule that gives its parts their inits fills the whole with nothing else.
                init=_init(rule["init"], defaults) if "init" in rule else parts.inits[0],
                match=tuple(as_list(rule.get("match", []))),
                op=tuple(as_list(rule.get("op", []))),
                input=tuple(as_list(rule.get("input", []))),
                optional=bool(rule.get("optional", False)),
                fans_from=rule.get("fans_from"),
                line=doc.values.get(("rules", index), (0, 0))[0],
                role=tuple(as_list(rule.get("role", []))),
                zero_rows=tuple(rule.get("zero_rows", ())),
                parts=parts,
                match_at=_match_at(doc, index, rule.get("match", [])),
                when=rule.get("when"),
                active=index not in expanded.inactive,
                shown=expanded.shown.get(index, ()),
            )
        )
    return Spec(
        seed=data["seed"],
        rules=tuple(rules),
        layout=data.get("layout", "auto"),
        unmatched=data.get("unmatched", "keep"),
        source=doc.source,
        warnings=tuple(warnings),
        untie=data.get("untie"),
        stream=data.get("stream"),
        vars=tuple(expanded.vars.items()),
        base_shapes=data.get("base_shapes"),
        base_model=data.get("base_model"),
    )
