from __future__ import annotations

import builtins
import hashlib
import json
import os
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vsconf
from vsconf.errors import ModelError
from vsconf.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = parse_spec(
    "vsconf: 1\nseed: 5\nlayout: torch\nrules:\n"
    "  - match: '*.bias'\n    fans_from: weight\n    init: torch_default\n"
    "  - match: 'fc*.weight'\n    init: he_normal\n"
    "  - match: 'norm.weight'\n    init: ones\n"
    "  - match: 'frozen.weight'\n    init: keep\n",
    source="spec.yaml",
)


def state():
    rng = np.random.default_rng(0)
    return {
        "fc1.weight": rng.standard_normal((64, 32)).astype(np.float32),
        "fc1.bias": rng.standard_normal(64).astype(np.float32),
        "fc2.weight": rng.standard_normal((10, 64)).astype(np.float16),
        "norm.weight": np.full(10, 3.0, np.float64),
        "frozen.weight": rng.standard_normal((3, 3)).astype(np.float32),
        "extra": rng.standard_normal(5).astype(np.float32),  # unmatched: kept
        "steps": np.arange(4, dtype=np.int64),
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_apply_state_dict_returns_a_new_dict_and_leaves_the_input_alone():
    original = state()
    snapshot = {k: v.copy() for k, v in original.items()}
    for array in original.values():
        array.flags.writeable = False  # read-only inputs must work too
    out = vsconf.apply_state_dict(original, SPEC)
    assert out is not original and set(out) == set(original)
    for name, array in original.items():
        np.testing.assert_array_equal(array, snapshot[name])
        assert not np.shares_memory(out[name], array)
        assert out[name].dtype == array.dtype and out[name].shape == array.shape
    for name in ("frozen.weight", "extra", "steps"):
        np.testing.assert_array_equal(out[name], original[name])
    assert not np.array_equal(out["fc1.weight"], original["fc1.weight"])
    assert out["norm.weight"].tolist() == [1.0] * 10
    # the bias takes fc1.weight's fan_in (32) under the torch layout: U(+-1/sqrt(32))
    assert np.abs(out["fc1.bias"]).max() <= np.float32(1 / np.sqrt(32))


def test_apply_state_dict_values_equal_the_file_path(tmp_path):
    arrays = state()
    np.savez(tmp_path / "m.npz", **arrays)
    vsconf.apply(tmp_path / "m.npz", SPEC)
    from_file = np.load(tmp_path / "m.init.npz")
    in_memory = vsconf.apply_state_dict(arrays, SPEC)
    for name in arrays:
        np.testing.assert_array_equal(from_file[name], in_memory[name])


def test_npz_apply_never_touches_the_input_and_refuses_to_overwrite(tmp_path):
    model = tmp_path / "m.npz"
    np.savez(model, **state())
    before = sha(model)
    result = vsconf.apply(model, SPEC)
    assert result.output == tmp_path / "m.init.npz"
    assert sha(model) == before
    with pytest.raises(ModelError, match=r"m.init.npz: exists; pass force=True to overwrite it"):
        vsconf.apply(model, SPEC)
    other = vsconf.apply(model, SPEC, seed=6, force=True)
    assert other.output == result.output and other.plan.seed == 6
    with pytest.raises(ModelError, match="m.npz: the output is the input model; pass in_place=True to replace it"):
        vsconf.apply(model, SPEC, output=model)
    with pytest.raises(ValueError, match="Give either `output` or `in_place=True`, not both"):
        vsconf.apply(model, SPEC, output=tmp_path / "x.npz", in_place=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.init.npz", "m.npz"]


def test_in_place_replaces_the_file_atomically(tmp_path):
    model = tmp_path / "m.npz"
    np.savez(model, **state())
    os.chmod(model, 0o640)
    inode = model.stat().st_ino
    expected = vsconf.apply_state_dict(state(), SPEC)
    vsconf.apply(model, SPEC, in_place=True)
    assert model.stat().st_ino != inode  # a new file renamed over the old one
    assert model.stat().st_mode & 0o777 == 0o640
    loaded = np.load(model)
    for name, array in expected.items():
        np.testing.assert_array_equal(loaded[name], array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_a_failed_write_leaves_no_output_and_no_temporary_file(tmp_path, monkeypatch):
    model = tmp_path / "m.npz"
    np.savez(model, **state())
    before = sha(model)

    def boom(entry, *, jobs=1, step=None):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(vsconf.api, "generate_chunks", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        vsconf.apply(model, SPEC, in_place=True)
    assert sha(model) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_member_order_does_not_change_the_output_bytes(tmp_path):
    arrays = state()
    np.savez(tmp_path / "a.npz", **arrays)
    np.savez(tmp_path / "b.npz", **dict(reversed(list(arrays.items()))))
    assert [m.filename for m in zipfile.ZipFile(tmp_path / "a.npz").infolist()] != [
        m.filename for m in zipfile.ZipFile(tmp_path / "b.npz").infolist()
    ]
    vsconf.apply(tmp_path / "a.npz", SPEC)
    vsconf.apply(tmp_path / "b.npz", SPEC)
    assert (tmp_path / "a.init.npz").read_bytes() == (tmp_path / "b.init.npz").read_bytes()


def test_compressed_npz_stays_compressed_and_untouched_members_are_copied_exactly(tmp_path):
    arrays = state()
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    vsconf.apply(tmp_path / "c.npz", SPEC)
    with zipfile.ZipFile(tmp_path / "c.npz") as src, zipfile.ZipFile(tmp_path / "c.init.npz") as out:
        assert {m.compress_type for m in out.infolist()} == {zipfile.ZIP_DEFLATED}
        for name in ("extra.npy", "steps.npy", "frozen.weight.npy"):
            assert out.read(name) == src.read(name)


def test_verify_passes_on_a_fresh_apply_and_names_a_changed_tensor(tmp_path):
    model = tmp_path / "m.npz"
    np.savez(model, **state())
    out = vsconf.apply(model, SPEC, lock=tmp_path / "lock.json").output
    assert vsconf.verify(out, SPEC) == []
    assert vsconf.verify(out, SPEC, lock=tmp_path / "lock.json") == []
    arrays = dict(np.load(out))
    arrays["fc1.weight"][3, 7] += 1.0
    np.savez(tmp_path / "tampered.npz", **arrays)
    problems = vsconf.verify(tmp_path / "tampered.npz", SPEC, lock=tmp_path / "lock.json")
    assert problems[0] == vsconf.Problem(
        str(tmp_path / "tampered.npz"), 0, 0, "", "1 of 2048 elements differ from what the spec produces (max |difference| 1)", tensor="fc1.weight"
    )
    assert str(problems[0]) == f"{tmp_path / 'tampered.npz'}: tensor 'fc1.weight': 1 of 2048 elements differ from what the spec produces (max |difference| 1)"
    assert (problems[1].source, problems[1].tensor) == (str(tmp_path / "lock.json"), "fc1.weight")
    assert problems[1].message.startswith("sha256 ") and problems[1].message.endswith("differs from the lock's " + _lock_sha(tmp_path, "fc1.weight"))
    assert len(problems) == 2


def _lock_sha(tmp_path, name):
    lock = json.loads((tmp_path / "lock.json").read_text())
    return next(t["sha256"] for t in lock["tensors"] if t["name"] == name)


def test_lock_records_what_was_made(tmp_path):
    model = tmp_path / "m.npz"
    np.savez(model, **state())
    result = vsconf.apply(model, SPEC, lock=tmp_path / "lock.json", seed=77)
    lock = json.loads((tmp_path / "lock.json").read_text())
    assert lock["seed"] == 77 and lock["spec_sha256"] == SPEC.with_seed(77).sha256
    assert lock["vsconf"] == vsconf.__version__ and lock["numpy"] == np.__version__
    records = {t["name"]: t for t in lock["tensors"]}
    assert set(records) == {"fc1.weight", "fc1.bias", "fc2.weight", "norm.weight"}
    assert sorted(lock["kept"]) == ["extra", "frozen.weight", "steps"]
    fc1 = records["fc1.weight"]
    assert fc1["shape"] == [64, 32] and fc1["dtype"] == "float32"
    assert (fc1["fan_in"], fc1["fan_out"]) == (32, 64)
    assert fc1["std"] == pytest.approx(np.sqrt(2 / 32))
    assert fc1["init"] == {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None}
    data = np.load(result.output)
    assert fc1["sha256"] == hashlib.sha256(np.ascontiguousarray(data["fc1.weight"]).tobytes()).hexdigest()
    # the lock's seed is what verify uses, so the --seed used at apply time need not be repeated
    assert vsconf.verify(result.output, SPEC, lock=tmp_path / "lock.json") == []
    other = parse_spec(SPEC.canonical_json().replace('"scale":2.0', '"scale":2.5'), source="other.yaml")
    assert other.sha256 != SPEC.sha256
    problems = vsconf.verify(result.output, other, lock=tmp_path / "lock.json")
    assert any(p.tensor is None and p.message.startswith("the lock was made from spec sha256") for p in problems)


def test_safetensors_round_trip_with_metadata_and_bfloat16(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = state()
    arrays["fc2.weight"] = arrays["fc2.weight"].astype(ml_dtypes.bfloat16)
    model = tmp_path / "m.safetensors"
    safetensors_numpy.save_file(arrays, str(model), metadata={"format": "pt"})
    result = vsconf.apply(model, SPEC)
    import safetensors

    with safetensors.safe_open(str(result.output), "numpy") as f:
        assert f.metadata() == {
            "format": "pt",
            "vsconf.version": vsconf.__version__,
            "vsconf.seed": "5",
            "vsconf.spec_sha256": SPEC.sha256,
            "vsconf.stream": "1",
        }
        fc2 = f.get_tensor("fc2.weight")
    assert fc2.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(fc2, vsconf.apply_state_dict(arrays, SPEC)["fc2.weight"])
    assert vsconf.verify(result.output, SPEC) == []


def test_missing_safetensors_extra_is_named(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    (tmp_path / "m.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match=r"\.safetensors files need the optional extra: pip install 'vsconf\[safetensors\]'"):
        vsconf.plan(tmp_path / "m.safetensors", SPEC)


def test_unreadable_models_are_user_errors(tmp_path):
    with pytest.raises(ModelError, match=r"nope.npz: no such file"):
        vsconf.plan(tmp_path / "nope.npz", SPEC)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=r"bad.npz: cannot read as .npz"):
        vsconf.plan(tmp_path / "bad.npz", SPEC)
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"unknown model format '.pt'; expected .onnx, .npz or .safetensors"):
        vsconf.plan(tmp_path / "m.pt", SPEC)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 3), max_size=5),
    st.sampled_from(["<f4", ">f8", "<f2", "|u1", "<i8", "|b1", "<c8", "|V3", "<U2", "<M8[s]", "[('a', '<f4'), ('b', '|u1')]"]),
    st.booleans(),
    st.sampled_from([1, 2]),
)
def test_npy_headers_read_as_numpy_reads_them(shape, descr, fortran, version):
    """The plain-header path and NumPy's parser agree on every header: shape, dtype and
    where the data starts (NumPy's own reader decides every header that is not plain)."""
    import ast
    import io

    from vsconf.formats.npz import _npy_header

    dtype = np.dtype(ast.literal_eval(descr) if descr.startswith("[") else descr)
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": tuple(shape)}
    write, read = {
        1: (np.lib.format.write_array_header_1_0, np.lib.format.read_array_header_1_0),
        2: (np.lib.format.write_array_header_2_0, np.lib.format.read_array_header_2_0),
    }[version]
    write(buffer, header)
    data = buffer.getvalue()
    handle = io.BytesIO(data)
    np.lib.format.read_magic(handle)
    shape_read, _, dtype_read = read(handle)
    assert _npy_header(io.BytesIO(data + b"rest")) == (tuple(shape_read), dtype_read, handle.tell())


def test_npy_header_errors_are_numpy_s():
    import io

    from vsconf.formats.npz import _npy_header

    bad = b"\x93NUMPY\x01\x00" + (20).to_bytes(2, "little") + b"{'descr': 7}       \n"
    with pytest.raises(ValueError, match="Header does not contain the correct keys"):
        _npy_header(io.BytesIO(bad))
    with pytest.raises(ValueError, match="Python objects"):
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        _npy_header(io.BytesIO(buffer.getvalue()))
