"""Causal LM: the shift, perplexity = exp(loss), the refusals, and `last` pooling through a classifier."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from encoderlab.data.base import Targets
from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead, SequenceClassifier, pool
from encoderlab.tasks.causal_lm import CausalLMTask
from encoderlab.tasks.classification import SequenceClassificationTask
from encoderlab.tasks.masked_lm import MaskedLMTask
from encoderlab.tasks.pairing import check_data_fits

VOCAB = 40


def encoder(attention: str = "causal", seed: int = 0):
    torch.manual_seed(seed)
    return build(VOCAB, layers=2, hidden=32, heads=2, max_positions=16, attention=attention).eval()


def unmasked_batch() -> dict[str, torch.Tensor]:
    """Two rows, the second right-padded: labels = ids at real tokens, -100 at padding (data.masking=none)."""
    input_ids = torch.tensor([[2, 7, 9, 11, 13, 3], [2, 8, 10, 3, 0, 0]])
    attention_mask = (torch.arange(6) < torch.tensor([[6], [4]])).long()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def test_the_loss_predicts_each_next_real_token():
    enc = encoder()
    task = CausalLMTask(enc, MaskedLMHead(enc)).eval()
    batch = unmasked_batch()
    with torch.no_grad():
        logits, targets = task.predictions(batch)
        # By hand: every position's logits; position t scored on the token at t + 1 where that is real.
        full = task.head(task.encoder(batch["input_ids"], batch["attention_mask"]))  # B,S,V
        terms = [
            F.cross_entropy(full[b, t], batch["input_ids"][b, t + 1])
            for b in range(2)
            for t in range(5)
            if batch["attention_mask"][b, t + 1]
        ]
    assert targets.tolist() == [7, 9, 11, 13, 3, 8, 10, 3]  # 5 + 3 next tokens, no [CLS], no padding
    assert len(terms) == 8
    assert torch.allclose(F.cross_entropy(logits, targets), torch.stack(terms).mean(), atol=1e-5)


def test_perplexity_is_exp_of_the_logged_loss():
    enc = encoder()
    task = CausalLMTask(enc, MaskedLMHead(enc))
    batch = unmasked_batch()
    loader = DataLoader([batch, batch], batch_size=None)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    metrics = trainer.validate(task, dataloaders=loader, verbose=False)[0]
    assert metrics["val/perplexity"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-6)
    with torch.no_grad():
        expected = F.cross_entropy(*task.predictions(batch))
    assert metrics["val/loss"] == pytest.approx(expected.item(), rel=1e-5)


class Corpus:
    targets = Targets.TOKENS

    def __init__(self, masking: str) -> None:
        self.masking = masking


def test_a_bidirectional_encoder_and_masked_data_are_refused():
    enc = encoder("bidirectional")
    with pytest.raises(UserError, match="set encoder.attention=causal") as err:
        CausalLMTask(enc, MaskedLMHead(enc))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"data.masking=token\) — set data.masking=none"):
        check_data_fits(CausalLMTask, Corpus("token"))
    check_data_fits(CausalLMTask, Corpus("none"))
    with pytest.raises(UserError, match="task=pretrain predicts masked tokens, but data.masking=none"):
        check_data_fits(MaskedLMTask, Corpus("none"))  # and the MLM task the other way round
    check_data_fits(MaskedLMTask, Corpus("span"))


def test_last_pooling_picks_each_rows_last_real_token():
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    pooled = pool(hidden, mask, "last")
    assert torch.equal(pooled, torch.stack([hidden[0, 4], hidden[1, 1], hidden[2, 0]]))


def test_a_classifier_on_a_causal_encoder_pools_the_last_token_and_never_sees_later_tokens():
    causal, both = encoder("causal"), encoder("bidirectional")
    assert SequenceClassifier(causal, num_labels=2).settings()["pooling"] == "last"
    assert SequenceClassifier(both, num_labels=2).settings()["pooling"] == "cls"  # today's default
    prefix = torch.tensor([[2, 7, 9, 11]])
    longer = torch.tensor([[2, 7, 9, 11, 13, 15], [2, 7, 9, 11, 20, 30]])  # the prefix, then other tokens
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]] * 2)  # the classifier pools position 3
    outputs = {}
    for name, enc in (("causal", causal), ("bidirectional", both)):
        task = SequenceClassificationTask(enc, SequenceClassifier(enc, num_labels=2, pooling="last")).eval()
        with torch.no_grad():
            alone = task({"input_ids": prefix, "attention_mask": torch.ones_like(prefix)})
            # The later tokens are attended to (no mask for the encoder); only pooling stops at position 3.
            seen = task.head(task.encoder(longer), mask)
        outputs[name] = (alone, seen)
    alone, seen = outputs["causal"]
    assert torch.allclose(seen, alone.expand(2, -1), atol=1e-5)
    alone, seen = outputs["bidirectional"]  # the control: a bidirectional encoder's position 3 sees them
    assert not torch.allclose(seen[0], seen[1], atol=1e-4)
