"""SetFit's contrastive pairs (Tunstall et al. 2022), made from the labelled training examples.

Every pair of training examples, an example with itself included (as the SetFit library counts them), is
positive (target 1: the same class) or negative (target 0: different classes). With ``num_iterations`` R
and N examples the encoder trains on R·N positive and R·N negative pairs, alternately (R = 20: 40·N pairs),
each kind taken in a seeded random order and cycled when it has fewer distinct pairs than that. This is the
library's ``ContrastiveDataset`` (setfit 1.2.0, ``num_iterations`` given) with the run's seed where the
library fixes 42: with seed 42 the pairs are the library's own, in its order.

Validation and test batches are the usual labelled texts; ``train_examples_dataloader`` gives the examples
themselves, on whose tuned vectors the head is fitted after training (:mod:`encoderlab.tasks.setfit`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from encoderlab.data.base import Targets
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.data.collators import PaddingCollator
from encoderlab.data.samplers import ShuffledBatchSampler
from encoderlab.errors import UserError
from encoderlab.validate import at_least, check

# Every example is paired with every other: N(N+1)/2 candidate pairs, held in memory once.
MAX_EXAMPLES = 4096


def setfit_pairs(
    labels: Sequence[int] | np.ndarray, num_iterations: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(pairs [P, 2] of example indices, targets [P]: 1.0 same class, 0.0 different), P = 2·R·N, positive
    and negative pairs alternating (see the module's docstring)."""
    labels = np.asarray(labels)
    n = len(labels)
    candidates = np.stack(np.triu_indices(n, 0), axis=-1).astype(np.int32)  # i <= j: self-pairs included
    candidates = candidates[np.random.RandomState(seed).permutation(len(candidates))]
    same = labels[candidates[:, 0]] == labels[candidates[:, 1]]
    positives, negatives = candidates[same], candidates[~same]
    if not len(negatives):
        raise UserError(
            "SetFit pairs need examples of two classes at least, but every training example has the same "
            "class — draw more (data.train_sample) or from every class (data.train_sample_per_class)"
        )
    count = num_iterations * n
    pairs = np.empty((2 * count, 2), dtype=np.int64)
    pairs[0::2] = positives[np.arange(count) % len(positives)]
    pairs[1::2] = negatives[np.arange(count) % len(negatives)]
    targets = np.tile(np.array([1.0, 0.0], dtype=np.float32), count)
    return pairs, targets


class ExamplePairs(Dataset):
    """Items ``(first example, second example, target)`` of ``examples`` (a LabelledDataset)."""

    def __init__(self, examples: Dataset, pairs: np.ndarray, targets: np.ndarray) -> None:
        self.examples, self.pairs, self.targets = examples, pairs, targets

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[dict, dict, float]:
        first, second = self.pairs[i]
        return self.examples[int(first)], self.examples[int(second)], float(self.targets[i])


class SimilarityPairCollator:
    """A batch of B pairs as one padded batch of 2B texts (the B first texts, then the B second ones), so
    the encoder runs once, and ``similarity`` [B], the targets."""

    def __init__(self, pad_id: int) -> None:
        self.padding = PaddingCollator(pad_id)

    def __call__(self, items: Sequence[tuple[dict, dict, float]]) -> dict[str, torch.Tensor]:
        texts = [first for first, _, _ in items] + [second for _, second, _ in items]
        similarity = torch.tensor([target for _, _, target in items], dtype=torch.float32)
        return {**self.padding.inputs(texts), "similarity": similarity}


class SetFitDataModule(TextClassificationDataModule):
    """Labelled texts whose training batches are SetFit's pairs (``num_iterations`` per example, see the
    module's docstring); everything else (sampling, splits, tokenizer, prediction) as for classification."""

    targets = Targets.CLASS_PAIRS

    def __init__(self, *args, num_iterations: int = 20, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        check("data.num_iterations", num_iterations, at_least(1))
        if self.long_documents != "truncate":
            raise UserError("SetFit pairs are single windows of text — set data.long_documents=truncate")
        self.num_iterations = num_iterations

    def _prepare(self) -> None:
        super()._prepare()
        n = len(self.train_dataset)
        if n > MAX_EXAMPLES:
            raise UserError(
                f"SetFit pairs every training example with every other, and {n} examples make "
                f"{n * (n + 1) // 2:,} candidate pairs — draw a few-shot sample of at most {MAX_EXAMPLES} "
                "(data.train_sample or data.train_sample_per_class)"
            )
        self.pairs, self.pair_targets = setfit_pairs(
            self.train_dataset.labels, self.num_iterations, self.seed
        )

    def describe(self) -> dict:
        described = {**super().describe(), "num_iterations": self.num_iterations}
        if self._prepared:
            positive = int(self.pair_targets.sum())
            described["pairs"] = {"positive": positive, "negative": len(self.pair_targets) - positive}
        return described

    def train_dataloader(self) -> DataLoader:
        self.prepare()
        pairs = ExamplePairs(self.train_dataset, self.pairs, self.pair_targets)
        sampler = ShuffledBatchSampler(len(pairs), self.batch_size, seed=self.seed)
        return self._resumable_train_loader(pairs, sampler, SimilarityPairCollator(self.pad_id))
