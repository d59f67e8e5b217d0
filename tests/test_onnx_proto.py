"""vsconf.formats.onnx.proto: onnx's messages and schemas without ``import onnx``, and a later
``import onnx`` that shares them."""

from __future__ import annotations

import subprocess
import sys

import onnx
import onnx.defs

from vsconf.formats.onnx import proto


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_alone_it_loads_neither_onnx_nor_ml_dtypes_and_import_onnx_then_shares_its_classes():
    out = _run(
        "import sys\n"
        "from vsconf.formats.onnx import proto\n"
        "schema = proto.defs.get_schema('Conv', 13, '')\n"
        "count = len(proto.defs.get_all_schemas_with_history())\n"
        "model = proto.ModelProto(ir_version=8)\n"
        "print(sorted(m for m in ('onnx', 'ml_dtypes', 'numpy') if m in sys.modules), [i.name for i in schema.inputs])\n"
        "import onnx, onnx.defs, onnx.checker, onnx.helper, onnx.numpy_helper\n"
        "same = [getattr(onnx, n) is getattr(proto, n) for n in ('ModelProto', 'TensorProto', 'GraphProto', 'NodeProto')]\n"
        "print(same, count == len(onnx.defs.get_all_schemas_with_history()))\n"
        "graph = onnx.helper.make_graph([onnx.helper.make_node('Identity', ['x'], ['y'])], 'g',\n"
        "    [onnx.helper.make_tensor_value_info('x', 1, [2])], [onnx.helper.make_tensor_value_info('y', 1, [2])])\n"
        "made = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid('', 13)])\n"
        "onnx.checker.check_model(made)\n"
        "print(isinstance(made, proto.ModelProto), onnx.numpy_helper.to_array(onnx.helper.make_tensor('t', 1, [2], [1.0, 2.0])).tolist())\n"
    )
    assert out.splitlines() == ["[] ['X', 'W', 'B']", "[True, True, True, True] True", "True [1.0, 2.0]"]


def test_after_import_onnx_it_is_onnx():
    assert proto.ModelProto is onnx.ModelProto and proto.TensorProto is onnx.TensorProto
    assert proto.defs.get_schema("Gemm", 13, "").inputs[1].name == onnx.defs.get_schema("Gemm", 13, "").inputs[1].name == "B"
