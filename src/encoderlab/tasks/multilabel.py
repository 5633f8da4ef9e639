"""Multi-label classification: one sigmoid per label, binary cross-entropy, F1 and exact-match accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MultilabelExactMatch, MultilabelF1Score

from encoderlab.tasks.base import EncoderTask


class MultiLabelClassificationTask(EncoderTask):
    """Logs ``{stage}/loss``, ``{stage}/f1_micro``, ``{stage}/f1_macro`` and ``{stage}/subset_acc`` (all of a
    text's labels right). A label is predicted when its probability reaches ``threshold``."""

    def __init__(
        self,
        encoder,
        head,
        optimizer,
        scheduler=None,
        num_labels: int = 2,
        label_names=None,
        threshold: float = 0.5,
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
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
        self.log_loss_and_metrics(loss, metrics, stage)
        return loss

    def predict_step(self, batch, batch_idx):
        return torch.sigmoid(self(batch).float())
