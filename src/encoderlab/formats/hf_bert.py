"""BERT (``model_type: bert``): the family our encoder's parameter names follow; import and export.

Our names differ from ``transformers.BertModel``'s only in a few places; the tables spell out every one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from encoderlab.errors import UserError
from encoderlab.formats.hf_family import HFFamily, NameTable, require_values
from encoderlab.models.encoder import EncoderConfig

MODEL_TYPES = ("bert",)
ARCHITECTURES = (
    "BertModel",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForSequenceClassification",
)
PREFIX = "bert."

# Ours → Hugging Face, outside the layers.
EMBEDDING_NAMES: dict[str, str] = {
    "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight": "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias": "embeddings.LayerNorm.bias",
}
# Ours (under ``layers.{i}.``) → Hugging Face (under ``encoder.layer.{i}.``).
LAYER_NAMES: dict[str, str] = {
    "attention.query.weight": "attention.self.query.weight",
    "attention.query.bias": "attention.self.query.bias",
    "attention.key.weight": "attention.self.key.weight",
    "attention.key.bias": "attention.self.key.bias",
    "attention.value.weight": "attention.self.value.weight",
    "attention.value.bias": "attention.self.value.bias",
    "attention.output.weight": "attention.output.dense.weight",
    "attention.output.bias": "attention.output.dense.bias",
    "attention_norm.weight": "attention.output.LayerNorm.weight",
    "attention_norm.bias": "attention.output.LayerNorm.bias",
    "intermediate.weight": "intermediate.dense.weight",
    "intermediate.bias": "intermediate.dense.bias",
    "output.weight": "output.dense.weight",
    "output.bias": "output.dense.bias",
    "output_norm.weight": "output.LayerNorm.weight",
    "output_norm.bias": "output.LayerNorm.bias",
}
# Our MaskedLMHead (its own tensors) → BertForMaskedLM's ``cls.predictions`` (decoder weight is tied).
MLM_HEAD_NAMES: dict[str, str] = {
    "dense.weight": "cls.predictions.transform.dense.weight",
    "dense.bias": "cls.predictions.transform.dense.bias",
    "layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "layer_norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "decoder.bias": "cls.predictions.bias",
}
# Our SequenceClassifier with hidden_layers=2, pooling=cls → BertForSequenceClassification.
CLASSIFIER_HEAD_NAMES: dict[str, str] = {
    "dense.weight": "bert.pooler.dense.weight",
    "dense.bias": "bert.pooler.dense.bias",
    "out.weight": "classifier.weight",
    "out.bias": "classifier.bias",
}
# Keys an HF checkpoint may hold beyond the encoder (after the optional ``bert.`` prefix is removed).
KNOWN_EXTRA_PREFIXES = ("pooler.", "cls.", "classifier.")
KNOWN_EXTRA_KEYS = ("embeddings.position_ids",)


def name_map(layers: int) -> dict[str, str]:
    """Every parameter of an ``layers``-layer encoder: our name → ``transformers.BertModel`` name."""
    names = dict(EMBEDDING_NAMES)
    for i in range(layers):
        for ours, theirs in LAYER_NAMES.items():
            names[f"layers.{i}.{ours}"] = f"encoder.layer.{i}.{theirs}"
    return names


def encoder_to_hf(
    state: Mapping[str, torch.Tensor], layers: int, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Our encoder's state dict → HF names (``prefix="bert."`` for the task models)."""
    names = name_map(layers)
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise ValueError(f"encoder state has keys outside the HF name map: {unknown[:6]}")
    return {prefix + names[k]: v for k, v in state.items()}


# What a BERT-like config.json (BERT, RoBERTa, ELECTRA) must say for our post-LN block to compute it.
BERT_LIKE_VALUES = {
    "hidden_act": ("gelu", "gelu"),
    "position_embedding_type": ("absolute", "absolute"),
    "is_decoder": (False, False),
    "add_cross_attention": (False, False),
}


def require_bert_like(cfg: Mapping, source: str, family: str) -> None:
    require_values(cfg, BERT_LIKE_VALUES, source, f"post-LN {family} with erf GELU and absolute positions")


def config_from_hf(cfg: Mapping, source: str) -> EncoderConfig:
    """A BERT ``config.json`` → our ``EncoderConfig`` (post-LN, erf GELU, absolute positions only)."""
    require_bert_like(cfg, source, "BERT")
    return EncoderConfig(**bert_shape(cfg))


def bert_shape(cfg: Mapping) -> dict:
    """The ``EncoderConfig`` values BERT-shaped configs (BERT, RoBERTa, ELECTRA) spell the same way."""
    return dict(
        vocab_size=int(cfg["vocab_size"]),
        layers=int(cfg.get("num_hidden_layers", 12)),
        hidden=int(cfg.get("hidden_size", 768)),
        heads=int(cfg.get("num_attention_heads", 12)),
        intermediate=int(cfg.get("intermediate_size", 3072)),
        max_positions=int(cfg.get("max_position_embeddings", 512)),
        type_vocab_size=int(cfg.get("type_vocab_size", 2)),
        dropout=float(cfg.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(cfg.get("attention_probs_dropout_prob", 0.1)),
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        pad_token_id=int(cfg.get("pad_token_id") or 0),
        initializer_range=float(cfg.get("initializer_range", 0.02)),
    )


# Our options whose non-default values BERT has no field for (the option → its BERT value).
BERT_BLOCK = {
    "position": "learned",
    "ffn": "gelu",
    "bias": True,
    "final_norm": False,
    "first_attention_norm": True,
    "local_window": None,
    "attention": "bidirectional",
    "position_offset": 0,
}


def config_to_hf(config: EncoderConfig, architectures: Iterable[str] = ("BertModel",)) -> dict:
    """Our ``EncoderConfig`` → the fields of a ``transformers.BertConfig`` ``config.json``."""
    if config.norm_first:
        raise UserError(
            "a pre-LayerNorm encoder (norm_first=true) has no Hugging Face BERT equivalent — "
            "keep the encoderlab export, or pre-train with encoder.norm_first=false"
        )
    for option, value in {**BERT_BLOCK, "embedding_size": config.hidden}.items():
        if getattr(config, option) != value:
            raise UserError(
                f"encoder.{option}={getattr(config, option)!r} has no Hugging Face BERT equivalent (BERT: "
                f"{value!r}) — keep the encoderlab export (a rope encoder exports as ModernBERT)"
            )
    if config.type_vocab_size < 1:
        raise UserError(
            "encoder.type_vocab_size=0 has no Hugging Face BERT equivalent (BERT has a token-type table) — "
            "keep the encoderlab export"
        )
    return {
        "architectures": list(architectures),
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "intermediate_size": config.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_positions,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": config.pad_token_id,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


def _names(config: EncoderConfig) -> NameTable:
    return name_map(config.layers)


def _mlm_head_names(cfg: Mapping, config: EncoderConfig) -> dict[str, str]:
    return MLM_HEAD_NAMES


FAMILY = HFFamily(
    title="BERT",
    model_types=MODEL_TYPES,
    architectures=ARCHITECTURES,
    prefix=PREFIX,
    config_from_hf=config_from_hf,
    name_map=_names,
    mlm_head_names=_mlm_head_names,
    extra_prefixes=KNOWN_EXTRA_PREFIXES,
    extra_keys=KNOWN_EXTRA_KEYS,
    config_to_hf=config_to_hf,
)
