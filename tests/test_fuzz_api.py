"""Property tests: whatever a caller passes to the public API, and whatever bytes a state
dict file holds, only the documented errors come out -- ``TypeError``/``ValueError`` for
arguments (naming the argument) and :class:`vsconf.VsconfError` for files -- and nothing
outside the working folder changes.  ``tests/fuzzing.py`` says how to run it long."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vsconf
from fuzzing import FUZZ

SPEC = "vsconf: 1\nseed: 5\nlayout: torch\nrules:\n  - match: '*'\n    init: he_normal\n"
ARGUMENT_ERRORS = (TypeError, ValueError, vsconf.VsconfError)


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        **{"fc.weight": np.ones((3, 4), np.float32), "fc.bias": np.zeros(3, np.float32), "steps": np.arange(3)},
    )
    return buffer.getvalue()


def _safetensors() -> bytes:
    import safetensors.numpy

    return safetensors.numpy.save({"fc.weight": np.ones((3, 4), np.float32), "fc.bias": np.zeros(3, np.float32)})


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.npz").write_bytes(_npz())
    (tmp_path / "spec.yaml").write_text(SPEC)
    return tmp_path


# Values of every kind a caller might pass by mistake, plus the right ones.
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=8),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(np.int64(3)),
    st.just(np.float32(1.5)),
    st.just(object()),
)
paths = st.sampled_from(["m.npz", "spec.yaml", "missing.npz", "", ".", "m.npz\0x", Path("m.npz"), b"m.npz"])
outputs = st.one_of(st.none(), st.sampled_from(["out.npz", "m.npz", "spec.yaml", ".", "sub/out.npz", Path("o.npz")]), odd_values)


@FUZZ
@given(model=st.one_of(paths, odd_values), spec=st.one_of(paths, odd_values), output=outputs,
       seed=odd_values, jobs=odd_values, lock=st.one_of(st.none(), paths, odd_values),
       force=odd_values, in_place=odd_values)
def test_fuzz_apply_arguments(folder, model, spec, output, seed, jobs, lock, force, in_place):
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    try:
        vsconf.apply(model, spec, output, seed=seed, jobs=jobs, lock=lock, force=force, in_place=in_place)
    except ARGUMENT_ERRORS as exc:
        assert str(exc)
    finally:
        for name in ("out.npz", "o.npz", "out.npz.lock", "m.init.npz"):
            (folder / name).unlink(missing_ok=True)
    for name, data in before.items():
        if name != "m.npz" or in_place is not True:
            assert (folder / name).read_bytes() == data, name
        elif (folder / name).read_bytes() != data:
            (folder / name).write_bytes(data)


@FUZZ
@given(model=st.one_of(paths, odd_values, st.just({"w": np.ones((2, 2), np.float32)})),
       spec=st.one_of(paths, odd_values), seed=odd_values, jobs=odd_values, lock=st.one_of(st.none(), paths, odd_values),
       untie=odd_values, materialize=odd_values)
def test_fuzz_plan_and_verify_arguments(folder, model, spec, seed, jobs, lock, untie, materialize):
    for call in (
        lambda: vsconf.plan(model, spec, seed=seed, materialize=materialize, untie=untie),
        lambda: vsconf.verify(model, spec, lock=lock, seed=seed, jobs=jobs, untie=untie),
    ):
        try:
            call()
        except ARGUMENT_ERRORS as exc:
            assert str(exc)


@FUZZ
@given(mapping=st.one_of(odd_values, st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), odd_values, max_size=3)),
       seed=odd_values, jobs=odd_values)
def test_fuzz_apply_state_dict_arguments(mapping, seed, jobs):
    spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: zeros\n    optional: true\n")
    try:
        out = vsconf.apply_state_dict(mapping, spec, seed=seed, jobs=jobs)
    except ARGUMENT_ERRORS as exc:
        assert str(exc)
    else:
        assert set(out) == set(mapping)


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: overwrite, insert, delete, or truncate."""
    buffer = bytearray(data)
    for kind, position, value in edits:
        if not buffer:
            break
        at = position % len(buffer)
        if kind == 0:
            buffer[at] = value
        elif kind == 1:
            buffer.insert(at, value)
        elif kind == 2:
            del buffer[at]
        else:
            del buffer[at:]
    return bytes(buffer)


edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6)
# Little-endian integers that hit size fields: ZIP's sizes, .npy header lengths, safetensors' header size.
size_words = st.lists(st.tuples(st.integers(0, 1 << 20), st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1])), max_size=2)


def _with_words(data: bytes, words: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for position, value in words:
        at = position % max(1, len(buffer) - 8)
        buffer[at : at + 8] = struct.pack("<Q", value)[: len(buffer) - at]
    return bytes(buffer)


def _through_the_api(path: Path, spec: Path) -> None:
    """plan, apply and verify: each may refuse the file, none may fail otherwise."""
    for call in (
        lambda: vsconf.plan(path, spec),
        lambda: vsconf.apply(path, spec, path.with_name("out" + path.suffix), force=True),
        lambda: vsconf.verify(path, spec),
    ):
        try:
            call()
        except vsconf.VsconfError as exc:
            assert str(exc)


def _mutated_file_through_the_api(folder: Path, suffix: str, original: bytes, edits, words) -> None:
    """Write mutated bytes as ``m<suffix>``; the API may refuse them, must not change them,
    and may leave only its own output behind."""
    (folder / "spec.yaml").write_text(SPEC.replace("match: '*'", "match: '*'\n    optional: true"))
    model = folder / f"m{suffix}"
    data = _with_words(_mutate(original, edits), words)
    model.write_bytes(data)
    _through_the_api(model, folder / "spec.yaml")
    assert model.read_bytes() == data
    leftovers = sorted(p.name for p in folder.iterdir())
    assert leftovers in ([model.name, "spec.yaml"], [model.name, f"out{suffix}", "spec.yaml"])


@FUZZ
@given(edits=edits, words=size_words)
def test_fuzz_npz_bytes(tmp_path_factory, edits, words):
    _mutated_file_through_the_api(tmp_path_factory.mktemp("npz"), ".npz", _npz(), edits, words)


@FUZZ
@given(edits=edits, words=size_words)
def test_fuzz_safetensors_bytes(tmp_path_factory, edits, words):
    _mutated_file_through_the_api(tmp_path_factory.mktemp("st"), ".safetensors", _safetensors(), edits, words)


def test_argument_errors_name_the_argument(folder):
    cases = [
        (lambda: vsconf.apply(None, "spec.yaml"), TypeError, "Argument `model` must be a path (str or os.PathLike). Received: None"),
        (lambda: vsconf.apply(b"m.npz", "spec.yaml"), TypeError, "Argument `model` must be a path (str or os.PathLike). Received: bytes b'm.npz'"),
        (lambda: vsconf.apply("m.npz", 42), TypeError, "Argument `spec` must be a path (str or os.PathLike). Received: int 42"),
        (lambda: vsconf.apply("m.npz", "spec.yaml", 3), TypeError, "Argument `output` must be a path (str or os.PathLike) or None. Received: int 3"),
        (lambda: vsconf.plan("m.npz", "spec.yaml", seed=-1), ValueError, "Argument `seed` must satisfy 0 <= seed < 2**63. Received: -1"),
        (lambda: vsconf.plan("m.npz", "spec.yaml", seed=7.0), TypeError, "Argument `seed` must be an integer or None. Received: float 7.0"),
        (lambda: vsconf.plan("m.npz", "spec.yaml", seed=True), TypeError, "Argument `seed` must be an integer or None. Received: bool True"),
        (lambda: vsconf.apply("m.npz", "spec.yaml", jobs=-1), ValueError, "Argument `jobs` must be from 1 to 1024, or None. Received: -1"),
        (lambda: vsconf.verify("m.npz", "spec.yaml", jobs="2"), TypeError, "Argument `jobs` must be a positive integer or None. Received: str '2'"),
        (lambda: vsconf.apply("m.npz", "spec.yaml", force="yes"), TypeError, "Argument `force` must be True or False. Received: str 'yes'"),
        (lambda: vsconf.apply("", "spec.yaml"), ValueError, "Argument `model` must be a non-empty path without NUL characters. Received: ''"),
        (lambda: vsconf.apply_state_dict([1, 2], "spec.yaml"), TypeError, "Argument `mapping` must be a mapping of names to arrays. Received: list [1, 2]"),
        (lambda: vsconf.apply_state_dict({1: np.ones(2)}, "spec.yaml"), TypeError, "State dict keys must be strings. Received: int"),
        (lambda: vsconf.plan("m.npz", "spec.yaml", seed=2**5000), ValueError, "Argument `seed` must satisfy 0 <= seed < 2**63. Received: an integer of 1506 digits"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as info:
            call()
        assert str(info.value) == message
    assert sorted(p.name for p in folder.iterdir()) == ["m.npz", "spec.yaml"]
