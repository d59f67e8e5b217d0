"""A rule's expressions bound to one tensor: the names they read, their numbers, their problems.

A spec's numbers that read a tensor's names (:class:`~vsconf.spec.expressions.Param`) are
computed here, for each tensor a rule fills: the spec's vars, the tensor's ``fan_in``,
``fan_out``, ``numel``, ``ndim`` and ``shape``, the named groups of the rule's regex on its
name, and μP's base fans.  A problem names the tensor and, where the spec holds the text
verbatim, the culprit's character; the planner goes on to find the others.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from vsconf.errors import Problem, rule_problem
from vsconf.expr import parsed
from vsconf.fans import axes_fans
from vsconf.inits.formula import FormulaInit
from vsconf.inits.random import MIN_ACCEPTANCE, NEVER_REACHED, TruncatedNormalInit, UniformInit
from vsconf.matching import TensorInfo
from vsconf.spec import Rule, Spec, VarianceScalingInit
from vsconf.spec.expressions import BASE_NAMES, ExprError, Param, tensor_names


class Binder:
    """Binds rules' expressions to tensors for one plan.

    ``quiet_fans``: the fans the spec's layout reads from a tensor (the planner's);
    ``part_of``: ``NAME[part k]`` -> ``NAME``; ``errors``: where problems go.
    """

    def __init__(
        self,
        spec: Spec,
        by_name: Mapping[str, TensorInfo],
        part_of: Mapping[str, str],
        base_shapes: Mapping[str, tuple[int | None, ...]] | None,
        quiet_fans: Callable[[TensorInfo], tuple[int, int]],
        errors: list[Problem],
    ):
        self.spec = spec
        self.by_name = by_name
        self.part_of = part_of
        self.base_shapes = base_shapes
        self.quiet_fans = quiet_fans
        self.errors = errors
        self.vars = dict(spec.vars)
        self.bad_names: dict[str, str] = {}  # names of the current tensor that have no number, and why
        self.never_cut: dict[int, Problem] = {}  # rules whose per-tensor truncation never happens
        self._per_tensor: dict[int, bool] = {}

    def reads_tensor(self, rule: Rule) -> bool:
        """Whether a rule has expressions computed per tensor (made once per rule)."""
        found = self._per_tensor.get(rule.index)
        if found is None:
            found = self._per_tensor[rule.index] = any(value is None for _, _, value in rule.shown)
        return found

    def names(self, tensor: TensorInfo, rule: Rule, init: Any) -> dict[str, Any] | None:
        """The names ``rule``'s expressions read for ``tensor``; None when they read none of
        the tensor's (their numbers are the spec's)."""
        if not self.reads_tensor(rule):
            return None
        if isinstance(init, VarianceScalingInit) and init.axes is not None:
            try:
                fan_in, fan_out = axes_fans(tensor.shape, init.axes)
            except ValueError:
                fan_in, fan_out = self.quiet_fans(tensor)  # the fill reports it
        else:
            fan_in, fan_out = self.quiet_fans(tensor)
        names: dict[str, Any] = {**self.vars, **tensor_names(tensor.shape, fan_in, fan_out)}
        self.bad_names = {}
        parent = self.part_of.get(tensor.name, tensor.name)
        for pattern in rule.match:
            if not pattern.startswith("re:"):
                continue
            found = _fullmatch(pattern[3:], parent)
            if found is None:
                continue
            for group, text in found.groupdict().items():
                if text is not None and _GROUP_INTEGER.fullmatch(text):
                    names[group] = int(text)  # the nearer binding: over a var of the same name
                else:
                    self.bad_names.setdefault(group, f"the group {group!r} of {pattern!r} captured {text!r} in {parent!r}, not an integer")
            break
        if self.base_shapes is not None:
            whole = self.by_name[parent].shape
            base = self.base_shapes.get(parent)
            if base is None or len(base) != len(whole):
                why = f"the base shapes have no tensor {parent!r}" if base is None else (
                    f"the base shape {list(base)} of {parent!r} has not its {len(whole)} dimensions"
                )
                for name in BASE_NAMES:
                    self.bad_names[name] = why
            else:
                # null: a dimension that does not scale (mup's notation); a part: its share
                base = tuple(w if b is None else b for b, w in zip(base, whole))
                base = tuple(b * t // w if w else b for b, t, w in zip(base, tensor.shape, whole))
                base_in, base_out = self.quiet_fans(dataclasses.replace(tensor, name=parent, shape=base))
                names.update(base_fan_in=base_in, base_fan_out=base_out, width_mult=fan_in / base_in if base_in else 0.0)
        return names

    def value(self, value: Any, names: dict[str, Any] | None, tensor: TensorInfo, rule: Rule) -> Any:
        """``value`` itself, or the number its expression gives for ``tensor``; None after
        recording why it has none."""
        if not isinstance(value, Param):
            return value
        if names is None:  # a Param always reads a name of the tensor's
            names = self.names(tensor, rule, None) or {}
        for name in sorted(value.expr.names()):
            if name in self.bad_names:
                self.problem(value, self.bad_names[name], None, tensor, rule)
                return None
        try:
            return value.value(names)
        except ExprError as error:
            self.problem(value, error.message, error.offset, tensor, rule)
        except ValueError as error:
            self.problem(value, str(error), None, tensor, rule)
        return None

    def problem(self, param: Any, message: str, offset: int | None, tensor: TensorInfo, rule: Rule) -> None:
        path, line, column = param.where if isinstance(param, Param) else (f"rules[{rule.index}]", rule.line, 0)
        if offset is not None and column and isinstance(param, Param) and param.exact:
            column += offset  # the column of the text's first character, plus the culprit's offset
        text = f"{param.text!r}: " if isinstance(param, Param) and not message.startswith(repr(param.text)) else ""
        self.errors.append(Problem(self.spec.source, line, column, path, text + message, tensor=tensor.name, rule=rule.index))

    def bound(self, init: Any, names: dict[str, Any] | None, tensor: TensorInfo, rule: Rule) -> Any:
        """``init`` with each of its expressions computed for ``tensor`` (a formula stays a
        text, computed per element); None when one has no value (recorded)."""
        if names is None or isinstance(init, FormulaInit):
            return init
        changes = {}
        for item in dataclasses.fields(init):
            current = getattr(init, item.name)
            if isinstance(current, Param):
                changes[item.name] = self.value(current, names, tensor, rule)
                if changes[item.name] is None:
                    return None
        if not changes:
            return init
        init = dataclasses.replace(init, **changes)
        problem = None
        if isinstance(init, TruncatedNormalInit):
            if init.a is not None and init.b is not None and init.a >= init.b:
                problem = f"truncated_normal: the upper bound {init.b!r} must be above the lower bound {init.a!r}"
            elif init.acceptance() < MIN_ACCEPTANCE:
                problem = f"truncated_normal: the bounds keep {init.acceptance():.2g} of the normal; vsconf needs at least {MIN_ACCEPTANCE:g}"
            elif min(-init.z_bounds()[0], init.z_bounds()[1]) >= NEVER_REACHED and rule.index not in self.never_cut:
                self.never_cut[rule.index] = rule_problem(
                    self.spec.source, rule,
                    f"truncated_normal: for {tensor.name!r} (and maybe others) the bounds lie {NEVER_REACHED:g} standard "
                    "deviations or more from the mean: this truncation never happens (a normal init says so plainly)",
                )
        elif isinstance(init, UniformInit) and init.low >= init.high:
            problem = f"uniform: high ({init.high!r}) must be above low ({init.low!r})"
        if problem:
            self.errors.append(rule_problem(self.spec.source, rule, problem, tensor=tensor.name))
            return None
        return init

    def shown(self, rule: Rule, names: dict[str, Any] | None, prefixes: tuple[str, ...] = ()) -> tuple[tuple[str, str, Any], ...]:
        """The rule's expressions with their values for one tensor (or part): those under
        ``prefixes`` when given."""
        if not rule.shown:
            return ()
        out = []
        for at, text, value in rule.shown:
            if prefixes and not at.startswith(prefixes):
                continue
            if value is None and names is not None:
                try:
                    value = parsed(text).evaluate(names)
                    value = value if isinstance(value, (int, float)) else None  # a formula: per element
                except (ExprError, ValueError):
                    value = None  # reported where the value is used
            out.append((at, text, value))
        return tuple(out)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _fullmatch(pattern: str, name: str) -> re.Match[str] | None:
    """The groups of a ``re:`` pattern on a name it matched (vsconf's own matcher decided the
    match in linear time; Python's ``re`` only reads the groups of that match)."""
    return _compiled(pattern).fullmatch(name)


_GROUP_INTEGER = re.compile(r"[+-]?[0-9]{1,15}")
