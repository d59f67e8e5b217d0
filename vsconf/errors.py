"""The error family: every user-facing failure says where it happened."""

from __future__ import annotations

from dataclasses import dataclass


class VsconfError(Exception):
    """Base class of every error vsconf raises on purpose (bad input, not bugs)."""


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
        where = self.source
        if self.line:
            where += f":{self.line}:{self.column}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class SpecError(VsconfError):
    """A spec failed to load or validate; carries every problem found, in file order."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ModelError(VsconfError):
    """A model or state dict cannot be read, written or initialized as asked."""


class MatchError(VsconfError):
    """Rules and tensors do not fit together (a rule matches nothing, a tensor is unmatched...)."""
