"""The suite's jobs as one Hydra multirun of ``encoderlab-train``.

Each task and each source becomes a generated config option, ``conf/suite_task/<task>.yaml`` and
``conf/suite_source/<source>.yaml`` in the suite directory, holding its overrides (group choices as
``override /group: option`` in its defaults list, values as YAML). One sweep then runs every job::

    encoderlab-train -m hydra.searchpath=[file://<suite>/conf] hydra.sweep.dir=<suite> \\
        hydra/launcher=parallel +suite_task=sst2,mrpc +suite_source=tiny,minilm seed=1,2,3

so the jobs are ``<suite>/<n>/`` run directories with Hydra's ``multirun.yaml`` and ``sweep.json`` beside
them: ``encoderlab-sweep resume <suite>`` finishes a killed suite, and any launcher runs it (joblib here,
submitit on SLURM). The task's option comes first on that command line: the source's, composed after it,
wins where both set a value (a source's learning rate over the task's). Before anything is written, every
(task, source) is composed with its overrides given as command-line overrides, so a misspelt key or option
fails in one line, as ``encoderlab-train`` would, and each source's ``init`` is built once to check it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.utils import instantiate

from encoderlab.cli.config_dirs import CONF_DIR
from encoderlab.cli.errors import describe
from encoderlab.errors import UserError
from encoderlab.run.layout import SUITE_CONF_DIR
from encoderlab.suite.sources import Source, quote
from encoderlab.suite.spec import SOURCE_GROUP, TASK_GROUP, SuiteSpec, SuiteTask

LAUNCHERS = {"parallel": ["hydra/launcher=parallel"], "slurm": ["hydra/launcher=slurm"], "basic": []}
# How many jobs at once each launcher is told (basic runs one after the other).
JOBS_KEY = {"parallel": "hydra.launcher.n_jobs", "slurm": "hydra.launcher.array_parallelism"}
EVERY_JOB = "apply to every job: put them in the suite's common overrides or in --set"


@dataclass(frozen=True)
class Job:
    num: int
    task: str
    source: str
    seed: int


@dataclass(frozen=True)
class SuitePlan:
    """The suite's tasks, sources and seeds, and the overrides each job gets from where."""

    spec: SuiteSpec
    sources: tuple[Source, ...]
    sets: tuple[str, ...] = ()  # --set: every job, after the tasks' own overrides

    @property
    def tasks(self) -> tuple[SuiteTask, ...]:
        return self.spec.tasks

    def task_overrides(self, task: SuiteTask) -> list[str]:
        experiment = [f"experiment={task.experiment}"] if task.experiment else []
        return [*experiment, *every_job(self.spec.common), *task.overrides, *every_job(self.sets)]

    def source_overrides(self, source: Source) -> list[str]:
        return [*self.spec.kind_overrides.get(source.kind, ()), *source.init_overrides(), *source.overrides]

    def command_line(self) -> list[str]:
        """The overrides Hydra takes only on the command line (``~key``, ``hydra.*``), for every job."""
        return [
            o
            for o in (*self.spec.common, *self.sets)
            if goes_on_command_line(_parse([o], "common or --set")[0])
        ]

    def jobs(self) -> list[Job]:
        """Every job in the order Hydra's sweeper launches (and numbers) them: task, source, seed."""
        triples = [
            (t.name, s.name, seed) for t in self.tasks for s in self.sources for seed in self.spec.seeds
        ]
        return [Job(n, *triple) for n, triple in enumerate(triples)]


def _parse(overrides, where: str):
    try:
        return OverridesParser.create().parse_overrides([str(o) for o in overrides])
    except HydraException as err:
        message = str(err).splitlines()[0]
        raise UserError(
            f"{where}: malformed override ({message}) — write key=value, as for encoderlab-train"
        ) from None


def goes_on_command_line(override) -> bool:
    return override.is_delete() or override.key_or_group.split(".")[0].split("/")[0] == "hydra"


def every_job(overrides) -> list[str]:
    return [o for o in overrides if not goes_on_command_line(_parse([o], "common or --set")[0])]


def is_group(key: str) -> bool:
    return "." not in key and (CONF_DIR / key).is_dir()


def option_yaml(overrides: list[str], where: str) -> str:
    """A generated config option (``# @package _global_``) that composes as ``overrides`` would."""
    choices: dict[str, str] = {}
    values: dict = {}
    for override in _parse(overrides, where):
        if override.is_sweep_override():
            raise UserError(
                f"{where}: {override.input_line} is a sweep — a suite job takes one value per key"
            )
        if goes_on_command_line(override):
            raise UserError(f"{where}: {override.input_line}: key deletions and hydra.* settings {EVERY_JOB}")
        if override.package:
            raise UserError(
                f"{where}: {override.input_line}: group@package is not supported in a suite — drop @..."
            )
        key = override.key_or_group
        if is_group(key):
            choices.pop(key, None)  # the last choice wins, as on the command line
            choices[key] = str(override.value())
        else:
            node = values
            *parents, leaf = key.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[leaf] = override.value()
    content = {"defaults": [{f"override /{k}": v} for k, v in choices.items()]} if choices else {}
    content.update(values)
    return "# @package _global_\n" + yaml.safe_dump(content, sort_keys=False, allow_unicode=True)


def write_options(plan: SuitePlan, conf_dir: Path) -> None:
    """``conf_dir/suite_task/<task>.yaml`` and ``conf_dir/suite_source/<source>.yaml``."""
    for group, items in ((TASK_GROUP, plan.tasks), (SOURCE_GROUP, plan.sources)):
        (conf_dir / group).mkdir(parents=True, exist_ok=True)
        for item in items:
            overrides = plan.task_overrides(item) if group == TASK_GROUP else plan.source_overrides(item)
            where = f"task {item.name}" if group == TASK_GROUP else f"source {item.name}"
            (conf_dir / group / f"{item.name}.yaml").write_text(option_yaml(overrides, where))


def _one_line(err: Exception) -> str:
    return describe(err)[0]


def check_plan(plan: SuitePlan, conf_dir: Path) -> None:
    """Compose every (task, source) twice — its overrides on the command line (misspelt keys fail as in
    ``encoderlab-train``), then through the generated options — and build each source's ``init``."""
    command_line = [o for o in plan.command_line() if not o.lstrip("~").startswith("hydra")]
    checked_init: set[str] = set()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for task in plan.tasks:
            for source in plan.sources:
                where = f"task {task.name} with source {source.name}"
                try:
                    cfg = compose(
                        "train",
                        overrides=[*plan.task_overrides(task), *plan.source_overrides(source), *command_line],
                    )
                    compose(
                        "train",
                        overrides=[
                            f"hydra.searchpath=[{quote('file://' + str(conf_dir))}]",
                            f"+{TASK_GROUP}={task.name}",
                            f"+{SOURCE_GROUP}={source.name}",
                            *command_line,
                        ],
                    )
                except Exception as err:
                    raise UserError(f"{where}: {_one_line(err)}") from None
                if source.name not in checked_init:
                    checked_init.add(source.name)
                    try:
                        instantiate(cfg.init)  # the export, Hugging Face directory or package is readable
                    except Exception as err:
                        raise UserError(
                            f"source {source.name} ({source.describe()}): {_one_line(err)}"
                        ) from None


def multirun_args(plan: SuitePlan, suite_dir: Path, launcher: str, jobs: int | None) -> list[str]:
    """The ``encoderlab-train -m`` command that runs every job of the plan in ``suite_dir``."""
    conf_dir = suite_dir / SUITE_CONF_DIR
    launch = list(LAUNCHERS[launcher])
    if jobs is not None and launcher in JOBS_KEY:
        launch.append(f"{JOBS_KEY[launcher]}={jobs}")
    return [
        sys.executable,
        "-m",
        "encoderlab.train",
        "-m",
        f"hydra.searchpath=[{quote('file://' + str(conf_dir))}]",
        f"hydra.sweep.dir={quote(str(suite_dir))}",
        *launch,
        # The task first: the source's option, composed after it, wins where both set a value.
        f"+{TASK_GROUP}={','.join(t.name for t in plan.tasks)}",
        f"+{SOURCE_GROUP}={','.join(s.name for s in plan.sources)}",
        f"seed={','.join(str(s) for s in plan.spec.seeds)}",
        *plan.command_line(),
    ]
