"""Similarity of text embeddings: the InfoNCE loss over in-batch negatives and which pairs retrieval finds.

Plain torch on [N, H] embeddings (any scale: everything is cosine), shared by contrastive training and its
metrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from encoderlab.training.gather import gather_with_grad

RETRIEVAL_CHUNK = 1024  # anchors scored at once: memory stays at chunk × pairs, never pairs × pairs


def info_nce(
    anchors: torch.Tensor, positives: torch.Tensor, temperature: float, symmetric: bool = False
) -> torch.Tensor:
    """Cross-entropy of each anchor's positive among all positives of the (global) batch, over cosine
    similarity / ``temperature`` (MultipleNegativesRankingLoss); ``symmetric`` averages it with each
    positive finding its anchor among the anchors.

    Under DDP the other processes' rows are negatives too (:func:`gather_with_grad`); each process
    scores its own rows, so the losses of all processes together are the loss of the global batch.
    """
    anchors, positives = F.normalize(anchors.float(), dim=-1), F.normalize(positives.float(), dim=-1)
    every_positive, offset = gather_with_grad(positives)  # N,H; this process's rows start at offset
    targets = torch.arange(anchors.shape[0], device=anchors.device) + offset  # B
    loss = F.cross_entropy(anchors @ every_positive.T / temperature, targets)  # B,N logits
    if not symmetric:
        return loss
    every_anchor, _ = gather_with_grad(anchors)
    return (loss + F.cross_entropy(positives @ every_anchor.T / temperature, targets)) / 2


def ranked_first(anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """[N] bool: whether anchor ``i``'s most similar positive (cosine) is positive ``i``."""
    anchors, positives = F.normalize(anchors.float(), dim=-1), F.normalize(positives.float(), dim=-1)
    hits = []
    for start in range(0, anchors.shape[0], RETRIEVAL_CHUNK):
        best = (anchors[start : start + RETRIEVAL_CHUNK] @ positives.T).argmax(-1)
        hits.append(best == torch.arange(start, start + best.shape[0], device=best.device))
    return torch.cat(hits)
