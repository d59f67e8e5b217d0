"""``vsconf audit --report DIR`` (#23): the page, its pictures, and the folder's safety.

The page is opened in headless Chromium where one is installed (its screenshot must show the
histograms' colour, so the pictures loaded from disk); everywhere, it is checked
structurally: every card's PNG exists and decodes, nothing is fetched from a network, a
crafted name is escaped, failing tensors come first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vsconf
from bad_inputs.harness import snapshot

matplotlib_image = pytest.importorskip("matplotlib.image")

SPEC = """\
vsconf: 1
seed: 3
layout: torch
rules:
  - match: '*.weight'
    init: {normal: {std: 0.02}}
  - match: '*.bias'
    init: zeros
  - match: 'u*'
    init: {uniform: {low: -0.1, high: 0.1}}
"""
CRAFTED = "evil<script>alert(1)</script>.weight"


def model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    good = vsconf.apply_state_dict(
        {"fc.weight": np.zeros((64, 32), np.float32), "fc.bias": np.zeros(64, np.float32), "u": np.zeros(500, np.float32)},
        vsconf.parse_spec(SPEC),
    )
    return {**good, CRAFTED: rng.normal(0, 0.05, (32, 32)).astype(np.float32), "fc2.bias": np.full(8, 0.5, np.float32)}


def test_the_page_lists_failures_first_and_every_picture_decodes(tmp_path):
    result = vsconf.audit(model(), vsconf.parse_spec(SPEC), report=tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert result.report == tmp_path / "report" / "index.html"
    assert {v.name for v in result.failed} == {CRAFTED, "fc2.bias"}
    rows = re.findall(r'<tr><td><a href="#t\d+">(.*?)</a>', page)
    assert rows[:2] == ["evil&lt;script&gt;alert(1)&lt;/script&gt;.weight", "fc2.bias"] and len(rows) == 5
    assert "<script>" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from a network
    images = re.findall(r'<img src="(img/\d{5}\.png)"', page)
    assert len(images) == 5
    for image in images:
        pixels = matplotlib_image.imread(tmp_path / "report" / image)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 200
    assert sorted(os.listdir(tmp_path)) == ["report"]  # no temporary folder left


def test_the_page_renders_in_a_headless_browser(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless browser installed: the page is checked structurally by the test above")
    vsconf.audit(model(), vsconf.parse_spec(SPEC), report=tmp_path / "report")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1200,1400", (tmp_path / "report" / "index.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    pixels = (matplotlib_image.imread(shot)[..., :3] * 255).round().astype(int)
    histogram_blue = np.all(np.abs(pixels - np.array([0x8A, 0xA9, 0xC9])) <= 3, axis=-1)
    assert histogram_blue.sum() > 2000  # the PNGs loaded from disk and were drawn


def test_a_folder_holding_anything_else_is_never_touched(tmp_path):
    spec = vsconf.parse_spec(SPEC)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "file").write_text("a file")
    before = snapshot(tmp_path)
    with pytest.raises(vsconf.ModelError, match="holds files that are not a vsconf report"):
        vsconf.audit(model(), spec, report=tmp_path / "mine", force=True)
    with pytest.raises(vsconf.ModelError, match="it is not a folder"):
        vsconf.audit(model(), spec, report=tmp_path / "file", force=True)
    with pytest.raises(vsconf.ModelError, match="is not a folder"):
        vsconf.audit(model(), spec, report=tmp_path / "file" / "report")
    assert snapshot(tmp_path) == before
    # an earlier report is replaced only with force, whole
    vsconf.audit(model(), spec, report=tmp_path / "report")
    first = snapshot(tmp_path / "report")
    with pytest.raises(vsconf.ModelError, match="holds a report; pass force=True"):
        vsconf.audit(model(), spec, report=tmp_path / "report")
    assert snapshot(tmp_path / "report") == first
    small = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: fc.bias\n    init: zeros\n")
    vsconf.audit({"fc.bias": np.zeros(3, np.float32)}, small, report=tmp_path / "report", force=True)
    assert sorted(os.listdir(tmp_path / "report" / "img")) == ["00000.png"]
    assert sorted(os.listdir(tmp_path)) == ["file", "mine", "report"]


def test_a_failed_audit_leaves_no_report_and_no_temporary(tmp_path):
    bad_spec = vsconf.parse_spec("vsconf: 1\nseed: 1\nrules:\n  - match: nothing\n    init: zeros\n")
    with pytest.raises(vsconf.MatchError):
        vsconf.audit(model(), bad_spec, report=tmp_path / "report")
    assert os.listdir(tmp_path) == []


def test_without_matplotlib_the_error_says_how_to_install_it(tmp_path):
    code = (
        "import sys, numpy as np, vsconf; sys.modules['matplotlib'] = None\n"
        "spec = vsconf.parse_spec('vsconf: 1\\nseed: 1\\nrules:\\n  - match: b\\n    init: zeros\\n')\n"
        f"vsconf.audit({{'b': np.zeros(2, np.float32)}}, spec, report={str(tmp_path / 'r')!r})\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'vsconf[plot]'" in run.stderr and not (tmp_path / "r").exists()
    assert os.listdir(tmp_path) == []


def test_the_cli_writes_the_report_and_says_where(tmp_path):
    np.savez(tmp_path / "m.npz", **{k: v for k, v in model().items() if k != CRAFTED})
    (tmp_path / "s.yaml").write_text(SPEC)
    run = subprocess.run(
        [sys.executable, "-m", "vsconf", "audit", "m.npz", "s.yaml", "--report", "out"], cwd=tmp_path, capture_output=True, text=True,
    )
    assert run.returncode == 1 and "wrote the report out/index.html" in run.stderr
    assert Path(tmp_path / "out" / "index.html").is_file()
