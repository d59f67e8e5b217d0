"""Every model format implements the whole adapter contract (``vsconf.formats.protocol.Adapter``), so
that the API calls its methods and never probes for them."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import vsconf
from vsconf.formats.protocol import Adapter, AdapterBase
from vsconf.formats import open_model
from vsconf.files import Transaction
from vsconf.spec import parse_spec
from vsconf.formats.statedict import DictStateDict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
METHODS = ("tensors", "hints", "read", "write", "files", "stale_data_files", "close")
ATTRIBUTES = ("target", "path", "recorded_seed", "recorded_seed_problem")
SPEC = parse_spec("vsconf: 1\nseed: 5\nlayout: torch\nrules:\n  - match: '*.weight'\n    init: he_uniform\n  - match: '*.bias'\n    init: zeros\n")


def _adapter_classes() -> list[type]:
    """Every class in the package that reads like a model: it lists tensors and writes."""
    found = {}
    for info in pkgutil.walk_packages(vsconf.__path__, "vsconf."):
        if info.name in ("vsconf.cli", "vsconf.__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and callable(getattr(cls, "tensors", None)) and callable(getattr(cls, "write", None)):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


@pytest.mark.parametrize("cls", _adapter_classes(), ids=lambda cls: cls.__qualname__)
def test_every_adapter_class_has_the_whole_contract(cls):
    assert not inspect.isabstract(cls)
    missing = [name for name in METHODS if not callable(getattr(cls, name, None))]
    assert not missing, f"{cls.__qualname__} lacks {missing}"
    signature = inspect.signature(cls.write)
    assert list(signature.parameters)[1:] == ["output", "plan", "writing", "metadata", "progress", "transaction"]


def test_the_known_formats_are_all_found():
    names = {cls.__qualname__ for cls in _adapter_classes()}
    assert {"OnnxModel", "NpzStateDict", "SafetensorsStateDict", "DictStateDict"} <= names


def _models(tmp_path: Path) -> dict[str, object]:
    models: dict[str, object] = {
        "onnx": EXAMPLES / "small_cnn.onnx",
        "npz": EXAMPLES / "small_cnn.npz",
        "dict": {"fc.weight": np.zeros((3, 4), np.float32), "fc.bias": np.zeros(3, np.float32)},
    }
    try:
        import safetensors.numpy

        safetensors.numpy.save_file({"fc.weight": np.zeros((3, 4), np.float32)}, str(tmp_path / "m.safetensors"))
        models["safetensors"] = tmp_path / "m.safetensors"
    except ImportError:
        pass
    return models


@pytest.mark.parametrize("kind", ["onnx", "npz", "dict", "safetensors"])
def test_every_opened_model_is_an_adapter(kind, tmp_path):
    models = _models(tmp_path)
    if kind not in models:
        pytest.skip("safetensors is not installed")
    with open_model(models[kind]) as adapter:
        assert isinstance(adapter, Adapter)
        assert isinstance(adapter, AdapterBase)
        for name in ATTRIBUTES:
            getattr(adapter, name)
        assert adapter.target in ("onnx", "state_dict")
        assert all(info.name for info in adapter.tensors())
        assert adapter.stale_data_files(tmp_path / "nothing.here") == ([], [])


def test_a_dict_writes_itself_as_an_npz_with_the_values_apply_state_dict_gives(tmp_path):
    arrays = {"fc.weight": np.ones((3, 4), np.float32), "fc.bias": np.ones(3, np.float32), "steps": np.array(9)}
    adapter = DictStateDict(arrays)
    plan = vsconf.plan(arrays, SPEC)
    from vsconf.draw import generate_chunks
    from vsconf.formats.protocol import Writing

    with Transaction() as transaction:
        adapter.write(tmp_path / "out.npz", plan, Writing(lambda entry: generate_chunks(entry, step=5)), {}, None, transaction)
        transaction.commit()
    written = dict(np.load(tmp_path / "out.npz"))
    expected = vsconf.apply_state_dict(arrays, SPEC)
    assert sorted(written) == sorted(expected)
    for name in expected:
        assert written[name].dtype == expected[name].dtype
        assert np.array_equal(written[name], expected[name])


def test_the_api_never_probes_adapters():
    source = (ROOT / "vsconf" / "api.py").read_text(encoding="utf-8")
    assert "hasattr(" not in source
    assert "getattr(adapter" not in source


def test_a_shapes_manifest_is_an_adapter_too(tmp_path):
    manifest = pytest.importorskip("vsconf.formats.manifest")
    path = tmp_path / "m.shapes.json"
    path.write_text(json.dumps({"tensors": {"fc.weight": {"shape": [3, 4]}}}))
    adapter = manifest.ShapesManifest(path)
    try:
        for name in (*METHODS, *ATTRIBUTES):
            getattr(adapter, name)
        assert isinstance(adapter, Adapter)
    finally:
        adapter.close()
