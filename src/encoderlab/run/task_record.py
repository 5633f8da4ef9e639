"""``task.json``: what a run trained, written by the run itself so readers never re-derive it.

The task (its class, ``kind`` and settings), the head (class and settings), the encoder's own config (as
in ``encoder.json``), the adapter's settings and what the data fed it (its class, target kind, sequence
length and columns). :mod:`encoderlab.run.rebuild` builds the trained model back from it.

A run directory is data from wherever it came from: no ``_target_`` from its config is ever instantiated.
The classes named here are imported by module path and accepted only if they are what they must be (an
``EncoderTask`` subclass, the head class that task declares, a data module with ``prediction_batch``),
so a run directory can name only code that is already installed, never bring its own, and never call an
arbitrary function.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.files import write_json
from encoderlab.run.layout import RunDir

FORMAT = "encoderlab-task"
FORMAT_VERSION = 1


def class_path(obj_or_cls) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(path: str, must_be: type, where: Path) -> type:
    """The class at ``path`` (``package.module.Name``), refused unless it is a subclass of ``must_be``."""
    module_name, _, name = str(path).rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name, None) if module_name else None
    except ImportError as err:
        raise UserError(
            f"{where} names {path!r}, which cannot be imported ({err}) — install the package that defines it"
        ) from None
    if not (isinstance(found, type) and issubclass(found, must_be)):
        raise UserError(
            f"{where} names {path!r}, which is not a {must_be.__name__} — a run can only name the classes it "
            "trained with; pass a run directory made by encoderlab-train"
        )
    return found


@dataclass(frozen=True)
class TaskRecord:
    """The parsed ``task.json`` of a run (plain values; classes are resolved on request)."""

    path: Path
    task: dict
    head: dict
    encoder: dict
    adapter: dict | None
    data: dict

    @property
    def kind(self) -> str:
        return str(self.task.get("kind") or "")

    @property
    def label_names(self) -> list[str] | None:
        names = (self.task.get("settings") or {}).get("label_names")
        return [str(n) for n in names] if isinstance(names, list) else None

    @classmethod
    def write(cls, run: RunDir, task, datamodule) -> None:
        """Record what ``task`` (trained on ``datamodule``'s data) is, atomically."""
        write_json(
            run.task,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "task": {"class": class_path(task), "kind": task.kind, "settings": task.settings()},
                "head": {"class": class_path(task.head), "settings": task.head.settings()},
                "encoder": task.encoder.config.to_dict(),
                "adapter": task.adapter.describe(),
                "data": {"class": class_path(datamodule), **datamodule.describe()},
            },
        )

    @classmethod
    def read(cls, run: RunDir) -> TaskRecord:
        """The record, or a UserError naming the file: missing (not a finished run of this version) or bad."""
        if not run.task.is_file():
            raise UserError(
                f"{run.task} not found — pass a finished training run (runs record what they trained in "
                f"{run.task.name}; re-run training with this encoderlab version for older runs)"
            )
        try:
            data = json.loads(run.task.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            parts = {name: data[name] for name in ("task", "head", "encoder", "data")}
            if not all(isinstance(part, dict) for part in parts.values()):
                raise ValueError("task, head, encoder and data must be objects")
            adapter = data.get("adapter")
            if adapter is not None and not isinstance(adapter, dict):
                raise ValueError("adapter must be an object or null")
        except (OSError, ValueError, KeyError, AttributeError) as err:
            raise UserError(f"{run.task} is not a valid task record ({err}) — re-run training") from None
        return cls(path=run.task, adapter=adapter, **parts)
