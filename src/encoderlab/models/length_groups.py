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
    """Row indices in groups, shortest first, minimising Σ rows × longest + call_cost per group.

    Groups never split the texts of one length (moving them into the earlier group costs nothing more), so
    the search runs over the distinct lengths, at most the sequence length of them, not over the rows: a
    contrastive batch of 1,024 texts costs what one of 32 does."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    # ends[k]: how many of the sorted rows have one of the k+1 shortest distinct lengths
    ends = [
        j for j in range(1, len(order) + 1) if j == len(order) or lengths[order[j]] != lengths[order[j - 1]]
    ]
    runs = [0, *ends]
    best = [0.0] + [float("inf")] * len(ends)  # best[k]: cheapest cover of the rows up to runs[k]
    start = [0] * (len(ends) + 1)
    for k in range(1, len(runs)):
        j, longest = runs[k], lengths[order[runs[k] - 1]]
        for b in range(k):
            i = runs[b]
            if j - i < min_rows and i > 0:
                break  # later starts only make the group smaller
            cost = best[b] + (j - i) * longest + call_cost
            if cost < best[k]:
                best[k], start[k] = cost, b
    groups, k = [], len(ends)
    while k > 0:
        groups.append(order[runs[start[k]] : runs[k]])
        k = start[k]
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
