"""One vector per text for a batch of unrelated texts, encoded in groups of similar length.

A batch of contrastive or SetFit pairs is drawn at random, so padding it to its longest text wastes most of
the encoder's work (SST-2 pairs: ~13 real tokens a text, padded to ~45). Each text's vector depends only on
its own tokens, so the batch can run through the encoder as a few sub-batches of similar length, each cut to
its own longest text, and the vectors put back in the batch's order: the same vectors and gradients (to
float rounding), less arithmetic. The grouping minimises padded tokens plus a fixed cost per encoder call,
so a batch of equal lengths stays one call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# What one more encoder call costs, in padded tokens' worth of work; and the fewest texts a group holds.
CALL_COST_TOKENS = 96
MIN_ROWS = 4


def length_groups(
    lengths: list[int], call_cost: int = CALL_COST_TOKENS, min_rows: int = MIN_ROWS
) -> list[list[int]]:
    """Row indices in groups, shortest first, minimising Σ rows × longest + call_cost per group."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest cover of the j shortest rows
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        for i in range(0, j - min_rows + 1 if j >= min_rows else 1):
            cost = best[i] + (j - i) * longest + call_cost
            if cost < best[j]:
                best[j], start[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[start[j] : j])
        j = start[j]
    return groups[::-1]


def right_padded(attention_mask: torch.Tensor) -> bool:
    """Whether every row's real tokens come first (what the collators make)."""
    lengths = attention_mask.sum(1, keepdim=True)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None]
    return bool(((positions < lengths) == attention_mask.bool()).all())


def encode_in_length_groups(
    encoder: torch.nn.Module,
    vectors: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """``vectors(encoder(ids, mask, types), mask)`` [B, H], run group by group where that saves work."""
    if attention_mask is None or bool(attention_mask.all()) or not right_padded(attention_mask):
        return vectors(encoder(input_ids, attention_mask, token_type_ids), attention_mask)
    lengths = attention_mask.sum(1).tolist()
    groups = length_groups(lengths)
    if len(groups) == 1:
        return vectors(encoder(input_ids, attention_mask, token_type_ids), attention_mask)
    parts = []
    for group in groups:
        rows = torch.tensor(group, device=input_ids.device)
        width = max(lengths[i] for i in group)
        mask = attention_mask[rows, :width]
        types = None if token_type_ids is None else token_type_ids[rows, :width]
        parts.append(vectors(encoder(input_ids[rows, :width], mask, types), mask))
    placed = torch.tensor([i for group in groups for i in group], device=input_ids.device)
    return torch.cat(parts)[torch.argsort(placed)]
