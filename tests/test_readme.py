"""The README's two commands are the project's promise: check that they are what runs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def shell_blocks() -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S)]


def test_ci_runs_exactly_the_readme_test_command():
    test_command = next(b for b in shell_blocks() if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command


def test_the_readme_main_job_runs_on_the_bundled_example(tmp_path):
    main_job = next(b for b in shell_blocks() if "vsconf apply" in b)
    install, _, command = main_job.partition(" && ")
    assert install == "pip install -e ."
    for folder in ("examples", "configs"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    argv = shlex.split(command)
    argv[0] = shutil.which("vsconf")
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "examples" / "small_cnn.init.npz").exists()
    verify = subprocess.run(
        [shutil.which("vsconf"), "verify", "examples/small_cnn.init.npz", "configs/he_cnn.yaml", "--lock", "examples/small_cnn.lock.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
