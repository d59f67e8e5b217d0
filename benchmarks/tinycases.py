"""Section 5: a model of many tiny tensors -- the cost of each tensor, with no bytes to speak of.

200,000 float32[2] tensors (``--quick``: 20,000) as an ``.npz``, a ``.safetensors`` file, a
shapes manifest and an ONNX model (initializers only).  ``vsconf plan`` and ``vsconf apply``
of each run as whole processes; the table gives wall time and peak RSS, and what a tensor
costs: (the run's figure - the same command's on a model of one tensor) / (tensors - 1).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from measure import ProcessRun, run_process

SPEC = "vsconf: 1\nseed: 5\nrules:\n  - match: '*'\n    init: he_normal\n"
MODELS = {"npz": "tiny.npz", "safetensors": "tiny.safetensors", "manifest": "tiny.shapes.json", "onnx": "tiny.onnx"}
OUTPUTS = {"npz": "out.npz", "safetensors": "out.safetensors", "manifest": "out/", "onnx": "out.onnx"}


def _names(count: int) -> list[str]:
    return [f"model.layers.{i // 1000}.block.{i % 1000}.weight" for i in range(count)]


def _build(folder: Path, count: int, prefix: str = "") -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import save_file

    names = _names(count)
    arrays = {name: np.ones(2, np.float32) for name in names}
    np.savez(folder / (prefix + MODELS["npz"]), **arrays)
    save_file(arrays, str(folder / (prefix + MODELS["safetensors"])))
    (folder / (prefix + MODELS["manifest"])).write_text(json.dumps({"tensors": {name: {"shape": [2]} for name in names}}))
    initializers = [numpy_helper.from_array(array, name) for name, array in arrays.items()]
    output = helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [2])
    model = helper.make_model(helper.make_graph([], "tiny", [], [output], initializers), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / (prefix + MODELS["onnx"]))
    (folder / "spec.yaml").write_text(SPEC)


def tiny(folder: Path, count: int, log) -> dict[str, Any]:
    """plan and apply of each format, whole processes, on ``count`` tensors and on one."""
    work = folder / "tiny"
    work.mkdir()
    log(f"tiny: building {count} float32[2] tensors in 4 formats")
    _build(work, count)
    _build(work, 1, prefix="one-")
    runs: dict[str, dict[str, Any]] = {}
    for kind, model in MODELS.items():
        for command in ("plan", "apply"):
            measured = []
            for name in (model, "one-" + model):
                argv = [sys.executable, "-m", "vsconf", command, name, "spec.yaml"]
                if command == "apply":
                    argv += ["-o", OUTPUTS[kind], "--quiet"]
                log(f"tiny: {kind} {command} {name}")
                measured.append(_in(work, argv, work / f"{kind}-{command}.log"))
                for leftover in ("out.npz", "out.safetensors", "out.onnx", "out"):
                    path = work / leftover
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            run, one = measured
            runs[f"{kind} {command}"] = {
                **run.as_dict(),
                "one_tensor": one.as_dict(),
                "bytes_per_tensor": (run.peak_rss_bytes - one.peak_rss_bytes) / (count - 1),
                "us_per_tensor": (run.wall_s - one.wall_s) / (count - 1) * 1e6,
            }
    shutil.rmtree(work)
    return {"tensors": count, "runs": runs}


def _in(folder: Path, argv: list[str], log: Path) -> ProcessRun:
    """``run_process`` with ``folder`` as the working directory (paths in argv are relative)."""
    import os

    here = os.getcwd()
    os.chdir(folder)
    try:
        return run_process(argv, log)
    finally:
        os.chdir(here)


def tiny_figures(result: dict[str, Any]) -> dict[str, float]:
    figures = {}
    for label, run in result["runs"].items():
        key = label.replace(" ", "_")
        figures[f"tiny.{key}_wall_s"] = run["wall_s"]
        figures[f"tiny.{key}_bytes_per_tensor"] = run["bytes_per_tensor"]
        figures[f"tiny.{key}_us_per_tensor"] = run["us_per_tensor"]
    return figures


def tiny_table(result: dict[str, Any], cpus: int) -> tuple[str, list[str], list[list[str]]]:
    rows = [
        [
            label, f"{run['wall_s']:.2f}", f"{run['peak_rss_bytes'] / 1e6:.0f}",
            f"{run['us_per_tensor']:.0f}", f"{run['bytes_per_tensor']:.0f}",
        ]
        for label, run in result["runs"].items()
    ]
    title = (
        f"many tiny tensors: {result['tensors']} float32[2], He normal, whole processes on {cpus} CPUs; "
        "per tensor: (this run - the same on one tensor) / (tensors - 1)"
    )
    return title, ["format and command", "wall s", "peak RSS MB", "us / tensor", "RSS bytes / tensor"], rows
