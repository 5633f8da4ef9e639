"""What a suite is: its tasks (each an experiment with its recipe and the metrics its column shows), its seeds
and the overrides every job gets — read from a preset (``conf/suite/<name>.yaml``) or a YAML file of the user's.

A suite file::

    base: quick                  # optional: start from another suite (a preset name or a path)
    seeds: 3                     # a count (seeds 1..N) or a list
    common: [data.max_seq_len=64]          # every job, before its task's own overrides
    sources:                     # every source of a kind (export, run, hf, minilm, scratch), before its own
      minilm: [optimizer.lr=5.0e-5]
    published: [bert-tiny]       # reference rows shown beside the measured ones (encoderlab.suite.published)
    tasks:
      sst2:
        title: SST-2
        experiment: finetune_sst2            # optional: an experiment= to start from
        overrides: [data.train_limit=4000]   # encoderlab-train overrides, as on its command line
        metrics: [val/acc]                   # the cell: the median over seeds of each, shown as a/b
      reviews: {overrides: [data=text_classification, data.train_file=train.csv], metrics: [val/acc]}

With ``base``, ``common`` and ``sources`` lists extend the base's, ``tasks`` are added or replaced by name
(``name: null`` drops one), ``seeds`` and ``published`` replace the base's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from encoderlab.errors import UserError
from encoderlab.validate import boolean, check, non_empty, text

# The config groups of the generated options each job composes: ``+suite_source=<name> +suite_task=<name>``.
SOURCE_GROUP = "suite_source"
TASK_GROUP = "suite_task"
SOURCE_KINDS = ("export", "run", "hf", "minilm", "scratch")
SUITE_KEYS = ("description", "base", "seeds", "common", "sources", "tasks", "published")
TASK_KEYS = ("title", "experiment", "overrides", "metrics", "percent")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")  # a config option's file name and a Hydra override value
MAX_BASE_DEPTH = 5


@dataclass(frozen=True)
class SuiteTask:
    """One column of the table: an experiment (or none), its recipe, the metrics its cell shows."""

    name: str
    title: str
    experiment: str | None
    overrides: tuple[str, ...]
    metrics: tuple[str, ...]
    percent: bool = True  # scores in [0, 1] shown ×100 and averaged; false: shown as they are, not averaged

    @property
    def header(self) -> str:
        """``MRPC val f1/acc``: the title, the split and the metric names of the cell."""
        splits = {m.split("/")[0] for m in self.metrics if "/" in m}
        split = f" {splits.pop()}" if len(splits) == 1 else ""
        names = "/".join(m.split("/")[-1] if split else m for m in self.metrics)
        return f"{self.title}{split} {names}"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "experiment": self.experiment,
            "overrides": list(self.overrides),
            "metrics": list(self.metrics),
            "percent": self.percent,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SuiteTask:
        return cls(
            name=data["name"],
            title=data.get("title") or data["name"],
            experiment=data.get("experiment"),
            overrides=tuple(data.get("overrides") or ()),
            metrics=tuple(data["metrics"]),
            percent=bool(data.get("percent", True)),
        )


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    seeds: tuple[int, ...]
    common: tuple[str, ...] = ()
    kind_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tasks: tuple[SuiteTask, ...] = ()
    published: tuple[str, ...] = ()

    def task(self, name: str) -> SuiteTask:
        return next(t for t in self.tasks if t.name == name)


def parse_seeds(value) -> tuple[int, ...]:
    """``3`` → seeds 1, 2, 3; ``"1,2,3"`` or ``[1, 2, 3]`` → those seeds."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            value = int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]
        except (ValueError, IndexError):
            raise UserError(
                f"seeds {value!r} is not a count or a list of integers — e.g. 3 or 1,2,3"
            ) from None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise UserError(
                f"seeds {value} must be at least 1 — give a count such as 3 or a list such as 1,2,3"
            )
        return tuple(range(1, value + 1))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        if len(set(value)) != len(value):
            raise UserError(f"seeds {value} repeat a seed — list each seed once")
        return tuple(value)
    raise UserError(f"seeds {value!r} is not a count or a list of integers — e.g. 3 or 1,2,3")


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name.lower() in {"true", "false", "null"}:
        raise UserError(
            f"{what} name {name!r} must start with a letter and hold only letters, digits, '_', '.' and '-' "
            "— rename it"
        )
    return name


def _strings(key: str, value, example: str = "[key=value]", required: bool = False) -> tuple[str, ...]:
    check(key, value, non_empty(example), optional=not required)
    for item in value or ():
        check(key, item, text)
    return tuple(value or ())


def _task(name: str, data, where: str) -> SuiteTask:
    key = f"{where}tasks.{name}"
    if not isinstance(data, dict):
        raise UserError(f"{key} must be a mapping with metrics: [...] (and title, experiment, overrides)")
    unknown = sorted(set(data) - set(TASK_KEYS))
    if unknown:
        raise UserError(f"{key} has unknown key(s) {', '.join(unknown)} — use {', '.join(TASK_KEYS)}")
    check_name(name, "task")
    if "metrics" not in data:
        raise UserError(f"{key} needs metrics — e.g. metrics: [val/acc] (the final metrics its cell shows)")
    for item in ("title", "experiment"):
        check(f"{key}.{item}", data.get(item), text, optional=True)
    check(f"{key}.percent", data.get("percent", True), boolean)
    return SuiteTask(
        name=name,
        title=data.get("title") or name,
        experiment=data.get("experiment"),
        overrides=_strings(f"{key}.overrides", data.get("overrides")),
        metrics=_strings(f"{key}.metrics", data["metrics"], "[val/acc]", required=True),
        percent=data.get("percent", True),
    )


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise UserError(f"cannot read suite file {path} ({err.strerror}) — check the path") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML ({str(err).splitlines()[0]}) — fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must be a YAML mapping with tasks: {{...}} — see docs/experiments.md")
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise UserError(f"{path} has unknown key(s) {', '.join(unknown)} — use {', '.join(SUITE_KEYS)}")
    return data


def locate(name_or_path: str, presets_dir: Path, relative_to: Path | None = None) -> Path:
    """A preset's file (``quick`` → ``conf/suite/quick.yaml``) or a suite file's path."""
    given = Path(name_or_path)
    if given.suffix in {".yaml", ".yml"} or len(given.parts) > 1:
        path = given if given.is_absolute() or relative_to is None else relative_to / given
        if not path.is_file():
            raise UserError(f"suite file {path} does not exist — pass a preset name or a suite YAML file")
        return path
    path = presets_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in presets_dir.glob("*.yaml")))
        raise UserError(
            f"no suite preset {name_or_path!r} — choose one of {names}, or pass a suite YAML file"
        )
    return path


def load_spec(
    name_or_path: str, presets_dir: Path, relative_to: Path | None = None, _depth: int = 0
) -> SuiteSpec:
    """The suite named (a preset) or written in a file, its ``base`` chain merged in; every value checked.

    A suite file's ``base`` path is relative to that file; the suite given on the command line to the
    working directory."""
    path = locate(name_or_path, presets_dir, relative_to or Path.cwd())
    data = _read(path)
    where = f"{path}: "
    base = None
    if data.get("base") is not None:
        if _depth >= MAX_BASE_DEPTH:
            raise UserError(f"{where}base: goes more than {MAX_BASE_DEPTH} suites deep — is it circular?")
        base = load_spec(str(data["base"]), presets_dir, path.parent, _depth + 1)
    seeds = parse_seeds(data["seeds"]) if "seeds" in data else (base.seeds if base else (1, 2, 3))
    kinds = dict(base.kind_overrides) if base else {}
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        raise UserError(f"{where}sources must map a source kind ({', '.join(SOURCE_KINDS)}) to overrides")
    for kind, overrides in sources.items():
        if kind not in SOURCE_KINDS:
            raise UserError(f"{where}sources.{kind} is not a source kind — use {', '.join(SOURCE_KINDS)}")
        kinds[kind] = kinds.get(kind, ()) + _strings(f"{where}sources.{kind}", overrides)
    tasks = {t.name: t for t in (base.tasks if base else ())}
    raw_tasks = data.get("tasks") or {}
    if not isinstance(raw_tasks, dict):
        raise UserError(f"{where}tasks must map task names to {{metrics: [...], ...}}")
    for name, entry in raw_tasks.items():
        if entry is None:
            tasks.pop(name, None)
        else:
            tasks[name] = _task(str(name), entry, where)
    if not tasks:
        raise UserError(f"{where}the suite has no tasks — add some under tasks:")
    published = data.get("published", base.published if base else ())
    return SuiteSpec(
        name=path.stem if path.parent == presets_dir else str(path),
        seeds=seeds,
        common=(base.common if base else ()) + _strings(f"{where}common", data.get("common")),
        kind_overrides=kinds,
        tasks=tuple(tasks.values()),
        published=tuple(_strings(f"{where}published", list(published) or None)),
    )


def select_tasks(spec: SuiteSpec, names: list[str]) -> SuiteSpec:
    """Only the tasks named, in the order named."""
    known = [t.name for t in spec.tasks]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(
            f"--tasks {','.join(unknown)}: not in suite {spec.name} — choose from {', '.join(known)}"
        )
    return replace(spec, tasks=tuple(spec.task(n) for n in dict.fromkeys(names)))
