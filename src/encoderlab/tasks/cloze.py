"""Prompt-based classification: the masked-LM head's scores for one verbalizer word per label.

Batches come from ``ClozeDataModule`` (texts wrapped in a template with one ``[MASK]``). The encoder runs
its last layer only at the mask position; the pre-training head maps that state to vocabulary logits, of
which the verbalizer words' are the class logits. Untrained, that is zero-shot classification; trained
with cross-entropy over those logits (encoder and head), it is few-shot PET-style fine-tuning.
"""

from __future__ import annotations

import torch

from encoderlab.data.base import Targets
from encoderlab.errors import UserError
from encoderlab.models.heads import MaskedLMHead
from encoderlab.tasks.classification import SequenceClassificationTask


class ClozeTask(SequenceClassificationTask):
    """Same loss and metrics as sequence classification; the logits are verbalizer-token scores."""

    kind = "cloze"
    head_kind = MaskedLMHead
    targets = Targets.PROMPTED_CLASSES
    usage = (
        "task=cloze goes with head=mlm_pretrained and prompted data (method=cloze or method=zero_shot_cloze: "
        "data with prompt.template)"
    )
    hf_problem_type = None  # the MLM head scores verbalizer words: no sequence-classification head to export

    def __init__(
        self,
        encoder,
        head,
        optimizer=None,
        scheduler=None,
        num_labels: int = 2,
        label_names=None,
        verbalizer_token_ids=(),
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler, num_labels=num_labels, label_names=label_names)
        if len(verbalizer_token_ids) != num_labels:
            raise ValueError(f"{len(verbalizer_token_ids)} verbalizer tokens for {num_labels} labels")
        self.register_buffer(
            "verbalizer_token_ids",
            torch.tensor(list(verbalizer_token_ids), dtype=torch.long),
            persistent=False,
        )

    def forward(self, batch) -> torch.Tensor:
        positions = batch["mask_positions"][:, None]  # B,1
        hidden = self.encoder(
            batch["input_ids"],
            batch.get("attention_mask"),
            batch.get("token_type_ids"),
            output_positions=positions,
        )  # B,H
        return self.head(hidden)[:, self.verbalizer_token_ids]  # B,num_labels

    def settings(self) -> dict:
        return {**super().settings(), "verbalizer_token_ids": self.verbalizer_token_ids.tolist()}

    def prediction_rows(self, items, outputs):
        raise UserError(
            "cloze runs are not served by encoderlab-predict yet (their inputs need the run's prompt "
            "template) — fine-tune a classifier (method=finetune or method=probe) to predict"
        )
