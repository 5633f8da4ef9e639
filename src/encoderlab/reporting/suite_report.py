"""A suite directory's report: its cells read back from the job runs, written as ``suite.json``, ``suite.html``
and ``suite.png`` and printed as a table.

Everything comes from the directory: the plan ``encoderlab-suite`` saved in ``suite.json`` (sources, tasks,
seeds, published rows) and the jobs' run directories, so the report can be rebuilt at any time, also while
jobs are missing (``encoderlab-suite --report DIR``) and after a resume.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.files import atomic_file, read_json_object, write_json
from encoderlab.reporting.study_table import (
    RECOMMENDATION_RULE,
    markdown_grid,
    rich_grid,
    study_grids,
    study_png,
)
from encoderlab.reporting.suite_table import (
    build_suite_table,
    problem_lines,
    render_suite_html,
    rich_suite_table,
    suite_png,
)
from encoderlab.run.layout import (
    STUDY_PLOT_FILE,
    STUDY_TABLE_FILE,
    SUITE_HTML_FILE,
    SUITE_PLOT_FILE,
    SUITE_REPORT_FILE,
)
from encoderlab.suite.published import ROWS
from encoderlab.suite.results import collect
from encoderlab.suite.sources import Source
from encoderlab.suite.spec import SuiteTask


def read_plan(suite_dir: Path) -> dict:
    """What ``encoderlab-suite`` saved about the suite (a UserError when ``suite_dir`` is not a suite)."""
    data = read_json_object(suite_dir / SUITE_REPORT_FILE)
    if not data.get("tasks") or not data.get("sources"):
        raise UserError(
            f"{suite_dir} is not a suite directory (no readable {SUITE_REPORT_FILE}) — pass the directory "
            "encoderlab-suite wrote (its --out)"
        )
    return data


def is_suite(path: Path) -> bool:
    """Whether ``path`` is a directory ``encoderlab-suite`` wrote (its plan is in ``suite.json``)."""
    try:
        read_plan(path)
    except UserError:
        return False
    return True


def suite_table(suite_dir: Path, data: dict | None = None):
    """(the suite's table, its cells), read from the plan and the jobs' runs; writes nothing."""
    data = data or read_plan(suite_dir)
    tasks = [SuiteTask.from_dict(t) for t in data["tasks"]]
    sources = [Source.from_dict(s) for s in data["sources"]]
    seeds = tuple(data["seeds"])
    cells = collect(suite_dir, sources, tasks, seeds)
    published = [ROWS[key] for key in data.get("published", []) if key in ROWS]
    plural = "s" if len(sources) != 1 else ""
    title = f"encoderlab suite {Path(str(data['suite'])).stem}: {len(sources)} encoder{plural} × {len(tasks)} tasks"
    return build_suite_table(title, [s.name for s in sources], tasks, cells, published, seeds), cells


def subtitle(suite_dir: Path, data: dict) -> str:
    sources = [Source.from_dict(s) for s in data["sources"]]
    return f"{suite_dir} — seeds {', '.join(map(str, data['seeds']))}; sources: " + "; ".join(
        f"{s.name} = {s.describe()}" for s in sources
    )


def print_suite_table(table, console=None) -> None:
    if console is None:
        from encoderlab.reporting.terminal import output_console

        console = output_console()
    console.print(rich_suite_table(table))
    for line in [*problem_lines(table), *table.notes]:
        console.print(line, highlight=False, markup=False)


def write_study_report(suite_dir: Path, data: dict, table, cells, quiet: bool) -> None:
    """A study's grids (``report: study``): study.md with a recommendation per data set, study.png."""
    tasks = [SuiteTask.from_dict(t) for t in data["tasks"]]
    grids = study_grids(tasks, cells, [s["name"] for s in data["sources"]])
    seeds = len(data["seeds"])
    recommendations = [g.recommendation() for g in grids]
    text = "\n\n".join(markdown_grid(g, seeds) for g in grids)
    text += f"\n\nRecommendations ({RECOMMENDATION_RULE}):\n\n"
    text += "\n".join(f"- {line}" for line in recommendations) + "\n"
    with atomic_file(suite_dir / STUDY_TABLE_FILE) as tmp:
        tmp.write_text(text)
    with atomic_file(suite_dir / STUDY_PLOT_FILE) as tmp:
        tmp.write_bytes(study_png(grids))
    data["recommendations"] = recommendations
    if not quiet:
        from encoderlab.reporting.terminal import output_console

        console = output_console()
        for grid in grids:
            console.print(rich_grid(grid, seeds))
        for line in [*problem_lines(table), *recommendations]:
            console.print(line, highlight=False, markup=False)


def write_report(suite_dir: Path, quiet: bool = False) -> bool:
    """Collect the cells from the jobs' runs, write suite.json / .html / .png, print the table (a study's
    grids for ``report: study``); True when every measured cell is complete."""
    data = read_plan(suite_dir)
    table, cells = suite_table(suite_dir, data)
    study = data.get("report") == "study"
    if study:
        write_study_report(suite_dir, data, table, cells, quiet)
    png = suite_png(table)
    complete = not table.incomplete
    data.update(
        status=table.status,
        ended=datetime.now().isoformat(timespec="seconds"),
        job_seconds=round(sum(c.wall_seconds for c in cells), 1),
        cells=[c.to_dict() for c in cells],
        rows=[
            {"name": r.name, "kind": r.kind, "cells": r.texts, "scores": r.scores, "average": r.average}
            for r in table.rows
        ],
        problems=table.problems,
        notes=table.notes,
    )
    if data.get("started"):
        started = datetime.fromisoformat(data["started"])
        data["wall_seconds"] = round((datetime.now() - started).total_seconds(), 1)
    write_json(suite_dir / SUITE_REPORT_FILE, data)
    with atomic_file(suite_dir / SUITE_PLOT_FILE) as tmp:
        tmp.write_bytes(png)
    with atomic_file(suite_dir / SUITE_HTML_FILE) as tmp:
        tmp.write_text(render_suite_html(table, png, cells, subtitle(suite_dir, data)))
    if not quiet:
        written = (STUDY_TABLE_FILE, STUDY_PLOT_FILE) if study else (SUITE_HTML_FILE, SUITE_PLOT_FILE)
        if not study:
            print_suite_table(table)
        files = ", ".join(str(suite_dir / f) for f in (SUITE_REPORT_FILE, *written))
        print(f"written: {files}", flush=True)
    return complete
