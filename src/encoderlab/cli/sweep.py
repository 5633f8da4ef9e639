"""``encoderlab-sweep resume SWEEP_DIR``: finish a sweep that was killed, re-running only what it needs.

Each job of the sweep (``cli/sweep_plan.py`` lists them in Hydra's order) goes back to its own directory
``<sweep>/<n>``: a completed job is kept, an interrupted or failed one continues from its
``checkpoints/last.ckpt`` (``encoderlab-train resume=<job dir>``), one without a checkpoint is set aside
under ``<sweep>/.attempts/`` and started over, and a job that never started is started with its overrides.
Jobs run as ``encoderlab-train`` processes, one after the other or ``--jobs N`` at a time; then the sweep
report (``sweep.json``) is written again from every job's run, as at the end of a sweep.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from encoderlab.cli.errors import run_command
from encoderlab.cli.sweep_plan import KEEP, RESTART, Job, SweepPlan, plan, read_multirun
from encoderlab.cli.sweep_report import SWEEP_ENV, failure_line, write_report
from encoderlab.errors import UserError
from encoderlab.run.layout import CHECKPOINTS_DIR, LAST_CHECKPOINT_FILE, SWEEP_ATTEMPTS_DIR, SWEEP_REPORT_FILE
from encoderlab.run.lock import RunLock, refuse_if_held
from encoderlab.run.read import load_run


def set_aside(job: Job, sweep_dir: Path) -> None:
    """Move a job directory that cannot be resumed out of the way, so the job starts over in its place."""
    attempts = sweep_dir / SWEEP_ATTEMPTS_DIR
    attempts.mkdir(exist_ok=True)
    os.replace(job.dir, attempts / f"{job.num}-{datetime.now():%Y-%m-%d_%H-%M-%S-%f}")


def last_error_line(stderr: str) -> str | None:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return lines[-1][len("error: ") :] if lines else None


def run_job(job: Job, sweep: SweepPlan, quiet: bool) -> str:
    """Run one job through ``encoderlab-train``; the line saying how it ended."""
    env = dict(os.environ)
    env.setdefault(SWEEP_ENV, sweep.sweep_id)  # the W&B group / MLflow tag of the sweep's other jobs
    result = subprocess.run(
        [sys.executable, "-m", "encoderlab.train", *job.train_args(sweep.hydra_overrides)],
        cwd=sweep.cwd,
        env=env,
        # Alone, a job shows its progress; side by side their output would interleave (each has train.log).
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = load_run(job.dir)
        status, error = run.status, run.error
    except UserError:  # refused before it recorded anything (a config error)
        status, error = "failed", None
    if status != "completed" and result.returncode == 0:
        status = "failed"  # cannot happen unless the run record is damaged; never report it as done
    error = error or last_error_line(result.stderr) or f"exit status {result.returncode}"
    return f"job {job.num}: {status}" + ("" if status == "completed" else f" — {error}")


def resume_sweep(sweep_dir: Path, jobs: int = 1, dry_run: bool = False) -> int:
    if jobs < 1:
        raise UserError(f"--jobs {jobs} must be at least 1")
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: no such directory — pass the directory `encoderlab-train -m` wrote")
    if dry_run:
        refuse_if_held(sweep_dir)
        print("\n".join(plan(sweep_dir).lines()), flush=True)
        return 0
    read_multirun(sweep_dir)  # not a sweep: say so before taking its lock
    with RunLock(sweep_dir):  # one resume of a sweep at a time
        sweep = plan(sweep_dir)
        print("\n".join(sweep.lines()), flush=True)
        todo = [job for job in sweep.jobs if job.action != KEEP]
        for job in todo:
            if job.action == RESTART:
                set_aside(job, sweep.dir)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for line in pool.map(lambda job: run_job(job, sweep, quiet=jobs > 1), todo):
                print(line, flush=True)
        summary = write_report(sweep.dir, sweep.metric, sweep.mode, sweep.report_file)
    if summary["failed"] and sweep.fail_on_error:
        print(failure_line(summary, sweep.dir / sweep.report_file), file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="encoderlab-sweep", description="Work on a sweep's directory.")
    commands = parser.add_subparsers(dest="command", required=True)
    resume = commands.add_parser(
        "resume",
        help="re-run the jobs of a sweep that failed or never finished",
        description="Re-run only the jobs of SWEEP_DIR that failed or never finished, each in its own job "
        f"directory (interrupted ones continue from their {CHECKPOINTS_DIR}/{LAST_CHECKPOINT_FILE}), keep the "
        f"completed ones, and write the sweep report ({SWEEP_REPORT_FILE}) again. Exit 1 if a job is still "
        "failed at the end.",
    )
    resume.add_argument("sweep_dir", type=Path, help="the directory `encoderlab-train -m` wrote")
    resume.add_argument("--jobs", type=int, default=1, help="jobs run at the same time (default 1)")
    resume.add_argument("--dry-run", action="store_true", help="print what each job would become and stop")
    args = parser.parse_args(argv)
    return run_command(lambda: resume_sweep(args.sweep_dir, args.jobs, args.dry_run))


if __name__ == "__main__":
    sys.exit(main())
