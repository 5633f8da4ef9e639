"""``encoderlab-export RUN_DIR OUT [--format hf|encoderlab|sentence-transformers]``: a run directory → a loadable
model directory.

``--format hf`` (default) writes what ``transformers`` loads: ``BertForMaskedLM`` for a run with an MLM
head (``AutoModel`` and ``AutoModelForMaskedLM``), ``BertForSequenceClassification`` with ``id2label`` for a
fine-tuned classifier (``AutoModelForSequenceClassification``), ``BertModel`` with ``--encoder-only``.
``--format encoderlab`` writes our own encoder export (fine-tuned encoder weights included).
``--format sentence-transformers`` writes the encoder with a pooling as ``SentenceTransformer`` loads it: the
run's own pooling (a contrastive run's head, a classifier's pooling; else mean, last for a causal encoder), or ``--pooling`` /
``--normalize``.

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
from encoderlab.formats.sentence_transformers import POOLING_MODES, export_sentence_transformers, head_pooling
from encoderlab.run.rebuild import rebuild


def export_run(
    run_dir: str | Path,
    out: str | Path,
    fmt: str = "hf",
    encoder_only: bool = False,
    force: bool = False,
    pooling: str | None = None,
    normalize: bool | None = None,
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
    if fmt == "sentence-transformers":
        own_pooling, own_normalize = head_pooling(model.task.head.settings(), encoder)
        return export_sentence_transformers(  # atomic itself
            encoder,
            model.tokenizer_dir,
            out,
            pooling=pooling or own_pooling,
            normalize=own_normalize if normalize is None else normalize,
            max_seq_len=model.max_seq_len,
        )
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
    parser.add_argument(
        "--format", choices=("hf", "encoderlab", "sentence-transformers"), default="hf", dest="fmt"
    )
    parser.add_argument(
        "--pooling",
        choices=tuple(POOLING_MODES),
        help="sentence-transformers: pooling (default: the run's own)",
    )
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        help="sentence-transformers: unit-length embeddings (default: the run's own, else off)",
    )
    parser.add_argument("--encoder-only", action="store_true", help="export the encoder alone (BertModel)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)

    def body() -> None:
        out = export_run(
            args.run_dir,
            args.out,
            args.fmt,
            encoder_only=args.encoder_only,
            force=args.force,
            pooling=args.pooling,
            normalize=args.normalize,
        )
        print(f"wrote {out}")

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
