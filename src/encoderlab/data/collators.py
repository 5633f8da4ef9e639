"""Collators: MLM masking (reproducible per item; the strategies in ``masking.py``) and dynamic padding."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from encoderlab.data.masking import (
    WORD_STRATEGIES,
    RateSchedule,
    check_masking,
    select_spans,
    select_whole_words,
    span_length_probabilities,
    word_first_position,
    word_starts,
)
from encoderlab.errors import UserError
from encoderlab.validate import check, fraction, one_of, open_fraction

IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index
MASK_COUNTS = ("sampled", "fixed")


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

    ``masking`` chooses what is selected: ``token`` (each token on its own, as above), ``whole_word`` (each
    word with probability ``mlm_probability``, all its pieces together; mask/random/keep decided per
    position, as BERT's whole-word reference code does), ``span`` (SpanBERT: spans of Geometric(``span_p``)
    words, at most ``span_max``, until ``mlm_probability`` of the tokens are covered; mask/random/keep decided
    per span) or ``none`` (nothing corrupted, labels are the ids at every real token: causal LM). The word
    strategies need ``word_start_ids`` (``tokenizer.word_start_ids``). Special tokens are never selected.

    Items are token tensors, or ``(key, tensor)`` pairs (``EpochKeyedDataset``): then each sequence's
    random draws come from a generator seeded by ``(seed, key)``, so an item's masking does not depend on
    the global RNG, the batch it is in, the number of processes or where a run was resumed. Plain tensors
    use torch's global RNG.

    With ``mlm_probability_end`` the rate moves linearly to it over ``masking_schedule_steps`` optimizer
    steps. The step is read from the item's key through ``batch_order`` (``ShuffledBatchSampler.batch_order``:
    key -> number of the batch that drew it) divided by ``batches_per_step`` (processes × gradient
    accumulation), so it is a function of the item alone. Without keys or ``batch_order`` the rate is
    ``mlm_probability``.

    ``mask_count`` is ``sampled`` (each eligible token selected with probability ``mlm_probability``: a
    varying count, as Hugging Face's collator) or ``fixed`` (single tokens only: each sequence gets exactly
    ``max(1, round(rate × its eligible tokens))`` targets, as BERT's own data pipeline draws them). A fixed
    count pads every batch to ``max_seq_len`` and adds ``masked_positions`` [B, K], K = ``max(1,
    round(rate × max_seq_len))`` for every batch: the targets' positions, then positions of that sequence
    that are not targets (labels -100) where it has fewer. Static shapes, no host sync: what
    ``torch.compile`` and GPUs want.
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
        masking: str = "token",
        word_start_ids: torch.Tensor | None = None,
        span_p: float = 0.2,
        span_max: int = 10,
        mlm_probability_end: float | None = None,
        masking_schedule_steps: int | None = None,
        batch_order: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batches_per_step: int = 1,
        mask_count: str = "sampled",
        max_seq_len: int | None = None,
    ):
        check("data.mlm_probability", mlm_probability, open_fraction)
        check("data.mask_count", mask_count, one_of(*MASK_COUNTS))
        if mask_count == "fixed" and masking != "token":
            raise UserError(
                f"data.mask_count=fixed draws an exact count of single tokens, but data.masking={masking} "
                "selects words or spans — set data.masking=token, or data.mask_count=sampled"
            )
        if mask_count == "fixed" and max_seq_len is None:
            raise ValueError("mask_count=fixed needs max_seq_len (the padded width and the slot count)")
        check_masking(masking, span_p, span_max, mlm_probability_end, masking_schedule_steps)
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
        self.masking = masking
        if masking in WORD_STRATEGIES and word_start_ids is None:
            raise ValueError(f"masking={masking} needs the tokenizer's word starts (word_start_ids)")
        self.word_start_ids = word_start_ids
        self.span_probs = span_length_probabilities(span_p, span_max)
        self.schedule = (
            RateSchedule(mlm_probability, mlm_probability_end, masking_schedule_steps)
            if mlm_probability_end is not None
            else None
        )
        self.batch_order = batch_order
        self.batches_per_step = batches_per_step
        self.fixed_count = mask_count == "fixed"
        self.max_seq_len = max_seq_len
        # The slot count is one number for the whole run (a schedule's highest rate): one shape, one compile.
        top_rate = max(mlm_probability, mlm_probability_end or 0.0)
        self.slots = max(1, round(top_rate * max_seq_len)) if self.fixed_count else None
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

    def rates(self, keys: Sequence[int] | None) -> float | torch.Tensor:
        """The masking rate of each keyed item ([B, 1]), or the one constant rate."""
        if self.schedule is None or keys is None or self.batch_order is None:
            return self.mlm_probability
        steps = self.batch_order(torch.tensor(keys, dtype=torch.long)) // self.batches_per_step
        return self.schedule.rate(steps).unsqueeze(1)

    def _span_rngs(self, keys: Sequence[int] | None, n: int) -> list[np.random.Generator]:
        """One generator per item for span placement, a stream of its own beside ``_draws``'."""
        if keys is None:
            seeds = torch.randint(2**62, (n,)).tolist()  # from torch's global RNG, like unkeyed draws
            return [np.random.default_rng(s) for s in seeds]
        return [np.random.default_rng([self.seed, int(key), 1]) for key in keys]

    def __call__(self, batch: Sequence[torch.Tensor] | Sequence[tuple[int, torch.Tensor]]) -> dict:
        keys = None
        if isinstance(batch[0], tuple):
            keys, batch = zip(*batch, strict=True)
        input_ids = pad_sequences(batch, self.pad_id)
        if self.fixed_count and input_ids.shape[1] < self.max_seq_len:  # one [B, S] for every batch
            input_ids = torch.nn.functional.pad(
                input_ids, (0, self.max_seq_len - input_ids.shape[1]), value=self.pad_id
            )
        attention_mask = torch.zeros_like(input_ids)
        for row, s in zip(attention_mask, batch, strict=True):
            row[: len(s)] = 1
        if self.masking == "none":
            # Causal LM: nothing corrupted; every real token is a target (the task shifts them).
            labels = input_ids.masked_fill(~attention_mask.bool(), IGNORE_INDEX)
            return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        eligible = ~torch.isin(input_ids, self.special) & attention_mask.bool()
        select_u, choice_u, token_idx, g = self._draws(input_ids.shape, keys, [len(s) for s in batch])
        rate = self.rates(keys)

        # ``decide`` holds the uniform that picks mask / random / keep: per position, or per span.
        decide = choice_u
        positions = None
        if self.fixed_count:
            selected, positions = self._exact_count(select_u, eligible, rate)
        elif self.masking == "token":
            selected = (select_u < rate) & eligible
        else:
            starts = word_starts(input_ids, self.word_start_ids, eligible)
            first = word_first_position(starts)
            if self.masking == "whole_word":
                selected = select_whole_words(select_u, eligible, first, rate)
            else:
                selected, span_first, _ = select_spans(
                    eligible, starts, rate, self.span_probs, self._span_rngs(keys, len(batch))
                )
                decide = choice_u.gather(1, span_first)
        if not selected.any() and eligible.any():
            # Never return a batch with no targets: the mean MLM loss would be NaN.
            candidates = torch.nonzero(eligible)
            pick = candidates[torch.randint(len(candidates), (1,), generator=g)].squeeze(0)
            selected[pick[0], pick[1]] = True
            if self.masking != "token":  # the whole word of the picked piece
                selected[pick[0]] |= eligible[pick[0]] & (first[pick[0]] == first[pick[0], pick[1]])

        labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        # One uniform draw per position (or span) decides mask / random / keep with the configured fractions.
        to_mask = selected & (decide < self.mask_replace_prob)
        to_random = (
            selected
            & (decide >= self.mask_replace_prob)
            & (decide < self.mask_replace_prob + self.random_replace_prob)
        )
        input_ids = input_ids.masked_fill(to_mask, self.mask_id)
        input_ids = torch.where(to_random, self.random_pool[token_idx], input_ids)
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if positions is not None:
            out["masked_positions"] = positions
        return out

    def _exact_count(
        self, select_u: torch.Tensor, eligible: torch.Tensor, rate: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, S] selected, [B, K] positions): each row's ``round(rate × eligible)`` eligible positions of
        lowest uniform (at least one, at most K), then its other positions by the same order as filler."""
        n_eligible = eligible.sum(1)
        wanted = torch.round(torch.as_tensor(rate, dtype=torch.float64).reshape(-1) * n_eligible).long()
        count = torch.minimum(wanted.clamp(min=1, max=self.slots), n_eligible)  # B
        order = select_u.masked_fill(~eligible, 2.0).argsort(dim=1, stable=True)[:, : self.slots]  # B,K
        is_target = torch.arange(self.slots)[None] < count[:, None]  # B,K
        selected = torch.zeros_like(eligible).scatter(1, order, is_target)
        return selected, order


def label_tensor(labels: Sequence) -> torch.Tensor:
    """One batch's labels: class ids (long), scores (float) or multi-label target vectors (float, stacked)."""
    if isinstance(labels[0], torch.Tensor):  # multi-label target vectors
        return torch.stack(list(labels)).float()
    is_float = any(isinstance(x, float) for x in labels)
    return torch.tensor(labels, dtype=torch.float if is_float else torch.long)


class PaddingCollator:
    """Pad LabelledDataset items to the longest in the batch (optionally a multiple of N)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        return {**self.inputs(items), "labels": label_tensor([it["labels"] for it in items])}

    def inputs(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        """The padded model inputs alone (prediction has no labels)."""
        ids = [it["input_ids"] for it in items]
        input_ids = pad_sequences(ids, self.pad_id, self.pad_to_multiple_of)
        token_type_ids = pad_sequences([it["token_type_ids"] for it in items], 0, self.pad_to_multiple_of)
        attention_mask = torch.zeros_like(input_ids)
        for row, s in zip(attention_mask, ids, strict=True):
            row[: len(s)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
