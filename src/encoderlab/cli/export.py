"""``encoderlab-export RUN_DIR OUT [--format hf|encoderlab]``: a run directory → a loadable model directory.

``--format hf`` (default) writes what ``transformers`` loads: ``BertForMaskedLM`` for a run with an MLM
head (``AutoModel`` and ``AutoModelForMaskedLM``), ``BertForSequenceClassification`` with ``id2label`` for a
fine-tuned classifier (``AutoModelForSequenceClassification``), ``BertModel`` with ``--encoder-only``.
``--format encoderlab`` writes our own encoder export (fine-tuned encoder weights included).

The model comes back through :func:`encoderlab.run.rebuild.rebuild` (the run's ``task.json`` and
checkpoint); which Hugging Face head it maps to is :func:`encoderlab.formats.hf.head_tensors`' business.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from encoderlab.cli.errors import run_command
from encoderlab.errors import UserError
from encoderlab.files import atomic_directory
from encoderlab.formats import hf
from encoderlab.formats.export import export_encoder
from encoderlab.run.rebuild import rebuild


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
    model = rebuild(run_dir, merge_adapters=True)
    encoder = model.task.encoder
    if fmt == "encoderlab":
        return export_encoder(encoder, model.tokenizer_dir, out)  # atomic itself; heads are never part of it
    heads = {} if encoder_only else hf.head_tensors(model.task)
    with atomic_directory(out) as tmp:
        hf.save_hf(tmp, encoder, model.tokenizer_dir, **heads)
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

    def body() -> None:
        out = export_run(args.run_dir, args.out, args.fmt, encoder_only=args.encoder_only, force=args.force)
        print(f"wrote {out}")

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
