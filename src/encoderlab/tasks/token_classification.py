"""Token classification (NER): encoder + token classifier, per-token cross-entropy, entity-level scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from encoderlab.data.base import Targets
from encoderlab.data.collators import IGNORE_INDEX
from encoderlab.models.heads import TokenClassifier
from encoderlab.tasks.base import EncoderTask
from encoderlab.tasks.entities import OUTSIDE, EntityScore, entity_spans


def word_predictions(
    token_predictions: torch.Tensor, word_index: torch.Tensor, n_words: int, fill: int
) -> torch.Tensor:
    """[B, S] token predictions → [B, n_words]: each word's prediction at its first piece, ``fill`` if unseen."""
    batch = token_predictions.shape[0]
    out = torch.full(
        (batch, n_words + 1), fill, dtype=token_predictions.dtype, device=token_predictions.device
    )
    # Tokens that start no word (specials, later pieces, padding) write into a spare last column, then dropped.
    index = torch.where(word_index >= 0, word_index, torch.full_like(word_index, n_words))
    out.scatter_(1, index, token_predictions)
    return out[:, :n_words]


class TokenClassificationTask(EncoderTask):
    """Logs ``{stage}/loss`` and ``{stage}/token_acc`` (tokens that carry a label); ``val/`` and ``test/``
    also ``entity_precision``, ``entity_recall`` and ``entity_f1``, computed on word-level tags."""

    kind = "tag"
    head_kind = TokenClassifier
    targets = Targets.WORD_TAGS
    usage = (
        "task=tag goes with head=token_classifier and word-tagged data (data=conll2003 or "
        "data=token_classification)"
    )

    def __init__(
        self, encoder, head, optimizer=None, scheduler=None, num_labels: int = 2, label_names=None
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        if label_names is None or len(label_names) != num_labels:
            raise ValueError(
                "token classification needs label_names, one per label (entity scores read them)"
            )
        self.num_labels = num_labels
        self.label_names = list(label_names)
        # Words the model never saw (cut off by max_seq_len) are predicted "O" (or no label at all).
        self.outside_id = self.label_names.index(OUTSIDE) if OUTSIDE in self.label_names else -1
        tokens = MetricCollection(
            {
                "token_acc": MulticlassAccuracy(
                    num_classes=num_labels, average="micro", ignore_index=IGNORE_INDEX
                )
            }
        )
        entities = MetricCollection(
            {f"entity_{s}": EntityScore(self.label_names, s) for s in ("precision", "recall", "f1")}
        )
        self.set_stage_metrics(tokens)
        self.val_entities = entities.clone(prefix="val/")
        self.test_entities = entities.clone(prefix="test/")

    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits = self(batch).float()
        labels = batch["labels"]
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        predictions = logits.detach().argmax(-1)
        metrics.update(predictions, labels)
        self.log_loss_and_metrics(loss, metrics, stage)
        if stage != "train":
            entities = self.val_entities if stage == "val" else self.test_entities
            words = batch["word_labels"]
            entities.update(
                word_predictions(predictions, batch["word_index"], words.shape[1], self.outside_id), words
            )
            self.log_dict(entities, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def settings(self) -> dict:
        return {"num_labels": self.num_labels, "label_names": self.label_names}

    def predict_step(self, batch, batch_idx=0):
        """[B, W] label id per word (its first word piece's prediction; words cut off by truncation get
        ``O``, as in evaluation), W the batch's ``word_index`` width."""
        predictions = self(batch).argmax(-1)
        n_words = int(batch["word_index"].max().item()) + 1 if batch["word_index"].numel() else 0
        return word_predictions(predictions, batch["word_index"], n_words, self.outside_id)

    def prediction_rows(self, items, outputs):
        """Each sentence's words, one tag per word and the entities they form::

        {"tokens": ["Ada", "Lovelace", "wrote"], "tags": ["B-PER", "I-PER", "O"],
         "entities": [{"type": "PER", "start": 0, "end": 1, "text": "Ada Lovelace"}]}
        """
        rows = []
        for words, ids in zip(items, outputs.tolist(), strict=True):
            ids = ids + [self.outside_id] * (len(words) - len(ids))  # words past the last one seen
            tags = [self.label_names[i] if i >= 0 else OUTSIDE for i in ids[: len(words)]]
            entities = [
                {"type": kind, "start": start, "end": end, "text": " ".join(words[start : end + 1])}
                for kind, start, end in sorted(entity_spans(tags), key=lambda span: span[1])
            ]
            rows.append({"tokens": list(words), "tags": tags, "entities": entities})
        return rows
