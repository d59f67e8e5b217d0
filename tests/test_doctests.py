"""The examples in the docstrings run: every module that owns a name of ``vsconf.__all__``
has its doctests run here, and every exported class and function has a docstring with
Args, Returns (functions), Raises and an example.

The examples run in a fresh folder holding the files they name:

* ``init.yaml`` -- a spec: ``layout: torch``, biases zeros, weights He normal, seed 7;
* ``model.npz`` -- a state dict: ``fc.weight`` [4, 8], ``fc.bias`` [4] (float32 zeros) and
  ``steps`` (an int64 scalar);
* ``model.onnx`` -- a Gemm layer ``y = x @ fc.weight + fc.bias`` with ``fc.weight`` [8, 4].
"""

from __future__ import annotations

import doctest
import importlib
import inspect

import numpy as np
import pytest
from onnx import helper
from onnx_builders import make_model, tensor, value

import vsconf

INIT_YAML = """\
vsconf: 1
seed: 7
layout: torch
rules:
  - match: "*.bias"
    init: zeros
  - match: "*.weight"
    init: he_normal
"""
MODULES = sorted(set(vsconf._HOME_OF.values()))
# Data, documented in their module's docstring (a constant cannot carry its own).
DATA = {"CONSTANTS", "PRESETS", "TRUNCATED_NORMAL_STD", "__version__"}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "init.yaml").write_text(INIT_YAML)
    np.savez(
        tmp_path / "model.npz",
        **{"fc.weight": np.zeros((4, 8), np.float32), "fc.bias": np.zeros(4, np.float32), "steps": np.array(0, np.int64)},
    )
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc")],
        "g",
        [value("x", [1, 8])],
        [value("y", [1, 4])],
        [tensor("fc.weight", np.zeros((8, 4), np.float32)), tensor("fc.bias", np.zeros(4, np.float32))],
    )
    (tmp_path / "model.onnx").write_bytes(make_model(graph).SerializeToString())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("module", MODULES)
def test_doctests_run(module, folder):
    imported = importlib.import_module(module)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(imported, module) if t.examples]
    assert tests, f"{module} has no doctests"
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed in {module} (see the output above)"


def _exported():
    return [name for name in vsconf.__all__ if name not in DATA]


@pytest.mark.parametrize("name", _exported())
def test_every_exported_name_has_a_google_docstring_with_an_example(name):
    obj = getattr(vsconf, name)
    doc = inspect.getdoc(obj) or ""
    sections = ["Args:", "Raises:", "Example"]
    if inspect.isfunction(obj):
        sections.append("Returns:")
    missing = [section for section in sections if section not in doc]
    assert not missing, f"vsconf.{name}'s docstring lacks {missing}"
    assert doctest.DocTestParser().get_examples(doc), f"vsconf.{name}'s example is not a doctest"


@pytest.mark.parametrize("name", sorted(DATA - {"__version__"}))
def test_exported_data_is_shown_in_its_modules_docstring(name):
    module = importlib.import_module(vsconf._HOME_OF[name])
    assert ">>> " in module.__doc__ and name in module.__doc__
