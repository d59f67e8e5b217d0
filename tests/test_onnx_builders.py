"""The models tests build in code are portable: they pin an IR version and opsets, and the
installed onnxruntime loads every one of them.

``helper.make_model`` alone stamps the installed onnx's newest IR version, which an
onnxruntime one release behind refuses; only :func:`onnx_builders.make_model` may call it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
import pytest
from bad_inputs.common import onnx_model
from onnx import helper
from onnx_builders import MAX_IR_VERSION, MAX_OPSET, make_model, model, tensor, value
from onnx_write_cases import CASES

TESTS = Path(__file__).parent
BUILDERS = TESTS / "onnx_builders.py"
# Write cases whose inputs are odd on purpose and that onnxruntime cannot run, with why.
NOT_RUNNABLE = {
    "ir3-materialize-untie": "an IR 3 model (opset 8) with ConstantOfShape, which opset 9 introduced: for --materialize on old IR",
    "external-attributes": "onnxruntime cannot read a tensor attribute from external data",
    "external-attributes-materialize": "onnxruntime cannot read a tensor attribute from external data",
}


def _make_model_calls(path: Path) -> list[int]:
    """Lines of ``path`` that call ``make_model`` of onnx's helper (not the builders')."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "make_model":
            lines.append(node.lineno)
    return lines


def test_only_the_builders_call_onnx_helper_make_model():
    offenders = [
        f"{path.relative_to(TESTS)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != BUILDERS
        for line in _make_model_calls(path)
    ]
    assert offenders == [], "build models with onnx_builders.make_model, which pins the IR version and opsets"


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _assert_portable(built: onnx.ModelProto) -> None:
    assert built.ir_version <= MAX_IR_VERSION
    assert all(o.version <= MAX_OPSET for o in built.opset_import if o.domain in ("", "ai.onnx"))


def test_the_builders_refuse_an_unpinned_or_too_new_model():
    graph = helper.make_graph([], "g", [], [])
    with pytest.raises(AssertionError):
        make_model(graph, ir_version=onnx.IR_VERSION)
    with pytest.raises(AssertionError):
        make_model(graph, (("", MAX_OPSET + 1),))


def _simple_models() -> dict[str, onnx.ModelProto]:
    hidden = 8
    attention = helper.make_graph(
        [helper.make_node("Attention", ["x", "qkv.weight", "qkv.bias"], ["y"], domain="com.microsoft", num_heads=2)],
        "g",
        [value("x", [1, 4, hidden])],
        [value("y", [1, 4, hidden])],
        [tensor("qkv.weight", np.zeros((hidden, 3 * hidden), np.float32)), tensor("qkv.bias", np.zeros(3 * hidden, np.float32))],
    )
    return {
        "model-gemm": model(
            [helper.make_node("Gemm", ["x", "w"], ["y"])], [value("x", [2, 4])], [value("y", [2, 3])], [tensor("w", np.ones((4, 3), np.float32))]
        ),
        "model-newest-pair": model(
            [helper.make_node("Identity", ["t"], ["y"])], [], [value("y", [3])], [tensor("t", np.ones(3, np.float32))],
            opset=MAX_OPSET, ir_version=MAX_IR_VERSION,
        ),
        "make-model-com-microsoft": make_model(attention, (("", 17), ("com.microsoft", 1))),
        "bad-inputs-base": onnx_model(),
    }


@pytest.mark.parametrize("name", sorted(_simple_models()))
def test_builder_models_load_in_onnxruntime(name, tmp_path):
    built = _simple_models()[name]
    _assert_portable(built)
    path = tmp_path / "model.onnx"
    path.write_bytes(built.SerializeToString())
    _session(path)


BUILT_IN_CODE = [case for case in CASES if case.build.__qualname__.split(".")[0] in ("_saved", "_raw", "_external_attributes")]


@pytest.mark.parametrize("case", BUILT_IN_CODE, ids=[case.id for case in BUILT_IN_CODE])
def test_write_case_models_load_in_onnxruntime(case, tmp_path):
    path = case.build(tmp_path)
    _assert_portable(onnx.load(str(path), load_external_data=False))
    if case.id in NOT_RUNNABLE:
        pytest.skip(NOT_RUNNABLE[case.id])
    _session(path)
