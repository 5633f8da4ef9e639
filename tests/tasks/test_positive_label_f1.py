"""``task.positive_label``: the F1 of one label (GLUE's MRPC F1) beside accuracy and macro-F1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from encoderlab.models.encoder import build
from encoderlab.tasks.classification import SequenceClassificationTask
from encoderlab.validate import SettingError

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


class FixedOutputs(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, hidden, attention_mask=None):
        return self.logits


def f1_of(label: int, preds: list[int], gold: list[int]) -> float:
    tp = sum(p == g == label for p, g in zip(preds, gold, strict=True))
    fp = sum(p == label != g for p, g in zip(preds, gold, strict=True))
    fn = sum(g == label != p for p, g in zip(preds, gold, strict=True))
    return 2 * tp / (2 * tp + fp + fn)


@pytest.mark.parametrize("positive", ["yes", "no"])
def test_f1_of_the_positive_label(positive):
    torch.manual_seed(0)
    encoder = build(vocab_size=30, layers=1, hidden=16, heads=2)
    names = ["no", "yes"]
    preds, gold = [1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 1, 0]
    logits = torch.nn.functional.one_hot(torch.tensor(preds), 2).float()
    task = SequenceClassificationTask(
        encoder,
        FixedOutputs(logits),
        torch.optim.SGD,
        num_labels=2,
        label_names=names,
        positive_label=positive,
    )
    ids = torch.randint(5, 30, (6, 4))
    task._step({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(gold)},
               task.val_metrics, "val")  # fmt: skip
    result = task.val_metrics.compute()
    assert result["val/f1"] == pytest.approx(f1_of(names.index(positive), preds, gold))
    assert {"val/acc", "val/f1_macro", "val/f1"} == set(result)
    assert task.settings()["positive_label"] == positive  # the run records it, so a rebuild logs it too


def test_without_it_nothing_changes_and_a_wrong_label_is_refused():
    encoder = build(vocab_size=30, layers=1, hidden=16, heads=2)
    plain = SequenceClassificationTask(encoder, FixedOutputs(None), torch.optim.SGD, label_names=["0", "1"])
    assert "positive_label" not in plain.settings()
    assert set(plain.val_metrics.keys(keep_base=False)) == {"val/acc", "val/f1_macro"}
    with pytest.raises(SettingError, match=r"task.positive_label='maybe' must be one of 0, 1"):
        SequenceClassificationTask(
            encoder, FixedOutputs(None), torch.optim.SGD, label_names=["0", "1"], positive_label="maybe"
        )
