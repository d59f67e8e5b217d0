"""Checkpoint folders as people have them, through the real ``transformers`` library.

Small GPT-2, Llama and BERT models are saved by ``save_pretrained`` (sharded, with their
configs), or described by a shapes manifest built on the meta device, and every way
vsconf writes a folder -- ``--in-place``, ``--force`` over an existing folder, ``-o NEW/``
-- must leave a folder that ``from_pretrained`` loads with no missing or unexpected key,
with tied weights tied, holding exactly the values the spec produces, and with every file
that is not the replaced checkpoint's byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import vsconf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

SPEC = """\
vsconf: 1
seed: 11
layout: torch
rules:
  - role: [norm_scale]
    init: ones
  - role: [norm_bias, bias]
    optional: true
    init: zeros
  - match: "*"
    init: {scale: 1.0, mode: fan_in, distribution: truncated_normal}
"""


def _gpt2():
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel, config, lambda m: (m.lm_head.weight, m.transformer.wte.weight)


def _llama():
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        vocab_size=100, max_position_embeddings=32, bos_token_id=0, eos_token_id=0,
    )
    return transformers.LlamaForCausalLM, config, None


def _bert():
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100, max_position_embeddings=32)
    return transformers.BertForMaskedLM, config, lambda m: (m.cls.predictions.decoder.weight, m.bert.embeddings.word_embeddings.weight)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _saved(tmp_path: Path, build, name: str) -> tuple[Path, Path]:
    """(a folder save_pretrained wrote, in several shards with its configs and a README; the spec)."""
    cls, config, _ = build()
    torch.manual_seed(0)
    folder = tmp_path / name
    cls(config).save_pretrained(folder, max_shard_size="20KB")
    (folder / "README.md").write_text("# my model\n")
    spec = tmp_path / "init.yaml"
    spec.write_text(SPEC)
    return folder, spec


def _loads_as_the_spec_says(folder: Path, build, spec: Path) -> None:
    """from_pretrained: no missing/unexpected key, ties kept, every tensor what the spec makes."""
    cls, _, tied = build()
    model, info = cls.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    if tied is not None:
        a, b = tied(model)
        assert a.data_ptr() == b.data_ptr()
    assert vsconf.verify(folder, spec) == []
    plan = vsconf.plan(folder, spec)
    state = model.state_dict()
    for entry in plan:
        if entry.changes:
            expected = vsconf.slice_values(entry)
            assert np.array_equal(state[entry.name].detach().numpy(), expected), entry.name


@pytest.mark.parametrize("build, name", [(_gpt2, "gpt2"), (_llama, "llama")])
def test_in_place_replaces_only_the_weights_of_a_saved_model(tmp_path, build, name):
    folder, spec = _saved(tmp_path, build, name)
    before = _digests(folder)
    weights = {n for n in before if n.endswith(".safetensors") or n.endswith(".index.json")}
    result = vsconf.apply(folder, spec, in_place=True)
    after = _digests(folder)
    assert set(after) == set(before)  # the same files: shards kept as they were laid out
    assert {n for n in before if before[n] != after[n]} <= weights
    assert {n: after[n] for n in before if n not in weights} == {n: before[n] for n in before if n not in weights}
    assert "laid out as in the input" in result.details[0]
    _loads_as_the_spec_says(folder, build, spec)


@pytest.mark.parametrize("build, name", [(_gpt2, "gpt2"), (_llama, "llama")])
def test_a_new_folder_gets_the_configs_and_keeps_the_shards(tmp_path, build, name):
    folder, spec = _saved(tmp_path, build, name)
    before = _digests(folder)
    out = tmp_path / "new" / "deeper"  # missing parents are made
    result = vsconf.apply(folder, spec, str(out) + "/")
    assert _digests(folder) == before  # the input is untouched
    made = _digests(out)
    assert set(made) == set(before)
    for file in ("config.json", "generation_config.json", "README.md"):
        assert made[file] == before[file]
    assert any("copied" in detail and "config.json" in detail for detail in result.details)
    _loads_as_the_spec_says(out, build, spec)


@pytest.mark.parametrize("build, name", [(_gpt2, "gpt2"), (_llama, "llama")])
def test_force_over_a_folder_replaces_its_checkpoint_and_nothing_else(tmp_path, build, name):
    folder, spec = _saved(tmp_path, build, name)
    out = tmp_path / "out"
    shutil.copytree(folder, out)
    (out / "training_args.json").write_text('{"lr": 0.1}')
    (out / "config.json").write_text(json.dumps({**json.loads((out / "config.json").read_text()), "note": "mine"}))
    others = {n: d for n, d in _digests(out).items() if not n.endswith((".safetensors", ".index.json"))}
    with pytest.raises(vsconf.ModelError, match="holds the checkpoint model.safetensors.index.json"):
        vsconf.apply(folder, spec, out)
    result = vsconf.apply(folder, spec, out, force=True)
    after = _digests(out)
    assert {n: after[n] for n in others} == others  # my config, my notes: untouched
    assert any("kept" in note and "config.json" in note for note in result.notes)
    _loads_as_the_spec_says(out, build, spec)


@pytest.mark.parametrize("build", [_gpt2, _bert])
def test_a_meta_device_manifest_keeps_tied_weights_tied(tmp_path, build):
    """The README's recipe: shapes from the meta device, tied parameters as ``same_as``."""
    cls, config, tied = build()
    with torch.device("meta"):
        model = cls(config)
    tensors, first = {}, {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if not tensor.is_floating_point():
            continue
        if id(tensor) in first:
            tensors[name] = {"same_as": first[id(tensor)]}
        else:
            first[id(tensor)] = name
            tensors[name] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
    assert any("same_as" in entry for entry in tensors.values())
    manifest = tmp_path / "model.shapes.json"
    manifest.write_text(json.dumps({"tensors": tensors}))
    spec = tmp_path / "init.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "ckpt"
    result = vsconf.apply(manifest, spec, out)
    assert result.plan.aliases == {name: entry["same_as"] for name, entry in tensors.items() if "same_as" in entry}
    held = set(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"])
    assert held == {name for name, entry in tensors.items() if "same_as" not in entry}  # each tie held once
    config.save_pretrained(out)
    _loads_as_the_spec_says(out, build, spec)
