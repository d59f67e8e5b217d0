"""The zoo (tests/zoo): small architectures exported by both of PyTorch's exporters, with
what PyTorch itself says of every initializer (tests/zoo/facts.json, written by
tests/zoo/build.py). These tests need no torch: they read the committed files.

What vsconf must get right on them (issue #10): every weight's fans, every tensor's role,
shared tensors never filled from one consumer's view, `match: "*"` leaving a runnable
model, and configs/pytorch_defaults.yaml giving every bias its own layer's fan_in.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import vsconf
from vsconf.errors import MatchError
from vsconf.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
ZOO = Path(__file__).resolve().parent / "zoo"
FACTS = {name: record for name, record in json.loads((ZOO / "facts.json").read_text()).items() if not name.startswith("_")}
MODELS = sorted(ZOO.glob("*.onnx"))
IDS = [p.stem for p in MODELS]
EVERYTHING_YAML = "vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normal\n"
# Modules whose biases PyTorch (and configs/pytorch_defaults.yaml) zero-initialize.
ZERO_BIAS_MODULES = {"MultiheadAttention", "NonDynamicallyQuantizableLinear"}


def spec(text: str, source: str):
    return parse_spec(text, source=source)


def everything(untie: bool = False):
    return spec(EVERYTHING_YAML + ("untie: conflicts\n" if untie else ""), "all.yaml")


def pytorch_defaults():
    """configs/pytorch_defaults.yaml as shipped: it must work out of the box."""
    return vsconf.load_spec(ROOT / "configs" / "pytorch_defaults.yaml")


def pytorch_defaults_without_untie():
    """The same rules with no `untie:`, so that shared tensors stay shared."""
    path = ROOT / "configs" / "pytorch_defaults.yaml"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("untie:")]
    return spec("\n".join(lines) + "\n", str(path))


def initializers(path: Path) -> dict[str, dict]:
    return FACTS[path.name]["initializers"]


def feeds(export: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The inputs the facts describe for ``export``: ids below the vocabulary, the
    recorded masks, normal floats."""
    rng = np.random.default_rng(seed)
    out = {}
    for item in FACTS[export]["inputs"]:
        dtype = np.dtype(item["dtype"])
        if "values" in item:
            out[item["name"]] = np.asarray(item["values"], dtype=dtype)
        elif dtype.kind in "iu":
            out[item["name"]] = rng.integers(0, item["high"], size=item["shape"]).astype(dtype)
        else:
            out[item["name"]] = rng.standard_normal(item["shape"]).astype(dtype)
    return out


def run(path: Path, export: str | None = None) -> list[np.ndarray]:
    """Run ``path`` in onnxruntime on the inputs the facts give for ``export`` (by
    default the file's own name)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds(export or path.name))


def entries(plan, name: str) -> list:
    """The plan's entries for an initializer: itself, or the copies it was untied into."""
    copies = plan.untied.get(name) if getattr(plan, "untied", None) else None
    if copies:
        return [plan.entry(c) for c in copies]
    return [plan.entry(name)]


def expected_fans(fact: dict) -> tuple[list[int], str | None]:
    """PyTorch's fans for a weight, and the documented reason where vsconf reads them
    the other way round (SPEC §3)."""
    fans = fact.get("part_fans") or fact["torch_fans"]
    if fact["module"] == "Embedding":
        # a table [V, D] read by Gather: fan_in V, fan_out D (PyTorch's generic helper
        # reads it as a Linear [out, in])
        return list(reversed(fans)), "embedding read by Gather"
    if fact["module"] == "Conv1D":
        # HF's Conv1D stores [in, out] and uses it as Gemm B: vsconf reads that, while
        # PyTorch's helper assumes [out, in]. vsconf is right (N(0, .02) aside, the layer's
        # fan_in is the in axis).
        return list(reversed(fans)), "Conv1D stores [in, out]"
    return fans, None


def weight_facts(path: Path) -> dict[str, dict]:
    return {name: f for name, f in initializers(path).items() if f.get("torch_fans") and f["role"] in ("weight", "embedding")}


def conflicts(path: Path) -> dict[str, dict]:
    """Shared tensors whose PyTorch parameters disagree on role or on the bias fan_in."""
    out = {}
    for name, fact in initializers(path).items():
        if not fact.get("merged"):
            continue
        roles = set((fact.get("roles") or {}).values()) or {fact["role"]}
        fan_ins = set((fact.get("layer_fan_ins") or {}).values())
        if len(roles) > 1 or len(fan_ins) > 1:
            out[name] = fact
    return out


def agreeing_ties(path: Path) -> dict[str, dict]:
    """Shared tensors whose parameters agree (LayerNorm scales deduplicated across layers)."""
    return {
        name: fact
        for name, fact in initializers(path).items()
        if fact.get("merged") and name not in conflicts(path) and fact["role"] in ("norm_scale", "norm_bias")
    }


def zero_init_bias(fact: dict) -> bool:
    params = fact.get("params") or [fact.get("param") or ""]
    return fact.get("module") in ZERO_BIAS_MODULES or all(p.endswith(("in_proj_bias", "out_proj.bias")) or "in_proj_bias[" in p for p in params)


# --------------------------------------------------------------------------- the files


def test_every_export_has_facts_and_ten_architectures_have_both_exporters():
    assert {p.name for p in MODELS} == set(FACTS)
    archs = Counter(record["arch"] for record in FACTS.values())
    both = sorted(a for a, n in archs.items() if n == 2)
    assert len(both) >= 10, archs
    kinds = {record["arch"] for record in FACTS.values()}
    assert {"resnet", "mobilenet", "vit", "bert", "gpt2", "t5", "bilstm"} <= kinds
    total = sum(p.stat().st_size for p in MODELS)
    assert total < 5_000_000 and all(p.stat().st_size < 400_000 for p in MODELS)


@pytest.mark.parametrize("path", MODELS, ids=IDS)
def test_facts_cover_every_initializer_and_the_header(path):
    model = onnx.load(str(path))
    record = FACTS[path.name]
    assert {t.name for t in model.graph.initializer} == set(record["initializers"])
    assert model.ir_version == record["ir_version"] <= 10
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == record["opset"]
    assert [i.name for i in model.graph.input if i.name not in record["initializers"]] == [
        i["name"] for i in record["inputs"]
    ]
    for name, fact in record["initializers"].items():
        assert fact["role"] in ("weight", "bias", "embedding", "norm_scale", "norm_bias", "running_stat", "constant", "other")
        if fact["param"] is None and fact["role"] == "constant":
            continue
        assert fact["role"] != "weight" or fact.get("torch_fans"), name
        assert fact["role"] != "bias" or fact.get("layer_fan_in") or fact.get("layer_fan_ins"), name


@pytest.mark.parametrize("path", MODELS, ids=IDS)
def test_runs_as_exported_with_finite_outputs(path):
    outputs = run(path)
    assert outputs and all(np.isfinite(o).all() for o in outputs)


def test_the_facts_know_the_exporters_shared_tensors():
    """What the zoo is for: the TorchScript exporter deduplicates equal tensors across
    roles and layers (dynamo's optimizer does too), and folds BatchNorm into Convs."""
    resnet = initializers(ZOO / "resnet_torchscript.onnx")
    folded = [f for f in resnet.values() if f["match"] == "bn_folded" and f["role"] == "bias"]
    assert any(len(set(f["layer_fan_ins"].values())) > 1 for f in folded)  # one zero bias, several Convs
    gpt2 = initializers(ZOO / "gpt2_torchscript.onnx")["transformer.h.0.ln_1.bias"]
    assert {"norm_bias", "bias"} == set(gpt2["roles"].values())
    mha = initializers(ZOO / "mha_torchscript.onnx")["self_attn.out_proj.bias"]
    assert "cross_attn.in_proj_bias[32:64]" in mha["params"] and "norm1.bias" in mha["params"]
    assert conflicts(ZOO / "bert_dynamo.onnx")  # the dynamo exporter's optimizer merges too


# --------------------------------------------------------------------------- fans


@pytest.mark.parametrize("path", MODELS, ids=IDS)
def test_fans_agree_with_pytorch(path):
    # untie: every consumer its own view, so that shared biases (conflicts, SPEC §3) do not
    # stop the plan; no weight in the zoo is shared
    plan = vsconf.plan(path, everything(), untie=True)
    facts = weight_facts(path)
    assert facts, "no weight of the PyTorch module was found in the export"
    wrong = []
    for name, fact in facts.items():
        want, _ = expected_fans(fact)
        for entry in entries(plan, name):
            if [entry.fan_in, entry.fan_out] != want:
                wrong.append((name, fact["param"], fact["match"], [entry.fan_in, entry.fan_out], want, entry.fans_from))
    assert not wrong


# --------------------------------------------------------------------------- roles


NORM_OPS = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "InstanceNormalization", "RMSNormalization")


@pytest.mark.parametrize("path", MODELS, ids=IDS)
def test_every_role_is_what_the_pytorch_module_says(path):
    plan = vsconf.plan(path, everything(), untie=True)
    wrong = []
    for name, fact in initializers(path).items():
        got_entries = entries(plan, name)
        got = {e.role for e in got_entries}
        if fact["param"] is None and fact["role"] == "constant":
            if fact["dtype"] not in ("float32", "float16", "float64", "bool"):
                continue  # integer tensors (shapes, axes, indices): never filled either way
            if np.prod(fact["shape"], dtype=int) <= 1 or fact["dtype"] == "bool":
                want = {"constant"}  # exporter-made scalars and masks
            elif "derived_from" in fact:
                # a lookup or position bias the exporter computed and folded: read by an Add
                # like a learned ViT pos_embed, so "other" is as good as "constant"
                want = {"constant", "other"}
            else:
                continue  # made-up tensors read as parameters (InstanceNormalization's scale)
        elif fact.get("merged") and fact.get("roles"):
            want = set(fact["roles"].values())
        else:
            want = {fact["role"]}
        if want & {"norm_scale", "norm_bias"} and not any(c.startswith(NORM_OPS) for e in got_entries for c in e.consumers):
            # a norm the exporter wrote out as Mul/Add (GroupNorm before opset 18 as
            # InstanceNormalization + Mul + Add, T5's RMS norm): nothing says it is a norm
            want = want | {"other"}
            got = got - {"other"} or got
        if not got <= want or (fact.get("merged") and len(set(fact.get("roles", {}).values())) > 1 and got != want):
            wrong.append((name, fact.get("param"), sorted(want), sorted(got)))
    assert not wrong


# --------------------------------------------------------------------------- shared tensors

SHARED = [p for p in MODELS if conflicts(p)]


@pytest.mark.parametrize("path", SHARED, ids=[p.stem for p in SHARED])
def test_shared_tensors_whose_parameters_disagree_are_an_error_unless_untied(path):
    names = conflicts(path)
    with pytest.raises(MatchError) as raised:
        vsconf.plan(path, pytorch_defaults_without_untie())
    message = str(raised.value)
    assert any(name in message for name in names), message
    untied = vsconf.plan(path, pytorch_defaults_without_untie(), untie="conflicts")
    assert set(names) <= set(untied.untied)
    # intentional ties whose consumers agree stay tied
    assert not set(agreeing_ties(path)) & set(untied.untied)


def _mixed_roles(path: Path) -> list[str]:
    return [n for n, f in conflicts(path).items() if len(set((f.get("roles") or {}).values())) > 1]


MIXED = [p for p in SHARED if _mixed_roles(p)]


@pytest.mark.parametrize("path", MIXED, ids=[p.stem for p in MIXED])
def test_match_star_refuses_a_tensor_shared_by_a_bias_and_a_norm(path):
    with pytest.raises(MatchError) as raised:
        vsconf.plan(path, everything())
    assert any(name in str(raised.value) for name in _mixed_roles(path))


# --------------------------------------------------------------------------- match: "*"


def _kept_by_safe_defaults(path: Path) -> dict[str, dict]:
    """Exporter-made scalars, masks and RNN initial states, mask and fill buffers, running
    statistics: what a glob rule must leave as it is."""
    out = {}
    for name, fact in initializers(path).items():
        if fact["role"] == "running_stat":
            out[name] = fact
        elif fact["param"] is None and fact["role"] == "constant" and fact["dtype"] in ("float32", "bool"):
            if np.prod(fact["shape"], dtype=int) <= 1 or fact["dtype"] == "bool":
                out[name] = fact
            elif fact["read_by"] and set(fact["read_by"]) <= {"LSTM", "GRU", "RNN"}:
                out[name] = fact  # an RNN's initial state the exporter wrote out as zeros
        elif fact["role"] == "constant" and fact["kind"] == "buffer":
            out[name] = fact
    return out


@pytest.mark.parametrize("path", MODELS, ids=IDS)
def test_match_star_he_normal_runs_with_finite_outputs(path, tmp_path):
    model = tmp_path / path.name
    model.write_bytes(path.read_bytes())
    result = vsconf.apply(model, everything(untie=True))
    onnx.checker.check_model(str(result.output))
    outputs = run(Path(result.output), path.name)
    assert all(np.isfinite(o).all() for o in outputs)
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(result.output)).graph.initializer}
    changed = [n for n in _kept_by_safe_defaults(path) if n in after and not np.array_equal(before[n], after[n])]
    assert not changed
    kept = {e.name for e in result.plan if e.action in ("keep", "skip", "unmatched")}
    assert set(_kept_by_safe_defaults(path)) <= kept | {n for n in before if n not in after}


# --------------------------------------------------------------------------- pytorch_defaults


@pytest.mark.parametrize("path", MODELS, ids=IDS)
def test_pytorch_defaults_gives_every_bias_its_own_layers_fan_in(path):
    plan = vsconf.plan(path, pytorch_defaults())
    wrong = []
    for name, fact in initializers(path).items():
        roles = set((fact.get("roles") or {}).values()) or {fact["role"]}
        got = entries(plan, name)
        for e in got:
            if e.role == "norm_scale" and not (e.action == "constant" and e.value == 1):
                wrong.append((e.name, "norm scale", e.action, e.value))
            if e.role == "norm_bias" and not (e.action == "constant" and e.value == 0):
                wrong.append((e.name, "norm bias", e.action, e.value))
        if "bias" not in roles:
            continue
        want = set((fact.get("layer_fan_ins") or {}).values()) or {fact["layer_fan_in"]}
        for e in got:
            if e.role != "bias":
                continue
            if e.action == "constant" and e.value == 0 and zero_init_bias(fact):
                continue  # MultiheadAttention zero-initializes its biases (so does the config)
            if fact["module"] in ("LSTM", "GRU", "RNN") and e.action != "fill":
                continue  # the config leaves recurrent biases B as exported
            if e.action != "fill" or not (e.fans_from or "").startswith("weight") or e.fan_in not in want:
                wrong.append((e.name, fact.get("param"), sorted(want), e.action, e.fan_in, e.fans_from, e.consumers))
        # a bias shared by layers of different sizes: one copy per layer, each with its fan_in
        per_layer = sorted((fact.get("layer_fan_ins") or {}).values())
        filled = sorted(e.fan_in for e in got if e.role == "bias" and e.action == "fill")
        if fact["match"] == "bn_folded" and per_layer and filled != per_layer:
            wrong.append((name, "one copy per folded Conv", per_layer, filled))
    assert not wrong


@pytest.mark.parametrize("path", MODELS, ids=IDS)
def test_pytorch_defaults_applies_and_runs(path, tmp_path):
    model = tmp_path / path.name
    model.write_bytes(path.read_bytes())
    result = vsconf.apply(model, pytorch_defaults())
    assert model.read_bytes() == path.read_bytes()
    onnx.checker.check_model(str(result.output))
    outputs = run(Path(result.output), path.name)
    assert all(np.isfinite(o).all() for o in outputs)
    filled = [e for e in result.plan if e.action == "fill"]
    assert filled and all(e.role in ("weight", "bias", "embedding") for e in filled)
