"""The error family: every user-facing failure says where it happened."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class VsconfError(Exception):
    """Base class of every error vsconf raises on purpose (bad input, not bugs).

    The message speaks to a Python caller; ``cli_message`` is the same error in the
    command line's words (``--force`` rather than ``force=True``) where they differ.
    Catch this to catch every :class:`SpecError`, :class:`MatchError` and :class:`ModelError`.

    Args:
        *args: The message (and anything else :class:`Exception` takes).
        cli_message: The message the command line prints instead; by default the message.

    Raises:
        Nothing itself; every function of the API raises its subclasses.

    Example:
        >>> import vsconf
        >>> first = vsconf.apply("model.npz", "init.yaml", output="copy.npz")
        >>> try:
        ...     vsconf.apply("model.npz", "init.yaml", output="copy.npz")     # it exists now
        ... except vsconf.VsconfError as error:
        ...     print(error)
        ...     print(error.cli_message)
        copy.npz: exists; pass force=True to overwrite it, or another output
        copy.npz: exists; use --force to overwrite it, or -o to write elsewhere
    """

    def __init__(self, *args, cli_message: str | None = None):
        super().__init__(*args)
        self.cli_message = cli_message if cli_message is not None else (str(args[0]) if args else "")


@dataclass(frozen=True)
class Problem:
    """One finding: which file, where in it, which tensor, and what is wrong.

    Every problem vsconf reports as a list is one of these: a spec that does not
    validate (:class:`SpecError`), rules and tensors that do not fit (:class:`MatchError`),
    and what :func:`vsconf.verify` finds (values that differ, a lock that disagrees).

    Args:
        source: The file the problem is in or was checked against (a spec, a model, a
            lock); ``""`` when there is none.
        line: 1-based line in ``source``; 0 when unknown.
        column: 1-based column; 0 when unknown.  A problem with a line but no column
            (a rule's) shows the line after the path: ``rules[2] (line 14)``.
        path: The path into the spec, e.g. ``rules[1].init.mode``; ``""`` for none.
        message: What is wrong, in words.
        tensor: The tensor the problem is about, if one is.
        rule: The index of the spec's rule the problem is about, if one is.

    Raises:
        Nothing: a problem is a value; :class:`SpecError` and :class:`MatchError` carry
        them, :func:`vsconf.verify` returns them.

    Example:
        >>> from vsconf import Problem
        >>> print(Problem("init.yaml", 7, 30, "rules[1].init.mode", "'fan-in' is not one of 'fan_in', 'fan_out', 'fan_avg'"))
        init.yaml:7:30: rules[1].init.mode: 'fan-in' is not one of 'fan_in', 'fan_out', 'fan_avg'
        >>> print(Problem("init.yaml", 4, 0, "rules[0]", "matches no tensor", rule=0))
        init.yaml: rules[0] (line 4): matches no tensor
        >>> print(Problem("m.npz", 0, 0, "", "1 of 2048 elements differ", tensor="fc.weight"))
        m.npz: tensor 'fc.weight': 1 of 2048 elements differ
    """

    source: str
    line: int
    column: int
    path: str
    message: str
    tensor: str | None = None
    rule: int | None = None

    def __str__(self) -> str:
        return self.format()

    def format(self, severity: str = "") -> str:
        """The problem as one line: ``FILE:LINE:COL: PATH: [severity: ][tensor 'NAME': ]message``.

        Args:
            severity: A word put before the message, e.g. ``"warning"``; none by default.

        Returns:
            The line, without a trailing newline.  Parts that are unknown are left out.

        Example:
            >>> from vsconf import Problem
            >>> Problem("init.yaml", 0, 0, "rules[3]", "never applies").format("warning")
            'init.yaml: rules[3]: warning: never applies'
        """
        where = self.source
        if self.line and self.column:
            where += f":{self.line}:{self.column}"
        parts = [where] if where else []
        if self.path:
            parts.append(self.path + (f" (line {self.line})" if self.line and not self.column else ""))
        if severity:
            parts.append(severity)
        if self.tensor is not None:
            parts.append(f"tensor {self.tensor!r}")
        parts.append(self.message)
        return ": ".join(parts)


def rule_problem(source: str, rule: Any, message: str, *, tensor: str | None = None) -> Problem:
    """A problem with the spec's rule ``rule`` (anything with ``index`` and ``line``)."""
    return Problem(source, rule.line, 0, f"rules[{rule.index}]", message, tensor=tensor, rule=rule.index)


class SpecError(VsconfError):
    r"""A spec failed to load or validate; carries every problem found, in file order.

    Args:
        problems: The :class:`Problem` records, each with its line, column and path.

    Raises:
        Nothing itself; raised by :func:`vsconf.load_spec`, :func:`vsconf.parse_spec` and
        every function that takes a spec's path.

    Example:
        >>> import vsconf
        >>> try:
        ...     vsconf.parse_spec("vsconf: 1\nseed: -1\nrules: []\n", "init.yaml")
        ... except vsconf.SpecError as error:
        ...     for problem in error.problems:
        ...         print(problem)
        init.yaml:2:7: seed: must be >= 0, got -1
        init.yaml:3:8: rules: must not be empty
    """

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ModelError(VsconfError):
    """A model or state dict cannot be read, written or initialized as asked.

    The message starts with the file and names the tensor or node where there is one.

    Args:
        *args: The message.
        cli_message: The command line's wording, where it differs.

    Raises:
        Nothing itself; raised by :func:`vsconf.plan`, :func:`vsconf.apply`,
        :func:`vsconf.verify` and :func:`vsconf.inspect`.

    Example:
        >>> import vsconf
        >>> vsconf.plan("missing.npz", "init.yaml")
        Traceback (most recent call last):
        ...
        vsconf.errors.ModelError: missing.npz: no such file
    """


class MatchError(VsconfError):
    r"""Rules and tensors do not fit together (a rule matches nothing, a tensor is unmatched...).

    ``problems`` holds every problem found, as :class:`Problem` records in the order they
    were found; the message is their lines.  A plain message makes one problem without a
    place.

    Args:
        problems: The problems, or one message.
        cli_message: The command line's wording, where it differs.

    Raises:
        Nothing itself; raised by :func:`vsconf.plan`, :func:`vsconf.apply`,
        :func:`vsconf.apply_state_dict` and :func:`vsconf.verify`.

    Example:
        >>> import numpy as np, vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: fc.wieght\n    init: zeros\n", "init.yaml")
        >>> try:
        ...     vsconf.apply_state_dict({"fc.weight": np.ones((2, 2), np.float32)}, spec)
        ... except vsconf.MatchError as error:
        ...     [(p.rule, p.line) for p in error.problems]
        ...     print(error)
        [(0, 4)]
        init.yaml: rules[0] (line 4): matches no tensor (match 'fc.wieght'); did you mean 'fc.weight'?
    """

    def __init__(self, problems: str | Iterable[Problem], *, cli_message: str | None = None):
        if isinstance(problems, str):
            self.problems: tuple[Problem, ...] = (Problem("", 0, 0, "", problems),)
        else:
            self.problems = tuple(problems)
        super().__init__("\n".join(problem.format() for problem in self.problems), cli_message=cli_message)


def printable(text: str) -> str:
    r"""``text`` as vsconf prints it: unchanged when every character is printable, else with
    each control character escaped as a Python ``repr`` writes it -- newlines, escapes,
    C0 and C1 controls, line and paragraph separators, bidirectional overrides and other
    format characters -- so that a crafted name never makes a line or a row that is not there.

    Example:
        >>> from vsconf.errors import printable
        >>> print(printable("fc.weight"), printable("a\nvsconf: error: b\x1b[2J\u2028\u202e"))
        fc.weight a\nvsconf: error: b\x1b[2J\u2028\u202e
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """``"; did you mean 'fan_in'?"`` when a choice is close to ``word``, else ``""``."""
    if not isinstance(word, str):
        return ""
    choices = [c for c in choices if isinstance(c, str)]
    lowered = {c.lower(): c for c in choices}
    close = [lowered[word.lower()]] if word.lower() in lowered else []
    close = close or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
