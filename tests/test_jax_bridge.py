"""vsconf.jax: a spec applied to a JAX pytree gives the file route's bits.

The file route is ``vsconf.apply_state_dict`` on a dict of NumPy zeros with the pytree's
dotted names, shapes and dtypes (the values ``vsconf apply`` writes); the bridge must give
the same bits in float32 and bfloat16, from arrays and from ``jax.eval_shape``'s
``ShapeDtypeStruct`` trees (Flax's when flax is installed), and on every mesh and
partition spec (8 host devices, in a subprocess: XLA's device count is fixed when JAX starts).
"""

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

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import vsconf  # noqa: E402
import vsconf.jax as vj  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = vsconf.parse_spec(
    "vsconf: 1\nseed: 5\nlayout: tf\nrules:\n"
    "  - match: '*.bias'\n    init: zeros\n"
    "  - match: '*.scale'\n    init: ones\n"
    "  - match: '*recurrent.kernel'\n    optional: true\n    init: {orthogonal: {gain: 1}}\n"
    "  - match: '*.kernel'\n    init: {preset: lecun_normal}\n"
    "  - match: '*.embedding'\n    optional: true\n    init: {normal: {std: 0.02}}\n",
    source="flax.yaml",
)
DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}


def hand_written_init(dtype):
    """A small model's init, as a Flax-like nested dict (with a list of layers and a counter)."""
    def init():
        return {
            "params": {
                "Embed_0": {"embedding": jnp.zeros((11, 8), dtype)},
                "Conv_0": {"kernel": jnp.zeros((3, 3, 8, 16), dtype), "bias": jnp.zeros((16,), dtype)},
                "layers": [
                    {"kernel": jnp.zeros((16, 8), dtype), "bias": jnp.zeros((8,), dtype)},
                    {"recurrent": {"kernel": jnp.zeros((8, 8), dtype)}, "LayerNorm": {"scale": jnp.zeros((8,), dtype)}},
                ],
            },
            "step": jnp.zeros((), jnp.int32),
        }

    return init


def shapes_of(init):
    """``jax.eval_shape`` of ``init`` less its int leaf: a shape has no values to keep."""
    shapes = jax.eval_shape(init)
    del shapes["step"]
    return shapes


def names_of(tree) -> dict[str, object]:
    return {vj._path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def file_route(tree, spec, **kw) -> dict[str, np.ndarray]:
    """apply_state_dict on NumPy zeros with the tree's dotted names, shapes and dtypes."""
    state = {name: np.zeros(leaf.shape, np.dtype(leaf.dtype)) for name, leaf in names_of(tree).items()}
    return vsconf.apply_state_dict(state, spec, **kw)


def assert_same_bits(params, expected, filled) -> None:
    got = names_of(params)
    for name in filled:
        have = np.asarray(got[name])
        assert have.dtype == expected[name].dtype and have.shape == expected[name].shape, name
        assert have.tobytes() == expected[name].tobytes(), name


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("given", ["shapes", "arrays"])
def test_pytrees_get_the_file_routes_bits(dtype, given):
    init = hand_written_init(DTYPES[dtype])
    tree = shapes_of(init) if given == "shapes" else init()
    plan = vj.plan_params(tree, SPEC)
    filled = [e.name for e in plan if e.changes]
    assert "params.layers.1.recurrent.kernel" in filled and "params.Conv_0.kernel" in filled and len(filled) == 7
    assert plan.entry("params.Conv_0.kernel").fan_in == 72  # [kh, kw, in, out]: tf's rule
    params = vj.init_params(tree, SPEC)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(tree)
    assert_same_bits(params, file_route(tree, SPEC), filled)
    assert isinstance(params["params"]["layers"][0]["kernel"], jax.Array)
    if given == "arrays":
        assert params["step"] is tree["step"]  # not float: kept as it came
    assert vj.verify_params(params, SPEC) == []
    params["params"]["layers"][0]["bias"] = params["params"]["layers"][0]["bias"].at[0].set(1)
    assert [p.tensor for p in vj.verify_params(params, SPEC)] == ["params.layers.0.bias"]


def test_a_flax_models_eval_shape_tree_gets_the_file_routes_bits():
    nn = pytest.importorskip("flax.linen")

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(8, (3, 3))(x)
            x = nn.Dense(16)(x.reshape(x.shape[0], -1))
            return nn.LayerNorm()(nn.Dense(4, param_dtype=jnp.bfloat16)(x))

    shapes = jax.eval_shape(lambda: Model().init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 3))))
    params = vj.init_params(shapes, SPEC, seed=9)
    expected = file_route(shapes, SPEC, seed=9)
    names = set(expected)
    assert {"params.Conv_0.kernel", "params.Dense_0.kernel", "params.Dense_1.kernel", "params.LayerNorm_0.scale"} <= names
    assert_same_bits(params, expected, names)
    assert params["params"]["Dense_1"]["kernel"].dtype == jnp.bfloat16
    assert vj.plan_params(shapes, SPEC).entry("params.Dense_0.kernel").fan_in == 288
    y = Model().apply(params, jnp.ones((2, 6, 6, 3)))  # the tree is one Flax takes
    assert y.shape == (2, 4) and bool(jnp.isfinite(y).all())


def test_flax_partitioned_boxes_are_leaves_named_as_their_place():
    """nn.with_partitioning boxes its params: the box is one leaf, named without '.value',
    filled with the unboxed tree's bits, and given back boxed (Flax's logical names kept)."""
    nn = pytest.importorskip("flax.linen")
    from flax.core import meta

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            kernel = nn.with_partitioning(nn.initializers.lecun_normal(), (None, "model"))
            return nn.LayerNorm()(nn.Dense(4, kernel_init=kernel)(x))

    boxed = jax.eval_shape(lambda: Model().init(jax.random.PRNGKey(0), jnp.zeros((1, 3))))
    plain = meta.unbox(boxed)
    params = vj.init_params(boxed, SPEC, seed=3)
    kernel = params["params"]["Dense_0"]["kernel"]
    assert isinstance(kernel, meta.Partitioned) and kernel.names == (None, "model")
    names = {"params.Dense_0.kernel", "params.Dense_0.bias", "params.LayerNorm_0.scale", "params.LayerNorm_0.bias"}
    assert {e.name for e in vj.plan_params(boxed, SPEC)} == names
    assert_same_bits(meta.unbox(params), file_route(plain, SPEC, seed=3), names)
    assert vj.verify_params(params, SPEC, seed=3) == []
    assert Model().apply(params, jnp.ones((2, 3))).shape == (2, 4)


def test_a_lock_is_written_and_verified(tmp_path):
    tree = shapes_of(hand_written_init(ml_dtypes.bfloat16))
    params = vj.init_params(tree, SPEC, lock=tmp_path / "p.lock")
    assert vj.verify_params(params, SPEC, lock=tmp_path / "p.lock") == []
    with pytest.raises(vsconf.VsconfError):
        vj.init_params(tree, SPEC, lock=tmp_path / "p.lock")
    vj.init_params(tree, SPEC, lock=tmp_path / "p.lock", force=True)
    problems = vj.verify_params(params, SPEC, seed=6, lock=tmp_path / "p.lock")
    assert problems and {"params.Conv_0.kernel"} <= {p.tensor for p in problems}


def test_unfilled_shapes_are_an_error_naming_them_and_unfilled_arrays_are_kept():
    spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nlayout: tf\nrules:\n  - match: '*.kernel'\n    init: glorot_uniform\n")
    init = hand_written_init(np.float32)
    with pytest.raises(vsconf.MatchError) as info:
        vj.init_params(jax.eval_shape(init), spec)
    named = {p.tensor for p in info.value.problems}
    assert named == {"params.Conv_0.bias", "params.Embed_0.embedding", "params.layers.0.bias", "params.layers.1.LayerNorm.scale", "step"}
    assert "tensor 'params.Conv_0.bias': is a jax.ShapeDtypeStruct no rule fills" in str(info.value)
    assert "tensor 'step': is a jax.ShapeDtypeStruct of dtype int32, which vsconf never fills" in str(info.value)
    arrays = init()
    params = vj.init_params(arrays, spec)
    assert params["params"]["Conv_0"]["bias"] is arrays["params"]["Conv_0"]["bias"]
    assert not np.array_equal(np.asarray(params["params"]["Conv_0"]["kernel"]), 0)


def test_a_sharding_pytree_must_fit_the_params():
    tree = shapes_of(hand_written_init(np.float32))
    with pytest.raises(ValueError, match="Argument `sharding`"):
        vj.init_params(tree, SPEC, sharding={"params": None})
    with pytest.raises(TypeError, match="Argument `sharding`"):
        vj.init_params(tree, SPEC, sharding=jax.tree_util.tree_map(lambda _: "x", tree))
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    params = vj.init_params(tree, SPEC, sharding=one)
    assert params["params"]["Conv_0"]["kernel"].sharding == one
    assert_same_bits(params, file_route(tree, SPEC), [e.name for e in vj.plan_params(tree, SPEC) if e.changes])


SPEC_TEXT = (
    "vsconf: 1\nseed: 5\nlayout: tf\nrules:\n"
    "  - match: '*.bias'\n    init: zeros\n"
    "  - match: '*recurrent.kernel'\n    init: {orthogonal: {gain: 1}}\n"
    "  - match: '*.kernel'\n    init: {preset: lecun_normal}\n"
)

_MESH_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, ml_dtypes, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import vsconf, vsconf.jax as vj

    assert len(jax.devices()) == 8, jax.devices()
    spec = vsconf.parse_spec(%r)
    tree = {"params": {
        "Conv_0": {"kernel": jax.ShapeDtypeStruct((3, 3, 8, 16), ml_dtypes.bfloat16), "bias": jax.ShapeDtypeStruct((16,), np.float32)},
        "Dense_0": {"kernel": jax.ShapeDtypeStruct((16, 8), np.float32), "bias": jax.ShapeDtypeStruct((8,), np.float32)},
        "cell": {"recurrent": {"kernel": jax.ShapeDtypeStruct((16, 8), np.float32)}},
    }}
    single = vj.init_params(tree, spec)
    flat = lambda t: [np.asarray(x) for x in jax.tree_util.tree_leaves(t)]
    reference = flat(single)
    checked = []
    for shape in [(8, 1), (4, 2), (2, 4)]:
        mesh = Mesh(np.array(jax.devices()).reshape(shape), ("a", "b"))
        for pspec in [P("a", "b"), P("b", None), P(None, "a"), P()]:
            def pick(leaf):
                if len(leaf.shape) == 1:
                    return None
                return NamedSharding(mesh, P(*([None] * (len(leaf.shape) - 2)), *pspec))
            shardings = jax.tree_util.tree_map(pick, tree)
            made = vj.init_params(tree, spec, sharding=shardings)
            own = jax.tree_util.tree_map(lambda l, s: jax.ShapeDtypeStruct(l.shape, l.dtype, sharding=s), tree, shardings)
            made_own = vj.init_params(own, spec)
            for params in (made, made_own):
                kernel = params["params"]["Dense_0"]["kernel"]
                assert kernel.sharding.spec == pspec and len(kernel.addressable_shards) == 8
                got = flat(params)
                assert all(g.dtype == r.dtype and g.tobytes() == r.tobytes() for g, r in zip(got, reference)), (shape, pspec)
            assert vj.verify_params(made, spec) == []
            again = vj.init_params(made, spec, seed=6)  # arrays keep their own shardings
            assert again["params"]["Dense_0"]["kernel"].sharding == made["params"]["Dense_0"]["kernel"].sharding
            assert vj.verify_params(again, spec, seed=6) == [] and vj.verify_params(again, spec) != []
            checked.append([list(shape), str(pspec)])
        replicated = vj.init_params(tree, spec, sharding=NamedSharding(mesh, P()))
        assert all(g.tobytes() == r.tobytes() for g, r in zip(flat(replicated), reference))
    bad = jax.tree_util.tree_map(lambda x: x, single)
    bad["params"]["Dense_0"]["kernel"] = jax.device_put(
        np.asarray(bad["params"]["Dense_0"]["kernel"]) + 1, NamedSharding(mesh, P("a", "b")))
    assert [p.tensor for p in vj.verify_params(bad, spec)] == ["params.Dense_0.kernel"]
    print(json.dumps(checked))
    """
)


def test_meshes_8x1_4x2_2x4_and_partition_specs_assemble_the_unsharded_init():
    env = {
        **os.environ,
        # Must be set before JAX starts: hence a subprocess.
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    script = _MESH_SCRIPT % SPEC_TEXT
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    checked = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(checked) == 12

