"""A self-contained HTML report: the comparison tables, failures and charts in one file.

No external resources: styles and the small script are inline and charts are PNG data URIs, so the file
can be mailed, attached to an issue or opened from a cluster's scratch space.

Per task a section: the metrics table first (row number, run name, the metric the runs were optimized for,
the other metrics), narrow enough that the first metric shows in an 800-px window, then the parameters that
differ in a table of their own, keyed by row number, that scrolls sideways inside its box, not the page.
The charts follow all tables, grouped by task.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

from encoderlab.reporting.table import Row, Table

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; } h3 { font-size: 1em; }
p, li { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; } th, td { padding: .3em .6em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; cursor: pointer; text-align: left; white-space: nowrap; }
td { white-space: nowrap; } td.num { text-align: right; }
td.name { max-width: 16em; overflow: hidden; text-overflow: ellipsis; }
td.value { white-space: normal; overflow-wrap: break-word; max-width: 28em; }
th.optimized { background: #e4eefb; }
tr.failed td { color: #a00; } code { background: #f4f4f4; padding: 0 .3em; }
#filter { margin: .5em 0; padding: .3em; width: 24em; max-width: 90%; }
figure { display: inline-block; margin: .5em; max-width: 100%; vertical-align: top; }
img { width: 560px; max-width: 100%; height: auto; border: 1px solid #eee; }
"""

# Click a header to sort its table; type to filter rows (a row number's metrics and parameters together).
# Keeps "#shown" and each metrics table's data-visible-rows in step with the visible rows.
SCRIPT = """
(function () {
  const metricTables = Array.from(document.querySelectorAll("table.metrics"));
  const shown = document.getElementById("shown");
  const rowsOf = n => document.querySelectorAll('table.runs tbody tr[data-row="' + n + '"]');
  function count() {
    let visible = 0, total = 0;
    for (const table of metricTables) {
      const rows = Array.from(table.tBodies[0].rows);
      const seen = rows.filter(r => r.style.display !== "none").length;
      table.dataset.visibleRows = seen;
      visible += seen;
      total += rows.length;
    }
    shown.textContent = visible + " of " + total + " rows shown";
  }
  document.getElementById("filter").addEventListener("input", e => {
    const needle = e.target.value.toLowerCase();
    for (const table of metricTables) {
      for (const row of table.tBodies[0].rows) {
        const parts = Array.from(rowsOf(row.dataset.row));
        const text = parts.map(r => r.textContent).join(" ").toLowerCase();
        parts.forEach(r => { r.style.display = text.includes(needle) ? "" : "none"; });
      }
    }
    count();
  });
  for (const table of document.querySelectorAll("table.runs")) {
    const body = table.tBodies[0];
    Array.from(table.tHead.rows[0].cells).forEach((th, i) => th.addEventListener("click", () => {
      const dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      const key = r => r.cells[i].dataset.value ?? r.cells[i].textContent;
      Array.from(body.rows).sort((a, b) => {
        const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
        return dir * (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny);
      }).forEach(r => body.appendChild(r));
    }));
  }
  count();
})();
"""


def _name_cell(row: Row) -> str:
    paths = ", ".join(str(run.path) for run in row.runs)
    return f'<td class="name" title="{escape(paths)}">{escape(row.name)}</td>'


def _row_open(row: Row) -> str:
    css = ' class="failed"' if row.failed else ""
    return f'<tr data-row="{row.number}"{css}>'


def metrics_table(table: Table) -> str:
    head = ['<th class="num">#</th>', "<th>run</th>", *(['<th class="num">n</th>'] if table.grouped else [])]
    head += [
        f'<th class="metric{" optimized" if m in table.optimized else ""}" data-metric="{escape(m)}">'
        f"{escape(m)}</th>"
        for m in table.metrics
    ]
    head.append("<th>status</th>")
    rows = []
    for row in table.rows:
        cells = [f'<td class="num">{row.number}</td>', _name_cell(row)]
        if table.grouped:
            cells.append(f'<td class="num">{row.n}</td>')
        for metric in table.metrics:
            mean = row.mean(metric)
            value = "" if mean is None else f' data-value="{mean!r}"'
            cells.append(f'<td class="num"{value}>{escape(row.cell(metric))}</td>')
        cells.append(f"<td>{escape(row.status)}</td>")
        rows.append(_row_open(row) + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="runs metrics" data-run-count="{table.n_runs}">'
        f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def params_table(table: Table) -> str:
    head = '<th class="num">#</th><th>run</th>' + "".join(f"<th>{escape(k)}</th>" for k in table.param_keys)
    rows = [
        _row_open(row)
        + f'<td class="num">{row.number}</td>'
        + _name_cell(row)
        + "".join(f'<td class="value">{escape(table.text(row.params.get(k)))}</td>' for k in table.param_keys)
        + "</tr>"
        for row in table.rows
    ]
    return (
        '<h3>Parameters that differ</h3><div class="scroll"><table class="runs params">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def figures(charts: Mapping[str, bytes]) -> str:
    return "".join(
        f'<figure><img alt="{escape(metric)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{escape(metric)}</figcaption></figure>"
        for metric, png in charts.items()
    )


def section(table: Table) -> str:
    runs = f"{table.n_runs} run{'s' if table.n_runs != 1 else ''}"
    title = " · ".join(
        [f"{table.task}: {runs}" if table.task else runs]
        + (["optimized for " + ", ".join(table.optimized)] if table.optimized else [])
    )
    parts = [f"<h2>{escape(title)}</h2>", metrics_table(table)]
    if table.common:
        common = " ".join(
            f"<code>{escape(f'~{k}' if v == '<deleted>' else f'{k}={v}')}</code>"
            for k, v in table.common.items()
        )
        parts.append(f"<p>common overrides: {common}</p>")
    if table.same_in_effect:
        same = " ".join(f"<code>{escape(k)}</code>" for k in table.same_in_effect)
        parts.append(f"<p>configured differently, same value in effect: {same}</p>")
    if table.param_keys:
        parts.append(params_table(table))
    return f'<section class="task" data-task="{escape(table.task)}">{"".join(parts)}</section>'


def chart_sections(tables: list[Table], charts: list[Mapping[str, bytes]]) -> list[str]:
    """The charts after every table, a group per task (``train/acc`` of pre-training and of a classifier
    are different charts under different headings)."""
    named = len(tables) > 1
    parts = []
    for table, pngs in zip(tables, charts, strict=True):
        if pngs:
            heading = f"<h3>{escape(table.task or 'runs')}</h3>" if named else ""
            parts.append(
                f'{heading}<div class="curves" data-task="{escape(table.task)}">{figures(pngs)}</div>'
            )
    return ["<h2>Learning curves</h2>", *parts] if parts else []


def render_html(
    tables: Table | Sequence[Table],
    charts: Mapping[str, bytes] | Sequence[Mapping[str, bytes]] = (),
    sources: Sequence[str] = (),
    title: str = "",
) -> str:
    """The report of ``tables`` (one per task), with ``charts`` (``{metric: PNG}``, one mapping per table;
    a single mapping goes with a single table)."""
    tables = [tables] if isinstance(tables, Table) else list(tables)
    per_table = [charts] if isinstance(charts, Mapping) else list(charts)
    per_table += [{}] * (len(tables) - len(per_table))
    n_runs = sum(t.n_runs for t in tables)
    n_rows = sum(len(t.rows) for t in tables)
    runs_word = "run" if n_runs == 1 else "runs"
    title = title or f"encoderlab comparison: {n_runs} {runs_word}"
    grouped = any(t.grouped for t in tables)
    grouped_note = " (grouped by seed: mean ± std over seeds)" if grouped else ""
    failures = [
        f"<li><b>#{row.number} {escape(run.name)}</b> ({escape(run.status)}) "
        f"<code>{escape(' '.join(run.override_args))}</code><br>"
        f"{escape(run.error or 'no error recorded')}</li>"
        for table in tables
        for row in table.rows
        for run in row.failed
    ]
    legend = "".join(
        f"<li>#{row.number} {escape(', '.join(str(run.path) for run in row.runs))}</li>"
        for table in tables
        for row in table.rows
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p id="summary" data-run-count="{n_runs}">{n_runs} {runs_word}, '
        f"{n_rows} rows{escape(grouped_note)}; generated {datetime.now():%Y-%m-%d %H:%M}</p>",
        f"<p>from {', '.join(f'<code>{escape(s)}</code>' for s in sources)}</p>" if sources else "",
        '<input id="filter" type="search" placeholder="filter rows">',
        '<p id="shown"></p>',
        *(section(table) for table in tables),
        f"<details><summary>run directories</summary><ul>{legend}</ul></details>",
    ]
    if failures:
        parts += ["<h2>Failed runs</h2>", f'<ul id="failures">{"".join(failures)}</ul>']
    parts += chart_sections(tables, per_table)
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(p for p in parts if p)
