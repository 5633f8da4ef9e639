"""Stop a run whose training loss is no longer finite, before the bad step reaches the weights.

The check runs before ``backward``: the NaN/Inf step never updates the weights, and the last good
``last.ckpt`` (never written from non-finite weights, see ``PeriodicLastCheckpoint``) stays as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from encoderlab.errors import UserError


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the message names the step and what to change."""


class StopOnNonFiniteLoss(pl.Callback):
    def __init__(self, checkpoint: str | None = None) -> None:
        self.checkpoint = Path(checkpoint) if checkpoint else None

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        # Every process must stop together, or the others wait forever in the gradient all-reduce.
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise TrainingDiverged(self._message(trainer, loss))

    def _message(self, trainer: pl.Trainer, loss) -> str:
        value = float(loss.detach().float().mean()) if loss.numel() else float("nan")
        what = "NaN" if value != value else ("infinite" if abs(value) == float("inf") else "non-finite")
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        lr_text = f" (now {lr:.3g})" if lr is not None else ""
        if self.checkpoint is not None and self.checkpoint.is_file():
            kept = f"the last good checkpoint is kept at {self.checkpoint}"
        else:
            kept = (
                "no checkpoint was saved before it (callbacks.last_checkpoint.every_n_steps sets how often)"
            )
        return (
            f"training loss became {what} at step {trainer.global_step} — lower optimizer.lr{lr_text} or "
            f"keep warmup (scheduler.warmup_ratio) and clipping (trainer.gradient_clip_val); {kept}"
        )
