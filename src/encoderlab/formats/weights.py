"""Loading tensors into modules with every key accounted for.

There is no ``strict=False`` anywhere: the missing and unexpected key sets must equal the expected ones
or loading fails, naming the keys. Wrapper prefixes (``_orig_mod.`` from torch.compile, ``module.`` from
DDP) are stripped here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from encoderlab.errors import UserError

WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    cleaned = {}
    for key, value in state.items():
        for prefix in WRAPPER_PREFIXES:
            key = key.replace(prefix, "")
        cleaned[key] = value
    return cleaned


def few_keys(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def describe_key_mismatch(missing: Iterable[str], unexpected: Iterable[str]) -> str:
    """'missing keys: a, b; unexpected keys: c' — only the parts that are non-empty."""
    parts = [f"missing keys: {few_keys(missing)}"] if missing else []
    parts += [f"unexpected keys: {few_keys(unexpected)}"] if unexpected else []
    return "; ".join(parts)


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    expected_missing: Iterable[str] = (),
    expected_unexpected: Iterable[str] = (),
) -> None:
    """Copy ``state`` into ``module``; fail with the offending keys unless every key is accounted for."""
    state = strip_wrapper_prefixes(state)
    own = module.state_dict()
    missing = set(own) - set(state) - set(expected_missing)
    unexpected = set(state) - set(own) - set(expected_unexpected)
    if missing or unexpected:
        raise UserError(
            f"{source} does not match the encoder config — {describe_key_mismatch(missing, unexpected)} — "
            "export it again or use the encoder config it was saved with"
        )
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if mismatched:
        raise UserError(
            f"{source} has tensors whose shapes disagree with the encoder config (file vs config): "
            f"{few_keys(mismatched, 4)} — export it again or use the encoder config it was saved with"
        )
    with torch.no_grad():
        for key, target in own.items():
            if key in state:
                target.copy_(state[key])
