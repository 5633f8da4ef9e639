"""One process of the 2-process gloo check in test_contrastive.py: torch and the loss only, so that spawning
it costs an interpreter and torch, not the whole training stack."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from encoderlab.models.similarity import info_nce
from encoderlab.training.gather import gather_with_grad

PAIRS_PER_PROCESS = 4


def unit_rows(n: int, width: int = 16, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, width, generator=torch.Generator().manual_seed(seed)), dim=-1)


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(anchors, positives) of both processes together: positives near their anchors, not on them."""
    return unit_rows(8, seed=10), unit_rows(8, seed=11) + unit_rows(8, seed=10)


def run(rank: int, world: int, port: int, out_dir: str) -> None:
    """Score this process's share against every process's positives; save the loss, the gradients of its
    own rows and a gather of unequal row counts (1 row on rank 0, 2 on rank 1)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        anchors, positives = global_batch()
        mine = slice(PAIRS_PER_PROCESS * rank, PAIRS_PER_PROCESS * (rank + 1))
        a, p = anchors[mine].clone().requires_grad_(), positives[mine].clone().requires_grad_()
        loss = info_nce(a, p, 0.1, symmetric=True)
        loss.backward()
        uneven, offset = gather_with_grad(torch.full((rank + 1, 2), float(rank)))
        result = {"loss": loss.detach(), "a": a.grad, "p": p.grad, "uneven": uneven, "offset": offset}
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
