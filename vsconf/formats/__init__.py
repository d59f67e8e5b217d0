"""Every model format vsconf reads and writes, and the one dispatch that picks one.

:func:`open_model` opens any model -- an ONNX file, an ``.npz`` or ``.safetensors`` file, a
sharded safetensors checkpoint (its folder or index), a shapes manifest, a dict of arrays --
as an adapter (:mod:`vsconf.formats.protocol`); :func:`output_target` says what kind of
output ``apply`` writes for a model and an ``-o``.  Importing this package loads no format:
each is imported when a model of its kind is opened (ONNX, NumPy and the rest stay out of a
command that needs none).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from vsconf.errors import ModelError
from vsconf.files import parent_folder, regular_file

if TYPE_CHECKING:
    from vsconf.formats.protocol import Adapter


@contextlib.contextmanager
def open_model(
    model: Any, *, materialize: bool = False, untie: bool | str = False, spec_untie: str | None = None
) -> Iterator[Adapter]:
    """The adapter for ``model``: a ``.onnx``/``.npz``/``.safetensors`` path, a sharded
    checkpoint's folder or index, a shapes manifest, or a dict of arrays.

    ``untie`` (the caller's) wins over ``spec_untie`` (the spec's ``untie:``), which only
    applies to ONNX models: a state dict has no shared tensors.
    """
    from vsconf import arguments

    materialize = arguments.flag(materialize, "materialize")
    untie = arguments.untie(untie)
    if isinstance(model, Mapping):
        if materialize or untie:
            raise ValueError("Arguments `materialize` and `untie` apply to ONNX models only")
        from vsconf.formats.statedict import DictStateDict

        adapter = DictStateDict(model)
    else:
        path = model_path(model)
        if path.suffix == ".onnx":
            from vsconf.formats.onnx import OnnxModel

            adapter = OnnxModel(path, materialize=materialize, untie=untie or spec_untie or False)
        else:
            if materialize or untie:
                raise ModelError(
                    f"{path}: materialize and untie apply to ONNX models only",
                    cli_message=f"{path}: --materialize and --untie apply to ONNX models only",
                )
            adapter = _open_checkpoint(path) if is_checkpoint_model(path) else _open_file(path)
    try:
        yield adapter
    finally:
        adapter.close()


def model_path(model: Any) -> Path:
    """A model file, or a shapes manifest or sharded checkpoint folder (checked on opening)."""
    from vsconf import arguments

    path = arguments.path(model, "model")
    return path if is_checkpoint_model(path) else regular_file(path, "model")


def is_checkpoint_model(path: Path) -> bool:
    """A manifest, or a sharded checkpoint's index or folder (or a folder of one model.safetensors)."""
    from vsconf.formats import manifest, sharded

    return manifest.is_manifest(path) or path.name.endswith(sharded.INDEX_SUFFIX) or path.is_dir()


def _open_checkpoint(path: Path) -> Adapter:
    from vsconf.formats import manifest, sharded

    if not os.path.lexists(path):
        raise ModelError(f"{path}: no such file")
    if manifest.is_manifest(path):
        return manifest.ShapesManifest(path)
    return sharded.open_sharded(path)


def _open_file(path: Path) -> Adapter:
    if path.suffix == ".npz":
        from vsconf.formats.npz import NpzStateDict

        return NpzStateDict(path)
    if path.suffix == ".safetensors":
        from vsconf.formats.safetensors import SafetensorsStateDict

        return SafetensorsStateDict(path)
    raise ModelError(f"{path}: unknown model format {path.suffix!r}; expected .onnx, .npz or .safetensors")


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Target:
    """Where and how ``apply`` writes: ``kind`` ``model`` (the model's own format, by its
    adapter), ``npz`` or ``safetensors`` (a state dict in that format), ``folder`` (a
    sharded checkpoint named ``prefix``, its index named by ``-o`` when ``index_named``),
    or ``unknown`` (a suffix no format has: refused once the path's own checks have run)."""

    kind: str
    path: Path | None
    prefix: str = "model"
    index_named: bool = False


def folder_of(model: Path) -> Path:
    """The folder a sharded checkpoint lives in (its own path when given as a folder)."""
    return model if model.is_dir() else parent_folder(model)


def output_target(model: Path, output: str | os.PathLike | None, *, in_place: bool) -> Target:
    """What kind of output ``apply`` writes for ``model`` and ``output``."""
    from vsconf.formats import manifest, sharded

    if in_place and output is not None:
        raise ValueError("Give either `output` or `in_place=True`, not both")
    checkpoint = is_checkpoint_model(model)
    if not checkpoint and (output is None or not sharded.is_folder_output(output)):
        return _file_target(model, output)
    if model.suffix == ".onnx":
        raise ModelError(f"{output}: {model.name} is an ONNX model, written as .onnx, not as a sharded checkpoint")
    is_manifest = manifest.is_manifest(model)
    if in_place:
        if is_manifest:
            raise ModelError(
                f"{model}: a shapes manifest cannot be replaced by its checkpoint; pass output=",
                cli_message=f"{model}: a shapes manifest cannot be replaced by its checkpoint; use -o",
            )
        if not model.is_dir() and not model.name.endswith(sharded.INDEX_SUFFIX):
            raise ModelError(f"{model}: in-place applies to sharded checkpoints in a folder")
        index = sharded.index_file(model)
        prefix = index.name[: -len(sharded.INDEX_SUFFIX)] if index is not None else "model"
        return Target("folder", folder_of(model), prefix)
    if output is None:
        if is_manifest:
            return Target("folder", manifest.default_output(model))
        folder = folder_of(model)
        folder = folder if folder.name else folder.resolve()
        return Target("folder", folder.with_name(folder.name + ".init"))
    if sharded.is_folder_output(output):
        folder, prefix = sharded.folder_and_prefix(output)
        return Target("folder", folder, prefix, index_named=Path(os.fspath(output)).name.endswith(sharded.INDEX_SUFFIX))
    target = Path(os.fspath(output))
    if target.suffix == ".safetensors":
        return Target("safetensors", target)
    if target.suffix == ".npz":
        return Target("npz", target)
    raise ModelError(f"{target}: the output of {model.name} is a folder, a .safetensors or an .npz file")


def _file_target(model: Path, output: str | os.PathLike | None) -> Target:
    """A file output of a model file: the model's own format, or the other state-dict format."""
    if output is None or Path(os.fspath(output)).suffix == model.suffix:
        return Target("model", None)
    target = Path(os.fspath(output))
    if model.suffix != ".onnx" and target.suffix in (".npz", ".safetensors"):
        return Target(target.suffix[1:], target)
    return Target("unknown", target)


def refuse_format(model: Path, target: Path) -> None:
    """The error of an ``unknown`` target."""
    expected = "an .onnx file" if model.suffix == ".onnx" else "an .npz or a .safetensors file, or a folder"
    raise ModelError(f"{target}: the output of {model.name} is {expected}")
