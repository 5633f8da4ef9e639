"""``checkpoints/last.ckpt``: written atomically, every N optimizer steps and at the end, with the RNG states.

A run killed at any moment (``kill -9``, a preempted node) leaves the previous ``last.ckpt`` whole, and
``resume=RUN_DIR`` continues from it exactly: Lightning restores weights, optimizer, scheduler and loop
state; the training loader restores its position in the epoch (``encoderlab.data.samplers``); ``RNGState``
restores the Python, NumPy and torch random states that dropout draws from.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from encoderlab.errors import UserError
from encoderlab.formats.weights import describe_key_mismatch, few_keys
from encoderlab.run.layout import LAST_CHECKPOINT_FILE

LAST = LAST_CHECKPOINT_FILE


class LastValidatedStep(pl.Callback):
    """Remembers the global step of the latest validation, so the entry point can tell if it is stale."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def save_last_checkpoint(trainer: pl.Trainer, checkpoint_dir: str | Path) -> Path:
    """Write ``last.ckpt`` through a temporary file and a rename: a crash never leaves a torn checkpoint."""
    path = Path(checkpoint_dir) / LAST
    tmp = path.with_name(f".{LAST}.tmp")
    try:
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, path)
    finally:
        if trainer.is_global_zero:
            tmp.unlink(missing_ok=True)  # what a failed write left; after the rename there is nothing
    return path


def weights_are_finite(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """All parameters finite on every process (a collective, so every process takes the same branch)."""
    finite = all(bool(torch.isfinite(p).all()) for p in module.parameters())
    return bool(trainer.strategy.reduce_boolean_decision(finite, all=True))


class PeriodicLastCheckpoint(pl.Callback):
    """Save ``last.ckpt`` every ``every_n_steps`` optimizer steps (right after the step, never between
    accumulated micro-batches). Weights that are no longer finite are never saved over a good checkpoint.
    """

    def __init__(self, dirpath: str, every_n_steps: int = 500) -> None:
        if every_n_steps < 1:
            raise UserError(
                f"every_n_steps={every_n_steps} must be at least 1 — set callbacks.last_checkpoint.every_n_steps"
            )
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        step = trainer.global_step
        if trainer.fast_dev_run or trainer.sanity_checking or step == self._saved_step:
            return
        if step == 0 or step % self.every_n_steps:
            return
        self._saved_step = step
        if weights_are_finite(trainer, pl_module):
            save_last_checkpoint(trainer, self.dirpath)


class RNGState(pl.Callback):
    """Puts the global random states into checkpoints and restores them on resume (dropout draws from them).

    Stored as tensors and plain numbers, so checkpoints still load with ``torch.load(weights_only=True)``.
    """

    def state_dict(self) -> dict:
        version, mt_state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": [version, list(mt_state), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        version, mt_state, gauss = state["python"]
        random.setstate((version, tuple(mt_state), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def check_resumable(module: torch.nn.Module, path: str | Path) -> None:
    """Fail in one line, before Lightning tries, when ``path`` is damaged or holds another architecture."""
    hint = "resume with the encoder/head values the run was started with, or start a new run"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    except Exception as err:  # torn, truncated or not a checkpoint at all
        raise UserError(
            f"cannot read {path} ({type(err).__name__}: {str(err).splitlines()[0][:200]}) — the checkpoint "
            "is damaged; resume from a copy or start a new run"
        ) from None
    own = module.state_dict()
    mismatch = describe_key_mismatch(set(own) - set(state), set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if mismatch or shapes:
        found = mismatch or f"shapes differ (checkpoint vs config): {few_keys(shapes, 3)}"
        raise UserError(f"{path} holds a different model than the config builds ({found}) — {hint}")
