"""Hostile inputs to ``vsconf stats`` and ``vsconf audit`` (#23): missing and corrupt models,
a bad ``--alpha``, and ``--report`` aimed at what is not a report folder (a file, a folder
holding other files, an earlier report without ``--force``) -- which is never touched.  A
model with non-finite values is a verdict, not an error: exit 1 with the tensor named.
"""

from __future__ import annotations

import numpy as np

from bad_inputs.common import npz_bytes
from bad_inputs.harness import Case

SPEC = "vsconf: 1\nseed: 7\nlayout: torch\nrules:\n  - match: fc.weight\n    init: {normal: {std: 0.02}}\n  - match: fc.bias\n    init: zeros\n"
MODEL = {"m.npz": npz_bytes(), "spec.yaml": SPEC}
USAGE_AUDIT = (
    "usage: vsconf audit [-h] [--alpha ALPHA] [--seed SEED]\n"
    "                    [--untie [all|conflicts]] [--json] [--report DIR]\n"
    "                    [--force] [--var NAME=VALUE] [--vars FILE]\n"
    "                    MODEL SPEC\n"
)
REPORT_PAGE = '<!DOCTYPE html>\n<html><head><meta name="generator" content="vsconf audit"></head></html>\n'

CASES: list[Case] = [
    Case("stats-model-missing", ("stats", "missing.npz"), 1, "vsconf: error: missing.npz: no such file\n", stdout=""),
    Case("stats-second-model-missing", ("stats", "m.npz", "missing.npz"), 1, "vsconf: error: missing.npz: no such file\n", files=MODEL, stdout=""),
    Case(
        "stats-corrupt-npz", ("stats", "bad.npz"), 1,
        "vsconf: error: bad.npz: cannot read as .npz: File is not a zip file\n", files={"bad.npz": b"PK\x03\x04 not really"}, stdout="",
    ),
    Case(
        "stats-no-model", ("stats",), 2,
        "usage: vsconf stats [-h] [--json] MODEL [MODEL2]\nvsconf stats: error: the following arguments are required: MODEL\n", stdout="",
    ),
    Case(
        "audit-alpha-zero", ("audit", "m.npz", "spec.yaml", "--alpha", "0"), 2,
        USAGE_AUDIT + "vsconf audit: error: argument --alpha: expected a number between 0 and 1, got '0'\n", files=MODEL, stdout="",
    ),
    Case(
        "audit-alpha-not-a-number", ("audit", "m.npz", "spec.yaml", "--alpha", "nan"), 2,
        USAGE_AUDIT + "vsconf audit: error: argument --alpha: expected a number between 0 and 1, got 'nan'\n", files=MODEL, stdout="",
    ),
    Case(
        "audit-spec-invalid", ("audit", "m.npz", "spec.yaml"), 1,
        "spec.yaml:1:1: missing required key 'seed'\nspec.yaml:2:8: rules: expected a list, got an integer (3)\n"
        "vsconf: error: spec.yaml: 2 problems\n", files={"m.npz": npz_bytes(), "spec.yaml": "vsconf: 1\nrules: 3\n"}, stdout="",
    ),
    Case(
        "audit-report-is-a-file", ("audit", "m.npz", "spec.yaml", "--report", "page", "--force"), 1,
        "vsconf: error: page: cannot write the report: it is not a folder\n", files={**MODEL, "page": "mine"}, stdout="",
    ),
    Case(
        "audit-report-under-a-file", ("audit", "m.npz", "spec.yaml", "--report", "page/out"), 1,
        "vsconf: error: page/out: cannot write the report: page is not a folder\n", files={**MODEL, "page": "mine"}, stdout="",
    ),
    Case(
        "audit-report-folder-of-other-files", ("audit", "m.npz", "spec.yaml", "--report", "docs", "--force"), 1,
        "vsconf: error: docs: holds files that are not a vsconf report; choose another folder\n",
        files={**MODEL, "docs/index.html": "<html>my own page</html>"}, stdout="",
    ),
    Case(
        "audit-report-exists-without-force", ("audit", "m.npz", "spec.yaml", "--report", "out"), 1,
        "vsconf: error: out: holds a report; use --force to replace it\n", files={**MODEL, "out/index.html": REPORT_PAGE}, stdout="",
    ),
    Case(
        "audit-nonfinite-values", ("audit", "nan.npz", "spec.yaml"), 1,
        "vsconf: error: nan.npz: 1 tensor not initialised as the spec says\n",
        files={"nan.npz": npz_bytes({"fc.weight": np.full((3, 4), np.nan, np.float32), "fc.bias": np.zeros(3, np.float32)}), "spec.yaml": SPEC},
    ),
]
