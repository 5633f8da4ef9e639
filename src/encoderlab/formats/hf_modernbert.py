"""ModernBERT (``model_type: modernbert``): pre-LN, rotary, GeGLU, no biases, alternating local attention.

Onto our block options: ``position=rope`` (``rope_theta`` for global layers, ``local_rope_theta`` for local
ones), ``ffn=geglu`` (``Wi`` is our ``intermediate`` at 2·I: input half then gate half), ``bias=false``,
``norm_first`` with ``final_norm`` and ``first_attention_norm=false`` (layer 0 has no ``attn_norm``),
``local_window`` = ``local_attention`` with ``global_every`` = ``global_attn_every_n_layers``, and no
token types. Import and export (``ModernBertModel`` / ``ModernBertForMaskedLM``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from encoderlab.errors import UserError
from encoderlab.formats.hf_family import HFFamily, NameTable, Part, require_values, without_biases
from encoderlab.models.encoder import EncoderConfig

EMBEDDING_NAMES: dict[str, str] = {
    "embeddings.word_embeddings.weight": "embeddings.tok_embeddings.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    "final_norm.weight": "final_norm.weight",
    "final_norm.bias": "final_norm.bias",
}
# Ours (under ``layers.{i}.``) → ModernBERT (under ``layers.{i}.``). Its fused ``attn.Wqkv`` is our separate
# query, key and value, in that order: import splits it in three along the output rows, export concatenates.
LAYER_NAMES: NameTable = {
    "attention.query.weight": Part("attn.Wqkv.weight", 0, 3),
    "attention.query.bias": Part("attn.Wqkv.bias", 0, 3),
    "attention.key.weight": Part("attn.Wqkv.weight", 1, 3),
    "attention.key.bias": Part("attn.Wqkv.bias", 1, 3),
    "attention.value.weight": Part("attn.Wqkv.weight", 2, 3),
    "attention.value.bias": Part("attn.Wqkv.bias", 2, 3),
    "attention.output.weight": "attn.Wo.weight",
    "attention.output.bias": "attn.Wo.bias",
    "attention_norm.weight": "attn_norm.weight",  # not in layer 0 (an identity there)
    "attention_norm.bias": "attn_norm.bias",
    "intermediate.weight": "mlp.Wi.weight",
    "intermediate.bias": "mlp.Wi.bias",
    "output.weight": "mlp.Wo.weight",
    "output.bias": "mlp.Wo.bias",
    "output_norm.weight": "mlp_norm.weight",
    "output_norm.bias": "mlp_norm.bias",
}
# ModernBertForMaskedLM: head.dense → GELU → head.norm → decoder (tied weight, own bias); our MaskedLMHead
# takes the encoder's ``bias`` setting for its dense and norm, so it is exact when ModernBERT's head does too.
MLM_HEAD_NAMES: dict[str, str] = {
    "dense.weight": "head.dense.weight",
    "dense.bias": "head.dense.bias",
    "layer_norm.weight": "head.norm.weight",
    "layer_norm.bias": "head.norm.bias",
    "decoder.bias": "decoder.bias",
}
FULL, SLIDING = "full_attention", "sliding_attention"
DEFAULT_THETA = {FULL: 160_000.0, SLIDING: 10_000.0}  # ModernBertConfig's defaults
DEFAULT_LOCAL_ATTENTION = 128


def _rope_theta(cfg: Mapping, kind: str) -> float:
    """A layer kind's theta: ``rope_parameters`` (transformers 5) or ``global/local_rope_theta`` (4.x files)."""
    params = (cfg.get("rope_parameters") or {}).get(kind) or {}
    legacy = cfg.get("global_rope_theta" if kind == FULL else "local_rope_theta")
    return float(params.get("rope_theta", legacy if legacy is not None else DEFAULT_THETA[kind]))


def _global_every(cfg: Mapping, layers: int, source: str) -> int | None:
    """``global_attn_every_n_layers`` from ``layer_types`` (None: every layer global)."""
    every = int(cfg.get("global_attn_every_n_layers", 3))
    types = cfg.get("layer_types") or [FULL if i % every == 0 else SLIDING for i in range(layers)]
    if SLIDING not in types:
        return None
    later_global = [i for i, kind in enumerate(types) if kind == FULL and i > 0]
    every = later_global[0] if later_global else layers
    if list(types) != [FULL if i % every == 0 else SLIDING for i in range(layers)]:
        raise UserError(
            f"{source}: layer_types {list(types)} is not one global layer every n — encoderlab's encoder "
            "implements only that alternation (global_every); choose another checkpoint"
        )
    return every


def config_from_hf(cfg: Mapping, source: str) -> EncoderConfig:
    require_values(cfg, {"hidden_activation": ("gelu", "gelu")}, source, "ModernBERT with erf GeGLU")
    biases = {key: bool(cfg.get(key, False)) for key in ("norm_bias", "attention_bias", "mlp_bias")}
    if len(set(biases.values())) > 1:
        raise UserError(
            f"{source}: {', '.join(f'{k}={v}' for k, v in biases.items())} — encoderlab's encoder has one bias "
            "switch for every Linear and LayerNorm (encoder.bias); choose a checkpoint where they agree"
        )
    layers = int(cfg.get("num_hidden_layers", 22))
    every = _global_every(cfg, layers, source)
    return EncoderConfig(
        vocab_size=int(cfg["vocab_size"]),
        layers=layers,
        hidden=int(cfg.get("hidden_size", 768)),
        heads=int(cfg.get("num_attention_heads", 12)),
        intermediate=int(cfg.get("intermediate_size", 1152)),
        max_positions=int(cfg.get("max_position_embeddings", 8192)),
        type_vocab_size=0,
        dropout=float(max(cfg.get("embedding_dropout", 0.0), cfg.get("mlp_dropout", 0.0))),
        attention_dropout=float(cfg.get("attention_dropout", 0.0)),
        layer_norm_eps=float(cfg.get("norm_eps", 1e-5)),
        pad_token_id=int(cfg.get("pad_token_id") or 0),
        initializer_range=float(cfg.get("initializer_range", 0.02)),
        norm_first=True,
        position="rope",
        rope_theta=_rope_theta(cfg, FULL),
        local_rope_theta=_rope_theta(cfg, SLIDING),
        ffn="geglu",
        bias=biases["norm_bias"],
        final_norm=True,
        first_attention_norm=False,
        local_window=None if every is None else int(cfg.get("local_attention", DEFAULT_LOCAL_ATTENTION)),
        global_every=1 if every is None else every,
    )


def name_map(config: EncoderConfig) -> NameTable:
    names: NameTable = dict(EMBEDDING_NAMES)
    for i in range(config.layers):
        for ours, theirs in LAYER_NAMES.items():
            if i == 0 and not config.first_attention_norm and ours.startswith("attention_norm."):
                continue
            names[f"layers.{i}.{ours}"] = (
                Part(f"layers.{i}.{theirs.key}", theirs.index, theirs.parts)
                if isinstance(theirs, Part)
                else f"layers.{i}.{theirs}"
            )
    return without_biases(names, config)


def mlm_head_names(cfg: Mapping, config: EncoderConfig) -> dict[str, str] | None:
    """The head is ours when its activation is GELU, its dense and norm biases follow the encoder's and the
    decoder has a bias; otherwise its tensors are known extras and a fresh head is used."""
    exact = (
        cfg.get("classifier_activation", "gelu") == "gelu"
        and bool(cfg.get("classifier_bias", False)) == config.bias
        and bool(cfg.get("decoder_bias", True))
    )
    if not exact:
        return None
    return (
        MLM_HEAD_NAMES
        if config.bias
        else {k: v for k, v in MLM_HEAD_NAMES.items() if k == "decoder.bias" or not k.endswith(".bias")}
    )


# Our options and the one value ModernBERT has for each (export refuses any other, naming it).
MODERN_BLOCK = {
    "position": "rope",
    "ffn": "geglu",
    "bias": False,
    "norm_first": True,
    "final_norm": True,
    "first_attention_norm": False,
    "attention": "bidirectional",
    "type_vocab_size": 0,
}


def config_to_hf(config: EncoderConfig, architectures: Iterable[str] = ("ModernBertModel",)) -> dict:
    """Our ``EncoderConfig`` → a ``transformers.ModernBertConfig`` ``config.json``."""
    for option, value in {**MODERN_BLOCK, "embedding_size": config.hidden}.items():
        if getattr(config, option) != value:
            raise UserError(
                f"encoder.{option}={getattr(config, option)!r} has no Hugging Face ModernBERT equivalent "
                f"(ModernBERT: {value!r}) — keep the encoderlab export, or train a modern_* encoder"
            )
    every = config.global_every if config.local_window is not None else 1
    return {
        "architectures": list(architectures),
        "model_type": "modernbert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden,
        "intermediate_size": config.intermediate,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "hidden_activation": "gelu",
        "max_position_embeddings": config.max_positions,
        "initializer_range": config.initializer_range,
        "norm_eps": config.layer_norm_eps,
        "norm_bias": False,
        "attention_bias": False,
        "mlp_bias": False,
        "classifier_bias": False,
        "classifier_activation": "gelu",
        "decoder_bias": True,
        "pad_token_id": config.pad_token_id,
        "attention_dropout": config.attention_dropout,
        "embedding_dropout": config.dropout,
        "mlp_dropout": config.dropout,
        "local_attention": config.local_window or DEFAULT_LOCAL_ATTENTION,
        "global_attn_every_n_layers": every,
        "layer_types": [
            FULL if i % every == 0 or config.local_window is None else SLIDING for i in range(config.layers)
        ],
        "rope_parameters": {
            FULL: {"rope_type": "default", "rope_theta": config.rope_theta},
            SLIDING: {"rope_type": "default", "rope_theta": config.local_rope_theta},
        },
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


FAMILY = HFFamily(
    title="ModernBERT",
    model_types=("modernbert",),
    architectures=("ModernBertModel", "ModernBertForMaskedLM"),
    prefix="model.",
    config_from_hf=config_from_hf,
    name_map=name_map,
    mlm_head_names=mlm_head_names,
    extra_prefixes=("head.", "decoder.", "classifier."),
    config_to_hf=config_to_hf,
)
