"""Sequence classification: encoder + classifier head, cross-entropy, accuracy and macro-F1 (and, with
``task.positive_label``, the F1 of that one label: GLUE's MRPC F1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy, MulticlassF1Score

from encoderlab.data.base import Targets
from encoderlab.models.heads import SequenceClassifier
from encoderlab.tasks.base import EncoderTask
from encoderlab.validate import check, one_of


class PositiveLabelF1(BinaryF1Score):
    """F1 of one label against all others, from class ids (what GLUE reports for MRPC: F1 of "paraphrase")."""

    def __init__(self, positive: int) -> None:
        super().__init__()
        self.positive = positive

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update((preds == self.positive).long(), (target == self.positive).long())


class SequenceClassificationTask(EncoderTask):
    """Logs ``{stage}/loss``, ``{stage}/acc`` and ``{stage}/f1_macro``; with ``positive_label`` (a label name)
    also ``{stage}/f1``, the F1 of that label."""

    kind = "classify"
    head_kind = SequenceClassifier
    targets = Targets.CLASSES
    usage = "task=classify goes with head=classifier and data with one class per text (e.g. data=sst2)"
    hf_problem_type = "single_label_classification"

    def __init__(
        self,
        encoder,
        head,
        optimizer=None,
        scheduler=None,
        num_labels: int = 2,
        label_names=None,
        positive_label: str | None = None,
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        self.num_labels = num_labels
        self.label_names = list(label_names) if label_names is not None else None
        names = self.label_names or [str(i) for i in range(num_labels)]
        self.positive_label = positive_label
        if positive_label is not None:  # a label may be an integer in the YAML but is a name here
            self.positive_label = check("task.positive_label", str(positive_label), one_of(*names))
        metrics = {
            "acc": MulticlassAccuracy(num_classes=num_labels, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes=num_labels, average="macro"),
        }
        if self.positive_label is not None:
            metrics["f1"] = PositiveLabelF1(names.index(self.positive_label))
        self.set_stage_metrics(MetricCollection(metrics))

    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits.float(), batch["labels"])
        metrics.update(logits.detach().argmax(-1), batch["labels"])
        self.log_loss_and_metrics(loss, metrics, stage, batch_size=len(batch["labels"]))  # documents
        return loss

    def settings(self) -> dict:
        settings = {"num_labels": self.num_labels, "label_names": self.label_names}
        if self.positive_label is not None:  # only when set: runs recorded before it rebuild unchanged
            settings["positive_label"] = self.positive_label
        return settings

    def predict_step(self, batch, batch_idx=0):
        return torch.softmax(self(batch).float(), -1)

    def prediction_rows(self, items, outputs):
        """``{"label": best, "probabilities": {name: p, ...}}`` per text (or pair)."""
        names = self.label_names or [str(i) for i in range(self.num_labels)]
        return [
            {"label": names[int(p.argmax())], "probabilities": dict(zip(names, p.tolist(), strict=True))}
            for p in outputs
        ]
