"""The README's two commands are the project's promise: check that they are what runs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
from onnx_builders import run

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def shell_blocks() -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S)]


def test_ci_runs_exactly_the_readme_test_command():
    # .ci/run's first job: in a fresh virtual environment, the README's install, then its
    # pytest, exactly as written (the versions are printed between the two)
    install, pytest_command = next(b for b in shell_blocks() if "pytest" in b).split(" && ")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    job = ci[ci.index('fresh_venv .ci/venv-latest "$PYTHON"') :]
    assert job[1:4] == ["(", "set -e", "source .ci/venv-latest/bin/activate"]
    end = next(i for i, line in enumerate(job) if line.startswith(") ||"))
    assert 3 < job.index(install) < job.index(pytest_command) < end


def test_the_readme_main_job_runs_on_the_bundled_example(tmp_path, vsconf_exe):
    main_job = next(b for b in shell_blocks() if "vsconf apply" in b)
    install, _, command = main_job.partition(" && ")
    assert install == "pip install -e ."
    for folder in ("examples", "configs"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    argv = shlex.split(command)
    argv[0] = vsconf_exe
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model, spec, lock = argv[2], argv[3], argv[argv.index("--lock") + 1]
    output = tmp_path / Path(model).with_name(Path(model).stem + ".init" + Path(model).suffix)
    assert output.exists() and (tmp_path / lock).exists()
    onnx.checker.check_model(str(output))
    assert np.isfinite(run(output)[0]).all()
    verify = subprocess.run([argv[0], "verify", str(output), spec, "--lock", lock], cwd=tmp_path, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)  # --force: it runs again
    assert again.returncode == 0, again.stderr


def test_the_readme_shows_the_real_plan_of_the_example(vsconf_exe):
    shown = README.split("$ vsconf plan examples/small_cnn.onnx configs/pytorch_defaults.yaml\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [vsconf_exe, "plan", "examples/small_cnn.onnx", "configs/pytorch_defaults.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.stdout == shown


def test_the_readme_python_tour_runs_as_written(tmp_path, monkeypatch):
    """Every ```python block, run top to bottom in a folder holding the examples and configs."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks
    for folder in ("examples", "configs"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})


def test_the_readme_recipe_runs_and_loads_in_transformers(tmp_path, vsconf_exe):
    """The README's recipe block, command by command, then its Python: the checkpoint a
    recipe makes from shapes alone loads in transformers with no missing key."""
    pytest = __import__("pytest")
    pytest.importorskip("transformers")
    block = next(b for b in shell_blocks() if "configs/recipes/" in b)
    for folder in ("examples", "configs"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for command in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(command)
        if argv[0] == "vsconf":
            argv[0] = vsconf_exe
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
    python = README.split("The folder loads as any checkpoint, with no missing key:\n\n```py\n", 1)[1].split("```", 1)[0]
    import os

    old = os.getcwd()
    try:
        os.chdir(tmp_path)
        exec(compile(python, "README.md", "exec"), {"__name__": "readme"})
        verify = next(line for line in README.splitlines() if "vsconf verify out/llama_tiny" in line)
        argv = shlex.split(verify.split("`")[1])
        argv[0] = vsconf_exe
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    finally:
        os.chdir(old)
