"""What a run records in the model it writes, and reading it back.

``apply`` writes four strings wherever a format has room for metadata (an ONNX model's
``metadata_props``, a safetensors header's ``__metadata__``, every shard's): the vsconf
version, the seed, the spec's SHA-256 and the stream version.  ``verify`` reads the seed
and the stream version back, so that a model checks against its spec with nothing else;
a lock, when given, has the last word on both (:func:`verified_stream`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsconf import streams
from vsconf.errors import ModelError, Problem
from vsconf.spec import Spec


def metadata(spec: Spec) -> dict[str, str]:
    """What an output made by ``spec`` records about it."""
    from vsconf._version import __version__

    return {
        "vsconf.version": __version__,
        "vsconf.seed": str(spec.seed),
        "vsconf.spec_sha256": spec.sha256,
        "vsconf.stream": str(spec.stream or streams.DEFAULT_STREAM),
    }


def recorded_stream(metadata: Mapping[str, str]) -> int | None:
    """The stream version an earlier ``apply`` recorded in a model's metadata.

    ``vsconf.stream`` when it is a number (a version this vsconf may not know is still
    returned, for :func:`verified_stream` to explain); 1 when the metadata is vsconf's but
    names no version (vsconf 0.1 recorded none); None when vsconf did not write it.
    """
    if "vsconf.stream" in metadata:
        value = metadata["vsconf.stream"]
        return int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else None
    return 1 if "vsconf.version" in metadata else None


def seed_from_text(text: str) -> int | None:
    """A seed written in metadata (``vsconf.seed``): ASCII decimal digits for 0 <= seed <
    2**63, else None -- never ``int()`` on thousands of digits."""
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 and int(digits) < streams.MAX_SEED else None


def verified_stream(
    spec: Spec, lock: Mapping[str, Any] | None, recorded: int | None, lock_path: Path | None, source: str
) -> tuple[int | None, Problem | None]:
    """The stream version to regenerate with (None: the spec's), and a problem when the records disagree.

    The version is, in order: the spec's own ``stream``, the lock's (a lock without one
    was made by vsconf 0.1: stream 1), the one the model recorded, the default.
    """
    from_lock = None if lock is None else lock.get("stream", 1)
    if spec.stream is not None:
        if from_lock is not None and from_lock != spec.stream:
            message = f"the lock was made with stream {from_lock}, the spec pins stream {spec.stream}"
            return None, Problem(str(lock_path), 0, 0, "", message)
        return None, None
    version = from_lock if from_lock is not None else recorded
    if version is None:
        return None, None
    if version not in streams.STREAMS:
        known = ", ".join(map(str, streams.STREAMS))
        where = f"{lock_path}: the lock" if from_lock is not None else f"{source}: the model's metadata"
        raise ModelError(f"{where} says the weights were drawn by stream {version}; this vsconf draws streams {known}")
    return version, None
