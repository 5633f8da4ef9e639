"""What resuming a sweep has to do: every job of a multirun directory, in Hydra's order, and its state.

An edge module: it reads Hydra's ``multirun.yaml`` and expands the sweep's overrides with Hydra's own
override parser and basic-sweeper logic, so job ``n`` gets the overrides Hydra gave job ``n`` and the
directory ``<sweep>/<n>``, including the jobs that never started and so left no directory. A job that did
start is read back through ``encoderlab.run.read``; its saved overrides must be the ones expanded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from encoderlab.cli.config_dirs import CONF_DIR
from encoderlab.cli.sweep_report import REPORT_FILE, sweep_id
from encoderlab.errors import UserError
from encoderlab.run.layout import MULTIRUN_FILE, RunDir
from encoderlab.run.lock import refuse_if_held
from encoderlab.run.read import load_run, parse_override, read_yaml
from encoderlab.run.redact import redact

KEEP, RESUME, RESTART, START = "keep", "resume", "restart", "start"
NOT_STARTED = "not started"
# The sweep's own Hydra overrides that are about sweeping: a job re-run alone leaves them out.
SWEEP_KEYS = ("hydra.mode", "hydra.sweep", "hydra.run", "hydra/sweeper", "hydra.sweeper", "hydra/launcher")
SWEEP_KEYS += ("hydra.launcher", "hydra.job.num", "hydra.job.id")
# What Hydra's basic sweeper saves as the job subdirectory: the job number, so job n lives in <sweep>/<n>.
JOB_SUBDIR = "${hydra.job.num}"
RUN_MODE = "hydra.mode=RUN"
BASIC_SWEEPER = f"{BasicSweeper.__module__}.{BasicSweeper.__qualname__}"


@dataclass(frozen=True)
class Job:
    """One job of the sweep: where it lives, its overrides, what its run says and what a resume does."""

    num: int
    dir: Path
    overrides: tuple[str, ...]
    status: str  # the run's status (completed | failed | running | unknown) or "not started"
    action: str  # keep | resume (from its last.ckpt) | restart (set aside, start over) | start

    def train_args(self, hydra_overrides: list[str]) -> list[str]:
        """The ``encoderlab-train`` arguments that (re-)run this job in its own directory."""
        # One run, also where the config itself asks for a sweep (hydra.mode: MULTIRUN in an experiment).
        if self.action == RESUME:
            return [f"resume={self.dir}", *hydra_overrides, RUN_MODE]
        return [*self.overrides, *hydra_overrides, RUN_MODE, f"hydra.run.dir={self.dir}"]

    def describe(self, shared: frozenset[str] = frozenset()) -> str:
        """One line: the job's state, what resuming does with it, and its overrides not in ``shared``."""
        state = "interrupted" if self.status in ("running", "unknown") else self.status
        doing = {
            KEEP: "kept",
            RESUME: f"resumed from {RunDir(self.dir).last_checkpoint.relative_to(self.dir)}",
            RESTART: "started over (no checkpoint; its directory is set aside)",
            START: "started",
        }[self.action]
        own = [o for o in self.overrides if o not in shared]
        return f"job {self.num}: {state} — {doing}: {' '.join(own)}"


@dataclass(frozen=True)
class SweepPlan:
    """A sweep's jobs with what resuming does to each, and how its jobs were run."""

    dir: Path
    jobs: list[Job]
    hydra_overrides: list[str]  # the sweep's other Hydra overrides (search path, env, ...), kept per job
    cwd: Path  # where the sweep was launched: relative paths in its overrides are relative to it
    sweep_id: str  # the group its jobs logged under (ENCODERLAB_SWEEP)
    metric: str | None
    mode: str
    report_file: str
    fail_on_error: bool

    def count(self, action: str) -> int:
        return sum(job.action == action for job in self.jobs)

    def lines(self) -> list[str]:
        head = (
            f"sweep {self.dir}: {len(self.jobs)} jobs — {self.count(KEEP)} completed (kept), "
            f"{self.count(RESUME)} to resume, {self.count(RESTART)} to start over, {self.count(START)} to start"
        )
        # The overrides every job has are the sweep's fixed ones: each line shows what sets its job apart.
        shared = (
            frozenset.intersection(*(frozenset(job.overrides) for job in self.jobs)) if self.jobs else None
        )
        return [head, *(f"  {job.describe(shared or frozenset())}" for job in self.jobs)]


def _at(data, dotted: str):
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def read_multirun(sweep_dir: Path) -> dict:
    data = read_yaml(sweep_dir / MULTIRUN_FILE)
    if not isinstance(data, dict) or not isinstance(_at(data, "hydra.overrides.task"), list):
        raise UserError(
            f"{sweep_dir} is not a sweep directory (no readable {MULTIRUN_FILE}) — pass the directory "
            "`encoderlab-train -m` wrote (outputs/<task_name>/multiruns/<time>)"
        )
    return data


def check_replayable(sweep_dir: Path, data: dict) -> None:
    """Only what Hydra's basic sweeper expanded can be replayed job by job."""
    # The sweeper's import path as Hydra saved it, against the basic sweeper's own: nothing is imported.
    sweeper = str(_at(data, "hydra.sweeper._target_") or "")
    if sweeper != BASIC_SWEEPER:
        name = sweeper.rsplit(".", 1)[-1] or "an unknown sweeper"
        raise UserError(
            f"{sweep_dir} was swept by {name}, which picks each job from the results of the ones before, so "
            "its jobs cannot be re-run one by one — start the search again (an Optuna study continues from "
            "hydra.sweeper.storage=sqlite:///FILE.db with the same hydra.sweeper.study_name)"
        )
    subdir = _at(data, "hydra.sweep.subdir")
    if subdir != JOB_SUBDIR:
        raise UserError(
            f"{sweep_dir} put its jobs in hydra.sweep.subdir={subdir}, not in one directory per job number — "
            f"only sweeps with the default hydra.sweep.subdir={JOB_SUBDIR} can be resumed"
        )


def expand(data: dict) -> list[tuple[str, ...]]:
    """Every job's overrides, in the order Hydra's basic sweeper launched them (job n = entry n)."""
    params = _at(data, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + [
        str(o) for o in data["hydra"]["overrides"]["task"]
    ]
    # A config loader lets glob(...) sweeps list the options of a config group, as the sweeper's does.
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    try:
        overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
        # Batches only split the launches; with none, the one batch holds every job in launch order.
        (jobs,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    except HydraException as err:
        raise UserError(f"cannot expand the sweep's overrides ({err}) — check {MULTIRUN_FILE}") from None
    return [tuple(job) for job in jobs]


def kept_hydra_overrides(data: dict) -> list[str]:
    """The sweep's Hydra overrides minus the sweeping ones (mode, sweep dir, sweeper, launcher)."""
    kept = []
    for override in _at(data, "hydra.overrides.hydra") or []:
        key = parse_override(override)[0].lstrip("~")
        if not any(key == k or key.startswith((f"{k}.", f"{k}@")) for k in SWEEP_KEYS):
            kept.append(str(override))
    return kept


def job_state(num: int, job_dir: Path, overrides: tuple[str, ...]) -> Job:
    run = RunDir(job_dir)
    if not job_dir.exists():
        return Job(num, job_dir, overrides, NOT_STARTED, START)
    if not run.is_run():  # killed in its first moment: Hydra made the directory, nothing was recorded
        return Job(num, job_dir, overrides, "unknown", RESTART)
    found = load_run(job_dir)
    # Secrets were masked in what the job saved: compare with the expansion masked the same way.
    if found.override_args and found.override_args != redact(list(overrides)):
        raise UserError(
            f"{job_dir} ran with {' '.join(found.override_args)}, but job {num} of this sweep is "
            f"{' '.join(overrides)} — the sweep directory does not match its {MULTIRUN_FILE}; resume only "
            "directories that `encoderlab-train -m` wrote"
        )
    if found.status == "completed":
        return Job(num, job_dir, overrides, found.status, KEEP)
    refuse_if_held(job_dir)  # "running" with a live process is a sweep still going, not an interrupted one
    resumable = run.last_checkpoint.is_file() and run.config.is_file()
    return Job(num, job_dir, overrides, found.status, RESUME if resumable else RESTART)


def plan(sweep_dir: str | Path) -> SweepPlan:
    """Read ``sweep_dir`` and decide every job's fate; changes nothing on disk."""
    sweep_dir = Path(sweep_dir).resolve()
    data = read_multirun(sweep_dir)
    check_replayable(sweep_dir, data)
    expanded = expand(data)
    strays = [
        p.name
        for p in sweep_dir.iterdir()
        if p.is_dir() and p.name.isdigit() and int(p.name) >= len(expanded)
    ]
    if strays:
        raise UserError(
            f"{sweep_dir} holds job directories {', '.join(sorted(strays, key=int))} but its overrides expand to "
            f"{len(expanded)} jobs — the sweep directory does not match its {MULTIRUN_FILE}"
        )
    jobs = [job_state(n, sweep_dir / str(n), overrides) for n, overrides in enumerate(expanded)]
    cwd = Path(str(_at(data, "hydra.runtime.cwd") or "."))
    report = _at(data, "hydra.callbacks.sweep_report") or {}
    group = OmegaConf.create(
        {"task_name": data.get("task_name", "sweep"), "hydra": {"sweep": {"dir": str(sweep_dir)}}}
    )
    return SweepPlan(
        dir=sweep_dir,
        jobs=jobs,
        hydra_overrides=kept_hydra_overrides(data),
        cwd=cwd if cwd.is_dir() else Path.cwd(),
        sweep_id=sweep_id(group),
        metric=data.get("optimized_metric"),
        mode=str(data.get("optimized_mode", "max")),
        report_file=str(report.get("report_file", REPORT_FILE)),
        fail_on_error=bool(report.get("fail_on_error", True)),
    )
