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
from vsconf.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FACTS = json.loads((FIXTURES / "torch_facts.json").read_text())
MODELS = sorted(FIXTURES.glob("torch_*.onnx"))
EVERYTHING = parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: '*'\n    init: he_normal\n", source="all.yaml")
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


def test_deduplicated_tensors_list_every_consumer_and_untie_separates_them(tmp_path):
    path = FIXTURES / "torch_encoder_torchscript.onnx"
    shared = vsconf.plan(path, PYTORCH_DEFAULTS).entry("layer.self_attn.out_proj.bias")
    # the TorchScript exporter stored one zero vector for three parameters
    assert [c.split(" ")[0] for c in shared.consumers] == ["Gemm.C", "LayerNormalization.B", "LayerNormalization.B"]
    untied = vsconf.plan(path, PYTORCH_DEFAULTS, untie=True)
    copies = [e.name for e in untied if e.name.startswith("layer.self_attn.out_proj.bias:")]
    assert len(copies) == 3
    # shared shape tensors are not floats: they stay shared
    shared_shapes = [e for e in vsconf.plan(path, PYTORCH_DEFAULTS) if e.action == "skip" and len(e.consumers) > 1]
    assert shared_shapes and all(untied.entry(e.name).consumers == e.consumers for e in shared_shapes)
    model = tmp_path / "enc.onnx"
    model.write_bytes(path.read_bytes())
    out = vsconf.apply(model, PYTORCH_DEFAULTS, untie=True).output
    onnx.checker.check_model(str(out))
    assert np.isfinite(run(out)[0]).all()


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
