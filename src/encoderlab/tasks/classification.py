"""Sequence classification: encoder + classifier head, cross-entropy, accuracy and macro-F1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from encoderlab.data.base import Targets
from encoderlab.models.heads import SequenceClassifier
from encoderlab.tasks.base import EncoderTask


class SequenceClassificationTask(EncoderTask):
    """Logs ``{stage}/loss``, ``{stage}/acc`` and ``{stage}/f1_macro``."""

    kind = "classify"
    head_kind = SequenceClassifier
    targets = Targets.CLASSES
    usage = "task=classify goes with head=classifier and data with one class per text (e.g. data=sst2)"
    hf_problem_type = "single_label_classification"

    def __init__(
        self, encoder, head, optimizer=None, scheduler=None, num_labels: int = 2, label_names=None
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

    def settings(self) -> dict:
        return {"num_labels": self.num_labels, "label_names": self.label_names}

    def predict_step(self, batch, batch_idx=0):
        return torch.softmax(self(batch).float(), -1)

    def prediction_rows(self, items, outputs):
        """``{"label": best, "probabilities": {name: p, ...}}`` per text (or pair)."""
        names = self.label_names or [str(i) for i in range(self.num_labels)]
        return [
            {"label": names[int(p.argmax())], "probabilities": dict(zip(names, p.tolist(), strict=True))}
            for p in outputs
        ]
