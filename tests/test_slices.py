"""``vsconf.slice_values``: any slice of a planned tensor, computed alone, equals that slice of
the whole -- so every rank of a sharded job fills its own shard and the weights do not depend
on the mesh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import vsconf
from vsconf.draw import generate

ROOT = Path(__file__).resolve().parent.parent
SPEC = vsconf.parse_spec(
    "vsconf: 1\nseed: 21\nlayout: torch\nrules:\n"
    "  - match: '*.bias'\n    init: {constant: 0.25}\n"
    "  - match: 'frozen'\n    init: keep\n"
    "  - match: 'up.weight'\n    init: glorot_uniform\n"
    "  - match: '*.weight'\n    init: he_normal\n",
    source="spec.yaml",
)
ARRAYS = {
    "dense.weight": np.zeros((96, 80), np.float32),
    "conv.weight": np.zeros((16, 8, 3, 4), ml_dtypes.bfloat16),
    "up.weight": np.zeros((300, 700), np.float16),  # 210000 elements: several stream blocks
    "dense.bias": np.zeros(96, np.float32),
    "frozen": np.zeros(4, np.float32),
}
PLAN = vsconf.plan(ARRAYS, SPEC)


@pytest.mark.parametrize(
    "name, index",
    [
        ("dense.weight", ()),
        ("dense.weight", (slice(10, 20), slice(5, 70))),
        ("dense.weight", (3,)),
        ("dense.weight", (-1, slice(None, 7))),
        ("dense.weight", (Ellipsis, 4)),
        ("dense.weight", (slice(50, 40),)),  # empty
        ("conv.weight", (slice(4, 12), Ellipsis, 1)),
        ("up.weight", (slice(None), slice(650, 700))),  # a column strip across every block
        ("up.weight", (slice(100, 250),)),
        ("dense.bias", (slice(8, 24),)),
    ],
)
def test_a_slice_equals_the_slice_of_the_whole(name, index):
    entry = PLAN.entry(name)
    whole = generate(entry)
    part = vsconf.slice_values(entry, index)
    assert part.dtype == whole.dtype and part.shape == whole[index].shape
    assert part.tobytes() == whole[index].tobytes()


def test_kept_tensors_have_no_values_and_bad_indexes_are_refused():
    assert vsconf.slice_values(PLAN.entry("frozen"), (slice(0, 2),)) is None
    entry = PLAN.entry("dense.weight")
    with pytest.raises(ValueError, match="slices of step 1; axis 0 has step 2"):
        vsconf.slice_values(entry, (slice(0, 10, 2),))
    with pytest.raises(IndexError, match="too many indices"):
        vsconf.slice_values(entry, (1, 2, 3))
    with pytest.raises(IndexError, match="index 96 is out of bounds for axis 0 with size 96"):
        vsconf.slice_values(entry, 96)
    with pytest.raises(TypeError, match="ints and slices"):
        vsconf.slice_values(entry, ([1, 2],))
    with pytest.raises(TypeError, match="must be a vsconf.PlanEntry"):
        vsconf.slice_values("dense.weight", ())


def _mesh_indices(shape: tuple[int, ...], mesh: tuple[int, int], axes: tuple) -> list[tuple[slice, ...]]:
    """The index of every device's shard, as JAX's NamedSharding cuts a tensor: axis ``i`` of the
    tensor split evenly over mesh axis ``axes[i]`` (None: not split)."""
    indices = []
    for a in range(mesh[0]):
        for b in range(mesh[1]):
            where = {0: a, 1: b}
            index = []
            for dim, axis in zip(shape, axes):
                if axis is None:
                    index.append(slice(None))
                else:
                    step = dim // mesh[axis]
                    index.append(slice(where[axis] * step, (where[axis] + 1) * step))
            indices.append(tuple(index))
    return indices


@pytest.mark.parametrize("mesh", [(8, 1), (4, 2), (2, 4)])
def test_every_mesh_assembles_the_unsharded_fill(mesh):
    """What ``jax.make_array_from_callback`` does, in NumPy: every device's shard from
    ``slice_values``, put together, is the unsharded fill (the JAX test below runs the real thing)."""
    for name, axes in (("dense.weight", (0, 1)), ("conv.weight", (0, None, None, 1)), ("dense.bias", (0,))):
        entry = PLAN.entry(name)
        whole = generate(entry)
        assembled = np.empty_like(whole)
        for index in _mesh_indices(whole.shape, mesh, axes):
            assembled[index] = vsconf.slice_values(entry, index)
        assert assembled.tobytes() == whole.tobytes(), (name, mesh)


_JAX_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import vsconf
    from vsconf.draw import generate

    assert len(jax.devices()) == 8, jax.devices()
    arrays = {
        "dense.weight": np.zeros((96, 80), np.float32),
        "attn.weight": np.zeros((8, 64, 48), np.float32),
        "dense.bias": np.zeros(96, np.float32),
    }
    spec = vsconf.parse_spec(
        "vsconf: 1\\nseed: 21\\nlayout: torch\\nrules:\\n"
        "  - match: '*.bias'\\n    init: zeros\\n  - match: '*'\\n    init: he_normal\\n"
    )
    plan = vsconf.plan(arrays, spec)
    specs = {"dense.weight": P("x", "y"), "attn.weight": P(None, "x", "y"), "dense.bias": P("x")}
    checked = []
    for shape in [(8, 1), (4, 2), (2, 4)]:
        mesh = Mesh(np.array(jax.devices()).reshape(shape), ("x", "y"))
        for name, pspec in specs.items():
            entry = plan.entry(name)
            array = jax.make_array_from_callback(
                entry.shape, NamedSharding(mesh, pspec), lambda index, entry=entry: vsconf.slice_values(entry, index)
            )
            assert len(array.addressable_shards) == 8
            assert np.asarray(array).tobytes() == generate(entry).tobytes(), (name, shape)
            checked.append([name, list(shape)])
    print(json.dumps(checked))
    """
)


def test_jax_meshes_8x1_4x2_2x4_equal_the_unsharded_fill(tmp_path):
    pytest.importorskip("jax", reason="the test extra installs jax; without it only the NumPy mesh test runs")
    env = {
        **os.environ,
        # Must be set before JAX starts: hence a subprocess.
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run([sys.executable, "-c", _JAX_SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    checked = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(checked) == 9


# --------------------------------------------------------------------------- sizes asked for


HUGE_SPEC = vsconf.parse_spec(
    "vsconf: 1\nseed: 21\nrules:\n  - match: '*.bias'\n    init: {constant: 0.25}\n  - match: '*.weight'\n    init: he_normal\n",
    source="spec.yaml",
)
HUGE = vsconf.plan(
    {"huge.weight": np.broadcast_to(np.float32(0), (1 << 20, 1 << 22)), "huge.bias": np.broadcast_to(np.float32(0), (1 << 42,))},
    HUGE_SPEC,
)


def test_a_slice_bigger_than_memory_is_a_value_error_naming_it():
    from vsconf.initializers import array_limit

    entry = HUGE.entry("huge.weight")  # 2**42 float32 elements: 16 TiB
    with pytest.raises(ValueError) as info:
        vsconf.slice_values(entry, (slice(None),))
    assert str(info.value).startswith(
        f"Argument `index` asks for {1 << 42} float32 elements ({1 << 44} bytes), more than {array_limit()} bytes, the most"
    )
    assert str(info.value).endswith("Received: index=(slice(None, None, None),) of 'huge.weight' [1048576, 4194304]")
    assert vsconf.slice_values(entry, (slice(0, 2), slice(0, 3))).shape == (2, 3)  # a shard of it is fine
    with pytest.raises(ValueError, match=r"^Argument `index` asks for 4398046511104 float32 elements"):
        vsconf.slice_values(HUGE.entry("huge.bias"))  # constants too


def test_every_api_entry_that_allocates_checks_the_size_first():
    from vsconf.draw import generate

    limit = r"more than \d+ bytes, the most vsconf allocates"
    with pytest.raises(ValueError, match=rf"^Argument `shape` asks for {1 << 44} float32 elements \({1 << 46} bytes\), {limit}"):
        vsconf.VarianceScaling(seed=1)((1 << 22, 1 << 22))
    with pytest.raises(ValueError, match=rf"^Argument `shape` asks for {1 << 43} float64 elements .*Received: shape=\(8796093022208,\)$"):
        vsconf.zeros()((1 << 43,), dtype="float64")
    with pytest.raises(ValueError, match=rf"^Argument `shape` asks for {1 << 60} float16 elements"):
        vsconf.Constant(0.5)((1 << 30, 1 << 30), dtype="float16")
    with pytest.raises(ValueError, match=rf"^Argument `entry` asks for {1 << 42} float32 elements .*Received: entry='huge.weight'"):
        generate(HUGE.entry("huge.weight"))
    with pytest.raises(ValueError, match=r"^Argument `mapping` asks for 4398046511104 float32 elements .*'huge.weight': float32 array"):
        vsconf.apply_state_dict({"huge.weight": np.broadcast_to(np.float32(0), (1 << 20, 1 << 22)), "b.bias": np.zeros(2)}, HUGE_SPEC)
    kept = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: x\n    init: zeros\n", source="s.yaml")
    with pytest.raises(ValueError, match=r"^Argument `mapping` asks for .*'y': int8 array"):  # copies too
        vsconf.apply_state_dict({"x": np.zeros(2, np.float32), "y": np.broadcast_to(np.int8(0), (1 << 50,))}, kept)


def test_the_limit_is_the_address_space_when_that_is_lower():
    """Under RLIMIT_AS, the request is held to it: 2 GiB of float32 against 1 GiB."""
    code = textwrap.dedent(
        """
        import resource, vsconf
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            vsconf.VarianceScaling(seed=1)((1 << 15, 1 << 14))
        except ValueError as error:
            print(error)
        print(vsconf.VarianceScaling(seed=1)((1 << 10, 1 << 10)).nbytes)
        """
    )
    if sys.platform == "darwin":
        pytest.skip("macOS does not enforce RLIMIT_AS")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "Argument `shape` asks for 536870912 float32 elements (2147483648 bytes), more than 1073741824 bytes, the most "
        "vsconf allocates (this machine's memory, or the process's address-space limit). Received: shape=(32768, 16384)",
        "4194304",
    ]
