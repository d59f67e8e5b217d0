"""A process that waits at a barrier, then runs one ``vsconf.apply`` (the race tests' worker).

Kept apart from the test modules so that a worker process imports vsconf alone.
"""

from __future__ import annotations

import vsconf
from vsconf.errors import ModelError


def race(barrier, model: str, spec: str, output: str, seed: int, force: bool, results) -> None:
    barrier.wait()
    try:
        vsconf.apply(model, spec, output, seed=seed, force=force, jobs=1)
        results.put((seed, "ok"))
    except ModelError as exc:
        results.put((seed, str(exc)))
