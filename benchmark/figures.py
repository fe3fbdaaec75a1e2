"""The paper's figures from the stored runs: PNG + PDF, Agg, fixed style.

    fig4_per_class_<setting>       per-class accuracy vs training-class size (log x), one series
                                   per method, Many / Medium / Few bands (Shap-Mix paper, Fig. 4)
    table3_top1_vs_imbalance       top-1 vs imbalance factor, one line per method, error bars =
                                   std over seeds (the Table 3 numbers as a plot)
    table1_gain_over_ce_<setting>  per-class accuracy gain over CE of Shap-Mix and Balanced
                                   Softmax, classes sorted by training size

Every figure draws a method in one colour and marker (its rank in the registry's ``order``)
and class size decreasing from left to right (head classes left); titles name what is shown,
the seeds a series averages are in its legend label.

Every value is the mean over the seeds found (per class for per-class plots). A figure whose
runs are all missing is skipped with a log line (and a stale copy removed), never a crash.
Files are written atomically (a temp name in the same folder, then ``os.replace``) with no
timestamps inside, so a rebuild from the same runs gives the same bytes.
"""
from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import _io
from .data.splits import FEW_THRESHOLD, MANY_THRESHOLD
from .report_tables import GROUP_SIZES

log = logging.getLogger(__name__)

CE_METHOD = "ce"
GAIN_METHODS = ("shap_mix", "balanced_softmax")
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.grid": True, "grid.alpha": 0.3,
         "legend.fontsize": 8, "legend.frameon": False, "pdf.fonttype": 42,
         "savefig.bbox": "tight"}
BANDS = (("Few", GROUP_SIZES["few"], "#d62728"),
         ("Medium", GROUP_SIZES["medium"], "#ff7f0e"),
         ("Many", GROUP_SIZES["many"], "#2ca02c"))
# band edges halfway between integer counts: a class of exactly 20 / 100 clips is Medium
EDGES = (FEW_THRESHOLD - 0.5, MANY_THRESHOLD + 0.5)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PALETTE = "tab20"  # 20 distinct colours; with 8 markers, 40 methods get distinct pairs

RunIds = dict[tuple[str, str], list[tuple[int, str]]]


def method_style(method: str) -> tuple[Any, str]:
    """(colour, marker) of a method, the same in every figure: its rank in the registry's
    ``order`` (a method outside the registry gets the last style)."""
    from matplotlib import colormaps

    from .method import METHODS

    ranked = sorted(METHODS, key=lambda n: (METHODS.get(n).order, n))
    i = ranked.index(method) if method in ranked else len(ranked)
    return colormaps[PALETTE](i % 20), MARKERS[i % len(MARKERS)]


def _row_style(suite: Any, row: str) -> tuple[Any, str]:
    methods = {c.spec.method for c in suite.cells if c.row == row}
    return method_style(methods.pop() if len(methods) == 1 else row)


def _row_of(suite: Any, method: str) -> str | None:
    """The suite's row of ``method`` with its default options (None: not in the suite).

    Default: no train override and no hyper-parameter but those the schedule's length sets
    (``Method.schedule_hparams``, e.g. Shap-Mix's warm-up on a 65-epoch schedule)."""
    from .suites import schedule_hparams

    return next((c.row for c in suite.cells if c.spec.method == method and not c.spec.train
                 and dict(c.spec.hparams) == schedule_hparams(method, c.spec.profile)), None)


def _head_left(ax: Any) -> None:
    """Class size decreasing left to right (head classes left) in every figure."""
    ax.invert_xaxis()


def _group_mean_handle() -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], color="0.3", ls="--", lw=1, label="group mean (Many / Medium / Few)")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _new_figure(size: tuple[float, float]) -> tuple[Figure, Any]:
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)  # Agg without pyplot: no global state, no display needed
    return fig, fig.add_subplot()


def _save(fig: Figure, stem: Path) -> list[Path]:
    out = []
    # the PDF backend's font subsetting (fontTools) logs every table it prunes at INFO
    quiet = logging.getLogger("fontTools")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
            path = stem.with_name(f"{stem.name}.{ext}")
            with _io.atomic_path(path, suffix=f".{ext}") as tmp:  # no timestamp: same bytes
                fig.savefig(tmp, format=ext, dpi=150, metadata=meta)
            out.append(path)
    finally:
        quiet.setLevel(level)
    return out


def _skip(stem: Path, reason: str) -> list[Path]:
    log.info("figure %s skipped: %s", stem.name, reason)
    for ext in ("png", "pdf"):  # a figure from older runs would contradict the tables
        stem.with_name(f"{stem.name}.{ext}").unlink(missing_ok=True)
    return []


def seed_mean_per_class(runs: list[tuple[int, str]], per_class: dict[str, Any]
                        ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(mean per-class accuracy in %, class counts, seeds used) over the runs found, or None."""
    found = [per_class[rid] for _, rid in runs if rid in per_class]
    found = [pc for pc in found if np.array_equal(pc.class_counts, found[0].class_counts)]
    if not found:
        return None
    with warnings.catch_warnings():  # a class without test clips stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        acc = np.nanmean(np.stack([pc.accuracy for pc in found]), axis=0)
    return 100.0 * acc, found[0].class_counts, len(found)


def _legend_below(ax: Any, n: int, extra: tuple[Any, ...] = ()) -> None:
    # below the axes: a legend inside would hide points wherever it is put
    handles, labels = ax.get_legend_handles_labels()
    handles += list(extra)
    labels += [h.get_label() for h in extra]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=min(n + len(extra), 3))


def _shade_bands(ax: Any, lo: float, hi: float, text_y: float) -> None:
    edges = (lo, *EDGES, hi)
    for (name, rule, color), a, b in zip(BANDS, edges[:-1], edges[1:]):
        a, b = max(a, lo), min(b, hi)
        if b <= a:
            continue
        ax.axvspan(a, b, color=color, alpha=0.08, lw=0)
        ax.text(math.sqrt(a * b) if a > 0 else b, text_y, f"{name} ({rule})", ha="center",
                va="top", fontsize=7, color=color)


def per_class_figure(suite: Any, col: str, ids: RunIds, per_class: dict[str, Any],
                     folder: Path) -> list[Path]:
    stem = folder / f"{suite.name}_per_class_{slug(col)}"
    series = [(row, seed_mean_per_class(ids.get((row, col), []), per_class)) for row in suite.rows]
    series = [(row, s) for row, s in series if s is not None]
    if not series:
        return _skip(stem, f"no finished run of {', '.join(suite.rows)} on {col}")
    counts = np.concatenate([s[1] for _, s in series])
    lo, hi = max(counts.min(), 1) / 1.3, counts.max() * 1.3
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure((6.4, 4.0))
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(-3, 110)
        _shade_bands(ax, lo, hi, 108)
        for row, (acc, cnt, n) in series:
            color, marker = _row_style(suite, row)  # one colour / marker per method everywhere
            keep = cnt > 0  # log axis; an LT split has no empty training class anyway
            ax.scatter(cnt[keep], acc[keep], s=14, marker=marker, color=color, alpha=0.75,
                       label=f"{row} ({n} seed{'s' if n != 1 else ''})")
            # the group means (the table's Many / Medium / Few) as dashed segments per band
            for a, b in zip((lo, *EDGES), (*EDGES, hi)):
                inside = keep & (cnt > a) & (cnt < b) & np.isfinite(acc)
                if inside.any():
                    ax.plot([a, b], [acc[inside].mean()] * 2, color=color, ls="--", lw=1)
        _head_left(ax)
        ax.set_xlabel("training clips per class (log scale)")
        ax.set_ylabel("per-class top-1 accuracy (%)")
        ax.set_title(f"Per-class accuracy vs class size ({col})")
        _legend_below(ax, len(series), (_group_mean_handle(),))
        return _save(fig, stem)


def imbalance_figure(suite: Any, ids: RunIds, by_id: pd.DataFrame, folder: Path) -> list[Path]:
    stem = folder / f"{suite.name}_top1_vs_imbalance"
    factor = {c.col: c.spec.imbalance for c in suite.cells if c.spec.imbalance is not None}
    lines = []
    for row in suite.rows:
        pts = []
        for col in suite.cols:
            vals = [100.0 * by_id.at[rid, "top1"] for _, rid in ids.get((row, col), [])
                    if rid in by_id.index]
            if vals and col in factor:
                pts.append((factor[col], float(np.mean(vals)),
                            float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0))
        if pts:
            lines.append((row, np.array(pts)))
    if not lines:
        return _skip(stem, f"no finished run of {suite.name}")
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure((5.2, 3.8))
        ax.set_xscale("log")
        bars = any((pts[:, 2] > 0).any() for _, pts in lines)
        for i, (row, pts) in enumerate(lines):
            # with error bars, a small sideways shift per method keeps them apart
            shift = math.exp(0.025 * (i - (len(lines) - 1) / 2)) if bars else 1.0
            color, marker = _row_style(suite, row)
            ax.errorbar(pts[:, 0] * shift, pts[:, 1], yerr=pts[:, 2] if bars else None,
                        color=color, marker=marker, capsize=3, ms=4, label=row)
        xs = sorted(set(factor.values()))
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("imbalance factor (log scale)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title("Top-1 accuracy vs imbalance factor"
                     + (" (mean ± std over seeds)" if bars else ""))
        _legend_below(ax, len(lines))
        return _save(fig, stem)


def gain_figure(suite: Any, col: str, ids: RunIds, per_class: dict[str, Any],
                folder: Path) -> list[Path]:
    stem = folder / f"{suite.name}_gain_over_ce_{slug(col)}"
    ce_row = _row_of(suite, CE_METHOD)
    ce = seed_mean_per_class(ids.get((ce_row, col), []), per_class) if ce_row else None
    if ce is None:
        return _skip(stem, f"no finished {CE_METHOD} run on {col}")
    ce_acc, counts, _ = ce
    series = []
    gain_rows = [r for r in map(lambda m: _row_of(suite, m), GAIN_METHODS) if r is not None]
    for row in gain_rows:
        s = seed_mean_per_class(ids.get((row, col), []), per_class)
        if s is not None and np.array_equal(s[1], counts):
            series.append((row, s[0] - ce_acc, s[2]))
        elif s is not None:
            log.warning("figure %s: %s ran on other class counts than %s; left out",
                        stem.name, row, ce_row)
    if not series:
        return _skip(stem, f"no finished {' / '.join(GAIN_METHODS)} run on {col}")
    order = np.argsort(-counts, kind="stable")  # head classes left, tail right
    x = np.arange(len(order))
    width = 0.8 / len(series)
    with matplotlib.rc_context(STYLE):
        fig, ax = _new_figure((max(6.4, 0.09 * len(order)), 3.8))
        sc = counts[order]
        top = max(float(np.nanmax(np.abs(g))) if np.isfinite(g).any() else 1.0
                  for _, g, _ in series)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_ylim(-1.15 * top - 1, 1.25 * top + 1)
        for name, rule, color in BANDS:
            inside = {"Few": sc < FEW_THRESHOLD, "Medium": (sc >= FEW_THRESHOLD) &
                      (sc <= MANY_THRESHOLD), "Many": sc > MANY_THRESHOLD}[name]
            if inside.any():
                a, b = np.flatnonzero(inside)[[0, -1]]
                ax.axvspan(a - 0.5, b + 0.5, color=color, alpha=0.08, lw=0)
                ax.text((a + b) / 2, 1.2 * top + 1, f"{name} ({rule})", ha="center", va="top",
                        fontsize=7, color=color)
        for i, (row, gain, n) in enumerate(series):
            ax.bar(x + (i - (len(series) - 1) / 2) * width, gain[order], width,
                   color=_row_style(suite, row)[0],
                   label=f"{row} ({n} seed{'s' if n != 1 else ''})")
        ax.axhline(0, color="black", lw=0.8)
        step = max(1, len(order) // 12)
        ax.set_xticks(x[::step], [str(c) for c in sc[::step]])
        ax.set_xlabel("classes sorted by training clips (tick labels: clips)")
        ax.set_ylabel(f"per-class gain over {ce_row} (pp)")
        ax.set_title(f"Per-class accuracy gain over {ce_row} ({col})")
        _legend_below(ax, len(series))
        return _save(fig, stem)


def build_figures(suites: list[Any], run_ids: dict[str, RunIds], by_id: pd.DataFrame,
                  per_class: dict[str, Any], out_root: Path) -> list[Path]:
    """Every figure the given suites feed; returns the files written."""
    written: list[Path] = []
    for suite in suites:
        ids, folder = run_ids[suite.name], Path(out_root) / suite.tag
        if suite.name == "fig4":
            for col in suite.cols:
                written += per_class_figure(suite, col, ids, per_class, folder)
        elif suite.name == "table3":
            written += imbalance_figure(suite, ids, by_id, folder)
        elif suite.name == "table1":
            for col in suite.cols:
                written += gain_figure(suite, col, ids, per_class, folder)
    return written
