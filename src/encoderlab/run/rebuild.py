"""Reading a finished run directory back: saved config, tensors-only checkpoint, label map, tokenizer.

Shared by the CLIs that consume run directories (``encoderlab-export``, ``encoderlab-predict``,
``encoderlab-doctor``). Nothing is unpickled: the Hydra config is read as plain YAML (``yaml.safe_load``),
the checkpoint with ``torch.load(weights_only=True)``, encoder exports with safetensors. No ``_target_``
from a run's config is ever instantiated either, so a run directory from elsewhere cannot run code: the
encoder and head are rebuilt from the known classes with the numbers the config holds.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import yaml
from tokenizers import Tokenizer

from encoderlab.adapt.adapters import LoRA, merge_lora
from encoderlab.data.tokenizer import load_tokenizer
from encoderlab.errors import UserError
from encoderlab.files import atomic_directory
from encoderlab.formats import hf
from encoderlab.formats.export import TOKENIZER_FILES, read_export_config
from encoderlab.formats.weights import load_strict, strip_wrapper_prefixes
from encoderlab.models.encoder import Encoder, EncoderConfig
from encoderlab.models.heads import SequenceClassifier, TokenClassifier

CHECKPOINT = Path("checkpoints") / "last.ckpt"
LABEL_MAP = "label_map.json"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_RUNTIME = Path(".hydra") / "hydra.yaml"
ENCODER_DIR = "encoder"
TOKENIZER_DIR = "tokenizer"  # the tokenizer a fine-tuning run used, copied beside it (save_run_tokenizer)
RUN_RECORD = "run.json"
METRICS = "metrics.json"
EMBEDDING_KEY = "embeddings.word_embeddings.weight"
CLASSIFICATION_TASK = "SequenceClassificationTask"
REGRESSION_TASK = "SequenceRegressionTask"
MULTILABEL_TASK = "MultiLabelClassificationTask"
TAGGING_TASK = "TokenClassificationTask"
ENCODER_BUILDER = "encoderlab.models.encoder.build"


def target(section) -> str:
    """The ``_target_`` of a config section ('' when there is none)."""
    return str(section.get("_target_", "")) if isinstance(section, dict) else ""


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(
            f"cannot read {path} ({type(err).__name__}) — is this a complete run directory?"
        ) from None
    return data if isinstance(data, dict) else {}


def read_run_config(run_dir: Path) -> dict:
    """The run's composed config (``.hydra/config.yaml``) as plain data; {} when it is missing."""
    path = Path(run_dir) / HYDRA_CONFIG
    return read_yaml(path) if path.is_file() else {}


def is_run_dir(run_dir: Path) -> bool:
    run_dir = Path(run_dir)
    return run_dir.is_dir() and ((run_dir / RUN_RECORD).is_file() or (run_dir / HYDRA_CONFIG).is_file())


def load_checkpoint_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """``state_dict`` of ``checkpoints/last.ckpt``, read tensors-only (no pickled objects)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise UserError(f"{path} not found — use a finished fine-tuning run (it saves checkpoints/last.ckpt)")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read {path} as a tensors-only checkpoint ({first}) — re-run training with this "
            "encoderlab version, which saves checkpoints without pickled objects"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(f"{path} has no state_dict — it is not a Lightning checkpoint of an encoderlab task")
    return strip_wrapper_prefixes(ckpt["state_dict"])


def split_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` (``encoder.`` / ``head.``), with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def resolve_path(value: str, run_dir: Path) -> Path:
    """A path from the run's config: as given, else relative to the directory training was launched from."""
    path = Path(value)
    if path.is_absolute() or path.exists() or not (run_dir / HYDRA_RUNTIME).is_file():
        return path
    cwd = (read_yaml(run_dir / HYDRA_RUNTIME).get("hydra") or {}).get("runtime", {}).get("cwd")
    return Path(cwd) / path if cwd else path


def _literal(value) -> bool:
    """A config value that is usable as is (not missing, not an unresolved ``${...}`` interpolation)."""
    return value is not None and not (isinstance(value, str) and ("${" in value or value == "???"))


def encoder_source(run_dir: Path, cfg: dict) -> tuple[EncoderConfig, Path]:
    """The encoder's config and tokenizer directory: the run's ``encoder/`` export, else its ``init``."""
    if (run_dir / ENCODER_DIR).is_dir():
        return read_export_config(run_dir / ENCODER_DIR), run_dir / ENCODER_DIR
    init = cfg.get("init") or {}
    init_target = target(init)
    if init_target.endswith("FromExport") and init.get("path"):
        path = resolve_path(str(init["path"]), run_dir)
        return read_export_config(path), path
    if init_target.endswith("FromHuggingFace"):
        if init.get("package"):
            path = hf.package_model_dir(str(init["package"]))
        else:
            path = resolve_path(str(init.get("path")), run_dir)
        return hf.config_from_hf(path / hf.CONFIG_FILE), path
    raise UserError(
        f"{run_dir} has no {ENCODER_DIR}/ export and its encoder was not initialised from one, so its shape "
        "and tokenizer are unknown — export a run that saved encoder/ (or was started with init=pretrained/hf)"
    )


def label_names(run_dir: Path) -> list[str] | None:
    """Label names in id order from ``label_map.json``; None when the run has none."""
    path = Path(run_dir) / LABEL_MAP
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        to_id = data["label_to_id"]
        names = sorted(to_id, key=lambda name: to_id[name])
        if [to_id[n] for n in names] != list(range(len(names))):
            raise ValueError("ids are not 0..N-1")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path} is not a valid label map ({err}) — it should hold label_to_id") from None
    return names


# ------------------------------------------------------------------------------------ tokenizer


def save_run_tokenizer(tokenizer_dir: str | Path, run_dir: str | Path) -> Path:
    """Copy the tokenizer a run used into ``run_dir/tokenizer/`` (atomically), so the run is self-contained.

    A fine-tuning run from scratch trains its tokenizer into the shared cache; without this copy, the
    run directory alone could not turn text into the ids its checkpoint expects.
    """
    tokenizer_dir, out = Path(tokenizer_dir), Path(run_dir) / TOKENIZER_DIR
    names = [name for name in TOKENIZER_FILES if (tokenizer_dir / name).is_file()]
    if not names:
        raise UserError(f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {tokenizer_dir}")
    with atomic_directory(out) as tmp:
        for name in names:
            shutil.copyfile(tokenizer_dir / name, tmp / name)
    return out


def tokenizer_location(run_dir: Path, cfg: dict) -> Path:
    """Where the tokenizer this run trained with lives, in order of trust.

    ``tokenizer/`` saved in the run, the run's ``encoder/`` export, the ``init`` it started from
    (``init=pretrained``/``hf``: training always uses that tokenizer), then ``data.tokenizer``.
    """
    run_dir = Path(run_dir)
    if (run_dir / TOKENIZER_DIR).is_dir():
        return run_dir / TOKENIZER_DIR
    init_target = target(cfg.get("init"))
    if (run_dir / ENCODER_DIR).is_dir() or init_target.endswith(("FromExport", "FromHuggingFace")):
        return encoder_source(run_dir, cfg)[1]
    data_tokenizer = (cfg.get("data") or {}).get("tokenizer")
    if _literal(data_tokenizer):
        return resolve_path(str(data_tokenizer), run_dir)
    raise UserError(
        f"{run_dir} does not say which tokenizer it trained with (no {TOKENIZER_DIR}/, no encoder/ export, "
        "no init.path, data.tokenizer is null) — re-run training with this encoderlab version, which saves "
        f"{TOKENIZER_DIR}/ in the run, or copy the tokenizer's files into {run_dir / TOKENIZER_DIR}"
    )


def load_run_tokenizer(run_dir: Path, cfg: dict, location: Path | None = None) -> Tokenizer:
    """The run's tokenizer (from ``location``, else :func:`tokenizer_location`), cased as it trained."""
    lowercase = (cfg.get("data") or {}).get("lowercase")
    return load_tokenizer(
        location or tokenizer_location(run_dir, cfg), lowercase=lowercase if _literal(lowercase) else None
    )


# ------------------------------------------------------------------------------------- encoder + head


def encoder_config(run_dir: Path, cfg: dict, state: dict[str, torch.Tensor]) -> EncoderConfig:
    """The trained encoder's shape: from its export / init when there is one, else the ``encoder`` preset.

    ``vocab_size`` is not in the preset (it came from the tokenizer): it is read off the checkpoint's
    embedding matrix.
    """
    init_target = target(cfg.get("init"))
    if (run_dir / ENCODER_DIR).is_dir() or init_target.endswith(("FromExport", "FromHuggingFace")):
        return encoder_source(run_dir, cfg)[0]
    section = cfg.get("encoder") or {}
    if target(section) != ENCODER_BUILDER:
        raise UserError(
            f"{run_dir / HYDRA_CONFIG} has encoder._target_={target(section) or None}, not {ENCODER_BUILDER} "
            "— this run's encoder cannot be rebuilt from its config"
        )
    embedding = state.get(f"encoder.{EMBEDDING_KEY}")
    if embedding is None:
        raise UserError(f"{run_dir / CHECKPOINT} has no encoder.{EMBEDDING_KEY} — is it an encoderlab run?")
    known = {f.name for f in fields(EncoderConfig)} - {"vocab_size"}
    values = {k: v for k, v in section.items() if k in known}
    unresolved = sorted(k for k, v in values.items() if v is not None and not _literal(v))
    if unresolved:
        raise UserError(
            f"encoder.{unresolved[0]} in {run_dir / HYDRA_CONFIG} is an interpolation ({values[unresolved[0]]}) "
            "— set the encoder's numbers as literals in the run's config"
        )
    try:
        return EncoderConfig(vocab_size=int(embedding.shape[0]), **values)
    except (TypeError, ValueError) as err:
        raise UserError(f"{run_dir / HYDRA_CONFIG} has an invalid encoder section ({err})") from None


def run_adapter(cfg: dict) -> LoRA | None:
    """The run's LoRA settings (``adapter`` section), rebuilt from plain values; None without adapters."""
    section = cfg.get("adapter") or {}
    if not target(section).endswith(".LoRA"):
        return None
    known = {f.name for f in fields(LoRA)}
    return LoRA(**{k: v for k, v in section.items() if k in known})


def fine_tuned_encoder(
    run_dir: Path, cfg: dict, state: dict[str, torch.Tensor], merge_adapters: bool = False
) -> tuple[Encoder, Path]:
    """The checkpoint's (fine-tuned) encoder, every key accounted for, and its tokenizer directory.

    A LoRA run's encoder carries its adapters as trained (exact predictions); ``merge_adapters`` folds
    them into the weights instead, giving a plain encoder (exports).
    """
    encoder = Encoder(encoder_config(run_dir, cfg, state))
    adapter = run_adapter(cfg)
    if adapter is not None:
        adapter.apply(encoder)
    load_strict(encoder, split_state(state, "encoder."), source=f"{run_dir / CHECKPOINT} (encoder.*)")
    if adapter is not None and merge_adapters:
        merge_lora(encoder)
    return encoder, tokenizer_location(run_dir, cfg)


def fine_tuning_config(run_dir: Path) -> dict:
    """The saved config of a run directory (a UserError when ``run_dir`` is not one)."""
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir} — pass a fine-tuning run's output directory")
    if not (run_dir / HYDRA_CONFIG).is_file():
        raise UserError(f"{run_dir / HYDRA_CONFIG} not found — pass a fine-tuning run's output directory")
    return read_run_config(run_dir)


def fitting_tokenizer(run_dir: Path, cfg: dict, location: Path, encoder: Encoder) -> Tokenizer:
    """The run's tokenizer, checked to fit the encoder's vocabulary."""
    tokenizer = load_run_tokenizer(run_dir, cfg, location)
    hf.check_vocab_size(
        tokenizer.get_vocab_size(with_added_tokens=True), encoder.config.vocab_size, run_dir / CHECKPOINT
    )
    return tokenizer


def max_seq_len(cfg: dict, encoder: Encoder) -> int:
    """The run's ``data.max_seq_len``, capped by the encoder's positions."""
    value = (cfg.get("data") or {}).get("max_seq_len")
    value = int(value) if _literal(value) else encoder.config.max_positions
    return min(value, encoder.config.max_positions)


def run_task(run_dir: str | Path) -> str:
    """The class name of a run's task (``SequenceClassificationTask``, ...); '' when unknown."""
    return target(fine_tuning_config(Path(run_dir)).get("task")).rsplit(".", 1)[-1]


@dataclass
class RunClassifier:
    """A fine-tuned sequence classifier (or regressor: ``regression``, no labels) rebuilt from its run, in eval mode."""

    encoder: Encoder
    head: SequenceClassifier
    tokenizer: Tokenizer
    label_names: list[str]
    max_seq_len: int
    text_pair_column: str | None
    text_column: str | None = None
    regression: bool = False
    multi_label_threshold: float | None = None  # set for multi-label runs: a sigmoid per label


def load_classifier(run_dir: str | Path) -> RunClassifier:
    """Encoder + classifier head from ``checkpoints/last.ckpt``, the run's tokenizer and label map.

    Every problem (not a run, not a classification run, a missing file, a tokenizer that does not fit
    the encoder) is a :class:`UserError` naming the file and the fix.
    """
    run_dir = Path(run_dir)
    cfg = fine_tuning_config(run_dir)
    task = target(cfg.get("task"))
    regression = task.endswith(REGRESSION_TASK)
    multi_label = task.endswith(MULTILABEL_TASK)
    if not (task.endswith(CLASSIFICATION_TASK) or regression or multi_label):
        raise UserError(
            f"{run_dir} is a {task.rsplit('.', 1)[-1] or 'unknown'} run, not a fine-tuned classifier — pass "
            "a run trained with task=classify, regress or multilabel (head=classifier)"
        )
    threshold = (cfg.get("task") or {}).get("threshold", 0.5) if multi_label else None
    if threshold is not None and not isinstance(threshold, int | float):
        raise UserError(f"task.threshold in {run_dir / HYDRA_CONFIG} is not a number ({threshold!r})")
    names = [] if regression else label_names(run_dir)
    if not regression and not names:
        raise UserError(
            f"{run_dir / LABEL_MAP} is missing or has no labels — pass a finished classification run"
        )
    state = load_checkpoint_state(run_dir)
    encoder, tokenizer_dir = fine_tuned_encoder(run_dir, cfg, state)

    head_cfg = cfg.get("head") or {}
    head_state = split_state(state, "head.")
    out = head_state.get("out.weight")
    outputs = 1 if regression else len(names)
    if out is None or out.shape[0] != outputs:
        rows = None if out is None else out.shape[0]
        raise UserError(
            f"{run_dir / CHECKPOINT} has a head with {rows} outputs but "
            + ("a regression run has 1" if regression else f"{run_dir / LABEL_MAP} names {len(names)} labels")
            + " — the checkpoint does not belong to this run's config and label map"
        )
    try:
        head = SequenceClassifier(
            encoder,
            num_labels=outputs,
            pooling=head_cfg.get("pooling", "cls"),
            dropout=0.0,
            hidden_layers=2 if "dense.weight" in head_state else 1,
        )
    except ValueError as err:
        raise UserError(f"{run_dir / HYDRA_CONFIG} has an invalid head section ({err})") from None
    load_strict(head, head_state, source=f"{run_dir / CHECKPOINT} (head.*)")

    tokenizer = fitting_tokenizer(run_dir, cfg, tokenizer_dir, encoder)
    data = cfg.get("data") or {}
    pair = data.get("text_pair_column")
    text_column = data.get("text_column")
    return RunClassifier(
        encoder=encoder.eval(),
        head=head.eval(),
        tokenizer=tokenizer,
        label_names=names,
        max_seq_len=max_seq_len(cfg, encoder),
        text_pair_column=str(pair) if _literal(pair) else None,
        text_column=str(text_column) if _literal(text_column) else None,
        regression=regression,
        multi_label_threshold=float(threshold) if threshold is not None else None,
    )


@dataclass
class RunTagger:
    """A fine-tuned token classifier (NER) rebuilt from its run directory, in eval mode."""

    encoder: Encoder
    head: TokenClassifier
    tokenizer: Tokenizer
    label_names: list[str]
    max_seq_len: int


def load_tagger(run_dir: str | Path) -> RunTagger:
    """Encoder + token classifier from ``checkpoints/last.ckpt``, the run's tokenizer and label map."""
    run_dir = Path(run_dir)
    cfg = fine_tuning_config(run_dir)
    task = target(cfg.get("task"))
    if not task.endswith(TAGGING_TASK):
        raise UserError(f"{run_dir} is a {task.rsplit('.', 1)[-1] or 'unknown'} run, not a token classifier")
    names = label_names(run_dir)
    if not names:
        raise UserError(f"{run_dir / LABEL_MAP} is missing or has no labels — pass a finished task=tag run")
    state = load_checkpoint_state(run_dir)
    encoder, tokenizer_dir = fine_tuned_encoder(run_dir, cfg, state)
    head_state = split_state(state, "head.")
    out = head_state.get("out.weight")
    if out is None or out.shape[0] != len(names):
        raise UserError(
            f"{run_dir / CHECKPOINT} has a tagger with {None if out is None else out.shape[0]} outputs but "
            f"{run_dir / LABEL_MAP} names {len(names)} labels — the label map does not belong to this checkpoint"
        )
    head = TokenClassifier(encoder, num_labels=len(names), dropout=0.0)
    load_strict(head, head_state, source=f"{run_dir / CHECKPOINT} (head.*)")
    return RunTagger(
        encoder=encoder.eval(),
        head=head.eval(),
        tokenizer=fitting_tokenizer(run_dir, cfg, tokenizer_dir, encoder),
        label_names=names,
        max_seq_len=max_seq_len(cfg, encoder),
    )
