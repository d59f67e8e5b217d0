"""The JSON Schema of the spec format, its validator, and its errors as located problems.

The schema ships inside the package (``vsconf/vsconf.schema.json``, read by
:func:`schema_text`) and is what ``vsconf schema`` prints.  It is checked with YAML's
notions rather than JSON's: ``integer`` means a YAML integer (``7``, not ``7.0``), and a
number must be finite (``.nan`` and ``.inf`` are YAML, not JSON).

:func:`schema_problems` reports every error, each as a :class:`~vsconf.errors.Problem` at the
YAML node it is about, in words: an unknown key with the nearest allowed one, an enum miss
with the choices, a failed ``oneOf`` explained by the branch meant for that kind of value.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import re
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

from vsconf.errors import Problem, did_you_mean
from vsconf.spec.document import Document, PathKey
from vsconf.spec.words import choices, describe, show

if TYPE_CHECKING:  # loaded when a spec is first checked, not when vsconf starts
    import jsonschema

_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}
# YAML 1.1 reads 08 and 09 (not octal) as strings.
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9_]+$")


@functools.lru_cache(maxsize=1)
def schema_text() -> str:
    """The JSON Schema of format 1, as shipped inside the package."""
    return resources.files("vsconf").joinpath("vsconf.schema.json").read_text(encoding="utf-8")


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 7.0 as an integer; YAML tells 7 from 7.0, and a seed must be 7.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker: Any, instance: Any) -> bool:
    # JSON has no NaN or infinity; YAML has .nan and .inf, and they must not pass as numbers.
    return _is_integer(checker, instance) or (isinstance(instance, float) and math.isfinite(instance))


def _item_key(item: Any) -> str:
    """A hashable stand-in for a list item: equal items (by JSON) have equal keys."""
    try:
        return json.dumps(item, sort_keys=True)
    except (TypeError, ValueError):
        return repr(item)


def _unique_items(validator: Any, unique: bool, instance: Any, schema: Any) -> Iterable[jsonschema.ValidationError]:
    # jsonschema's own check falls back to comparing every pair of items: quadratic.
    if unique and validator.is_type(instance, "array"):
        keys = [_item_key(item) for item in instance]
        if len(set(keys)) < len(keys):
            from jsonschema import ValidationError

            yield ValidationError("has repeated items")


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    """The schema's validator, with YAML's notion of integers and finite numbers only."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    cls = jsonschema.validators.extend(base, validators={"uniqueItems": _unique_items}, type_checker=checker)
    return cls(json.loads(schema_text()))


def schema_problems(doc: Document, data: dict[Any, Any]) -> list[Problem]:
    """Every error the schema finds in ``data``, located in ``doc``; one per wrong type."""
    problems = []
    typed: set[PathKey] = set()
    for error in _validator().iter_errors(data):
        # A value of the wrong type fails every branch below it too; the first
        # (outermost) type error says it best.
        if error.validator == "type":
            if tuple(error.absolute_path) in typed:
                continue
            typed.add(tuple(error.absolute_path))
        problems.extend(_error_problems(doc, error))
    return problems


def _bound(value: Any) -> str:
    return "2**63 - 1" if value == 2**63 - 1 else repr(value)


def _error_problems(doc: Document, error: jsonschema.ValidationError) -> list[Problem]:
    path = tuple(error.absolute_path)
    schema, instance, kind = error.schema, error.instance, error.validator
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        return [
            doc.problem(
                path + (key,),
                f"unknown key {show(key)}" + (did_you_mean(key, allowed) or f"; allowed keys: {choices(allowed)}"),
                at_key=True,
            )
            for key in instance
            if key not in allowed and isinstance(key, str)  # other keys: see Document._check_key
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
        return f"{show(instance)} is not one of {choices(value)}" + did_you_mean(instance, value)
    if kind == "const":
        return f"must be {value!r}, got {describe(instance)}"
    if kind == "type":
        types = [value] if isinstance(value, str) else list(value)
        words = [_TYPE_WORDS[t] for t in types]
        if isinstance(instance, float) and not math.isfinite(instance) and "number" in types:
            words[types.index("number")] = "a finite number"
        message = f"expected {' or '.join(words)}, got {describe(instance)}"
        if isinstance(instance, str) and _LEADING_ZERO.match(instance) and {"number", "integer"} & set(types):
            message += f" (YAML 1.1 reads {instance} as a string, as it starts with 0 but is not octal)"
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
        counts = collections.Counter(_item_key(v) for v in instance)
        return f"repeats {', '.join(sorted(key for key, n in counts.items() if n > 1))}"
    return error.message


def _branch_problems(doc: Document, error: jsonschema.ValidationError) -> list[Problem]:
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
        words = []
        for branch in error.validator_value:
            t = branch.get("type")
            for kind in [t] if isinstance(t, str) else t or []:
                if kind == "string" and "expression" in branch.get("description", ""):
                    words.append("an expression (a string)")
                elif kind == "number" and isinstance(error.instance, float) and not math.isfinite(error.instance):
                    words.append("a finite number")
                else:
                    words.append(_TYPE_WORDS[kind])
        said = " or ".join(dict.fromkeys(words))
        return [doc.problem(error.absolute_path, f"expected {said}, got {describe(error.instance)}")]
    best = min(fitting.values(), key=len)
    return [p for sub in best for p in _error_problems(doc, sub)]
