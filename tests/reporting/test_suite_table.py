"""The suite table from cells: medians over seeds, the Average column, failed cells and published rows."""

from __future__ import annotations

import statistics

import pytest

from encoderlab.reporting.suite_table import (
    build_suite_table,
    problem_lines,
    render_suite_html,
    rich_suite_table,
    suite_png,
)
from encoderlab.suite.published import ROWS, parse_published
from encoderlab.suite.results import Cell
from encoderlab.suite.spec import SuiteTask

SST2 = SuiteTask("sst2", "SST-2", "finetune_sst2", (), ("val/acc",))
MRPC = SuiteTask("mrpc", "MRPC", "finetune_mrpc", (), ("val/f1", "val/acc"))
SEEDS = (1, 2, 3)


def cell(source, task, values=None, errors=None):
    found = Cell(source, task.name, task.metrics, SEEDS, errors=dict(errors or {}))
    for metric, per_seed in (values or {}).items():
        found.values[metric] = dict(per_seed)
    return found


@pytest.fixture
def table():
    cells = [
        cell("tiny", SST2, {"val/acc": {1: 0.80, 2: 0.62, 3: 0.91}}),
        cell("tiny", MRPC, {"val/f1": {1: 0.81, 2: 0.79, 3: 0.70}, "val/acc": {1: 0.70, 2: 0.72, 3: 0.60}}),
        cell("mini", SST2, {"val/acc": {1: 0.85, 2: 0.87}}, errors={3: "RuntimeError: loss is nan"}),
        cell("mini", MRPC, errors={s: "UserError: data.train_file not found — set it" for s in SEEDS}),
    ]
    published = [ROWS[k] for k in parse_published("bert-tiny,minilm-l6-h384")]
    return build_suite_table("suite", ["tiny", "mini"], [SST2, MRPC], cells, published, SEEDS)


def test_medians_average_and_failed_cells(table):
    tiny, mini, bert, minilm = table.rows
    assert table.headers == ["SST-2 val acc", "MRPC val f1/acc"]
    assert tiny.texts == ["80.0", "79.0/70.0"]  # the median over seeds of each metric
    expected = statistics.fmean([0.80, statistics.fmean([0.79, 0.70])])  # MRPC's score: mean of F1 and acc
    assert tiny.average == pytest.approx(expected)
    assert mini.texts[0] == "86.0* [1]" and mini.texts[1] == "failed [2]"
    assert mini.average is None  # a row without every task has no average
    assert problem_lines(table) == [
        "[1] mini / SST-2: 2/3 seeds — seed 3: RuntimeError: loss is nan",
        "[2] mini / MRPC: failed — seeds 1, 2, 3: UserError: data.train_file not found — set it",
    ]
    assert table.incomplete and table.status == "failed"


def test_published_rows_are_marked_with_source_and_split(table):
    bert, minilm = table.rows[2:]
    assert bert.kind == minilm.kind == "published"
    assert bert.name == "BERT-Tiny L2/H128 (published, GLUE test)" and bert.texts == ["83.2", "81.1/71.1"]
    assert bert.average == pytest.approx(statistics.fmean([0.832, statistics.fmean([0.811, 0.711])]))
    assert minilm.name.endswith("(published, GLUE dev)") and minilm.texts == [
        "91.5",
        "",
    ]  # no MRPC metric known
    assert minilm.average is None
    assert any("Turc et al. 2019" in n and "GLUE test" in n for n in table.notes)


def test_html_png_and_terminal(table):
    cells = [cell("tiny", SST2, {"val/acc": {1: 0.8, 2: 0.6, 3: 0.9}})]
    html = render_suite_html(table, suite_png(table), cells)
    assert html.count('<tr class="published">') == 2 and '<span class="tag">published</span>' in html
    assert '<td class="num failed"' in html and "failed [2]" in html
    assert "[2] mini / MRPC: failed — seeds 1, 2, 3: UserError: data.train_file not found" in html
    assert 'title="seed 1: 80.0; seed 2: 62.0; seed 3: 91.0"' in html  # each seed's value on hover
    assert "<td>seed 1: 80.0; seed 2: 60.0; seed 3: 90.0</td>" in html  # the cells listed below
    assert "data:image/png;base64,iVBOR" in html  # the chart inside the page: nothing to fetch
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(rich_suite_table(table))
    text = console.export_text()
    assert "failed [2]" in text and "Average" in text and "BERT-Tiny" in text


def test_unknown_published_row_is_refused():
    from encoderlab.errors import UserError

    with pytest.raises(UserError, match="'bert-huge' is not a published row"):
        parse_published("bert-tiny,bert-huge")
    assert parse_published("none") == () and parse_published("all") == tuple(ROWS)
