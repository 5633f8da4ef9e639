"""What every task shares: holding encoder + head, building the optimizer and scheduler from partials,
and saying what it is: the head and data it takes, what it leaves in the run, how it predicts.

A task declares (class attributes, read by the pairing checks in ``tasks/pairing.py``, by the run's
``task.json`` and by every reader of a run):

- ``kind``: the ``task=`` option that selects it, for people reading a run (compare, doctor);
- ``head_kind``: the head class it sits on; ``targets``: what the data's examples carry
  (:class:`encoderlab.data.base.Targets`); ``usage``: one line naming the head and data that go with it;
- ``hf_problem_type``: Hugging Face's ``problem_type`` when the run exports to a sequence-classification
  model (None: no such export).

and implements ``settings()`` (the plain values that rebuild it for inference), ``save_artifacts(run,
datamodule)`` (what it leaves in the run directory beyond the checkpoint), ``predict_step`` and
``prediction_rows`` (its outputs as JSON rows for ``encoderlab-predict``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection

from encoderlab.adapt.adapters import NoAdapter
from encoderlab.adapt.param_groups import LayerwiseLR, param_groups
from encoderlab.data.base import Targets
from encoderlab.errors import UserError
from encoderlab.run.layout import RunDir
from encoderlab.training.budget import budget_of
from encoderlab.training.checkpoints import gather_per_rank, load_metric_state, metric_state, own_rank
from encoderlab.training.schedules import SCHEDULE_RULES
from encoderlab.validate import check_all, non_negative, pair_of, positive, probability

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
# The ``optimizer/`` group's values (torch's names), checked when the task is built rather than when torch
# builds the optimizer at the first step; torch still checks the rest.
OPTIMIZER_RULES = {
    "lr": (positive,),
    "betas": (pair_of(probability, "[0.9,0.999]"),),
    "eps": (positive,),
    "weight_decay": (non_negative,),
    "momentum": (probability,),
}
TRAIN_METRICS_STATE = "encoderlab_train_metrics"  # the checkpoint's entry for the running training metrics


class EncoderTask(pl.LightningModule):
    """A system: an ``encoder`` and a prediction ``head``, a loss, metrics and the optimizer set-up.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``): the optimizer receives the
    parameter groups, the scheduler the optimizer and the total number of optimizer steps.
    ``lr_rule`` (the ``optimizer_groups/`` config group, set by the entry point) spreads learning rates
    over depth; the default is one rate for everything.
    """

    lr_rule: LayerwiseLR = LayerwiseLR()
    adapter = NoAdapter()  # the ``adapter/`` group's choice, set by the entry point (it wraps ``encoder``)
    kind: ClassVar[str]
    head_kind: ClassVar[type[nn.Module]]
    targets: ClassVar[Targets]
    usage: ClassVar[str]
    hf_problem_type: ClassVar[str | None] = None

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        check_all("optimizer", getattr(optimizer, "keywords", {}), OPTIMIZER_RULES)
        check_all("scheduler", getattr(scheduler, "keywords", {}), SCHEDULE_RULES, optional=("warmup_steps",))

    # ------------------------------------------------------------------------- what the task is
    @classmethod
    def check_data(cls, datamodule) -> None:
        """Refuse data whose batches the task cannot learn from although they carry its ``targets`` (e.g.
        the corpus's masking), with a ``UserError`` naming the fix; run by the pairing checks before any
        training. Most tasks need nothing beyond their targets."""

    def settings(self) -> dict:
        """Plain values (besides encoder and head) that rebuild this task for inference."""
        return {}

    def logged_metrics(self) -> set[str]:
        """The names the task logs: its loss per stage and every metric of its metric collections."""
        names = {f"{stage}/loss" for stage in ("train", "val", "test")}
        for module in self.children():
            if isinstance(module, MetricCollection):
                names.update(module.keys(keep_base=False))
        return names

    def save_artifacts(self, run: RunDir, datamodule) -> None:
        """What the task leaves in ``run`` beyond the checkpoint and ``task.json``: its adapter's tensors
        (LoRA); tasks add their own (pre-training: the encoder export)."""
        self.adapter.save_artifacts(run, self, datamodule.tokenizer_dir)

    def prediction_rows(self, items: Sequence, outputs: torch.Tensor) -> list[dict]:
        """``predict_step``'s outputs for ``items`` (the inputs as read) as JSON rows."""
        raise UserError(f"task={self.kind} runs do not predict with encoderlab-predict — {self.usage}")

    # ------------------------------------------------------------------------- training
    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise RuntimeError("this task was rebuilt for inference (no optimizer) and cannot train")
        keywords = getattr(self.optimizer_factory, "keywords", {})
        groups = param_groups(self, keywords.get("weight_decay", 0.0), keywords.get("lr"), self.lr_rule)
        try:
            optimizer = self.optimizer_factory(groups)
        except (TypeError, ValueError) as err:
            # torch validates lr, betas, eps, weight_decay when the optimizer is built.
            raise UserError(f"optimizer settings rejected ({err}) — fix optimizer.lr / optimizer.*") from None
        if self.scheduler_factory is None:
            return optimizer
        estimated = self.trainer.estimated_stepping_batches  # also sets the loader up (see on_train_start)
        budget = budget_of(self.trainer)
        if budget is not None:  # warm-up and decay as fractions of the budget, not of a step count
            scheduler = budget.schedule(self.scheduler_factory, optimizer)
        else:
            scheduler = self.scheduler_factory(optimizer, total_steps=max(1, int(estimated)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        # estimated_stepping_batches (configure_optimizers) sets the training loader up before a resume restores the
        # checkpoint, and Lightning then never hands the loader its saved position (Lightning issue
        # #20550): a run resumed mid-epoch would start the epoch over. Hand it over here, before the first
        # batch is drawn; without a pending resume this does nothing.
        self.trainer.fit_loop._load_combined_loader_states()

    # ------------------------------------------------------------------------- resuming
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # What the epoch's training metrics have counted so far, per process: a run resumed mid-epoch still
        # reports train/acc and the like over the whole epoch, as an uninterrupted run does.
        per_rank = gather_per_rank(metric_state(self.train_metrics))
        checkpoint[TRAIN_METRICS_STATE] = {"epoch": self.current_epoch, "per_rank": per_rank}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get(TRAIN_METRICS_STATE) or {}
        self._saved_train_metrics = (saved.get("epoch"), own_rank(saved.get("per_rank")))

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Only into the epoch they were counted in: a checkpoint taken at an epoch's last batch resumes with
        # the next epoch, whose metrics start from zero.
        epoch, state = getattr(self, "_saved_train_metrics", (None, None))
        if state is not None and epoch == self.current_epoch:
            load_metric_state(self.train_metrics, state)
        self._saved_train_metrics = (None, None)

    def set_stage_metrics(
        self, metrics: MetricCollection, evaluation: MetricCollection | None = None
    ) -> None:
        """``train_metrics`` / ``val_metrics`` / ``test_metrics``: copies named ``train/acc`` etc.

        ``evaluation`` (optional) replaces ``metrics`` for val and test, e.g. epoch-level correlations.
        """
        evaluation = metrics if evaluation is None else evaluation
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = evaluation.clone(prefix="val/")
        self.test_metrics = evaluation.clone(prefix="test/")

    def forward(self, batch) -> torch.Tensor:
        """The head on the encoder's hidden states (tasks whose head reads states + attention mask); for the
        windows of long documents also their ``document_index``, by which the head pools them per document."""
        mask = batch.get("attention_mask")
        ids = batch["input_ids"]
        if getattr(self.head, "reads_first_position_only", False):
            # A [CLS]-pooling head reads one position: the last layer finishes only that one (its
            # attention-output projection and feed-forward on B rows instead of B·S; same values).
            first = torch.zeros(ids.shape[0], 1, dtype=torch.long, device=ids.device)  # B,1
            hidden = self.encoder(ids, mask, batch.get("token_type_ids"), output_positions=first)[:, None]
            mask = None if mask is None else mask[:, :1]  # B,1,H and its mask
        else:
            hidden = self.encoder(ids, mask, batch.get("token_type_ids"))
        if "document_index" in batch:
            return self.head(hidden, mask, document_index=batch["document_index"])
        return self.head(hidden, mask)

    def log_loss_and_metrics(
        self, loss: torch.Tensor, metrics: MetricCollection, stage: str, batch_size: int | None = None
    ) -> None:
        """Loss per step in training and per epoch otherwise; metrics per epoch, val ones on the bar.

        ``batch_size`` weighs the loss in the epoch's mean: the examples of the batch, which Lightning would
        otherwise infer from its first tensor (the windows, when long documents are read in windows)."""
        on_step = stage == "train"
        self.log(
            f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step, batch_size=batch_size
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")

    # Subclasses define ``_step(batch, metrics, stage)`` and one metric collection per stage.
    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, self.test_metrics, "test")

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters, each tensor counted once even when tied."""
        unique = {id(p): p for p in self.parameters()}.values()
        return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)
