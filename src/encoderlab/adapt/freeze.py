"""Which parameters train: one pure function, driven by a policy object from the ``freeze/`` config group.

Applied before the optimizer is built (the optimizer only ever sees ``requires_grad`` parameters) and
re-applied by the entry point on every start, resume included. Schedules (gradual unfreezing) are the
same function evaluated at the current step by a callback (``encoderlab.adapt.unfreezing``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from encoderlab.adapt.adapters import ADAPTER_MARKER
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


@dataclass(frozen=True)
class FreezeGradual:
    """Gradual unfreezing (ULMFiT, Howard & Ruder 2018): the head trains alone first, then one encoder
    layer group joins every ``every_n_steps`` optimizer steps (or ``every_n_epochs`` epochs), top-down:
    the last layer, ..., the first layer, then the embeddings.
    """

    every_n_steps: int | None = None
    every_n_epochs: int | None = None

    def __post_init__(self) -> None:
        if (self.every_n_steps is None) == (self.every_n_epochs is None):
            raise UserError(
                "freeze=gradual needs exactly one of freeze.every_n_steps and freeze.every_n_epochs — set one, "
                "null the other"
            )
        interval = self.every_n_steps if self.every_n_steps is not None else self.every_n_epochs
        if interval < 1:
            raise UserError(f"freeze=gradual: the interval must be at least 1, got {interval}")

    def unfrozen_groups(self, step: int, epoch: int) -> int:
        """How many encoder layer groups (top-down) train at optimizer step ``step`` / epoch ``epoch``."""
        if self.every_n_steps is not None:
            return step // self.every_n_steps
        return epoch // self.every_n_epochs


FreezePolicy = NoFreeze | FreezeEncoder | FreezeBottomK | FreezeGradual


def layer_groups(encoder: nn.Module) -> list[nn.Module]:
    """The encoder bottom-up, one group per depth: embeddings, layer 0, ..., layer L-1."""
    return [encoder.embeddings, *encoder.layers]


def _frozen_modules(encoder: nn.Module, policy: FreezePolicy, step: int, epoch: int) -> list[nn.Module]:
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
    if isinstance(policy, FreezeGradual):
        groups = layer_groups(encoder)
        return groups[: max(0, len(groups) - policy.unfrozen_groups(step, epoch))]
    raise TypeError(f"unknown freeze policy {policy!r}")


def freeze(task: nn.Module, policy: FreezePolicy, step: int = 0, epoch: int = 0) -> int:
    """Set ``requires_grad`` on ``task`` (holding ``encoder`` and ``head``) by ``policy``; return #trainable.

    Starts from everything trainable, so applying it twice, or after a resume, gives the same result.
    ``step`` / ``epoch`` matter only to schedules (``FreezeGradual``). An encoder carrying adapters (LoRA)
    keeps its own weights frozen whatever the policy: only the adapter weights (and the head) train.
    """
    for param in task.parameters():
        param.requires_grad_(True)
    for module in _frozen_modules(task.encoder, policy, step, epoch):
        for param in module.parameters():
            param.requires_grad_(False)
    if any(ADAPTER_MARKER in name for name, _ in task.encoder.named_parameters()):
        for name, param in task.encoder.named_parameters():
            if ADAPTER_MARKER not in name:
                param.requires_grad_(False)
    unique = {id(p): p for p in task.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad)
