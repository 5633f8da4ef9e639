"""Multi-label classification: one sigmoid per label, binary cross-entropy, F1 and exact-match accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MultilabelExactMatch, MultilabelF1Score

from encoderlab.data.base import Targets
from encoderlab.models.heads import SequenceClassifier
from encoderlab.tasks.base import EncoderTask
from encoderlab.validate import check, open_fraction


class MultiLabelClassificationTask(EncoderTask):
    """Logs ``{stage}/loss``, ``{stage}/f1_micro``, ``{stage}/f1_macro`` and ``{stage}/subset_acc`` (all of a
    text's labels right). A label is predicted when its probability reaches ``threshold``."""

    kind = "multilabel"
    head_kind = SequenceClassifier
    targets = Targets.LABEL_SETS
    usage = "task=multilabel goes with head=classifier and label sets (data=multilabel_classification)"

    def __init__(
        self,
        encoder,
        head,
        optimizer=None,
        scheduler=None,
        num_labels: int = 2,
        label_names=None,
        threshold: float = 0.5,
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        check("task.threshold", threshold, open_fraction)
        self.num_labels = num_labels
        self.label_names = list(label_names) if label_names is not None else None
        self.threshold = threshold
        metrics = MetricCollection(
            {
                "f1_micro": MultilabelF1Score(num_labels, threshold=threshold, average="micro"),
                "f1_macro": MultilabelF1Score(num_labels, threshold=threshold, average="macro"),
                "subset_acc": MultilabelExactMatch(num_labels, threshold=threshold),
            }
        )
        self.set_stage_metrics(metrics)

    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits = self(batch).float()
        targets = batch["labels"].float()
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        metrics.update(torch.sigmoid(logits.detach()), targets.long())
        self.log_loss_and_metrics(loss, metrics, stage, batch_size=len(batch["labels"]))  # documents
        return loss

    def settings(self) -> dict:
        return {"num_labels": self.num_labels, "label_names": self.label_names, "threshold": self.threshold}

    def predict_step(self, batch, batch_idx=0):
        return torch.sigmoid(self(batch).float())

    def prediction_rows(self, items, outputs):
        """Every label whose sigmoid reaches ``threshold``, and each label's probability."""
        names = self.label_names or [str(i) for i in range(self.num_labels)]
        rows = []
        for p in outputs.tolist():
            chosen = [name for name, q in zip(names, p, strict=True) if q >= self.threshold]
            rows.append({"labels": chosen, "probabilities": dict(zip(names, p, strict=True))})
        return rows
