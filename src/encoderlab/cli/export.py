"""``encoderlab-export RUN_DIR OUT [--format hf|encoderlab]``: a run directory → a loadable model directory.

``--format hf`` (default) writes what ``transformers`` loads: ``BertForMaskedLM`` for a pre-training run
(``AutoModel`` and ``AutoModelForMaskedLM``), ``BertForSequenceClassification`` with ``id2label`` for a
fine-tuned classifier (``AutoModelForSequenceClassification``), ``BertModel`` with ``--encoder-only``.
``--format encoderlab`` writes our own encoder export (fine-tuned encoder weights included).

An entry point, like ``train.py``: it reads the run's saved Hydra config as plain YAML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from encoderlab.errors import UserError
from encoderlab.files import atomic_directory
from encoderlab.formats import hf
from encoderlab.formats.export import MLM_HEAD_FILE, export_encoder, load_encoder
from encoderlab.models.encoder import Encoder
from encoderlab.run.rebuild import (
    CHECKPOINT,
    ENCODER_DIR,
    HYDRA_CONFIG,
    LABEL_MAP,
    fine_tuned_encoder,
    label_names,
    load_checkpoint_state,
    read_run_config,
    split_state,
    target,
)

CLASSIFIER_FIX = "fine-tune with head.hidden_layers=2 head.pooling=cls, or export with --encoder-only"


def _classifier_parts(run_dir: Path, cfg: dict) -> tuple[Encoder, Path, dict, list[str] | None]:
    head_cfg = cfg.get("head") or {}
    pooling, hidden_layers = head_cfg.get("pooling", "cls"), head_cfg.get("hidden_layers", 1)
    if pooling != "cls" or hidden_layers != 2:
        raise UserError(
            f"the run's classifier (pooling={pooling}, hidden_layers={hidden_layers}) has no exact Hugging "
            "Face equivalent — BertForSequenceClassification is a tanh pooler on [CLS] plus one linear layer; "
            + CLASSIFIER_FIX
        )
    state = load_checkpoint_state(run_dir)
    encoder, tokenizer_dir = fine_tuned_encoder(run_dir, cfg, state, merge_adapters=True)
    head = split_state(state, "head.")
    if "dense.weight" not in head:
        raise UserError(
            f"{run_dir / CHECKPOINT} has no head.dense (hidden_layers=2 head) — " + CLASSIFIER_FIX
        )
    return encoder, tokenizer_dir, head, label_names(run_dir)


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
    cfg = read_run_config(run_dir)
    task = target(cfg.get("task"))
    if not task and (run_dir / LABEL_MAP).is_file():
        raise UserError(
            f"{run_dir / HYDRA_CONFIG} not found — a fine-tuning run's export needs its saved config"
        )
    mlm_head = classifier = labels = None
    if task.endswith("SequenceClassificationTask"):
        if encoder_only:
            encoder, tokenizer_dir = fine_tuned_encoder(
                run_dir, cfg, load_checkpoint_state(run_dir), merge_adapters=True
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
