"""configs/recipes/: each recipe against the library whose init it restates.

For each library, a small model of its family is built with the library's own init (several
layers, so that per-layer depth scaling shows), its tensors are taken by their names (a torch
``state_dict``, or Keras's weight paths in Keras's own layout), and vsconf fills the same
names and shapes with the recipe through its Python API.  Then, for every tensor of the
model -- none may be left out -- either

- the library's values are the same under every seed (a constant, a zero row, the forget
  gate's ones): vsconf's must equal them exactly; or
- they are random: a two-sample Kolmogorov-Smirnov test (``stats.same_distribution``, the
  test of tests/test_random_inits.py) between vsconf's values and the library's, whose
  critical value c(alpha) * sqrt((n + m) / (n m)), alpha = 0.001, comes from the two sample
  sizes.  A tensor of fewer than ``POOL`` elements is pooled over several seeds on both sides
  (the library re-seeded, vsconf given ``seed=``): on a few hundred values the KS test has
  little power, and a std wrong by half could pass on one draw.

Every draw is seeded (torch.manual_seed, keras.utils.set_random_seed, vsconf's seed), so a
run's verdicts never change.

Where the library cannot be imported here (torchvision, and with it timm, cannot be installed
beside the CPU build of torch; torchtitan is not on the package index), the model comes from
tests/reference/, which names the upstream file and commit each module restates; timm's
init functions are then compiled from timm's installed source files when they are there
(``pip install --no-deps timm``) -- see tests/reference/timm_vit.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import vsconf
from stats import assert_mean_zero, assert_std, same_distribution, truncated_normal_moments

torch = pytest.importorskip("torch")

from reference import timm_vit, torchtitan_llama3, torchvision_resnet  # noqa: E402  (needs torch)

RECIPES = Path(__file__).resolve().parent.parent / "configs" / "recipes"
# A KS test on few values has little power: at 200 + 200 values its critical D is 0.19, and a
# normal whose std is off by half is D = 0.097 from the right one -- it would pass.  So a
# tensor of fewer than POOL values (biases, the class token) is pooled over as many seeds as
# bring it to POOL (at most SEEDS), on both sides, each seed a new draw of the library and of
# vsconf: at 2,000 + 2,000 values the critical D is 0.062.
POOL = 2000
SEEDS = 16


# --------------------------------------------------------------------------- the comparison


def _numpy_state(module) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in module.state_dict().items()}


def _vsconf_state(state: dict[str, np.ndarray], recipe: str, variables: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    path = RECIPES / recipe
    plan = vsconf.plan(state, path, seed=seed, vars=variables)
    assert {entry.name for entry in plan} == set(state)
    assert not plan.warnings, plan.warnings  # e.g. a rule of the other mode that never applies
    for entry in plan:
        if np.issubdtype(state[entry.name].dtype, np.floating):
            assert entry.changes, f"{recipe}: {entry.name} is not filled ({entry.action})"
        else:
            assert entry.action == "skip", (entry.name, entry.action)
    out = vsconf.apply_state_dict(state, path, seed=seed, vars=variables)
    assert set(out) == set(state)
    return out


def compare(recipe: str, variables: dict[str, float], build: Callable[[int], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``build(seed)``: the library's tensors under that seed.  Checks every tensor as the module
    docstring says; returns vsconf's tensors for seed 0 (for extra checks)."""
    library = [build(0), build(1)]  # two seeds tell the random tensors from the fixed ones
    names = set(library[0])
    assert set(library[1]) == names

    def fixed(name: str) -> bool:
        return np.array_equal(library[0][name], library[1][name])

    def seeds(name: str) -> int:
        return min(SEEDS, -(-POOL // library[0][name].size))

    wanted = max([seeds(name) for name in names if not fixed(name)], default=1)
    library += [build(seed) for seed in range(2, wanted)]
    assert all(set(state) == names for state in library)
    ours = [_vsconf_state(state, recipe, variables, seed=seed) for seed, state in enumerate(library)]
    failures = []
    for name in sorted(names):
        lib = [state[name] for state in library]
        mine = [state[name] for state in ours]
        if not np.issubdtype(lib[0].dtype, np.floating):  # num_batches_tracked: an int counter, left as it was
            assert all(np.array_equal(a, b) for a, b in zip(lib, mine)), name
            continue
        assert all(m.shape == l.shape and m.dtype == l.dtype for m, l in zip(mine, lib)), name
        if all(np.array_equal(lib[0], other) for other in lib[1:]):  # not random: exactly the library's
            if not all(np.array_equal(m, lib[0]) for m in mine):
                failures.append(f"{name}: fixed in the library, vsconf differs (max |diff| {np.abs(mine[0] - lib[0]).max():.3g})")
            continue
        take = seeds(name)
        x = np.concatenate([m.ravel() for m in mine[:take]])
        y = np.concatenate([l.ravel() for l in lib[:take]])
        ok, d, critical = same_distribution(x, y)
        if not ok:
            failures.append(f"{name}: KS D={d:.4f} > {critical:.4f} (n={x.size}; vsconf std {x.std():.4g} mean {x.mean():.3g}, library std {y.std():.4g} mean {y.mean():.3g})")
    assert not failures, f"{recipe} {variables}:\n" + "\n".join(failures)
    return ours[0]


# --------------------------------------------------------------------------- torchtitan Llama 3


def _llama(depth_init: bool, seed: int, **sizes) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    model = torchtitan_llama3.Transformer(depth_init=depth_init, **sizes)
    model.init_weights()
    return _numpy_state(model)


LLAMA = dict(dim=64, n_layers=4, n_heads=4, n_kv_heads=2, vocab_size=256, multiple_of=32)


@pytest.mark.parametrize("depth_init", [True, False])
def test_torchtitan_init_is_what_the_recipe_restates(depth_init):
    """The library side alone: per-layer stds as the recipe's comments say."""
    state = _llama(depth_init, 0, **LLAMA)
    assert_std(state["tok_embeddings.weight"], 1.0, "untruncated_normal")
    for i in range(LLAMA["n_layers"]):
        deep = 0.02 / math.sqrt(2 * (i + 1)) if depth_init else 0.02 / math.sqrt(2 * LLAMA["n_layers"])
        for part in ("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1"):
            assert_std(state[f"layers.{i}.{part}.weight"], 0.02, "untruncated_normal")
        for part in ("attention.wo", "feed_forward.w2", "feed_forward.w3"):
            assert_std(state[f"layers.{i}.{part}.weight"], deep, "untruncated_normal")
            assert_mean_zero(state[f"layers.{i}.{part}.weight"], deep)
        assert np.all(state[f"layers.{i}.attention_norm.weight"] == 1)
    out = state["output.weight"]
    std = LLAMA["dim"] ** -0.5
    assert np.abs(out).max() <= 3 * std
    m2, _ = truncated_normal_moments(3.0)
    assert_std(out, std * math.sqrt(m2), "untruncated_normal")  # a normal's kurtosis: a wider margin than a 3-std cut's


@pytest.mark.parametrize("depth_init", [1, 0])
def test_torchtitan_llama3_recipe(depth_init):
    variables = {"dim": LLAMA["dim"], "n_layers": LLAMA["n_layers"], "depth_init": depth_init}
    ours = compare("torchtitan_llama3.yaml", variables, lambda seed: _llama(bool(depth_init), seed, **LLAMA))
    cut = 3 * LLAMA["dim"] ** -0.5  # cut at 3 std: 0.3% of a normal lies beyond, too little for the KS test to see
    assert np.abs(ours["output.weight"]).max() <= cut * (1 + 1e-6)


# --------------------------------------------------------------------------- torchvision ResNet


def _resnet_class():
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
    except Exception:  # noqa: BLE001 -- ImportError, or a CUDA build's RuntimeError
        return torchvision_resnet.ResNet, torchvision_resnet.BasicBlock, torchvision_resnet.Bottleneck
    return ResNet, BasicBlock, Bottleneck


def _resnet(bottleneck: bool, layers: list[int], zero_init_residual: bool, seed: int) -> dict[str, np.ndarray]:
    ResNet, BasicBlock, Bottleneck = _resnet_class()
    torch.manual_seed(seed)
    return _numpy_state(ResNet(Bottleneck if bottleneck else BasicBlock, layers, num_classes=1000, zero_init_residual=zero_init_residual))


def test_torchvision_resnet_init_is_what_the_recipe_restates():
    state = _resnet(False, [2, 1, 1, 1], True, 0)
    w = state["layer4.0.conv2.weight"]  # [512, 512, 3, 3]: fan_out 512 * 9
    assert_std(w, math.sqrt(2 / (512 * 9)), "untruncated_normal")
    assert_std(state["conv1.weight"], math.sqrt(2 / (64 * 49)), "untruncated_normal")
    assert np.all(state["layer1.0.bn2.weight"] == 0) and np.all(state["layer1.1.bn2.weight"] == 0)
    assert np.all(state["layer1.0.bn1.weight"] == 1) and np.all(state["bn1.bias"] == 0)
    bound = 1 / math.sqrt(512)
    assert np.abs(state["fc.weight"]).max() <= bound and np.abs(state["fc.bias"]).max() <= bound
    assert_std(state["fc.weight"], bound / math.sqrt(3), "uniform")


@pytest.mark.parametrize(
    "bottleneck, layers, zero_init_residual",
    [(0, [2, 1, 1, 1], 0), (0, [2, 1, 1, 1], 1), pytest.param(1, [1, 1, 1, 1], 1, marks=pytest.mark.slow)],
    ids=["basic", "basic-zero_init_residual", "bottleneck-zero_init_residual"],
)
def test_torchvision_resnet_recipe(bottleneck, layers, zero_init_residual):
    variables = {"zero_init_residual": zero_init_residual, "bottleneck": bottleneck}
    compare("torchvision_resnet.yaml", variables, lambda seed: _resnet(bool(bottleneck), layers, bool(zero_init_residual), seed))


# --------------------------------------------------------------------------- timm ViT


VIT = dict(img_size=32, patch_size=8, num_classes=10, embed_dim=64, depth=4)


def _vit(weight_init: str, fix_init: bool, seed: int) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    model, _ = timm_vit.build(weight_init, fix_init, **VIT)
    return _numpy_state(model)


def test_timm_vit_init_is_what_the_recipe_restates():
    plain = _vit("", True, 0)
    for i in range(VIT["depth"]):
        assert_std(plain[f"blocks.{i}.attn.proj.weight"], 0.02 / math.sqrt(2 * (i + 1)), "untruncated_normal")
        assert_std(plain[f"blocks.{i}.mlp.fc1.weight"], 0.02, "untruncated_normal")
        assert np.all(plain[f"blocks.{i}.mlp.fc1.bias"] == 0)
    bound = 1 / math.sqrt(3 * 8 * 8)  # torch's Conv2d default, kept
    assert np.abs(plain["patch_embed.proj.weight"]).max() <= bound
    assert_std(plain["patch_embed.proj.weight"], bound / math.sqrt(3), "uniform")
    jax = _vit("jax_nlhb", False, 0)
    assert np.all(jax["head.weight"] == 0)
    np.testing.assert_allclose(jax["head.bias"], -math.log(VIT["num_classes"]), rtol=1e-6)
    qkv = jax["blocks.0.attn.qkv.weight"]  # xavier over the whole [3 dim, dim]
    assert_std(qkv, math.sqrt(2 / (64 + 192)), "uniform")
    assert_std(jax["patch_embed.proj.weight"], math.sqrt(1 / (3 * 8 * 8)), "truncated_normal")
    assert np.all(_vit("jax", False, 0)["head.bias"] == 0)


def test_the_restated_timm_init_agrees_with_timms_source():
    """Where timm's files are installed, tests/reference/timm_vit.py's restatement (what runs
    where they are not) draws what timm's own functions draw."""
    source = timm_vit.timm_source()
    if source is None:
        pytest.skip("timm's files are not installed")
    for weight_init in ("", "jax_nlhb"):
        states = []
        for functions in (source, timm_vit.restated()):
            torch.manual_seed(0)
            states.append(_numpy_state(timm_vit.VisionTransformer(functions, weight_init=weight_init, fix_init=True, **VIT)))
        for name, theirs in states[0].items():
            ok, d, critical = same_distribution(states[1][name], theirs)
            assert np.array_equal(states[1][name], theirs) or ok, (weight_init, name, d, critical)


@pytest.mark.parametrize("weight_init, fix_init", [("", 0), ("", 1), ("jax", 0), ("jax_nlhb", 1)])
def test_timm_vit_recipe(weight_init, fix_init):
    variables = {
        "num_classes": VIT["num_classes"],
        "weight_init_jax": int(weight_init.startswith("jax")),
        "weight_init_nlhb": int("nlhb" in weight_init),
        "fix_init": fix_init,
    }
    ours = compare("timm_vit.yaml", variables, lambda seed: _vit(weight_init, bool(fix_init), seed))
    if weight_init.startswith("jax"):
        # lecun_normal_ cuts at 2 of its underlying std: at 12,288 elements the KS test alone
        # cannot tell that from an untruncated normal of the same variance (D = 0.017 < 0.025).
        cut = 2 * math.sqrt(1 / (3 * 8 * 8)) / 0.87962566103423978
        assert np.abs(ours["patch_embed.proj.weight"]).max() <= cut * (1 + 1e-6)


# --------------------------------------------------------------------------- Keras LSTM


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")  # torch is here already; any backend gives the same init
    return pytest.importorskip("keras", minversion="3")


def _lstm(unit_forget_bias: bool, seed: int) -> dict[str, np.ndarray]:
    keras = _keras()
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((5, 12))]
    for i, units in enumerate([16, 16, 8]):
        layers.append(keras.layers.LSTM(units, return_sequences=i < 2, unit_forget_bias=unit_forget_bias, name=f"lstm{i}"))
    model = keras.Sequential(layers, name="net")
    values = {}
    for w in model.weights:
        value = w.value  # a torch tensor under the torch backend (np.asarray of it warns there)
        values[w.path] = value.detach().cpu().numpy().copy() if hasattr(value, "detach") else np.array(value)
    return values


def test_keras_lstm_init_is_what_the_recipe_restates():
    state = _lstm(True, 0)
    assert state["net/lstm0/lstm_cell/kernel"].shape == (12, 64)  # [in, 4 units], gates i, f, c, o
    assert_std(state["net/lstm0/lstm_cell/kernel"], math.sqrt(2 / (12 + 64)), "uniform")
    r = state["net/lstm2/lstm_cell/recurrent_kernel"].astype(np.float64)  # [8, 32]: orthonormal rows
    np.testing.assert_allclose(r @ r.T, np.eye(8), atol=1e-5)
    bias = state["net/lstm1/lstm_cell/bias"]
    np.testing.assert_array_equal(bias, np.r_[np.zeros(16), np.ones(16), np.zeros(32)])
    assert np.all(_lstm(False, 0)["net/lstm1/lstm_cell/bias"] == 0)


@pytest.mark.parametrize("unit_forget_bias", [1, 0])
def test_keras_lstm_recipe(unit_forget_bias):
    ours = compare("keras_lstm.yaml", {"unit_forget_bias": unit_forget_bias}, lambda seed: _lstm(bool(unit_forget_bias), seed))
    for i, units in enumerate([16, 16, 8]):
        r = ours[f"net/lstm{i}/lstm_cell/recurrent_kernel"].astype(np.float64)
        np.testing.assert_allclose(r @ r.T, np.eye(units), atol=1e-5)
