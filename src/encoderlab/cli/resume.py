"""Opening the run directory: a new run, or resuming one (``resume=RUN_DIR`` / ``resume=latest``).

An edge module (like ``train.py``): it knows Hydra's config layout. The resolvers are registered before
Hydra composes, so ``hydra.run.dir`` can point back at the run being resumed.

One process writes a run directory (``encoderlab.run.lock``): the lock is taken when Hydra asks where to
save its config, before it writes anything of this command into the run, so a refused second process
(a new start, a resume, a sweep job in a reused directory) leaves the run exactly as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from datetime import datetime
from functools import cache
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from encoderlab.errors import UserError
from encoderlab.run.layout import HYDRA_DIR, RunDir
from encoderlab.run.lock import RunLock, refuse_if_held
from encoderlab.run.record import RunRecord
from encoderlab.run.redact import redact_argv, redact_yaml_files
from encoderlab.training.checkpoints import read_checkpoint_state

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
    root = Path(runs_root)
    children = root.iterdir() if root.is_dir() else []
    candidates = [RunDir(p) for p in children if RunDir(p).last_checkpoint.is_file()]
    latest = max(candidates, key=lambda run: run.last_checkpoint.stat().st_mtime, default=None)
    return latest.path if latest else None


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


# This process's lock (or the refusal) per run directory: taken by _hydra_subdir, handed to open_run.
_claims: dict[Path, RunLock | UserError] = {}


def _claim(run_dir: str | Path) -> bool:
    """Lock ``run_dir`` once per process (Hydra resolves output_subdir more than once); False if refused."""
    key = Path(run_dir).resolve()
    if key not in _claims:
        try:
            _claims[key] = RunLock(key)
        except UserError as refused:
            _claims[key] = refused  # open_run raises it
    return isinstance(_claims[key], RunLock)


def _take_lock(run_dir: Path) -> RunLock:
    """The lock ``_claim`` took, or taken now (when Hydra saves no config); raises a refusal."""
    found = _claims.pop(run_dir.resolve(), None)
    if found is None:
        found = RunLock(run_dir)
    if isinstance(found, UserError):
        raise found
    return found


def _hydra_subdir(resume: str | None, run_dir: str) -> str | None:
    """Where Hydra saves this invocation's config inside the run directory (``run_dir``: this job's)."""
    if not is_primary_process():
        return None  # rank 0 saves the config; the other processes of a distributed run write nothing there
    if not resume and RunDir(run_dir).record.exists():
        return None  # the entry point will refuse this directory: write nothing into it
    if not _claim(run_dir):
        return None  # another process writes this run: the entry point refuses, write nothing into it
    if resume:
        # A resumed run keeps its original .hydra/ files; the resume's own go beside them.
        return f"{HYDRA_DIR}/resumed-{_started()}"
    return HYDRA_DIR


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver("hydra_subdir", _hydra_subdir, replace=True)


def leave_untouched(run_dir: Path, hydra_subdir: str | None) -> None:
    """After a refusal: remove the config files Hydra saved for a resume, and stop logging into the run's
    log (a sweep job logs its refusal; the run may be another process's), so the run stays as it was."""
    if hydra_subdir and Path(hydra_subdir).name.startswith("resumed-"):
        shutil.rmtree(run_dir / hydra_subdir, ignore_errors=True)
    root, inside = logging.getLogger(), run_dir.resolve()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(inside):
            root.removeHandler(handler)
            handler.close()


def resume_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The resumed run's saved config, with plain ``key=value`` overrides from this command applied."""
    run = RunDir(run_dir)
    if not run.last_checkpoint.is_file() or not run.config.is_file():
        raise UserError(
            f"nothing to resume in {run_dir} (no {run.last_checkpoint.relative_to(run.path)} with "
            f"{run.config.relative_to(run.path)}) — pass resume=RUN_DIR of a run that saved a checkpoint, or "
            "drop resume= to start a new run"
        )
    saved = OmegaConf.load(run.config)
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


def open_run(cfg: DictConfig) -> tuple[DictConfig, RunRecord, Path | None, RunLock | None]:
    """(the config to train with, the run record, the checkpoint to resume from or None, this process's
    lock on the run: release it when the record is final; None in the other ranks of a distributed run).

    A run directory held by another process is refused; a new run refuses a directory that already holds
    one; a resume takes the run's saved config with this command's plain overrides. A refused command
    leaves the run exactly as it was.
    """
    run = RunDir(cfg.paths.output_dir)
    primary = is_primary_process()  # the other processes of a distributed run share rank 0's directory
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = list(hydra.overrides.task) if hydra else []
    subdir = hydra.output_subdir if hydra else None  # resolved now, while _claim still has the answer
    resume, lock = bool(cfg.get("resume")), None
    try:
        if primary and not resume and run.record.exists():
            refuse_if_held(run.path)  # a run still training is named by its holder
            raise UserError(
                f"{run} already holds a run — choose a new hydra.run.dir (it is never overwritten)"
            )
        lock = _take_lock(run.path) if primary else None
        if resume:
            cfg = resume_config(run.path, overrides)
            read_checkpoint_state(run.last_checkpoint)  # a damaged one is refused before the run is written
        # Secrets typed into overrides: mask them in what Hydra saved and in the argv loggers (W&B) record.
        if primary:
            redact_yaml_files(run.hydra)
        sys.argv[:] = redact_argv(sys.argv)
        if resume:
            return cfg, RunRecord.resume(run.path, overrides, write=primary), run.last_checkpoint, lock
        return cfg, RunRecord(run.path, seed=cfg.seed, overrides=overrides, write=primary), None, lock
    except BaseException as err:
        if lock is not None:
            lock.release()
        if isinstance(err, UserError):
            leave_untouched(run.path, subdir)
        raise
