"""The comparison in a terminal: tables laid out for the console's width.

Per task: a heading, then one table of row number, run name and metrics (the metric the runs were
optimized for first) followed by the parameters that differ, when all of it fits the width. When it does
not, the metrics come first (split into several tables keyed by row number if even they do not fit) and
the parameters follow below, keyed by row number: as columns while they fit, else transposed (a column per
row) when there are few rows, else in several tables. Run names are never wrapped: a name longer than a
quarter of the width is cut in its middle, and the full paths of those rows are listed under the tables.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table as RichTable
from rich.text import Text

from encoderlab.reporting.table import Row, Table

MIN_NAME_WIDTH, MAX_NAME_WIDTH = 8, 32  # a run name's column; wider names are cut and listed in full below
TRANSPOSE_MAX_ROWS = 6  # more rows than this read better as several tables of parameter columns
TRANSPOSED_VALUE_WIDTH = 14  # the least room a transposed value column folds into
NATURAL = 10_000  # a width nothing here reaches: measuring with it gives a table's unwrapped width
PIPED_WIDTH = 200  # output to a file or pipe (CI logs, `| less`) has no width: lay it out this wide


def output_console() -> Console:
    """Rich's console at the terminal's width (``COLUMNS`` when set); output to a file or pipe gets
    ``PIPED_WIDTH`` columns instead of rich's 80, so tables in logs keep one line per row."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=PIPED_WIDTH if piped else None)


@dataclass
class Column:
    header: str
    cells: list[str]
    justify: str = "left"
    style: str | None = None
    wrap: bool = False  # parameter values may wrap (a long path); names and numbers never do


def shorten(name: str, limit: int) -> str:
    """``name`` cut in its middle to ``limit`` characters: both ends usually tell runs apart."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 3
    return name[:head] + "…" + name[len(name) - (limit - 1 - head) :]


def name_width(tables: list[Table], width: int) -> int:
    longest = max((len(row.name) for table in tables for row in table.rows), default=MIN_NAME_WIDTH)
    return max(MIN_NAME_WIDTH, min(longest, width // 4, MAX_NAME_WIDTH))


def heading(table: Table) -> Text:
    runs = f"{table.n_runs} run{'s' if table.n_runs != 1 else ''}"
    parts = [f"{table.task}: {runs}" if table.task else runs]
    if table.grouped:
        parts.append(f"{len(table.rows)} configurations (mean ± std over seeds)")
    if table.optimized:
        parts.append("optimized for " + ", ".join(table.optimized))
    return Text(" · ".join(parts), style="bold")


def metric_columns(table: Table, names: list[str]) -> tuple[list[Column], list[Column]]:
    """(the key columns: row number, run name, n; the metric columns and, for failures, the status)."""
    key = [
        Column("#", [str(row.number) for row in table.rows], justify="right"),
        Column("run", names),
    ]
    if table.grouped:
        key.append(Column("n", [str(row.n) for row in table.rows], justify="right"))
    values = [
        Column(metric, [row.cell(metric) for row in table.rows], justify="right", style="bold")
        for metric in table.metrics
    ]
    if table.any_failed:
        values.append(Column("status", [row.status for row in table.rows]))
    return key, values


def param_columns(table: Table) -> list[Column]:
    return [
        Column(key, [table.text(row.params.get(key)) for row in table.rows], style="cyan", wrap=True)
        for key in table.param_keys
    ]


def rich_table(columns: list[Column], rows: list[Row]) -> RichTable:
    rich = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        rich.add_column(
            column.header,
            justify=column.justify,
            style=column.style,
            no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ellipsis",
        )
    for i, row in enumerate(rows):
        # Text, not markup: override values such as tags=[a,b] or logger=[csv,wandb] must show as typed.
        rich.add_row(*(Text(c.cells[i]) for c in columns), style="red" if row.failed else None)
    return rich


def transposed(table: Table) -> RichTable:
    """Parameters as rows, a column per table row (``#1``, ``#2``, ...): for few runs and many parameters."""
    rich = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    rich.add_column("parameter", style="cyan", no_wrap=True)
    for row in table.rows:
        rich.add_column(f"#{row.number}", overflow="fold", style="red" if row.failed else None)
    for key in table.param_keys:
        rich.add_row(Text(key), *(Text(table.text(row.params.get(key))) for row in table.rows))
    return rich


class Layout:
    """Decides, by measuring with rich itself, which columns go into which table at ``width``."""

    def __init__(self, console: Console, width: int) -> None:
        self.console, self.width = console, width

    def measure(self, renderable: RenderableType) -> Measurement:
        return Measurement.get(self.console, self.console.options.update_width(NATURAL), renderable)

    def fits(self, columns: list[Column], rows: list[Row]) -> bool:
        return self.measure(rich_table(columns, rows)).maximum <= self.width

    def chunks(self, key: list[Column], columns: list[Column], rows: list[Row]) -> Iterator[list[Column]]:
        """``columns`` in order, as many per table (after the ``key`` columns) as fit the width."""
        current: list[Column] = []
        for column in columns:
            if current and not self.fits([*key, *current, column], rows):
                yield current
                current = []
            current.append(column)
        if current:
            yield current

    def section(self, table: Table, name_limit: int) -> list[RenderableType]:
        rows = table.rows
        key, values = metric_columns(table, [shorten(row.name, name_limit) for row in rows])
        params = param_columns(table)
        if self.fits([*key, *values, *params], rows):
            return [heading(table), rich_table([*key, *values, *params], rows)]
        out: list[RenderableType] = [heading(table)]
        out += [rich_table([*key, *part], rows) for part in self.chunks(key, values, rows)]
        if not params:
            return out
        out.append(Text("parameters that differ", style="bold"))
        number = key[:1]
        parts = list(self.chunks(number, params, rows))
        if len(parts) == 1:
            return [*out, rich_table([*number, *parts[0]], rows)]
        flipped = transposed(table)
        names = max(len(k) for k in table.param_keys) + 2
        if self.measure(flipped).maximum <= self.width or (
            len(rows) <= TRANSPOSE_MAX_ROWS and names + len(rows) * TRANSPOSED_VALUE_WIDTH <= self.width
        ):
            return [*out, flipped]
        return [*out, *(rich_table([*number, *part], rows) for part in parts)]


def render(tables: list[Table], console: Console) -> list[RenderableType]:
    """Everything to print for ``tables`` (one per task) at the console's width."""
    layout = Layout(console, console.width)
    limit = name_width(tables, console.width)
    out: list[RenderableType] = []
    for table in tables:
        if out:
            out.append(Text(""))
        out += layout.section(table, limit)
        notes = []
        if table.common:
            notes.append("common overrides: " + " ".join(f"{k}={v}" for k, v in table.common.items()))
        if table.same_in_effect:
            notes.append("configured differently, same value in effect: " + " ".join(table.same_in_effect))
        out += [Text(note) for note in notes]
        cut = [row for row in table.rows if len(row.name) > limit]
        out += [Text(f"#{row.number} " + ", ".join(str(r.path) for r in row.runs)) for row in cut]
    return out
