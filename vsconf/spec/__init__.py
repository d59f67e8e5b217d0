"""The spec: read it, load its YAML, validate it (schema, then meaning), and normalise it.

:func:`load_spec` and :func:`parse_spec` are the entry points; every problem is reported at
once, each as ``FILE:LINE:COL: PATH: message`` with the line and column of the offending YAML
node.  A valid spec becomes a :class:`Spec` whose rules each carry one explicit init; its
canonical JSON and SHA-256 identify it.

Contracts on hostile input: :func:`load_spec` and :func:`parse_spec` raise only
:class:`~vsconf.errors.SpecError` (or ``TypeError`` for an argument of the wrong type), and
their work is bounded whatever the input:

* only regular files are read (a FIFO or a device is refused before it is opened for
  reading), and at most :data:`MAX_SPEC_BYTES` bytes of them;
* the text must be UTF-8 (the position of the first bad byte is reported) and hold only
  characters YAML allows;
* the YAML document may nest at most :data:`MAX_DEPTH` levels and may have at most
  :data:`MAX_NODES` nodes once every alias is expanded (a recursive alias is refused), so
  an alias bomb stops at the alias that would overflow it;
* an integer is read only when it has at most :data:`MAX_INT_DIGITS` digits, so no
  message ever holds a huge number; ``integer`` in the schema means a YAML integer (not
  ``7.0``), and every number must be finite;
* a ``re:`` pattern is compiled by :mod:`vsconf.saferegex`, which matches in linear time
  and refuses what it cannot match so (backreferences, lookarounds, huge repeats).

The rooms, in the order a spec passes through them:

* :mod:`~vsconf.spec.reading` -- the file, bounded, and its UTF-8;
* :mod:`~vsconf.spec.document` -- the YAML, bounded, with the position of every node;
* :mod:`~vsconf.spec.schema` -- the JSON Schema and its errors in words;
* :mod:`~vsconf.spec.expressions` -- the vars, and the numbers written as expressions;
* :mod:`~vsconf.spec.checks` -- what the schema cannot say (patterns, op names, axes);
* :mod:`~vsconf.spec.normalise` -- presets and defaults expanded into explicit inits;
* :mod:`~vsconf.spec.rules` -- the result: :class:`Spec`, :class:`Rule` and the inits;
* :mod:`~vsconf.spec.words` -- how messages show values and paths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsconf.errors import Problem, SpecError
from vsconf.spec.checks import meaning_problems, pattern_problem
from vsconf.spec.document import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_NODES,
    Document,
    PathKey,
    line_column,
)
from vsconf.spec.expressions import Expanded, Param, expand, given_vars
from vsconf.spec.normalise import KERAS_PRESETS, KERAS_RANDOM, normalise
from vsconf.spec.reading import MAX_SPEC_BYTES, read_spec_text, too_large
from vsconf.spec.rules import (
    REGEX_PREFIX,
    ConstantInit,
    Init,
    KeepInit,
    Parts,
    SameAsInit,
    Rule,
    Spec,
    VarianceScalingInit,
)
from vsconf.spec.schema import schema_problems, schema_text
from vsconf.spec.words import describe, format_path

__all__ = [
    "KERAS_PRESETS",
    "KERAS_RANDOM",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_NODES",
    "MAX_SPEC_BYTES",
    "REGEX_PREFIX",
    "ConstantInit",
    "Init",
    "KeepInit",
    "Param",
    "Parts",
    "SameAsInit",
    "PathKey",
    "Rule",
    "Spec",
    "VarianceScalingInit",
    "format_path",
    "line_column",
    "load_spec",
    "parse_spec",
    "pattern_problem",
    "schema_text",
]


def parse_spec(text: str, source: str = "<string>", *, vars: Mapping[str, Any] | None = None) -> Spec:
    r"""Parse, validate and normalise spec ``text``; raises :class:`SpecError` with every problem.

    Args:
        text: The spec's YAML (or JSON) text.
        source: The name messages give the spec, e.g. its file name.
        vars: Numbers the spec's expressions read, over the spec's own ``vars:`` (what
            ``--vars`` and ``--var`` give); booleans count as 1/0.

    Returns:
        The :class:`Spec`.

    Raises:
        TypeError: ``text`` or ``source`` is not a str, or ``vars`` not a mapping.
        ValueError: A var of ``vars`` is not a name with a finite number.
        SpecError: The spec is not valid; ``problems`` lists every problem, in file order,
            each with its line, column and path into the document.

    Example:
        >>> import vsconf
        >>> spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {preset: he_normal, mode: fan_out}\n")
        >>> spec.rules[0].init.scale, spec.rules[0].init.mode
        (2.0, 'fan_out')
        >>> try:
        ...     vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normall\n", "init.yaml")
        ... except vsconf.SpecError as error:
        ...     print(error.problems[0].line, error.problems[0].path)
        5 rules[0].init
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_spec: text must be a str, got {type(text).__name__}")
    if not isinstance(source, str):
        raise TypeError(f"parse_spec: source must be a str, got {type(source).__name__}")
    if vars is not None and not isinstance(vars, Mapping):
        raise TypeError(f"parse_spec: vars must be a mapping of names to numbers, got {type(vars).__name__}")
    given = given_vars(vars or {})
    if len(text) > MAX_SPEC_BYTES:
        raise too_large(source)
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM takes no column
    doc = Document(text, source)
    problems = list(doc.problems)
    warnings: list[Problem] = []
    data = doc.data
    # The YAML may have been read with problems of its own (a duplicate key...): the data
    # is still checked then, so that every problem is reported at once.
    if data is None and not problems:
        problems.append(
            Problem(source, 1, 1, "", "the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`")
        )
    elif data is not None and not isinstance(data, dict):
        problems.append(doc.problem((), f"expected a mapping at the top of the spec, got {describe(data)}"))
    expanded = None
    if isinstance(data, dict):
        expanded = expand(doc, data, given)
        problems.extend(_validation_problems(doc, data, expanded, warnings))
    if problems:
        unique = {(p.line, p.column, p.path, p.message): p for p in problems}
        raise SpecError(sorted(unique.values(), key=lambda p: (p.line, p.column, p.path, p.message)))
    assert expanded is not None
    warnings.sort(key=lambda p: (p.line, p.column))
    return normalise(expanded.data, doc, warnings, expanded)


def _validation_problems(doc: Document, data: dict[Any, Any], expanded: Expanded, warnings: list[Problem]) -> list[Problem]:
    """Problems the schema finds, then the expressions', then those only vsconf's own
    checks find (on the spec with its var-only expressions computed)."""
    problems = schema_problems(doc, data)
    errors, found = meaning_problems(doc, expanded.data)
    warnings.extend(found)
    return problems + expanded.errors + errors


def load_spec(path: str | os.PathLike[str], *, vars: Mapping[str, Any] | None = None) -> Spec:
    """Load the spec file at ``path``; raises :class:`SpecError` with every problem found.

    The file must be a regular file of at most :data:`MAX_SPEC_BYTES` bytes of UTF-8.

    Args:
        path: The spec file (YAML; JSON is YAML too).
        vars: Numbers over the spec's own ``vars:``, as for :func:`parse_spec`.

    Returns:
        The :class:`Spec`, whose ``source`` is ``path``.

    Raises:
        TypeError: ``path`` is not a str or path.
        SpecError: The file cannot be read, or the spec is not valid (every problem at once).

    Example:
        >>> import vsconf
        >>> spec = vsconf.load_spec("init.yaml")     # a spec file in the current folder
        >>> spec.source, spec.layout, [rule.match for rule in spec.rules]
        ('init.yaml', 'torch', [('*.bias',), ('*.weight',)])
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_spec: path must be a str or an os.PathLike, got {type(path).__name__}")
    path = Path(path)
    source = str(path)
    return parse_spec(read_spec_text(path, source), source=source, vars=vars)
