"""Hydra callback for sweeps (``encoderlab-train -m ...``): one W&B run per job and a report at the end.

Registered under ``hydra.callbacks`` (``conf/hydra/default.yaml``), so it runs with every launcher
(basic, joblib, submitit) and sweeper (basic, Optuna):

- ``on_job_start``: in a sweep, exports ``ENCODERLAB_SWEEP`` (``<task_name>/<sweep dir name>``) for the
  job, which ``conf/logger/*`` use as the W&B group / MLflow tag, so the runs of one sweep share a group.
- ``on_job_end``: finishes the job's W&B run (Lightning does not), so the next job in the same process
  starts its own run instead of writing into the previous one.
- ``on_multirun_end``: reads every job's ``run.json`` (the entry point records a failed job there and
  lets the sweep go on), prints which jobs failed with their overrides and error line, writes
  ``sweep.json`` in the sweep directory, and exits 1 if any job failed (``fail_on_error``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from encoderlab.files import write_json
from encoderlab.reporting.table import format_number, lower_is_better
from encoderlab.run.layout import SWEEP_REPORT_FILE
from encoderlab.run.read import Run, find_runs

SWEEP_ENV = "ENCODERLAB_SWEEP"
REPORT_FILE = SWEEP_REPORT_FILE
_exported: str | None = None  # the value on_job_start put in the environment (not the user's own)


def sweep_id(config: DictConfig) -> str:
    return f"{config.get('task_name', 'sweep')}/{Path(str(config.hydra.sweep.dir)).name}"


def finish_wandb(exit_code: int = 0) -> None:
    """Close the W&B run of the job that just ended, if it opened one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def summarize(sweep_dir: Path, metric: str | None = None, mode: str = "max") -> dict:
    """What ``sweep.json`` holds: every job's status and overrides, the failures' error lines, the best job."""
    runs = find_runs([sweep_dir]) if sweep_dir.is_dir() else []
    jobs = [
        {
            "job": run.name,
            "dir": str(run.path),
            "status": run.status,
            "overrides": run.override_args,
            **(
                {"error": run.error or "no error recorded (see the job's .log)"}
                if run.status != "completed"
                else {}
            ),
            **({metric: run.metrics.get(metric)} if metric else {}),
        }
        for run in runs
    ]
    done = [r for r in runs if r.status == "completed" and metric and metric in r.metrics]
    best: Run | None = None
    if done:
        sign = -1 if (mode == "min" or (mode not in {"min", "max"} and lower_is_better(metric))) else 1
        best = max(done, key=lambda r: sign * r.metrics[metric])
    return {
        "sweep_dir": str(sweep_dir),
        "jobs": jobs,
        "completed": sum(r.status == "completed" for r in runs),
        "failed": [j["job"] for j in jobs if j["status"] != "completed"],
        "optimized_metric": metric,
        "best": None if best is None else {"job": best.name, metric: best.metrics[metric]},
    }


def report_lines(summary: dict) -> list[str]:
    jobs, failed = summary["jobs"], summary["failed"]
    lines = [
        f"sweep {summary['sweep_dir']}: {len(jobs)} jobs, {summary['completed']} completed, {len(failed)} failed"
    ]
    best, metric = summary["best"], summary["optimized_metric"]
    if best:
        lines.append(f"best: job {best['job']} {metric}={format_number(best[metric])}")
    for job in jobs:
        if job["status"] != "completed":
            lines.append(f"FAILED job {job['job']} ({job['dir']}): {' '.join(job['overrides'])}")
            lines.append(f"    {job['error']}")
    lines.append(f"compare: encoderlab-compare {summary['sweep_dir']}")
    return lines


def write_report(sweep_dir: Path, metric: str | None, mode: str, report_file: str = REPORT_FILE) -> dict:
    """Summarize the sweep into ``sweep.json`` (replacing an older one) and print the report; the summary.

    Run at the end of a sweep and again by ``encoderlab-sweep resume`` once the re-run jobs are done."""
    summary = summarize(sweep_dir, metric, mode)
    write_json(sweep_dir / report_file, summary)
    print("\n".join(report_lines(summary)), file=sys.stdout, flush=True)
    return summary


def failure_line(summary: dict, report: Path) -> str:
    failed = summary["failed"]
    return (
        f"error: {len(failed)} of {len(summary['jobs'])} sweep jobs failed (jobs {', '.join(failed)}) — "
        f"see {report}"
    )


class SweepReport(Callback):
    def __init__(self, fail_on_error: bool = True, report_file: str = REPORT_FILE) -> None:
        self.fail_on_error = fail_on_error
        self.report_file = report_file

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _exported
        current = os.environ.get(SWEEP_ENV)
        # A sweep id the user exported (to group several sweeps) wins over this sweep's own.
        if config.hydra.mode == RunMode.MULTIRUN and current in (None, _exported):
            _exported = os.environ[SWEEP_ENV] = sweep_id(config)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        failed = (
            job_return is not None
            and getattr(job_return, "status", None) is not None
            and (job_return.status.name == "FAILED")
        )
        finish_wandb(exit_code=1 if failed else 0)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _exported
        if _exported is not None and os.environ.get(SWEEP_ENV) == _exported:
            del os.environ[SWEEP_ENV]
        _exported = None
        sweep_dir = Path(str(config.hydra.sweep.dir))
        summary = write_report(
            sweep_dir,
            config.get("optimized_metric"),
            str(config.get("optimized_mode", "max")),
            self.report_file,
        )
        if summary["failed"] and self.fail_on_error:
            print(failure_line(summary, sweep_dir / self.report_file), file=sys.stderr, flush=True)
            sys.exit(1)
