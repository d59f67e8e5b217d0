"""Models exported from PyTorch with both of its exporters (tests/fixtures/export_torch.py
made them): vsconf's fans for each weight against what PyTorch says of the same weight."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_builders import run

import vsconf
from vsconf.errors import MatchError
from vsconf.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FACTS = json.loads((FIXTURES / "torch_facts.json").read_text())
MODELS = sorted(FIXTURES.glob("torch_*.onnx"))
# `untie: conflicts`: the TorchScript encoder stores one zero vector for a Gemm bias and two
# LayerNorm biases, which without it is an error (test_deduplicated_tensors_...)
EVERYTHING = parse_spec("vsconf: 1\nseed: 1\nuntie: conflicts\nrules:\n  - match: '*'\n    init: he_normal\n", source="all.yaml")
PYTORCH_DEFAULTS_TEXT = (ROOT / "configs" / "pytorch_defaults.yaml").read_text()
PYTORCH_DEFAULTS = vsconf.load_spec(ROOT / "configs" / "pytorch_defaults.yaml")


def test_every_fixture_has_facts_and_both_exporters_are_there():
    assert {p.name for p in MODELS} == set(FACTS)
    for kind in ("cnn", "rnn", "encoder"):
        assert {f"torch_{kind}_torchscript.onnx", f"torch_{kind}_dynamo.onnx"} <= set(FACTS)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem.removeprefix("torch_"))
def test_fans_agree_with_pytorch(path):
    plan = vsconf.plan(path, EVERYTHING)
    facts = FACTS[path.name]
    assert facts, "no weight of the PyTorch module was found in the export"
    for name, fact in facts.items():
        entry = plan.entry(name)
        if fact["param"] == "embed.weight":
            # SPEC §3: an embedding [V, D] read by Gather has fan_in V, fan_out D (PyTorch's
            # generic rule would read it as a Linear [out, in])
            assert (entry.fan_in, entry.fan_out) == tuple(reversed(fact["torch_fans"]))
            continue
        assert [entry.fan_in, entry.fan_out] == fact["torch_fans"], (name, fact["param"], entry.fans_from)


def test_torchscript_lstm_weights_are_found_through_slice_concat_unsqueeze():
    plan = vsconf.plan(FIXTURES / "torch_rnn_torchscript.onnx", EVERYTHING)
    entry = plan.entry("lstm.weight_ih_l0")
    assert entry.shape == (20, 6)  # PyTorch's [4H, I], re-ordered into ONNX's gate order on the way
    assert entry.fans_from.startswith("LSTM W (")
    assert [c.split(" ")[0] for c in entry.consumers] == ["LSTM.W"]


def test_dynamo_renamed_weights_get_their_consumer_fans():
    plan = vsconf.plan(FIXTURES / "torch_encoder_dynamo.onnx", EVERYTHING)
    renamed = [name for name, fact in FACTS["torch_encoder_dynamo.onnx"].items() if name.startswith("val_")]
    assert renamed
    for name in renamed:
        assert plan.entry(name).fans_from.startswith("MatMul B (")


def test_deduplicated_tensors_whose_consumers_disagree_are_an_error_unless_untied(tmp_path):
    path = FIXTURES / "torch_encoder_torchscript.onnx"
    # the TorchScript exporter stored one zero vector for three parameters
    shared = next(r for r in vsconf.inspect(path) if r["name"] == "layer.self_attn.out_proj.bias")
    assert [c.split(" ")[0] for c in shared["consumers"]] == ["Gemm.C", "LayerNormalization.B", "LayerNormalization.B"]
    tied = parse_spec(PYTORCH_DEFAULTS_TEXT.replace("untie: conflicts\n", ""), source="pytorch_defaults.yaml")
    assert tied.untie is None
    with pytest.raises(MatchError) as caught:
        vsconf.plan(path, tied)
    message = str(caught.value)
    assert "tensor 'layer.self_attn.out_proj.bias': its consumers disagree on its role: " in message
    for consumer in ("Gemm C (/layer/self_attn/Gemm) reads it as bias",
                     "LayerNormalization B (/layer/norm1/LayerNormalization) reads it as norm_bias",
                     "LayerNormalization B (/layer/norm2/LayerNormalization) reads it as norm_bias"):
        assert consumer in message
    assert "add `untie: conflicts` to the spec to give each consumer its own copy" in message
    # the API's untie="conflicts" does what the spec's key does
    for plan in (vsconf.plan(path, PYTORCH_DEFAULTS), vsconf.plan(path, tied, untie="conflicts")):
        copies = [e for e in plan if e.untied_from == "layer.self_attn.out_proj.bias"]
        assert len(copies) == 3 and set(plan.untied) == {"layer.self_attn.out_proj.bias"}
        bias = [e for e in copies if e.role == "bias"]
        # MultiheadAttention zero-initializes out_proj.bias, and so does the config (its copy too)
        assert len(bias) == 1 and (bias[0].action, bias[0].value) == ("constant", 0.0)
        assert sorted((e.role, e.action, e.value) for e in copies if e.role != "bias") == [("norm_bias", "constant", 0.0)] * 2
        # an intentional tie: both LayerNorms read one ones-vector as their scale, and agree
        scale = plan.entry("layer.norm1.weight")
        assert len(scale.consumers) == 2 and (scale.role, scale.action, scale.value) == ("norm_scale", "constant", 1.0)
    # --untie (all) unties the agreeing tie too; shared shape tensors are not floats: they stay shared
    everything = vsconf.plan(path, tied, untie=True)
    assert "layer.norm1.weight" in everything.untied and "layer.self_attn.out_proj.bias" in everything.untied
    shared_shapes = [e for e in vsconf.plan(path, PYTORCH_DEFAULTS) if e.action == "skip" and len(e.consumers) > 1]
    assert shared_shapes and all(everything.entry(e.name).consumers == e.consumers for e in shared_shapes)
    model = tmp_path / "enc.onnx"
    model.write_bytes(path.read_bytes())
    result = vsconf.apply(model, PYTORCH_DEFAULTS)
    assert set(result.plan.untied) == {"layer.self_attn.out_proj.bias"}
    onnx.checker.check_model(str(result.output))
    assert np.isfinite(run(result.output)[0]).all()
    assert vsconf.verify(result.output, PYTORCH_DEFAULTS) == []


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem.removeprefix("torch_"))
def test_pytorch_defaults_config_applies_checks_and_runs(path, tmp_path):
    model = tmp_path / path.name
    model.write_bytes(path.read_bytes())
    reference = run(model)
    result = vsconf.apply(model, PYTORCH_DEFAULTS)
    assert model.read_bytes() == path.read_bytes()
    onnx.checker.check_model(str(result.output))
    outputs = run(result.output)
    assert [o.shape for o in outputs] == [r.shape for r in reference]
    assert all(np.isfinite(o).all() for o in outputs)
    assert vsconf.verify(result.output, PYTORCH_DEFAULTS) == []
    filled = [e for e in result.plan if e.action == "fill"]
    assert filled and all(e.fans_from != "tf (auto: no known consumer)" for e in filled)
