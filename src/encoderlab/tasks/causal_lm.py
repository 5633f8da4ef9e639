"""Causal language modelling: a causal encoder + LM head predict every next token.

The batch is the uncorrupted text (``data.masking=none``: labels = input ids at real tokens, -100 at
padding); the shift is here: hidden states at positions 0..S−2 predict the labels at 1..S−1. An encoder
that attends both ways would see the token it predicts, so the task refuses one.
"""

from __future__ import annotations

import torch
from torch import nn

from encoderlab.data.collators import IGNORE_INDEX
from encoderlab.data.masking import NO_MASKING
from encoderlab.errors import UserError
from encoderlab.tasks.masked_lm import MaskedLMTask


def next_token_logits(
    encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [M, V] and targets [M] for the M positions t whose next label (t + 1) is a real token.

    The encoder's last layer and the vocabulary projection run only at those positions
    (``output_positions``), as the MLM task does at its masked ones.
    """
    labels = batch["labels"]
    targets_at = labels[:, 1:] != IGNORE_INDEX  # B,S-1: the label at t+1 is real
    predict_at = torch.zeros_like(labels, dtype=torch.bool)
    predict_at[:, :-1] = targets_at  # B,S: position t predicts t+1
    hidden = encoder(
        batch["input_ids"],
        batch.get("attention_mask"),
        batch.get("token_type_ids"),
        output_positions=predict_at,
    )  # M,H (row-major, the order of labels[:, 1:][targets_at])
    return head(hidden), labels[:, 1:][targets_at]


class CausalLMTask(MaskedLMTask):
    """Logs ``{stage}/loss``, ``{stage}/acc`` (next-token accuracy) and ``{stage}/perplexity`` = exp(loss).

    Leaves what masked-LM pre-training leaves: the encoder (``encoder/``, its ``encoder.json`` recording
    ``attention: causal``, which fine-tuning from it keeps) and the LM head (``mlm_head.safetensors``).
    """

    kind = "clm"
    usage = (
        "task=clm goes with head=mlm, a causal encoder (encoder.attention=causal) and an unmasked "
        "corpus (data.masking=none); objective=clm with experiment=pretrain_mlm sets them all"
    )

    def __init__(self, encoder, head, optimizer=None, scheduler=None) -> None:
        if encoder.config.attention != "causal":
            raise UserError(
                f"task=clm needs a causal encoder, but this one is {encoder.config.attention} (it would see "
                "the token it predicts) — set encoder.attention=causal, or use objective=clm"
            )
        super().__init__(encoder, head, optimizer, scheduler)

    @classmethod
    def check_data(cls, datamodule) -> None:
        masking = getattr(datamodule, "masking", None)
        if masking != NO_MASKING:
            raise UserError(
                f"task=clm reads uncorrupted text, but the data masks it (data.masking={masking}) — set "
                f"data.masking={NO_MASKING}, or use objective=clm"
            )

    def predictions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return next_token_logits(self.encoder, self.head, batch)

    def prediction_rows(self, items, outputs):
        raise UserError(
            "a causal-LM pre-training run predicts next tokens, not labels — fine-tune it first "
            "(init=pretrained init.path=RUN/encoder), or export it with encoderlab-export"
        )
