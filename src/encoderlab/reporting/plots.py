"""Learning curves as PNG charts (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

Curve = Sequence[tuple[float, float]]


def metric_filename(metric: str) -> str:
    """``val/acc`` → ``val_acc.png``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", metric).strip("_") + ".png"


def line_chart_png(title: str, lines: Mapping[str, Curve], xlabel: str = "step", ylabel: str = "") -> bytes:
    """One chart, one line per label, as PNG bytes. Curves with a single point are drawn as markers."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for label, points in lines.items():
        if not points:
            continue
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, label=label, marker="o" if len(xs) < 20 else None, markersize=3)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or title)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize="small", loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def bar_chart_png(title: str, values: Mapping[str, float], ylabel: str = "") -> bytes:
    """One horizontal bar per label, its value printed at the bar's end, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 0.6 + 0.5 * len(values)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    labels, heights = list(values), list(values.values())
    bars = ax.barh(labels, heights, color="#4C72B0")
    ax.bar_label(bars, fmt="%.3f", padding=3)
    ax.invert_yaxis()  # first label on top
    ax.set_xlim(0, max(heights) * 1.15 if heights else 1)
    ax.set_title(title)
    ax.set_xlabel(ylabel)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def learning_curve_pngs(
    curves: Mapping[str, Mapping[str, Curve]], metrics: Sequence[str] | None = None
) -> dict[str, bytes]:
    """``{run label: {metric: points}}`` → ``{metric: PNG}``, one chart per metric with a line per run."""
    names = list(metrics) if metrics else sorted({m for run in curves.values() for m in run})
    charts = {}
    for metric in names:
        lines = {label: run[metric] for label, run in curves.items() if run.get(metric)}
        if lines:
            charts[metric] = line_chart_png(metric, lines)
    return charts


def write_learning_curves(
    curves: Mapping[str, Mapping[str, Curve]], out_dir: str | Path, metrics: Sequence[str] | None = None
) -> list[Path]:
    """Write one ``<metric>.png`` per metric into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for metric, png in learning_curve_pngs(curves, metrics).items():
        path = out / metric_filename(metric)
        path.write_bytes(png)
        written.append(path)
    return written
