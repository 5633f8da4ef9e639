"""Helpers shared by the interop tests (imported by name; tests/ is not a package)."""

from __future__ import annotations

import torch
import transformers

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a charming and often funny film with a brilliant cast",
    "the plot was dull and the script tedious, but the music was wonderful",
    "Encoders read text; decoders write it.",
] * 20
SENTENCES = ["The film was charming.", "a dull, tedious plot with wonderful music and a brilliant cast"]


def perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Random values everywhere (HF and we both initialise biases to 0 and norms to 1, hiding mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            offset = 1.0 if "norm" in name.lower() and name.endswith("weight") else 0.0
            p.copy_(offset + 0.1 * torch.randn(p.shape, generator=gen))


def small_bert_config(vocab_size: int, **overrides):
    values = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    values.update(overrides)
    return transformers.BertConfig(**values)


def batch(vocab_size: int, padded: bool, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (3, 12), generator=gen)
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 7:] = 0
        mask[2, 3:] = 0
        ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
