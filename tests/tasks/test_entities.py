"""Entity-level scores against hand-computed examples (conlleval's chunk rules)."""

from __future__ import annotations

import pytest
import torch

from encoderlab.tasks.entities import EntityScore, entity_counts, entity_spans, precision_recall_f1
from encoderlab.tasks.token_classification import word_predictions


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 1), ("LOC", 3, 3)}),
        (["B-PER", "B-PER", "I-PER"], {("PER", 0, 0), ("PER", 1, 2)}),  # B- starts a new entity
        (["O", "I-ORG", "I-ORG", "O"], {("ORG", 1, 2)}),  # I- after O starts one (IOB1 style)
        (["B-PER", "I-LOC", "I-LOC"], {("PER", 0, 0), ("LOC", 1, 2)}),  # a change of type splits
        (["S-LOC", "B-PER", "E-PER", "O"], {("LOC", 0, 0), ("PER", 1, 2)}),  # IOBES
        (["O", "O"], set()),
        (["I-MISC"], {("MISC", 0, 0)}),
        (["PER", "PER", "O", "LOC"], {("PER", 0, 1), ("LOC", 3, 3)}),  # IO tags without a prefix
    ],
)
def test_spans(tags, spans):
    assert entity_spans(tags) == spans


def test_counts_and_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    pred = [
        ["B-PER", "I-PER", "O", "O"],  # PER right, LOC missed
        ["B-ORG", "O", "B-MISC", "O"],  # ORG right, MISC cut short (wrong end = wrong entity)
    ]
    # gold: 4 entities; predicted: PER, ORG, MISC(2,2) = 3; correct: PER, ORG = 2
    assert entity_counts(gold, pred) == (2, 3, 4)
    precision, recall, f1 = precision_recall_f1(2, 3, 4)
    assert (precision, recall) == (2 / 3, 0.5)
    assert f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert precision_recall_f1(0, 0, 0) == (0.0, 0.0, 0.0)


def test_metric_reads_ids_and_ignores_padding():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    target = torch.tensor([[1, 2, 0, 3], [3, 4, -100, -100]])
    preds = torch.tensor([[1, 2, 0, 0], [3, 4, 1, 1]])  # padding positions hold garbage predictions
    scores = {s: EntityScore(names, s) for s in ("precision", "recall", "f1")}
    for metric in scores.values():
        metric.update(preds[:1], target[:1])
        metric.update(preds[1:], target[1:])
    # gold: PER, LOC, LOC(row 2) = 3; predicted: PER, LOC(row 2) = 2, both right
    assert scores["precision"].compute() == 1.0
    assert scores["recall"].compute() == pytest.approx(2 / 3)
    assert scores["f1"].compute() == pytest.approx(0.8)


def test_word_predictions_read_first_pieces_and_fill_unseen_words():
    # Tokens: [CLS] w0 w0' w1 [SEP] pad ; the sentence has 3 words, the third cut off by truncation.
    token_preds = torch.tensor([[7, 1, 2, 3, 7, 7]])
    word_index = torch.tensor([[-1, 0, -1, 1, -1, -1]])
    assert word_predictions(token_preds, word_index, n_words=3, fill=0).tolist() == [[1, 3, 0]]
