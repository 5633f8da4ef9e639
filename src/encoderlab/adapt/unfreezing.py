"""Gradual unfreezing as a Lightning callback: ``freeze(task, policy, step, epoch)`` at every batch.

Every parameter the schedule will ever train is in the optimizer from the start (``setup`` marks them
trainable just before Lightning builds the optimizer); the schedule then only toggles ``requires_grad``.
Why this rather than adding parameter groups as layers thaw (``BaseFinetuning``):

- a frozen parameter gets no gradient (``.grad`` stays None), and AdamW / SGD skip such parameters
  entirely: no update, no weight decay, no optimizer state, so it stays bitwise unchanged;
- the optimizer's parameter list is the same at every step, so a checkpoint's optimizer state always
  matches on resume, and the stage is recomputed from the restored ``global_step`` / epoch;
- under DDP the set of parameters that receive gradients changes between stages, which DDP accepts with
  ``find_unused_parameters=True`` (``trainer.strategy=ddp_find_unused_parameters_true``); ``setup``
  refuses a DDP strategy without it rather than failing (or silently skipping gradient sync) later.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.strategies import DDPStrategy

from encoderlab.adapt.freeze import FreezeGradual, NoFreeze, freeze
from encoderlab.errors import UserError

log = logging.getLogger("encoderlab")


class GradualUnfreezing(pl.Callback):
    def __init__(self, policy: FreezeGradual) -> None:
        self.policy = policy
        self.stage: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        strategy = trainer.strategy
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters"):
            raise UserError(
                "freeze=gradual under DDP needs unused-parameter detection (frozen layers get no gradients) — "
                "set trainer.strategy=ddp_find_unused_parameters_true"
            )
        # The optimizer (built next) must hold everything the schedule will unfreeze.
        freeze(pl_module, NoFreeze())

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stage = self.policy.unfrozen_groups(trainer.global_step, trainer.current_epoch)
        if stage != self.stage:
            trainable = freeze(pl_module, self.policy, trainer.global_step, trainer.current_epoch)
            log.info(
                "gradual unfreezing at step %d (epoch %d): %d encoder layer group(s) train, %s parameters",
                trainer.global_step,
                trainer.current_epoch,
                stage,
                f"{trainable:,}",
            )
            self.stage = stage

    def on_train_start(self, trainer, pl_module) -> None:
        self.stage = None  # a resumed run re-derives its stage from the restored step and epoch
        self._apply(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._apply(trainer, pl_module)
