"""Where a run writes, and resuming into an existing run directory (``resume=RUN_DIR`` / ``resume=latest``).

An edge module (like ``train.py``): it knows Hydra's config layout. The resolvers are registered before
Hydra composes, so ``hydra.run.dir`` can point back at the run being resumed.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from encoderlab.errors import UserError

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
SAVED_CONFIG = Path(".hydra") / "config.yaml"
# Keys that shape the model or its vocabulary: the checkpoint fixes them, a resume cannot change them.
ARCHITECTURE = ("encoder.", "head.", "task.", "init.", "data.vocab_size", "data.tokenizer", "data.lowercase")


def is_primary_process() -> bool:
    """Whether this is rank 0, from what launchers set (torchrun, SLURM, Lightning's DDP re-launch).

    Known before Lightning starts: only rank 0 writes ``.hydra/``, ``run.json`` and ``metrics.json``; the
    other processes of a distributed run reuse rank 0's run directory.
    """
    ranks = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")
    return all(int(os.environ.get(name) or 0) == 0 for name in ranks)


def latest_run(runs_root: str | Path) -> Path | None:
    """The run under ``runs_root`` whose ``last.ckpt`` was written most recently."""
    candidates = [p.parent.parent for p in Path(runs_root).glob(f"*/{LAST_CHECKPOINT}")]
    return max(candidates, key=lambda p: (p / LAST_CHECKPOINT).stat().st_mtime, default=None)


def _run_dir(resume: str | None, new_dir: str) -> str:
    if not resume:
        return new_dir
    if resume == "latest":
        found = latest_run(Path(new_dir).parent)
        return str(found) if found else new_dir
    return str(resume)


@cache
def _started() -> str:
    # Fixed per process: Hydra resolves output_subdir more than once, and a refused resume removes that dir.
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S-%f}"


def _hydra_subdir(resume: str | None, run_dir: str) -> str | None:
    """Where Hydra saves this invocation's config inside the run directory."""
    if not is_primary_process():
        return None  # rank 0 saves the config; the other processes of a distributed run write nothing there
    if resume:
        # A resumed run keeps its original .hydra/ files; the resume's own go beside them.
        return f".hydra/resumed-{_started()}"
    if (Path(run_dir) / "run.json").exists():
        return None  # the entry point will refuse this directory: write nothing into it
    return ".hydra"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver("hydra_subdir", _hydra_subdir, replace=True)


def forget_refused_resume(run_dir: Path, hydra_subdir: str | None) -> None:
    """Remove the config files Hydra saved for a resume that was refused: the run stays as it was."""
    if hydra_subdir and Path(hydra_subdir).name.startswith("resumed-"):
        shutil.rmtree(run_dir / hydra_subdir, ignore_errors=True)


def resume_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The resumed run's saved config, with plain ``key=value`` overrides from this command applied."""
    checkpoint = run_dir / LAST_CHECKPOINT
    if not checkpoint.is_file() or not (run_dir / SAVED_CONFIG).is_file():
        raise UserError(
            f"nothing to resume in {run_dir} (no {LAST_CHECKPOINT} with {SAVED_CONFIG}) — "
            "pass resume=RUN_DIR of a run that saved a checkpoint, or drop resume= to start a new run"
        )
    saved = OmegaConf.load(run_dir / SAVED_CONFIG)
    for override in overrides:
        key, _, value = override.partition("=")
        if key == "resume":
            continue
        current = OmegaConf.select(saved, key, default=None)
        if key.startswith(ARCHITECTURE):
            raise UserError(
                f"cannot change '{key}' when resuming: the checkpoint holds the model the run was started "
                "with — drop that override, or start a new run (init=pretrained to reuse its encoder)"
            )
        if key.startswith(("~", "+")) or isinstance(current, DictConfig):
            raise UserError(
                f"cannot change '{key}' when resuming — only plain values like trainer.max_steps=... can change"
            )
        OmegaConf.update(saved, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=False)
    saved.paths.output_dir = str(run_dir)
    saved.resume = str(run_dir)
    return saved
