from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def vsconf_exe() -> str:
    """The installed ``vsconf`` console script: beside this Python first, then on PATH."""
    beside = Path(sys.executable).with_name("vsconf")
    exe = str(beside) if beside.exists() else shutil.which("vsconf")
    assert exe, "the vsconf console script is not installed: pip install -e ."
    return exe


# Whole modules that run many subprocesses or big models: CI runs them, the fast loop
# (`python -m pytest -m "not slow"`) leaves them out.
_SLOW_MODULES = ("test_bad_inputs.py", "test_fuzz_api.py", "test_fuzz_onnx.py", "test_fuzz_spec.py")
_SLOW_TESTS = ("test_light_models_materialize_and_run",)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in _SLOW_MODULES or item.originalname in _SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
