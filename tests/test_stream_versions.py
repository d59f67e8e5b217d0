"""Stream versions: what a spec pins, what outputs and locks record, and how verify finds
the version an older vsconf drew with (SPEC §5: a change to the streams bumps the version)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_builders import model, save, tensor, value

import vsconf
from vsconf import streams
from vsconf.errors import ModelError, SpecError
from vsconf.spec import parse_spec


def spec_of(extra: str = "", seed: int = 4) -> vsconf.Spec:
    return parse_spec(f"vsconf: 1\nseed: {seed}\n{extra}rules:\n  - match: '*.weight'\n    init: he_normal\n", "s.yaml")


def _onnx(path):
    w = tensor("fc.weight", np.zeros((6, 5), np.float32))
    node = helper.make_node("MatMul", ["x", "fc.weight"], ["y"])
    return save(model([node], [value("x", [2, 6])], [value("y", [2, 5])], [w]), path)


def _metadata(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _expected(stream: int, seed: int = 4) -> np.ndarray:
    std = np.sqrt(2.0 / 6) / 0.87962566103423978  # he_normal: truncated, fan_in 6
    return streams.draw(seed, "fc.weight", (6, 5), np.dtype(np.float32), "truncated_normal", std, stream=stream)


@pytest.mark.parametrize(("extra", "stream"), [("", streams.DEFAULT_STREAM), ("stream: 1\n", 1), ("stream: 2\n", 2)])
def test_outputs_and_locks_record_the_stream_that_drew_them(tmp_path, extra, stream):
    source = _onnx(tmp_path / "m.onnx")
    result = vsconf.apply(source, spec_of(extra), lock=tmp_path / "m.lock")
    got = onnx.numpy_helper.to_array(onnx.load(str(result.output)).graph.initializer[0])
    np.testing.assert_array_equal(got, _expected(stream))
    assert _metadata(result.output)["vsconf.stream"] == str(stream)
    assert json.loads((tmp_path / "m.lock").read_text())["stream"] == stream
    assert result.plan.stream == stream and result.plan.entry("fc.weight").stream == stream
    assert vsconf.verify(result.output, spec_of(extra), lock=tmp_path / "m.lock") == []


def test_the_two_streams_differ_for_float32_normals(tmp_path):
    assert not np.array_equal(_expected(1), _expected(2))


def test_a_spec_without_stream_keeps_its_digest():
    assert "stream" not in spec_of().canonical()
    assert spec_of("stream: 2\n").sha256 != spec_of().sha256


def test_verify_reads_the_version_of_a_model_vsconf_0_1_made(tmp_path):
    # vsconf 0.1 wrote vsconf.version/seed/spec_sha256 and no vsconf.stream: its draws were stream 1
    made = vsconf.apply(_onnx(tmp_path / "m.onnx"), spec_of("stream: 1\n")).output
    old = onnx.load(str(made))
    kept = [p for p in old.metadata_props if p.key != "vsconf.stream"]
    del old.metadata_props[:]
    old.metadata_props.extend(kept)
    onnx.save(old, str(made))
    assert vsconf.verify(made, spec_of()) == []  # the unpinned spec: stream 1, from the metadata
    problems = vsconf.verify(made, spec_of("stream: 2\n"))  # pinned otherwise: it differs
    assert [p.tensor for p in problems] == ["fc.weight"]


def test_verify_reads_the_version_of_an_old_lock(tmp_path):
    source = _onnx(tmp_path / "m.onnx")
    made = vsconf.apply(source, spec_of("stream: 1\n"), lock=tmp_path / "m.lock").output
    lock = json.loads((tmp_path / "m.lock").read_text())
    del lock["stream"]  # as vsconf 0.1 wrote it
    unpinned = spec_of("layout: auto\n")  # the rule on the same line as in the pinned spec
    lock["spec_sha256"] = unpinned.sha256
    (tmp_path / "old.lock").write_text(json.dumps(lock))
    onnx_model = onnx.load(str(made))
    del onnx_model.metadata_props[:]
    onnx.save(onnx_model, str(made))
    assert vsconf.verify(made, unpinned, lock=tmp_path / "old.lock") == []
    # and the same lock against stream 2's values fails on the digest
    other = vsconf.apply(source, spec_of("stream: 2\n"), tmp_path / "new.onnx").output
    assert any("sha256" in p.message for p in vsconf.verify(other, unpinned, lock=tmp_path / "old.lock"))


def test_a_lock_and_a_pinned_spec_that_disagree_are_reported(tmp_path):
    made = vsconf.apply(_onnx(tmp_path / "m.onnx"), spec_of("stream: 1\n"), lock=tmp_path / "m.lock").output
    problems = vsconf.verify(made, spec_of("stream: 2\n"), lock=tmp_path / "m.lock")
    messages = [p.message for p in problems if p.tensor is None or p.tensor == ""]
    assert any("the lock was made with stream 1, the spec pins stream 2" in m for m in messages)


def test_an_unrecorded_difference_says_which_stream_to_pin(tmp_path):
    weights = {"fc.weight": np.zeros((6, 5), np.float32)}
    made = vsconf.apply_state_dict(weights, spec_of("stream: 2\n"))
    path = tmp_path / "made.npz"
    np.savez(path, **made)
    problems = vsconf.verify(path, spec_of())
    assert len(problems) == 1 and "add `stream: 2` to the spec" in problems[0].message
    assert vsconf.verify(path, spec_of("stream: 2\n")) == []


def test_a_version_this_vsconf_cannot_draw_is_explained(tmp_path):
    made = vsconf.apply(_onnx(tmp_path / "m.onnx"), spec_of()).output
    edited = onnx.load(str(made))
    for prop in edited.metadata_props:
        if prop.key == "vsconf.stream":
            prop.value = "7"
    onnx.save(edited, str(made))
    with pytest.raises(ModelError, match="drawn by stream 7; this vsconf draws streams 1, 2"):
        vsconf.verify(made, spec_of())


@pytest.mark.parametrize("bad", ["3", "0", "'2'", "1.0", "true"])
def test_unknown_stream_in_a_spec_is_a_located_error(bad):
    with pytest.raises(SpecError) as caught:
        parse_spec(f"vsconf: 1\nseed: 1\nstream: {bad}\nrules:\n  - match: '*'\n    init: he_normal\n", "s.yaml")
    assert any(p.line == 3 for p in caught.value.problems)
