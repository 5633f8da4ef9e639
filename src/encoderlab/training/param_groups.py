"""Optimizer parameter groups by one visible rule.

No weight decay on biases, normalisation weights or embeddings; everything else decays. Only parameters
with ``requires_grad`` reach the optimizer, so frozen ones are never touched (not even by weight decay).
"""

from __future__ import annotations

from torch import nn


def _decays(module: nn.Module, param_name: str) -> bool:
    return not (param_name.endswith("bias") or isinstance(module, nn.LayerNorm | nn.Embedding))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            # A tied tensor (MLM decoder = embeddings) is listed once, under its first owner.
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (decay if _decays(module, name) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
