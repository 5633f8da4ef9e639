"""Which parameters train: one pure function, driven by a policy object from the ``freeze/`` config group.

The optimizer only ever sees ``requires_grad`` parameters, so the entry point calls
``freeze_for_optimizer(task, policy)`` once, before the optimizer is built (on every start, resume
included): it marks everything the policy will ever train. For a static policy that is its one state and
nothing changes after. A schedule (gradual unfreezing) brings its own callbacks (``policy.callbacks()``,
see ``encoderlab.adapt.unfreezing``), which narrow it to the current stage when training starts and
widen it stage by stage: ``freeze(task, policy, step, epoch)`` evaluated at the current step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import pytorch_lightning as pl
from torch import nn

from encoderlab.adapt.adapters import ADAPTER_MARKER
from encoderlab.errors import UserError
from encoderlab.validate import at_least, between, check


def describe(policy) -> dict:
    """What the run records (``run.json``): the ``freeze=`` option and its settings."""
    return {"policy": policy.name, **asdict(policy)}


class _StaticPolicy:
    """A policy whose choice holds for the whole run: nothing to do while training."""

    def callbacks(self) -> list[pl.Callback]:
        return []

    describe = describe


@dataclass(frozen=True)
class NoFreeze(_StaticPolicy):
    """Everything trains (full fine-tuning, pre-training)."""

    name: ClassVar[str] = "none"


@dataclass(frozen=True)
class FreezeEncoder(_StaticPolicy):
    """The whole encoder is frozen; only the head trains (linear probe)."""

    name: ClassVar[str] = "encoder"


@dataclass(frozen=True)
class FreezeBottomK(_StaticPolicy):
    """Embeddings and the first ``k`` encoder layers are frozen; the layers above and the head train."""

    name: ClassVar[str] = "bottom_k"
    k: int = 2

    def __post_init__(self) -> None:
        check("freeze.k", self.k, at_least(0))  # the upper bound is the encoder's depth, checked on it


@dataclass(frozen=True)
class FreezeGradual:
    """Gradual unfreezing (ULMFiT, Howard & Ruder 2018): the head trains alone first, then one encoder
    layer group joins every ``every_n_steps`` optimizer steps (or ``every_n_epochs`` epochs), top-down:
    the last layer, ..., the first layer, then the embeddings.
    """

    name: ClassVar[str] = "gradual"
    every_n_steps: int | None = None
    every_n_epochs: int | None = None
    describe = describe

    def __post_init__(self) -> None:
        if (self.every_n_steps is None) == (self.every_n_epochs is None):
            raise UserError(
                "freeze=gradual needs exactly one of freeze.every_n_steps and freeze.every_n_epochs — set one, "
                "null the other"
            )
        check("freeze.every_n_steps", self.every_n_steps, at_least(1), optional=True)
        check("freeze.every_n_epochs", self.every_n_epochs, at_least(1), optional=True)

    def unfrozen_groups(self, step: int, epoch: int) -> int:
        """How many encoder layer groups (top-down) train at optimizer step ``step`` / epoch ``epoch``."""
        if self.every_n_steps is not None:
            return step // self.every_n_steps
        return epoch // self.every_n_epochs

    def callbacks(self) -> list[pl.Callback]:
        # Imported here, not at the top: unfreezing imports this module.
        from encoderlab.adapt.unfreezing import GradualUnfreezing

        return [GradualUnfreezing(self)]


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
        check("freeze.k", policy.k, between(0, n_layers, f"the encoder has {n_layers} layers"))
        return [encoder.embeddings, *encoder.layers[: policy.k]]
    if isinstance(policy, FreezeGradual):
        groups = layer_groups(encoder)
        return groups[: max(0, len(groups) - policy.unfrozen_groups(step, epoch))]
    raise TypeError(f"unknown freeze policy {policy!r}")


def trainable_parameters(
    task: nn.Module, policy: FreezePolicy, step: int = 0, epoch: int = 0
) -> list[nn.Parameter]:
    """The parameters of ``task`` (holding ``encoder`` and ``head``) that ``policy`` trains at ``step`` /
    ``epoch``, each tensor once even when tied; changes nothing.

    ``step`` / ``epoch`` matter only to schedules (``FreezeGradual``). An encoder carrying adapters (LoRA)
    keeps its own weights frozen whatever the policy: only the adapter weights (and the head) train.
    """
    modules = _frozen_modules(task.encoder, policy, step, epoch)
    frozen = {id(p) for module in modules for p in module.parameters()}
    if any(ADAPTER_MARKER in name for name, _ in task.encoder.named_parameters()):
        frozen |= {id(p) for name, p in task.encoder.named_parameters() if ADAPTER_MARKER not in name}
    return [p for p in task.parameters() if id(p) not in frozen]


def freeze(task: nn.Module, policy: FreezePolicy, step: int = 0, epoch: int = 0) -> int:
    """Set ``requires_grad`` on ``task`` to ``trainable_parameters(task, policy, step, epoch)``; return
    how many elements train. The result depends only on the arguments, so applying it twice, or after a
    resume, gives the same state.
    """
    trains = {id(p): p for p in trainable_parameters(task, policy, step, epoch)}
    for param in task.parameters():
        param.requires_grad_(id(param) in trains)
    return sum(p.numel() for p in trains.values())


def last_stage(policy: FreezePolicy) -> FreezePolicy:
    """The widest state ``policy`` reaches: itself for a static policy; for gradual unfreezing, the stage
    in which every layer group has joined, which freezes nothing."""
    return NoFreeze() if isinstance(policy, FreezeGradual) else policy


def freeze_for_optimizer(task: nn.Module, policy: FreezePolicy) -> int:
    """``freeze`` at the policy's last stage, for building the optimizer (and DDP's gradient buckets) from:
    every parameter the policy will ever train is in it from the start. Returns how many elements that is.
    """
    return freeze(task, last_stage(policy))
