"""Gradual unfreezing as a Lightning callback: ``freeze(task, policy, step, epoch)`` at each new stage.

The flow, one ``requires_grad`` write per change of state:

1. before the optimizer is built, the entry point's ``freeze_for_optimizer(task, policy)`` marks every
   parameter the schedule will ever train (its last stage), so Lightning builds the optimizer, and DDP its
   gradient buckets, from all of them;
2. ``on_train_start`` checks that the optimizer does hold them all, then narrows ``requires_grad`` to the
   stage of the current ``global_step`` / epoch (the head alone on a fresh start);
3. ``on_train_batch_start`` widens it each time a layer group joins, and stops once all have.

Why this rather than adding parameter groups as layers thaw (``BaseFinetuning``):

- a frozen parameter gets no gradient (``.grad`` stays None), and AdamW / SGD skip such parameters
  entirely: no update, no weight decay, no optimizer state, so it stays bitwise unchanged;
- the optimizer's parameter list is the same at every step, so a checkpoint's optimizer state always
  matches on resume, and the stage is recomputed from the restored ``global_step`` / epoch;
- under DDP the set of parameters that receive gradients changes between stages, which DDP accepts with
  ``find_unused_parameters=True`` (``trainer.strategy.find_unused_parameters=true``); ``setup``
  refuses a DDP strategy without it rather than failing (or silently skipping gradient sync) later.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.strategies import DDPStrategy

from encoderlab.adapt.freeze import FreezeGradual, freeze, last_stage, layer_groups, trainable_parameters
from encoderlab.errors import UserError

log = logging.getLogger("encoderlab")


class GradualUnfreezing(pl.Callback):
    def __init__(self, policy: FreezeGradual) -> None:
        self.policy = policy
        self.stage: int | None = None  # encoder layer groups that train now
        self.groups = 0  # encoder layer groups in all: the last stage

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        strategy = trainer.strategy
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters"):
            raise UserError(
                "freeze=gradual under DDP needs unused-parameter detection (frozen layers get no gradients) — "
                "set trainer.strategy.find_unused_parameters=true"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        in_optimizer = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
        every_stage = trainable_parameters(pl_module, last_stage(self.policy))
        if any(id(p) not in in_optimizer for p in every_stage):
            raise RuntimeError(
                "the optimizer lacks parameters that freeze=gradual will unfreeze — call "
                "freeze_for_optimizer(task, policy) before training"
            )
        # The optimizer was built at the last stage; a resumed run re-derives its stage from the restored
        # step and epoch.
        self.groups = len(layer_groups(pl_module.encoder))
        self.stage = self.groups
        self._apply(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._apply(trainer, pl_module)

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step, epoch = trainer.global_step, trainer.current_epoch
        stage = min(self.policy.unfrozen_groups(step, epoch), self.groups)
        if stage == self.stage:
            return
        trainable = freeze(pl_module, self.policy, step, epoch)
        log.info(
            "gradual unfreezing at step %d (epoch %d): %d encoder layer group(s) train, %s parameters",
            step,
            epoch,
            stage,
            f"{trainable:,}",
        )
        self.stage = stage
