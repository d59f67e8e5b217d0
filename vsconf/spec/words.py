"""How messages show values and paths: cut short, in words, never a huge repr.

Every message about a spec goes through these, so that no value a user wrote (a key of a
megabyte, a date, ``.nan``) makes a message long or unreadable: ``show`` is a ``repr`` cut
short, ``describe`` names a value's YAML type with the value, ``format_path`` writes a path
into the document as ``rules[1].init.mode``.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from typing import Any

_SHOW_LIMIT = 60


def cut(text: str) -> str:
    """``text``, or its start and its length when it is too long for a message."""
    if len(text) <= _SHOW_LIMIT:
        return text
    return f"{text[:_SHOW_LIMIT - 20]}...({len(text)} characters)"


def show(value: Any) -> str:
    """``repr(value)`` for a message, cut short when long (a key, a pattern, an enum miss)."""
    if isinstance(value, str) and len(value) > _SHOW_LIMIT:
        return f"{value[:_SHOW_LIMIT - 20]!r}...({len(value)} characters)"
    return repr(value)


def describe(value: Any) -> str:
    """What ``value`` is, in YAML's words, with the value: ``an integer (7)``, ``.nan (not a number)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan (not a number)"
        if math.isinf(value):
            return f"{'-' if value < 0 else ''}.inf (infinity)"
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({show(value)})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"a date ({value.isoformat()})"
    if isinstance(value, bytes):
        return "binary data (!!binary)"
    if isinstance(value, set):
        return "a set (!!set)"
    return type(value).__name__


def choices(values: Iterable[Any]) -> str:
    """``'fan_in', 'fan_out', 'fan_avg'``: the allowed values, as a message lists them."""
    return ", ".join(repr(v) for v in values)


def format_path(path: Iterable[Any]) -> str:
    """``("rules", 1, "init", "mode")`` -> ``rules[1].init.mode``; a long key is cut short."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            part = cut(str(part))
            out += f".{part}" if out else part
    return out
