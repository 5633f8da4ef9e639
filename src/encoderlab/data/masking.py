"""Which positions of an MLM batch become targets: single tokens, whole words or spans of words, at a rate
that may follow a schedule over the run.

Every strategy here works on a padded batch ``[B, S]`` and on the uniforms the collator already draws per
item (seeded by the item's key), so a strategy's choice depends on the item alone. Words come from a
per-vocabulary flag (``tokenizer.word_start_ids``): a word is a word-start piece and the continuation
pieces after it. A position right after an ineligible one (the first piece of a packed block, the piece
after a special token) always starts a word, since the block may have been cut mid-word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from encoderlab.errors import UserError
from encoderlab.validate import at_least, check, in_range, integer, one_of, open_fraction

NO_MASKING = "none"  # inputs left whole, labels = the inputs (causal language modelling reads this)
STRATEGIES = ("token", "whole_word", "span", NO_MASKING)
WORD_STRATEGIES = ("whole_word", "span")  # the ones that need the tokenizer's word starts


def check_masking(
    masking: str,
    span_p: float,
    span_max: int,
    mlm_probability_end: float | None,
    masking_schedule_steps: int | None,
) -> None:
    """The masking settings, each named by its ``data.`` key, and the combinations that cannot work."""
    check("data.masking", masking, one_of(*STRATEGIES))
    check("data.span_p", span_p, in_range(0, 1, low_open=True))
    check("data.span_max", span_max, at_least(1))
    check("data.mlm_probability_end", mlm_probability_end, open_fraction, optional=True)
    if mlm_probability_end is None:
        # Objective files tie the steps to trainer.max_steps, which is -1 in epoch-based runs: only a
        # schedule needs a count.
        check("data.masking_schedule_steps", masking_schedule_steps, integer, optional=True)
        return
    if masking == NO_MASKING:
        raise UserError(
            f"data.mlm_probability_end={mlm_probability_end} schedules the masking rate, but data.masking=none "
            "masks nothing — set data.mlm_probability_end=null or choose data.masking=token|whole_word|span"
        )
    if masking_schedule_steps is None or not (
        integer.holds(masking_schedule_steps) and masking_schedule_steps >= 1
    ):
        raise UserError(
            f"data.masking_schedule_steps={masking_schedule_steps} must be an integer >= 1 when "
            "data.mlm_probability_end is set — set data.masking_schedule_steps (or trainer.max_steps, which "
            "the objective files tie it to)"
        )


@dataclass(frozen=True)
class RateSchedule:
    """The masking rate moving linearly from ``start`` to ``end`` over ``steps`` optimizer steps, then
    staying at ``end``."""

    start: float
    end: float
    steps: int

    def rate(self, step: torch.Tensor) -> torch.Tensor:
        progress = (step.double() / self.steps).clamp(0.0, 1.0)
        return self.start + (self.end - self.start) * progress


# ------------------------------------------------------------------------------------------- words


def word_starts(input_ids: torch.Tensor, vocab_starts: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """[B, S] bool: eligible positions that begin a word."""
    starts = vocab_starts[input_ids.clamp(0, len(vocab_starts) - 1)]
    after_ineligible = torch.nn.functional.pad(~eligible[:, :-1], (1, 0), value=True)
    return eligible & (starts | after_ineligible)


def word_first_position(starts: torch.Tensor) -> torch.Tensor:
    """[B, S] long: for each position, the position of the latest word start at or before it."""
    positions = torch.arange(starts.shape[1]).expand_as(starts)
    return torch.where(starts, positions, 0).cummax(dim=1).values


def select_whole_words(
    select_u: torch.Tensor, eligible: torch.Tensor, first: torch.Tensor, rate: float | torch.Tensor
) -> torch.Tensor:
    """Each word is chosen with probability ``rate`` (one uniform per word: its first piece's), so the
    expected share of chosen tokens is ``rate``; a chosen word's pieces are all selected."""
    return (select_u.gather(1, first) < rate) & eligible


# ------------------------------------------------------------------------------------------- spans


def span_length_probabilities(p: float, span_max: int) -> np.ndarray:
    """P(length = 1..span_max) in words: Geometric(p) restricted to at most ``span_max`` and renormalised,
    as SpanBERT's reference implementation draws it (mean 3.86 words for p=0.2, span_max=10)."""
    weights = p * (1 - p) ** np.arange(span_max)
    return weights / weights.sum()


@dataclass(frozen=True)
class Span:
    first_word: int  # index of the span's first word in its row
    words: int  # words it covers (fewer than ``drawn`` when it ran into a taken word, a gap or the budget)
    drawn: int  # the length drawn for it


def sample_spans(
    word_lengths: np.ndarray, adjacent: np.ndarray, budget: float, probs: np.ndarray, rng: np.random.Generator
) -> list[Span]:
    """SpanBERT's span selection over one sequence's words, until ``budget`` tokens are covered.

    Repeatedly draw a length ``l`` (in words) and a free word uniformly; cover ``l`` words from it, stopping
    early at a taken word or a gap (``adjacent[k]``: word ``k + 1`` follows word ``k`` directly). The word
    that would cross the budget is taken with probability (budget left / its length) and ends the
    selection, so the expected number of covered tokens is exactly ``budget`` and no word is ever split.
    """
    n_words = len(word_lengths)
    taken = np.zeros(n_words, dtype=bool)
    covered, spans, done = 0.0, [], False
    while covered < budget and not done and not taken.all():
        drawn = int(rng.choice(len(probs), p=probs)) + 1
        free = np.flatnonzero(~taken)
        first = int(free[rng.integers(len(free))])
        words = 0
        while words < drawn:
            w = first + words
            if w >= n_words or taken[w] or (words > 0 and not adjacent[w - 1]):
                break
            size = int(word_lengths[w])
            if covered + size > budget:
                done = True
                if rng.random() >= (budget - covered) / size:
                    break
            taken[w] = True
            covered += size
            words += 1
            if done:
                break
        if words:
            spans.append(Span(first, words, drawn))
    return spans


def select_spans(
    eligible: torch.Tensor,
    starts: torch.Tensor,
    rate: float | torch.Tensor,
    probs: np.ndarray,
    rngs: Sequence[np.random.Generator],
) -> tuple[torch.Tensor, torch.Tensor, list[list[Span]]]:
    """Selected positions [B, S], each position's span start [B, S] (its own word start where unselected)
    and each row's spans."""
    selected = torch.zeros_like(eligible)
    span_first = word_first_position(starts)
    rates = torch.as_tensor(rate, dtype=torch.float64).reshape(-1).expand(len(eligible))
    all_spans = []
    for row, rng in enumerate(rngs):
        positions = torch.nonzero(eligible[row]).squeeze(1).numpy()
        word_start_pos = torch.nonzero(starts[row]).squeeze(1).numpy()
        if len(word_start_pos) == 0:
            all_spans.append([])
            continue
        word_of = np.searchsorted(word_start_pos, positions, side="right") - 1
        lengths = np.bincount(word_of, minlength=len(word_start_pos))
        adjacent = word_start_pos[:-1] + lengths[:-1] == word_start_pos[1:]
        spans = sample_spans(lengths, adjacent, float(rates[row]) * len(positions), probs, rng)
        all_spans.append(spans)
        for span in spans:
            begin = int(word_start_pos[span.first_word])
            last = span.first_word + span.words - 1
            end = int(word_start_pos[last] + lengths[last])
            selected[row, begin:end] = True
            span_first[row, begin:end] = begin
    return selected & eligible, span_first, all_spans
