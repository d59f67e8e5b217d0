from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from vsconf.dtypes import DtypeTable, dtype_named
from vsconf.initializers import FLOAT_DTYPES


def test_a_table_gives_numpys_and_ml_dtypes_dtypes_by_name():
    table = DtypeTable({"a": "float32", "b": "bfloat16", "c": "float8_e4m3fn", "d": "bool"})
    assert table["a"] == np.dtype(np.float32) and table["d"] == np.dtype(np.bool_)
    assert table["b"] == np.dtype(ml_dtypes.bfloat16) and table["c"] == np.dtype(ml_dtypes.float8_e4m3fn)
    assert list(table) == ["a", "b", "c", "d"] and len(table) == 4 and "b" in table and "z" not in table
    assert table.get("z", "none") == "none" and dict(table.names) == {"a": "float32", "b": "bfloat16", "c": "float8_e4m3fn", "d": "bool"}
    with pytest.raises(KeyError):
        table["z"]
    with pytest.raises(TypeError):
        table.names["e"] = "int8"  # read-only


def test_float_dtypes_still_index_by_name():
    assert FLOAT_DTYPES["bfloat16"] == np.dtype(ml_dtypes.bfloat16)
    assert list(FLOAT_DTYPES) == ["float16", "bfloat16", "float32", "float64"]
    assert dtype_named("float16") == np.dtype(np.float16)


def test_ml_dtypes_loads_only_when_a_name_needs_it():
    code = (
        "import sys\n"
        "from vsconf.initializers import FLOAT_DTYPES, float_dtype\n"
        "float_dtype('float32'); FLOAT_DTYPES['float16']; sorted(FLOAT_DTYPES)\n"
        "before = 'ml_dtypes' in sys.modules\n"
        "print(before, float_dtype('bfloat16').name, 'ml_dtypes' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "bfloat16", "True"]


def test_the_modules_example_runs():
    import doctest

    import vsconf.dtypes

    assert doctest.testmod(vsconf.dtypes) == (0, 2)
