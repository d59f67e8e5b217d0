"""The checks of meaning that a schema cannot express, each located in the document.

Errors: a ``re:`` pattern that cannot be matched in linear time (:func:`pattern_problem`,
by :mod:`vsconf.saferegex`), an op type in the wrong case (``conv`` for ``Conv``), an
``input`` that none of the rule's ops has, an axis given two roles, ``axes`` beside Keras's
``input_axes``/``output_axes``.  Warnings: an op type the installed ``onnx`` does not know (it
may be a custom op), the deprecated ``distribution: normal``, one Keras axis key alone.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from vsconf.errors import Problem, did_you_mean
from vsconf.inits.random import MIN_ACCEPTANCE, NEVER_REACHED, TruncatedNormalInit
from vsconf.saferegex import RegexError, compile_pattern
from vsconf.spec.document import Document, PathKey, as_list
from vsconf.spec.rules import REGEX_PREFIX
from vsconf.spec.words import choices, show


def meaning_problems(doc: Document, data: Mapping[str, Any]) -> tuple[list[Problem], list[Problem]]:
    """The errors and the warnings of meaning in ``data``, a spec that may not be valid:
    whatever has the wrong shape is left to the schema."""
    checker = _Checker(doc)
    checker.run(data)
    return checker.errors, checker.warnings


@functools.lru_cache(maxsize=1)
def _onnx_ops() -> dict[str, list[list[str]]]:
    """Formal input names of every operator the installed onnx knows, per op type."""
    from vsconf.formats.onnx import proto

    ops: dict[str, list[list[str]]] = {}
    for schema in proto.defs.get_all_schemas_with_history():
        ops.setdefault(schema.name, []).append([i.name for i in schema.inputs])
    return ops


@functools.lru_cache(maxsize=1)
def _onnx_ops_lowered() -> dict[str, str]:
    return {name.lower(): name for name in _onnx_ops()}


@functools.lru_cache(maxsize=1024)
def _op_hint(op: str) -> str:
    return did_you_mean(op, _onnx_ops())


def pattern_problem(pattern: str) -> str | None:
    """Why a ``match`` pattern cannot be matched in linear time, or None when it can.

    Only ``re:`` patterns can fail: a glob is matched by ``fnmatch``, whose translation
    makes every star an atomic group (a lookahead and a backreference before Python 3.11),
    so globs such as ``*a*a*a*b`` never backtrack.
    """
    if not pattern.startswith(REGEX_PREFIX):
        return None
    try:
        compile_pattern(pattern[len(REGEX_PREFIX) :])
    except RegexError as exc:
        return f"invalid regular expression: {exc.message} at position {exc.position}"
    return None


class _Checker:
    """Checks of meaning that a schema cannot express; collects problems and warnings."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def run(self, data: Mapping[str, Any]) -> None:
        if isinstance(data.get("defaults"), dict):
            self.vs_mapping(data["defaults"], ("defaults",))
        rules = data.get("rules")
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                self.rule(rule, ("rules", index))

    def rule(self, rule: Mapping[str, Any], path: PathKey) -> None:
        for i, pattern in enumerate(as_list(rule.get("match", []))):
            where = path + ("match",) + ((i,) if isinstance(rule["match"], list) else ())
            message = pattern_problem(pattern) if isinstance(pattern, str) else None
            if message:
                self.errors.append(self.doc.problem(where, message))
        ops = [op for op in as_list(rule.get("op", [])) if isinstance(op, str)]
        known = _onnx_ops()
        for i, op in enumerate(ops):
            if op in known or "." in op:
                continue
            where = path + ("op",) + ((i,) if isinstance(rule["op"], list) else ())
            problem = self.doc.problem(where, f"{show(op)} is not an ONNX operator" + _op_hint(op))
            # Op types are case-sensitive: 'conv' is a typo of 'Conv', while an unknown
            # name may be a custom operator and only earns a warning.
            (self.errors if op.lower() in _onnx_ops_lowered() else self.warnings).append(problem)
        if ops and all(op in known for op in ops):
            formal = list(dict.fromkeys(name for op in ops for names in known[op] for name in names))
            for i, name in enumerate(as_list(rule.get("input", []))):
                if isinstance(name, str) and name not in formal:
                    where = path + ("input",) + ((i,) if isinstance(rule["input"], list) else ())
                    self.errors.append(
                        self.doc.problem(
                            where,
                            f"{'/'.join(ops)} has no input {show(name)}; its inputs are {choices(formal)}"
                            + did_you_mean(name, formal),
                        )
                    )
        init = rule.get("init")
        if isinstance(init, dict):
            if "class_name" in init:
                if isinstance(init.get("config"), dict):
                    self.vs_mapping(init["config"], path + ("init", "config"))
            elif isinstance(init.get("truncated_normal"), dict):
                self.truncation(init["truncated_normal"], path + ("init", "truncated_normal"))
            elif isinstance(init.get("uniform"), dict):
                self.uniform(init["uniform"], path + ("init", "uniform"))
            elif not any(key in init for key in ("constant", "normal", "truncated_normal", "uniform", "same_as")):
                self.vs_mapping(init, path + ("init",))
        parts = rule.get("parts")
        if isinstance(parts, dict):
            self.parts(parts, path + ("parts",))
            if "inits" not in parts and (init == "keep" or (isinstance(init, dict) and "same_as" in init)):
                what = "keep" if init == "keep" else "same_as"
                self.errors.append(self.doc.problem(path + ("init",), f"`parts` fills each part: `{what}` cannot fill one"))
        if "zero_rows" in rule and init == "keep":
            self.errors.append(self.doc.problem(path + ("zero_rows",), "zero_rows needs an init that fills the tensor; this rule keeps it"))

    def parts(self, parts: Mapping[str, Any], path: PathKey) -> None:
        if "sizes" in parts and "count" in parts:
            self.errors.append(self.doc.problem(path + ("count",), "give either `sizes` or `count`, not both"))
        inits = parts.get("inits")
        number = len(parts["sizes"]) if isinstance(parts.get("sizes"), list) else parts.get("count")
        if isinstance(inits, list) and isinstance(number, int) and len(inits) not in (1, number):
            self.errors.append(
                self.doc.problem(path + ("inits",), f"{len(inits)} inits for {number} parts; give one for every part, or one for all")
            )
        for index, init in enumerate(inits if isinstance(inits, list) else []):
            if init == "keep" or (isinstance(init, dict) and "same_as" in init):
                what = "keep" if init == "keep" else "same_as"
                self.errors.append(self.doc.problem(path + ("inits", index), f"a part is filled: `{what}` cannot fill one"))
            elif isinstance(init, dict) and isinstance(init.get("truncated_normal"), dict):
                self.truncation(init["truncated_normal"], path + ("inits", index, "truncated_normal"))
            elif isinstance(init, dict) and isinstance(init.get("uniform"), dict):
                self.uniform(init["uniform"], path + ("inits", index, "uniform"))

    def truncation(self, params: Mapping[str, Any], path: PathKey) -> None:
        """Bounds that exclude almost every draw are an error; bounds no draw reaches, a warning."""
        numbers = {k: params.get(k) for k in ("mean", "std", "a", "b", "cutoff")}
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in numbers.values()):
            return  # the schema says what is wrong
        if params.get("cutoff") is not None and (params.get("a") is not None or params.get("b") is not None):
            self.errors.append(self.doc.problem(path + ("cutoff",), "give either `cutoff` or the bounds `a`/`b`, not both"))
            return
        a, b = params.get("a"), params.get("b")
        if a is not None and b is not None and a >= b:
            self.errors.append(self.doc.problem(path + ("b",), f"the upper bound {show(b)} must be above the lower bound {show(a)}"))
            return
        std = params.get("std", 1.0)
        if not std or std <= 0:
            return
        init = TruncatedNormalInit(params.get("mean", 0.0), std, a, b, params.get("cutoff"))
        low, high = init.z_bounds()
        key = next((k for k in ("a", "b", "cutoff") if params.get(k) is not None), None)
        where = path + (key,) if key else path
        if init.acceptance() < MIN_ACCEPTANCE:
            self.errors.append(
                self.doc.problem(
                    where,
                    f"the bounds keep {init.acceptance():.2g} of the normal (from {low:.3g} to {high:.3g} standard deviations); "
                    f"vsconf draws a truncated normal by resampling, which needs at least {MIN_ACCEPTANCE:g}",
                )
            )
        elif low <= -NEVER_REACHED and high >= NEVER_REACHED:
            self.warnings.append(
                self.doc.problem(
                    where,
                    f"the bounds lie {min(-low, high):.3g} standard deviations or more from the mean: this truncation "
                    "never happens (a normal init says so plainly)",
                )
            )

    def uniform(self, params: Mapping[str, Any], path: PathKey) -> None:
        low, high = params.get("low"), params.get("high")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) and low >= high:
            self.errors.append(self.doc.problem(path + ("high",), f"high ({show(high)}) must be above low ({show(low)})"))

    def vs_mapping(self, mapping: Mapping[str, Any], path: PathKey) -> None:
        if "nonlinearity" in mapping and "scale" in mapping:
            self.errors.append(
                self.doc.problem(
                    path + ("nonlinearity",), "give either `scale` or `nonlinearity` (whose gain squared is the scale), not both"
                )
            )
        if "negative_slope" in mapping and mapping.get("nonlinearity") != "leaky_relu":
            self.warnings.append(
                self.doc.problem(path + ("negative_slope",), "`negative_slope` changes only leaky_relu's gain; it is ignored here")
            )
        if mapping.get("distribution") == "normal":
            self.warnings.append(
                self.doc.problem(
                    path + ("distribution",),
                    "'normal' is a deprecated alias of 'truncated_normal' (TF1's meaning); write "
                    "'truncated_normal', or 'untruncated_normal' for JAX's and PyTorch's normal",
                )
            )
        axes = mapping.get("axes")
        if isinstance(axes, dict):
            seen: dict[int, str] = {}
            for role in ("in", "out", "batch"):
                for axis in as_list(axes.get(role, [])):
                    if not isinstance(axis, int):
                        continue
                    if axis in seen and seen[axis] != role:
                        self.errors.append(
                            self.doc.problem(
                                path + ("axes", role),
                                f"axis {axis} is already named in `{seen[axis]}`; an axis has one role",
                            )
                        )
                    seen.setdefault(axis, role)
        keras_axes = [k for k in ("input_axes", "output_axes") if mapping.get(k) is not None]
        if axes is not None and keras_axes:
            self.errors.append(
                self.doc.problem(path + ("axes",), "give either `axes` or Keras's `input_axes`/`output_axes`, not both")
            )
        elif len(keras_axes) == 1:
            self.warnings.append(
                self.doc.problem(
                    path + (keras_axes[0],),
                    "Keras uses `input_axes`/`output_axes` only when both are given; this one is ignored",
                )
            )
