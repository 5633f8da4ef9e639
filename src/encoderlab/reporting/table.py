"""The comparison table: one row per run (or per group of runs that differ only in their seed).

Columns are the parameters that differ between runs (from each run's overrides, filled in from its saved
config where a run did not override that key) and the final metrics (``metrics.json``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from encoderlab.errors import UserError
from encoderlab.run.read import Run

SEED = "seed"
# Metric names with these words get better as they go down; everything else (acc, f1, ...) as it goes up.
LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "error", "seconds", "time/")
HIDDEN_BY_DEFAULT = ("epoch",)


@dataclass
class Row:
    name: str
    params: dict[str, str | None]
    runs: list[Run]
    values: dict[str, list[float]] = field(default_factory=dict)  # metric → one value per completed run

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
    param_keys: list[str]  # parameters that differ between the runs shown
    common: dict[str, str]  # overrides every run shares
    metrics: list[str]
    grouped: bool
    n_runs: int

    @property
    def any_failed(self) -> bool:
        return any(row.failed for row in self.rows)


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
    """``3e-4`` and ``0.0003`` (or ``1`` and ``1.0``) are the same value when comparing runs."""
    if value is None:
        return None
    try:
        return repr(float(value))
    except ValueError:
        return value


def _same(a: str | None, b: str) -> bool:
    if a is None:
        return b in {"", "null", "None"}
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


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
    """Keep runs whose parameter (override, group choice or config value; or ``status``) matches."""
    kept = runs
    for key, equal, value in parse_filters(filters):
        kept = [r for r in kept if _same(r.status if key == "status" else r.param(key), value) == equal]
    return kept


def default_metrics(runs: list[Run]) -> list[str]:
    """The runs' val/ and test/ metrics (every final metric when they have none); --metrics picks others."""
    names = {m for r in runs for m in r.metrics if m not in HIDDEN_BY_DEFAULT}
    order = {"val": 0, "test": 1, "train": 2}
    shown = {m for m in names if m.split("/")[0] in {"val", "test"}} or names
    return sorted(shown, key=lambda m: (order.get(m.split("/")[0], 3), m))


def build_table(
    runs: list[Run],
    metrics: Sequence[str] | None = None,
    group_by_seed: bool = False,
    sort: str | None = None,
    reverse: bool = False,
) -> Table:
    metrics = list(metrics) if metrics else default_metrics(runs)
    keys = sorted({k for r in runs for k in r.overrides})
    differ = [k for k in keys if len({canonical(r.param(k)) for r in runs}) > 1]
    common = {
        k: runs[0].overrides[k]
        for k in keys
        if k not in differ and all(k in r.overrides for r in runs) and runs
    }
    if group_by_seed:
        param_keys = [k for k in differ if k != SEED]
        groups: dict[tuple, list[Run]] = {}
        for run in runs:
            groups.setdefault(tuple(canonical(run.param(k)) for k in param_keys), []).append(run)
        rows = [
            Row(
                name=members[0].name if len(members) == 1 else ", ".join(r.name for r in members),
                params={k: members[0].param(k) for k in param_keys},
                runs=members,
            )
            for members in groups.values()
        ]
    else:
        param_keys = differ
        rows = [Row(name=r.name, params={k: r.param(k) for k in differ}, runs=[r]) for r in runs]
    for row in rows:
        for metric in metrics:
            row.values[metric] = [
                r.metrics[metric] for r in row.runs if r.status == "completed" and metric in r.metrics
            ]
    if sort:
        rows = sort_rows(rows, sort, reverse)
    return Table(rows, param_keys, common, metrics, group_by_seed, n_runs=len(runs))


def sort_rows(rows: list[Row], key: str, reverse: bool = False) -> list[Row]:
    """Best first by a metric (direction from its name), or by a parameter; rows without it go last."""
    if any(key in row.values or any(key in r.metrics for r in row.runs) for row in rows):
        sign = 1 if lower_is_better(key) else -1
        sign = -sign if reverse else sign
        present = [r for r in rows if _metric(r, key) is not None]
        missing = [r for r in rows if _metric(r, key) is None]
        return sorted(present, key=lambda r: sign * _metric(r, key)) + missing
    if all(row.runs[0].param(key) is None for row in rows):
        raise UserError(f"--sort {key!r}: no run has that metric or parameter — use a column of the table")
    return sorted(rows, key=lambda r: _natural(r.params.get(key, r.runs[0].param(key))), reverse=reverse)


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
