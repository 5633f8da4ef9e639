"""The run's final state: validated at the last step and saved to ``checkpoints/last.ckpt`` atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl


class LastValidatedStep(pl.Callback):
    """Remembers the global step of the latest validation, so the entry point can tell if it is stale."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def save_last_checkpoint(trainer: pl.Trainer, checkpoint_dir: str | Path) -> Path:
    """Write ``last.ckpt`` through a temporary file and a rename: a crash never leaves a torn checkpoint."""
    path = Path(checkpoint_dir) / "last.ckpt"
    tmp = path.with_name(".last.ckpt.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)
    if trainer.is_global_zero:
        os.replace(tmp, path)
    return path
