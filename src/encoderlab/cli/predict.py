"""``encoderlab-predict RUN_DIR --input FILE --output preds.jsonl``: label texts with a fine-tuned classifier.

The run directory supplies everything: the encoder and head from ``checkpoints/last.ckpt`` (read
tensors-only), the tokenizer the run trained with, its label map and ``data.max_seq_len``. Input is one
text per line (``.txt``), a table (``.csv`` / ``.tsv`` / ``.jsonl``, column ``--text-column``, by default
the run's ``data.text_column``), or ``-`` for stdin (``--format`` says which; text lines by default).
Each output line is a JSON object::

    {"text": "...", "label": "positive", "probabilities": {"negative": 0.03, "positive": 0.97}}

Sentence-pair runs (``data.text_pair_column``) read a table with both columns (``--text-pair-column``,
by default the run's own) and add ``"text_pair"``; regression runs (``task=regress``) write
``{"text": ..., "text_pair": ..., "score": 3.8}``; multi-label runs (``task=multilabel``) write every label
whose probability reaches the run's ``task.threshold`` (``"labels": [...]``, ``"probabilities"`` one
sigmoid per label); token-classification runs (``task=tag``) read sentences
(text lines split on whitespace, or a JSON list of words in column ``tokens``) and write each word's tag
and the entities. What a row holds is the run's task's own business (``prediction_rows``); this command
reads inputs, batches them and writes rows.

Texts are encoded exactly as in training (``[CLS] ... [SEP]``, truncated to ``data.max_seq_len``; a run
trained with ``data.long_documents=window`` reads each text in the same overlapping windows and still writes
one row per text) and run in batches of ``--batch-size`` texts with per-batch padding. Output goes to a temporary file renamed into place
at the end, so a failure never leaves half a file; an existing ``--output`` is only replaced with
``--force``. ``--output -`` writes to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch

from encoderlab.cli.errors import run_command
from encoderlab.cli.text_input import FORMATS, STDIO, input_format, read_texts
from encoderlab.devices import resolve_device
from encoderlab.errors import UserError
from encoderlab.files import atomic_file
from encoderlab.run.rebuild import TrainedModel, rebuild
from encoderlab.validate import at_least, check


def batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------------------------------- model


class Predictor:
    """Inputs → JSON rows with a run's own task: its data kind encodes them exactly as training did, its
    ``predict_step`` runs the model and its ``prediction_rows`` say what the outputs mean."""

    def __init__(self, model: TrainedModel, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.task = model.task.to(device)
        if getattr(model.data_class, "prediction_batch", None) is None:
            # Tasks that do not predict (pre-training, cloze) say why in their own line.
            self.task.prediction_rows([], torch.empty(0))
            raise UserError(f"{model.run} was trained on data that encoderlab-predict cannot encode")

    @torch.inference_mode()
    def outputs(self, items: list) -> torch.Tensor:
        """``predict_step``'s outputs for ``items`` (texts, ``(text, pair)`` tuples or word lists), on the CPU."""
        model = self.model
        # A run that read long documents in windows encodes each input in the same windows: one row per input.
        windows = {"windows": model.windows} if model.windows is not None else {}
        batch = model.data_class.prediction_batch(model.tokenizer, model.max_seq_len, items, **windows)
        return self.task.predict_step({k: v.to(self.device) for k, v in batch.items()}, 0).cpu()

    def rows(self, items: Iterable, batch_size: int) -> Iterator[dict]:
        for chunk in batches(items, batch_size):
            if self.model.data_class.prediction_input == "words":
                chunk = [words_of(item) for item in chunk]
                inputs = [{} for _ in chunk]  # the task's rows carry the words (tokens)
            else:
                inputs = [
                    {"text": t[0], "text_pair": t[1]} if isinstance(t, tuple) else {"text": t} for t in chunk
                ]
            for given, row in zip(inputs, self.task.prediction_rows(chunk, self.outputs(chunk)), strict=True):
                yield {**given, **row}


def words_of(value) -> list[str]:
    """A JSON list of words as is, a text split on whitespace."""
    return [str(w) for w in value] if isinstance(value, list) else str(value).split()


# ------------------------------------------------------------------------------------------ output


@contextmanager
def atomic_output(path: str, force: bool) -> Iterator[TextIO]:
    """stdout for ``-``; else a temporary file beside ``path`` that replaces it only on success."""
    if path == STDIO:
        yield sys.stdout
        sys.stdout.flush()
        return
    out = Path(path)
    with atomic_file(out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
        if out.exists() and not force:  # appeared while we worked
            raise UserError(f"{out} already exists — choose another --output or pass --force to replace it")


def check_output(path: str, force: bool, input_path: str) -> None:
    if path == STDIO:
        return
    out = Path(path)
    if out.is_dir():
        raise UserError(f"--output {out} is a directory — pass a file name such as preds.jsonl")
    if out.exists() and not force:
        raise UserError(f"{out} already exists — choose another --output or pass --force to replace it")
    if input_path != STDIO and out.exists() and out.resolve() == Path(input_path).resolve():
        raise UserError(f"--output {out} is the input file — write the predictions elsewhere")
    if not out.parent.is_dir():
        raise UserError(f"directory {out.parent} does not exist — create it or choose another --output")


def predict(
    run_dir: str | Path,
    input_path: str,
    output: str = STDIO,
    text_column: str | None = None,
    fmt: str | None = None,
    batch_size: int = 32,
    device: str = "auto",
    force: bool = False,
    stdin: TextIO | None = None,
    text_pair_column: str | None = None,
) -> int:
    """Write one prediction per input text (or pair); returns the number written.

    Columns default to the run's own ``data.text_column`` / ``data.text_pair_column`` (else ``text``).
    """
    check("--batch-size", batch_size, at_least(1))
    fmt = input_format(input_path, fmt)
    if input_path != STDIO and not Path(input_path).is_file():
        raise UserError(
            f"input file not found: {input_path} — pass an existing file with --input (or - for stdin)"
        )
    check_output(output, force, input_path)
    model = rebuild(run_dir)
    predictor = Predictor(model, resolve_device(device))
    if predictor.model.data_class.prediction_input == "words":
        items = read_texts(input_path, fmt, text_column or "tokens", stdin=stdin, keep_lists=True)
        return _write_rows(predictor.rows(items, batch_size), output, force, input_path)
    if text_pair_column and not model.text_pair_column:
        raise UserError(
            f"--text-pair-column {text_pair_column} given but {run_dir} was trained on single texts — drop it"
        )
    text_column = text_column or model.text_column or "text"
    pair_column = (text_pair_column or model.text_pair_column) if model.text_pair_column else None
    texts = read_texts(input_path, fmt, text_column, stdin=stdin, pair_column=pair_column)
    return _write_rows(predictor.rows(texts, batch_size), output, force, input_path)


def _write_rows(rows: Iterable[dict], output: str, force: bool, input_path: str) -> int:
    count = 0
    with atomic_output(output, force) as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        if count == 0:
            raise UserError(
                f"{'stdin' if input_path == STDIO else input_path} has no texts — nothing to predict"
            )
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="encoderlab-predict",
        description="Label texts (or text pairs) with a fine-tuned classification or regression run "
        "(JSON lines: text, label, probabilities; or text, text_pair, score), or tag the words of sentences "
        "with a token-classification run (tokens, tags, entities).",
    )
    parser.add_argument("run_dir", help="a fine-tuning run directory (outputs/.../runs/<time>)")
    parser.add_argument(
        "--input",
        "-i",
        required=True,
        help="a .txt (one text per line), .csv, .tsv or .jsonl file; - for stdin",
    )
    parser.add_argument(
        "--output", "-o", default=STDIO, help="JSON-lines file to write; - for stdout (default)"
    )
    parser.add_argument(
        "--text-column",
        default=None,
        help="column / field holding the text (csv, tsv, jsonl); default: the run's data.text_column, else "
        "text (tagging runs: tokens, a JSON list of words or a text)",
    )
    parser.add_argument(
        "--text-pair-column",
        default=None,
        help="sentence-pair runs: column / field holding the second text; default: the run's data.text_pair_column",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        dest="fmt",
        help="input format (default: by extension; stdin: txt)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--force", action="store_true", help="replace --output if it exists")
    args = parser.parse_args(argv)

    def body() -> None:
        count = predict(
            args.run_dir,
            args.input,
            args.output,
            text_column=args.text_column,
            fmt=args.fmt,
            batch_size=args.batch_size,
            device=args.device,
            force=args.force,
            text_pair_column=args.text_pair_column,
        )
        if args.output != STDIO:
            print(f"wrote {count} predictions to {args.output}", file=sys.stderr)

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
