"""Tiny ONNX models built in code for the tests, and a way to run them in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
# Every model a test builds pins its IR version and opsets: ``helper.make_model`` stamps
# the installed onnx's newest IR (14 with onnx 1.23), which an older onnxruntime refuses to
# load.  IR 10 with opset 21 is the newest pair a test may ask for (onnxruntime >= 1.20).
MAX_IR_VERSION, MAX_OPSET = 10, 21


def make_model(graph: onnx.GraphProto, opsets=(("", OPSET),), ir_version: int = IR_VERSION) -> onnx.ModelProto:
    """``graph`` as a model with pinned ``opsets`` ((domain, version) pairs) and IR version."""
    standard = [version for domain, version in opsets if domain in ("", "ai.onnx")]
    assert ir_version <= MAX_IR_VERSION and all(v <= MAX_OPSET for v in standard), (ir_version, opsets)
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets])
    built.ir_version = ir_version
    return built


def tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def model(nodes, inputs, outputs, initializers=(), opset=OPSET, ir_version=IR_VERSION, **graph_kwargs) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers), **graph_kwargs)
    return make_model(graph, (("", opset),), ir_version)


def value(name: str, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def save(built: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(built)
    path.write_bytes(built.SerializeToString())
    return path


def run(path: Path, feeds: dict[str, np.ndarray] | None = None, seed: int = 0) -> list[np.ndarray]:
    """Run the model in onnxruntime on ``feeds`` (random inputs for the rest)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in loaded.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = dict(feeds or {})
    for item in session.get_inputs():
        if item.name in feeds or item.name in initializers:
            continue
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in item.shape]
        kind = item.type
        if "int64" in kind:
            feeds[item.name] = rng.integers(0, 2, size=shape).astype(np.int64)
        elif "float16" in kind:
            feeds[item.name] = rng.random(shape).astype(np.float16)
        elif "double" in kind:
            feeds[item.name] = rng.random(shape)
        else:
            feeds[item.name] = rng.random(shape).astype(np.float32)
    return session.run(None, feeds)
