"""Every boundary check, in one place: what the Python API and the command line accept.

The API raises ``TypeError`` for an argument of the wrong type and ``ValueError`` for a
bad value, each naming the argument (``Argument `seed` must satisfy 0 <= seed < 2**63.
Received: -1``); the command line's argument types (``cli_*``) check the same bounds and
answer in argparse's words.  Nothing here touches a file, except :func:`spec`, which
loads a spec given by path.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Union

from vsconf.schedule import Scheduler, parse_scheduler
from vsconf.threads import available_cores
from vsconf.spec import Spec, load_spec
from vsconf.spec.expressions import given_vars, parse_var
from vsconf.streams import MAX_SEED

SpecLike = Union[Spec, str, os.PathLike]
# Threads beyond this only cost memory: the values never depend on the count.
MAX_JOBS = 1024
UNTIE_MODES = ("all", "conflicts")
_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


# --------------------------------------------------------------------------- the API's


def path(value: Any, name: str, *, optional: bool = False) -> Path | None:
    """A path argument: str or os.PathLike, not empty, no NUL (None if ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str):
            if not text or "\0" in text:
                raise ValueError(f"Argument `{name}` must be a non-empty path without NUL characters. Received: {value!r}")
            return Path(text)
    expected = "a path (str or os.PathLike)" + (" or None" if optional else "")
    raise TypeError(f"Argument `{name}` must be {expected}. Received: {type_name(value)}")


def spec(value: Any, seed: int | None, given: Any = None) -> Spec:
    """A :class:`~vsconf.Spec`, or a spec file's path (loaded with the vars ``given``), with
    ``seed`` in place of its own."""
    given = spec_vars(given)
    if not isinstance(value, Spec):
        value = load_spec(path(value, "spec"), vars=given)
    elif given:
        raise ValueError(
            "Argument `vars` applies to a spec file; a Spec was loaded with its vars already: "
            "pass them to vsconf.load_spec(path, vars=...) or vsconf.parse_spec(text, vars=...)"
        )
    return value if seed is None else value.with_seed(seed)


def spec_vars(value: Any) -> dict[str, int | float] | None:
    """``vars``: None, or a mapping of names to numbers (booleans count as 1/0)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"Argument `vars` must be a mapping of names to numbers or None. Received: {type_name(value)}")
    try:
        return given_vars(value)
    except ValueError as exc:
        raise ValueError(f"Argument `vars`: {exc}") from None


def spec_file(value: Spec) -> Path | None:
    """The file a spec was loaded from, if it still exists (a parsed string has none)."""
    return Path(value.source) if os.path.isfile(value.source) else None


def seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not _is_integer(value):
        raise TypeError(f"Argument `seed` must be an integer or None. Received: {type_name(value)}")
    if not 0 <= int(value) < MAX_SEED:
        raise ValueError(f"Argument `seed` must satisfy 0 <= seed < 2**63. Received: {short(int(value))}")
    return int(value)


def jobs(value: Any) -> int:
    """Threads generating values: default every core this process may use."""
    if value is None:
        return available_cores()
    if isinstance(value, bool) or not _is_integer(value):
        raise TypeError(f"Argument `jobs` must be a positive integer or None. Received: {type_name(value)}")
    if not 1 <= value <= MAX_JOBS:
        raise ValueError(f"Argument `jobs` must be from 1 to {MAX_JOBS}, or None. Received: {short(int(value))}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    if not _is_bool(value):
        raise TypeError(f"Argument `{name}` must be True or False. Received: {type_name(value)}")
    return bool(value)


def untie(value: Any) -> bool | str:
    """``untie``: False, True (= "all": every shared float tensor), "all" or "conflicts"
    (only the shared tensors whose consumers disagree)."""
    if isinstance(value, str):
        if value not in UNTIE_MODES:
            raise ValueError(f"Argument `untie` must be True, False, 'all' or 'conflicts'. Received: {short(value)}")
        return value
    if not _is_bool(value):
        raise TypeError(f"Argument `untie` must be True, False, 'all' or 'conflicts'. Received: {type_name(value)}")
    return "all" if value else False


def progress(value: Any) -> Callable[[int, int, str], None] | None:
    if value is not None and not callable(value):
        raise TypeError(f"Argument `progress` must be callable or None. Received: {type_name(value)}")
    return value


def checkpoint_options(
    scheduler: Any, dask_workers: Any, shard_size: Any, task_size: Any, workers: int
) -> tuple[Scheduler, int | None, int | None]:
    """(where tasks run, shard bytes, task bytes) from ``apply``'s checkpoint arguments;
    None for a size not given (the model's own layout, the default task size)."""
    if not isinstance(scheduler, str):
        raise TypeError(f"Argument `scheduler` must be a string. Received: {type(scheduler).__name__}")
    if dask_workers is not None and (isinstance(dask_workers, bool) or not isinstance(dask_workers, int) or dask_workers < 1):
        raise ValueError(f"Argument `dask_workers` must be a positive integer or None. Received: {dask_workers!r}")
    try:
        where = parse_scheduler(scheduler, workers, dask_workers)
    except ValueError as exc:
        raise ValueError(f"Argument `scheduler`: {exc}") from None
    sizes: list[int | None] = []
    for name, value in (("shard_size", shard_size), ("task_size", task_size)):
        if value is None:
            sizes.append(None)
        elif isinstance(value, str):
            try:
                sizes.append(parse_size(value))
            except ValueError as exc:
                raise ValueError(f"Argument `{name}`: {exc}") from None
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            sizes.append(value)
        else:
            raise ValueError(f"Argument `{name}` must be a size in bytes or a string like '5GB'. Received: {value!r}")
    return where, sizes[0], sizes[1]


def parse_size(text: str) -> int:
    """``"5GB"`` -> 5*10**9, ``"2GiB"`` -> 2*2**30, ``"500MB"``, ``"1048576"`` (bytes); as
    Hugging Face's ``max_shard_size``, decimal units are powers of 10.  ValueError if bad."""
    match = _SIZE.match(text) if isinstance(text, str) and len(text) <= 40 else None
    unit = match.group(2).lower() if match else None
    if unit not in _UNITS and unit != "":
        raise ValueError(f"expected a size like 5GB, 500MB, 2GiB or a number of bytes, got {text!r}")
    size = int(Decimal(match.group(1)) * _UNITS.get(unit, 1))  # exact: "1.5GB" is 1500000000
    if not 1 <= size < 2**63:
        raise ValueError(f"expected a size from 1 byte to 2**63 bytes, got {text!r}")
    return size


# --------------------------------------------------------------------------- the command line's


def cli_alpha(text: str) -> float:
    """``--alpha``: a probability strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def cli_seed(text: str) -> int:
    value = _cli_integer(text, "an integer, 0 <= seed < 2**63")
    if not 0 <= value < MAX_SEED:
        raise argparse.ArgumentTypeError(f"must satisfy 0 <= seed < 2**63, got {value}")
    return value


def cli_var(text: str) -> tuple[str, int | float]:
    """``--var NAME=VALUE``: a name and a number (or an expression of numbers)."""
    try:
        return parse_var(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--var {text!r}: ")) from None


def cli_jobs(text: str) -> int:
    value = _cli_integer(text, f"an integer from 1 to {MAX_JOBS}")
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {MAX_JOBS}, got {value}")
    return value


def cli_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cli_scheduler(text: str) -> str:
    try:
        parse_scheduler(text, 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _cli_integer(text: str, expected: str) -> int:
    digits = text.strip().lstrip("+-")
    if len(digits) > 30 or not digits.isdigit():
        shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown!r}")
    return int(text)


# --------------------------------------------------------------------------- how values are shown


def type_name(value: Any) -> str:
    """``int 3``, ``str 'x'``, ``None``: a received value in a message."""
    return "None" if value is None else f"{type(value).__name__} {short(value)}"


def short(value: Any) -> str:
    """A value's repr, cut short (and never the digits of a huge integer)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value))) if abs(value) < 10**4000 else 'thousands of'} digits"
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**4000 else "a huge integer"
    return text if len(text) <= 80 else text[:77] + "..."


def _is_integer(value: Any) -> bool:
    """An int, or a NumPy integer (without importing NumPy when no array is around)."""
    if isinstance(value, int):
        return True
    numpy = _numpy_if_loaded()
    return numpy is not None and isinstance(value, numpy.integer)


def _is_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    numpy = _numpy_if_loaded()
    return numpy is not None and isinstance(value, numpy.bool_)


def _numpy_if_loaded():
    import sys

    return sys.modules.get("numpy")
