"""Entity-level precision / recall / F1 over IOB tag sequences (conlleval's chunk rules, as seqeval's default).

An entity is a maximal chunk of one type: it starts at ``B-X`` (or ``S-X``), or at ``I-X``/``E-X`` after
``O`` or a chunk of another type, and ends before ``O``, ``B-``, ``S-`` or a change of type. A predicted
entity counts as correct only when its type, start and end all match a gold entity. Works for IOB1,
IOB2 and IOBES; a tag with no prefix (``PER``) is read as ``I-PER``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

OUTSIDE = "O"


def _split(tag: str) -> tuple[str, str]:
    """(prefix, type): ``B-PER`` → (``B``, ``PER``); ``O`` → (``O``, ``""``); ``PER`` → (``I``, ``PER``)."""
    if tag == OUTSIDE:
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES":
        return tag[0], tag[2:]
    return "I", tag


def _ends(prev: str, prev_type: str, prefix: str, type_: str) -> bool:
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    return prev != "O" and prev_type != type_


def _starts(prev: str, prev_type: str, prefix: str, type_: str) -> bool:
    if prefix in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and prefix in ("E", "I"):
        return True
    return prefix != "O" and prev_type != type_


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entities of one sentence as ``(type, first word, last word)``."""
    spans = set()
    prev, prev_type, start = "O", "", None
    for i, tag in enumerate([*tags, OUTSIDE]):  # a trailing O closes the last chunk
        prefix, type_ = _split(tag)
        if start is not None and _ends(prev, prev_type, prefix, type_):
            spans.add((prev_type, start, i - 1))
            start = None
        if _starts(prev, prev_type, prefix, type_):
            start = i
        prev, prev_type = prefix, type_
    return spans


def entity_counts(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> tuple[int, int, int]:
    """(correct, predicted, gold) entity counts over sentences."""
    correct = n_pred = n_gold = 0
    for g, p in zip(gold, predicted, strict=True):
        gs, ps = entity_spans(g), entity_spans(p)
        correct += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
    return correct, n_pred, n_gold


def precision_recall_f1(correct: float, n_pred: float, n_gold: float) -> tuple[float, float, float]:
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


class EntityScore(Metric):
    """Micro-averaged entity precision, recall or F1 (``score``) from word-level label ids.

    ``update(preds, target)`` takes [B, W] label ids per word; target positions < 0 are padding, and each
    row is cut to its gold length. Only counts are kept, so the metric syncs across processes; metrics
    of the three scores in one ``MetricCollection`` share one update (same states: a compute group).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, label_names: Sequence[str], score: str = "f1") -> None:
        super().__init__()
        if score not in ("precision", "recall", "f1"):
            raise ValueError(f"score must be precision, recall or f1, got {score!r}")
        self.label_names = list(label_names)
        self.score = score
        for name in ("correct", "predicted", "gold"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _tags(self, ids: list[int]) -> list[str]:
        return [self.label_names[i] if 0 <= i < len(self.label_names) else OUTSIDE for i in ids]

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        gold_rows, pred_rows = [], []
        for p, t in zip(preds.tolist(), target.tolist(), strict=True):
            n = sum(1 for x in t if x >= 0)
            gold_rows.append(self._tags(t[:n]))
            pred_rows.append(self._tags(p[:n]))
        correct, n_pred, n_gold = entity_counts(gold_rows, pred_rows)
        self.correct += correct
        self.predicted += n_pred
        self.gold += n_gold

    def compute(self) -> torch.Tensor:
        scores = precision_recall_f1(int(self.correct), int(self.predicted), int(self.gold))
        return torch.tensor(scores[("precision", "recall", "f1").index(self.score)], dtype=torch.float)
