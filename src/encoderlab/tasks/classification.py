"""Sequence classification: encoder + classifier head, cross-entropy, accuracy and macro-F1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from encoderlab.tasks.base import EncoderTask


class SequenceClassificationTask(EncoderTask):
    """Logs ``{stage}/loss``, ``{stage}/acc`` and ``{stage}/f1_macro``."""

    def __init__(
        self, encoder, head, optimizer, scheduler=None, num_labels: int = 2, label_names=None
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        self.num_labels = num_labels
        self.label_names = list(label_names) if label_names is not None else None
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=num_labels, average="micro"),
                "f1_macro": MulticlassF1Score(num_classes=num_labels, average="macro"),
            }
        )
        self.set_stage_metrics(metrics)

    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits.float(), batch["labels"])
        metrics.update(logits.detach().argmax(-1), batch["labels"])
        self.log_loss_and_metrics(loss, metrics, stage)
        return loss

    def predict_step(self, batch, batch_idx):
        return torch.softmax(self(batch).float(), -1)
