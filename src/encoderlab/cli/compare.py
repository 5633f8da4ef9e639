"""``encoderlab-compare DIR...``: the local dashboard for run and multirun directories.

Prints, per task the runs trained, a table of final metrics (the optimized metric first) and of the
parameters that differ between runs, as the values each run used; laid out for the terminal's width
(:mod:`encoderlab.reporting.terminal`). ``--group-by-seed`` aggregates runs that differ only in ``seed``
(mean ± std); ``--plots DIR`` writes learning curves as PNG; ``--html FILE`` writes a self-contained report.
Examples::

    encoderlab-compare outputs/finetune_sst2/multiruns/2025-01-01_12-00-00-000000
    encoderlab-compare outputs/finetune_sst2/runs/* --sort val/acc --filter freeze=encoder
    encoderlab-compare SWEEP --group-by-seed --metrics val/acc,test/acc --html report.html --plots plots/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from encoderlab.cli.errors import run_command
from encoderlab.errors import UserError
from encoderlab.reporting.table import Table, apply_filters, build_tables
from encoderlab.reporting.terminal import output_console, render
from encoderlab.run.layout import RunDir
from encoderlab.run.read import find_runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="encoderlab-compare",
        description="Compare encoderlab runs: final metrics, differing overrides, learning curves.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run directories or multirun directories")
    parser.add_argument(
        "--metrics",
        help="comma-separated metrics to show (default: the optimized metric, then every val/ and test/ metric)",
    )
    parser.add_argument("--sort", metavar="KEY", help="sort best-first by a metric, or by a parameter")
    parser.add_argument("--reverse", action="store_true", help="reverse the --sort order")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose override / config value, or value in effect, matches (KEY!=VALUE excludes); "
        "repeatable; status=failed selects by run status",
    )
    parser.add_argument(
        "--group-by-seed", action="store_true", help="one row per configuration: mean ± std over seeds"
    )
    parser.add_argument(
        "--plots",
        metavar="DIR",
        help=f"write learning curves ({RunDir('').curves}) as PNG files, one per metric and task",
    )
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument("--title", default="", help="title of the HTML report")
    return parser.parse_args(argv)


def curves_by_label(table: Table) -> dict[str, dict]:
    """Each run's learning curves under what tells it apart (``#2 freeze=encoder``), not its directory."""
    return {table.curve_label(row, run): run.curves() for row in table.rows for run in row.runs}


def compare_suites(args: argparse.Namespace, console: Console) -> None:
    """Suite directories: the suite's own table (one row per encoder, one column per task), read from its
    jobs' runs; ``--html`` / ``--plots`` get the suite's report and chart. Nothing in the suite is written."""
    from encoderlab.reporting.suite_report import print_suite_table, read_plan, subtitle, suite_table
    from encoderlab.reporting.suite_table import render_suite_html, suite_png

    for given in args.dirs:
        data = read_plan(Path(given))
        table, cells = suite_table(Path(given), data)
        print_suite_table(table, console)
        png = suite_png(table) if args.html or args.plots else b""
        if args.plots:
            out = Path(args.plots)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{Path(given).name}.png").write_bytes(png)
            console.print(f"suite chart written to {out / (Path(given).name + '.png')}", highlight=False)
        if args.html:
            path = Path(args.html)
            if len(args.dirs) > 1:
                path = path.with_name(f"{path.stem}-{Path(given).name}{path.suffix}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_suite_html(table, png, cells, args.title or subtitle(Path(given), data)))
            console.print(f"HTML report written to {path}", highlight=False)


def compare(args: argparse.Namespace, console: Console) -> list[Table]:
    from encoderlab.reporting.suite_report import is_suite

    suites = [is_suite(Path(d)) for d in args.dirs]
    if any(suites):
        if not all(suites):
            raise UserError(
                "suite directories and run directories cannot be compared in one table — pass only suites "
                "(one table per suite) or only runs"
            )
        compare_suites(args, console)
        return []
    runs = find_runs(args.dirs)
    shown = apply_filters(runs, args.filter)
    if not shown:
        raise UserError(
            f"no run matches --filter {' '.join(args.filter)} (of {len(runs)} runs) — check the key and value"
        )
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    tables = build_tables(
        shown, metrics, group_by_seed=args.group_by_seed, sort=args.sort, reverse=args.reverse
    )
    for part in render(tables, console):
        console.print(part, highlight=False)
    for table in tables:
        for row in table.rows:
            for run in row.failed:
                console.print(
                    f"[red]{run.status}[/red] {run.name}: {run.error or 'no error recorded'}", highlight=False
                )

    charts: list[dict[str, bytes]] = []
    if args.plots or args.html:
        from encoderlab.reporting.plots import learning_curve_pngs, metric_filename

        # One set of charts per task: train/acc of pre-training never shares an axis with a classifier's.
        charts = [
            learning_curve_pngs(curves_by_label(table), table.metrics if metrics else None, table.task)
            for table in tables
        ]
        if args.plots:
            out = Path(args.plots)
            out.mkdir(parents=True, exist_ok=True)
            named = len(tables) > 1  # one task: plain <metric>.png; several: <task>-<metric>.png
            for table, pngs in zip(tables, charts, strict=True):
                for metric, png in pngs.items():
                    (out / metric_filename(metric, table.task if named else "")).write_bytes(png)
            n = sum(len(pngs) for pngs in charts)
            console.print(f"{n} learning-curve plot(s) written to {out}", highlight=False)
    if args.html:
        from encoderlab.reporting.html import render_html

        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(tables, charts, [str(d) for d in args.dirs], args.title))
        console.print(f"HTML report written to {path}", highlight=False)
    return tables


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> None:
        compare(args, output_console())

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
