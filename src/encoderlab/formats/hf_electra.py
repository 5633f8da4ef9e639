"""ELECTRA (``model_type: electra``): BERT's layers; embeddings may be narrower than the hidden size.

Its embeddings are ``embedding_size`` wide and projected up (``embeddings_project``: our
``embeddings.projection``, present only when the widths differ). The discriminator
(``ElectraForPreTraining``) and the generator (``ElectraForMaskedLM``) both import; the generator's
``generator_predictions`` + ``generator_lm_head`` is our MaskedLMHead at the embedding width, and is kept.
"""

from __future__ import annotations

from collections.abc import Mapping

from encoderlab.formats import hf_bert
from encoderlab.formats.hf_family import HFFamily, NameTable
from encoderlab.models.encoder import EncoderConfig

PROJECTION_NAMES: dict[str, str] = {
    "embeddings.projection.weight": "embeddings_project.weight",
    "embeddings.projection.bias": "embeddings_project.bias",
}
# ElectraForMaskedLM (the generator): dense (hidden → embedding) → GELU → LayerNorm → tied decoder + bias.
MLM_HEAD_NAMES: dict[str, str] = {
    "dense.weight": "generator_predictions.dense.weight",
    "dense.bias": "generator_predictions.dense.bias",
    "layer_norm.weight": "generator_predictions.LayerNorm.weight",
    "layer_norm.bias": "generator_predictions.LayerNorm.bias",
    "decoder.bias": "generator_lm_head.bias",
}


def config_from_hf(cfg: Mapping, source: str) -> EncoderConfig:
    hf_bert.require_bert_like(cfg, source, "ELECTRA")
    shape = hf_bert.bert_shape(cfg)
    return EncoderConfig(**shape, embedding_size=int(cfg.get("embedding_size") or shape["hidden"]))


def name_map(config: EncoderConfig) -> NameTable:
    names: NameTable = hf_bert.name_map(config.layers)
    if config.embedding_size != config.hidden:
        names.update(PROJECTION_NAMES)
    return names


def _mlm_head_names(cfg: Mapping, config: EncoderConfig) -> dict[str, str]:
    return MLM_HEAD_NAMES


FAMILY = HFFamily(
    title="ELECTRA",
    model_types=("electra",),
    architectures=("ElectraModel", "ElectraForPreTraining", "ElectraForMaskedLM"),
    prefix="electra.",
    config_from_hf=config_from_hf,
    name_map=name_map,
    mlm_head_names=_mlm_head_names,
    extra_prefixes=(
        "discriminator_predictions.",
        "generator_predictions.",
        "generator_lm_head.",
        "classifier.",
    ),
    extra_keys=("embeddings.position_ids", "embeddings.token_type_ids"),
)
