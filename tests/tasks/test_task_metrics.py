"""Losses and metrics of the regression, multi-label and tagging tasks, checked against direct computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from torch import nn

from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier, TokenClassifier
from encoderlab.tasks.multilabel import MultiLabelClassificationTask
from encoderlab.tasks.regression import SequenceRegressionTask
from encoderlab.tasks.token_classification import TokenClassificationTask

# The steps run outside a Trainer here: Lightning warns that self.log() has nowhere to go.
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


class FixedOutputs(nn.Module):
    """A stand-in head whose outputs are set by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs = None

    def forward(self, hidden, attention_mask=None):
        return self.outputs


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return build(vocab_size=30, layers=1, hidden=16, heads=2)


def batch(n: int, labels) -> dict:
    ids = torch.randint(5, 30, (n, 6))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_regression_loss_and_correlations(encoder):
    head = FixedOutputs()
    task = SequenceRegressionTask(encoder, head, optimizer=torch.optim.SGD)
    preds = torch.tensor([0.5, 2.0, 1.0, 4.5, 3.0, 2.2])
    targets = torch.tensor([0.0, 2.5, 1.5, 5.0, 2.0, 3.0])
    for chunk in (slice(0, 3), slice(3, 6)):  # two batches: correlations are over the whole epoch
        head.outputs = preds[chunk, None]
        loss = task._step(batch(3, targets[chunk]), task.val_metrics, "val")
        assert loss == pytest.approx(F.mse_loss(preds[chunk], targets[chunk]).item())
    result = task.val_metrics.compute()
    assert set(result) == {"val/mse", "val/pearson", "val/spearman"}
    assert result["val/pearson"] == pytest.approx(pearsonr(preds, targets)[0], abs=1e-5)
    assert result["val/spearman"] == pytest.approx(spearmanr(preds, targets)[0], abs=1e-5)
    assert result["val/mse"] == pytest.approx(F.mse_loss(preds, targets).item())
    assert set(task.train_metrics.keys(keep_base=False)) == {"train/mse"}


def test_regression_with_a_one_output_classifier_head(encoder):
    task = SequenceRegressionTask(
        encoder, SequenceClassifier(encoder, num_labels=1), optimizer=torch.optim.SGD
    )
    assert task(batch(4, None)).shape == (4,)
    with pytest.raises(ValueError, match="num_labels=3"):
        SequenceRegressionTask(encoder, FixedOutputs(), optimizer=torch.optim.SGD, num_labels=3)


def test_multilabel_bce_threshold_and_scores(encoder):
    head = FixedOutputs()
    task = MultiLabelClassificationTask(encoder, head, torch.optim.SGD, num_labels=3, threshold=0.7)
    probs = torch.tensor([[0.9, 0.6, 0.1], [0.8, 0.2, 0.75], [0.1, 0.1, 0.1]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    head.outputs = torch.logit(probs)
    loss = task._step(batch(3, targets), task.val_metrics, "val")
    assert loss == pytest.approx(F.binary_cross_entropy(probs, targets).item(), abs=1e-5)
    result = task.val_metrics.compute()
    # At 0.7 (0.6 is not a label): predicted {0}, {0, 2}, {} vs gold {0}, {0, 2}, {1}.
    assert result["val/subset_acc"] == pytest.approx(2 / 3)
    # micro: tp=3, fp=0, fn=1 → F1 = 6/7; macro: label 0 F1=1, label 1 F1=0, label 2 F1=1 → 2/3
    assert result["val/f1_micro"] == pytest.approx(6 / 7)
    assert result["val/f1_macro"] == pytest.approx(2 / 3)


def test_tagging_loss_ignores_unlabelled_tokens_and_scores_entities(encoder):
    names = ["O", "B-PER", "I-PER"]
    head = FixedOutputs()
    task = TokenClassificationTask(encoder, head, torch.optim.SGD, num_labels=3, label_names=names)
    # [CLS] Ada Love ##lace [SEP]: words Ada (B-PER) Lovelace (I-PER), plus a third word cut off (O).
    logits = torch.tensor([[[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [0, 0, 5.0], [5.0, 0, 0]]])
    head.outputs = logits
    labels = torch.tensor([[-100, 1, 2, -100, -100]])
    b = batch(1, labels)
    b["word_index"] = torch.tensor([[-1, 0, 1, -1, -1]])
    b["word_labels"] = torch.tensor([[1, 2, 0]])
    loss = task._step(b, task.val_metrics, "val")
    expected = F.cross_entropy(logits[0, 1:3], labels[0, 1:3])
    assert loss == pytest.approx(expected.item())
    assert task.val_metrics.compute()["val/token_acc"] == 1.0
    entities = task.val_entities.compute()
    assert entities["val/entity_f1"] == 1.0 and entities["val/entity_recall"] == 1.0


def test_token_classifier_head(encoder):
    head = TokenClassifier(encoder, num_labels=5)
    assert head(torch.randn(2, 7, 16)).shape == (2, 7, 5)
    with pytest.raises(ValueError, match="at least 2"):
        TokenClassifier(encoder, num_labels=1)
