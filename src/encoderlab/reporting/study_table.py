"""A study's report: per encoder and data set, one row per method and one column per number of labelled
examples (mean ± std over seeds), the parameters each method trains and its wall time per run, a plot of the
score against N per method, and one recommendation line per data set derived from those numbers.

The cells are the suite's (:mod:`encoderlab.suite.results`); a grid task carries its data set, method and
N as labels (``suite.spec.grid_tasks``), which is all this module needs to put them back on the grid.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass, field

from encoderlab.suite.results import Cell
from encoderlab.suite.spec import SuiteTask

# What a recommendation line names, said where the lines are written.
RECOMMENDATION_RULE = (
    "per N, the cheapest method that the best mean does not beat by more than two standard errors of their "
    "paired per-seed differences, or one point"
)


@dataclass
class MethodRow:
    """One method on one data set for one encoder: its scores per N."""

    method: str
    scores: dict[int, list[float]] = field(default_factory=dict)  # N → the seeds' scores (×100)
    by_seed: dict[int, dict[int, float]] = field(default_factory=dict)  # N → seed → score (×100)
    seconds: dict[int, list[float]] = field(default_factory=dict)  # N → the completed runs' wall times
    trainable: list[float] = field(default_factory=list)
    missing: dict[int, str] = field(default_factory=dict)  # N → why a seed has no score

    def mean(self, n: int) -> float | None:
        return statistics.fmean(self.scores[n]) if self.scores.get(n) else None

    def std(self, n: int) -> float:
        values = self.scores.get(n) or []
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def cell(self, n: int) -> str:
        mean = self.mean(n)
        if mean is None:
            return "failed" if n in self.missing else "—"
        seeds = len(self.scores[n])
        return f"{mean:.1f} ± {self.std(n):.1f}" + ("" if n not in self.missing else f" [{seeds}]")

    def gap_to(self, best: MethodRow, n: int) -> tuple[float, float] | None:
        """How far ``best`` is ahead at ``n``: (mean, standard error) of the per-seed differences on the seeds
        both completed. A seed draws the same labelled examples and test sentences for every method, so the
        pairing takes out the split-to-split spread the methods share. None with fewer than two seeds."""
        mine, theirs = self.by_seed.get(n, {}), best.by_seed.get(n, {})
        common = sorted(set(mine) & set(theirs))
        if len(common) < 2:
            return None
        gaps = [theirs[s] - mine[s] for s in common]
        return statistics.fmean(gaps), statistics.stdev(gaps) / len(gaps) ** 0.5

    def ties(self, best: MethodRow, n: int) -> bool:
        """Whether this method is within noise of ``best`` at ``n``: ``best`` is ahead by at most two
        standard errors of the paired differences (or one point); with fewer than two paired seeds, this
        method's mean is within one std of ``best``'s."""
        if self is best:
            return True
        mean = self.mean(n)
        if mean is None:
            return False
        gap = self.gap_to(best, n)
        if gap is None:
            return mean >= best.mean(n) - max(best.std(n), 1.0)
        return gap[0] <= max(2.0 * gap[1], 1.0)

    def seconds_at(self, n: int) -> float | None:
        return statistics.median(self.seconds[n]) if self.seconds.get(n) else None

    @property
    def seconds_text(self) -> str:
        """Wall time per run: one figure, or the range over the Ns (the median run at each)."""
        found = sorted(v for v in (self.seconds_at(n) for n in self.seconds) if v is not None)
        if not found:
            return "?"
        low, high = _seconds(found[0]), _seconds(found[-1])
        return low if low == high else f"{low[:-2]}–{high}"

    @property
    def trained(self) -> int | None:
        return int(statistics.median(self.trainable)) if self.trainable else None


@dataclass
class StudyGrid:
    """One (encoder, data set): its methods' rows over the same Ns."""

    source: str
    dataset: str
    title: str
    metric: str
    shots: list[int]
    rows: list[MethodRow]
    shots_key: str = ""

    @property
    def n_label(self) -> str:
        return (
            "N (labelled examples per class)"
            if self.shots_key.endswith("per_class")
            else "N (labelled examples)"
        )

    def best(self, n: int) -> MethodRow | None:
        scored = [r for r in self.rows if r.mean(n) is not None]
        return max(scored, key=lambda r: r.mean(n)) if scored else None

    def recommendation(self) -> str:
        """Per N: the cheapest method within noise of the best mean (:meth:`MethodRow.ties`: the best is not
        ahead by more than two standard errors of their paired per-seed differences, or one point), and the
        best one when that is another."""
        parts = []
        for n in self.shots:
            best = self.best(n)
            if best is None:
                continue
            tied = [r for r in self.rows if r.ties(best, n)]
            cheapest = min(tied, key=lambda r: (r.seconds_at(n) or 0.0, r.trained or 0))
            text = f"N={n}: {cheapest.method} ({cheapest.mean(n):.1f}, {_seconds(cheapest.seconds_at(n))}/run"
            if cheapest is not best:
                text += (
                    f"; best mean {best.method} {best.mean(n):.1f} ± {best.std(n):.1f}, "
                    f"{_seconds(best.seconds_at(n))}/run"
                )
            parts.append(text + ")")
        return f"{self.title} · {self.source}: " + ("; ".join(parts) if parts else "no completed runs yet")


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _params(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def study_grids(tasks: list[SuiteTask], cells: list[Cell], sources: list[str]) -> list[StudyGrid]:
    """The grids of a study, in the plan's order of sources, data sets and methods."""
    by_key = {(c.source, c.task): c for c in cells}
    grids: list[StudyGrid] = []
    for source in sources:
        datasets: dict[str, list[SuiteTask]] = {}
        for task in tasks:
            if task.label("dataset") is not None:
                datasets.setdefault(task.label("dataset"), []).append(task)
        for dataset, own in datasets.items():
            shots = sorted({int(t.label("shots")) for t in own})
            rows: dict[str, MethodRow] = {}
            for task in own:
                row = rows.setdefault(task.label("method"), MethodRow(task.label("method")))
                cell = by_key.get((source, task.name))
                if cell is None:
                    continue
                n, metric = int(task.label("shots")), task.metrics[0]
                scale = 100.0 if task.percent else 1.0
                values = cell.values.get(metric, {})
                row.by_seed[n] = {s: values[s] * scale for s in cell.seeds if s in values}
                row.scores[n] = list(row.by_seed[n].values())
                row.seconds[n] = list(cell.run_seconds.values())
                row.trainable += list(cell.trainable.values())
                if cell.reason():
                    row.missing[n] = cell.reason()
            title = own[0].title.rsplit(f" {own[0].label('method')} ", 1)[0]
            grids.append(
                StudyGrid(
                    source,
                    dataset,
                    title,
                    own[0].metrics[0],
                    shots,
                    list(rows.values()),
                    own[0].label("shots_key") or "",
                )
            )
    return grids


def rich_grid(grid: StudyGrid, seeds: int):
    from rich.table import Table

    table = Table(
        title=f"{grid.title} · {grid.source} — {grid.metric} (%), mean ± std over {seeds} seeds",
        title_justify="left",
    )
    table.add_column("method")
    table.add_column("trainable params", justify="right")
    table.add_column("per run", justify="right")
    for n in grid.shots:
        table.add_column(f"N={n}", justify="right")
    for row in grid.rows:
        cells = []
        for n in grid.shots:
            text = row.cell(n)
            best = grid.best(n)
            cells.append(f"[bold]{text}[/bold]" if best is row else text)
        table.add_row(row.method, _params(row.trained), row.seconds_text, *cells)
    return table


def markdown_grid(grid: StudyGrid, seeds: int) -> str:
    head = ["method", "trainable params", "per run", *(f"N = {n}" for n in grid.shots)]
    lines = [
        f"**{grid.title} · {grid.source}** — {grid.metric} (%), mean ± std over {seeds} seeds",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for row in grid.rows:
        cells = []
        for n in grid.shots:
            text = row.cell(n)
            cells.append(f"**{text}**" if grid.best(n) is row else text)
        lines.append("| " + " | ".join([row.method, _params(row.trained), row.seconds_text, *cells]) + " |")
    return "\n".join(lines)


def study_png(grids: list[StudyGrid]) -> bytes:
    """The score against N (log scale) per method, one panel per (encoder, data set)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    columns = min(3, len(grids)) or 1
    rows = -(-len(grids) // columns) or 1
    fig = Figure(figsize=(5.2 * columns, 3.8 * rows), dpi=100, layout="constrained")
    for i, grid in enumerate(grids):
        ax = fig.add_subplot(rows, columns, i + 1)
        for row in grid.rows:
            points = [(n, row.mean(n), row.std(n)) for n in grid.shots if row.mean(n) is not None]
            if points:
                xs, ys, errs = zip(*points, strict=True)
                ax.errorbar(xs, ys, yerr=errs, label=row.method, marker="o", markersize=3, capsize=2)
        ax.set_xscale("log")
        ax.set_xticks(grid.shots, [str(n) for n in grid.shots])
        ax.set_title(f"{grid.title} · {grid.source}", fontsize="medium")
        ax.set_xlabel(grid.n_label)
        ax.set_ylabel(f"{grid.metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
