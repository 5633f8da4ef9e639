"""DistilBERT (``model_type: distilbert``): BERT's post-LN layers under its own names, no token types.

DistilBERT has no segment embeddings (``type_vocab_size=0``: token type ids are ignored) and spells its
layer ``q_lin / k_lin / v_lin / out_lin``, ``sa_layer_norm``, ``ffn.lin1 / lin2``, ``output_layer_norm``.
A checkpoint with sinusoidal positions stores them as an ordinary table, which imports as learned.
"""

from __future__ import annotations

from collections.abc import Mapping

from encoderlab.formats.hf_family import HFFamily, NameTable, require_values
from encoderlab.models.encoder import EncoderConfig

EMBEDDING_NAMES: dict[str, str] = {
    "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "embeddings.LayerNorm.weight": "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias": "embeddings.LayerNorm.bias",
}
# Ours (under ``layers.{i}.``) → DistilBERT (under ``transformer.layer.{i}.``).
LAYER_NAMES: dict[str, str] = {
    "attention.query.weight": "attention.q_lin.weight",
    "attention.query.bias": "attention.q_lin.bias",
    "attention.key.weight": "attention.k_lin.weight",
    "attention.key.bias": "attention.k_lin.bias",
    "attention.value.weight": "attention.v_lin.weight",
    "attention.value.bias": "attention.v_lin.bias",
    "attention.output.weight": "attention.out_lin.weight",
    "attention.output.bias": "attention.out_lin.bias",
    "attention_norm.weight": "sa_layer_norm.weight",
    "attention_norm.bias": "sa_layer_norm.bias",
    "intermediate.weight": "ffn.lin1.weight",
    "intermediate.bias": "ffn.lin1.bias",
    "output.weight": "ffn.lin2.weight",
    "output.bias": "ffn.lin2.bias",
    "output_norm.weight": "output_layer_norm.weight",
    "output_norm.bias": "output_layer_norm.bias",
}
# DistilBertForMaskedLM: vocab_transform → GELU → vocab_layer_norm → vocab_projector (tied weight, own bias).
MLM_HEAD_NAMES: dict[str, str] = {
    "dense.weight": "vocab_transform.weight",
    "dense.bias": "vocab_transform.bias",
    "layer_norm.weight": "vocab_layer_norm.weight",
    "layer_norm.bias": "vocab_layer_norm.bias",
    "decoder.bias": "vocab_projector.bias",
}
LAYER_NORM_EPS = 1e-12  # fixed in DistilBERT's code, not in its config


def config_from_hf(cfg: Mapping, source: str) -> EncoderConfig:
    require_values(cfg, {"activation": ("gelu", "gelu")}, source, "DistilBERT with erf GELU")
    return EncoderConfig(
        vocab_size=int(cfg["vocab_size"]),
        layers=int(cfg.get("n_layers", 6)),
        hidden=int(cfg.get("dim", 768)),
        heads=int(cfg.get("n_heads", 12)),
        intermediate=int(cfg.get("hidden_dim", 3072)),
        max_positions=int(cfg.get("max_position_embeddings", 512)),
        type_vocab_size=0,
        dropout=float(cfg.get("dropout", 0.1)),
        attention_dropout=float(cfg.get("attention_dropout", 0.1)),
        layer_norm_eps=LAYER_NORM_EPS,
        pad_token_id=int(cfg.get("pad_token_id") or 0),
        initializer_range=float(cfg.get("initializer_range", 0.02)),
    )


def name_map(config: EncoderConfig) -> NameTable:
    names: NameTable = dict(EMBEDDING_NAMES)
    for i in range(config.layers):
        for ours, theirs in LAYER_NAMES.items():
            names[f"layers.{i}.{ours}"] = f"transformer.layer.{i}.{theirs}"
    return names


def _mlm_head_names(cfg: Mapping, config: EncoderConfig) -> dict[str, str]:
    return MLM_HEAD_NAMES


FAMILY = HFFamily(
    title="DistilBERT",
    model_types=("distilbert",),
    architectures=("DistilBertModel", "DistilBertForMaskedLM", "DistilBertForSequenceClassification"),
    prefix="distilbert.",
    config_from_hf=config_from_hf,
    name_map=name_map,
    mlm_head_names=_mlm_head_names,
    extra_prefixes=(
        "vocab_transform.",
        "vocab_layer_norm.",
        "vocab_projector.",
        "pre_classifier.",
        "classifier.",
    ),
    extra_keys=("embeddings.position_ids",),
)
