"""What one step of matching's budget costs here: the measurements behind the constants of
:mod:`vsconf.saferegex` (``MATCH_STEPS``, ``_MISS_STEPS``, ``_CHARACTERS_PER_STEP``) and
:mod:`vsconf.matching` (the glob and set-operation weights).

    python benchmarks/matchcost.py

Each line runs one kind of matching work with an unlimited budget and prints the steps it
was charged, the seconds it took and the nanoseconds per step.  The budget should make
about a second of the slowest kind: ``MATCH_STEPS`` x the largest ns/step ~ 1 s.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's vsconf

import numpy as np

from vsconf.matching import TensorInfo, match_tensors
from vsconf.saferegex import MATCH_STEPS, Budget, compile_pattern
from vsconf.spec import parse_spec

NAMES = [f"model.layers.{i % 80}.mlp.experts.{i % 256}.up_proj.weight" for i in range(200_000)]


def _regex(pattern: str, names: list[str]) -> tuple[int, float]:
    matcher = compile_pattern(pattern)
    budget = Budget(10**15)
    started = time.perf_counter()
    matcher.select(names, budget)
    return budget.steps - budget.left, time.perf_counter() - started


def _rules(rules: str, names: list[str], role: str = "weight") -> tuple[int, float]:
    """Steps and seconds of matching with these rules, beyond those of one rule naming one
    tensor (the fixed cost of indexing the tensors, which the budget does not count)."""
    tensors = [TensorInfo(n, (2,), np.dtype(np.float32), role=role) for n in names]
    costs = []
    for text in (f"  - match: {names[0]}\n    init: zeros\n", rules):
        spec = parse_spec(f"vsconf: 1\nseed: 1\nrules:\n{text}", source="spec.yaml")
        budget = Budget(10**15)
        started = time.perf_counter()
        match_tensors(spec, tensors, budget)
        costs.append((budget.steps - budget.left, time.perf_counter() - started))
    return costs[1][0] - costs[0][0], costs[1][1] - costs[0][1]


def main() -> None:
    random.seed(1)
    ab = ["".join(random.choice("ab") for _ in range(2000)) for _ in range(5)]
    runs = {
        "regex, cached: .*\\.weight over 200k names": lambda: _regex(r".*\.weight", NAMES),
        "regex, cached: (.*a){20} over 200k names": lambda: _regex(r"(.*a){20}", NAMES),
        "regex, misses: [ab]*a[ab]{16} over 10k a/b": lambda: _regex(r"[ab]*a[ab]{16}", ab),
        "regex, misses: [ab]*a[ab]{1000} over 10k a/b": lambda: _regex(r"[ab]*a[ab]{1000}", ab),
        "regex, misses: [ab]*a[ab]{2400} over 10k a/b": lambda: _regex(r"[ab]*a[ab]{2400}", ab),
        "glob: *.weight over 200k names": lambda: _rules("  - match: '*.weight'\n    init: zeros\n", NAMES),
        "glob: *a*a*a*a*b over 200k names": lambda: _rules("  - match: '*a*a*a*a*b'\n    init: zeros\n    optional: true\n", NAMES),
        "rules: 40 role rules over 200k tensors": lambda: _rules(
            "".join("  - role: [weight, bias]\n    init: zeros\n    optional: true\n" for _ in range(40)), NAMES
        ),
    }
    print(f"{'work':48} {'steps':>12} {'seconds':>8} {'ns/step':>8}")
    worst = 0.0
    for label, run in runs.items():
        steps, seconds = run()
        worst = max(worst, seconds / steps * 1e9)
        print(f"{label:48} {steps:12d} {seconds:8.2f} {seconds / steps * 1e9:8.0f}")
    print(f"MATCH_STEPS = {MATCH_STEPS}: {MATCH_STEPS * worst / 1e9:.2f} s at the slowest kind")


if __name__ == "__main__":
    main()
