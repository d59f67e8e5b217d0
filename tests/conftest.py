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
