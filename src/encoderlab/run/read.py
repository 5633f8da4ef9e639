"""One :class:`Run`: everything a run directory says about itself, read as plain JSON / YAML / CSV.

Used by every reader of runs (compare, the sweep report, doctor, reproduce). A multirun directory
(``multirun.yaml`` + one sub-directory per job) or any folder of runs is expanded into the runs below it.
Every part may be missing (a run that failed in its first second has only ``run.json``); nothing here
instantiates or unpickles anything.

A setting's configured value (:meth:`Run.param`) and the value the run used (:meth:`Run.effective`) can
differ: a fine-tune from an export trains with the export's tokenizer whatever ``data.vocab_size`` says.
Components record what they resolved, named as the config names it (the data module's tokenizer and
vocabulary size, the encoder config, head and task settings in ``task.json``; the init source and freeze
policy in ``run.json``), and readers prefer that record.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from encoderlab.data.base import LabelMap, Targets
from encoderlab.errors import UserError
from encoderlab.files import read_json_object
from encoderlab.run.layout import RunDir
from encoderlab.run.task_record import TaskRecord

MAX_DEPTH = 4  # how deep below a given directory runs are looked for (sweep/job, runs/<time>, ...)
_INTERPOLATION = re.compile(r"\$\{([\w.]+)\}")


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def setting_text(value) -> str | None:
    """A config value as an override would spell it: ``true``, ``0.1``, ``[csv,wandb]``; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(setting_text(v)) for v in value) + "]"
    return str(value)


def read_yaml(path: Path):
    """A YAML file's data; None when it is missing or not YAML."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_history(path: Path) -> list[dict[str, float]]:
    """Rows of Lightning's ``metrics.csv``, numbers only (empty cells dropped; NaN and inf kept)."""
    rows = []
    try:
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                row = {k: v for k, v in ((k, _float(v)) for k, v in raw.items() if k) if v is not None}
                if row:
                    rows.append(row)
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    return rows


def parse_override(override: str) -> tuple[str, str]:
    """``+a.b=1`` → (``a.b``, ``1``); ``~key`` → (``key``, ``<deleted>``)."""
    text = str(override).lstrip("+")
    if text.startswith("~"):
        return text[1:].partition("=")[0], "<deleted>"
    key, _, value = text.partition("=")
    return key, value


def _select(node, dotted: str):
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(eq=False)  # identity: a Run is one directory read once (and can key caches)
class Run:
    """A run directory's record, config, metrics, curves, labels and task record."""

    path: Path
    name: str = ""
    status: str = "unknown"  # completed | failed | running | unknown (no run.json)
    error: str | None = None
    seed: int | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    override_args: list[str] = field(default_factory=list)  # as given on the command line
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    record: dict = field(default_factory=dict)  # run.json as written

    @property
    def dir(self) -> RunDir:
        return RunDir(self.path)

    # ------------------------------------------------------------------------------ config
    def param(self, key: str) -> str | None:
        """The value of ``key`` for this run: its override, else its group choice, else its composed config."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return str(self.choices[key])
        node = _select(self.config, key)
        return None if node is None or isinstance(node, dict | list) else str(node)

    def get(self, dotted: str, default=None):
        """A value of the saved config, simple ``${a.b}`` interpolations resolved (from the config, else from
        the hyperparameters training logged, which are resolved); ``default`` when it cannot be known."""
        value = _select(self.config, dotted)
        if isinstance(value, str) and "${" in value:
            value = self._resolve(value)
            if isinstance(value, str) and "${" in value:
                value = _select(self.logged_hparams, dotted)
        if value is None or (isinstance(value, str) and "${" in value):
            return default
        return value

    def _resolve(self, text: str, depth: int = 5):
        whole = _INTERPOLATION.fullmatch(text)
        if whole:  # "${a.b}" alone keeps the referenced value's type
            target = _select(self.config, whole.group(1))
            return self._resolve(target, depth - 1) if isinstance(target, str) and depth else target

        def one(match: re.Match) -> str:
            target = _select(self.config, match.group(1))
            if isinstance(target, str) and depth:
                target = self._resolve(target, depth - 1)
            return match.group(0) if target is None or isinstance(target, dict | list) else str(target)

        return _INTERPOLATION.sub(one, text)

    def effective(self, key: str) -> str | None:
        """The value of ``key`` this run actually used, as text: what the component owning ``key``'s group
        recorded (:attr:`used`: e.g. the tokenizer and vocabulary a fine-tune inherited from ``init.path``,
        the dropout an export brought), else the configured value (:meth:`param`; config values with their
        interpolations resolved). Runs written before a record existed show their configured values."""
        group, _, name = key.partition(".")
        recorded = self.used.get(group) if name else None
        if recorded is not None and name in recorded:
            return setting_text(recorded[name])
        if key in self.overrides or key in self.choices:
            return self.param(key)
        value = self.get(key)
        if value is None:  # not in the config, or an interpolation that cannot be resolved here
            return self.param(key)
        return None if isinstance(value, dict) else setting_text(value)

    @cached_property
    def used(self) -> dict[str, dict]:
        """Config group → the settings its component recorded as the ones it ran with, named as in the
        config: ``task.json``'s data (the data module's own record), encoder config, head, task and adapter
        settings; ``run.json``'s init source and freeze policy. Empty for a run that left none."""
        used: dict[str, dict] = {}
        for group in ("init", "freeze"):
            if isinstance(self.record.get(group), dict):
                used[group] = self.record[group]
        task = self.task
        if task is None:
            return used
        encoder = task.encoder
        # The embedding table is sized by the data's tokenizer (the entry point builds the encoder with its
        # vocabulary), so runs recorded before the data module noted its vocabulary size still know it.
        inherited = {"vocab_size": encoder["vocab_size"]} if "vocab_size" in encoder else {}
        used["data"] = {**inherited, **{k: v for k, v in task.data.items() if k != "class"}}
        used["encoder"] = encoder
        used["head"] = task.head.get("settings") or {}
        used["task"] = task.task.get("settings") or {}
        if task.adapter:
            used["adapter"] = task.adapter
        return used

    @property
    def task_kind(self) -> str:
        """What the run trained (``pretrain``, ``classify``, ...): its task record's kind, else its ``task``
        choice; empty when neither is known. Metrics of different kinds never share a table or a chart."""
        if self.task is not None and self.task.kind:
            return self.task.kind
        return self.choices.get("task", "")

    @property
    def optimized_metric(self) -> str | None:
        """The metric the run selected its best checkpoint by (``optimized_metric``); None if not saved."""
        value = self.get("optimized_metric")
        return str(value) if value else None

    @cached_property
    def logged_hparams(self) -> dict:
        data = read_yaml(self.dir.logged_hparams)
        return data if isinstance(data, dict) else {}

    def resolve_path(self, value: str) -> Path:
        """A path from the run's config: as given, else relative to the directory training was launched from."""
        path = Path(value)
        if path.is_absolute() or path.exists():
            return path
        cwd = _select(read_yaml(self.dir.hydra_runtime) or {}, "hydra.runtime.cwd")
        return Path(cwd) / path if cwd else path

    def tokenizer_location(self) -> Path | None:
        """Where the tokenizer this run trained with lives: its own copy, its encoder export, else the
        configured ``data.tokenizer`` or ``init.path`` (plain values of its config); None if unknown."""
        for candidate in (self.dir.tokenizer, self.dir.encoder):
            if candidate.is_dir():
                return candidate
        for key in ("data.tokenizer", "init.path"):
            value = self.get(key)
            if isinstance(value, str) and self.resolve_path(value).exists():
                return self.resolve_path(value)
        return None

    # ------------------------------------------------------------------------------ what it trained
    @cached_property
    def task(self) -> TaskRecord | None:
        """The run's ``task.json``; None when it wrote none (failed early, or not finished)."""
        try:
            return TaskRecord.read(self.dir)
        except UserError:
            return None

    @cached_property
    def labels(self) -> list[str] | None:
        """Label names in id order (the task record's, else ``label_map.json``); None without labels."""
        if self.task is not None and self.task.label_names:
            return self.task.label_names
        try:
            return LabelMap.read(self.dir.label_map).names if self.dir.label_map.is_file() else None
        except UserError:
            return None

    @property
    def targets(self) -> Targets | None:
        """What the run's data carried (one class per text, a score, ...), from its task record."""
        name = (self.task.data.get("targets") if self.task else None) or ""
        return Targets.__members__.get(name)

    # ------------------------------------------------------------------------------ metrics
    @cached_property
    def history(self) -> list[dict[str, float]]:
        return read_history(self.dir.curves)

    def series(self, *names: str) -> list[tuple[int, float]]:
        """(step, value) of the first of ``names`` that ``metrics.csv`` logged (NaN and inf kept)."""
        for name in names:
            points = [(int(row.get("step") or 0), row[name]) for row in self.history if name in row]
            if points:
                return points
        return []

    def final(self, name: str) -> float | None:
        """The final value of ``name``: from ``metrics.json``, else the last logged point."""
        value = _float(self.metrics.get(name))
        if value is None:
            points = self.series(name)
            value = points[-1][1] if points else None
        return value

    def curves(self) -> dict[str, list[tuple[float, float]]]:
        """Learning curves for plots: metric → [(step, value), ...], finite values only."""
        curves: dict[str, list[tuple[float, float]]] = {}
        for row in self.history:
            step = row.get("step")
            if step is None:
                continue
            for key, value in row.items():
                if key not in {"step", "epoch"} and not math.isnan(value):
                    curves.setdefault(key, []).append((step, value))
        return curves


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Everything ``path`` says about itself (a UserError when it is not a run directory)."""
    run = RunDir(path)
    if not run.is_run():
        raise UserError(
            f"{run} is not a run directory (no {run.record.name} or {run.hydra.name}/{run.config.name}) — pass "
            "a training run's output directory (outputs/<task_name>/runs/<time>)"
        )
    record = read_json_object(run.record)
    overrides = read_yaml(run.overrides)
    if not isinstance(overrides, list):
        overrides = record.get("overrides") or []
    choices = _select(read_yaml(run.hydra_runtime) or {}, "hydra.runtime.choices") or {}
    config = read_yaml(run.config)
    config = config if isinstance(config, dict) else {}
    metrics = read_json_object(run.metrics) or (record.get("metrics") or {})
    parsed = dict(parse_override(o) for o in overrides)
    seed = record.get("seed") if record.get("seed") is not None else config.get("seed")
    return Run(
        path=run.path,
        name=name or run.path.name,
        status=record.get("status") or ("completed" if metrics else "unknown"),
        error=record.get("error"),
        seed=seed,
        overrides={k: v for k, v in parsed.items() if not k.startswith("hydra.")},
        override_args=[str(o) for o in overrides],
        metrics={
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
        },
        config=config,
        choices={k: str(v) for k, v in choices.items() if not k.startswith("hydra/") and v is not None},
        record=record,
    )


def _runs_below(root: Path, depth: int = MAX_DEPTH) -> list[Path]:
    if RunDir(root).is_run():
        return [root]
    if depth == 0:
        return []
    found: list[Path] = []
    for child in sorted(root.iterdir(), key=_natural_key):
        if child.is_dir() and not child.name.startswith("."):
            found += _runs_below(child, depth - 1)
    return found


def _natural_key(path: Path) -> tuple:
    """Job directories 0, 1, ..., 10 in numeric order; other names alphabetically after them."""
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every run in ``paths`` (run directories, multirun directories or folders holding runs).

    Raises ``UserError`` naming every path that is missing or holds no run.
    """
    found: list[Path] = []
    bad: list[str] = []
    for given in paths:
        path = Path(given)
        runs = _runs_below(path) if path.is_dir() else []
        if not runs:
            bad.append(f"{given} ({'no run in it' if path.is_dir() else 'no such directory'})")
        found += [r for r in runs if r not in found]
    if bad:
        raise UserError(
            f"not a run directory: {'; '.join(bad)} — pass run directories (outputs/<task>/runs/<time>) "
            "or multirun directories (outputs/<task>/multiruns/<time>)"
        )
    return [load_run(p, name) for p, name in zip(found, run_names(found), strict=True)]


def run_names(paths: list[Path]) -> list[str]:
    """Short unique labels: each path relative to the deepest directory they all share."""
    if len(paths) == 1:
        return [paths[0].name]
    resolved = [p.resolve() for p in paths]
    common = Path(*_common_parts([p.parts for p in resolved]))
    names = [str(p.relative_to(common)) if p != common else p.name for p in resolved]
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    return names


def _common_parts(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    common: list[str] = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return tuple(common)
