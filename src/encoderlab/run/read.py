"""Run directories as plain records: final metrics, run status, overrides, learning curves.

A *run directory* is what ``encoderlab-train`` leaves: ``run.json``, ``metrics.json``, ``.hydra/``,
``csv/metrics.csv``. A multirun directory (``multirun.yaml`` + one sub-directory per job) or any folder of
runs is expanded into the runs below it. Everything is read as plain JSON / YAML / CSV.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from encoderlab.errors import UserError
from encoderlab.files import read_json_object

RUN_MARKERS = ("run.json", "metrics.json", ".hydra/overrides.yaml")
CURVES = Path("csv") / "metrics.csv"
MAX_DEPTH = 4  # how deep below a given directory runs are looked for (sweep/job, runs/<time>, ...)


@dataclass
class Run:
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

    def param(self, key: str) -> str | None:
        """The value of ``key`` for this run: its override, else its group choice, else its composed config."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return str(self.choices[key])
        node = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return None if isinstance(node, dict | list) else str(node)

    def curves(self) -> dict[str, list[tuple[float, float]]]:
        """Learning curves from Lightning's CSVLogger file: metric → [(step, value), ...]."""
        return read_curves(self.path / CURVES)


def is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def parse_override(override: str) -> tuple[str, str]:
    """``+a.b=1`` → (``a.b``, ``1``); ``~key`` → (``key``, ``<deleted>``)."""
    text = str(override).lstrip("+")
    if text.startswith("~"):
        return text[1:].partition("=")[0], "<deleted>"
    key, _, value = text.partition("=")
    return key, value


def load_run(path: Path, name: str | None = None) -> Run:
    record = read_json_object(path / "run.json")
    overrides = _read_yaml(path / ".hydra" / "overrides.yaml")
    if not isinstance(overrides, list):
        overrides = record.get("overrides") or []
    hydra_cfg = _read_yaml(path / ".hydra" / "hydra.yaml") or {}
    choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    config = _read_yaml(path / ".hydra" / "config.yaml")
    metrics = {
        k: float(v)
        for k, v in read_json_object(path / "metrics.json").items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    parsed = dict(parse_override(o) for o in overrides)
    seed = record.get("seed")
    if seed is None and isinstance(config, dict):
        seed = config.get("seed")
    status = record.get("status") or ("completed" if metrics else "unknown")
    return Run(
        path=path,
        name=name or path.name,
        status=status,
        error=record.get("error"),
        seed=seed,
        overrides={k: v for k, v in parsed.items() if not k.startswith("hydra.")},
        override_args=[str(o) for o in overrides],
        metrics=metrics,
        config=config if isinstance(config, dict) else {},
        choices={k: str(v) for k, v in choices.items() if not k.startswith("hydra/") and v is not None},
    )


def _runs_below(root: Path, depth: int = MAX_DEPTH) -> list[Path]:
    if is_run_dir(root):
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
            bad.append(
                f"{given} ({'no run.json, metrics.json or .hydra/ in it' if path.is_dir() else 'no such directory'})"
            )
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


def read_curves(path: Path) -> dict[str, list[tuple[float, float]]]:
    """``csv/metrics.csv`` → metric → [(step, value)], skipping Lightning's empty cells."""
    curves: dict[str, list[tuple[float, float]]] = {}
    try:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                step = _number(row.get("step"))
                if step is None:
                    continue
                for key, cell in row.items():
                    value = _number(cell)
                    if key in {"step", "epoch"} or key is None or value is None:
                        continue
                    curves.setdefault(key, []).append((step, value))
    except OSError:
        return {}
    return curves


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value
