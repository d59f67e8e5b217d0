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
    """

    def __init__(self, *args, cli_message: str | None = None):
        super().__init__(*args)
        self.cli_message = cli_message if cli_message is not None else (str(args[0]) if args else "")


@dataclass(frozen=True)
class Problem:
    """One finding in a spec: where it is and what is wrong.

    ``line`` and ``column`` are 1-based; 0 means the position is unknown.
    ``path`` is the path into the document, e.g. ``rules[1].init.mode``.
    """

    source: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return self.format()

    def format(self, severity: str = "") -> str:
        """``FILE:LINE:COL: PATH: [severity: ]message``."""
        where = self.source
        if self.line:
            where += f":{self.line}:{self.column}"
        if self.path:
            where += f": {self.path}"
        return f"{where}: {severity + ': ' if severity else ''}{self.message}"


class SpecError(VsconfError):
    """A spec failed to load or validate; carries every problem found, in file order."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ModelError(VsconfError):
    """A model or state dict cannot be read, written or initialized as asked."""


class MatchError(VsconfError):
    """Rules and tensors do not fit together (a rule matches nothing, a tensor is unmatched...)."""


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """``"; did you mean 'fan_in'?"`` when a choice is close to ``word``, else ``""``."""
    if not isinstance(word, str):
        return ""
    choices = [c for c in choices if isinstance(c, str)]
    lowered = {c.lower(): c for c in choices}
    close = [lowered[word.lower()]] if word.lower() in lowered else []
    close = close or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
