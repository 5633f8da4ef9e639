"""Distillation of a teacher's sentence vectors into the encoder (Reimers & Gurevych 2020's student set-up).

The student pools its hidden states and maps them linearly into the teacher's space
(:class:`encoderlab.models.heads.ProjectionHead`); the loss is how far each text's vector is from the
teacher's: ``1 - cosine`` (``task.loss=cosine``, the default: the teacher's length carries nothing when its
vectors are unit length) or the squared error of sentence-transformers' MSELoss (``task.loss=mse``). The
teacher's vectors come with the data (``data=teacher_vectors``), computed once before training, so a step
costs what a student step costs. Unlabelled text is all it needs; it pre-trains an encoder as MLM does, and
it continues from an MLM export (``init=pretrained``) as well as from random weights.

Leaves the encoder export (``encoder/``) for ``init=pretrained init.path=RUN/encoder``; the projection goes
with the head. Logs ``train/loss``; ``val/loss`` and ``val/cosine`` (the mean cosine between student and
teacher vectors on held-out texts).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection

from encoderlab.adapt.adapters import merged_copy
from encoderlab.data.base import Targets
from encoderlab.data.teacher_vectors import TEACHER_VECTORS
from encoderlab.formats.export import export_encoder
from encoderlab.models.heads import ProjectionHead
from encoderlab.run.layout import RunDir
from encoderlab.tasks.base import EncoderTask
from encoderlab.validate import check, one_of

log = logging.getLogger("encoderlab")
LOSSES = ("cosine", "mse")


def distillation_loss(vectors: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(vectors, targets, dim=-1)).mean()
    return F.mse_loss(vectors, targets)


class DistillationTask(EncoderTask):
    """Encoder + projection head trained to reproduce a teacher's vectors (see the module docstring)."""

    kind = "distill"
    head_kind = ProjectionHead
    targets = Targets.TEACHER_VECTORS
    usage = (
        "task=distill goes with head=projection and data=teacher_vectors (experiment=distill_minilm, or "
        "objective=distill in a pre-training experiment)"
    )

    def __init__(self, encoder, head, optimizer=None, scheduler=None, loss: str = "cosine") -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        self.loss = check("task.loss", loss, one_of(*LOSSES))
        self.set_stage_metrics(MetricCollection({"cosine": MeanMetric()}))

    def settings(self) -> dict:
        return {"loss": self.loss}

    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        vectors = self(batch).float()
        targets = batch[TEACHER_VECTORS].float()
        loss = distillation_loss(vectors, targets, self.loss)
        cosine = F.cosine_similarity(vectors.detach(), targets, dim=-1)
        metrics[f"{stage}/cosine"].update(cosine.mean(), weight=cosine.numel())
        self.log_loss_and_metrics(loss, metrics, stage, batch_size=cosine.numel())
        return loss

    def save_artifacts(self, run: RunDir, datamodule) -> None:
        """The encoder export: the next stage (a fine-tune, or MLM) starts from it."""
        super().save_artifacts(run, datamodule)
        export_encoder(merged_copy(self.encoder), datamodule.tokenizer_dir, run.encoder)
        log.info("encoder exported to %s", run.encoder)

    def predict_step(self, batch, batch_idx=0):
        return F.normalize(self(batch).float(), dim=-1)

    def prediction_rows(self, items, outputs):
        """``{"embedding": [...]}`` per text: the student's vector in the teacher's space, unit length."""
        return [{"embedding": vector} for vector in outputs.tolist()]
