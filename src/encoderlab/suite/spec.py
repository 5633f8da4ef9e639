"""What a suite is: its tasks (each an experiment with its recipe and the metrics its column shows), its seeds
and the overrides every job gets — read from a preset (``suites/<name>.yaml``) or a YAML file of the user's.

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

import fnmatch
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
SUITE_KEYS = ("description", "base", "seeds", "common", "sources", "tasks", "grid", "report", "published")
REPORTS = ("suite", "study")  # the table a suite's report draws: one row per encoder, or a study's grids
GRID_KEYS = ("datasets", "methods", "shots", "shots_key", "metrics")
DATASET_KEYS = ("title", "experiment", "overrides", "shots", "metrics")
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
    labels: tuple[tuple[str, str], ...] = ()  # a grid's task: (("dataset", "sst2"), ("method", ...), ...)

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)

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
            **({"labels": dict(self.labels)} if self.labels else {}),
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
            labels=tuple((str(k), str(v)) for k, v in (data.get("labels") or {}).items()),
        )


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    seeds: tuple[int, ...]
    common: tuple[str, ...] = ()
    kind_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tasks: tuple[SuiteTask, ...] = ()
    published: tuple[str, ...] = ()
    report: str = "suite"

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


def _mapping(key: str, value, example: str) -> dict:
    if not isinstance(value, dict) or not value:
        raise UserError(f"{key} must be a mapping — e.g. {example}")
    return value


def _shots(key: str, value) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value)
    ):
        raise UserError(f"{key} must be a list of whole numbers >= 1 — e.g. [8, 32, 100]")
    return tuple(value)


def grid_tasks(data, where: str) -> list[SuiteTask]:
    """A study's grid — data sets × methods × numbers of labelled examples — as one task per combination,
    named ``<dataset>-<method>-<shots>`` and labelled with the three, so the report can put them back on
    the grid. ``methods`` maps a method to its overrides (none: ``method=<name>``)."""
    key = f"{where}grid"
    data = _mapping(key, data, "{datasets: {...}, methods: [...], shots: [8, 32]}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise UserError(f"{key} has unknown key(s) {', '.join(unknown)} — use {', '.join(GRID_KEYS)}")
    datasets = _mapping(f"{key}.datasets", data.get("datasets"), "{sst2: {experiment: fewshot_sst2}}")
    methods = data.get("methods")
    if isinstance(methods, list):
        methods = {m: None for m in methods}
    methods = _mapping(f"{key}.methods", methods, "[finetune, probe] or {probe: [optimizer.lr=1e-3]}")
    shots = _shots(f"{key}.shots", data.get("shots")) if data.get("shots") is not None else None
    shots_key = data.get("shots_key", "data.train_sample_per_class")
    check(f"{key}.shots_key", shots_key, text)
    metrics = data.get("metrics", ["test/acc"])
    tasks = []
    for dataset, entry in datasets.items():
        entry = entry or {}
        where_ds = f"{key}.datasets.{dataset}"
        if not isinstance(entry, dict):
            raise UserError(f"{where_ds} must be a mapping (experiment, overrides, shots, title, metrics)")
        unknown = sorted(set(entry) - set(DATASET_KEYS))
        if unknown:
            raise UserError(
                f"{where_ds} has unknown key(s) {', '.join(unknown)} — use {', '.join(DATASET_KEYS)}"
            )
        check_name(str(dataset), "data set")
        ds_shots = _shots(f"{where_ds}.shots", entry["shots"]) if "shots" in entry else shots
        if ds_shots is None:
            raise UserError(f"{where_ds} has no shots — set grid.shots or {where_ds}.shots")
        for method, overrides in methods.items():
            check_name(str(method), "method")
            own = _strings(f"{key}.methods.{method}", overrides) if overrides else (f"method={method}",)
            for n in ds_shots:
                tasks.append(
                    _task(
                        f"{dataset}-{method}-{n}",
                        {
                            "title": f"{entry.get('title') or dataset} {method} N={n}",
                            "experiment": entry.get("experiment"),
                            "overrides": [*(entry.get("overrides") or []), *own, f"{shots_key}={n}"],
                            "metrics": entry.get("metrics", metrics),
                        },
                        where,
                    )
                )
                tasks[-1] = replace(
                    tasks[-1],
                    labels=(
                        ("dataset", str(dataset)),
                        ("method", str(method)),
                        ("shots", str(n)),
                        ("shots_key", shots_key),
                    ),
                )
    return tasks


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
    """A preset's file (``quick`` → ``suites/quick.yaml``) or a suite file's path."""
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
    if data.get("grid") is not None:
        tasks.update((t.name, t) for t in grid_tasks(data["grid"], where))
    report = data.get("report", base.report if base else "suite")
    if report not in REPORTS:
        raise UserError(f"{where}report: {report!r} is not a report — use {' or '.join(REPORTS)}")
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
        report=report,
    )


def select_tasks(spec: SuiteSpec, names: list[str]) -> SuiteSpec:
    """Only the tasks named, in the order named; a name may be a pattern (``sst2-*``, ``*-knn-*``)."""
    known = [t.name for t in spec.tasks]
    chosen: list[str] = []
    for name in names:
        matches = (
            fnmatch.filter(known, name) if any(c in name for c in "*?[") else [n for n in known if n == name]
        )
        if not matches:
            shown = ", ".join(known) if len(known) <= 20 else ", ".join(known[:20]) + f", ... ({len(known)})"
            raise UserError(f"--tasks {name}: not in suite {spec.name} — choose from {shown}")
        chosen += matches
    return replace(spec, tasks=tuple(spec.task(n) for n in dict.fromkeys(chosen)))
