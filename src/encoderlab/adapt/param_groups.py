"""Optimizer parameter groups by one visible rule.

No weight decay on biases, normalisation weights or embeddings; everything else decays. Only parameters
with ``requires_grad`` reach the optimizer, so frozen ones are never touched (not even by weight decay).

Optionally (``optimizer_groups/`` config group) learning rates differ by depth: with layer-wise decay
``d`` over ``L`` encoder layers, layer ``i`` (1 = bottom … L = top) trains at ``lr · d^(L-i)`` and the
embeddings at ``lr · d^L``; the head trains at ``head_lr`` (default: ``lr``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from encoderlab.errors import UserError
from encoderlab.validate import check, in_range, positive

HEAD = "head"


@dataclass(frozen=True)
class LayerwiseLR:
    """Per-depth learning rates; both None (the default) = one learning rate for everything."""

    layer_decay: float | None = None
    head_lr: float | None = None

    def __post_init__(self) -> None:
        check("optimizer_groups.layer_decay", self.layer_decay, in_range(0, 1, low_open=True), optional=True)
        check("optimizer_groups.head_lr", self.head_lr, positive, optional=True)

    @property
    def active(self) -> bool:
        return self.layer_decay is not None or self.head_lr is not None

    def lr(self, depth: int | str, n_layers: int, base_lr: float) -> float:
        """``depth``: 0 = embeddings, i = encoder layer i (1-based), ``"head"`` = everything outside the encoder."""
        if depth == HEAD:
            return self.head_lr if self.head_lr is not None else base_lr
        return base_lr * (self.layer_decay or 1.0) ** (n_layers - depth)


def _decays(module: nn.Module, param_name: str) -> bool:
    return not (param_name.endswith("bias") or isinstance(module, nn.LayerNorm | nn.Embedding))


def _depth(module_name: str, n_layers: int) -> int | str:
    """Depth of a task submodule: the encoder's embeddings 0, its layer ``i`` i+1, the rest of it the top."""
    parts = module_name.split(".")
    if parts[0] != "encoder":
        return HEAD
    if len(parts) > 1 and parts[1] == "embeddings":
        return 0
    if len(parts) > 2 and parts[1] == "layers":
        return int(parts[2]) + 1
    return n_layers


def param_groups(
    model: nn.Module, weight_decay: float, lr: float | None = None, rule: LayerwiseLR | None = None
) -> list[dict]:
    """Groups for ``model`` (a task holding ``encoder`` and ``head``; any module without ``rule``)."""
    layered = rule is not None and rule.active
    if layered and lr is None:
        raise UserError("layer-wise learning rates need the optimizer's lr — set optimizer.lr")
    n_layers = len(model.encoder.layers) if layered else 0
    groups: dict[tuple, list] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            # A tied tensor (MLM decoder = embeddings) is listed once, under its first owner.
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            depth = _depth(module_name, n_layers) if layered else None
            groups.setdefault((depth, _decays(module, name)), []).append(param)
    out = []
    # Decaying parameters first at each depth (the layout older checkpoints' optimizer state has).
    for (depth, decays), params in (
        sorted(groups.items(), key=lambda kv: not kv[0][1]) if not layered else groups.items()
    ):
        group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if layered:
            group["lr"] = rule.lr(depth, n_layers, lr)
        out.append(group)
    return out
