"""vsconf.audit and vsconf.stats (#23): calibration, power, real models.

Calibration: fresh vsconf outputs of every init kind audited at a stated level fail at most
at that rate (a binomial bound on the count).  Power: each perturbation of the issue's table
is caught at a stated size, with its reason in words.  Real: transformers' GPT-2 as built
passes its recipe; after one optimizer step it fails on exactly the tensors that moved; HF's
Flax-style ``lecun_normal_`` fails ``lecun_normal`` with the ~1.14x reason.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import vsconf
from audit_cases import PERTURBATIONS
from vsconf import ks

HEAD = "vsconf: 1\nseed: {seed}\nlayout: torch\nrules:\n"
# every kind the audit tests: VarianceScaling (three distributions), normal, truncated normal
# with absolute bounds, uniform, orthogonal, identity, dirac, a formula, constants, zero rows
# and parts
EVERY_KIND = HEAD + """\
  - match: vs_tn
    init: he_normal
  - match: vs_normal
    init: {scale: 1, mode: fan_avg, distribution: untruncated_normal}
  - match: vs_uniform
    init: lecun_uniform
  - match: normal
    init: {normal: {mean: 0.5, std: 0.02}}
  - match: trunc
    init: {truncated_normal: {std: 0.02, a: -0.04, b: 0.04}}
  - match: uniform
    init: {uniform: {low: -1, high: 3}}
  - match: ortho
    init: {orthogonal: {gain: 2}}
  - match: eye
    init: {identity: {gain: 1}}
  - match: conv
    init: {dirac: {groups: 1}}
  - match: computed
    init: {formula: 'i0 * 0.5 + i1'}
  - match: ones
    init: ones
  - match: padded
    init: {normal: {std: 0.02}}
    zero_rows: [0, 3]
  - match: qkv
    parts: {axis: 0, count: 3, inits: [he_normal, {normal: {std: 0.1}}, zeros]}
"""
SHAPES = {
    "vs_tn": (64, 32), "vs_normal": (48, 40), "vs_uniform": (32, 16, 3), "normal": (500,), "trunc": (128, 64),
    "uniform": (1000,), "ortho": (24, 16), "eye": (8, 8), "conv": (4, 4, 3), "computed": (5, 6), "ones": (7,),
    "padded": (20, 10), "qkv": (30, 8),
}


def fresh(seed: int, dtype=np.float32) -> dict[str, np.ndarray]:
    spec = vsconf.parse_spec(EVERY_KIND.replace("{seed}", str(seed)))
    return vsconf.apply_state_dict({k: np.zeros(s, dtype) for k, s in SHAPES.items()}, spec)


def every_kind(seed: int):
    return vsconf.parse_spec(EVERY_KIND.replace("{seed}", str(seed)))


def binomial_upper(n: int, p: float, tail: float = 1e-4) -> int:
    """The smallest k with P(Binomial(n, p) > k) <= tail."""
    total, k = 0.0, 0
    while True:
        total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if 1 - total <= tail:
            return k
        k += 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_fresh_outputs_of_every_kind_pass_at_the_stated_rate(dtype):
    """Audited at alpha = 0.2, 30 correct models fail at most as often as a Binomial(30, 0.2)
    allows (one in 10,000); every exact check passes every time; the KS p-values of all
    tensors are no more often below 0.05 than 5% allows."""
    from vsconf.dtypes import dtype_named

    failures, p_values = 0, []
    for seed in range(30):
        result = vsconf.audit(fresh(seed, dtype_named(dtype)), every_kind(seed), alpha=0.2)
        assert all(v.ok for v in result.verdicts if v.test == "exact"), [v.reason for v in result.failed]
        failures += not result.ok
        p_values += [v.p_value for v in result.verdicts if v.test == "ks"]
    assert failures <= binomial_upper(30, 0.2), failures
    assert sum(p < 0.05 for p in p_values) <= binomial_upper(len(p_values), 0.05), p_values
    assert len(p_values) == 30 * 9  # vs x3, normal, trunc, uniform, padded, qkv's two drawn parts


def test_large_tensors_pass_at_the_stated_rate():
    """Tensors over the cap are tested on their subsample: 20 correct models of two large
    tensors fail at alpha 0.2 at most as often as a Binomial(20, 0.2) allows."""
    spec_text = HEAD + "  - match: big\n    init: he_normal\n  - match: flat\n    init: {uniform: {low: -0.5, high: 0.5}}\n"
    failures = 0
    for seed in range(20):
        spec = vsconf.parse_spec(spec_text.replace("{seed}", str(seed)))
        model = vsconf.apply_state_dict({"big": np.zeros((1024, 512), np.float32), "flat": np.zeros(600_000, np.float32)}, spec)
        result = vsconf.audit(model, spec, alpha=0.2)
        assert all(v.subsampled and v.tested == 1 << 17 for v in result.verdicts)
        failures += not result.ok
    assert failures <= binomial_upper(20, 0.2), failures


def test_a_large_tensor_is_subsampled_deterministically():
    spec = vsconf.parse_spec(HEAD.replace("{seed}", str(1)) + "  - match: w\n    init: he_uniform\n")
    model = vsconf.apply_state_dict({"w": np.zeros((1024, 300), np.float32)}, spec)
    first, second = (vsconf.audit(model, spec, cap=10_000).verdicts[0] for _ in range(2))
    assert first.subsampled and first.tested == 10_000 and first.ok and first.p_value == second.p_value


POWER_SIZES = {  # a size at which each perturbation is caught (benchmarks/audit_power.py finds the smallest)
    "std x1.05": 65536, "std x1.14 (HF lecun_normal_)": 4096, "fan_out instead of fan_in": 1024,
    "untruncated instead of truncated": 16384, "uniform instead of normal": 4096, "tf layout's fans instead of torch's": 1024,
    "a zero row left random": 64, "a constant off by 1e-3": 16, "one value beyond a bound": 64,
}


@pytest.mark.parametrize("label", list(PERTURBATIONS))
def test_each_perturbation_is_caught_with_its_reason(label):
    build, words, alternative = PERTURBATIONS[label]
    rule, values = build(POWER_SIZES[label], np.random.default_rng(1))
    spec = vsconf.parse_spec(HEAD.replace("{seed}", "1") + rule)
    (verdict,) = vsconf.audit({"w": values}, spec).verdicts
    assert verdict.ok is False, verdict
    assert words in verdict.reason, verdict.reason
    if alternative:
        assert any(alternative in a for a in verdict.alternatives), verdict.alternatives


def test_a_bfloat16_sample_of_a_million_is_read_as_rounded_and_keeps_its_power():
    """bfloat16 holds 8 bits of mantissa: a million values are full of ties.  Read as
    rounded, a correct sample passes, and a std 1.01x too wide is still rejected."""
    import ml_dtypes

    rng = np.random.default_rng(3)
    z = rng.normal(0, 1, 1_000_000)
    null = ks.Null("untruncated_normal", 1.0)
    for scale, passes in ((1.0, True), (1.01, False)):
        x = (z * scale).astype(ml_dtypes.bfloat16)
        assert (ks.p_value(ks.statistic(x, null, x.dtype), x.size) > 1e-3) is passes


def test_holm_holds_the_family_and_rejects_in_order():
    assert ks.holm([0.001, 0.2, 0.004], 0.01) == [True, False, True]
    assert ks.holm([0.004, 0.006], 0.01) == [True, True]
    assert ks.holm([0.006, 0.006], 0.01) == [False, False]


# --------------------------------------------------------------------------- real models

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _state(model) -> dict[str, np.ndarray]:
    seen, out = set(), {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            out[name] = tensor.detach().numpy().copy()
    return out


def _hf(kind: str):
    if kind == "gpt2":
        config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=300, n_positions=32)
        return config, transformers.GPT2LMHeadModel(config), "configs/recipes/hf_gpt2.yaml"
    if kind == "llama":
        config = transformers.LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=300, max_position_embeddings=32, pad_token_id=3, bos_token_id=1, eos_token_id=2,
        )
        return config, transformers.LlamaForCausalLM(config), "configs/recipes/hf_llama.yaml"
    config = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=300)
    return config, transformers.BertForPreTraining(config), "configs/recipes/hf_bert.yaml"


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_a_fresh_transformers_model_passes_its_recipe(kind):
    torch.manual_seed(1)
    config, model, recipe = _hf(kind)
    result = vsconf.audit(_state(model), recipe, vars=config.to_dict())
    assert result.ok, [(v.name, v.reason) for v in result.failed]
    assert sum(v.test == "ks" for v in result.verdicts) >= 8 and sum(v.test == "exact" for v in result.verdicts) >= 5


def test_a_fresh_gpt2_passes_its_recipe_and_fails_after_an_optimizer_step():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=300, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    recipe = "configs/recipes/hf_gpt2.yaml"
    before = _state(model)
    result = vsconf.audit(before, recipe, vars=config.to_dict())
    assert result.ok, [(v.name, v.reason) for v in result.failed]
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-2)  # every element moves by 0.05: more than std 0.02
    tokens = torch.randint(0, 300, (4, 32))
    model(tokens, labels=tokens).loss.backward()
    optimizer.step()
    after = _state(model)
    moved = {name for name in after if not np.array_equal(after[name], before[name])}
    assert moved
    failed = {v.name for v in vsconf.audit(after, recipe, vars=config.to_dict()).failed}
    assert failed == moved


def test_hf_flax_style_lecun_normal_fails_lecun_normal_with_the_reason():
    from transformers.initialization import lecun_normal_

    torch.manual_seed(0)
    weight = torch.empty(512, 256)
    lecun_normal_(weight)
    spec = vsconf.parse_spec(HEAD.replace("{seed}", str(1)) + "  - match: w\n    init: lecun_normal\n")
    (verdict,) = vsconf.audit({"w": weight.numpy()}, spec).verdicts
    assert verdict.ok is False
    ratio = float(verdict.reason.split("std ")[1].split("x")[0])
    assert abs(ratio - 1 / 0.87962566103423978) < 0.03  # 1.137: the correction, and no cut at +-2 (absolute)
    assert any("std correction without its cut" in a for a in verdict.alternatives), verdict.alternatives


# --------------------------------------------------------------------------- real exports

TORCH_DEFAULT = """\
vsconf: 1
seed: 1
rules:
  - match: '*'
    role: bias
    optional: true
    fans_from: weight
    init: torch_default
  - match: '*'
    init: torch_default
"""


def _export(name: str):
    import os

    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "pytorch-converted", name, "model.onnx")


@pytest.mark.parametrize("name", ["test_Conv1d", "test_Conv2d", "test_Conv2d_groups", "test_Conv2d_depthwise", "test_Conv3d", "test_Linear"])
def test_real_pytorch_exports_pass_torch_default(name):
    """The onnx package's PyTorch exports hold the weights their modules drew at export:
    torch's default init, read here through the graph's fans (the bias from its weight's)."""
    result = vsconf.audit(_export(name), vsconf.parse_spec(TORCH_DEFAULT))
    assert result.ok and all(v.test == "ks" for v in result.verdicts), [(v.name, v.reason) for v in result.failed]


def test_a_real_conv_transpose_export_is_named_by_its_fans():
    """That PyTorch (2017) drew a ConvTranspose weight from +-1/sqrt(in_channels * k * k), the
    graph's fan_out: the audit fails it on its bound and names the fan mode that fits."""
    (weight, bias) = vsconf.audit(_export("test_ConvTranspose2d"), vsconf.parse_spec(TORCH_DEFAULT)).verdicts
    assert weight.ok is False and "values beyond the bound ±0.1667" in weight.reason
    assert "looks like a different fan mode (fan_out fits)" in weight.alternatives


def test_a_real_embedding_export_is_normal_not_torch_default():
    spec = vsconf.parse_spec(TORCH_DEFAULT)
    (verdict,) = vsconf.audit(_export("test_Embedding"), spec).verdicts
    assert verdict.ok is False and "beyond the bound ±0.5" in verdict.reason
    normal = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: {normal: {std: 1}}\n")
    assert vsconf.audit(_export("test_Embedding"), normal).ok


# --------------------------------------------------------------------------- stats and the CLI


def test_stats_match_numpy_and_the_difference_of_two_models(tmp_path):
    rng = np.random.default_rng(0)
    a = {"w": rng.normal(0, 1, (300, 7)).astype(np.float32), "b": np.array([0, 0, np.nan, 1], np.float32), "n": np.arange(4)}
    b = {"w": a["w"] * 2, "b": a["b"], "extra": np.ones(2, np.float32)}
    rows = {row.name: row for row in vsconf.stats(a)}
    w = a["w"].astype(np.float64)
    assert rows["w"].stats.mean == pytest.approx(w.mean(), rel=1e-12) and rows["w"].stats.std == pytest.approx(w.std(), rel=1e-12)
    assert (rows["b"].stats.nonfinite, rows["b"].stats.zeros, rows["b"].stats.max) == (1, 0.5, 1.0)
    assert rows["n"].stats.mean is None and rows["n"].stats.count == 4
    pair = {row.name: row for row in vsconf.stats(a, b)}
    assert pair["w"].relative_change == pytest.approx(1.0, rel=1e-9) and pair["w"].difference.std == pytest.approx(w.std(), rel=1e-9)
    assert pair["n"].note == "only in the first model" and pair["extra"].note == "only in the second model"
    np.savez(tmp_path / "a.npz", **a)
    np.savez(tmp_path / "b.npz", **b)
    out = subprocess.run([sys.executable, "-m", "vsconf", "stats", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--json"],
                         capture_output=True, text=True, check=True)
    assert {r["name"] for r in json.loads(out.stdout)} == {"w", "b", "n", "extra"}


def test_stats_read_every_format_alike(tmp_path):
    """ONNX inline and with external data, .npz, .safetensors and a sharded folder: the same
    numbers for the same tensors."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx_builders import make_model
    from safetensors.numpy import save_file

    rng = np.random.default_rng(4)
    arrays = {"w": rng.normal(0, 1, (64, 32)).astype(np.float32), "b": rng.uniform(-1, 1, 32).astype(np.float32)}
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])], [numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )
    model = make_model(graph, (("", 17),), ir_version=8)
    onnx.save_model(model, tmp_path / "inline.onnx")
    onnx.save_model(model, tmp_path / "external.onnx", save_as_external_data=True, location="external.data", size_threshold=0)
    np.savez(tmp_path / "m.npz", **arrays)
    save_file(arrays, tmp_path / "m.safetensors")
    (tmp_path / "m.shapes.json").write_text(json.dumps({"tensors": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in arrays.items()}}))
    truth = {k: (float(v.astype(np.float64).mean()), float(v.astype(np.float64).std())) for k, v in arrays.items()}
    for source in ("inline.onnx", "external.onnx", "m.npz", "m.safetensors"):
        rows = {row.name: row.stats for row in vsconf.stats(tmp_path / source)}
        for name, (mean, std) in truth.items():
            assert rows[name].mean == pytest.approx(mean, rel=1e-12, abs=1e-15) and rows[name].std == pytest.approx(std, rel=1e-12), source
    # a sharded folder, written from the manifest, against the same folder read back as arrays
    vsconf.apply(tmp_path / "m.shapes.json", vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normal\n"),
                 tmp_path / "ckpt", shard_size="5KB")
    from safetensors.numpy import load_file

    loaded = {}
    for shard in sorted((tmp_path / "ckpt").glob("*.safetensors")):
        loaded.update(load_file(shard))
    assert len(list((tmp_path / "ckpt").glob("*.safetensors"))) >= 2
    rows = {row.name: row.stats for row in vsconf.stats(tmp_path / "ckpt")}
    for name, values in loaded.items():
        assert rows[name].std == pytest.approx(float(values.astype(np.float64).std()), rel=1e-12)


def test_audit_cli_exit_codes_and_json(tmp_path):
    spec_text = HEAD.replace("{seed}", str(3)) + "  - match: w\n    init: {normal: {std: 0.02}}\n"
    (tmp_path / "s.yaml").write_text(spec_text)
    good = vsconf.apply_state_dict({"w": np.zeros((64, 64), np.float32)}, vsconf.parse_spec(spec_text))
    np.savez(tmp_path / "good.npz", **good)
    np.savez(tmp_path / "bad.npz", w=good["w"] * 1.3)
    run = lambda *a: subprocess.run([sys.executable, "-m", "vsconf", "audit", *a], capture_output=True, text=True)  # noqa: E731
    ok = run(str(tmp_path / "good.npz"), str(tmp_path / "s.yaml"))
    assert ok.returncode == 0 and "1 tensors checked, 0 inconsistent" in ok.stdout, ok
    bad = run(str(tmp_path / "bad.npz"), str(tmp_path / "s.yaml"), "--json")
    assert bad.returncode == 1 and bad.stderr.endswith("1 tensor not initialised as the spec says\n")
    record = json.loads(bad.stdout)
    assert record["ok"] is False and record["correction"] == "holm" and record["tensors"][0]["reason"].startswith("std 1.3")
    usage = run(str(tmp_path / "good.npz"), str(tmp_path / "s.yaml"), "--alpha", "2")
    assert usage.returncode == 2 and "expected a number between 0 and 1" in usage.stderr


def test_plan_and_inspect_gain_stats_columns(tmp_path):
    spec_text = HEAD.replace("{seed}", "3") + "  - match: w\n    init: {normal: {std: 0.02}}\n"
    (tmp_path / "s.yaml").write_text(spec_text)
    np.savez(tmp_path / "m.npz", w=np.array([[1.0, -1.0], [0.0, 2.0]], np.float32))
    run = lambda *a: subprocess.run([sys.executable, "-m", "vsconf", *a], cwd=tmp_path, capture_output=True, text=True, check=True)  # noqa: E731
    header, row = run("plan", "m.npz", "s.yaml", "--stats").stdout.splitlines()
    assert header.split()[-5:] == ["mean", "std", "min", "max", "zeros"] and row.split()[-5:] == ["0.5", "1.118", "-1", "2", "0.25"]
    (record,) = json.loads(run("inspect", "m.npz", "--stats", "--format", "json").stdout)
    assert record["stats"] == {"count": 4, "mean": 0.5, "std": math.sqrt(1.25), "min": -1.0, "max": 2.0, "zeros": 0.25, "nonfinite": 0}
    (entry,) = json.loads(run("plan", "m.npz", "s.yaml", "--stats", "--format", "json").stdout)
    assert entry["stats"]["max"] == 2.0 and entry["std"] == 0.02


def test_an_all_zero_tensor_says_so_once():
    spec = vsconf.parse_spec(HEAD.replace("{seed}", "1") + "  - match: w\n    init: {normal: {std: 0.02}}\n")
    (verdict,) = vsconf.audit({"w": np.zeros((64, 64), np.float32)}, spec).verdicts
    assert verdict.ok is False and verdict.reason == "all zeros"
