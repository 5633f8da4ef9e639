"""Rows of every process of a distributed run, with the gradient flowing back to the process they came from.

Contrastive losses score each text against the other texts of the batch; under DDP that batch is every
process's share together (more negatives for free). ``torch.distributed.nn.functional.all_gather`` is the
gather autograd sees through: its backward sums, into each process's own rows, what every process's loss
says about them. DDP then averages the parameter gradients over the processes, which together give exactly
the gradient of the loss over the global batch (``tests/tasks/test_contrastive.py`` checks it on 2 gloo
processes).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(rows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(every process's ``rows`` concatenated in rank order, where this process's rows start).

    In a single process: ``(rows, 0)``. Processes may hold different numbers of rows (an epoch's last
    batch): each pads to the longest for the collective and the padding is cut off again.
    """
    if not distributed():
        return rows, 0
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = F.pad(rows, (0, 0) * (rows.dim() - 1) + (0, max(sizes) - rows.shape[0]))
    parts = all_gather(padded)  # autograd-aware, unlike dist.all_gather
    gathered = torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])
    return gathered, sum(sizes[: dist.get_rank()])
