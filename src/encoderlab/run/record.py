"""``run.json``: what a run was (code commit, package versions, seed, times, status, where its weights came
from and what it froze)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import encoderlab
from encoderlab.files import write_json
from encoderlab.run.layout import RunDir
from encoderlab.run.redact import redact, redact_argv

PACKAGES = (
    "encoderlab",
    "torch",
    "pytorch-lightning",
    "hydra-core",
    "omegaconf",
    "torchmetrics",
    "tokenizers",
    "safetensors",
    "numpy",
    "transformers",
    "peft",
    "datasets",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(repo: Path | None = None) -> dict:
    """Commit and dirty flag of the encoderlab checkout (null when installed from a wheel)."""
    repo = repo or Path(encoderlab.__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunRecord:
    """Written at start (status ``running``) and rewritten at the end (``completed`` or ``failed``)."""

    def __init__(
        self, run_dir: str | Path, seed: int | None, overrides: list[str] | None = None, write: bool = True
    ) -> None:
        self.path = RunDir(run_dir).record
        self.write = write  # False in the non-zero ranks of a distributed run
        self.data = {
            "status": "running",
            "started": now(),
            "ended": None,
            "seed": seed,
            "overrides": redact_argv(list(overrides or [])),
            "command": redact_argv(sys.argv),
            "git": git_state(),
            "python": platform.python_version(),
            "packages": package_versions(),
        }

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: list[str], write: bool = True) -> RunRecord:
        """The existing record of ``run_dir``, marked running again, with this resume noted."""
        record = cls.__new__(cls)
        record.path = RunDir(run_dir).record
        record.write = write
        record.data = json.loads(record.path.read_text())
        record.data.setdefault("resumes", []).append(
            {"at": now(), "overrides": redact_argv(overrides), "git": git_state()}
        )
        record.data.update(status="running", ended=None)
        return record

    def note(self, **facts) -> None:
        """Add what the components say about themselves (``init``, ``freeze``, ...); written at the end."""
        self.data.update(redact(facts))

    def start(self) -> None:
        if self.write:
            write_json(self.path, self.data)

    def finish(self, status: str, **extra) -> None:
        self.data.update(status=status, ended=now(), **redact(extra))
        if self.write:
            write_json(self.path, self.data)
