from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vsconf.cli import main
from vsconf.spec import schema_text

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(str(p) for p in (ROOT / "configs").glob("*.yaml"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_accepts_every_bundled_config(capsys):
    code, out, err = run(capsys, "validate", *CONFIGS)
    assert code == 0
    assert len(out.splitlines()) == len(CONFIGS)
    assert all(": valid (" in line for line in out.splitlines())
    # tf1_get_config.yaml keeps a TF1-era "normal": a warning on stderr, not a failure.
    assert "tf1_get_config.yaml:31:53: rules[4].init.distribution: warning: 'normal' is a deprecated alias" in err


def test_validate_reports_all_errors_of_all_files(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("vsconf: 1\nseed: -1\nrules:\n  - match: '*'\n    init: {mode: fan-in}\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, out, err = run(capsys, "validate", str(bad), CONFIGS[0], str(empty))
    assert code == 1
    assert out.splitlines() == [f"{CONFIGS[0]}: valid (6 rules, spec sha256 " + out.split("spec sha256 ")[1].strip()]
    assert err.splitlines() == [
        f"{bad}:2:7: seed: must be >= 0, got -1",
        f"{bad}:5:18: rules[0].init.mode: 'fan-in' is not one of 'fan_in', 'fan_out', 'fan_avg'; did you mean 'fan_in'?",
        f"vsconf: error: {bad}: 2 problems",
        f"{empty}:1:1: the spec is empty; expected a mapping with `vsconf: 1`, `seed` and `rules`",
        f"vsconf: error: {empty}: 1 problem",
    ]


def test_schema_prints_the_shipped_schema(capsys):
    code, out, _ = run(capsys, "schema")
    assert code == 0
    assert json.loads(out) == json.loads(schema_text())


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    assert "the following arguments are required: SPEC" in capsys.readouterr().err


def test_the_installed_command_and_python_m_agree(tmp_path):
    exe = shutil.which("vsconf")
    assert exe, "the vsconf console script is not installed: pip install -e ."
    bad = tmp_path / "bad.yaml"
    bad.write_text("vsconf: 1\nseed: 1\nrules: []\n")
    for command in ([exe], [sys.executable, "-m", "vsconf"]):
        done = subprocess.run(command + ["validate", str(bad)], capture_output=True, text=True)
        assert done.returncode == 1
        assert done.stderr == f"{bad}:3:8: rules: must not be empty\nvsconf: error: {bad}: 1 problem\n"
        assert "Traceback" not in done.stderr
