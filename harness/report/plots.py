"""The report's figures, drawn with matplotlib's Agg canvas (no display, no pyplot global state).

Each function returns PNG bytes, or None when the rows hold nothing to draw (e.g. no per-task
results), so the report simply leaves that figure out.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from typing import ParamSpec

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from harness.report.oracle import OracleRow
from harness.report.table import METRIC_COLUMNS, SCALE_ORDER, Row, format_samples

P = ParamSpec("P")
_COLORS = tuple(colormaps["tab20"].colors[0::2] + colormaps["tab20"].colors[1::2])  # 20, strong ones first


def _palette(rows: Sequence[Row]) -> dict[str, tuple[float, ...]]:
    """One colour per method name, so a filter keeps its colour across panels and figures."""
    names = list(dict.fromkeys(r.method for r in rows))
    return {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}


def _errors(values: list[float]) -> list[float] | None:
    return values if any(v > 1e-12 for v in values) else None  # no empty caps when nothing varies


def _plain_text(draw: Callable[P, bytes | None]) -> Callable[P, bytes | None]:
    """Labels reach matplotlib as plain text: a "$...$" in a method name is printed, never parsed
    as mathtext (where a bad formula would abort the whole report)."""

    @functools.wraps(draw)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> bytes | None:
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapped


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _name(row: Row, with_scale: bool) -> str:
    text = row.method + (" (published)" if row.published else "")
    return f"{text} [{row.scale}]" if with_scale else text


SPREAD = 0.025  # log10 units between points that would land on one spot (about 6% in subset size)


def size_points(rows: Sequence[Row]) -> list[Row]:
    """The rows the size plot draws: a positive subset size and an Average."""
    return [r for r in rows if r.samples and r.values.get("Average") and r.samples.mean > 0]


def spread(points: Sequence[tuple[float, float]]) -> list[tuple[float, int]]:
    """(drawn x, size of its group) for each (x, y): points that would be drawn on one spot (same size
    and Average to the precision shown) are moved apart sideways, symmetrically, SPREAD apart in log x,
    so none hides another; the group size is drawn as an "×n" label."""
    groups: dict[tuple[float, float], list[int]] = {}
    for i, (x, y) in enumerate(points):
        groups.setdefault((round(math.log10(x), 3), round(y, 3)), []).append(i)
    out: list[tuple[float, int]] = [(x, 1) for x, _ in points]
    for members in groups.values():
        k = len(members)
        for j, i in enumerate(members):
            out[i] = (points[i][0] * 10 ** (SPREAD * (j - (k - 1) / 2)), k)
    return out


def average_vs_size_caption(rows: Sequence[Row]) -> str:
    """Says only what the figure draws: published markers, spread points and error bars when present."""
    points = size_points(rows)
    text = "Average over the suite against subset size (log x), one marker per row of the table."
    if any(r.published for r in points):
        text += " Hollow squares are published results."
    by_scale: dict[str, list[Row]] = {}
    for r in points:
        by_scale.setdefault(r.scale, []).append(r)
    if any(k > 1 for group in by_scale.values()
           for _, k in spread([(r.samples.mean, r.values["Average"].mean) for r in group])):
        text += " Rows with the same size and Average are spread sideways and labelled ×n (n rows at that spot)."
    if any(r.values["Average"].n > 1 for r in points):
        text += " Error bars: population std over seeds."
    return text


def aggregate_bars_caption(rows: Sequence[Row]) -> str:
    shown = [r for r in rows if any(r.values.get(c) for c in METRIC_COLUMNS)]
    text = "One bar group per aggregate, one bar per row of the table."
    if any(s.n > 1 for r in shown for s in r.values.values() if s):
        text += " Error bars: population std over seeds."
    if any(r.published for r in shown):
        text += " Hatched bars are published results."
    return text


@_plain_text
def average_vs_size(rows: Sequence[Row]) -> bytes | None:
    """Average against subset size (log x), one panel per scale; published rows hollow; rows that
    would overlap spread sideways with an ×n label."""
    points = size_points(rows)
    if not points:
        return None
    scales = sorted({r.scale for r in points}, key=lambda s: (SCALE_ORDER.index(s) if s in SCALE_ORDER else 99, s))
    colors = _palette(points)
    fig = Figure(figsize=(6.5 * len(scales), 4.8))
    for k, scale in enumerate(scales):
        ax = fig.add_subplot(1, len(scales), k + 1)
        panel = [p for p in points if p.scale == scale]
        drawn = spread([(r.samples.mean, r.values["Average"].mean) for r in panel])
        labelled: set[tuple[float, float]] = set()
        for r, (x, group) in zip(panel, drawn, strict=True):
            avg, color = r.values["Average"], colors[r.method]
            ax.errorbar(
                x, avg.mean, yerr=avg.std if avg.n > 1 else None,
                xerr=r.samples.std if r.samples.n > 1 else None,
                fmt="s" if r.published else "o", ms=7, capsize=3, color=color,
                mfc="none" if r.published else color, label=_name(r, False),
            )
            spot = (round(math.log10(r.samples.mean), 3), round(avg.mean, 3))
            if group > 1 and spot not in labelled:
                labelled.add(spot)
                ax.annotate(f"×{group}", (r.samples.mean, avg.mean), textcoords="offset points", xytext=(0, 9),
                            ha="center", fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_samples(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("Subset size (samples, log scale)")
        ax.set_ylabel("Average over the suite")
        ax.set_title(f"Average vs subset size: {scale}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _png(fig)


@_plain_text
def aggregate_bars(rows: Sequence[Row]) -> bytes | None:
    """One bar group per aggregate, one bar per row (seed spread as error bars; published hatched)."""
    shown = [r for r in rows if any(r.values.get(c) for c in METRIC_COLUMNS)]
    if not shown:
        return None
    with_scale = len({r.scale for r in shown}) > 1
    colors = _palette(shown)
    width = 0.8 / len(shown)
    x = np.arange(len(METRIC_COLUMNS))
    fig = Figure(figsize=(max(7.0, 1.6 * len(METRIC_COLUMNS) + 0.25 * len(shown)), 4.8))
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(shown):
        stats = [r.values.get(c) for c in METRIC_COLUMNS]
        heights = [s.mean if s else 0.0 for s in stats]
        errs = [s.std if s and s.n > 1 else 0.0 for s in stats]
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, yerr=_errors(errs), capsize=2,
               color=colors[r.method], hatch="//" if r.published else None,
               edgecolor="black" if r.published else None, linewidth=0.5, label=_name(r, with_scale))
    ax.set_xticks(x, METRIC_COLUMNS)
    ax.set_ylabel("Score")
    ax.set_title("Aggregates per run")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=max(1, math.ceil(len(shown) / 12)), loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


@_plain_text
def task_heatmap(rows: Sequence[Row]) -> bytes | None:
    """Main metric of every task (columns) for every user row (seed mean); grey where missing."""
    users = [r for r in rows if not r.published and any(run.tasks for run in r.runs)]
    if not users:
        return None
    names: dict[str, str] = {}
    for r in users:
        for run in r.runs:
            for key, (name, _) in run.tasks.items():
                names.setdefault(key, name)
    keys = list(names)
    grid = np.full((len(users), len(keys)), np.nan)
    for i, r in enumerate(users):
        for j, key in enumerate(keys):
            vals = [run.tasks[key][1] for run in r.runs if key in run.tasks]
            if vals:
                grid[i, j] = float(np.mean(vals))
    with_scale = len({r.scale for r in users}) > 1
    fig = Figure(figsize=(max(6.0, 0.45 * len(keys) + 3), max(2.5, 0.45 * len(users) + 2)))
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["viridis"].with_extremes(bad="#d0d0d0")
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=0.0,
                   vmax=max(1e-9, float(np.nanmax(grid))) if np.isfinite(grid).any() else 1.0)
    ax.set_xticks(range(len(keys)), [names[k] for k in keys], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(users)), [_name(r, with_scale) for r in users], fontsize=8)
    if len(keys) <= 20 and len(users) <= 20:  # numbers stay legible only on small grids
        for i in range(len(users)):
            for j in range(len(keys)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if grid[i, j] < 0.6 * np.nanmax(grid) else "black")
    fig.colorbar(im, ax=ax, label="main metric")
    ax.set_title("Per-task main metric")
    return _png(fig)


@_plain_text
def oracle_figure(orows: Sequence[OracleRow], noise_types: Sequence[str]) -> bytes | None:
    """Left: precision and clean recall per filter. Right: fraction removed per noise type."""
    if not orows:
        return None
    with_scale = len({r.scale for r in orows}) > 1
    labels = [r.method + (f" [{r.scale}]" if with_scale else "") for r in orows]
    fig = Figure(figsize=(6 + 0.9 * len(noise_types) + 0.4 * len(orows), 0.4 * len(orows) + 4),
                 layout="constrained")
    ax1 = fig.add_subplot(1, 2, 1)
    y = np.arange(len(orows))
    for k, (key, title) in enumerate((("precision", "precision (selected that are clean)"),
                                      ("recall", "recall of clean samples"))):
        stats = [r.metrics.get(key) for r in orows]
        ax1.barh(y + (k - 0.5) * 0.4, [s.mean if s else 0 for s in stats], 0.4,
                 xerr=_errors([s.std if s and s.n > 1 else 0 for s in stats]), capsize=2,
                 color=_COLORS[k], label=title)
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlim(0, 1)
    ax1.set_title("Against the oracle labels")
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    ax2 = fig.add_subplot(1, 2, 2)
    grid = np.array([[r.metrics[f"removed:{t}"].mean if r.metrics.get(f"removed:{t}") else np.nan
                      for t in noise_types] for r in orows], dtype=float).reshape(len(orows), len(noise_types))
    im = ax2.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="RdYlGn", vmin=0, vmax=1)
    ax2.set_xticks(range(len(noise_types)), [t.replace("_", " ") for t in noise_types], rotation=40,
                   ha="right", fontsize=8)
    ax2.set_yticks(range(len(orows)), [])  # same rows, same order as the left panel
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                ax2.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax2, label="fraction removed")
    ax2.set_title("Noise removed, per type")
    return _png(fig)
