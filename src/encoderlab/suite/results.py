"""A suite's results: one cell per (source, task), read back from its jobs' run directories.

Each job is an ``encoderlab-train`` run in ``<suite dir>/<job number>/`` whose overrides name its source,
task and seed (``+suite_source=... +suite_task=... seed=...``), so the cells are rebuilt from the runs alone,
whichever process ran them (the suite, ``encoderlab-sweep resume``, SLURM). A cell holds every seed's
values, the median over seeds, its status and, when something failed, the one-line reasons.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.run.layout import RunDir
from encoderlab.run.read import Run, load_run
from encoderlab.suite.sources import Source
from encoderlab.suite.spec import SOURCE_GROUP, TASK_GROUP, SuiteTask

COMPLETED, PARTIAL, FAILED, PENDING = "completed", "partial", "failed", "pending"
TRAINABLE = "params/trainable"  # metrics.json: the parameters that received a gradient


@dataclass
class Cell:
    """One (source, task): per seed the values of the task's metrics, the run and how it ended."""

    source: str
    task: str
    metrics: tuple[str, ...]
    seeds: tuple[int, ...]
    values: dict[str, dict[int, float]] = field(default_factory=dict)  # metric → seed → value
    errors: dict[int, str] = field(default_factory=dict)  # seed → why it has no values
    run_dirs: dict[int, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    run_seconds: dict[int, float] = field(default_factory=dict)  # seed → the completed run's wall time
    trainable: dict[int, float] = field(default_factory=dict)  # seed → parameters that trained

    @property
    def done_seeds(self) -> list[int]:
        return [s for s in self.seeds if all(s in self.values.get(m, {}) for m in self.metrics)]

    @property
    def status(self) -> str:
        done = len(self.done_seeds)
        if done == len(self.seeds):
            return COMPLETED
        if done:
            return PARTIAL
        return FAILED if self.errors else PENDING

    def median(self, metric: str) -> float | None:
        values = [self.values[metric][s] for s in self.done_seeds]
        return statistics.median(values) if values else None

    def medians(self) -> tuple[float, ...] | None:
        found = tuple(self.median(m) for m in self.metrics)
        return None if any(v is None for v in found) else found

    def score(self) -> float | None:
        """The task's score: the mean of its metrics' medians (GLUE's rule for MRPC F1/acc, STS-B r/ρ)."""
        medians = self.medians()
        return statistics.fmean(medians) if medians else None

    def seed_scores(self) -> list[float]:
        return [statistics.fmean(self.values[m][s] for m in self.metrics) for s in self.done_seeds]

    def reason(self) -> str | None:
        """One line: why seeds are missing (the first failed seed's error, and which seeds failed)."""
        if not self.errors:
            return None
        failed = sorted(self.errors)
        first = self.errors[failed[0]]
        which = f"seed {failed[0]}" if len(failed) == 1 else f"seeds {', '.join(map(str, failed))}"
        same = len(failed) > 1 and all(self.errors[s] == first for s in failed)
        return f"{which}: {first}" + ("" if same or len(failed) == 1 else " (and other errors)")

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "task": self.task,
            "metrics": list(self.metrics),
            "status": self.status,
            "seeds": {
                str(s): {
                    **{m: self.values[m][s] for m in self.metrics if s in self.values.get(m, {})},
                    **({"error": self.errors[s]} if s in self.errors else {}),
                    **({"run_dir": self.run_dirs[s]} if s in self.run_dirs else {}),
                }
                for s in self.seeds
            },
            "median": {m: self.median(m) for m in self.metrics},
            "score": self.score(),
            "reason": self.reason(),
            "wall_seconds": round(self.wall_seconds, 1),
            "run_seconds": {str(s): round(v, 1) for s, v in self.run_seconds.items()},
            "trainable": {str(s): v for s, v in self.trainable.items()},
        }


def _seconds(record: dict) -> float:
    try:
        return (
            datetime.fromisoformat(record["ended"]) - datetime.fromisoformat(record["started"])
        ).total_seconds()
    except (KeyError, TypeError, ValueError):
        return 0.0


def job_runs(suite_dir: Path) -> list[Run]:
    """The runs of the suite's jobs (``<suite dir>/<n>/``) that started, in job order."""
    dirs = [p for p in suite_dir.iterdir() if p.is_dir() and p.name.isdigit()] if suite_dir.is_dir() else []
    runs = []
    for path in sorted(dirs, key=lambda p: int(p.name)):
        if RunDir(path).is_run():
            try:
                runs.append(load_run(path))
            except UserError:
                continue  # a job killed in its first second: it counts as not run
    return runs


def add_run(cell: Cell, seed: int, run: Run) -> None:
    cell.run_dirs[seed] = str(run.path)
    cell.wall_seconds += _seconds(run.record)
    if run.status != COMPLETED:
        if run.status == "failed":
            cell.errors[seed] = run.error or f"failed (no error recorded: see {run.dir.log})"
        return  # running or killed: pending until it is resumed
    missing = [m for m in cell.metrics if run.final(m) is None]
    if missing:
        known = ", ".join(sorted(m for m in run.metrics if m.startswith(("val/", "test/")))) or "none"
        cell.errors[seed] = (
            f"the run logged no {', '.join(missing)} (it has {known}) — fix the task's metrics"
        )
        return
    for metric in cell.metrics:
        cell.values.setdefault(metric, {})[seed] = run.final(metric)
    cell.run_seconds[seed] = _seconds(run.record)
    if run.final(TRAINABLE) is not None:
        cell.trainable[seed] = run.final(TRAINABLE)


def collect(
    suite_dir: Path, sources: list[Source], tasks: list[SuiteTask], seeds: tuple[int, ...]
) -> list[Cell]:
    """Every (source, task) cell of the plan, filled from the job runs found in ``suite_dir``."""
    cells = {(s.name, t.name): Cell(s.name, t.name, t.metrics, seeds) for s in sources for t in tasks}
    for run in job_runs(suite_dir):
        key = (run.overrides.get(SOURCE_GROUP), run.overrides.get(TASK_GROUP))
        seed = run.seed if run.seed is not None else run.overrides.get("seed")
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            continue
        if key in cells and seed in seeds:
            add_run(cells[key], seed, run)
    return list(cells.values())
