"""Every case of the hostile-input corpus in ``tests/bad_inputs/`` (see its harness)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from bad_inputs.harness import Case, run_case

_MODULES = sorted(p.stem for p in (Path(__file__).parent / "bad_inputs").glob("cases_*.py"))
CASES: list[Case] = [case for name in _MODULES for case in importlib.import_module(f"bad_inputs.{name}").CASES]


def test_the_corpus_is_wide_and_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert len(CASES) >= 80


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input(case: Case, tmp_path: Path):
    run_case(case, tmp_path)


def test_the_corpus_table_lists_every_case_as_it_is():
    from bad_inputs.table import table

    written = (Path(__file__).parent / "bad_inputs" / "CORPUS.md").read_text(encoding="utf-8")
    assert written == table(), "regenerate it: python tests/bad_inputs/table.py > tests/bad_inputs/CORPUS.md"
