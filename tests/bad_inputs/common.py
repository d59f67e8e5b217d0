"""Good files that hostile cases start from: a spec, a small ONNX model, a small .npz."""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import make_model

GOOD_SPEC = """\
vsconf: 1
seed: 7
rules:
  - match: "*"
    init: he_normal
"""


def onnx_model(**changes) -> onnx.ModelProto:
    """A Gemm layer: x[1,4] @ w[4,3] + b[3] (opset 17, IR 8), checker-valid."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 12, "w")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "b")
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w, b],
    )
    return make_model(graph, (("", 17),), ir_version=8)


def onnx_bytes(model: onnx.ModelProto | None = None) -> bytes:
    return (model or onnx_model()).SerializeToString()


def npz_bytes(arrays: dict[str, np.ndarray] | None = None) -> bytes:
    if arrays is None:
        arrays = {"fc.weight": np.ones((3, 4), np.float32), "fc.bias": np.zeros(3, np.float32)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def zip_members(members: list[tuple[str, bytes]]) -> bytes:
    """An archive with exactly these members, in this order (duplicates allowed)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # "Duplicate name": on purpose
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def make_fifo(name: str):
    """A ``Case.build`` that makes a FIFO called ``name``."""

    def build(folder: Path) -> None:
        os.mkfifo(folder / name)

    return build


def make_folder(name: str):
    """A ``Case.build`` that makes an empty folder called ``name``."""

    def build(folder: Path) -> None:
        (folder / name).mkdir()

    return build
