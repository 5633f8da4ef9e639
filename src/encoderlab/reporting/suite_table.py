"""The suite's GLUE-style table: one row per encoder, one column per task, an Average column.

A measured cell is the median over seeds of each of the task's metrics (``81.2/70.3`` for MRPC F1/acc), in
percent; a cell whose seeds all failed reads ``failed [n]``, with the one-line reason as note n below the
table, and one with some seeds missing carries ``*`` and a note. Average is the mean of the task scores (a
task's score is the mean of its metrics, GLUE's rule), shown only when the row has every task. Published rows
are marked as such, with their source and split in the notes. Printed with rich, written as a
self-contained HTML page and as a PNG bar chart (matplotlib, Agg).
"""

from __future__ import annotations

import base64
import io
import math
import statistics
from dataclasses import dataclass, field
from html import escape

from encoderlab.suite.published import PublishedRow
from encoderlab.suite.results import COMPLETED, FAILED, PARTIAL, PENDING, Cell
from encoderlab.suite.spec import SuiteTask

MEASURED, PUBLISHED = "measured", "published"
AVERAGE = "Average"


@dataclass
class SuiteRow:
    name: str
    kind: str  # measured | published
    texts: list[str]  # one per task, as shown
    scores: list[float | None]  # one per task: the task score (a fraction), None when absent
    spreads: list[tuple[float, float] | None]  # one per task: lowest and highest seed score
    states: list[str]  # one per task: completed | partial | failed | pending (published: completed or "")
    average: float | None = None
    detail: list[str] = field(default_factory=list)  # one per task: what the HTML shows on hover


@dataclass
class SuiteTable:
    title: str
    tasks: list[SuiteTask]
    rows: list[SuiteRow]
    problems: list[str]  # note n of a cell marked [n]: what failed or is missing, in one line
    notes: list[str]  # how to read the table: the median, the Average, the published rows' sources
    failed_cells: int = 0  # measured cells with a failed seed

    @property
    def headers(self) -> list[str]:
        return [t.header for t in self.tasks]

    @property
    def incomplete(self) -> bool:
        """Whether a measured cell lacks a seed (failed, or not run yet)."""
        return self.status != COMPLETED

    @property
    def status(self) -> str:
        """completed (every measured cell), failed (a cell has a failed seed) or incomplete (jobs not run)."""
        if self.failed_cells:
            return FAILED
        states = {s for r in self.rows if r.kind == MEASURED for s in r.states}
        return COMPLETED if states <= {COMPLETED} else "incomplete"


def show(value: float, task: SuiteTask) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{100 * value:.1f}" if task.percent else f"{value:.4g}"


def average(scores: list[float | None], tasks: list[SuiteTask]) -> float | None:
    """The mean task score over the tasks that are scores in [0, 1]; None unless every one is there."""
    counted = [s for s, t in zip(scores, tasks, strict=True) if t.percent]
    if not counted or any(s is None for s in counted):
        return None
    return statistics.fmean(counted)


def _measured_row(name: str, cells: dict[str, Cell], tasks: list[SuiteTask], problems: list[str]) -> SuiteRow:
    texts, scores, spreads, states, detail = [], [], [], [], []
    for task in tasks:
        cell = cells[task.name]
        medians = cell.medians()
        status = cell.status
        text = "/".join(show(v, task) for v in medians) if medians else ("—" if status == PENDING else "")
        if status in (FAILED, PARTIAL) or (status == PENDING and cell.run_dirs):
            problems.append(f"{name} / {task.title}: {_problem(cell)}")
            mark = f"[{len(problems)}]"
            text = f"failed {mark}" if status == FAILED else (f"{text}* {mark}" if medians else f"— {mark}")
        seed_scores = cell.seed_scores()
        texts.append(text)
        scores.append(cell.score())
        spreads.append((min(seed_scores), max(seed_scores)) if seed_scores else None)
        states.append(status)
        detail.append(_detail(cell, task))
    return SuiteRow(name, MEASURED, texts, scores, spreads, states, average(scores, tasks), detail)


def _problem(cell: Cell) -> str:
    done = len(cell.done_seeds)
    if cell.status == FAILED:
        return f"failed — {cell.reason()}"
    missing = len(cell.seeds) - done - len(cell.errors)
    parts = [f"{done}/{len(cell.seeds)} seeds"]
    if cell.errors:
        parts.append(cell.reason())
    if missing:
        parts.append(f"{missing} not finished (resume the suite)")
    return " — ".join(parts)


def _detail(cell: Cell, task: SuiteTask) -> str:
    per_seed = []
    for seed in cell.seeds:
        if seed in cell.done_seeds:
            per_seed.append(
                f"seed {seed}: " + "/".join(show(cell.values[m][seed], task) for m in cell.metrics)
            )
        elif seed in cell.errors:
            per_seed.append(f"seed {seed}: failed")
        else:
            per_seed.append(f"seed {seed}: not run")
    return "; ".join(per_seed)


def _published_row(row: PublishedRow, tasks: list[SuiteTask]) -> SuiteRow:
    values = [row.cell(t.name, t.metrics) for t in tasks]
    texts = [
        "/".join(show(v, t) for v in found) if found else "" for found, t in zip(values, tasks, strict=True)
    ]
    scores = [statistics.fmean(found) if found else None for found in values]
    states = [COMPLETED if found else "" for found in values]
    return SuiteRow(
        row.label,
        PUBLISHED,
        texts,
        scores,
        [None] * len(tasks),
        states,
        average(scores, tasks),
        [""] * len(tasks),
    )


def build_suite_table(
    title: str,
    sources: list[str],
    tasks: list[SuiteTask],
    cells: list[Cell],
    published: list[PublishedRow] = (),
    seeds: tuple[int, ...] = (),
) -> SuiteTable:
    """The table of ``cells`` (one per source and task), with ``published`` rows after the measured ones."""
    by_source: dict[str, dict[str, Cell]] = {s: {} for s in sources}
    for cell in cells:
        by_source.setdefault(cell.source, {})[cell.task] = cell
    problems: list[str] = []
    rows = [_measured_row(name, by_source[name], tasks, problems) for name in sources]
    rows += [_published_row(row, tasks) for row in published]
    seeds_text = (
        f"seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}" if seeds else "the seeds"
    )
    notes = [
        f"measured rows: median over {seeds_text} of each metric, ×100; {AVERAGE}: mean of the task "
        "scores (a task's score is the mean of its metrics), shown when the row has every task"
    ]
    for source in dict.fromkeys(row.source for row in published):
        notes.append(f"published rows: {source}; not re-measured here, and on the split named in the row")
    failed = sum(bool(c.errors) for c in cells if c.source in by_source and c.task in {t.name for t in tasks})
    return SuiteTable(title, list(tasks), rows, problems, notes, failed)


# ------------------------------------------------------------------------------------------ rich


def rich_suite_table(table: SuiteTable):
    """The table for the terminal (``rich``), the notes below it."""
    from rich.table import Table

    rich = Table(title=table.title, title_justify="left", caption_justify="left")
    rich.add_column("encoder", overflow="fold")
    for header in table.headers:
        rich.add_column(header, justify="right")
    rich.add_column(AVERAGE, justify="right", style="bold")
    for row in table.rows:
        cells = [
            f"[red]{text}[/red]" if state in (FAILED, PARTIAL) else text
            for text, state in zip(row.texts, row.states, strict=True)
        ]
        avg = "—" if row.average is None else f"{100 * row.average:.1f}"
        rich.add_row(row.name, *cells, avg, style="italic dim" if row.kind == PUBLISHED else None)
    return rich


def problem_lines(table: SuiteTable) -> list[str]:
    return [f"[{i}] {problem}" for i, problem in enumerate(table.problems, 1)]


# ------------------------------------------------------------------------------------------- PNG


def suite_png(table: SuiteTable) -> bytes:
    """Grouped bars: one group per task (and Average), one bar per row; the seed range as error bars,
    published rows hatched, failed cells marked with an x."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    groups = [t.title for t in table.tasks] + [AVERAGE]
    n = max(len(table.rows), 1)
    width = 0.8 / n
    fig = Figure(figsize=(max(6.4, 1.1 * len(groups) + 1.5), 4.6 + 0.2 * n), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    percent = [t.percent for t in table.tasks] + [True]
    for i, row in enumerate(table.rows):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        scores = [*row.scores, row.average]
        spreads = [*row.spreads, None]
        heights = [
            100 * s if s is not None and p else (s or 0.0) for s, p in zip(scores, percent, strict=True)
        ]
        ax.bar(
            xs,
            heights,
            width * 0.95,
            label=row.name,
            hatch="//" if row.kind == PUBLISHED else None,
            alpha=0.55 if row.kind == PUBLISHED else 0.9,
        )
        for x, spread, p in zip(xs, spreads, percent, strict=True):
            if spread is not None and p:
                ax.plot([x, x], [100 * spread[0], 100 * spread[1]], color="black", linewidth=1)
        for x, state in zip(xs, row.states, strict=False):  # the tasks, not the Average
            if state in (FAILED, PENDING) and row.kind == MEASURED:
                ax.plot([x], [1], marker="x", color="red", markersize=7)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    ax.set_ylabel("median over seeds ×100")
    ax.set_title(f"{table.title}\n(black lines: range over seeds; ×: failed or not run)", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize="small", loc="outside lower center", ncols=min(n, 3))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ HTML

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; } th, td { padding: .3em .7em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; white-space: nowrap; }
td.failed { color: #a00; } tr.published td { font-style: italic; color: #666; }
span.tag { font-size: .8em; background: #eee; border-radius: 3px; padding: 0 .3em; font-style: normal; }
ol.notes li, ul.notes li { margin: .2em 0; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 .3em; }
"""


def render_suite_html(table: SuiteTable, png: bytes | None, cells: list[Cell], subtitle: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in ["encoder", *table.headers, AVERAGE])
    body = []
    for row in table.rows:
        tag = ' <span class="tag">published</span>' if row.kind == PUBLISHED else ""
        tds = [f"<td>{escape(row.name)}{tag}</td>"]
        for text, state, detail in zip(row.texts, row.states, row.detail, strict=True):
            css = "num failed" if state in (FAILED, PARTIAL) else "num"
            hover = f' title="{escape(detail)}"' if detail else ""
            tds.append(f'<td class="{css}"{hover}>{escape(text)}</td>')
        tds.append(
            f'<td class="num"><b>{"—" if row.average is None else f"{100 * row.average:.1f}"}</b></td>'
        )
        css = ' class="published"' if row.kind == PUBLISHED else ""
        body.append(f"<tr{css}>{''.join(tds)}</tr>")
    notes = "".join(f"<li>{escape(n)}</li>" for n in problem_lines(table))
    general = "".join(f"<li>{escape(n)}</li>" for n in table.notes)
    chart = (
        f'<h2>Scores</h2><img alt="suite scores" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        if png
        else ""
    )
    details = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(v))}</td>"
            for v in (
                cell.source,
                cell.task,
                cell.status,
                _detail(cell, next(t for t in table.tasks if t.name == cell.task)),
                f"{cell.wall_seconds:.0f} s",
                ", ".join(cell.run_dirs[s] for s in sorted(cell.run_dirs)),
            )
        )
        + "</tr>"
        for cell in cells
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(table.title)}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(table.title)}</h1>
<p>{escape(subtitle)}</p>
<table id="suite"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
<ol class="notes" style="list-style: none; padding-left: 0">{notes}</ol>
<ul class="notes">{general}</ul>
{chart}
<h2>Cells</h2>
<table><thead><tr><th>source</th><th>task</th><th>status</th><th>seeds</th><th>wall time</th><th>runs</th></tr></thead>
<tbody>{details}</tbody></table>
</body></html>
"""
