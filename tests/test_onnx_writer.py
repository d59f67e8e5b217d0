"""The streaming writer writes exactly the bytes the writer before it wrote.

``fixtures/onnx_writer_digests.json`` holds the SHA-256 of every output file (model and
data file) that vsconf's previous ONNX writer -- ``vsconf/onnxmodel.py`` as of commits
1dce0f4 and 0641d5b, which built the whole edited model and wrote ``SerializeToString()``
-- produced for the cases of ``onnx_write_cases.py``, derived once (both commits gave the
same digests).  The streaming writer gets the same values in uneven chunks and must write
the same bytes.  A case is
skipped when its input differs from the one the digests were made from (another onnx
version ships other test models, or serializes built models differently).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import model, save, value
from onnx_write_cases import CASES, plan_of, write_case

from vsconf.files import Transaction
from vsconf.formats.onnx import OnnxModel, writer

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "onnx_writer_digests.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_output_bytes_are_those_of_the_writer_before_streaming(case, tmp_path, monkeypatch):
    if case.force_external:
        monkeypatch.setattr(writer, "_INLINE_LIMIT", 1000)  # stand-in for 1.8 GB
    inputs, outputs = write_case(case, tmp_path, OnnxModel)
    expected = EXPECTED[case.id]
    if inputs != expected["input"]:
        pytest.skip(f"the input is not the one the digests were made from (onnx {onnx.__version__})")
    assert outputs == expected["output"]
    onnx.checker.check_model(str(tmp_path / "out" / "out.onnx"))


# ---------------------------------------------------------------- how values are asked for


def _nested() -> onnx.ModelProto:
    """Weights in every place protobuf orders differently: a subgraph's initializer, a
    Constant node, and the main graph's initializers (1 KiB and more, and small)."""
    inner = numpy_helper.from_array(np.ones((3, 100), np.float32), "inner.w")
    then_graph = helper.make_graph([helper.make_node("MatMul", ["x", "inner.w"], ["t"])], "then", [], [value("t", [2, 100])], [inner])
    else_graph = helper.make_graph([helper.make_node("MatMul", ["x", "outer.w"], ["e"])], "else", [], [value("e", [2, 100])])
    return model(
        [
            helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph),
            helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.ones(300, np.float32), "kv")),
            helper.make_node("Add", ["k", "bias"], ["z"]),
        ],
        [value("cond", [], TensorProto.BOOL), value("x", [2, 3])],
        [value("y", [2, 100]), value("z", [300])],
        [numpy_helper.from_array(np.ones((3, 100), np.float32), "outer.w"), numpy_helper.from_array(np.ones(300, np.float32), "bias")],
    )


class _Recorder:
    """values(entry) that records what is asked for and how far each iterator was consumed."""

    def __init__(self, chunk: int = 7):
        self.asked: list[str] = []
        self.finished: list[str] = []
        self.chunk = chunk

    def __call__(self, entry):
        self.asked.append(entry.name)
        return self._chunks(entry)

    def _chunks(self, entry):
        assert self.finished == self.asked[: self.asked.index(entry.name)]  # those asked for before are done
        values = np.full(math.prod(entry.shape), 0.5, entry.dtype)
        for start in range(0, len(values), self.chunk):
            yield values[start : start + self.chunk]
        self.finished.append(entry.name)


def _write(opened, output, values, progress=None):
    with Transaction() as transaction:
        opened.write(output, plan_of(opened), values, {"k": "v"}, progress, transaction)
        transaction.commit()


@pytest.mark.parametrize(
    ("external", "order"),
    [
        (False, ["inner.w", "k", "outer.w", "bias"]),  # file order: the If's subgraph, the Constant, then initializers
        (True, ["outer.w", "bias", "inner.w", "k"]),  # the data file's (stored order: main graph first), then the model's
    ],
)
def test_values_are_asked_for_in_the_order_written_and_consumed_whole(tmp_path, monkeypatch, external, order):
    if external:
        monkeypatch.setattr(writer, "_INLINE_LIMIT", 1000)
    opened = OnnxModel(save(_nested(), tmp_path / "m.onnx"))
    recorder = _Recorder()
    reported = []
    _write(opened, tmp_path / "out.onnx", recorder, lambda done, total, name: reported.append((done, total, name)))
    opened.close()
    assert recorder.asked == order and recorder.finished == order
    assert reported == [(k + 1, 4, name) for k, name in enumerate(order)]
    onnx.checker.check_model(str(tmp_path / "out.onnx"))
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "out.onnx")).graph.initializer}
    assert (stored["outer.w"] == 0.5).all() and (stored["bias"] == 0.5).all()


def test_chunks_that_do_not_add_up_to_the_tensor_are_a_bug_not_a_file(tmp_path):
    opened = OnnxModel(save(_nested(), tmp_path / "m.onnx"))

    def short(entry):
        yield np.zeros(3, entry.dtype)

    with pytest.raises(RuntimeError, match="the values of 'inner.w' are 12 bytes; the tensor holds 1200"):
        _write(opened, tmp_path / "out.onnx", short)
    opened.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_writing_leaves_the_opened_model_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "_INLINE_LIMIT", 1000)
    opened = OnnxModel(save(_nested(), tmp_path / "m.onnx"), untie=True)
    _write(opened, tmp_path / "a.onnx", _Recorder())
    _write(opened, tmp_path / "b.onnx", _Recorder())
    opened.close()
    assert (tmp_path / "a.onnx.data").read_bytes() == (tmp_path / "b.onnx.data").read_bytes()
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes().replace(b"b.onnx.data", b"a.onnx.data")
