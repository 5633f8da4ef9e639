"""Which parameters train: one pure function, driven by a policy object from the ``freeze/`` config group.

Applied before the optimizer is built (the optimizer only ever sees ``requires_grad`` parameters) and
re-applied by the entry point on every start, resume included.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from encoderlab.errors import UserError


@dataclass(frozen=True)
class NoFreeze:
    """Everything trains (full fine-tuning, pre-training)."""


@dataclass(frozen=True)
class FreezeEncoder:
    """The whole encoder is frozen; only the head trains (linear probe)."""


@dataclass(frozen=True)
class FreezeBottomK:
    """Embeddings and the first ``k`` encoder layers are frozen; the layers above and the head train."""

    k: int = 2


FreezePolicy = NoFreeze | FreezeEncoder | FreezeBottomK


def _frozen_modules(encoder: nn.Module, policy: FreezePolicy) -> list[nn.Module]:
    if isinstance(policy, NoFreeze):
        return []
    if isinstance(policy, FreezeEncoder):
        return [encoder]
    if isinstance(policy, FreezeBottomK):
        n_layers = len(encoder.layers)
        if not 0 <= policy.k <= n_layers:
            raise UserError(
                f"freeze.k={policy.k} but the encoder has {n_layers} layers — choose 0 <= freeze.k <= {n_layers}"
            )
        return [encoder.embeddings, *encoder.layers[: policy.k]]
    raise TypeError(f"unknown freeze policy {policy!r}")


def freeze(task: nn.Module, policy: FreezePolicy) -> int:
    """Set ``requires_grad`` on ``task`` (holding ``encoder`` and ``head``) by ``policy``; return #trainable.

    Starts from everything trainable, so applying it twice, or after a resume, gives the same result.
    """
    for param in task.parameters():
        param.requires_grad_(True)
    for module in _frozen_modules(task.encoder, policy):
        for param in module.parameters():
            param.requires_grad_(False)
    unique = {id(p): p for p in task.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad)
