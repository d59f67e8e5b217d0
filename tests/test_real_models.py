"""vsconf on ONNX models nobody here wrote: the PyTorch exports and the weight-stripped
classic CNNs that the onnx package ships as backend test data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper, version_converter
from onnx_builders import run
from stats import assert_std

import vsconf
from vsconf.spec import parse_spec

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def _with_float_weights():
    found = []
    for folder in sorted((DATA / "pytorch-converted").iterdir()):
        built = onnx.load(str(folder / "model.onnx"))
        if any(t.data_type in FLOATS for t in built.graph.initializer):
            found.append(folder)
    return found


CONVERTED = _with_float_weights()
LIGHT = sorted((DATA / "light").glob("*.onnx"))

# Weights by their consuming operator, biases from their weight (PyTorch's rule), the rest kept.
PYTORCH_SPEC = parse_spec(
    """
vsconf: 1
seed: 2026
rules:
  - op: [Conv, ConvTranspose]
    input: B
    fans_from: weight
    optional: true
    init: torch_default
  - op: Gemm
    input: C
    fans_from: weight
    optional: true
    init: torch_default
  - op: [Conv, ConvTranspose, Gemm, MatMul, Gather]
    optional: true
    init: he_normal
  - op: BatchNormalization            # opset 6 names the statistics mean and var
    input: [scale, input_var, var]
    optional: true
    init: ones
  - op: BatchNormalization
    input: [B, input_mean, mean]
    optional: true
    init: zeros
  - match: "*"
    init: {scale: 1.0, mode: fan_avg, distribution: uniform}
""",
    source="pytorch.yaml",
)


def expected_fans(node: onnx.NodeProto, index: int, shape: tuple[int, ...], transposed: bool) -> tuple[int, int] | None:
    """The layout table of SPEC §3, written out per operator for the tensor as stored."""
    op = node.op_type
    if op in ("Conv", "ConvTranspose") and index == 1:  # [M, C/g, k...] and [C, M/g, k...]
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    if op == "Gemm" and index == 1:
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        return (shape[1], shape[0]) if trans_b else (shape[0], shape[1])
    if op == "MatMul" and index == 1:  # [K, N] at the MatMul; stored [N, K] behind a Transpose
        return (shape[1], shape[0]) if transposed else (shape[0], shape[1])
    if op == "Gather" and index == 0:
        return shape[0], shape[1]
    return None


def consumer_of(built: onnx.ModelProto, name: str) -> tuple[onnx.NodeProto, int, bool]:
    for node in built.graph.node:
        for index, value in enumerate(node.input):
            if value != name:
                continue
            if node.op_type == "Transpose":
                return (*consumer_of(built, node.output[0])[:2], True)
            return node, index, False
    raise AssertionError(f"{name} has no consumer")


def runnable(path: Path, feeds: dict[str, np.ndarray]) -> Path:
    """onnxruntime only guarantees opset >= 7: run old exports converted to opset 13.

    Opset 6's PRelu broadcast a per-channel slope [C] along axis 1; from opset 7 on, the
    same slope must be stored as [C, 1, ...] to mean that.
    """
    built = onnx.load(str(path))
    if built.opset_import[0].version >= 7:
        return path
    converted = version_converter.convert_version(built, 13)
    ranks = {name: array.ndim for name, array in feeds.items()}
    slopes = {t.name: t for t in converted.graph.initializer}
    for node in converted.graph.node:
        slope = slopes.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is not None and len(slope.dims) == 1 and node.input[0] in ranks:
            array = numpy_helper.to_array(slope)
            slope.CopyFrom(numpy_helper.from_array(array.reshape((-1,) + (1,) * (ranks[node.input[0]] - 2)), slope.name))
    # Opset 13 needs IR 7, where initializers are no longer declared again as graph inputs.
    converted.ir_version = 7
    inputs = [i for i in converted.graph.input if i.name not in slopes]
    del converted.graph.input[:]
    converted.graph.input.extend(inputs)
    target = path.with_name(path.stem + ".opset13.onnx")
    target.write_bytes(converted.SerializeToString())
    return target


@pytest.mark.parametrize("folder", CONVERTED, ids=lambda f: f.name.removeprefix("test_"))
def test_pytorch_converted_models(folder, tmp_path):
    source = folder / "model.onnx"
    plan = vsconf.plan(source, PYTORCH_SPEC)
    built = onnx.load(str(source))
    shapes = {t.name: tuple(t.dims) for t in built.graph.initializer}
    for entry in plan:
        if entry.action != "fill":
            continue
        node, index, transposed = consumer_of(built, entry.name)
        table = expected_fans(node, index, shapes[entry.name], transposed)
        if table is not None:
            assert (entry.fan_in, entry.fan_out) == table, (entry.name, node.op_type)
        elif node.op_type in ("Conv", "ConvTranspose", "Gemm") and entry.rule.startswith(("rules[0]", "rules[1]")):
            weight = node.input[1]
            assert (entry.fan_in, entry.fan_out) == expected_fans(node, 1, shapes[weight], False)
        else:  # no fan rule: the tf rule, and the plan says why
            assert entry.fans_from.startswith("tf (auto: no fan rule for")
    model = tmp_path / "model.onnx"
    model.write_bytes(source.read_bytes())
    result = vsconf.apply(model, PYTORCH_SPEC)
    assert model.read_bytes() == source.read_bytes()
    onnx.checker.check_model(str(result.output))
    inputs = sorted((folder / "test_data_set_0").glob("input_*.pb"))
    graph_inputs = [i.name for i in built.graph.input if i.name not in shapes]
    feeds = {name: numpy_helper.to_array(onnx.load_tensor(str(p))) for name, p in zip(graph_inputs, inputs)}
    expected = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "output_0.pb")))
    outputs = run(runnable(result.output, feeds), feeds)
    assert outputs[0].shape == expected.shape
    assert np.isfinite(outputs[0]).all()
    assert vsconf.verify(result.output, PYTORCH_SPEC) == []
    again = vsconf.apply(result.output, PYTORCH_SPEC, output=tmp_path / "again.onnx")
    assert again.output.read_bytes() == result.output.read_bytes()


HE_NORMAL = parse_spec(
    """
vsconf: 1
seed: 50
rules:
  - op: [Conv, Gemm]
    input: [W, B]
    init: he_normal
  - match: "*"
    init: keep
""",
    source="he.yaml",
)


@pytest.mark.parametrize("source", LIGHT, ids=lambda p: p.stem.removeprefix("light_"))
def test_light_models_materialize_and_run(source, tmp_path):
    model = tmp_path / source.name
    model.write_bytes(source.read_bytes())
    result = vsconf.apply(model, HE_NORMAL, materialize=True)
    out = onnx.load(str(result.output))
    assert not [n for n in out.graph.node if n.op_type == "ConstantOfShape"]
    onnx.checker.check_model(str(result.output))
    weights = [e for e in result.plan if e.action == "fill"]
    assert weights, "no weight was materialized"
    stored = {t.name: t for t in out.graph.initializer}
    biggest = max(weights, key=lambda e: math.prod(e.shape))
    values = numpy_helper.to_array(stored[biggest.name])
    assert values.shape == biggest.shape
    assert_std(values, biggest.std, "truncated_normal")
    assert np.abs(values).max() <= np.float32(2 * biggest.std / vsconf.TRUNCATED_NORMAL_STD)
    for entry in weights:
        if entry.shape and len(entry.shape) == 4:  # conv weights: torch's fans, from the Conv node
            receptive = math.prod(entry.shape[2:])
            assert (entry.fan_in, entry.fan_out) == (entry.shape[1] * receptive, entry.shape[0] * receptive)
    outputs = run(result.output)
    assert outputs[0].shape[:2] == (1, 1000)
    assert np.isfinite(outputs[0]).all()
    assert vsconf.verify(result.output, HE_NORMAL) == []
