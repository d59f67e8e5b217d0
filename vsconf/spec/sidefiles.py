"""Files read beside a spec: μP's base shapes and ``--vars`` files.

Both are read as a spec is -- a regular file, bounded, UTF-8, YAML bounded in depth and
nodes -- and every problem names the file and, where there is one, its line.

μP's base shapes: the ``.bsh`` file a spec's ``base_shapes:`` names.  The `mup` package writes it with ``save_base_shapes``/``make_base_shapes``: a YAML mapping of
parameter names to their shapes in the base model, a dimension that does not scale with
width written as null.

A ``--vars`` file: a JSON or YAML mapping whose numeric (and boolean) top-level entries
become vars -- a Hugging Face ``config.json`` as it is; its other entries are left out.
"""

from __future__ import annotations

from pathlib import Path

from vsconf.errors import Problem, SpecError
from vsconf.spec.document import Document
from vsconf.spec.expressions import numeric_entries
from vsconf.spec.reading import read_spec_text
from vsconf.spec.words import describe

BaseShapes = dict[str, tuple[int | None, ...]]


def _document(path: Path, what: str, where: str, spec_source: str) -> Document:
    source = str(path)
    try:
        text = read_spec_text(path, source)
    except SpecError as error:
        reasons = "; ".join(p.message.replace("cannot read the spec: ", "") for p in error.problems)
        raise SpecError([Problem(spec_source, 0, 0, where, f"cannot read {what} {source}: {reasons}")]) from None
    doc = Document(text.removeprefix("\ufeff"), source)
    if doc.problems:
        raise SpecError(list(doc.problems))
    return doc


def read_vars_file(path: Path) -> dict[str, int | float]:
    """The vars a ``--vars`` file gives: its numeric and boolean top-level entries.

    Raises:
        SpecError: The file cannot be read, is not YAML (JSON is YAML), or is not a mapping.
    """
    doc = _document(path, "the vars file", "", str(path))
    if not isinstance(doc.data, dict):
        raise SpecError([doc.problem((), f"expected a mapping of names to numbers (a JSON object), got {describe(doc.data)}")])
    return numeric_entries(doc.data)


def read_base_shapes(path: Path, spec_source: str) -> BaseShapes:
    """The base shapes in the file at ``path`` (the spec ``spec_source`` names it).

    Raises:
        SpecError: The file cannot be read, is not YAML, or is not a mapping of names to
            lists of non-negative integers (or nulls).
    """
    doc = _document(path, "the base shapes", "base_shapes", spec_source)
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError([doc.problem((), f"expected a mapping of tensor names to base shapes (mup's .bsh), got {describe(data)}")])
    shapes: BaseShapes = {}
    problems = []
    for name, shape in data.items():
        ok = isinstance(name, str) and isinstance(shape, list) and all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape
        )
        if not ok:
            problems.append(doc.problem((name,), f"expected a list of dimensions (integers >= 0, or null), got {describe(shape)}"))
            continue
        shapes[name] = tuple(shape)
    if problems:
        raise SpecError(problems)
    return shapes
