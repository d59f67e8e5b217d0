"""The audit's power: the smallest tensor at which each perturbation is caught (#23).

For each perturbation of ``tests/audit_cases.py`` and each size (16, 32, ... elements), a
one-tensor model is audited at alpha 0.01 for ``--seeds`` seeds; a size *catches* the
perturbation when at least 90% of the seeds fail it.  The table goes to stdout and, with
``--write``, between the markers of docs/audit.md.  ``--screenshot`` also writes the example
report of docs/audit.md (a transformers GPT-2 after one optimizer step, with one weight
drawn by HF's Flax-style ``lecun_normal_``) and its screenshot, docs/audit-report.png, taken
by headless Chromium.

    python benchmarks/audit_power.py --write --screenshot
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import vsconf  # noqa: E402
from audit_cases import PERTURBATIONS  # noqa: E402

HEAD = "vsconf: 1\nseed: 1\nlayout: torch\nrules:\n"
START, END = "<!-- power table: benchmarks/audit_power.py -->", "<!-- end of the power table -->"


def caught(label: str, n: int, seeds: int) -> float:
    build, _, _ = PERTURBATIONS[label]
    hits = 0
    for seed in range(seeds):
        rule, values = build(n, np.random.default_rng(1000 + seed))
        hits += not vsconf.audit({"w": values}, vsconf.parse_spec(HEAD + rule)).ok
    return hits / seeds


def table(seeds: int) -> str:
    lines = ["| perturbation | smallest size caught (elements) | power there |", "|---|---|---|"]
    for label in PERTURBATIONS:
        n, found = 16, None
        while n <= 1 << 20:
            power = caught(label, n, seeds)
            if power >= 0.9:
                found = (n, power)
                break
            n *= 2
        build, _, _ = PERTURBATIONS[label]
        size = None if found is None else build(found[0], np.random.default_rng(0))[1].size
        cell = "not caught up to 2^20" if found is None else f"{size:,}"
        lines.append(f"| {label} | {cell} | {'-' if found is None else f'{found[1]:.0%}'} |")
    return "\n".join(lines)


def example_report(folder: Path) -> Path:
    """A GPT-2 after one Adam step, with one weight re-drawn by HF's lecun_normal_."""
    import torch
    import transformers
    from transformers.initialization import lecun_normal_

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=300, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    optimizer = torch.optim.Adam(model.transformer.h[1].parameters(), lr=5e-3)
    tokens = torch.randint(0, 300, (4, 32))
    model(tokens, labels=tokens).loss.backward()
    optimizer.step()
    with torch.no_grad():
        lecun_normal_(model.transformer.h[0].mlp.c_fc.weight)
    seen, state = set(), {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            state[name] = tensor.detach().numpy().copy()
    os.chdir(ROOT)  # the page names the recipe as a user would type it
    result = vsconf.audit(state, "configs/recipes/hf_gpt2.yaml", vars=config.to_dict(), report=folder, force=True)
    assert result.report is not None
    return result.report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="put the table into docs/audit.md")
    parser.add_argument("--screenshot", action="store_true", help="write docs/audit-report.png (needs chromium)")
    args = parser.parse_args()
    started = time.perf_counter()
    text = table(args.seeds)
    print(text)
    print(f"({args.seeds} seeds per size, alpha 0.01; {time.perf_counter() - started:.0f} s)")
    if args.write:
        doc = ROOT / "docs" / "audit.md"
        page = doc.read_text(encoding="utf-8")
        head, rest = page.split(START, 1)
        _, tail = rest.split(END, 1)
        doc.write_text(f"{head}{START}\n{text}\n\n({args.seeds} seeds per size, alpha 0.01.)\n{END}{tail}", encoding="utf-8")
    if args.screenshot:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            sys.exit("no chromium to take the screenshot with (Debian: apt-get install chromium)")
        with tempfile.TemporaryDirectory() as temp:
            page = example_report(Path(temp) / "report")
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1500",
                 f"--screenshot={ROOT / 'docs' / 'audit-report.png'}", page.as_uri()],
                check=True, capture_output=True, timeout=120,
            )
        print("wrote docs/audit-report.png")


if __name__ == "__main__":
    main()
