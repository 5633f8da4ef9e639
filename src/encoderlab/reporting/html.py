"""A self-contained HTML report: the comparison table, failures and learning curves in one file.

No external resources: styles and the small script are inline and charts are PNG data URIs, so the file
can be mailed, attached to an issue or opened from a cluster's scratch space.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from html import escape

from encoderlab.reporting.table import Table

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; } th, td { padding: .3em .7em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; cursor: pointer; text-align: left; } td.num { text-align: right; }
tr.failed td { color: #a00; } code { background: #f4f4f4; padding: 0 .3em; }
#filter { margin: .5em 0; padding: .3em; width: 24em; }
figure { display: inline-block; margin: .5em; } img { max-width: 640px; border: 1px solid #eee; }
"""

# Click a header to sort by it; type to filter rows. Keeps "#shown" in step with the visible rows.
SCRIPT = """
(function () {
  const table = document.getElementById("runs");
  const body = table.tBodies[0];
  const shown = document.getElementById("shown");
  function count() {
    const visible = Array.from(body.rows).filter(r => r.style.display !== "none").length;
    shown.textContent = visible + " of " + body.rows.length + " rows shown";
    table.dataset.visibleRows = visible;
  }
  document.getElementById("filter").addEventListener("input", e => {
    const needle = e.target.value.toLowerCase();
    for (const row of body.rows) {
      row.style.display = row.textContent.toLowerCase().includes(needle) ? "" : "none";
    }
    count();
  });
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => th.addEventListener("click", () => {
    const dir = th.dataset.dir === "asc" ? -1 : 1;
    th.dataset.dir = dir === 1 ? "asc" : "desc";
    const key = r => r.cells[i].dataset.value ?? r.cells[i].textContent;
    Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      return dir * (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny);
    }).forEach(r => body.appendChild(r));
  }));
  count();
})();
"""


def render_html(table: Table, charts: Mapping[str, bytes], sources: list[str], title: str = "") -> str:
    runs_word = "run" if table.n_runs == 1 else "runs"
    title = title or f"encoderlab comparison: {table.n_runs} {runs_word}"
    head = ["run", *(["n"] if table.grouped else []), "status", *table.param_keys, *table.metrics]
    rows = []
    for row in table.rows:
        cells = [f"<td>{escape(row.name)}</td>"]
        if table.grouped:
            cells.append(f'<td class="num">{row.n}</td>')
        cells.append(f"<td>{escape(row.status)}</td>")
        cells += [
            f"<td>{escape(str(row.params.get(k)) if row.params.get(k) is not None else '—')}</td>"
            for k in table.param_keys
        ]
        for metric in table.metrics:
            mean = row.mean(metric)
            value = "" if mean is None else f' data-value="{mean!r}"'
            cells.append(f'<td class="num"{value}>{escape(row.cell(metric))}</td>')
        css = ' class="failed"' if row.failed else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    common = " ".join(
        f"<code>{escape(f'~{k}' if v == '<deleted>' else f'{k}={v}')}</code>" for k, v in table.common.items()
    )
    failures = [
        f"<li><b>{escape(run.name)}</b> ({escape(run.status)}) "
        f"<code>{escape(' '.join(run.override_args))}</code><br>"
        f"{escape(run.error or 'no error recorded')}</li>"
        for row in table.rows
        for run in row.failed
    ]
    figures = [
        f'<figure><img alt="{escape(metric)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{escape(metric)}</figcaption></figure>"
        for metric, png in charts.items()
    ]
    grouped_note = " (grouped by seed: mean ± std over seeds)" if table.grouped else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p id="summary" data-run-count="{table.n_runs}">{table.n_runs} {runs_word}, '
        f"{len(table.rows)} rows{escape(grouped_note)}; generated {datetime.now():%Y-%m-%d %H:%M}</p>",
        f"<p>from {', '.join(f'<code>{escape(s)}</code>' for s in sources)}</p>",
        f"<p>common overrides: {common or '—'}</p>" if table.common or table.n_runs > 1 else "",
        '<input id="filter" type="search" placeholder="filter rows">',
        '<p id="shown"></p>',
        f'<table id="runs" data-run-count="{table.n_runs}"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>",
    ]
    if failures:
        parts += ["<h2>Failed runs</h2>", f'<ul id="failures">{"".join(failures)}</ul>']
    if figures:
        parts += ["<h2>Learning curves</h2>", f'<div id="curves">{"".join(figures)}</div>']
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(p for p in parts if p)
