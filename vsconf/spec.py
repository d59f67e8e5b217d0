"""The spec: load YAML, validate it (schema, then meaning), and normalise it.

Every problem is reported at once, each as ``FILE:LINE:COL: PATH: message`` with the
line and column of the offending YAML node.  A valid spec becomes a :class:`Spec`
whose rules each carry one explicit init; its canonical JSON and SHA-256 identify it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union

import jsonschema
import yaml

from vsconf.errors import Problem, SpecError, did_you_mean
from vsconf.fans import Axes, axes_from_config
from vsconf.initializers import CONSTANTS, PRESETS

PathKey = tuple[Union[str, int], ...]
REGEX_PREFIX = "re:"

# Keras's class names for the presets vsconf knows by their snake_case names.
KERAS_PRESETS = {
    "GlorotUniform": "glorot_uniform",
    "GlorotNormal": "glorot_normal",
    "HeNormal": "he_normal",
    "HeUniform": "he_uniform",
    "LecunNormal": "lecun_normal",
    "LecunUniform": "lecun_uniform",
}
_VS_DEFAULTS = {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}


# --------------------------------------------------------------------------- values


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
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
        }
        if self.axes is not None:
            out.update(self.axes.config())
        return out


@dataclass(frozen=True)
class ConstantInit:
    value: float

    def canonical(self) -> dict[str, Any]:
        return {"constant": self.value}


@dataclass(frozen=True)
class KeepInit:
    def canonical(self) -> str:
        return "keep"


Init = Union[VarianceScalingInit, ConstantInit, KeepInit]


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

    @property
    def label(self) -> str:
        """How messages name the rule: ``rules[2] (line 14)``."""
        return f"rules[{self.index}]" + (f" (line {self.line})" if self.line else "")

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"init": self.init.canonical()}
        for key in ("match", "op", "input"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.optional:
            out["optional"] = True
        if self.fans_from:
            out["fans_from"] = self.fans_from
        return out


@dataclass(frozen=True)
class Spec:
    seed: int
    rules: tuple[Rule, ...]
    layout: str = "auto"
    unmatched: str = "keep"
    source: str = "<spec>"
    warnings: tuple[Problem, ...] = ()

    def canonical(self) -> dict[str, Any]:
        return {
            "vsconf": 1,
            "seed": self.seed,
            "layout": self.layout,
            "unmatched": self.unmatched,
            "rules": [rule.canonical() for rule in self.rules],
        }

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()

    def with_seed(self, seed: int) -> Spec:
        return dataclasses.replace(self, seed=seed)


# --------------------------------------------------------------------------- schema


@functools.lru_cache(maxsize=1)
def schema_text() -> str:
    """The JSON Schema of format 1, as shipped inside the package."""
    return resources.files("vsconf").joinpath("vsconf.schema.json").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_text()))


# --------------------------------------------------------------------------- YAML with positions


class _Document:
    """The YAML data (``yaml.safe_load`` semantics) plus the position of every node."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.problems: list[Problem] = []
        self.values: dict[PathKey, tuple[int, int]] = {}
        self.keys: dict[PathKey, tuple[int, int]] = {}
        self.data: Any = None
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                self._walk(node, ())
                self.data = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            self.problems.append(self._yaml_problem(exc, text))
        except yaml.YAMLError as exc:  # unmarked errors (encoding...) have no position
            self.problems.append(Problem(source, 0, 0, "", f"invalid YAML: {exc}"))
        finally:
            loader.dispose()

    def _yaml_problem(self, exc: yaml.MarkedYAMLError, text: str) -> Problem:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or "syntax error"
        if mark is not None and mark.index < len(text) and text[mark.index] == "\t":
            problem = "a tab character; YAML indents with spaces only"
        elif "\t" in problem:
            problem = problem.replace("'\\t'", "a tab")
        message = f"invalid YAML: {problem}"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        return Problem(self.source, line, column, "", message)

    def _walk(self, node: yaml.Node, path: PathKey) -> None:
        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
                child = path + (key,)
                if key in seen:
                    self.problems.append(
                        Problem(
                            self.source,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            format_path(child),
                            f"duplicate key {key!r} (first given at line {seen[key]})",
                        )
                    )
                    continue
                seen[key] = key_node.start_mark.line + 1
                self.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                self._walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, path + (index,))

    def problem(self, path: Iterable[str | int], message: str, *, at_key: bool = False) -> Problem:
        path = tuple(path)
        position = (self.keys.get(path) if at_key else None) or self._nearest(path)
        return Problem(self.source, position[0], position[1], format_path(path), message)

    def _nearest(self, path: PathKey) -> tuple[int, int]:
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (0, 0))


def format_path(path: Iterable[str | int]) -> str:
    """``("rules", 1, "init", "mode")`` -> ``rules[1].init.mode``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- messages


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}
_NUMBER_LIKE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _bound(value: Any) -> str:
    return "2**63 - 1" if value == 2**63 - 1 else repr(value)


def _choices(values: Iterable[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def _schema_problems(doc: _Document, error: jsonschema.ValidationError) -> list[Problem]:
    path = tuple(error.absolute_path)
    schema, instance, kind = error.schema, error.instance, error.validator
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        return [
            doc.problem(
                path + (key,),
                f"unknown key {key!r}" + (did_you_mean(key, allowed) or f"; allowed keys: {_choices(allowed)}"),
                at_key=True,
            )
            for key in instance
            if key not in allowed
        ]
    if kind == "required":
        return [
            doc.problem(path, f"missing required key {key!r}")
            for key in error.validator_value
            if key not in instance
        ]
    if kind == "dependentRequired":
        return [
            doc.problem(path + (key,), f"`{key}` needs {' and '.join(f'`{r}`' for r in needed)} beside it", at_key=True)
            for key, needed in error.validator_value.items()
            if key in instance and any(r not in instance for r in needed)
        ]
    if kind in ("anyOf", "oneOf"):
        if "x-vsconf-message" in schema:
            return [doc.problem(path, schema["x-vsconf-message"])]
        return _branch_problems(doc, error)
    return [doc.problem(path, _message(error))]


def _message(error: jsonschema.ValidationError) -> str:
    kind, value, instance = error.validator, error.validator_value, error.instance
    if kind == "enum":
        return f"{instance!r} is not one of {_choices(value)}" + did_you_mean(instance, value)
    if kind == "const":
        return f"must be {value!r}, got {_describe(instance)}"
    if kind == "type":
        types = [value] if isinstance(value, str) else list(value)
        message = f"expected {' or '.join(_TYPE_WORDS[t] for t in types)}, got {_describe(instance)}"
        if isinstance(instance, str) and _NUMBER_LIKE.match(instance) and {"number", "integer"} & set(types):
            message += f" (YAML 1.1 reads {instance} as a string: write it with a dot, e.g. 1.0e-2)"
        return message
    if kind == "minItems":
        return "must not be empty" if value == 1 else f"needs at least {value} items"
    if kind == "minLength":
        return "must not be empty"
    if kind == "minimum":
        return f"must be >= {_bound(value)}, got {instance!r}"
    if kind == "maximum":
        return f"must be <= {_bound(value)}, got {instance!r}"
    if kind == "exclusiveMinimum":
        return f"must be > {_bound(value)}, got {instance!r}"
    if kind == "exclusiveMaximum":
        return f"must be < {_bound(value)}, got {instance!r}"
    if kind == "uniqueItems":
        repeated = sorted({json.dumps(v) for v in instance if instance.count(v) > 1})
        return f"repeats {', '.join(repeated)}"
    return error.message


def _branch_problems(doc: _Document, error: jsonschema.ValidationError) -> list[Problem]:
    """For a failed oneOf/anyOf, explain the branch meant for this kind of value."""
    branches: dict[int, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = {
        index: errors
        for index, errors in branches.items()
        if not any(e.validator == "type" and tuple(e.absolute_path) == tuple(error.absolute_path) for e in errors)
    }
    if not fitting:
        types = []
        for branch in error.validator_value:
            t = branch.get("type")
            types.extend([t] if isinstance(t, str) else t or [])
        words = " or ".join(dict.fromkeys(_TYPE_WORDS[t] for t in types))
        return [doc.problem(error.absolute_path, f"expected {words}, got {_describe(error.instance)}")]
    best = min(fitting.values(), key=len)
    return [p for sub in best for p in _schema_problems(doc, sub)]


# --------------------------------------------------------------------------- semantic checks


@functools.lru_cache(maxsize=1)
def _onnx_ops() -> dict[str, list[list[str]]]:
    """Formal input names of every operator the installed onnx knows, per op type."""
    import onnx.defs

    ops: dict[str, list[list[str]]] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        ops.setdefault(schema.name, []).append([i.name for i in schema.inputs])
    return ops


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class _Checker:
    """Checks of meaning that a schema cannot express; collects problems and warnings."""

    def __init__(self, doc: _Document):
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
        for i, pattern in enumerate(_as_list(rule.get("match", []))):
            where = path + ("match",) + ((i,) if isinstance(rule["match"], list) else ())
            if isinstance(pattern, str) and pattern.startswith(REGEX_PREFIX):
                try:
                    re.compile(pattern[len(REGEX_PREFIX) :])
                except re.error as exc:
                    self.errors.append(self.doc.problem(where, f"invalid regular expression: {exc}"))
        ops = [op for op in _as_list(rule.get("op", [])) if isinstance(op, str)]
        known = _onnx_ops()
        lowered = {name.lower(): name for name in known}
        for i, op in enumerate(ops):
            if op in known or "." in op:
                continue
            where = path + ("op",) + ((i,) if isinstance(rule["op"], list) else ())
            problem = self.doc.problem(where, f"{op!r} is not an ONNX operator" + did_you_mean(op, known))
            # Op types are case-sensitive: 'conv' is a typo of 'Conv', while an unknown
            # name may be a custom operator and only earns a warning.
            (self.errors if op.lower() in lowered else self.warnings).append(problem)
        if ops and all(op in known for op in ops):
            formal = list(dict.fromkeys(name for op in ops for names in known[op] for name in names))
            for i, name in enumerate(_as_list(rule.get("input", []))):
                if isinstance(name, str) and name not in formal:
                    where = path + ("input",) + ((i,) if isinstance(rule["input"], list) else ())
                    self.errors.append(
                        self.doc.problem(
                            where,
                            f"{'/'.join(ops)} has no input {name!r}; its inputs are {_choices(formal)}"
                            + did_you_mean(name, formal),
                        )
                    )
        init = rule.get("init")
        if isinstance(init, dict):
            if "class_name" in init:
                if isinstance(init.get("config"), dict):
                    self.vs_mapping(init["config"], path + ("init", "config"))
            elif "constant" not in init:
                self.vs_mapping(init, path + ("init",))

    def vs_mapping(self, mapping: Mapping[str, Any], path: PathKey) -> None:
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
                for axis in _as_list(axes.get(role, [])):
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


# --------------------------------------------------------------------------- normalisation


def _variance_scaling(mapping: Mapping[str, Any], preset: str | None, defaults: Mapping[str, Any]) -> VarianceScalingInit:
    """Precedence: keys written in the init > its preset > the spec's defaults > TF1's defaults."""
    merged: dict[str, Any] = dict(_VS_DEFAULTS)
    merged.update({k: v for k, v in defaults.items() if k != "dtype"})
    if preset is not None:
        merged.update(zip(("scale", "mode", "distribution"), PRESETS[preset]))
    merged.update({k: v for k, v in mapping.items() if k not in ("preset", "dtype")})
    return VarianceScalingInit(
        scale=float(merged["scale"]),
        mode=merged["mode"],
        distribution=merged["distribution"],
        seed=merged.get("seed"),
        axes=axes_from_config(merged),
    )


def _init(value: Any, defaults: Mapping[str, Any]) -> Init:
    if isinstance(value, str):
        if value == "keep":
            return KeepInit()
        if value in CONSTANTS:
            return ConstantInit(CONSTANTS[value])
        return _variance_scaling({}, value, defaults)
    if "constant" in value:
        return ConstantInit(float(value["constant"]))
    if "class_name" in value:
        name, config = value["class_name"], value["config"]
        if name in ("Zeros", "Ones"):
            return ConstantInit(0.0 if name == "Zeros" else 1.0)
        if name == "Constant":
            return ConstantInit(float(config["value"]))
        return _variance_scaling(config, KERAS_PRESETS.get(name), defaults)
    return _variance_scaling(value, value.get("preset"), defaults)


def _normalise(data: Mapping[str, Any], doc: _Document, warnings: list[Problem]) -> Spec:
    defaults = data.get("defaults", {})
    rules = []
    for index, rule in enumerate(data["rules"]):
        rules.append(
            Rule(
                index=index,
                init=_init(rule["init"], defaults),
                match=tuple(_as_list(rule.get("match", []))),
                op=tuple(_as_list(rule.get("op", []))),
                input=tuple(_as_list(rule.get("input", []))),
                optional=bool(rule.get("optional", False)),
                fans_from=rule.get("fans_from"),
                line=doc.values.get(("rules", index), (0, 0))[0],
            )
        )
    return Spec(
        seed=data["seed"],
        rules=tuple(rules),
        layout=data.get("layout", "auto"),
        unmatched=data.get("unmatched", "keep"),
        source=doc.source,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- entry points


def parse_spec(text: str, source: str = "<string>") -> Spec:
    """Parse, validate and normalise spec ``text``; raises :class:`SpecError` with every problem."""
    doc = _Document(text, source)
    problems = list(doc.problems)
    warnings: list[Problem] = []
    data = doc.data
    if not problems:
        if data is None:
            problems.append(
                Problem(source, 1, 1, "", "the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`")
            )
        elif not isinstance(data, dict):
            problems.append(doc.problem((), f"expected a mapping at the top of the spec, got {_describe(data)}"))
        else:
            typed: set[PathKey] = set()
            for error in _validator().iter_errors(data):
                # A value of the wrong type fails every branch below it too; the first
                # (outermost) type error says it best.
                if error.validator == "type":
                    if tuple(error.absolute_path) in typed:
                        continue
                    typed.add(tuple(error.absolute_path))
                problems.extend(_schema_problems(doc, error))
            checker = _Checker(doc)
            checker.run(data)
            problems.extend(checker.errors)
            warnings.extend(checker.warnings)
    if problems:
        unique = {(p.line, p.column, p.path, p.message): p for p in problems}
        raise SpecError(sorted(unique.values(), key=lambda p: (p.line, p.column, p.path, p.message)))
    warnings.sort(key=lambda p: (p.line, p.column))
    return _normalise(data, doc, warnings)


def load_spec(path: str | Path) -> Spec:
    """Load the spec file at ``path``; raises :class:`SpecError` with every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError([Problem(str(path), 0, 0, "", f"cannot read the spec: {reason}")]) from None
    return parse_spec(text, source=str(path))
