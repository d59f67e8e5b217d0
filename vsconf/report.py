"""``vsconf audit --report DIR``: an HTML page with a histogram per tensor.

The page (``DIR/index.html``) opens from disk, with no server and no network: its style is
inline and its pictures are PNG files beside it (``DIR/img/``), made with matplotlib (the
optional extra ``vsconf[plot]``).  At the top, a table of every tensor checked, failing
ones first; below, per tensor, its histogram with the density the spec assigns it drawn
over it (a KS-tested tensor), its verdict, its reason and the alternatives that fit.

The folder appears whole or not at all: the page is built in a temporary sibling and
renamed into place.  An existing folder is replaced only if it holds a vsconf report (and
``force``); a folder holding anything else is never touched.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vsconf.errors import ModelError
from vsconf.files import describe_os_error

GENERATOR = '<meta name="generator" content="vsconf audit">'
_BINS = 60
_PICTURE_VALUES = 200_000  # values a histogram reads at most (evenly spaced through the tensor)


def _matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ModelError(
            "the report's pictures need matplotlib, which is not installed: pip install 'vsconf[plot]'",
        ) from None
    return Figure, FigureCanvasAgg


def _is_report(folder: Path) -> bool:
    """Whether ``folder`` holds a vsconf report and nothing else."""
    try:
        names = set(os.listdir(folder))
        page = (folder / "index.html").read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError:
        return False
    return names <= {"index.html", "img"} and GENERATOR in page


class Report:
    """A report being written: :meth:`picture` per tensor while its values are at hand,
    then :meth:`finish` with the verdicts (or :meth:`abort`)."""

    def __init__(self, folder: str | os.PathLike[str], *, force: bool = False):
        self.folder = Path(folder)
        self.figure, self.canvas = _matplotlib()
        if os.path.lexists(self.folder):
            if not os.path.isdir(self.folder) or os.path.islink(self.folder):
                raise ModelError(f"{self.folder}: cannot write the report: it is not a folder")
            if os.listdir(self.folder):
                if not _is_report(self.folder):
                    raise ModelError(f"{self.folder}: holds files that are not a vsconf report; choose another folder")
                if not force:
                    raise ModelError(
                        f"{self.folder}: holds a report; pass force=True to replace it",
                        cli_message=f"{self.folder}: holds a report; use --force to replace it",
                    )
        parent = self.folder.parent if str(self.folder.parent) else Path(".")
        if not os.path.isdir(parent):
            raise ModelError(f"{self.folder}: cannot write the report: {parent} is not a folder")
        try:
            self._temp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".vsconf-tmp", dir=parent))
        except OSError as exc:
            raise ModelError(f"{self.folder}: cannot write the report: {describe_os_error(exc)}") from None
        (self._temp / "img").mkdir()
        self.pictures: dict[int, str] = {}

    def picture(self, index: int, verdict: Any, values: np.ndarray) -> None:
        """The histogram of tensor ``index``'s values, with its expected density."""
        flat = np.asarray(values).reshape(-1)
        if flat.dtype.kind != "f" and flat.dtype.name != "bfloat16":
            return
        if flat.size > _PICTURE_VALUES:
            flat = flat[:: math.ceil(flat.size / _PICTURE_VALUES)]
        x = flat.astype(np.float64)
        x = x[np.isfinite(x)]
        figure = self.figure(figsize=(3.4, 2.1), dpi=80)
        self.canvas(figure)
        axes = figure.add_subplot()
        if x.size:
            low, high = float(x.min()), float(x.max())
            null = getattr(verdict, "null", None)
            if null is not None:
                support = null.support
                low = min(low, support[0] if math.isfinite(support[0]) else null.mean - 4 * null.std)
                high = max(high, support[1] if math.isfinite(support[1]) else null.mean + 4 * null.std)
            if high <= low:
                low, high = low - 0.5, high + 0.5
            axes.hist(x, bins=_BINS, range=(low, high), density=True, color="#8aa9c9", edgecolor="none")
            if null is not None:
                grid = np.linspace(low, high, 400)
                axes.plot(grid, _density(null, grid), color="#b03a2e", linewidth=1.2)
        axes.tick_params(labelsize=7)
        axes.set_yticks([])
        figure.tight_layout(pad=0.3)
        name = f"{index:05d}.png"
        figure.savefig(self._temp / "img" / name)
        self.pictures[index] = name

    def finish(self, audit: Any, title: str) -> Path:
        """Write the page and put the folder in place; returns the page's path."""
        page = self._temp / "index.html"
        page.write_text(_page(audit, title, self.pictures), encoding="utf-8")
        try:
            if os.path.isdir(self.folder):
                old = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".vsconf-old", dir=self._temp.parent))
                os.rename(self.folder, old / "report")
                os.rename(self._temp, self.folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(self._temp, self.folder)
        except OSError as exc:
            self.abort()
            raise ModelError(f"{self.folder}: cannot put the report in place: {describe_os_error(exc)}") from None
        return self.folder / "index.html"

    def abort(self) -> None:
        shutil.rmtree(self._temp, ignore_errors=True)


def _density(null: Any, x: np.ndarray) -> np.ndarray:
    if null.kind == "uniform":
        low, high = null.support
        return np.where((x >= low) & (x <= high), 1.0 / (high - low), 0.0)
    z = (x - null.shift) / null.param
    pdf = np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * null.param)
    if null.kind == "untruncated_normal":
        return pdf
    lo, hi = null.bounds
    mass = 0.5 * (math.erf(hi / math.sqrt(2)) - math.erf(lo / math.sqrt(2)))
    return np.where((z >= lo) & (z <= hi), pdf / mass, 0.0)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin-bottom: 24px; }
td, th { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; vertical-align: top; }
.fail { color: #b03a2e; font-weight: 600; } .ok { color: #1e7b34; } .none { color: #777; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px; width: 290px; }
.card h3 { font-size: 13px; margin: 0 0 4px; word-break: break-all; }
.card p { margin: 2px 0; font-size: 12px; } .card img { width: 272px; }
"""


def _verdict_cell(ok: bool | None) -> str:
    return {True: '<span class="ok">ok</span>', False: '<span class="fail">FAIL</span>', None: '<span class="none">-</span>'}[ok]


def _page(audit: Any, title: str, pictures: dict[int, str]) -> str:
    e = html.escape
    verdicts = list(audit.verdicts)
    order = sorted(range(len(verdicts)), key=lambda i: (verdicts[i].ok is not False, verdicts[i].ok is None, i))
    checked = sum(1 for v in verdicts if v.ok is not None)
    rows = []
    for i in order:
        v = verdicts[i]
        why = v.reason + (f" ({'; '.join(v.alternatives)})" if v.alternatives else "")
        rows.append(
            f'<tr><td><a href="#t{i}">{e(v.name)}</a></td><td>{e(v.expected)}</td><td>{_verdict_cell(v.ok)}</td>'
            f"<td>{e(why) or '-'}</td></tr>"
        )
    cards = []
    for i in order:
        v = verdicts[i]
        if v.ok is None:
            continue
        image = f'<img src="img/{pictures[i]}" alt="histogram of {e(v.name)}">' if i in pictures else ""
        stats = v.stats
        numbers = "" if stats is None or stats.mean is None else (
            f"<p>mean {stats.mean:.4g}, std {stats.std:.4g}, min {stats.min:.4g}, max {stats.max:.4g}, zeros {stats.zeros:.3g}</p>"
        )
        test = f"<p>KS D {v.statistic:.3g}, p {v.p_value:.3g}, n {v.tested}{' (subsample)' if v.subsampled else ''}</p>" if v.test == "ks" else ""
        alternatives = "".join(f"<p>fits: {e(a)}</p>" for a in v.alternatives)
        cards.append(
            f'<div class="card" id="t{i}"><h3>{e(v.name)}</h3>{image}<p>{_verdict_cell(v.ok)} expected {e(v.expected)}</p>'
            f"{'<p>' + e(v.reason) + '</p>' if v.reason else ''}{alternatives}{test}{numbers}</div>"
        )
    summary = (
        f"{checked} tensors checked, {len(audit.failed)} inconsistent; KS tests held at family-wise alpha "
        f"{audit.alpha:g} ({audit.correction.capitalize()}). The red curve is the density the spec assigns."
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR}<title>{e(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{e(title)}</h1><p>{e(summary)}</p>"
        f"<table><tr><th>tensor</th><th>expected</th><th>verdict</th><th>why</th></tr>{''.join(rows)}</table>"
        f'<div class="cards">{"".join(cards)}</div></body></html>\n'
    )
