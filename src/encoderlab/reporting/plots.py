"""Learning curves as PNG charts (matplotlib, Agg backend: no display needed).

A metric some run logged at two or more steps is a line chart (a line per run); a metric every run logged
once (``test/*``, a single validation) is a bar chart of those values: one point is not a curve.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

Curve = Sequence[tuple[float, float]]


def metric_filename(metric: str, task: str = "") -> str:
    """``val/acc`` → ``val_acc.png``; with the task the runs trained: ``classify-val_acc.png``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", metric).strip("_")
    if task:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip("_") + "-" + name
    return name + ".png"


def is_curve(points: Curve) -> bool:
    """Values at two or more steps; anything less is one value, not a learning curve."""
    return len({step for step, _ in points}) > 1


def line_chart_png(title: str, lines: Mapping[str, Curve], xlabel: str = "step", ylabel: str = "") -> bytes:
    """One chart, one line per label, as PNG bytes. Curves with a single point are drawn as markers."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    below = len(lines) > 1 and max(len(label) for label in lines) > 24  # long labels: legend under the axes
    fig = Figure(figsize=(6.4, 3.6 + (0.22 * len(lines) if below else 0)), dpi=100, layout="constrained")
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
    if below:
        fig.legend(fontsize="small", loc="outside lower center")
    elif len(lines) > 1:
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
    low, high = min([0.0, *heights]), max([0.0, *heights])
    margin = 0.15 * ((high - low) or 1)  # room for the printed values; negative values (a correlation) fit
    ax.set_xlim(low - margin if low < 0 else 0, high + margin)
    ax.set_title(title)
    ax.set_xlabel(ylabel)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def learning_curve_pngs(
    curves: Mapping[str, Mapping[str, Curve]], metrics: Sequence[str] | None = None, task: str = ""
) -> dict[str, bytes]:
    """``{run label: {metric: points}}`` → ``{metric: PNG}``: one chart per metric, a line per run, or a
    bar per run for a metric logged once. Pass the runs of one task (``task`` goes into the titles): the
    same name (``train/acc``) measures different things in pre-training and in classification."""
    names = list(metrics) if metrics else sorted({m for run in curves.values() for m in run})
    charts = {}
    for metric in names:
        lines = {label: run[metric] for label, run in curves.items() if run.get(metric)}
        title = f"{metric} ({task})" if task else metric
        if any(is_curve(points) for points in lines.values()):
            charts[metric] = line_chart_png(title, lines, ylabel=metric)
        elif lines:
            last = {label: max(points)[1] for label, points in lines.items()}  # the latest step's value
            finite = {label: value for label, value in last.items() if math.isfinite(value)}
            if finite:
                charts[metric] = bar_chart_png(title, finite, ylabel=metric)
    return charts


def write_learning_curves(
    curves: Mapping[str, Mapping[str, Curve]],
    out_dir: str | Path,
    metrics: Sequence[str] | None = None,
    task: str = "",
) -> list[Path]:
    """Write one ``<metric>.png`` per metric into ``out_dir`` (``<task>-<metric>.png`` with a task);
    returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for metric, png in learning_curve_pngs(curves, metrics, task).items():
        path = out / metric_filename(metric, task)
        path.write_bytes(png)
        written.append(path)
    return written
