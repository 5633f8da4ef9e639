"""The comparison table: one row per run (or per group of runs that differ only in their seed).

Columns are the final metrics (``metrics.json``; the metric the runs were optimized for first) and the
parameters that differ between runs, as the values each run actually used (:meth:`Run.effective`: what its
components recorded, else its overrides, filled in from its saved config where a run did not override that
key). Runs of different tasks (pre-training, classification, ...) get a table each (:func:`build_tables`),
so metrics of the same name but different meaning never share a column.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.run.read import Run

SEED = "seed"
# Metric names with these words get better as they go down; everything else (acc, f1, ...) as it goes up.
LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "error", "seconds", "time/")
HIDDEN_BY_DEFAULT = ("epoch",)
LABEL_WIDTH = 64  # a curve's legend entry is cut here


@dataclass
class Row:
    name: str
    params: dict[str, str | None]
    runs: list[Run]
    values: dict[str, list[float]] = field(default_factory=dict)  # metric → one value per completed run
    number: int = 0  # the row's number in the whole comparison: the key of every part of the report

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.status != "completed"]

    @property
    def status(self) -> str:
        bad = self.failed
        if not bad:
            return "completed"
        if len(self.runs) == 1:
            return bad[0].status
        return f"{len(bad)}/{len(self.runs)} not completed"

    def mean(self, metric: str) -> float | None:
        values = self.values.get(metric) or []
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        values = self.values.get(metric) or []
        return statistics.stdev(values) if len(values) > 1 else None

    def cell(self, metric: str) -> str:
        mean = self.mean(metric)
        if mean is None:
            return "—"
        std = self.std(metric)
        return format_number(mean) if std is None else f"{format_number(mean)} ± {format_number(std)}"


@dataclass
class Table:
    rows: list[Row]
    param_keys: list[str]  # parameters whose values in effect differ between the runs shown
    common: dict[str, str]  # overrides every run shares
    metrics: list[str]
    grouped: bool
    n_runs: int
    task: str = ""  # what the runs trained (Run.task_kind); "" when unknown
    optimized: list[str] = field(default_factory=list)  # the metrics the runs were optimized for
    same_in_effect: list[str] = field(default_factory=list)  # configured differently, used the same
    places: dict[Path, str] = field(default_factory=dict)  # compared run directories → their names

    @property
    def any_failed(self) -> bool:
        return any(row.failed for row in self.rows)

    def text(self, value: str | None) -> str:
        """A parameter value for display: ``—`` for none; a path into a compared run as ``<run>/<rest>``."""
        if value is None:
            return "—"
        if "/" in value and self.places:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else path.resolve()
            for place, name in sorted(self.places.items(), key=lambda item: -len(item[0].parts)):
                if path == place or place in path.parents:
                    rest = path.relative_to(place)
                    return name if rest == Path() else f"{name}/{rest.as_posix()}"
        return value

    def short_keys(self) -> dict[str, str]:
        """Each differing parameter by its last part (``lr`` for ``optimizer.lr``) where that is unambiguous."""
        last = Counter(k.rsplit(".", 1)[-1] for k in self.param_keys)
        return {k: k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k for k in self.param_keys}

    def label_keys(self) -> list[str]:
        """The fewest differing parameters that tell the rows apart as well as all of them do: group choices
        (``freeze``, ``init``, ``seed``) first, then the keys with the most distinct values; a key that
        splits no rows further (``init.path`` beside ``init``) is left out."""

        def distinct(keys: list[str]) -> int:
            return len({tuple(canonical(row.params.get(k)) for k in keys) for row in self.rows})

        ranked = sorted(self.param_keys, key=lambda k: ("." in k, -distinct([k])))
        chosen: list[str] = []
        for key in ranked:
            if distinct(chosen) == distinct(self.param_keys):
                break
            if distinct([*chosen, key]) > distinct(chosen):
                chosen.append(key)
        return chosen

    def curve_label(self, row: Row, run: Run) -> str:
        """What tells ``run`` apart in a chart: its row number and differing values (``#2 freeze=encoder``)."""
        short = self.short_keys()
        parts = [f"{short[k]}={self.text(row.params[k])}" for k in self.label_keys() if row.params.get(k)]
        if self.grouped and run.seed is not None:
            parts.append(f"seed={run.seed}")
        label = f"#{row.number} " + (" ".join(parts) if parts else run.name)
        return label if len(label) <= LABEL_WIDTH else label[: LABEL_WIDTH - 1] + "…"


def format_number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value.is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4f}"


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def canonical(value: str | None) -> str | None:
    """``3e-4`` and ``0.0003`` (or ``1`` and ``1.0``, ``True`` and ``true``, ``None`` and ``null``) are the
    same value when comparing runs."""
    if value is None or value.lower() in {"none", "null", "~"}:
        return None
    if value.lower() in {"true", "false"}:
        return value.lower()
    try:
        return repr(float(value))
    except ValueError:
        return value


def _same(a: str | None, b: str) -> bool:
    """A run's value ``a`` is the filter's ``b`` (an empty ``b`` means none)."""
    return canonical(a) == canonical(b or None)


def parse_filters(filters: Sequence[str]) -> list[tuple[str, bool, str]]:
    parsed = []
    for text in filters:
        key, op, value = text.partition("!=") if "!=" in text else text.partition("=")
        if not op or not key:
            raise UserError(
                f"--filter {text!r} is not KEY=VALUE or KEY!=VALUE — e.g. --filter optimizer.lr=1e-4"
            )
        parsed.append((key.strip(), op == "=", value.strip()))
    return parsed


def apply_filters(runs: list[Run], filters: Sequence[str]) -> list[Run]:
    """Keep runs whose parameter (override, group choice or config value, or the value in effect that the
    table shows; or ``status``) matches."""

    def matches(run: Run, key: str, value: str) -> bool:
        if key == "status":
            return _same(run.status, value)
        return _same(run.param(key), value) or _same(run.effective(key), value)

    kept = runs
    for key, equal, value in parse_filters(filters):
        kept = [r for r in kept if matches(r, key, value) == equal]
    return kept


def optimized_metrics(runs: list[Run]) -> list[str]:
    """The metrics the runs were optimized for (``optimized_metric`` of their configs), most common first."""
    counts = Counter(r.optimized_metric for r in runs if r.optimized_metric)
    return [metric for metric, _ in counts.most_common()]


def default_metrics(runs: list[Run]) -> list[str]:
    """The metric the runs were optimized for, then their other val/ and test/ metrics (every final metric
    when they have none); --metrics picks others."""
    names = {m for r in runs for m in r.metrics if m not in HIDDEN_BY_DEFAULT}
    order = {"val": 0, "test": 1, "train": 2}
    shown = {m for m in names if m.split("/")[0] in {"val", "test"}} or names
    first = [m for m in optimized_metrics(runs) if m in names]
    return first + sorted(shown - set(first), key=lambda m: (order.get(m.split("/")[0], 3), m))


def _logged(runs: list[Run], metric: str) -> bool:
    return any(metric in r.metrics or r.series(metric) for r in runs)


def build_table(
    runs: list[Run],
    metrics: Sequence[str] | None = None,
    group_by_seed: bool = False,
    sort: str | None = None,
    reverse: bool = False,
) -> Table:
    """One table of ``runs`` (of one task; :func:`build_tables` splits runs by task)."""
    metrics = list(metrics) if metrics else default_metrics(runs)
    keys = sorted({k for r in runs for k in r.overrides})
    differ = [k for k in keys if len({canonical(r.effective(k)) for r in runs}) > 1]
    same_in_effect = [k for k in keys if k not in differ and len({canonical(r.param(k)) for r in runs}) > 1]
    common = {
        k: runs[0].overrides[k]
        for k in keys
        if k not in differ and all(k in r.overrides for r in runs) and runs
    }
    if group_by_seed:
        param_keys = [k for k in differ if k != SEED]
        groups: dict[tuple, list[Run]] = {}
        for run in runs:
            groups.setdefault(tuple(canonical(run.effective(k)) for k in param_keys), []).append(run)
        rows = [
            Row(
                name=members[0].name if len(members) == 1 else ", ".join(r.name for r in members),
                params={k: members[0].effective(k) for k in param_keys},
                runs=members,
            )
            for members in groups.values()
        ]
    else:
        param_keys = differ
        rows = [Row(name=r.name, params={k: r.effective(k) for k in differ}, runs=[r]) for r in runs]
    for row in rows:
        for metric in metrics:
            row.values[metric] = [
                r.metrics[metric] for r in row.runs if r.status == "completed" and metric in r.metrics
            ]
    if sort:
        rows = sort_rows(rows, sort, reverse)
    for number, row in enumerate(rows, start=1):
        row.number = number
    table = Table(rows, param_keys, common, metrics, group_by_seed, n_runs=len(runs))
    table.task = runs[0].task_kind if len({r.task_kind for r in runs}) == 1 else ""  # mixed: build_tables
    table.optimized = [m for m in optimized_metrics(runs) if m in metrics]
    table.same_in_effect = same_in_effect
    table.places = {r.path.resolve(): r.name for r in runs}
    return table


def build_tables(
    runs: list[Run],
    metrics: Sequence[str] | None = None,
    group_by_seed: bool = False,
    sort: str | None = None,
    reverse: bool = False,
) -> list[Table]:
    """One table per task (in the order the runs come), rows numbered through all of them.

    ``metrics`` (``--metrics``) keeps, per table, those its runs logged (all of them if they logged none);
    ``sort`` orders every table that has that metric or parameter and is an error only if none has it.
    """
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        by_task.setdefault(run.task_kind, []).append(run)
    tables, refused = [], []
    for members in by_task.values():
        shown = ([m for m in metrics if _logged(members, m)] or list(metrics)) if metrics else None
        try:
            tables.append(build_table(members, shown, group_by_seed, sort, reverse))
        except UserError as err:  # this task's runs lack the --sort key: keep their order
            refused.append(err)
            tables.append(build_table(members, shown, group_by_seed))
    if refused and len(refused) == len(tables):
        raise refused[0]
    places = {r.path.resolve(): r.name for r in runs}
    number = 0
    for table in tables:
        table.places = places  # a fine-tune's init.path names the pre-training run of another table
        for row in table.rows:
            number += 1
            row.number = number
    return tables


def sort_rows(rows: list[Row], key: str, reverse: bool = False) -> list[Row]:
    """Best first by a metric (direction from its name), or by a parameter; rows without it go last."""
    if any(key in row.values or any(key in r.metrics for r in row.runs) for row in rows):
        sign = 1 if lower_is_better(key) else -1
        sign = -sign if reverse else sign
        present = [r for r in rows if _metric(r, key) is not None]
        missing = [r for r in rows if _metric(r, key) is None]
        return sorted(present, key=lambda r: sign * _metric(r, key)) + missing
    if all(row.runs[0].effective(key) is None for row in rows):
        raise UserError(f"--sort {key!r}: no run has that metric or parameter — use a column of the table")
    return sorted(rows, key=lambda r: _natural(r.params.get(key, r.runs[0].effective(key))), reverse=reverse)


def _metric(row: Row, key: str) -> float | None:
    if key not in row.values:
        values = [r.metrics[key] for r in row.runs if r.status == "completed" and key in r.metrics]
        return statistics.fmean(values) if values else None
    return row.mean(key)


def _natural(value: str | None) -> tuple:
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
