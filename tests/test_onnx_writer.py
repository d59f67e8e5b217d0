"""The writer by tasks writes exactly the bytes the writers before it wrote.

``fixtures/onnx_writer_digests.json`` holds the SHA-256 of every output file (model and
data file) for the cases of ``onnx_write_cases.py``.  The chain of proof: the first
digests came from vsconf's first ONNX writer (``vsconf/onnxmodel.py`` at 1dce0f4 and
0641d5b, which built the whole edited model and wrote ``SerializeToString()``), and the
streaming writer that followed reproduced them in every case; the digests here were made
by that streaming writer (commit 65e3df3, fed each tensor's values as chunks of its draw)
for plan entries the writer by tasks draws itself, and it must write the same bytes
whatever runs its tasks.  A case is skipped when its input differs from the one the
digests were made from (another onnx version ships other test models, or serializes built
models differently).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import model, save, value
from onnx_write_cases import CASES, plan_of, write_case

from vsconf.draw import generate
from vsconf.files import Transaction
from vsconf.formats.onnx import OnnxModel, writer
from vsconf.formats.protocol import Writing
from vsconf.schedule import Scheduler

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "onnx_writer_digests.json").read_text())


SCHEDULERS = {
    "one-thread": lambda: {},
    "threads-small-tasks": lambda: {"scheduler": Scheduler("threads", 4), "task_bytes": 1},
    "processes": lambda: {"scheduler": Scheduler("processes", 2), "task_bytes": 1},
}


# Processes on a few cases (each starts a pool): one inline, the rest with external data
PROCESS_CASES = {"chain", "chain-forced-external", "external-attributes-materialize", "functions-training-sparse-external"}


@pytest.mark.parametrize(
    ("case", "how"),
    [(case, how) for case in CASES for how in SCHEDULERS if how != "processes" or case.id in PROCESS_CASES],
    ids=lambda value: value if isinstance(value, str) else value.id,
)
def test_output_bytes_are_those_of_the_writers_before(case, how, tmp_path, monkeypatch):
    if case.force_external:
        monkeypatch.setattr(writer, "_INLINE_LIMIT", 1000)  # stand-in for 1.8 GB
    inputs, outputs = write_case(case, tmp_path, OnnxModel, **SCHEDULERS[how]())
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


def _write(opened, output, progress=None, **how):
    from vsconf.draw import generate_chunks

    with Transaction() as transaction:
        opened.write(output, plan_of(opened), Writing(generate_chunks, **how), {"k": "v"}, progress, transaction)
        transaction.commit()


@pytest.mark.parametrize("external", [False, True])
def test_every_new_tensor_is_written_by_a_task_and_its_digest_read_back(tmp_path, monkeypatch, external):
    if external:
        monkeypatch.setattr(writer, "_INLINE_LIMIT", 1000)
    opened = OnnxModel(save(_nested(), tmp_path / "m.onnx"))
    reported, digests = [], {}
    _write(opened, tmp_path / "out.onnx", lambda done, total, name: reported.append((done, total, name)), digests=digests)
    opened.close()
    onnx.checker.check_model(str(tmp_path / "out.onnx"))
    planned = [entry for entry in plan_of(OnnxModel(tmp_path / "m.onnx")) if entry.changes]
    assert sorted(digests) == sorted(entry.name for entry in planned) and reported[-1][0] == reported[-1][1]
    loaded = onnx.load(str(tmp_path / "out.onnx"))
    stored = {t.name: numpy_helper.to_array(t, base_dir=str(tmp_path)) for t in loaded.graph.initializer}
    for entry in planned:
        if entry.name in stored:
            expected = generate(entry).reshape(entry.shape)
            np.testing.assert_array_equal(stored[entry.name], expected)
            assert digests[entry.name] == hashlib.sha256(expected.tobytes()).hexdigest()
    assert (tmp_path / "out.onnx.data").exists() is external


def test_writing_leaves_the_opened_model_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "_INLINE_LIMIT", 1000)
    opened = OnnxModel(save(_nested(), tmp_path / "m.onnx"), untie=True)
    _write(opened, tmp_path / "a.onnx")
    _write(opened, tmp_path / "b.onnx")
    opened.close()
    assert (tmp_path / "a.onnx.data").read_bytes() == (tmp_path / "b.onnx.data").read_bytes()
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes().replace(b"b.onnx.data", b"a.onnx.data")


def test_values_that_do_not_fit_the_tensor_are_a_bug_not_a_file(tmp_path):
    """A plan entry whose draw holds other bytes than the tensor (a dtype the plan got wrong)
    stops the writer before any task runs, and the transaction leaves nothing."""
    import dataclasses

    opened = OnnxModel(save(_nested(), tmp_path / "m.onnx"))
    wrong = [dataclasses.replace(entry, dtype="float64") if entry.name == "inner.w" else entry for entry in plan_of(opened)]
    from vsconf.draw import generate_chunks

    with pytest.raises(RuntimeError, match="the values of 'inner.w' are 2400 bytes; the tensor holds 1200"), Transaction() as transaction:
        opened.write(tmp_path / "out.onnx", wrong, Writing(generate_chunks), {}, None, transaction)
    opened.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
