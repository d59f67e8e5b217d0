"""Expressions in a spec: its ``vars``, the numbers written as text, and rules' ``when``.

Any numeric parameter of a spec may be a string holding an expression of
:mod:`vsconf.expr` (``std: "initializer_range / sqrt(2 * n_layer)"``).  This room reads
them after the schema passed and before vsconf's other checks:

* the vars: the spec's ``vars:`` mapping (each a number or an expression over the vars
  written before it), overridden by what the caller gives (``--vars FILE``, then
  ``--var NAME=VALUE``, or ``vars=`` in Python);
* every expression is parsed (an error points at its character: ``file:line:col``);
  one that reads only vars is computed at once and its number replaces the text in the
  data, so the checks and the normalisation that follow see numbers -- ``plan`` still
  shows the text beside its value;
* one that reads names known only per tensor (``fan_in``, ``fan_out``, ``numel``,
  ``ndim``, ``shape[i]``, the named groups of the rule's regexes, μP's ``base_fan_in``,
  ``base_fan_out`` and ``width_mult``, a formula's ``i0, i1, ...``) becomes a
  :class:`Param`, computed by the planner for each tensor; any other name is an error now,
  with a "did you mean";
* a rule's ``when`` reads only vars: a rule whose ``when`` is false is left out of
  matching (it may match nothing without an error).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vsconf.errors import Problem
from vsconf.expr import ExprError, Expr, parse
from vsconf.inits import KINDS, NUMERIC_SLOTS
from vsconf.spec.document import Document, PathKey, as_list
from vsconf.spec.words import format_path

# Names every tensor gives its rule's expressions.
TENSOR_NAMES = ("fan_in", "fan_out", "numel", "ndim", "shape")
# Names a spec with `base_shapes:` or `base_model:` gives (μP).
BASE_NAMES = ("base_fan_in", "base_fan_out", "width_mult")
_INDEX_NAME = re.compile(r"i(0|[1-9][0-9]?)")  # a formula's index names, i0 ... i99
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The parameters that may be expressions, per kind of init (vsconf.inits.KINDS): name -> slot
# (what its value must be: see `slot_problem`).
_PARAMS: Mapping[str, Mapping[str, str]] = {
    kind.key: {name: slot for name, (slot, _) in kind.params.items() if slot in NUMERIC_SLOTS} for kind in KINDS
}
_VS_PARAMS = {"scale": "positive", "negative_slope": "number"}
_KERAS_PARAMS = {
    "scale": "positive", "mean": "number", "stddev": "positive", "minval": "number", "maxval": "number",
    "value": "number", "gain": "number",
}


def slot_problem(slot: str, value: int | float) -> str | None:
    """Why ``value`` cannot fill a parameter of kind ``slot``, or None when it can:
    ``positive`` (a std, a scale, a cutoff), ``count`` (an integer >= 1: groups, a part's
    size), ``row`` (an integer), ``number`` (any finite number)."""
    if slot == "positive" and not value > 0:
        return "must be > 0"
    if slot == "count" and not value >= 1:
        return "must be >= 1"
    return None


@dataclass(frozen=True)
class Param:
    """A number the spec writes as an expression that reads names known only per tensor.

    ``where``: (path, line, column) of the text in the spec; ``slot``: what the number
    must be (:func:`slot_problem`): ``row`` and ``count`` take integers.
    """

    text: str
    expr: Expr = field(repr=False, compare=False)
    where: tuple[str, int, int] = field(default=("", 0, 0), compare=False)
    slot: str = "number"
    # `where`'s column is the text's first character (an error adds its offset), not only
    # the scalar's (escapes or a folded scalar: the file does not hold the text verbatim).
    exact: bool = field(default=False, compare=False)

    def canonical(self) -> str:
        return self.text

    def value(self, names: Mapping[str, Any]) -> int | float:
        """The number for one tensor's ``names``; raises ExprError, or ValueError when the
        value does not fit the slot (a fraction for a row, a std of 0)."""
        value = number_of(self.expr.evaluate(names), self.slot in ("row", "count"), self.text)
        problem = slot_problem(self.slot, value)
        if problem:
            raise ValueError(f"{self.text!r} is {value!r}; it {problem}")
        return value


def number_of(value: Any, integer: bool, text: str) -> int | float:
    """An expression's value as the parameter takes it: an int where one is needed."""
    if not isinstance(value, (int, float)):
        raise ValueError(f"{text!r} gives an array, not a number")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{text!r} is {value!r}; expected an integer")
        return int(value)
    return float(value)


RESERVED = frozenset({*TENSOR_NAMES, *BASE_NAMES, "pi", "e"})


def var_problem(name: Any, value: Any) -> str | None:
    """Why ``name = value`` cannot be a var given from outside the spec, or None."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        return f"{name!r} is not a name (letters, digits and _, not starting with a digit)"
    if name in RESERVED or _INDEX_NAME.fullmatch(name):
        return f"{name!r} is a name vsconf gives itself"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"var {name!r} must be a finite number or a boolean, got {value!r}"
    if isinstance(value, int) and abs(value) > 2**53:
        return f"var {name!r} is beyond the integer range ±2**53"
    return None


def given_vars(given: Mapping[Any, Any]) -> dict[str, int | float]:
    """Vars given from outside the spec (Python's ``vars=``): numbers and booleans (as 1/0),
    checked; entries of other types -- strings, lists, mappings, None -- are left out, as
    a ``--vars`` file's are, so that a model config's ``to_dict()`` can be passed as it is.
    Raises ValueError naming the first bad number or name."""
    out: dict[str, int | float] = {}
    for name, value in given.items():
        if value is None or isinstance(value, (str, bytes, list, tuple, dict, set)):
            continue
        value = int(value) if isinstance(value, bool) else value
        problem = var_problem(name, value)
        if problem:
            raise ValueError(problem)
        out[name] = value
    return out


def numeric_entries(mapping: Mapping[Any, Any]) -> dict[str, int | float]:
    """The entries of a ``--vars`` file that can be vars: its numeric and boolean top-level
    entries with names (a Hugging Face ``config.json`` as it is: strings, lists, mappings and
    nulls are left out, as are names that are not names and names vsconf gives itself).

    Raises:
        ValueError: A number that cannot be a var (NaN, an infinity, an integer beyond
            ±2**53), naming its entry: never silently dropped.
    """
    out: dict[str, int | float] = {}
    for name, value in mapping.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, bool) and var_problem(name, 0) is None:
                out[name] = int(value)
            continue
        if var_problem(name, 0) is not None:
            continue  # not a name an expression can read
        problem = var_problem(name, value)
        if problem:
            raise ValueError(problem)
        out[name] = value
    return out


def parse_var(text: str) -> tuple[str, int | float]:
    """``NAME=VALUE`` of ``--var``: VALUE a number, or an expression of numbers alone."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"--var {text!r}: expected NAME=VALUE")
    try:
        expr = parse(value.strip())
        if expr.names():
            raise ExprError(f"the value reads {', '.join(sorted(expr.names()))}; give a number", 0)
        number = number_of(expr.evaluate({}), False, value) if not isinstance(expr.constant, int) else expr.constant
    except (ExprError, ValueError) as error:
        raise ValueError(f"--var {text!r}: {getattr(error, 'message', error)}") from None
    problem = var_problem(name, number)
    if problem:
        raise ValueError(f"--var {text!r}: {problem}")
    return name, number


@dataclass
class Expanded:
    """What :func:`expand` gives: the data with numbers in place of var-only expressions,
    the vars, the shown (text, value) per rule, the rules left out by ``when``."""

    data: dict[str, Any]
    vars: dict[str, int | float]
    shown: dict[int, tuple[tuple[str, str, Any], ...]]
    inactive: frozenset[int]
    errors: list[Problem]


def expand(doc: Document, data: Mapping[str, Any], given: Mapping[str, Any] | None) -> Expanded:
    """Read the spec's vars and expressions (see the module's docstring)."""
    reader = _Reader(doc, dict(data))
    reader.read_vars(data.get("vars"), given or {})
    reader.read()
    return Expanded(reader.data, reader.vars, reader.shown, frozenset(reader.inactive), reader.errors)


class _Reader:
    def __init__(self, doc: Document, data: dict[str, Any]):
        self.doc = doc
        self.data = data
        self.vars: dict[str, int | float] = {}
        self.errors: list[Problem] = []
        self.shown: dict[int, tuple[tuple[str, str, Any], ...]] = {}
        self.inactive: list[int] = []
        self.failed: set[str] = set()  # vars with no value (their problem is reported once)
        self.base = "base_shapes" in data or "base_model" in data

    def problem(self, path: PathKey, message: str, offset: int | None = None, text: str | None = None) -> Problem:
        """A problem at ``path``, at the character ``offset`` of its ``text`` where the file
        holds the text verbatim (else at the scalar)."""
        line, column = self.doc.values.get(path, (0, 0))
        if not line:
            return self.doc.problem(path, message)
        start = self.doc.text_column(line, column, text) if offset is not None and text is not None else None
        return Problem(self.doc.source, line, column if start is None else start + offset, format_path(path), message)

    def read_vars(self, written: Any, given: Mapping[str, Any]) -> None:
        for name, value in (written.items() if isinstance(written, dict) else ()):
            path = ("vars", name)
            if not isinstance(name, str):
                continue  # the schema says what is wrong
            if not _IDENTIFIER.fullmatch(name) or name in RESERVED or _INDEX_NAME.fullmatch(name):
                why = "is a name vsconf gives itself" if _IDENTIFIER.fullmatch(name) else "is not a name (letters, digits, _)"
                self.errors.append(self.doc.problem(path, f"var {name!r} {why}", at_key=True))
                continue
            if name in given:
                self.vars[name] = given[name]
                continue
            if isinstance(value, bool):
                self.vars[name] = int(value)
            elif isinstance(value, (int, float)) and math.isfinite(value):
                self.vars[name] = value
            elif isinstance(value, str):
                computed = self.compute(value, path, set(self.vars), "a var may read only the vars written before it")
                if computed is not None:
                    self.vars[name] = computed
            if name not in self.vars:
                # its own problem is reported (here or by the schema); what reads it is not
                self.failed.add(name)
        for name, value in given.items():
            self.vars.setdefault(name, value)

    def compute(self, text: str, path: PathKey, known: set[str], why: str, integer: bool = False) -> int | float | None:
        """``text``'s value from the vars, or None after recording the problem."""
        expr = self.parse(text, path)
        if expr is None or expr.names() & self.failed:
            return None
        try:
            expr.check_names(known)
            return number_of(expr.evaluate(self.vars), integer, text)
        except ExprError as error:
            message = error.message + (f" ({why})" if "unknown name" in error.message else "")
            self.errors.append(self.problem(path, message, error.offset, text))
        except ValueError as error:
            self.errors.append(self.problem(path, str(error)))
        return None

    def parse(self, text: str, path: PathKey) -> Expr | None:
        if not text:
            return None  # the schema says it must not be empty
        try:
            return parse(text)
        except ExprError as error:
            self.errors.append(self.problem(path, error.message, error.offset, text))
            return None

    def read(self) -> None:
        defaults = self.data.get("defaults")
        if isinstance(defaults, dict):
            self.data["defaults"] = defaults = dict(defaults)
            for key, slot in _VS_PARAMS.items():
                if isinstance(defaults.get(key), str):
                    path = ("defaults", key)
                    value = self.compute(defaults[key], path, set(self.vars), "defaults may read only vars")
                    problem = None if value is None else slot_problem(slot, value)
                    if problem:
                        self.errors.append(self.problem(path, f"{defaults[key]!r} is {value!r}; it {problem}"))
                    elif value is not None:
                        defaults[key] = value
        rules = self.data.get("rules")
        if not isinstance(rules, list):
            return
        self.data["rules"] = rules = copy.deepcopy(rules)
        for index, rule in enumerate(rules):
            if isinstance(rule, dict):
                self.rule(index, rule)

    def rule(self, index: int, rule: dict[str, Any]) -> None:
        path: PathKey = ("rules", index)
        if isinstance(rule.get("when"), str):
            value = self.compute(rule["when"], path + ("when",), set(self.vars), "`when` reads only vars")
            if value is not None and not value:
                self.inactive.append(index)
        elif isinstance(rule.get("when"), (bool, int, float)) and not rule["when"]:
            self.inactive.append(index)
        groups = _groups(rule)
        known = {*self.vars, *TENSOR_NAMES, *groups, *(BASE_NAMES if self.base else ())}
        shown: list[tuple[str, str, Any]] = []
        for container, key, slot_path, slot, names in _slots(rule, path):
            integer = slot in ("row", "count")
            text = container[key]
            expr = self.parse(text, slot_path)
            if expr is None or expr.names() & self.failed:
                continue
            allowed = known | names
            try:
                expr.check_names(allowed)
            except ExprError as error:
                self.errors.append(self.problem(slot_path, error.message, error.offset, text))
                continue
            label = format_path(slot_path[2:])
            if expr.names() <= set(self.vars) - groups and not names:  # a group hides a var of its name
                try:
                    value = number_of(expr.evaluate(self.vars), integer, text)
                except ExprError as error:
                    self.errors.append(self.problem(slot_path, error.message, error.offset, text))
                    continue
                except ValueError as error:
                    self.errors.append(self.problem(slot_path, str(error)))
                    continue
                problem = slot_problem(slot, value)
                if problem:
                    self.errors.append(self.problem(slot_path, f"{text!r} is {value!r}; it {problem}"))
                    continue
                container[key] = value
                shown.append((label, text, value))
            elif key == "negative_slope":  # it makes the scale, once for the rule
                self.errors.append(self.problem(slot_path, "negative_slope may read only the vars"))
            else:
                line, column = self.doc.values.get(slot_path, (0, 0))
                start = self.doc.text_column(line, column, text)
                where = (format_path(slot_path), line, column if start is None else start)
                container[key] = Param(text, expr, where, slot, exact=start is not None)
                shown.append((label, text, None))
        if shown:
            self.shown[index] = tuple(shown)


def _groups(rule: Mapping[str, Any]) -> set[str]:
    """The named groups of the rule's ``re:`` patterns."""
    names: set[str] = set()
    for pattern in as_list(rule.get("match", [])):
        if isinstance(pattern, str) and pattern.startswith("re:"):
            try:
                names.update(re.compile(pattern[3:]).groupindex)
            except (re.error, RecursionError, OverflowError, MemoryError):
                pass  # the pattern's own check says what is wrong
    return names


def _slots(rule: dict[str, Any], path: PathKey) -> Iterator[tuple[Any, Any, PathKey, str, frozenset[str]]]:
    """Every place of ``rule`` holding an expression's text: (container, key, path, slot
    (what the value must be, :func:`slot_problem`), extra names it may read)."""
    yield from _init_slots(rule.get("init"), path + ("init",))
    rows = rule.get("zero_rows")
    for i, row in enumerate(rows if isinstance(rows, list) else []):
        if isinstance(row, str):
            yield rows, i, path + ("zero_rows", i), "row", frozenset()
    parts = rule.get("parts")
    if isinstance(parts, dict):
        sizes = parts.get("sizes")
        for i, size in enumerate(sizes if isinstance(sizes, list) else []):
            if isinstance(size, str):
                yield sizes, i, path + ("parts", "sizes", i), "count", frozenset()
        if isinstance(parts.get("count"), str):
            yield parts, "count", path + ("parts", "count"), "count", frozenset()
        inits = parts.get("inits")
        for i, init in enumerate(inits if isinstance(inits, list) else []):
            yield from _init_slots(init, path + ("parts", "inits", i))


def _init_slots(init: Any, path: PathKey) -> Iterator[tuple[Any, Any, PathKey, str, frozenset[str]]]:
    if not isinstance(init, dict):
        return
    if isinstance(init.get("formula"), str):
        yield init, "formula", path + ("formula",), "formula", FORMULA_NAMES
        return
    if isinstance(init.get("constant"), str):
        yield init, "constant", path + ("constant",), "number", frozenset()
        return
    if "class_name" in init:
        config = init.get("config")
        for key, slot in _KERAS_PARAMS.items():
            if isinstance(config, dict) and isinstance(config.get(key), str):
                yield config, key, path + ("config", key), slot, frozenset()
        return
    for kind, params in _PARAMS.items():
        if kind in init:
            inner = init[kind]
            for key, slot in params.items():
                if isinstance(inner, dict) and isinstance(inner.get(key), str):
                    yield inner, key, path + (kind, key), slot, frozenset()
            return
    for key, slot in _VS_PARAMS.items():
        if isinstance(init.get(key), str):
            yield init, key, path + (key,), slot, frozenset()


# A formula reads its element's indices: i0 ... i99 (a tensor has at most 64 axes here).
FORMULA_NAMES = frozenset(f"i{k}" for k in range(100))


def tensor_names(shape: tuple[int, ...], fan_in: int, fan_out: int) -> dict[str, Any]:
    """The names every tensor gives its rule's expressions."""
    return {"fan_in": fan_in, "fan_out": fan_out, "numel": math.prod(shape), "ndim": len(shape), "shape": shape}
