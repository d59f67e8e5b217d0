"""Shapes manifests: a model that is only names, shapes and dtypes, whose checkpoint vsconf creates.

A manifest is a JSON or YAML file named ``*.shapes.json``, ``*.shapes.yaml`` or
``*.shapes.yml``::

    {"tensors": {"fc.weight": {"shape": [256, 128], "dtype": "float32"},
                 "fc.bias": {"shape": [256]}},
     "metadata": {"format": "pt"}}

``tensors`` maps each name, in order, to its ``shape`` (a list of non-negative integers)
and ``dtype`` (float16, bfloat16, float32 or float64; float32 when left out) -- or, for a
parameter tied to another (``lm_head.weight`` and ``wte.weight``), to ``{"same_as": NAME}``:
one tensor under two names, which the checkpoint holds once, under NAME, as Hugging
Face's ``save_pretrained`` saves tied weights.
``metadata`` (optional, strings to strings) goes into the safetensors header of the
output, ``{"format": "pt"}`` when left out, which Hugging Face's loaders expect.  A
manifest holds no values, so every tensor must be filled by a rule (a constant rule
included): a checkpoint with tensors nobody initialized would be a lie, and ``apply``
refuses it, naming them.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vsconf.engine import Plan
from vsconf.errors import MatchError, ModelError
from vsconf.files import Transaction, load_json, read_text
from vsconf.initializers import FLOAT_DTYPES, float_dtype
from vsconf.matching import TensorInfo
from vsconf.spec import format_path
from vsconf.formats.names import NamedTensors, is_unicode

SUFFIXES = (".shapes.json", ".shapes.yaml", ".shapes.yml")
MAX_MANIFEST_BYTES = 64 << 20
# PyYAML builds every node in Python: ~5 us a scalar, 30 times JSON's cost, so a YAML
# manifest is held to what reads in a few seconds (~45,000 tensors); bigger ones are JSON.
MAX_YAML_MANIFEST_BYTES = 1 << 20
MAX_RANK = 64
# As many tensors as an index may name (sharded.MAX_INDEX_TENSORS): a manifest is a model's
# names, and a million of them is a few times the largest checkpoints known.
MAX_MANIFEST_TENSORS = 1_000_000
DEFAULT_METADATA = {"format": "pt"}


def is_manifest(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def default_output(path: Path) -> Path:
    """``model.shapes.json`` -> the folder ``model.init`` beside it."""
    stem = next(path.name[: -len(s)] for s in SUFFIXES if path.name.endswith(s))
    return path.with_name(f"{stem or 'model'}.init")


def _load(path: Path) -> Any:
    if path.name.endswith(".json"):
        return load_json(read_text(path, "manifest", MAX_MANIFEST_BYTES), path)
    return _load_yaml(path, read_text(path, "YAML manifest", MAX_YAML_MANIFEST_BYTES))


def _load_yaml(path: Path, text: str) -> Any:
    """YAML without aliases (a manifest never needs one, and they can expand without bound)
    and without a key given twice (JSON manifests refuse that too)."""
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for event in yaml.parse(text, Loader=loader_class):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise ModelError(f"{path}:{mark.line + 1}:{mark.column + 1}: a manifest cannot use YAML aliases")
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _refuse_repeated_keys(path, node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ModelError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ModelError(f"{path}: invalid YAML: {exc}") from None


def _refuse_repeated_keys(path: Path, root: yaml.Node) -> None:
    """A mapping that gives a key twice is an error at the second one (YAML would keep the last)."""
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, keys = stack.pop()
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                label = key.value if isinstance(key, yaml.ScalarNode) else "?"
                if isinstance(key, yaml.ScalarNode):
                    seen = first.setdefault((key.tag, key.value), key)
                    if seen is not key:
                        mark = key.start_mark
                        raise ModelError(
                            f"{path}:{mark.line + 1}:{mark.column + 1}: {format_path(keys + (label,))}: "
                            f"given twice (first at line {seen.start_mark.line + 1})"
                        )
                stack.append((value, keys + (label,)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, keys + (index,)) for index, item in enumerate(node.value))


def _entry_error(path: Path, keys: tuple[Any, ...], message: str) -> ModelError:
    return ModelError(f"{path}: {format_path(keys)}: {message}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


def parse_manifest(path: Path, data: Any) -> tuple[list[TensorInfo], dict[str, str], dict[str, str]]:
    """The tensors, metadata and tied names (name -> the tensor it is) of a loaded
    manifest; ModelError at the first bad entry."""
    if not isinstance(data, dict):
        raise ModelError(f"{path}: a manifest is a mapping with `tensors`, not {_kind(data)}")
    unknown = [key for key in data if key not in ("tensors", "metadata")]
    if unknown:
        raise _entry_error(path, (unknown[0],), "unknown key (a manifest has `tensors` and `metadata`)")
    tensors = data.get("tensors")
    if not isinstance(tensors, dict):
        raise ModelError(f"{path}: tensors: " + ("missing" if tensors is None else f"expected a mapping, got {_kind(tensors)}"))
    if len(tensors) > MAX_MANIFEST_TENSORS:
        raise ModelError(f"{path}: names {len(tensors)} tensors, more than {MAX_MANIFEST_TENSORS}, the limit")
    infos = {}
    aliases: dict[str, str] = {}
    for name, entry in tensors.items():
        if isinstance(entry, dict) and "same_as" in entry:
            aliases[name] = entry["same_as"]
        else:
            infos[name] = _tensor(path, name, entry)
    for name in aliases:
        _alias(path, name, tensors[name], infos)
    metadata = data.get("metadata", DEFAULT_METADATA)
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _entry_error(path, ("metadata",), "expected a mapping of strings to strings")
    return list(infos.values()), dict(metadata), aliases


def _check_name(path: Path, name: Any) -> None:
    where = ("tensors", str(name))
    if not isinstance(name, str) or not name:
        raise _entry_error(path, where, "a tensor name must be a non-empty string")
    if not is_unicode(name):
        raise _entry_error(path, ("tensors", name.encode("utf-8", "backslashreplace").decode()), "a tensor name must be valid Unicode text (this one holds a lone surrogate)")


def _alias(path: Path, name: Any, entry: dict, infos: Mapping[str, TensorInfo]) -> None:
    """Check ``name: {same_as: TARGET}``: a tied parameter, held once, under ``TARGET``."""
    where = ("tensors", str(name))
    _check_name(path, name)
    unknown = [key for key in entry if key not in ("same_as", "shape", "dtype")]
    if unknown:
        raise _entry_error(path, where + (unknown[0],), "unknown key (a tied tensor has `same_as`, and may repeat `shape` and `dtype`)")
    target = entry["same_as"]
    if not isinstance(target, str) or target not in infos:
        shown = json.dumps(target) if isinstance(target, (str, int, float, type(None))) and len(str(target)) < 80 else _kind(target)
        raise _entry_error(path, where + ("same_as",), f"expected the name of another tensor of the manifest (not a tied one), got {shown}")
    info = infos[target]
    if "shape" in entry and entry["shape"] != list(info.shape):
        raise _entry_error(path, where + ("shape",), f"{json.dumps(entry['shape'])[:80]} differs from the shape of {target!r}, {list(info.shape)}")
    if "dtype" in entry and entry["dtype"] != info.dtype.name:
        raise _entry_error(path, where + ("dtype",), f"{str(entry['dtype'])[:40]!r} differs from the dtype of {target!r}, {info.dtype.name}")


@functools.lru_cache(maxsize=64)
def _dtype(text: str) -> np.dtype | None:
    """The float dtype a manifest names, or None (once per spelling: a manifest repeats one)."""
    try:
        return float_dtype(text)
    except ValueError:
        return None


def _tensor(path: Path, name: Any, entry: Any) -> TensorInfo:
    where = ("tensors", str(name))
    _check_name(path, name)
    if not isinstance(entry, dict):
        raise _entry_error(path, where, f"expected a mapping with `shape` and `dtype`, got {_kind(entry)}")
    unknown = [key for key in entry if key not in ("shape", "dtype")]
    if unknown:
        raise _entry_error(path, where + (unknown[0],), "unknown key (a tensor has `shape` and `dtype`)")
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_RANK
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape)
    ):
        shown = json.dumps(shape) if isinstance(shape, (list, int, str, type(None))) and len(str(shape)) < 80 else _kind(shape)
        raise _entry_error(path, where + ("shape",), f"expected a list of at most {MAX_RANK} non-negative integers, got {shown}")
    dtype_name = entry.get("dtype", "float32")
    dtype = _dtype(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        choices = ", ".join(sorted(FLOAT_DTYPES))
        raise _entry_error(
            path, where + ("dtype",), f"expected one of {choices} (vsconf creates float tensors only), got {dtype_name!r}"
        )
    if math.prod(shape) * dtype.itemsize >= 2**63:
        raise _entry_error(path, where + ("shape",), f"{shape} of {dtype.name} needs more than 2**63 bytes")
    return TensorInfo(name, tuple(shape), dtype)


class ShapesManifest(NamedTensors):
    """A shapes manifest as a model: tensors with no values yet."""

    target = "state_dict"
    recorded_seed: int | None = None
    recorded_seed_problem: str | None = None
    recorded_stream: int | None = None
    has_data = False

    def __init__(self, path: Path):
        self.path = path
        self._infos, self.metadata, self.aliases = parse_manifest(path, _load(path))

    def read(self, name: str) -> np.ndarray:
        raise ModelError(f"{self.path}: a shapes manifest holds no values (tensor {name!r}); verify the checkpoint made from it")

    def files(self) -> list[Path]:
        return [self.path]

    def stale_data_files(self, output: Path) -> tuple[list[Path], list[str]]:
        return [], []

    def close(self) -> None:
        pass

    def write(
        self, output: Path, plan: Plan, writing, metadata: Mapping[str, str], progress, transaction: Transaction
    ) -> None:
        """An ``.npz`` output: members in name order, each streamed chunk by chunk."""
        from vsconf.formats.npz import write_state_npz

        if output.suffix != ".npz":
            raise ModelError(f"{output}: a manifest's checkpoint is a folder, a .safetensors or an .npz file")
        require_filled(plan, self.path)
        write_state_npz(self, output, plan, writing.values, transaction, progress)


def require_filled(plan: Plan, source: Path) -> None:
    """A manifest's checkpoint holds only values a rule made: list every tensor none fills."""
    empty = [entry for entry in plan if not entry.changes]
    if not empty:
        return
    shown = ", ".join(f"{e.name!r} ({'kept by ' + e.rule if e.action == 'keep' else e.action})" for e in empty[:5])
    more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
    raise MatchError(
        f"{source}: a manifest holds no values, so every tensor needs a rule that fills it; "
        f"{len(empty)} would be left uninitialized: {shown}{more} (write `init: zeros` where zeros are meant)"
    )
