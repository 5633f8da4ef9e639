"""The encoders a suite fine-tunes, as given on the command line: ``[NAME=]SOURCE[:KEY=VALUE,...]``.

SOURCE is an encoder export (a directory with ``encoder.json``), a pre-training run directory (its
``encoder/`` export is used), a Hugging Face model directory (``config.json``: ``init=hf``), ``minilm`` (the
offline all-MiniLM-L6-v2: ``init=minilm``) or ``scratch`` (a fresh encoder of the ``encoder=`` preset, the
control). NAME is the row's name (default: the directory's name); the overrides after ``:`` are this
encoder's own recipe adjustments (``optimizer.lr=1e-3``), applied to each of its jobs after the task's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.formats.export import CONFIG_FILE as EXPORT_CONFIG_FILE
from encoderlab.formats.hf import CONFIG_FILE as HF_CONFIG_FILE
from encoderlab.run.layout import RunDir
from encoderlab.suite.spec import check_name

NAMED = re.compile(r"([A-Za-z0-9_.-]+)=(.+)")
PLAIN_PATH = re.compile(r"[\w./@+-]+")
WHAT = (
    "pass an encoder export (a directory with encoder.json), a pre-training run directory, a Hugging Face "
    "model directory (config.json), minilm or scratch"
)
BUILT_IN = {"minilm": "all-MiniLM-L6-v2 (init=minilm)", "scratch": "a fresh encoder (init=scratch)"}


@dataclass(frozen=True)
class Source:
    """One row of the table: an encoder, where it comes from, and its own overrides."""

    name: str
    kind: str  # export | run | hf | minilm | scratch
    path: Path | None = None
    overrides: tuple[str, ...] = ()

    @property
    def export_dir(self) -> Path | None:
        """The directory ``init.path`` points at."""
        return RunDir(self.path).encoder if self.kind == "run" else self.path

    def init_overrides(self) -> tuple[str, ...]:
        """The ``encoderlab-train`` overrides that load this encoder."""
        if self.kind in BUILT_IN:
            return (f"init={self.kind}",)
        init = "hf" if self.kind == "hf" else "pretrained"
        return (f"init={init}", f"init.path={quote(str(self.export_dir))}")

    def describe(self) -> str:
        what = {"export": "encoder export", "run": "pre-training run", "hf": "Hugging Face model"}
        return BUILT_IN[self.kind] if self.kind in BUILT_IN else f"{what[self.kind]} {self.path}"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path) if self.path else None,
            "overrides": list(self.overrides),
            "describe": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Source:
        path = Path(data["path"]) if data.get("path") else None
        return cls(data["name"], data["kind"], path, tuple(data.get("overrides") or ()))


def quote(value: str) -> str:
    """A path as an override value: plain when it can be, else in single quotes (Hydra's grammar)."""
    if PLAIN_PATH.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse(text: str) -> tuple[str | None, str, tuple[str, ...]]:
    """``NAME=PATH:a=1,b=2`` → (``NAME``, ``PATH``, (``a=1``, ``b=2``)); NAME and the overrides optional."""
    head, colon, tail = text.partition(":")
    if colon and "=" not in tail:  # a ':' inside the path itself, not overrides after it
        head, tail = text, ""
    overrides = tuple(o.strip() for o in tail.split(",") if o.strip())
    bad = [o for o in overrides if "=" not in o.lstrip("~")]
    if bad:
        raise UserError(
            f"source {text!r}: {bad[0]!r} is not KEY=VALUE — write SOURCE:key=value,key=value (values with "
            "commas: --source-overrides NAME KEY=VALUE ...)"
        )
    named = NAMED.fullmatch(head)
    if named and "/" not in named.group(1):
        return named.group(1), named.group(2), overrides
    return None, head, overrides


def kind_of(path: Path, text: str, what: str = WHAT, fine_tuned: bool = False) -> str:
    """What the directory ``path`` (given as ``text``) holds: ``export``, ``run`` (a pre-training run: its
    ``encoder/`` export) or ``hf``; a UserError ending in ``what`` when it is none. With ``fine_tuned``, a
    run without an encoder export is ``finetuned`` (its checkpoint holds the encoder: run/rebuild.py)."""
    if not path.exists():
        raise UserError(f"source {text!r}: {path} does not exist — {what}")
    if (path / EXPORT_CONFIG_FILE).is_file():
        return "export"
    if RunDir(path).is_run():
        if (RunDir(path).encoder / EXPORT_CONFIG_FILE).is_file():
            return "run"
        if fine_tuned:
            return "finetuned"
        raise UserError(
            f"source {text!r}: {path} is a run directory without an encoder export ({RunDir(path).encoder.name}/"
            f"{EXPORT_CONFIG_FILE}) — pass a pre-training run (encoderlab-train experiment=pretrain_mlm)"
        )
    if (path / HF_CONFIG_FILE).is_file():
        return "hf"
    raise UserError(f"source {text!r}: {path} is not an encoder — {what}")


def default_name(kind: str, path: Path | None) -> str:
    if path is None:
        return kind
    # <run>/encoder is named after its run: "encoder" would name every pre-training run's export alike.
    directory = path.parent if path.name == RunDir(path.parent).encoder.name else path
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", directory.name).strip("-.") or kind
    return name if name[0].isalpha() else f"{'hf' if kind == 'hf' else 'run'}-{name}"


def resolve(text: str) -> Source:
    """The source ``text`` names, its kind read from the files it holds; a UserError when it is none."""
    name, target, overrides = parse(text)
    if target in BUILT_IN:
        kind, path = target, None
    else:
        path = Path(target).expanduser().resolve()  # jobs may run elsewhere (SLURM): absolute paths
        kind = kind_of(path, text)
    name = check_name(name, "source") if name is not None else default_name(kind, path)
    return Source(name, kind, path, overrides)


def resolve_all(texts: list[str], extra: dict[str, list[str]] | None = None) -> list[Source]:
    """Every source, with unique names; ``extra`` adds overrides by source name (``--source-overrides``)."""
    if not texts:
        raise UserError(f"no SOURCE given — {WHAT}")
    extra = extra or {}
    found = [resolve(text) for text in texts]
    sources = [replace(s, overrides=s.overrides + tuple(extra.get(s.name, ()))) for s in found]
    names = [s.name for s in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(
            f"two sources are named {twice[0]} — name each row: NAME=PATH (e.g. {twice[0]}-2={sources[-1].path or twice[0]})"
        )
    unknown = sorted(set(extra) - set(names))
    if unknown:
        raise UserError(
            f"--source-overrides {unknown[0]}: no source of that name — use one of {', '.join(names)}"
        )
    return sources
