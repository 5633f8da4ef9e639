"""``encoderlab-export RUN_DIR OUT [--format hf|encoderlab]``: a run directory → a loadable model directory.

``--format hf`` (default) writes what ``transformers`` loads: ``BertForMaskedLM`` for a pre-training run
(``AutoModel`` and ``AutoModelForMaskedLM``), ``BertForSequenceClassification`` with ``id2label`` for a
fine-tuned classifier (``AutoModelForSequenceClassification``), ``BertModel`` with ``--encoder-only``.
``--format encoderlab`` writes our own encoder export (fine-tuned encoder weights included).

An entry point, like ``train.py``: it reads the run's saved Hydra config as plain YAML.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

from encoderlab.errors import UserError
from encoderlab.files import atomic_directory
from encoderlab.models.encoder import Encoder, EncoderConfig
from encoderlab.training import hf
from encoderlab.training.export import MLM_HEAD_FILE, export_encoder, load_encoder, read_export_config
from encoderlab.training.weights import load_strict, strip_wrapper_prefixes

CHECKPOINT = Path("checkpoints") / "last.ckpt"
LABEL_MAP = "label_map.json"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_RUNTIME = Path(".hydra") / "hydra.yaml"
ENCODER_DIR = "encoder"
CLASSIFIER_FIX = "fine-tune with head.hidden_layers=2 head.pooling=cls, or export with --encoder-only"


def _target(section) -> str:
    return str(section.get("_target_", "")) if isinstance(section, dict) else ""


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(
            f"cannot read {path} ({type(err).__name__}) — is this a complete run directory?"
        ) from None
    return data if isinstance(data, dict) else {}


def _load_checkpoint(run_dir: Path) -> dict[str, torch.Tensor]:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise UserError(
            f"{path} not found — export a finished fine-tuning run (it saves checkpoints/last.ckpt)"
        )
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


def _split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _resolve_path(value: str, run_dir: Path) -> Path:
    """A path from the run's config: as given, else relative to the directory training was launched from."""
    path = Path(value)
    if path.is_absolute() or path.exists() or not (run_dir / HYDRA_RUNTIME).is_file():
        return path
    cwd = (_read_yaml(run_dir / HYDRA_RUNTIME).get("hydra") or {}).get("runtime", {}).get("cwd")
    return Path(cwd) / path if cwd else path


def _encoder_source(run_dir: Path, cfg: dict) -> tuple[EncoderConfig, Path]:
    """The encoder's config and tokenizer directory: the run's ``encoder/`` export, else its ``init``."""
    if (run_dir / ENCODER_DIR).is_dir():
        return read_export_config(run_dir / ENCODER_DIR), run_dir / ENCODER_DIR
    init = cfg.get("init") or {}
    target = _target(init)
    if target.endswith("FromExport") and init.get("path"):
        path = _resolve_path(str(init["path"]), run_dir)
        return read_export_config(path), path
    if target.endswith("FromHuggingFace"):
        if init.get("package"):
            path = hf.package_model_dir(str(init["package"]))
        else:
            path = _resolve_path(str(init.get("path")), run_dir)
        return hf.config_from_hf(path / hf.CONFIG_FILE), path
    raise UserError(
        f"{run_dir} has no {ENCODER_DIR}/ export and its encoder was not initialised from one, so its shape "
        "and tokenizer are unknown — export a run that saved encoder/ (or was started with init=pretrained/hf)"
    )


def _label_names(run_dir: Path) -> list[str] | None:
    path = run_dir / LABEL_MAP
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


def _classifier_parts(run_dir: Path, cfg: dict) -> tuple[Encoder, Path, dict, list[str] | None]:
    head_cfg = cfg.get("head") or {}
    pooling, hidden_layers = head_cfg.get("pooling", "cls"), head_cfg.get("hidden_layers", 1)
    if pooling != "cls" or hidden_layers != 2:
        raise UserError(
            f"the run's classifier (pooling={pooling}, hidden_layers={hidden_layers}) has no exact Hugging "
            "Face equivalent — BertForSequenceClassification is a tanh pooler on [CLS] plus one linear layer; "
            + CLASSIFIER_FIX
        )
    state = _load_checkpoint(run_dir)
    config, tokenizer_dir = _encoder_source(run_dir, cfg)
    encoder = Encoder(config)
    load_strict(encoder, _split(state, "encoder."), source=f"{run_dir / CHECKPOINT} (encoder.*)")
    head = _split(state, "head.")
    if "dense.weight" not in head:
        raise UserError(
            f"{run_dir / CHECKPOINT} has no head.dense (hidden_layers=2 head) — " + CLASSIFIER_FIX
        )
    return encoder, tokenizer_dir, head, _label_names(run_dir)


def _mlm_head(run_dir: Path) -> dict[str, torch.Tensor] | None:
    path = run_dir / MLM_HEAD_FILE
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(
            f"cannot read {path} ({err}) — the file is damaged; export with --encoder-only"
        ) from None


def export_run(
    run_dir: str | Path, out: str | Path, fmt: str = "hf", encoder_only: bool = False, force: bool = False
) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir} — pass a training run's output directory")
    if out.exists() and not force:
        raise UserError(f"{out} already exists — choose another OUT or pass --force to replace it")
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise UserError(f"{out} is inside the run directory — write the export elsewhere")
    cfg = _read_yaml(run_dir / HYDRA_CONFIG) if (run_dir / HYDRA_CONFIG).is_file() else {}
    task = _target(cfg.get("task"))
    if not task and (run_dir / LABEL_MAP).is_file():
        raise UserError(
            f"{run_dir / HYDRA_CONFIG} not found — a fine-tuning run's export needs its saved config"
        )
    mlm_head = classifier = labels = None
    if task.endswith("SequenceClassificationTask"):
        if encoder_only:
            config, tokenizer_dir = _encoder_source(run_dir, cfg)
            encoder = Encoder(config)
            load_strict(
                encoder, _split(_load_checkpoint(run_dir), "encoder."), source=str(run_dir / CHECKPOINT)
            )
        else:
            encoder, tokenizer_dir, classifier, labels = _classifier_parts(run_dir, cfg)
    elif task.endswith("MaskedLMTask") or not task:
        if not (run_dir / ENCODER_DIR).is_dir():
            raise UserError(f"{run_dir} has no {ENCODER_DIR}/ export — is it a finished pre-training run?")
        encoder, tokenizer_dir = load_encoder(run_dir / ENCODER_DIR), run_dir / ENCODER_DIR
        mlm_head = None if encoder_only else _mlm_head(run_dir)
    else:
        raise UserError(
            f"task {task} has no Hugging Face head that encoderlab-export writes (supported: MaskedLMTask, "
            "SequenceClassificationTask) — pass --encoder-only to export the encoder alone"
        )
    if fmt == "encoderlab":
        return export_encoder(encoder, tokenizer_dir, out)  # atomic itself; heads are never part of it
    with atomic_directory(out) as tmp:
        hf.save_hf(tmp, encoder, tokenizer_dir, mlm_head=mlm_head, classifier=classifier, label_names=labels)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="encoderlab-export",
        description="Export a training run's model (Hugging Face or encoderlab format).",
    )
    parser.add_argument("run_dir", help="a run directory (outputs/...): encoder/, checkpoints/, .hydra/")
    parser.add_argument("out", help="directory to create")
    parser.add_argument("--format", choices=("hf", "encoderlab"), default="hf", dest="fmt")
    parser.add_argument("--encoder-only", action="store_true", help="export the encoder alone (BertModel)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.run_dir, args.out, args.fmt, encoder_only=args.encoder_only, force=args.force)
    except UserError as err:
        print(f"encoderlab-export: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
