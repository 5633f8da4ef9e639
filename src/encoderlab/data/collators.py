"""Collators (MLM masking, dynamic padding) and a length-grouped batch sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from encoderlab.errors import UserError

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
    original ids at selected positions and -100 elsewhere. Uses torch's global RNG so seeding works.
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
    ):
        if not 0.0 < mlm_probability < 1.0:
            raise UserError(f"mlm_probability={mlm_probability} must be in (0, 1) — set data.mlm_probability")
        if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1.0:
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
        self.special = torch.tensor(sorted(set(special_ids) | {pad_id, mask_id}), dtype=torch.long)
        # Random replacements are drawn only from ordinary tokens, never specials.
        is_special = torch.zeros(vocab_size, dtype=torch.bool)
        is_special[self.special[self.special < vocab_size]] = True
        self.random_pool = torch.nonzero(~is_special).squeeze(1)
        if len(self.random_pool) == 0:
            raise UserError(
                "vocabulary has no non-special tokens — train a larger tokenizer (data.vocab_size)"
            )

    def __call__(self, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        input_ids = pad_sequences(batch, self.pad_id)
        attention_mask = torch.zeros_like(input_ids)
        for row, s in zip(attention_mask, batch, strict=True):
            row[: len(s)] = 1
        eligible = ~torch.isin(input_ids, self.special) & attention_mask.bool()

        selected = (torch.rand(input_ids.shape) < self.mlm_probability) & eligible
        if not selected.any() and eligible.any():
            # Never return a batch with no targets: the mean MLM loss would be NaN.
            candidates = torch.nonzero(eligible)
            pick = candidates[torch.randint(len(candidates), (1,))].squeeze(0)
            selected[pick[0], pick[1]] = True

        labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        # One uniform draw per position decides mask / random / keep with the configured fractions.
        u = torch.rand(input_ids.shape)
        to_mask = selected & (u < self.mask_replace_prob)
        to_random = (
            selected & (u >= self.mask_replace_prob) & (u < self.mask_replace_prob + self.random_replace_prob)
        )
        input_ids = input_ids.masked_fill(to_mask, self.mask_id)
        random_tokens = self.random_pool[torch.randint(len(self.random_pool), input_ids.shape)]
        input_ids = torch.where(to_random, random_tokens, input_ids)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class PaddingCollator:
    """Pad LabelledDataset items to the longest in the batch (optionally a multiple of N)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        ids = [it["input_ids"] for it in items]
        input_ids = pad_sequences(ids, self.pad_id, self.pad_to_multiple_of)
        token_type_ids = pad_sequences([it["token_type_ids"] for it in items], 0, self.pad_to_multiple_of)
        attention_mask = torch.zeros_like(input_ids)
        for row, s in zip(attention_mask, ids, strict=True):
            row[: len(s)] = 1
        labels = [it["labels"] for it in items]
        if isinstance(labels[0], torch.Tensor):  # multi-label target vectors
            targets = torch.stack(labels).float()
        else:
            is_float = any(isinstance(x, float) for x in labels)
            targets = torch.tensor(labels, dtype=torch.float if is_float else torch.long)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "labels": targets,
        }


class LengthGroupedSampler(Sampler[list[int]]):
    """Batch sampler that groups similar lengths to cut padding, while staying random.

    Shuffle all indices, split into mega-batches of ``mega_batch_mult * batch_size``, sort each by
    length (longest first), cut into batches, shuffle the batch order. Deterministic for a given
    ``seed`` and epoch; call ``set_epoch`` each epoch (Lightning does this for samplers that have it).
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
        mega_batch_mult: int = 50,
    ):
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size} must be at least 1 — set data.batch_size")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.mega = mega_batch_mult * batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g).numpy()
        batches = []
        for start in range(0, len(perm), self.mega):
            mega = perm[start : start + self.mega]
            # Stable sort so ties keep the shuffled order.
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]
            batches.extend(
                mega[i : i + self.batch_size].tolist() for i in range(0, len(mega), self.batch_size)
            )
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        order = torch.randperm(len(batches), generator=g).tolist()
        for j in order:
            yield batches[j]
