"""Reproducible random streams: the whole reproducibility contract lives here.

A tensor's values are a function of (stream version, seed, name, full shape, dtype,
distribution and its parameter) and nothing else:

* The tensor is flattened in C order and cut into blocks of ``BLOCK_SIZE`` elements.
* Block ``b`` draws from its own SFC64 stream, seeded by NumPy's ``SeedSequence``
  with the first 128 bits of SHA-256(domain, seed, name) as entropy -- never
  Python's ``hash()``, which is salted per process -- and ``(b,)`` as spawn key,
  the documented way to derive independent child streams.
* Uniform draws, and every draw of a float64 tensor, are NumPy's float64 ones:
  ``Generator.random`` (U[-limit, limit) is ``(u - 1/2) * 2 limit``) and the ziggurat
  ``Generator.standard_normal``.
* Normals of tensors of at most 32 bits (float32, float16, bfloat16, float8) depend on
  the stream version.  Stream 1 (the default) takes them from the float64 ziggurat too,
  scales them in float64 and rounds once.  Stream 2 (opt-in, ``stream: 2``) draws them in
  float32 by :mod:`vsconf.boxmuller` -- a Box-Muller transform built only from
  operations IEEE 754 rounds exactly, so identical on every CPU, and up to 1.8 times as
  fast as the ziggurat on a thread drawing alone -- and scales them in float32: a block
  of ``n`` values takes ``ceil(n / 2)`` raw words and is laid out as all the cosines,
  then the sines.
* Truncated normals resample the rejected positions (|z| >= 2), in order, from the
  block's own stream until none is left.

Because a block depends only on its index and the full tensor's size, the output is
bit-identical whatever the number of threads, and a partition of a tensor equals the
matching slice of the whole.  NumPy keeps ``SeedSequence`` and the bit generators'
streams stable across releases (NEP 19); the float64 ziggurat normal of
``numpy.random.Generator`` has not changed since NumPy 1.17, and the golden digests
pinned in the tests (for both stream versions) catch it if it ever does.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vsconf import narrow
from vsconf.boxmuller import normal_pairs
from vsconf.threads import available_cores

BLOCK_SIZE = 1 << 16
KINDS = ("truncated_normal", "untruncated_normal", "uniform")
# Version tag of the stream definition: change it and every digest changes.
_DOMAIN = b"vsconf/stream/v1\x00"
# The truncated normal keeps |z| < 2 standard deviations of the underlying normal, as TF does.
_TRUNCATION = 2.0
# Truncation bounds in standard deviations of the underlying normal: VarianceScaling's, and
# the default of every truncated draw.  Other bounds (a truncated_normal init's) resample
# the positions outside them the same way, so these draw exactly what they always drew.
TRUNCATION_BOUNDS = (-_TRUNCATION, _TRUNCATION)
MAX_SEED = 2**63
# The stream definitions vsconf can draw.  A spec that names none draws stream 1: stream 2
# is ~1.5x as fast per thread for normals, but with several threads in one process the GIL
# handoffs between its many short NumPy calls eat the gain (see README, Performance), so it
# is opt-in -- and the default stays what vsconf 0.1 drew.
STREAMS = (1, 2)
DEFAULT_STREAM = 1
LATEST_STREAM = 2
Shape = tuple[int, ...]


def fresh_seed() -> int:
    """A seed drawn from the operating system's entropy, for ``seed=None``."""
    return secrets.randbelow(MAX_SEED)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Argument `seed` must be an integer or None. Received: seed={seed!r}")
    seed = int(seed)
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"Argument `seed` must satisfy 0 <= seed < 2**63. Received: seed={seed}")
    return seed


def stream_key(seed: int, name: str) -> int:
    """The 128-bit entropy of the streams of tensor ``name`` under ``seed``."""
    seed = check_seed(seed)
    digest = hashlib.sha256(_DOMAIN + seed.to_bytes(8, "little") + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:16], "little")


def _unit_scale(kind: str, param: float) -> float:
    """What :func:`_block_draws`' values are multiplied by to give the distribution of ``param``.

    Uniform draws come as U[-1/2, 1/2), so their factor is ``2 * param`` -- exact, and
    finite for any limit a spec can give (at most ``sqrt(3 * max float)``, about 1e154).
    """
    return 2.0 * param if kind == "uniform" else param


# NumPy's SeedSequence (bit_generator.pyx) and SFC64 seeding (sfc64.h), replayed on arrays of
# block indices so that a big draw seeds thousands of blocks in a few NumPy calls instead of
# ~10 us of GIL-holding work per block.  Tests pin the states against NumPy's own.
_M32 = np.uint64(0xFFFFFFFF)
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _XSHIFT = np.uint64(0xCA01F9DD), np.uint64(0x4973F715), np.uint64(16)
_POOL_SIZE = 4
# Below this many blocks, per-block seeding is cheaper than the array version's fixed cost.
_VECTOR_SEEDING_MIN_BLOCKS = 16


def block_states(key: int, first: int, last: int) -> np.ndarray:
    """The SFC64 states, shape ``(last - first, 4)`` uint64, of blocks ``first:last`` of stream ``key``.

    Row ``i`` equals ``SFC64(SeedSequence(key, spawn_key=(first + i,))).state``: entropy
    words of the key, zero-padded to the pool size, then the block index (one 32-bit word,
    so blocks below 2**32), mixed as SeedSequence does; three 64-bit words of its state
    seed SFC64, which then discards 12 outputs.
    """
    if not 0 <= first <= last <= 1 << 32:
        raise ValueError(f"blocks {first}:{last} are outside 0:2**32")
    count = last - first
    words = [(key >> (32 * i)) & 0xFFFFFFFF for i in range(max(1, -(-key.bit_length() // 32)))]
    words += [0] * (_POOL_SIZE - len(words))
    entropy = [np.full(count, w, dtype=np.uint64) for w in words]
    entropy.append(np.arange(first, last, dtype=np.uint64))
    hash_const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal hash_const
        value = value ^ np.uint64(hash_const)
        hash_const = (hash_const * _MULT_A) & 0xFFFFFFFF
        value = (value * np.uint64(hash_const)) & _M32
        return value ^ (value >> _XSHIFT)

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _M32
        return result ^ (result >> _XSHIFT)

    pool = [hashmix(entropy[i]) for i in range(_POOL_SIZE)]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(_POOL_SIZE, len(entropy)):
        for dst in range(_POOL_SIZE):
            pool[dst] = mix(pool[dst], hashmix(entropy[src]))
    hash_const = _INIT_B
    halves = []
    for i in range(6):  # generate_state(3, uint64): six 32-bit words, low word first
        value = pool[i % _POOL_SIZE] ^ np.uint64(hash_const)
        hash_const = (hash_const * _MULT_B) & 0xFFFFFFFF
        value = (value * np.uint64(hash_const)) & _M32
        halves.append(value ^ (value >> _XSHIFT))
    a, b, c = (halves[2 * i] | (halves[2 * i + 1] << np.uint64(32)) for i in range(3))
    w = np.ones(count, dtype=np.uint64)
    for _ in range(12):  # sfc64_set_seed: s[3] = 1, then 12 rounds of sfc64_next
        tmp = a + b + w
        w = w + np.uint64(1)
        a = b ^ (b >> np.uint64(11))
        b = c + (c << np.uint64(3))
        c = ((c << np.uint64(24)) | (c >> np.uint64(40))) + tmp
    return np.stack([a, b, c, w], axis=1)


def _seeded(key: int, block: int, state: np.ndarray | None, reuse: np.random.Generator | None = None) -> np.random.Generator:
    """The generator of block ``block``: a new one seeded by SeedSequence, or, given the
    block's ``state`` from :func:`block_states`, ``reuse`` (this thread's own by default)
    set to it."""
    if state is None:
        # SFC64 draws normals about twice as fast as Philox; seeding costs ~10 us a block.
        return np.random.Generator(np.random.SFC64(np.random.SeedSequence(key, spawn_key=(block,))))
    gen = reuse if reuse is not None else getattr(_SCRATCH, "generator", None)
    if gen is None:
        gen = _SCRATCH.generator = np.random.Generator(np.random.SFC64(0))
    gen.bit_generator.state = {"bit_generator": "SFC64", "state": {"state": state}, "has_uint32": 0, "uinteger": 0}
    return gen


def check_stream(stream: object) -> int:
    if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)) or int(stream) not in STREAMS:
        raise ValueError(f"Unknown stream version {stream!r}; this vsconf draws streams {', '.join(map(str, STREAMS))}")
    return int(stream)


def uses_float32_normals(stream: int, dtype: np.dtype, kind: str) -> bool:
    """Whether stream ``stream`` draws this tensor's values in float32 by Box-Muller."""
    return stream >= 2 and kind != "uniform" and np.dtype(dtype).itemsize <= 4


def _block_draws(
    key: int,
    block: int,
    count: int,
    kind: str,
    out: np.ndarray | None = None,
    state: np.ndarray | None = None,
    *,
    float32: bool = False,
    bounds: tuple[float, float] = TRUNCATION_BOUNDS,
) -> np.ndarray:
    """``count`` draws of block ``block``: standard normal, truncated to ``bounds`` (open
    at both ends; VarianceScaling's (-2, 2) by default), or U[-1/2, 1/2).

    float64 (NumPy's generators), or float32 Box-Muller normals when ``float32``.
    Written into ``out`` (of that dtype, at least ``count`` long) when given, so that a
    thread reuses one buffer for every block.
    ``state``: the block's row of :func:`block_states`, when the caller seeded many
    blocks at once.
    """
    if float32:
        cosines, sines = _float32_batch(key, [(block, count, state)], kind, bounds)[0]
        values = np.empty(count, dtype=np.float32) if out is None else out[:count]
        values[: cosines.size] = cosines
        values[cosines.size :] = sines
        return values
    gen = _seeded(key, block, state)
    values = np.empty(count) if out is None else out[:count]
    if kind == "uniform":
        gen.random(out=values)
        # u - 1/2 is exact in float64 (u is a multiple of 2**-53), so (u - 1/2) * 2 equals
        # 2u - 1 bit for bit; callers fold the 2 into their scale, one pass fewer.
        values -= 0.5
        return values
    gen.standard_normal(out=values)
    if kind == "truncated_normal":
        outside = _outside_of(bounds)
        rejected = np.flatnonzero(outside(values))
        while rejected.size:
            values[rejected] = gen.standard_normal(rejected.size)
            rejected = rejected[outside(values[rejected])]
    return values


def _outside_of(bounds: tuple[float, float]):
    """The test a truncated draw fails: ``|z| >= 2`` for VarianceScaling's bounds (the
    positions every published stream resampled), ``z <= low or z >= high`` for others."""
    low, high = bounds
    if (low, high) == TRUNCATION_BOUNDS:
        return lambda values: np.abs(values) >= _TRUNCATION
    return lambda values: (values <= low) | (values >= high)


# Blocks a thread draws as one set.  A thread drawing alone in its process (a
# process-pool worker, a script, --jobs 1) runs the Box-Muller arithmetic block by block
# -- its ~10 arrays then stay in the core's cache (measured on 2 cores: 134 M/s a block at
# a time, 92 M/s four blocks at once) -- in sets of one block for untruncated normals
# (each scaled while still in the cache), of four for truncated ones, whose resampling
# rounds then run for the whole set at once (a round is a few thousand words: one call for
# four blocks costs what one block's does; 81-83 vs 73-74 M/s).  When threads draw side by side, each of the arithmetic's
# ~50 calls releases the GIL and takes it back, every handoff costing microseconds, so
# the whole set runs as one (2 threads: one block a set made them slower than 1 thread;
# four blocks, 1.6x one thread).  The values never depend on it: the arithmetic is
# elementwise, and each block's resampling draws from its own stream.
BATCH_BLOCKS = 4
BATCH_BLOCKS_MANY_THREADS = 8
_drawing = [0]  # threads of this process inside draw_flat now
_drawing_lock = threading.Lock()


def _batch_blocks(kind: str) -> tuple[int, bool]:
    """Blocks a set, and whether its arithmetic runs block by block, for as many threads
    as draw now in this process."""
    count = _drawing[0]
    if count <= 1:  # untruncated: one block, scaled while it is still in the cache
        return (BATCH_BLOCKS if kind == "truncated_normal" else 1), True
    return (BATCH_BLOCKS if count <= 2 else BATCH_BLOCKS_MANY_THREADS), False


def _generators(count: int) -> list[np.random.Generator]:
    """This thread's ``count`` generators, one per block of a batch, reseeded for each use."""
    gens = getattr(_SCRATCH, "generators", None)
    if gens is None or len(gens) < count:
        gens = _SCRATCH.generators = [np.random.Generator(np.random.SFC64(0)) for _ in range(count)]
    return gens[:count]


def _float32_batch(
    key: int,
    blocks: Sequence[tuple[int, int, np.ndarray | None]],
    kind: str,
    bounds: tuple[float, float] = TRUNCATION_BOUNDS,
    *,
    by_block: bool = True,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stream 2's float32 normals of several blocks ``(block, count, state)`` at once.

    Block by block, the values are exactly :func:`_block_draws`' (the arithmetic is
    elementwise, so running it over the concatenated raw words, ``by_block=False``,
    changes nothing); each block's come back as its two halves, the cosines and the sines,
    views of this thread's batch arrays, valid until the thread's next batch.
    """
    gens, raws = [], []
    for spare, (block, count, state) in zip(_generators(len(blocks)), blocks):
        gen = _seeded(key, block, state, spare)
        gens.append(gen)
        raws.append(gen.bit_generator.random_raw(-(-count // 2)))
    size = sum(words.size for words in raws)
    xs, ys = getattr(_SCRATCH, "batch", (np.empty(0, np.float32), np.empty(0, np.float32)))
    if xs.size < size:
        xs, ys = _SCRATCH.batch = (np.empty(size, np.float32), np.empty(size, np.float32))
    x, y = xs[:size], ys[:size]
    if by_block or len(raws) == 1:
        offset = 0
        for words in raws:
            normal_pairs(words, x[offset : offset + words.size], y[offset : offset + words.size])
            offset += words.size
    else:
        normal_pairs(np.concatenate(raws), x, y)
    halves, offset = [], 0
    for (block, count, _), words in zip(blocks, raws):
        pairs = words.size
        halves.append((x[offset : offset + pairs], y[offset : offset + count - pairs]))
        offset += pairs
    if kind == "truncated_normal":
        _resample32(gens, halves, bounds)
    return halves


def _resampling_words(left: int) -> int:
    """Raw words a resampling round draws for ``left`` positions: 2 normals a word, 1/8
    more normals than needed and 64 spare, so that one round nearly always suffices
    (4.55% of normals fall outside 2 deviations)."""
    return (left + 1) // 2 + left // 16 + 32


def _outside(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Whether each float32 value lies outside the open interval ``bounds`` (``|values| >=
    2`` for VarianceScaling's), through this thread's scratch arrays (no temporaries)."""
    work, mask = getattr(_SCRATCH, "outside", (np.empty(0, np.float32), np.empty(0, bool)))
    if work.size < values.size:
        work, mask = _SCRATCH.outside = (np.empty(values.size, np.float32), np.empty(values.size, bool))
    work, mask = work[: values.size], mask[: values.size]
    low, high = bounds
    if (low, high) == TRUNCATION_BOUNDS:
        np.abs(values, out=work)
        return np.greater_equal(work, np.float32(_TRUNCATION), out=mask)
    np.greater_equal(values, np.float32(high), out=mask)
    return np.logical_or(mask, np.less_equal(values, np.float32(low), out=np.empty(values.size, bool)), out=mask)


def _resample32(
    gens: Sequence[np.random.Generator], halves: Sequence[tuple[np.ndarray, np.ndarray]], bounds: tuple[float, float] = TRUNCATION_BOUNDS
) -> None:
    """Stream 2's truncation, for each block (``gens[i]``, its ``halves[i]``) in place.

    The positions of a block with |z| >= 2, in ascending order (cosines, then sines),
    are refilled in rounds: a round draws :func:`_resampling_words` (k) raw words from the block's
    own generator for ``k`` positions left, turns them into normals laid out as a block
    (cosines, then sines), and the ones inside 2 deviations fill the positions in order.
    Running rounds for several blocks through one Box-Muller call changes nothing.
    """
    pending = []
    for index, (first, second) in enumerate(halves):
        rejected = np.concatenate([np.flatnonzero(_outside(first, bounds)), first.size + np.flatnonzero(_outside(second, bounds))])
        if rejected.size:
            pending.append((index, rejected))
    while pending:
        raws = [gens[index].bit_generator.random_raw(_resampling_words(rejected.size)) for index, rejected in pending]
        raw = np.concatenate(raws)
        x, y = np.empty(raw.size, np.float32), np.empty(raw.size, np.float32)
        normal_pairs(raw, x, y)
        still, offset = [], 0
        for (index, rejected), words in zip(pending, raws):
            candidates = np.concatenate([x[offset : offset + words.size], y[offset : offset + words.size]])
            offset += words.size
            accepted = candidates[~_outside(candidates, bounds)][: rejected.size]
            filled, rejected = rejected[: accepted.size], rejected[accepted.size :]
            first, second = halves[index]
            low = filled < first.size
            first[filled[low]] = accepted[low]
            second[filled[~low] - first.size] = accepted[~low]
            if rejected.size:
                still.append((index, rejected))
        pending = still


def _scale_into(values: np.ndarray, factor: float, out: np.ndarray, shift: float = 0.0) -> None:
    """``out = values * factor + shift``, computed in the draws' precision, then rounded
    once to ``out``'s dtype: float16 and bfloat16 by vsconf's own rule (:mod:`vsconf.narrow`),
    float32 and float64 by the IEEE cast (round to nearest even, which no library version
    changes); with a shift, the product then the sum are each rounded in the draws'
    precision first.  With no shift nothing is added: a centred draw is bit for bit what
    it was."""
    if narrow.is_narrow(out.dtype):
        narrow.scale_into(values, factor, out, shift=shift)
    elif not shift:
        np.multiply(values, values.dtype.type(factor), out=out, casting="unsafe")
    elif out.dtype == values.dtype:
        np.multiply(values, values.dtype.type(factor), out=out)
        np.add(out, values.dtype.type(shift), out=out)
    else:
        wide = np.multiply(values, values.dtype.type(factor))
        np.add(wide, values.dtype.type(shift), out=wide)
        np.copyto(out, wide, casting="unsafe")


_SCRATCH = threading.local()
# Blocks a thread takes at a time: fewer, larger tasks keep the pool's overhead small.
BLOCKS_PER_TASK = 8


def _scratch() -> np.ndarray:
    """This thread's float64 buffer of one block."""
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None:
        buffer = _SCRATCH.buffer = np.empty(BLOCK_SIZE)
    return buffer


def _segments(shape: Shape, full_shape: Shape, offset: Shape) -> list[tuple[int, int]]:
    """Contiguous runs ``(start, stop)`` of full-tensor flat indices covering a partition, in C order."""
    rank = len(full_shape)
    if rank == 0:
        return [(0, 1)]
    if any(d == 0 for d in shape):
        return []
    # Trailing axes the partition covers whole merge with the axis before them into one run.
    tail = rank
    while tail > 1 and shape[tail - 1] == full_shape[tail - 1]:
        tail -= 1
    run_axis = tail - 1
    run = int(np.prod(shape[run_axis:], dtype=np.int64))
    stride = int(np.prod(full_shape[run_axis + 1 :], dtype=np.int64))
    lead_shape = shape[:run_axis]
    if lead_shape:
        grid = np.indices(lead_shape).reshape(len(lead_shape), -1)
        lead = tuple(grid[i] + offset[i] for i in range(len(lead_shape)))
        starts = np.ravel_multi_index(lead + (np.full(grid.shape[1], offset[run_axis]),), full_shape[: run_axis + 1])
    else:
        starts = np.array([offset[run_axis]], dtype=np.int64)
    starts = starts.astype(np.int64) * stride
    return [(int(s), int(s) + run) for s in starts]


def draw_flat(
    key: int,
    total: int,
    start: int,
    stop: int,
    dtype: np.dtype,
    kind: str,
    param: float,
    *,
    jobs: int = 1,
    out: np.ndarray | None = None,
    stream: int = DEFAULT_STREAM,
    shift: float = 0.0,
    bounds: tuple[float, float] = TRUNCATION_BOUNDS,
) -> np.ndarray:
    """Elements ``start:stop`` (C order) of a tensor of ``total`` elements with stream ``key``.

    The values are those of the whole tensor, whatever the range and ``jobs``: this is
    what writers call to produce a big tensor chunk by chunk.  Blocks go to ``jobs``
    threads, ``BLOCKS_PER_TASK`` at a time; each thread draws into its own buffer and
    scales and rounds straight into ``out``.  ``shift`` is added to every value (a mean,
    a uniform's centre); ``bounds`` are a truncated normal's, in its standard deviations.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown distribution kind {kind!r}; expected one of {KINDS}")
    if not 0 <= start <= stop <= total:
        raise ValueError(f"Range {start}:{stop} does not fit in a tensor of {total} elements")
    stream = check_stream(stream)
    out = np.empty(stop - start, dtype=dtype) if out is None else out
    float32 = uses_float32_normals(stream, out.dtype, kind)
    factor = _unit_scale(kind, param)
    first, last = start // BLOCK_SIZE, -(-stop // BLOCK_SIZE)
    states = block_states(key, first, last) if _VECTOR_SEEDING_MIN_BLOCKS <= last - first and last <= 1 << 32 else None

    def fill_float32(task: int) -> None:
        group, end = task, min(task + BLOCKS_PER_TASK, last)
        while group < end:
            batch, by_block = _batch_blocks(kind)  # again each set: other threads start and stop drawing
            blocks = []
            for block in range(group, min(group + batch, end)):
                count = min(BLOCK_SIZE, total - block * BLOCK_SIZE)
                blocks.append((block, count, None if states is None else states[block - first]))
            for (block, count, _), (cosines, sines) in zip(blocks, _float32_batch(key, blocks, kind, bounds, by_block=by_block)):
                lo = block * BLOCK_SIZE
                for part, base in ((cosines, lo), (sines, lo + cosines.size)):
                    a, b = max(start, base), min(stop, base + part.size)
                    if a < b:
                        _scale_into(part[a - base : b - base], factor, out[a - start : b - start], shift)
            group += len(blocks)

    def fill(task: int) -> None:
        if float32:
            return fill_float32(task)
        for block in range(task, min(task + BLOCKS_PER_TASK, last)):
            lo = block * BLOCK_SIZE
            count = min(BLOCK_SIZE, total - lo)
            state = None if states is None else states[block - first]
            values = _block_draws(key, block, count, kind, _scratch(), state, bounds=bounds)
            a, b = max(start, lo), min(stop, lo + count)
            _scale_into(values[a - lo : b - lo], factor, out[a - start : b - start], shift)

    tasks = range(first, last, BLOCKS_PER_TASK)
    # More threads than cores only contend for them (the values never depend on the count).
    workers = min(jobs, len(tasks), available_cores())
    with _drawing_lock:
        _drawing[0] += max(workers, 1)
    try:
        if workers > 1:
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                list(pool.map(fill, tasks))
            finally:  # on an interrupt, drop the tasks not started yet
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            for task in tasks:
                fill(task)
    finally:
        with _drawing_lock:
            _drawing[0] -= max(workers, 1)
    return out


def draw(seed: int, name: str, shape: Sequence[int], dtype: np.dtype, kind: str, param: float, **where) -> np.ndarray:
    """Values of tensor ``name`` (or of its partition at ``offset`` within ``full_shape``).

    ``kind`` is one of :data:`KINDS`; ``param`` is the standard deviation of the
    (underlying) normal, or the uniform limit; ``where``: ``full_shape``, ``offset``,
    ``jobs`` and ``stream``, as :func:`draw_part` takes them.
    """
    return draw_part(stream_key(seed, name), shape, dtype, kind, param, **where)


def draw_part(
    key: int,
    shape: Sequence[int],
    dtype: np.dtype,
    kind: str,
    param: float,
    *,
    full_shape: Sequence[int] | None = None,
    offset: Sequence[int] | None = None,
    jobs: int = 1,
    stream: int = DEFAULT_STREAM,
    shift: float = 0.0,
    bounds: tuple[float, float] = TRUNCATION_BOUNDS,
) -> np.ndarray:
    """:func:`draw` of the tensor whose stream key is ``key``: the values of its partition
    of ``shape`` at ``offset`` within ``full_shape`` (default: the whole tensor)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown distribution kind {kind!r}; expected one of {KINDS}")
    shape = tuple(int(d) for d in shape)
    full = shape if full_shape is None else tuple(int(d) for d in full_shape)
    start = (0,) * len(full) if offset is None else tuple(int(o) for o in offset)
    if len(full) != len(shape) or len(start) != len(shape):
        raise ValueError(f"Partition shape {shape}, full shape {full} and offset {start} differ in rank")
    for size, total, first in zip(shape, full, start):
        if size < 0 or first < 0 or first + size > total:
            raise ValueError(f"Partition of shape {shape} at offset {start} does not fit in {full}")
    total = int(np.prod(full, dtype=np.int64))
    out = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=dtype)
    segments = _segments(shape, full, start)
    if len(segments) == 1:  # the whole tensor, or a run of whole rows
        lo, hi = segments[0]
        return draw_flat(
            key, total, lo, hi, dtype, kind, param, jobs=jobs, out=out, stream=stream, shift=shift, bounds=bounds
        ).reshape(shape)
    float32 = uses_float32_normals(check_stream(stream), out.dtype, kind)
    factor = _unit_scale(kind, param)
    # Many short runs (a column slice...): draw each block once, however many runs it feeds.
    cached: tuple[int, np.ndarray] | None = None
    position = 0
    for lo, hi in segments:
        index = lo
        while index < hi:
            block = index // BLOCK_SIZE
            if cached is None or cached[0] != block:
                count = min(BLOCK_SIZE, total - block * BLOCK_SIZE)
                cached = (block, _block_draws(key, block, count, kind, float32=float32, bounds=bounds))
            stop = min(hi, (block + 1) * BLOCK_SIZE)
            piece = cached[1][index - block * BLOCK_SIZE : stop - block * BLOCK_SIZE]
            _scale_into(piece, factor, out[position : position + piece.size], shift)
            position += piece.size
            index = stop
    return out.reshape(shape)
