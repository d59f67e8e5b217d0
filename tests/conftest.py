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
# Single tests of a second or so each (big samples, subprocess pipelines, local Dask
# clusters, JAX in a subprocess): together they are half of what the fast loop would take.
_SLOW_TESTS = (
    "test_light_models_materialize_and_run",
    "test_agrees_with_re_fullmatch",
    "test_a_spec_of_the_largest_size_is_read_in_bounded_time",
    "test_local_dask_clusters_of_one_and_two_workers_write_identical_bytes",
    "test_a_killed_dask_worker_has_its_task_retried_and_the_output_verifies",
    "test_jax_meshes_8x1_4x2_2x4_equal_the_unsharded_fill",
    "test_the_readme_main_job_runs_on_the_bundled_example",
    "test_progress_bar_only_on_a_terminal",
    "test_distribution_is_standard_normal",
    "test_installed_command_applies_the_bundled_example_and_the_stds_match_the_plan",
    "test_a_killed_worker_process_breaks_the_pool_and_its_tasks_run_again",
    "test_load_spec_refuses_a_spec_over_1_mib_without_reading_it_all",
    "test_a_spec_full_of_globs_compiles_in_bounded_time",
    "test_stream_key_ignores_python_hash_randomisation",
    "test_seeding_blocks_at_once_gives_the_per_block_values",
    "test_truncated_blocks_follow_the_definition",
    "test_pairs_are_independent",
    "test_agrees_with_float64_math_on_the_same_words",
    "test_head_reads_a_few_lines_of_a_plan",
    "test_a_closed_stdout_ends_quietly",
    "test_a_file_size_limit_is_a_clear_error_and_leaves_nothing",
    "test_a_full_disk_is_a_clear_error_and_leaves_nothing",
    "test_mutated_models_parse_the_same_from_their_skeletons",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in _SLOW_MODULES or item.originalname in _SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def pytest_report_header(config) -> list[str]:
    """The versions the run depends on, in the test output (CI runs two environments)."""
    import importlib.metadata as metadata

    names = ("numpy", "ml_dtypes", "onnx", "onnxruntime", "jsonschema", "pyyaml", "safetensors", "torch", "transformers", "jax", "dask")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ["vsconf's dependencies: " + ", ".join(found)]
