"""What one Hugging Face architecture family declares for import (and export): the shared vocabulary of the
per-family modules ``hf_bert``, ``hf_roberta``, ``hf_distilbert``, ``hf_electra`` and ``hf_modernbert``.

A family names its ``model_type`` values and architectures, translates its ``config.json`` into our
``EncoderConfig`` and spells out, in explicit tables, which Hugging Face tensor each of our parameters is.
:mod:`encoderlab.formats.hf` does the rest (reading files, key accounting, the ``init=hf`` source).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from encoderlab.errors import UserError
from encoderlab.models.encoder import EncoderConfig


@dataclass(frozen=True)
class Part:
    """Slice ``index`` of ``parts`` equal slices (along dim 0) of the fused Hugging Face tensor ``key``:
    ModernBERT's ``Wqkv`` holds our query, key and value weights one after the other."""

    key: str
    index: int
    parts: int


# Our parameter name → its Hugging Face name (after the family's base-model prefix), or a Part of one.
NameTable = dict[str, "str | Part"]


@dataclass(frozen=True)
class HFFamily:
    """One architecture family: how its checkpoints map onto our encoder (and our MLM head)."""

    title: str  # as people write it: "RoBERTa"
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    prefix: str  # the base model's prefix in task checkpoints ("roberta.")
    config_from_hf: Callable[[Mapping, str], EncoderConfig]
    name_map: Callable[[EncoderConfig], NameTable]
    # Our MaskedLMHead's own tensors → the checkpoint's MLM head, when that head is exactly ours (else None).
    mlm_head_names: Callable[[Mapping, EncoderConfig], dict[str, str] | None]
    # What a checkpoint may hold beyond the encoder (heads, poolers, buffers), after the prefix is removed.
    extra_prefixes: tuple[str, ...] = ()
    extra_keys: tuple[str, ...] = ()
    # Our config → its config.json fields, for export (None: import only).
    config_to_hf: Callable[[EncoderConfig, tuple[str, ...]], dict] | None = None


def theirs_keys(table: NameTable) -> set[str]:
    """Every Hugging Face key a name table reads (a fused tensor once)."""
    return {value.key if isinstance(value, Part) else value for value in table.values()}


def without_biases(table: NameTable, config: EncoderConfig) -> NameTable:
    """An encoder built with ``bias=false`` has no bias tensors: drop them from the table."""
    return (
        table
        if config.bias
        else {ours: theirs for ours, theirs in table.items() if not ours.endswith(".bias")}
    )


def require_values(cfg: Mapping, wanted: Mapping[str, tuple[object, object]], source: str, why: str) -> None:
    """Refuse a config whose ``key`` is not the one value our encoder implements: ``{key: (default, wanted)}``."""
    for key, (default, value) in wanted.items():
        found = cfg.get(key, default)
        if found != value:
            raise UserError(
                f"{source}: {key}={found!r} is not supported — encoderlab's encoder implements only "
                f"{key}={value!r} ({why}); choose another checkpoint"
            )
