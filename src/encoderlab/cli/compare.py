"""``encoderlab-compare DIR...``: the local dashboard for run and multirun directories.

Prints a table of final metrics and of the overrides that differ between runs; ``--group-by-seed``
aggregates runs that differ only in ``seed`` (mean ± std); ``--plots DIR`` writes learning curves as PNG;
``--html FILE`` writes a self-contained report. Examples::

    encoderlab-compare outputs/finetune_sst2/multiruns/2025-01-01_12-00-00-000000
    encoderlab-compare outputs/finetune_sst2/runs/* --sort val/acc --filter freeze=encoder
    encoderlab-compare SWEEP --group-by-seed --metrics val/acc,test/acc --html report.html --plots plots/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from encoderlab.cli.errors import run_command
from encoderlab.errors import UserError
from encoderlab.reporting.table import Table, apply_filters, build_table
from encoderlab.run.layout import RunDir
from encoderlab.run.read import Run, find_runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="encoderlab-compare",
        description="Compare encoderlab runs: final metrics, differing overrides, learning curves.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run directories or multirun directories")
    parser.add_argument("--metrics", help="comma-separated metrics to show (default: every final metric)")
    parser.add_argument("--sort", metavar="KEY", help="sort best-first by a metric, or by a parameter")
    parser.add_argument("--reverse", action="store_true", help="reverse the --sort order")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose override / config value matches (KEY!=VALUE excludes); repeatable; "
        "status=failed selects by run status",
    )
    parser.add_argument(
        "--group-by-seed", action="store_true", help="one row per configuration: mean ± std over seeds"
    )
    parser.add_argument(
        "--plots", metavar="DIR", help=f"write learning curves ({RunDir('').curves}) as PNG files"
    )
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument("--title", default="", help="title of the HTML report")
    return parser.parse_args(argv)


def rich_table(table: Table) -> RichTable:
    rich = RichTable(title=f"{table.n_runs} run{'s' if table.n_runs != 1 else ''}", title_justify="left")
    rich.add_column("run", overflow="fold")
    if table.grouped:
        rich.add_column("n", justify="right")
    show_status = table.any_failed
    if show_status:
        rich.add_column("status")
    for key in table.param_keys:
        rich.add_column(key, style="cyan", overflow="fold", min_width=min(len(key), 24))
    for metric in table.metrics:
        rich.add_column(metric, justify="right", style="bold", no_wrap=True, min_width=len(metric))
    for row in table.rows:
        cells: list = [row.name]
        if table.grouped:
            cells.append(str(row.n))
        if show_status:
            cells.append(row.status)
        cells += ["—" if row.params.get(k) is None else str(row.params[k]) for k in table.param_keys]
        cells += [row.cell(m) for m in table.metrics]
        # Text, not markup: override values such as tags=[a,b] or logger=[csv,wandb] must show as typed.
        rich.add_row(*(Text(c) for c in cells), style="red" if row.failed else None)
    return rich


def curves_by_run(runs: list[Run]) -> dict[str, dict]:
    return {run.name: run.curves() for run in runs}


def compare(args: argparse.Namespace, console: Console) -> Table:
    runs = find_runs(args.dirs)
    shown = apply_filters(runs, args.filter)
    if not shown:
        raise UserError(
            f"no run matches --filter {' '.join(args.filter)} (of {len(runs)} runs) — check the key and value"
        )
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    table = build_table(
        shown, metrics, group_by_seed=args.group_by_seed, sort=args.sort, reverse=args.reverse
    )
    console.print(rich_table(table))
    if table.common:
        console.print(
            "common overrides: " + " ".join(f"{k}={v}" for k, v in table.common.items()), highlight=False
        )
    for row in table.rows:
        for run in row.failed:
            console.print(
                f"[red]{run.status}[/red] {run.name}: {run.error or 'no error recorded'}", highlight=False
            )

    charts: dict[str, bytes] = {}
    if args.plots or args.html:
        from encoderlab.reporting.plots import learning_curve_pngs, metric_filename

        charts = learning_curve_pngs(curves_by_run(shown), metrics)
        if args.plots:
            out = Path(args.plots)
            out.mkdir(parents=True, exist_ok=True)
            for metric, png in charts.items():
                (out / metric_filename(metric)).write_bytes(png)
            console.print(f"{len(charts)} learning-curve plot(s) written to {out}", highlight=False)
    if args.html:
        from encoderlab.reporting.html import render_html

        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(table, charts, [str(d) for d in args.dirs], args.title))
        console.print(f"HTML report written to {path}", highlight=False)
    return table


def console() -> Console:
    """Rich's console; piped output (files, CI logs) gets a wide table instead of one folded to 80 columns."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=200 if wide else None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> None:
        compare(args, console())

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
