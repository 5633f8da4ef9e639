"""``encoderlab-suite SOURCE... [--suite quick|full|FILE]``: fine-tune encoders on a set of tasks, several
seeds each, and report a GLUE-style table (one row per encoder, one column per task, the median over seeds,
an Average column), printed and written as ``suite.html`` and ``suite.png`` beside ``suite.json``.

Every (task, source, seed) is one ``encoderlab-train`` job of one Hydra multirun in the suite directory
(``cli/suite_jobs.py``), so a killed suite is finished with ``encoderlab-suite --resume DIR`` (or
``encoderlab-sweep resume DIR``, then ``encoderlab-suite --report DIR``). A failed job shows in its cell with
its one-line reason below the table; the exit status is 1 when any cell is failed or incomplete, 2 for a
mistake in the command (bad source, task, key), found before any job starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from encoderlab.cli.config_dirs import SUITE_PRESETS_DIR
from encoderlab.cli.errors import run_command
from encoderlab.cli.suite_jobs import (
    LAUNCHERS,
    SuitePlan,
    check_plan,
    multirun_args,
    write_options,
)
from encoderlab.errors import UserError
from encoderlab.files import read_json_object, write_json
from encoderlab.reporting.suite_report import read_plan, write_report
from encoderlab.run.layout import (
    SUITE_CONF_DIR,
    SUITE_LOG_FILE,
    SUITE_REPORT_FILE,
    SWEEP_REPORT_FILE,
    RunDir,
)
from encoderlab.run.read import Run, load_run
from encoderlab.suite.published import ROWS, check_published, parse_published
from encoderlab.suite.results import COMPLETED, job_runs
from encoderlab.suite.sources import resolve_all
from encoderlab.suite.spec import SOURCE_GROUP, TASK_GROUP, load_spec, parse_seeds, select_tasks
from encoderlab.validate import at_least, check

POLL_SECONDS = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="encoderlab-suite",
        description="Fine-tune each SOURCE on the suite's tasks with several seeds and report one table "
        "(median over seeds per cell, an Average column); exit 1 if any job failed.",
        epilog="SOURCE: [NAME=]PATH[:KEY=VALUE,...] — an encoder export (encoder.json), a pre-training run "
        "directory, a Hugging Face model directory (config.json) — or minilm, or scratch. The overrides after "
        "':' are that encoder's own (e.g. tiny=outputs/.../encoder:optimizer.lr=1e-3). `suite=NAME` may stand "
        "for --suite NAME. Put SOURCEs before --source-overrides (or end its list with --). See "
        "docs/experiments.md, 'Evaluation suite'.",
    )
    parser.add_argument("sources", nargs="*", metavar="SOURCE", help="the encoders to evaluate (rows)")
    parser.add_argument(
        "--suite", default=None, help="a preset (quick, full) or a suite YAML file (default: quick)"
    )
    parser.add_argument("--tasks", help="only these tasks of the suite, comma-separated (e.g. sst2,mrpc)")
    parser.add_argument("--seeds", help="a count (3: seeds 1,2,3) or a list (1,2,3); default: the suite's")
    parser.add_argument("--jobs", type=int, help="jobs at the same time (default: ENCODERLAB_JOBS, else 2)")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="parallel", help="Hydra launcher")
    parser.add_argument("--out", type=Path, help="the suite directory (default: outputs/suite/<time>)")
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="an encoderlab-train override for every job, after each task's own (repeat: --set trainer=gpu "
        "--set data.batch_size=64)",
    )  # fmt: skip
    parser.add_argument(
        "--source-overrides", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
        help="overrides for the jobs of source NAME (after the task's and --set)",
    )  # fmt: skip
    parser.add_argument(
        "--published", help="reference rows: " + ",".join(ROWS) + ", all or none (default: the suite's)"
    )
    parser.add_argument("--dry-run", action="store_true", help="check everything, list the jobs and stop")
    parser.add_argument(
        "--resume", type=Path, metavar="DIR", help="run the unfinished jobs of a suite, then report"
    )
    parser.add_argument(
        "--report", type=Path, metavar="DIR", help="write a suite's table again from its runs"
    )
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------- plan


def build_plan(args: argparse.Namespace) -> SuitePlan:
    texts, suite = [], args.suite
    for text in args.sources:
        if text.startswith("suite="):  # `suite=quick`, as the presets are called in the docs
            suite = text.partition("=")[2]
        else:
            texts.append(text)
    spec = load_spec(suite or "quick", SUITE_PRESETS_DIR)
    if args.tasks:
        spec = select_tasks(spec, [t.strip() for t in args.tasks.split(",") if t.strip()])
    if args.seeds:
        spec = replace(spec, seeds=parse_seeds(args.seeds))
    if args.published:
        spec = replace(spec, published=parse_published(args.published))
    else:
        spec = replace(spec, published=check_published(spec.published, f"suite {spec.name}: published"))
    extra: dict[str, list[str]] = {}
    for name, *overrides in args.source_overrides:
        if not overrides:
            raise UserError(f"--source-overrides {name} needs KEY=VALUE after the name")
        extra.setdefault(name, []).extend(overrides)
    return SuitePlan(spec, tuple(resolve_all(texts, extra)), tuple(args.sets))


def default_jobs() -> int:
    value = os.environ.get("ENCODERLAB_JOBS", "2")
    try:
        return check("ENCODERLAB_JOBS", int(value), at_least(1))
    except ValueError:
        raise UserError(
            f"ENCODERLAB_JOBS={value!r} must be a whole number >= 1 — export ENCODERLAB_JOBS=2"
        ) from None


def job_env(launcher: str, jobs: int) -> dict[str, str]:
    """This process's environment; local jobs get an equal share of the cores each (OMP_NUM_THREADS)."""
    env = dict(os.environ)
    env.setdefault("TQDM_DISABLE", "1")  # libraries' progress bars (SetFit, transformers) in the jobs' log
    if launcher != "slurm":  # a SLURM job's threads are its own cpus_per_task
        at_once = 1 if launcher == "basic" else jobs
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // at_once)))
    return env


def plan_lines(
    plan: SuitePlan, suite_dir: Path, launcher: str, jobs: int, every_job: bool = True
) -> list[str]:
    """What the suite will run: its size, each task's and source's overrides and (``every_job``) the jobs."""
    spec, jobs_list = plan.spec, plan.jobs()
    at_once = "one after another" if launcher == "basic" else f"{jobs} at a time, {launcher} launcher"
    lines = [
        f"suite {spec.name}: {len(plan.tasks)} tasks × {len(plan.sources)} sources × {len(spec.seeds)} seeds = "
        f"{len(jobs_list)} jobs in {suite_dir} ({at_once})"
    ]
    lines += [f"  task {t.name}: {' '.join(plan.task_overrides(t))}" for t in plan.tasks]
    lines += [
        f"  source {s.name} ({s.describe()}): {' '.join(plan.source_overrides(s))}" for s in plan.sources
    ]
    if plan.command_line():
        lines.append(f"  every job also: {' '.join(plan.command_line())}")
    if every_job:
        lines += [f"  job {j.num}: {j.task} · {j.source} · seed {j.seed}" for j in jobs_list]
    return lines


def plan_record(plan: SuitePlan, launcher: str, jobs: int) -> dict:
    return {
        "suite": plan.spec.name,
        "report": plan.spec.report,
        "status": "running",
        "started": datetime.now().isoformat(timespec="seconds"),
        "launcher": launcher,
        "jobs_at_once": jobs,
        "seeds": list(plan.spec.seeds),
        "tasks": [t.to_dict() for t in plan.tasks],
        "sources": [s.to_dict() for s in plan.sources],
        "published": list(plan.spec.published),
        "common": list(plan.spec.common),
        "set": list(plan.sets),
        "jobs": [{"job": j.num, "task": j.task, "source": j.source, "seed": j.seed} for j in plan.jobs()],
    }


# ---------------------------------------------------------------------------------------- running


def default_out() -> Path:
    root = Path(os.environ.get("ENCODERLAB_OUTPUT_DIR", "outputs"))
    return root / "suite" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def progress_line(run: Run, done: int, total: int) -> str:
    task, source = run.overrides.get(TASK_GROUP), run.overrides.get(SOURCE_GROUP)
    what = f"[{done}/{total}] {task} · {source} · seed {run.seed}: {run.status}"
    if run.status != COMPLETED:
        return f"{what} — {run.error or f'see {run.dir.log}'}"
    seconds = run.metrics.get("time/fit_seconds")
    return what + (f" (fit {seconds:.1f} s)" if seconds is not None else "")


def ended_jobs(suite_dir: Path, reported: set[str]) -> list[Run]:
    """Jobs that ended since the last look, read in full (the others only by their run record's status)."""
    found = []
    for path in sorted((p for p in suite_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        status = read_json_object(RunDir(path).record).get("status")
        if path.name not in reported and status in ("completed", "failed"):
            reported.add(path.name)
            found.append(load_run(path))
    return found


def watch(process: subprocess.Popen, suite_dir: Path, total: int, since: float) -> None:
    """Wait for the sweep, printing a line as each job ends. Returns once the sweep has written its report
    (its processes may still be exiting: the table is written meanwhile) or has ended."""
    reported: set[str] = set()
    report = suite_dir / SWEEP_REPORT_FILE
    while True:
        running = process.poll() is None
        finished = report.is_file() and report.stat().st_mtime >= since
        done = len(reported)
        for n, run in enumerate(ended_jobs(suite_dir, reported), done + 1):
            print(progress_line(run, n, total), flush=True)
        if finished or not running:
            return
        time.sleep(POLL_SECONDS)


def launch(plan: SuitePlan, suite_dir: Path, launcher: str, jobs: int) -> subprocess.Popen:
    """Write the suite directory's plan and options, run the sweep and wait for its jobs; the sweep's
    process (wait for it once the report is written)."""
    suite_dir.mkdir(parents=True, exist_ok=True)
    write_options(plan, suite_dir / SUITE_CONF_DIR)
    write_json(suite_dir / SUITE_REPORT_FILE, plan_record(plan, launcher, jobs))
    log = suite_dir / SUITE_LOG_FILE
    print(f"jobs' output: {log}", flush=True)
    since = time.time()
    with open(log, "a") as out:
        process = subprocess.Popen(
            multirun_args(plan, suite_dir, launcher, jobs),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=job_env(launcher, jobs),
            start_new_session=True,  # Ctrl-C here stops the sweep's worker processes too
        )
    try:
        watch(process, suite_dir, len(plan.jobs()), since)
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        write_report(suite_dir, quiet=True)
        print(f"interrupted — finish it with: encoderlab-suite --resume {suite_dir}", file=sys.stderr)
        raise
    if not job_runs(suite_dir):  # the sweep itself failed (a launcher setting): no job ever started
        process.wait()
        tail = [line for line in log.read_text().splitlines() if line.strip()][-1:] or ["no output"]
        raise UserError(f"the suite's jobs did not start ({tail[0][:300]}) — see {log}")
    return process


# --------------------------------------------------------------------------------------- commands


def resume(suite_dir: Path, jobs: int) -> bool:
    from encoderlab.cli.sweep import resume_sweep  # Hydra's sweep machinery: imported only to resume

    read_plan(suite_dir)  # a suite directory, not any sweep
    os.environ.update({k: v for k, v in job_env("parallel", jobs).items() if k == "OMP_NUM_THREADS"})
    resume_sweep(suite_dir.resolve(), jobs)
    return write_report(suite_dir)


def start(args: argparse.Namespace) -> int:
    plan = build_plan(args)
    jobs = args.jobs if args.jobs is not None else default_jobs()
    check("--jobs", jobs, at_least(1))
    suite_dir = (args.out or default_out()).resolve()
    with tempfile.TemporaryDirectory() as tmp:  # checked before anything is written
        write_options(plan, Path(tmp))
        check_plan(plan, Path(tmp))
    if args.dry_run:
        print("\n".join(plan_lines(plan, suite_dir, args.launcher, jobs)))
        print(
            "command: encoderlab-train " + " ".join(multirun_args(plan, suite_dir, args.launcher, jobs)[3:])
        )
        return 0
    if suite_dir.exists() and any(suite_dir.iterdir()):
        raise UserError(
            f"{suite_dir} is not empty — pass a new --out, or finish that suite with encoderlab-suite --resume "
            f"{suite_dir}"
        )
    print("\n".join(plan_lines(plan, suite_dir, args.launcher, jobs, every_job=False)))
    process = launch(plan, suite_dir, args.launcher, jobs)
    complete = write_report(suite_dir)
    process.wait()
    return 0 if complete else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        given = [name for name, value in (("--resume", args.resume), ("--report", args.report)) if value]
        if given and args.sources:
            raise UserError(
                f"{given[0]} takes a suite directory, not SOURCEs — drop the SOURCEs or {given[0]}"
            )
        if len(given) > 1:
            raise UserError("--resume and --report cannot go together — --resume also writes the report")
        if args.report:
            return 0 if write_report(args.report) else 1
        if args.resume:
            jobs = args.jobs if args.jobs is not None else default_jobs()
            return 0 if resume(args.resume, check("--jobs", jobs, at_least(1))) else 1
        return start(args)

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
