"""Sequence regression (e.g. STS-B similarity): encoder + one-output head, MSE, Pearson and Spearman."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanSquaredError, MetricCollection, PearsonCorrCoef, SpearmanCorrCoef

from encoderlab.data.base import Targets
from encoderlab.models.heads import SequenceClassifier
from encoderlab.tasks.base import EncoderTask


class SequenceRegressionTask(EncoderTask):
    """Logs ``{stage}/loss`` and ``{stage}/mse``; ``val/`` and ``test/`` also ``pearson`` and ``spearman``.

    The correlations are computed over the whole epoch (a per-batch correlation means little), which is
    why training logs only the MSE. The head is any sequence head with one output (``head=classifier``).
    """

    kind = "regress"
    head_kind = SequenceClassifier
    targets = Targets.SCORES
    usage = (
        "task=regress goes with head=classifier and one numeric target per example (data.num_labels=1, "
        "e.g. data=stsb)"
    )

    def __init__(
        self, encoder, head, optimizer=None, scheduler=None, num_labels: int = 1, label_names=None
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        if num_labels != 1:
            raise ValueError(f"regression predicts one number per example, got num_labels={num_labels}")
        evaluation = MetricCollection(
            {"mse": MeanSquaredError(), "pearson": PearsonCorrCoef(), "spearman": SpearmanCorrCoef()}
        )
        self.set_stage_metrics(MetricCollection({"mse": MeanSquaredError()}), evaluation)

    def forward(self, batch) -> torch.Tensor:
        return super().forward(batch).float().squeeze(-1)  # B

    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        predictions = self(batch)
        targets = batch["labels"].float()
        loss = F.mse_loss(predictions, targets)
        metrics.update(predictions.detach(), targets)
        self.log_loss_and_metrics(loss, metrics, stage, batch_size=len(batch["labels"]))  # documents
        return loss

    def settings(self) -> dict:
        return {"num_labels": 1}

    def predict_step(self, batch, batch_idx=0):
        return self(batch)

    def prediction_rows(self, items, outputs):
        return [{"score": score} for score in outputs.float().tolist()]
