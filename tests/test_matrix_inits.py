"""The matrix inits (vsconf/inits/matrix.py): orthogonal, identity and dirac.

Orthogonal is checked by what it promises -- orthonormal rows (wide) or columns (tall) of
the layout's matrix, times the gain; entries distributed as torch's ``orthogonal_``
(two-sample Kolmogorov-Smirnov, tests/stats.py); the same bytes for the same key, whatever
the threads, the cache or the stream version; golden digests that pin the bytes of the
QR itself.  Identity and dirac are compared with torch's ``eye_`` and ``dirac_`` to the
bit.  Every ``*_part`` and ``*_flat`` form must equal that box or range of the whole.
"""

from __future__ import annotations

import hashlib
import math
import threading

import numpy as np
import pytest

from vsconf import streams
from vsconf.dtypes import dtype_named
from vsconf.inits import matrix as M

from stats import same_distribution

torch = pytest.importorskip("torch")

BF16 = dtype_named("bfloat16")
LAYOUTS = ("torch", "tf")


def key(seed: int = 7, name: str = "w") -> int:
    return streams.stream_key(seed, name)


def ortho(shape, layout="torch", gain=1.0, dtype="float64", k=None, **kwargs) -> np.ndarray:
    return M.orthogonal(key() if k is None else k, shape, layout=layout, gain=gain, dtype=dtype, **kwargs)


def matrix_of(w: np.ndarray, layout: str) -> np.ndarray:
    return w.reshape(M.matrix_shape(w.shape, layout))


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@pytest.fixture(autouse=True)
def _fresh_cache():
    M.clear_cache()
    yield
    M.clear_cache()


# --------------------------------------------------------------------------- layouts and orthogonality


SHAPES = [
    (3, 5), (5, 3), (4, 4), (1, 9), (9, 1), (1, 1), (64, 64), (33, 100), (100, 33), (65, 65), (40, 130),
    (6, 4, 3, 3), (3, 3, 4, 6), (8, 2, 5), (2, 5, 8), (16, 8, 3, 3), (3, 3, 8, 16), (2, 3, 4, 5, 2),
]  # fmt: skip


def test_the_layouts_see_the_matrices_torch_and_keras_see():
    assert M.matrix_shape((6, 4, 3, 3), "torch") == (6, 36)
    assert M.matrix_shape((6, 4, 3, 3), "tf") == (72, 3)
    assert M.matrix_shape((3, 5), "torch") == M.matrix_shape((3, 5), "tf") == (3, 5)
    assert M.matrix_shape((2, 3, 4, 5, 2), "torch") == (2, 120) and M.matrix_shape((2, 3, 4, 5, 2), "tf") == (120, 2)
    # torch's orthogonal_ views the tensor as [shape[0], -1]
    t = torch.empty(6, 4, 3, 3)
    assert tuple(t.view(t.shape[0], -1).shape) == M.matrix_shape(t.shape, "torch")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_rows_or_columns_are_orthonormal_times_the_gain(shape, layout):
    for gain in (1.0, 2.5, 0.3):
        w = ortho(shape, layout, gain)
        assert w.shape == shape and w.dtype == np.float64
        m = matrix_of(w, layout)
        rows, cols = m.shape
        gram = m @ m.T if rows <= cols else m.T @ m
        error = np.abs(gram - gain**2 * np.eye(min(rows, cols))).max()
        assert error <= 1e-6 * gain**2, (shape, layout, gain, error)
        # Householder QR is backward stable: far better than asked, in fact.
        assert error <= 1e-13 * gain**2 * max(rows, cols), (shape, layout, gain, error)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_gain_only_scales_the_same_matrix(layout):
    one = ortho((6, 4, 3), layout, 1.0)
    for gain in (2.0, -1.5, 0.1, 0.0, 3):
        np.testing.assert_array_equal(ortho((6, 4, 3), layout, gain), one * np.float64(gain))


def test_an_orthogonal_tensor_with_no_elements_is_empty():
    for shape in [(0, 5), (5, 0), (0, 0), (3, 0, 2), (2, 3, 0)]:
        for layout in LAYOUTS:
            w = ortho(shape, layout, dtype="float32")
            assert w.shape == shape and w.dtype == np.float32 and w.size == 0


# --------------------------------------------------------------------------- the distribution: torch's


def _torch_orthogonals(shape, count: int) -> list[np.ndarray]:
    """``count`` independent draws of torch's ``orthogonal_`` on a float64 tensor of ``shape``.

    One thread: torch's thread pool spins on tiny QRs, and on a busy machine a few hundred of
    them take seconds instead of a tenth of one."""
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    try:
        return [torch.nn.init.orthogonal_(torch.empty(shape, dtype=torch.float64)).numpy() for _ in range(count)]
    finally:
        torch.set_num_threads(threads)
        torch.random.set_rng_state(state)


def _pooled(shape, layout, seeds, pick=lambda m: m):
    ours = np.concatenate([pick(matrix_of(ortho(shape, layout, k=key(s, "pool")), layout)).ravel() for s in range(seeds)])
    rows_cols = M.matrix_shape(shape, layout)  # torch sees the same matrix through its own layout
    theirs = np.concatenate([pick(q).ravel() for q in _torch_orthogonals(rows_cols, seeds)])
    return ours, theirs


@pytest.mark.parametrize(
    "shape, layout, seeds",
    [
        ((256, 256), "torch", 1), ((128, 512), "torch", 1), ((512, 96), "tf", 1), ((32, 16, 3, 3), "torch", 1),
        ((3, 3, 16, 32), "tf", 1), ((3, 5), "torch", 300), ((5, 3), "tf", 300), ((4, 4), "torch", 300),
        ((2, 3, 2), "tf", 300), ((2, 3, 2), "torch", 300), ((1, 6), "torch", 300),
    ],
    ids=str,
)  # fmt: skip
def test_entries_are_distributed_as_torchs_orthogonal(shape, layout, seeds):
    ours, theirs = _pooled(shape, layout, seeds)
    ok, d, critical = same_distribution(ours, theirs)
    assert ok, f"{shape} {layout}: KS D = {d:.5f} > {critical:.5f}"


def test_columns_signs_are_fixed_so_that_q_is_haar_like_torchs():
    # Without the sign fix by R's diagonal, Q's diagonal leans to one sign (a Householder
    # QR's R has a diagonal of mostly one sign); all entries pooled would not show it.
    ours, theirs = _pooled((4, 4), "torch", 250, pick=np.diag)
    ok, d, critical = same_distribution(ours, theirs)
    assert ok, f"diagonal: KS D = {d:.5f} > {critical:.5f}"
    assert abs(ours.mean()) < 5 * ours.std() / math.sqrt(ours.size)
    ours, theirs = _pooled((3, 6), "torch", 250, pick=lambda m: m[:, 0])
    ok, d, critical = same_distribution(ours, theirs)
    assert ok, f"first column: KS D = {d:.5f} > {critical:.5f}"


# --------------------------------------------------------------------------- the bytes


def test_the_same_key_gives_the_same_bytes_and_another_key_others():
    for shape, layout in [((40, 70), "torch"), ((70, 40), "tf"), ((6, 4, 3, 3), "tf"), ((33, 33), "torch")]:
        first = ortho(shape, layout, dtype="float32")
        M.clear_cache()
        again = ortho(shape, layout, dtype="float32")
        assert first.tobytes() == again.tobytes() and first is not again
        other = ortho(shape, layout, dtype="float32", k=key(8))
        assert not np.array_equal(first, other)
        renamed = ortho(shape, layout, dtype="float32", k=key(7, "w2"))
        assert not np.array_equal(first, renamed)


def test_the_bytes_do_not_depend_on_threads_cache_or_stream_version():
    shape = (300, 290)  # more columns than one thread's chunk: jobs > 1 splits the updates
    reference = ortho(shape, jobs=1)
    for jobs in (2, 3, 8):
        M.clear_cache()
        assert ortho(shape, jobs=jobs).tobytes() == reference.tobytes(), jobs
    for stream in streams.STREAMS:
        M.clear_cache()
        assert ortho(shape, stream=stream).tobytes() == reference.tobytes(), stream


# (shape, layout, gain, dtype): sha256 of the bytes, its first 16 hex digits, recorded from
# the implementation of commit 1875a38 (x86-64, NumPy 2, 2 cores).  They pin the QR's
# arithmetic (PANEL, SUM_ROWS, the fold's tree) and the draws: a change there changes them,
# and a lock written by an earlier vsconf would fail verify.  They hold on every machine
# or the module's promise of machine-independent bytes is broken.
GOLDEN = {
    ((5, 3), "torch", 1.0, "float64"): "f2f227b7eb2a658b",
    ((3, 5), "tf", 1.0, "float64"): "b60b56d41614da72",
    ((100, 70), "torch", 1.0, "float64"): "b29922b58bbbc9bf",
    ((40, 130), "torch", 1.0, "float64"): "99e22ec9c2fd0def",
    ((16, 8, 3, 3), "torch", 1.4142135623730951, "float32"): "99bc62f2fc7d814b",
    ((3, 3, 8, 16), "tf", 2.0, "float16"): "c0a727797080713d",
    ((64, 40), "tf", 0.5, "bfloat16"): "e0c3c03accc84ce0",
}


@pytest.mark.parametrize("case", list(GOLDEN), ids=str)
def test_golden_digests(case):
    shape, layout, gain, dtype = case
    w = M.orthogonal(streams.stream_key(2024, "golden"), shape, layout=layout, gain=gain, dtype=dtype)
    assert sha(w) == GOLDEN[case], (case, sha(w))


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("gain", [1.0, 1.7, 0.02])
def test_narrower_dtypes_are_the_float64_values_times_gain_rounded_once(layout, gain):
    shape = (12, 5, 3)
    exact = ortho(shape, layout, 1.0) * np.float64(gain)
    f32 = ortho(shape, layout, gain, "float32")
    assert f32.dtype == np.float32 and f32.tobytes() == exact.astype(np.float32).tobytes()
    f16 = ortho(shape, layout, gain, "float16")
    assert f16.dtype == np.float16 and f16.tobytes() == exact.astype(np.float16).tobytes()  # one IEEE rounding
    b16 = ortho(shape, layout, gain, "bfloat16")
    # bfloat16 from float64 goes through float32, both to nearest even (vsconf/narrow.py)
    assert b16.dtype == BF16 and b16.tobytes() == exact.astype(np.float32).astype(BF16).tobytes()
    # dtypes given as NumPy dtypes or types are the same dtypes
    assert ortho(shape, layout, gain, np.float32).tobytes() == f32.tobytes()
    assert ortho(shape, layout, gain, np.dtype("float16")).tobytes() == f16.tobytes()
    assert ortho(shape, layout, gain, BF16).tobytes() == b16.tobytes()


def test_float32_orthogonality_holds_to_float32_precision():
    for shape, layout in [((64, 200), "torch"), ((3, 3, 16, 32), "tf")]:
        m = matrix_of(ortho(shape, layout, 2.0, "float32"), layout).astype(np.float64)
        rows, cols = m.shape
        gram = m @ m.T if rows <= cols else m.T @ m
        assert np.abs(gram - 4 * np.eye(min(rows, cols))).max() <= 4 * 1e-5


@pytest.mark.parametrize("dtype", ["int32", "float8_e4m3fn", "complex64", "bool", np.int64, "float128"])
def test_other_dtypes_are_refused(dtype):
    for call in (
        lambda: ortho((3, 3), dtype=dtype),
        lambda: M.identity((3, 3), gain=1.0, dtype=dtype),
        lambda: M.dirac((3, 3, 3), dtype=dtype),
    ):
        with pytest.raises((ValueError, TypeError)):
            call()


# --------------------------------------------------------------------------- part and flat forms


def _random_boxes(shape, rng, count):
    for _ in range(count):
        offset = [int(rng.integers(0, d)) if d else 0 for d in shape]
        sizes = [int(rng.integers(0, d - o + 1)) for o, d in zip(offset, shape)]
        yield tuple(offset), tuple(sizes)


def _random_ranges(total, rng, count):
    yield 0, total
    yield 0, 0
    yield total, total
    for _ in range(count):
        start = int(rng.integers(0, total + 1))
        yield start, int(rng.integers(start, total + 1))


def _slice(whole, offset, sizes):
    return whole[tuple(slice(o, o + s) for o, s in zip(offset, sizes))]


def _from_flat_boxes(part, shape, start, stop):
    """Elements start:stop assembled from the boxes of flat_boxes, as the module does."""
    pieces = [part(o, s).reshape(-1) for o, s in M.flat_boxes(shape, start, stop)]
    return np.concatenate(pieces) if pieces else np.empty(0)


@pytest.mark.parametrize(
    "shape", [(2, 3, 4), (7, 11), (1, 13), (5, 1, 3), (4, 3, 2, 5), (3, 2, 2, 2, 3), (0, 4), (6,), (3, 0, 2), ()], ids=str
)
def test_flat_boxes_cover_exactly_the_range_in_order(shape):
    rng = np.random.default_rng(len(shape))
    whole = np.arange(math.prod(shape)).reshape(shape)
    for start, stop in _random_ranges(whole.size, rng, 40):
        boxes = M.flat_boxes(shape, start, stop)
        assert len(boxes) <= max(1, 2 * len(shape) - 1)
        got = np.concatenate([_slice(whole, o, s).reshape(-1) for o, s in boxes]) if boxes else np.empty(0, int)
        np.testing.assert_array_equal(got, np.arange(start, stop))
    for bad in [(-1, 2), (2, 1), (0, whole.size + 1)]:
        with pytest.raises(ValueError):
            M.flat_boxes(shape, *bad)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(8, 6), (6, 8), (5, 4, 3), (4, 3, 2, 5), (1, 7), (40, 33)], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_orthogonal_part_and_flat_are_slices_of_the_whole(shape, layout, dtype):
    rng = np.random.default_rng(hash((shape, layout)) % 2**32)
    k = key(3, "parts")
    whole = M.orthogonal(k, shape, layout=layout, gain=1.3, dtype=dtype)
    kwargs = dict(layout=layout, gain=1.3, dtype=dtype)
    for offset, sizes in _random_boxes(shape, rng, 25):
        part = M.orthogonal_part(k, shape, offset, sizes, **kwargs)
        assert part.dtype == whole.dtype and part.tobytes() == np.ascontiguousarray(_slice(whole, offset, sizes)).tobytes()
    for start, stop in _random_ranges(whole.size, rng, 25):
        flat = M.orthogonal_flat(k, shape, start, stop, **kwargs)
        assert flat.dtype == whole.dtype and flat.tobytes() == whole.reshape(-1)[start:stop].tobytes()
        assembled = _from_flat_boxes(lambda o, s: M.orthogonal_part(k, shape, o, s, **kwargs), shape, start, stop)
        assert assembled.astype(whole.dtype).tobytes() == flat.tobytes()
    # with the cache cleared, a part alone is the same (it factors the whole again)
    M.clear_cache()
    offset, sizes = next(_random_boxes(shape, rng, 1))
    assert M.orthogonal_part(k, shape, offset, sizes, **kwargs).tobytes() == np.ascontiguousarray(_slice(whole, offset, sizes)).tobytes()


def test_parts_are_copies_that_cannot_change_the_cache():
    k = key(4)
    part = M.orthogonal_part(k, (6, 6), (0, 0), (6, 6), layout="torch", gain=1.0, dtype="float32")
    before = part.copy()
    part[...] = 0
    flat = M.orthogonal_flat(k, (6, 6), 0, 36, layout="torch", gain=1.0, dtype="float32")
    flat[...] = 0
    whole = M.orthogonal(k, (6, 6), layout="torch", gain=1.0, dtype="float32")
    whole[...] = 0
    np.testing.assert_array_equal(M.orthogonal_part(k, (6, 6), (0, 0), (6, 6), layout="torch", gain=1.0, dtype="float32"), before)


def test_the_cache_factors_a_tensor_once_for_many_threads_and_keeps_the_last_few(monkeypatch):
    calls = []
    real = M._orthogonal_float64

    def counting(*args):
        calls.append(args[:3])
        return real(*args)

    monkeypatch.setattr(M, "_orthogonal_float64", counting)
    k, shape = key(5, "threads"), (120, 90)
    results = [None] * 8

    def ask(i):
        results[i] = M.orthogonal_part(k, shape, (i * 15, 0), (15, 90), layout="tf", gain=1.0, dtype="float32")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    np.testing.assert_array_equal(np.concatenate(results), M.orthogonal(k, shape, layout="tf", gain=1.0, dtype="float32"))
    assert len(calls) == 1
    for i in range(M.CACHE_ENTRIES):  # as many others: the first falls out
        M.orthogonal_flat(key(100 + i), (4, 4), 0, 1, layout="tf", gain=1.0, dtype="float32")
    M.orthogonal_flat(k, shape, 0, 1, layout="tf", gain=1.0, dtype="float32")
    assert len(calls) == 2 + M.CACHE_ENTRIES
    # gain, dtype, layout and stream are part of what is cached: no mix-up between them
    a = M.orthogonal_flat(k, (4, 6), 0, 24, layout="tf", gain=1.0, dtype="float32")
    b = M.orthogonal_flat(k, (4, 6), 0, 24, layout="tf", gain=2.0, dtype="float32")
    c = M.orthogonal_flat(k, (4, 6), 0, 24, layout="tf", gain=1.0, dtype="float64")
    np.testing.assert_array_equal(b, 2 * a)
    np.testing.assert_array_equal(c.astype(np.float32), a)


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3), (1, 4), (0, 3), (9, 2)], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_identity_part_and_flat_are_slices_of_the_whole(shape, dtype):
    rng = np.random.default_rng(11)
    whole = M.identity(shape, gain=2.5, dtype=dtype)
    for offset, sizes in _random_boxes(shape, rng, 30):
        part = M.identity_part(shape, offset, sizes, gain=2.5, dtype=dtype)
        assert part.dtype == whole.dtype and part.tobytes() == np.ascontiguousarray(_slice(whole, offset, sizes)).tobytes()
    for start, stop in _random_ranges(whole.size, rng, 30):
        flat = M.identity_flat(shape, start, stop, gain=2.5, dtype=dtype)
        assert flat.tobytes() == whole.reshape(-1)[start:stop].tobytes()
        assembled = _from_flat_boxes(lambda o, s: M.identity_part(shape, o, s, gain=2.5, dtype=dtype), shape, start, stop)
        assert assembled.astype(whole.dtype).tobytes() == flat.tobytes()


@pytest.mark.parametrize(
    "shape, groups", [((4, 2, 3), 1), ((6, 4, 3, 3), 2), ((8, 2, 3, 3), 2), ((6, 2, 2, 4), 3), ((4, 4, 3, 3, 3), 1), ((6, 3, 1, 5, 2), 6)], ids=str
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dirac_part_and_flat_are_slices_of_the_whole(shape, groups, dtype):
    rng = np.random.default_rng(12)
    whole = M.dirac(shape, groups=groups, dtype=dtype)
    for offset, sizes in _random_boxes(shape, rng, 40):
        part = M.dirac_part(shape, offset, sizes, groups=groups, dtype=dtype)
        assert part.dtype == whole.dtype and part.tobytes() == np.ascontiguousarray(_slice(whole, offset, sizes)).tobytes()
    for start, stop in _random_ranges(whole.size, rng, 40):
        flat = M.dirac_flat(shape, start, stop, groups=groups, dtype=dtype)
        assert flat.tobytes() == whole.reshape(-1)[start:stop].tobytes()
        assembled = _from_flat_boxes(lambda o, s: M.dirac_part(shape, o, s, groups=groups, dtype=dtype), shape, start, stop)
        assert assembled.astype(whole.dtype).tobytes() == flat.tobytes()


# --------------------------------------------------------------------------- identity and dirac against torch


_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _as_float64(t) -> np.ndarray:
    return t.to(torch.float64).numpy()


@pytest.mark.parametrize("shape", [(3, 3), (3, 5), (5, 3), (1, 7), (7, 1), (0, 3), (64, 32)], ids=str)
@pytest.mark.parametrize("dtype", list(_TORCH_DTYPES))
def test_identity_is_torchs_eye_times_the_gain(shape, dtype):
    for gain in (1.0, 2.0, 0.5, -3.0, 1.75):
        ours = M.identity(shape, gain=gain, dtype=dtype)
        t = torch.nn.init.eye_(torch.empty(shape, dtype=_TORCH_DTYPES[dtype])) * gain
        assert ours.shape == shape and ours.dtype == dtype_named(dtype)
        np.testing.assert_array_equal(ours.astype(np.float64), _as_float64(t))
    # a gain that the dtype cannot hold is rounded as vsconf rounds every constant
    assert M.identity((2, 2), gain=0.1, dtype="float16")[0, 0] == np.float16(0.1)
    assert M.identity((2, 2), gain=0.1, dtype="bfloat16")[0, 0] == np.float32(0.1).astype(BF16)


@pytest.mark.parametrize(
    "shape, groups",
    [
        ((4, 2, 3), 1), ((2, 4, 5), 1), ((4, 4, 3), 2), ((6, 3, 4), 3),
        ((4, 4, 3, 3), 1), ((8, 2, 3, 3), 2), ((6, 4, 2, 2), 2), ((6, 2, 1, 1), 3), ((3, 5, 5, 4), 1), ((12, 4, 3, 3), 4),
        ((4, 4, 3, 3, 3), 1), ((4, 2, 2, 3, 4), 2), ((6, 1, 3, 3, 3), 6), ((0, 3, 3, 3), 1), ((4, 0, 3, 3), 2),
    ],
    ids=str,
)  # fmt: skip
@pytest.mark.parametrize("dtype", list(_TORCH_DTYPES))
def test_dirac_is_torchs_dirac(shape, groups, dtype):
    ours = M.dirac(shape, groups=groups, dtype=dtype)
    t = torch.nn.init.dirac_(torch.empty(shape, dtype=_TORCH_DTYPES[dtype]), groups=groups)
    assert ours.shape == shape and ours.dtype == dtype_named(dtype)
    np.testing.assert_array_equal(ours.astype(np.float64), _as_float64(t))


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("shape", [(3,), (), (2, 3, 4), (1, 1, 1, 1)], ids=str)
def test_identity_needs_two_dimensions(shape):
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions are supported"):
        M.identity(shape, gain=1.0, dtype="float32")
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions are supported"):
        M.identity_flat(shape, 0, 0, gain=1.0, dtype="float32")
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions are supported"):
        M.identity_part(shape, (0,) * len(shape), (0,) * len(shape), gain=1.0, dtype="float32")


@pytest.mark.parametrize("shape", [(3,), (), (3, 3), (1, 1, 1, 1, 1, 1)], ids=str)
def test_dirac_needs_three_to_five_dimensions(shape):
    with pytest.raises(ValueError, match="Only tensors with 3, 4, or 5 dimensions are supported"):
        M.dirac(shape, dtype="float32")
    with pytest.raises(ValueError, match="Only tensors with 3, 4, or 5 dimensions are supported"):
        M.dirac_flat(shape, 0, 0, dtype="float32")


@pytest.mark.parametrize("shape, groups", [((5, 3, 3), 2), ((4, 2, 3, 3), 3), ((6, 2, 3), 4), ((1, 1, 1), 2)])
def test_groups_must_divide_the_out_channels(shape, groups):
    for call in (
        lambda: M.dirac(shape, groups=groups, dtype="float32"),
        lambda: M.dirac_part(shape, (0,) * len(shape), shape, groups=groups, dtype="float32"),
        lambda: M.dirac_flat(shape, 0, 1, groups=groups, dtype="float32"),
    ):
        with pytest.raises(ValueError, match="dim 0 must be divisible by groups"):
            call()


@pytest.mark.parametrize("groups", [0, -1, True, 1.0, 1.5, "1", None])
def test_groups_must_be_a_positive_integer(groups):
    with pytest.raises(ValueError, match="`groups` must be a positive integer"):
        M.dirac((4, 4, 3), groups=groups, dtype="float32")


@pytest.mark.parametrize("shape", [(5,), (), (0,)], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_orthogonal_needs_two_or_more_dimensions(shape, layout):
    with pytest.raises(ValueError, match="Only tensors with 2 or more dimensions are supported"):
        ortho(shape, layout)
    with pytest.raises(ValueError, match="Only tensors with 2 or more dimensions are supported"):
        M.orthogonal_flat(key(), shape, 0, 0, layout=layout, gain=1.0, dtype="float32")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ortho((3, 3), layout="keras"), "Unknown layout"),
        (lambda: ortho((3, 3), layout="TORCH"), "Unknown layout"),
        (lambda: ortho((3, 3), gain=math.nan), "`gain` must be a finite number"),
        (lambda: ortho((3, 3), gain=math.inf), "`gain` must be a finite number"),
        (lambda: ortho((3, 3), gain=True), "`gain` must be a finite number"),
        (lambda: ortho((3, 3), gain="1"), "`gain` must be a finite number"),
        (lambda: M.identity((3, 3), gain=-math.inf, dtype="float32"), "`gain` must be a finite number"),
        (lambda: ortho((3, 3), k=-1), "`key` must be a stream key"),
        (lambda: ortho((3, 3), k=True), "`key` must be a stream key"),
        (lambda: ortho((3, 3), k=1.0), "`key` must be a stream key"),
        (lambda: ortho((3, 3), stream=3), "Unknown stream version"),
        (lambda: ortho((3, -3)), "at least 0"),
        (lambda: ortho((3, 2.5)), "A shape is a sequence of integers"),
        (lambda: ortho((3, True)), "A shape is a sequence of integers"),
        (lambda: ortho("ab"), "A shape is a sequence of integers"),
        (lambda: ortho(3), "A shape is a sequence of integers"),
        (lambda: M.orthogonal_part(key(), (4, 4), (1, 1), (4, 1), layout="tf", gain=1.0, dtype="float32"), "does not fit"),
        (lambda: M.orthogonal_part(key(), (4, 4), (0,), (1,), layout="tf", gain=1.0, dtype="float32"), "differ in rank"),
        (lambda: M.orthogonal_part(key(), (4, 4), (-1, 0), (1, 1), layout="tf", gain=1.0, dtype="float32"), "does not fit"),
        (lambda: M.orthogonal_flat(key(), (4, 4), 3, 17, layout="tf", gain=1.0, dtype="float32"), "does not fit"),
        (lambda: M.orthogonal_flat(key(), (4, 4), 5, 4, layout="tf", gain=1.0, dtype="float32"), "does not fit"),
        (lambda: M.identity_part((4, 4), (3, 0), (2, 1), gain=1.0, dtype="float32"), "does not fit"),
        (lambda: M.identity_flat((4, 4), -1, 2, gain=1.0, dtype="float32"), "does not fit"),
        (lambda: M.dirac_part((4, 4, 3), (0, 0, 2), (1, 1, 2), dtype="float32"), "does not fit"),
        (lambda: M.dirac_flat((4, 4, 3), 0, 49, dtype="float32"), "does not fit"),
    ],
)
def test_bad_arguments_are_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((4096, 4096), "torch"), ((2048, 2049), "tf"), ((1, M.MAX_ORTHOGONAL_ELEMENTS + 1), "torch"),
        ((M.MAX_ORTHOGONAL_ELEMENTS + 1, 1), "tf"), ((65, 256, 16, 16), "torch"), ((16, 16, 256, 65), "tf"), ((10**9, 10**9), "torch"),
        ((2, 2048, 1025), "tf"),
    ],
    ids=str,
)  # fmt: skip
def test_orthogonal_refuses_matrices_above_the_limit_before_drawing(shape, layout, monkeypatch):
    def no_draw(*args, **kwargs):
        raise AssertionError("drew normals for a matrix above the limit")

    monkeypatch.setattr(M.streams, "draw_flat", no_draw)
    with pytest.raises(ValueError, match="above vsconf's limit of 4194304"):
        M.check_orthogonal(shape, layout)
    for call in (
        lambda: ortho(shape, layout, dtype="float32"),
        lambda: M.orthogonal_part(key(), shape, (0,) * len(shape), (1,) * len(shape), layout=layout, gain=1.0, dtype="float32"),
        lambda: M.orthogonal_flat(key(), shape, 0, 1, layout=layout, gain=1.0, dtype="float32"),
    ):
        with pytest.raises(ValueError, match="above vsconf's limit"):
            call()


def test_the_limit_itself_is_allowed():
    assert M.MAX_ORTHOGONAL_ELEMENTS == 2048 * 2048
    assert M.check_orthogonal((2048, 2048), "torch") == (2048, 2048)
    assert M.check_orthogonal((1, 2048 * 2048), "tf") == (1, 2048 * 2048)
    assert M.check_orthogonal((64, 64, 32, 32), "torch") == (64, 65536)
    assert M.check_orthogonal((4, 1024, 1024), "tf") == (4096, 1024)


@pytest.mark.slow
def test_a_matrix_at_the_limit_is_orthogonal():
    w = M.orthogonal(key(9, "big"), (1, 2048 * 2048), layout="torch", gain=1.0, dtype="float32", jobs=2)
    assert abs(float(np.square(w.astype(np.float64)).sum()) - 1.0) < 1e-5
