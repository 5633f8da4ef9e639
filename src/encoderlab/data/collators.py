"""Collators: MLM masking (reproducible per item) and dynamic padding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from encoderlab.errors import UserError
from encoderlab.validate import check, fraction, open_fraction

IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index


def pad_sequences(seqs: Sequence[torch.Tensor], pad_id: int, multiple_of: int | None = None) -> torch.Tensor:
    longest = max(len(s) for s in seqs)
    if multiple_of:
        longest = -(-longest // multiple_of) * multiple_of
    out = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    for row, s in zip(out, seqs, strict=True):
        row[: len(s)] = s
    return out


class MLMCollator:
    """BERT masking: select ``mlm_probability`` of the eligible tokens; of those, 80% -> [MASK],
    10% -> a random non-special token, 10% unchanged (fractions configurable). Labels are the
    original ids at selected positions and -100 elsewhere.

    Items are token tensors, or ``(key, tensor)`` pairs (``EpochKeyedDataset``): then each sequence's
    random draws come from a generator seeded by ``(seed, key)``, so an item's masking does not depend on
    the global RNG, the batch it is in, the number of processes or where a run was resumed. Plain tensors
    use torch's global RNG.
    """

    def __init__(
        self,
        pad_id: int,
        mask_id: int,
        vocab_size: int,
        special_ids: list[int],
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        seed: int = 0,
    ):
        check("data.mlm_probability", mlm_probability, open_fraction)
        check("data.mask_replace_prob", mask_replace_prob, fraction)
        check("data.random_replace_prob", random_replace_prob, fraction)
        if mask_replace_prob + random_replace_prob > 1.0:
            raise UserError(
                f"mask_replace_prob={mask_replace_prob} + random_replace_prob={random_replace_prob} must be "
                "non-negative and sum to at most 1 — fix data.mask_replace_prob / data.random_replace_prob"
            )
        self.pad_id = pad_id
        self.mask_id = mask_id
        self.vocab_size = vocab_size
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.seed = seed
        self.special = torch.tensor(sorted(set(special_ids) | {pad_id, mask_id}), dtype=torch.long)
        # Random replacements are drawn only from ordinary tokens, never specials.
        is_special = torch.zeros(vocab_size, dtype=torch.bool)
        is_special[self.special[self.special < vocab_size]] = True
        self.random_pool = torch.nonzero(~is_special).squeeze(1)
        if len(self.random_pool) == 0:
            raise UserError(
                "vocabulary has no non-special tokens — train a larger tokenizer (data.vocab_size)"
            )

    def _draws(self, shape: torch.Size, keys: Sequence[int] | None, lengths: list[int]):
        """Uniforms for selection and for mask/random/keep, and random-token indices, each of ``shape``."""
        if keys is None:
            return (
                torch.rand(shape),
                torch.rand(shape),
                torch.randint(len(self.random_pool), shape),
                None,
            )
        select, choice = torch.ones(shape), torch.ones(shape)
        token = torch.zeros(shape, dtype=torch.long)
        g = torch.Generator()
        for row, (key, n) in enumerate(zip(keys, lengths, strict=True)):
            g.manual_seed(int(np.random.SeedSequence([self.seed, int(key)]).generate_state(1, np.uint64)[0]))
            select[row, :n] = torch.rand(n, generator=g)
            choice[row, :n] = torch.rand(n, generator=g)
            token[row, :n] = torch.randint(len(self.random_pool), (n,), generator=g)
        return select, choice, token, g

    def __call__(self, batch: Sequence[torch.Tensor] | Sequence[tuple[int, torch.Tensor]]) -> dict:
        keys = None
        if isinstance(batch[0], tuple):
            keys, batch = zip(*batch, strict=True)
        input_ids = pad_sequences(batch, self.pad_id)
        attention_mask = torch.zeros_like(input_ids)
        for row, s in zip(attention_mask, batch, strict=True):
            row[: len(s)] = 1
        eligible = ~torch.isin(input_ids, self.special) & attention_mask.bool()
        select_u, choice_u, token_idx, g = self._draws(input_ids.shape, keys, [len(s) for s in batch])

        selected = (select_u < self.mlm_probability) & eligible
        if not selected.any() and eligible.any():
            # Never return a batch with no targets: the mean MLM loss would be NaN.
            candidates = torch.nonzero(eligible)
            pick = candidates[torch.randint(len(candidates), (1,), generator=g)].squeeze(0)
            selected[pick[0], pick[1]] = True

        labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        # One uniform draw per position decides mask / random / keep with the configured fractions.
        to_mask = selected & (choice_u < self.mask_replace_prob)
        to_random = (
            selected
            & (choice_u >= self.mask_replace_prob)
            & (choice_u < self.mask_replace_prob + self.random_replace_prob)
        )
        input_ids = input_ids.masked_fill(to_mask, self.mask_id)
        input_ids = torch.where(to_random, self.random_pool[token_idx], input_ids)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class PaddingCollator:
    """Pad LabelledDataset items to the longest in the batch (optionally a multiple of N)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        labels = [it["labels"] for it in items]
        if isinstance(labels[0], torch.Tensor):  # multi-label target vectors
            targets = torch.stack(labels).float()
        else:
            is_float = any(isinstance(x, float) for x in labels)
            targets = torch.tensor(labels, dtype=torch.float if is_float else torch.long)
        return {**self.inputs(items), "labels": targets}

    def inputs(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        """The padded model inputs alone (prediction has no labels)."""
        ids = [it["input_ids"] for it in items]
        input_ids = pad_sequences(ids, self.pad_id, self.pad_to_multiple_of)
        token_type_ids = pad_sequences([it["token_type_ids"] for it in items], 0, self.pad_to_multiple_of)
        attention_mask = torch.zeros_like(input_ids)
        for row, s in zip(attention_mask, ids, strict=True):
            row[: len(s)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
