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


def test_the_installed_command_and_python_m_agree(tmp_path, vsconf_exe):
    exe = vsconf_exe
    bad = tmp_path / "bad.yaml"
    bad.write_text("vsconf: 1\nseed: 1\nrules: []\n")
    for command in ([exe], [sys.executable, "-m", "vsconf"]):
        done = subprocess.run(command + ["validate", str(bad)], capture_output=True, text=True)
        assert done.returncode == 1
        assert done.stderr == f"{bad}:3:8: rules: must not be empty\nvsconf: error: {bad}: 1 problem\n"
        assert "Traceback" not in done.stderr


# ---- apply / plan / verify on the bundled example state dict

EXAMPLE = ROOT / "examples" / "small_cnn.npz"
HE_CNN = ROOT / "configs" / "he_cnn.yaml"


def vsconf_cmd(exe, *args):
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True)


def test_installed_command_applies_the_bundled_example_and_the_stds_match_the_plan(tmp_path, vsconf_exe):
    import numpy as np
    from stats import assert_mean_zero, assert_std

    model = tmp_path / "small_cnn.npz"
    shutil.copy(EXAMPLE, model)
    planned = vsconf_cmd(vsconf_exe, "plan", model, HE_CNN, "--format", "json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    done = vsconf_cmd(vsconf_exe, "apply", model, HE_CNN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp_path / 'small_cnn.init.npz'}: 8 filled, 29 set to constants, 7 not float")
    before, after = np.load(model), np.load(tmp_path / "small_cnn.init.npz")
    checked = 0
    for entry in plan:
        values = after[entry["name"]]
        assert values.dtype.name == entry["dtype"] and list(values.shape) == entry["shape"]
        if entry["action"] == "fill":
            distribution = entry["init"]["distribution"]
            if distribution == "uniform":  # the classifier keeps PyTorch's default
                std = entry["limit"] / np.sqrt(3)
                assert np.abs(values).max() <= np.float32(entry["limit"])
            else:  # he_cnn.yaml's conv weights: untruncated normals with the planned std
                std = entry["std"]
            assert_std(values, std, distribution)
            assert_mean_zero(values, std)
            checked += 1
        elif entry["action"] == "constant":
            assert (values == entry["value"]).all()
        else:
            np.testing.assert_array_equal(values, before[entry["name"]])
    assert checked == 8


def test_plan_json_matches_the_table(capsys):
    from vsconf.commands import PLAN_COLUMNS

    code, table, err = run(capsys, "plan", str(EXAMPLE), str(HE_CNN))
    assert code == 0 and err == ""
    code, text, _ = run(capsys, "plan", str(EXAMPLE), str(HE_CNN), "--format", "json")
    entries = json.loads(text)
    lines = table.splitlines()
    header = lines[0]
    starts = [header.index(c) for c in PLAN_COLUMNS]
    rows = [[line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])] for line in lines[1:]]
    assert len(rows) == len(entries)
    for row, entry in zip(rows, entries):
        cells = dict(zip(PLAN_COLUMNS, row))
        assert cells["name"] == entry["name"]
        assert cells["shape"] == "[" + ",".join(map(str, entry["shape"])) + "]"
        assert cells["dtype"] == entry["dtype"]
        assert cells["rule"] == (entry["rule"] or "-")
        assert cells["fan_in"] == ("-" if entry["fan_in"] is None else str(entry["fan_in"]))
        assert cells["fan_out"] == ("-" if entry["fan_out"] is None else str(entry["fan_out"]))
        if entry.get("std") is not None:
            assert float(cells["std/limit"].removeprefix("std=")) == pytest.approx(entry["std"], rel=1e-5)
        elif entry.get("limit") is not None:
            assert float(cells["std/limit"].removeprefix("limit=")) == pytest.approx(entry["limit"], rel=1e-5)
        assert cells["fans from"] == (entry["fans_from"] or "-")


def test_dry_run_writes_nothing(tmp_path, capsys):
    model = tmp_path / "m.npz"
    shutil.copy(EXAMPLE, model)
    code, out, _ = run(capsys, "apply", str(model), str(HE_CNN), "--dry-run")
    assert code == 0 and out.startswith("name ")
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_apply_refuses_to_overwrite_then_force_and_in_place(tmp_path, capsys):
    model = tmp_path / "m.npz"
    shutil.copy(EXAMPLE, model)
    assert run(capsys, "apply", str(model), str(HE_CNN), "--quiet")[0] == 0
    code, out, err = run(capsys, "apply", str(model), str(HE_CNN))
    assert code == 1 and out == ""
    assert err == f"vsconf: error: {tmp_path / 'm.init.npz'}: exists; use --force to overwrite it, or -o to write elsewhere\n"
    assert run(capsys, "apply", str(model), str(HE_CNN), "--force", "--seed", "8")[0] == 0
    assert run(capsys, "apply", str(model), str(HE_CNN), "--in-place", "--quiet")[0] == 0
    assert run(capsys, "verify", str(model), str(HE_CNN))[0] == 0


def test_in_place_and_output_are_exclusive(capsys):
    with pytest.raises(SystemExit) as info:
        main(["apply", "m.npz", "s.yaml", "--in-place", "-o", "x.npz"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_verify_exit_codes_and_the_named_tensor(tmp_path, capsys):
    import numpy as np

    model = tmp_path / "m.npz"
    shutil.copy(EXAMPLE, model)
    lock = tmp_path / "m.lock.json"
    assert run(capsys, "apply", str(model), str(HE_CNN), "--lock", str(lock), "--seed", "123")[0] == 0
    out_path = tmp_path / "m.init.npz"
    code, out, err = run(capsys, "verify", str(out_path), str(HE_CNN), "--lock", str(lock))
    assert (code, out, err) == (0, f"{out_path}: every tensor matches the spec and the lock\n", "")
    # without the lock (or --seed) the spec's own seed makes other weights
    code, _, err = run(capsys, "verify", str(out_path), str(HE_CNN))
    assert code == 1 and f"{out_path}: tensor 'conv1.weight': 432 of 432 elements differ" in err
    assert run(capsys, "verify", str(out_path), str(HE_CNN), "--seed", "123")[0] == 0
    arrays = dict(np.load(out_path))
    arrays["layer1.0.conv2.weight"][0, 0, 1, 1] = 0.5
    np.savez(tmp_path / "changed.npz", **arrays)
    code, out, err = run(capsys, "verify", str(tmp_path / "changed.npz"), str(HE_CNN), "--lock", str(lock))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'changed.npz'}: tensor 'layer1.0.conv2.weight': 1 of 2304 elements differ from what the spec produces")
    assert lines[1].startswith(f"{lock}: tensor 'layer1.0.conv2.weight': sha256 ")
    assert lines[-1] == f"vsconf: error: {tmp_path / 'changed.npz'}: 2 mismatches"


def test_spec_errors_from_apply_point_at_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normall\n")
    code, out, err = run(capsys, "apply", str(EXAMPLE), str(bad), "-o", str(tmp_path / "o.npz"))
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"vsconf: error: {bad}:5:11: rules[0].init: 'he_normall' is not one of")
    assert not (tmp_path / "o.npz").exists()


def test_unmatched_rules_fail_apply_without_writing(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("vsconf: 1\nseed: 1\nrules:\n  - match: 'conv1.wieght'\n    init: he_normal\n")
    code, _, err = run(capsys, "apply", str(EXAMPLE), str(spec), "-o", str(tmp_path / "o.npz"))
    assert code == 1
    assert err == f"vsconf: error: {spec}: rules[0] (line 4): matches no tensor (match 'conv1.wieght'); did you mean 'conv1.weight'?\n"
    assert not (tmp_path / "o.npz").exists()


def test_plan_warnings_print_one_line_each_on_stderr(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {preset: he_normal, distribution: normal}\n"
        "  - match: 'conv1.weight'\n    init: zeros\n"
    )
    code, _, err = run(capsys, "plan", str(EXAMPLE), str(spec))
    assert code == 0
    assert err.splitlines()[:2] == [
        f"{spec}:5:45: rules[0].init.distribution: warning: 'normal' is a deprecated alias of 'truncated_normal' "
        "(TF1's meaning); write 'truncated_normal', or 'untruncated_normal' for JAX's and PyTorch's normal",
        f"{spec}: rules[1] (line 6): warning: never applies; every tensor it matches is taken by rules[0] (line 4)",
    ]


def test_progress_bar_only_on_a_terminal(tmp_path, vsconf_exe):
    import os
    import pty

    model = tmp_path / "m.npz"
    shutil.copy(EXAMPLE, model)
    piped = vsconf_cmd(vsconf_exe, "apply", model, HE_CNN, "-o", tmp_path / "piped.npz")
    assert "\r" not in piped.stderr and "[#" not in piped.stderr
    exe = vsconf_exe
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([exe, "apply", str(model), str(HE_CNN), "-o", str(tmp_path / "tty.npz")], stderr=secondary, stdout=subprocess.PIPE)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait()
    os.close(primary)
    drawn = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "\r[" in drawn and "] 44/44 " in drawn
    quiet = subprocess.Popen([exe, "apply", str(model), str(HE_CNN), "-o", str(tmp_path / "q.npz"), "--quiet"], stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    out, err = quiet.communicate()
    assert (quiet.returncode, out, err) == (0, b"", b"")


# ---- the same commands on ONNX models

ONNX_EXAMPLE = ROOT / "examples" / "small_cnn.onnx"
PYTORCH_DEFAULTS = ROOT / "configs" / "pytorch_defaults.yaml"


def test_onnx_apply_lock_verify_and_tamper(tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    model = tmp_path / "cnn.onnx"
    shutil.copy(ONNX_EXAMPLE, model)
    lock = tmp_path / "cnn.lock.json"
    code, out, err = run(capsys, "apply", str(model), str(PYTORCH_DEFAULTS), "--lock", str(lock), "--jobs", "2")
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"wrote {tmp_path / 'cnn.init.onnx'}: 10 filled, 2 set to constants")
    output = tmp_path / "cnn.init.onnx"
    onnx.checker.check_model(str(output))
    assert run(capsys, "verify", str(output), str(PYTORCH_DEFAULTS), "--lock", str(lock))[0] == 0
    tampered = onnx.load(str(output))
    weight = next(t for t in tampered.graph.initializer if t.name == "head.weight")
    values = numpy_helper.to_array(weight).copy()
    values[2, 1] = 0.0
    weight.CopyFrom(numpy_helper.from_array(values, "head.weight"))
    (tmp_path / "bad.onnx").write_bytes(tampered.SerializeToString())
    code, out, err = run(capsys, "verify", str(tmp_path / "bad.onnx"), str(PYTORCH_DEFAULTS), "--lock", str(lock))
    assert code == 1
    assert err.splitlines()[0].startswith(f"{tmp_path / 'bad.onnx'}: tensor 'head.weight': 1 of 20 elements differ from what the spec produces")
    assert err.splitlines()[-1] == f"vsconf: error: {tmp_path / 'bad.onnx'}: 2 mismatches"


def test_onnx_plan_json_has_consumers_and_fans(capsys):
    code, out, _ = run(capsys, "plan", str(ONNX_EXAMPLE), str(PYTORCH_DEFAULTS), "--format", "json")
    assert code == 0
    entries = {e["name"]: e for e in json.loads(out)}
    required = {"name", "shape", "dtype", "rule", "init", "fan_in", "fan_out", "consumers"}
    assert all(required <= set(e) and ("std" in e or "limit" in e) for e in entries.values())
    up = entries["up.weight"]
    assert (up["fan_in"], up["fan_out"], up["consumers"]) == (8, 64, ["ConvTranspose.W (/up/ConvTranspose)"])
    # pytorch_defaults says `untie: conflicts`: the exporter's one tensor for BatchNorm's scale
    # and running variance becomes one copy per input; the scale gets 1, the statistic is kept
    assert "bn.weight" not in entries
    copies = {e["role"]: e for e in entries.values() if e.get("untied_from") == "bn.weight"}
    assert copies["norm_scale"]["consumers"] == ["BatchNormalization.scale (/bn/BatchNormalization)"]
    assert (copies["norm_scale"]["action"], copies["norm_scale"]["value"]) == ("constant", 1.0)
    assert copies["running_stat"]["consumers"] == ["BatchNormalization.input_var (/bn/BatchNormalization)"]
    assert copies["running_stat"]["action"] == "unmatched"
    assert all(e["role"] for e in entries.values() if e["action"] != "skip")


def test_inspect_lists_tensors_consumers_and_fans(capsys):
    code, out, _ = run(capsys, "inspect", str(ONNX_EXAMPLE), "--format", "json")
    assert code == 0
    records = {r["name"]: r for r in json.loads(out)}
    assert records["grouped.weight"] == {
        "name": "grouped.weight",
        "shape": [8, 4, 3, 3],
        "dtype": "float32",
        "float": True,
        "consumers": ["Conv.W (/grouped/Conv)"],
        "fan_in": 36,
        "fan_out": 72,
        "fans_from": "Conv W (/grouped/Conv)",
        "conflict": None,
        "role": "weight",
        "role_from": "Conv W (/grouped/Conv)",
        "role_guessed": False,
    }
    # the exporter stored BatchNorm's scale and running variance as one tensor: a conflict
    assert records["bn.weight"]["role"] == "running_stat"
    assert records["bn.weight"]["conflict"] == (
        "its consumers disagree on its role: BatchNormalization scale (/bn/BatchNormalization) reads it as norm_scale; "
        "BatchNormalization input_var (/bn/BatchNormalization) reads it as running_stat"
    )
    code, table, _ = run(capsys, "inspect", str(ONNX_EXAMPLE))
    lines = table.splitlines()
    assert lines[0].split() == ["name", "shape", "dtype", "role", "fan_in", "fan_out", "fans", "from", "role", "from", "consumers"]
    head = next(line for line in lines if line.startswith("head.weight "))
    assert head.split()[:6] == ["head.weight", "[5,4]", "float32", "weight", "4", "5"]


def test_inspect_materialize_on_a_stripped_model(capsys):
    import onnx

    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_bvlc_alexnet.onnx"
    code, out, _ = run(capsys, "inspect", str(light), "--format", "json")
    assert code == 0 and not [r for r in json.loads(out) if r["float"]]
    code, out, _ = run(capsys, "inspect", str(light), "--format", "json", "--materialize")
    floats = [r for r in json.loads(out) if r["float"]]
    assert len(floats) == 16  # 8 layers: weights and biases
    conv1 = next(r for r in floats if r["name"].startswith("conv1_w"))
    assert conv1["shape"] == [96, 3, 11, 11] and (conv1["fan_in"], conv1["fan_out"]) == (363, 11616)


def test_onnx_only_flags_on_a_state_dict_are_refused(capsys):
    code, _, err = run(capsys, "plan", str(EXAMPLE), str(HE_CNN), "--untie")
    assert code == 1 and err == f"vsconf: error: {EXAMPLE}: --materialize and --untie apply to ONNX models only\n"


# --------------------------------------------------------------------------- what a command loads

_LOADED = (
    "import json, sys\n"
    "from vsconf import cli\n"
    "try:\n"
    "    code = cli.main(sys.argv[1:])\n"
    "except SystemExit as stop:\n"
    "    code = stop.code\n"
    "print(json.dumps([code, sorted(m for m in ('ml_dtypes', 'onnx', 'jsonschema', 'numpy') if m in sys.modules)]), file=sys.stderr)\n"
)


def _loaded(*argv: str) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-c", _LOADED, *argv], capture_output=True, text=True, cwd=ROOT)
    code, modules = json.loads(done.stderr.strip().splitlines()[-1])
    return code, modules


def test_light_commands_load_neither_ml_dtypes_nor_onnx(tmp_path):
    # ml_dtypes costs ~1 s to import (0.7), and `import onnx` imports it: a command loads
    # them only when it needs them.
    assert _loaded("--help") == (0, ["numpy"])
    assert _loaded("schema") == (0, ["numpy"])
    assert _loaded("validate", "configs/pytorch_defaults.yaml") == (0, ["jsonschema", "numpy"])
    assert _loaded("plan", "examples/small_cnn.onnx", "configs/pytorch_defaults.yaml") == (0, ["jsonschema", "numpy"])
    assert _loaded("plan", "examples/small_cnn.npz", "configs/he_cnn.yaml") == (0, ["jsonschema", "numpy"])
    # and a model with a bfloat16 tensor does load ml_dtypes
    manifest = tmp_path / "m.shapes.json"
    manifest.write_text(json.dumps({"tensors": {"w": {"shape": [4, 4], "dtype": "bfloat16"}}}))
    spec = tmp_path / "s.yaml"
    spec.write_text("vsconf: 1\nseed: 1\nrules:\n  - match: w\n    init: he_normal\n")
    assert _loaded("plan", str(manifest), str(spec)) == (0, ["jsonschema", "ml_dtypes", "numpy"])


# --------------------------------------------------------------------------- names cannot forge lines

FORGED = {  # tensor names that would otherwise print extra lines, clear the screen or flip the text
    "fc.weight\nvsconf: error: forged": r"fc.weight\nvsconf: error: forged",
    "b\r\x1b[2J\x85": r"b\r\x1b[2J\x85",
    "c\u2028d\u2029\u202ee\t": r"c\u2028d\u2029\u202ee\t",
}


def _forged_checkpoint(tmp_path: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "forged.safetensors"
    save_file({name: np.ones((2, 2), np.float32) for name in FORGED} | {"ok": np.ones(2, np.float32)}, str(path))
    return path


def _one_line_per_row(text: str, rows: int) -> list[str]:
    lines = text.splitlines()  # splitlines breaks at \x85, \u2028, \u2029 too
    assert len(lines) == rows, lines
    return lines


def test_plan_and_inspect_print_one_row_per_tensor_whatever_the_names(tmp_path, capsys):
    model = _forged_checkpoint(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text("vsconf: 1\nseed: 1\nlayout: torch\nrules:\n  - match: '*'\n    init: zeros\n")
    for command in ("plan", "inspect"):
        code, out, err = run(capsys, "plan", str(model), str(spec)) if command == "plan" else run(capsys, "inspect", str(model))
        assert code == 0 and err == ""
        lines = _one_line_per_row(out, 1 + len(FORGED) + 1)
        shown = sorted(line.split("  ")[0] for line in lines[1:])
        assert shown == sorted(["ok", *FORGED.values()])
    code, out, _ = run(capsys, "plan", str(model), str(spec), "--format", "json")
    assert sorted(record["name"] for record in json.loads(out)) == sorted(["ok", *FORGED])  # JSON escapes for itself


def test_verify_and_errors_escape_names_and_paths(tmp_path, capsys):
    import numpy as np

    model = _forged_checkpoint(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normal\n")
    code, out, err = run(capsys, "verify", str(model), str(spec))
    assert code == 1
    lines = _one_line_per_row(err, len(FORGED) + 1 + 1)  # a mismatch per tensor, then the count
    for name in FORGED:
        assert sum(f"tensor {name!r}" in line for line in lines) == 1  # repr'd in messages, as ever
    odd = tmp_path / "out\nvsconf: error: x"
    code, out, err = run(capsys, "plan", str(odd) + ".npz", str(spec))
    assert (code, err) == (1, f"vsconf: error: {tmp_path}/out\\nvsconf: error: x.npz: no such file\n")
    np.savez(tmp_path / "m.npz", w=np.ones((2, 2), np.float32))
    code, out, err = run(capsys, "apply", str(tmp_path / "m.npz"), str(spec), "-o", str(odd) + ".npz")
    assert code == 0 and _one_line_per_row(out, 1)[0].startswith(f"wrote {tmp_path}/out\\nvsconf: error: x.npz: 1 filled")
