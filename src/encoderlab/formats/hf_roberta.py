"""RoBERTa (``model_type: roberta``): BERT's layers and names, positions offset past the padding index.

RoBERTa numbers real tokens from ``padding_idx + 1`` (``create_position_ids_from_input_ids``), so our
encoder reads position rows ``arange(S) + pad_token_id + 1`` (``position_offset``); with right padding that
is the same row for every real token. It has one token type (``type_vocab_size: 1``) and a byte-level BPE
tokenizer (``<s> </s> <pad> <unk> <mask>``, see :mod:`encoderlab.data.tokenizer`).
"""

from __future__ import annotations

from collections.abc import Mapping

from encoderlab.formats import hf_bert
from encoderlab.formats.hf_family import HFFamily, NameTable
from encoderlab.models.encoder import EncoderConfig

# RobertaForMaskedLM's ``lm_head`` is BERT's MLM head under other names: dense → GELU → LayerNorm → tied
# decoder (+ ``lm_head.bias``, which ``lm_head.decoder.bias`` shares).
MLM_HEAD_NAMES: dict[str, str] = {
    "dense.weight": "lm_head.dense.weight",
    "dense.bias": "lm_head.dense.bias",
    "layer_norm.weight": "lm_head.layer_norm.weight",
    "layer_norm.bias": "lm_head.layer_norm.bias",
    "decoder.bias": "lm_head.bias",
}


def config_from_hf(cfg: Mapping, source: str) -> EncoderConfig:
    hf_bert.require_bert_like(cfg, source, "RoBERTa")
    pad = 1 if cfg.get("pad_token_id") is None else int(cfg["pad_token_id"])
    return EncoderConfig(**{**hf_bert.bert_shape(cfg), "pad_token_id": pad}, position_offset=pad + 1)


def _names(config: EncoderConfig) -> NameTable:
    return hf_bert.name_map(config.layers)


def _mlm_head_names(cfg: Mapping, config: EncoderConfig) -> dict[str, str]:
    return MLM_HEAD_NAMES


FAMILY = HFFamily(
    title="RoBERTa",
    model_types=("roberta",),
    architectures=("RobertaModel", "RobertaForMaskedLM", "RobertaForSequenceClassification"),
    prefix="roberta.",
    config_from_hf=config_from_hf,
    name_map=_names,
    mlm_head_names=_mlm_head_names,
    extra_prefixes=("pooler.", "lm_head.", "classifier."),
    extra_keys=("embeddings.position_ids", "embeddings.token_type_ids"),
)
