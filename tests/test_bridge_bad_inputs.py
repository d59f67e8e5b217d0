"""The bridges' hostile calls (``tests/bad_inputs/bridges.py``): each raises its exact
message and changes nothing -- not the model, not a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bad_inputs.bridges import BRIDGE_CASES, BridgeCase
from bad_inputs.harness import snapshot

os.environ.setdefault("KERAS_BACKEND", "jax")


def _torch_models() -> dict[str, Callable[[], Any]]:
    torch = pytest.importorskip("torch")

    def tied():
        module = torch.nn.Module()
        module.wte = torch.nn.Embedding(5, 4)
        module.head = torch.nn.Linear(4, 5, bias=False)
        module.head.weight = module.wte.weight
        return module

    def on_meta(make):
        def build():
            with torch.device("meta"):
                return make()
        return build

    def overlap():
        fused = torch.zeros(6, 4)
        module = torch.nn.Module()
        module.q = torch.nn.Parameter(fused[:3])
        module.k = torch.nn.Parameter(fused[2:])
        return module

    def expanded():
        module = torch.nn.Module()
        module.w = torch.nn.Parameter(torch.zeros(4).expand(3, 4))
        return module

    def integers():
        module = torch.nn.Module()
        module.register_buffer("steps", torch.zeros(3, dtype=torch.int64))
        return module

    return {
        "linear": lambda: torch.nn.Linear(3, 2),
        "dict": lambda: {"w": torch.zeros(2)},
        "tied": tied,
        "meta-linear": on_meta(lambda: torch.nn.Linear(3, 2)),
        "meta-huge": on_meta(lambda: torch.nn.Linear(1 << 12, 1 << 11)),
        "overlap": overlap,
        "expanded": expanded,
        "integers": integers,
    }


def _jax_models() -> dict[str, Callable[[], Any]]:
    jax = pytest.importorskip("jax")
    return {
        "dense": lambda: {"params": {"kernel": np.zeros((3, 2), np.float32), "bias": np.zeros(2, np.float32)}},
        "two-names": lambda: {"params.kernel": np.zeros(2, np.float32), "params": {"kernel": np.zeros((3, 2), np.float32)}},
        "shapes": lambda: {"params": {"kernel": jax.ShapeDtypeStruct((3, 2), np.float32), "bias": jax.ShapeDtypeStruct((2,), np.float32)}},
    }


def _keras_models() -> dict[str, Callable[[], Any]]:
    keras = pytest.importorskip("keras", minversion="3")
    return {
        "dense": lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc", kernel_initializer="zeros")], name="net"),
        "unbuilt": lambda: keras.Sequential([keras.layers.Dense(2, name="fc")], name="unbuilt"),
        "dict": lambda: {"fc/kernel": np.zeros((3, 2), np.float32)},
    }


BUILDERS = {"torch": _torch_models, "jax": _jax_models, "keras": _keras_models}


def _bridge(name: str) -> Callable[..., Any]:
    if name == "torch":
        import vsconf.torch

        return vsconf.torch.init_module
    if name == "jax":
        import vsconf.jax

        return vsconf.jax.init_params
    import vsconf.keras

    return vsconf.keras.init_model


def _state(model: Any) -> dict[str, tuple[str, str, bytes]]:
    """Every tensor of ``model`` as (device, dtype, bytes): what must not change."""
    if hasattr(model, "state_dict"):
        import torch

        def raw(t):
            return b"" if t.is_meta else t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()

        return {name: (t.device.type, str(t.dtype), raw(t)) for name, t in model.state_dict(keep_vars=True).items()}
    if hasattr(model, "weights") and getattr(model, "built", False):
        import keras

        return {v.path: ("", str(v.dtype), np.asarray(keras.ops.convert_to_numpy(v.value)).tobytes()) for v in model.weights}
    return {}


def _argument(value: Any, folder: Path) -> Any:
    return value.replace("{dir}", str(folder)) if isinstance(value, str) else value


@pytest.mark.parametrize("case", BRIDGE_CASES, ids=lambda case: case.id)
def test_bridge_bad_input(case: BridgeCase, tmp_path: Path):
    model = BUILDERS[case.bridge]()[case.model]()
    for name, text in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    call = {key: _argument(value, tmp_path) for key, value in case.call.items()}
    if isinstance(case.call["spec"], str) and "{dir}" not in case.call["spec"]:
        (tmp_path / "spec.yaml").write_text(case.call["spec"])
        call["spec"] = str(tmp_path / "spec.yaml")
    spec = call.pop("spec")
    before_files, before_model = snapshot(tmp_path), _state(model)
    with pytest.raises(Exception) as raised:
        _bridge(case.bridge)(model, spec, **call)
    assert type(raised.value).__name__ == case.error, raised.value
    assert str(raised.value) == case.message.replace("{dir}", str(tmp_path))
    assert snapshot(tmp_path) == before_files
    assert _state(model) == before_model


def test_the_bridge_corpus_is_wide_and_ids_are_unique():
    ids = [case.id for case in BRIDGE_CASES]
    assert len(ids) == len(set(ids))
    assert {case.bridge for case in BRIDGE_CASES} == {"torch", "jax", "keras"} and len(ids) >= 35
