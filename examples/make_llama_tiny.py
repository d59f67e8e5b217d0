"""Make examples/llama_tiny/: a small Llama's config.json (as transformers writes it) and its
shapes manifest, from a model built on the meta device (nothing allocated).  Run once:

    python examples/make_llama_tiny.py
"""

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

HERE = Path(__file__).parent / "llama_tiny"
config = LlamaConfig(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, pad_token_id=0, initializer_range=0.02,
)
with torch.device("meta"):
    model = LlamaForCausalLM(config)
HERE.mkdir(exist_ok=True)
config.to_json_file(HERE / "config.json")
tensors = {name: {"shape": list(t.shape), "dtype": "float32"} for name, t in model.state_dict().items()}
(HERE / "model.shapes.json").write_text(json.dumps({"tensors": tensors}, indent=1) + "\n")
