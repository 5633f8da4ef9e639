"""``encoderlab-predict RUN_DIR --input FILE --output preds.jsonl``: label texts with a fine-tuned classifier.

The run directory supplies everything: the encoder and head from ``checkpoints/last.ckpt`` (read
tensors-only), the tokenizer the run trained with, its label map and ``data.max_seq_len``. Input is one
text per line (``.txt``), a table (``.csv`` / ``.tsv`` / ``.jsonl``, column ``--text-column``), or ``-`` for
stdin (``--format`` says which; text lines by default). Each output line is a JSON object::

    {"text": "...", "label": "positive", "probabilities": {"negative": 0.03, "positive": 0.97}}

Texts are encoded exactly as in training (``[CLS] ... [SEP]``, truncated to ``data.max_seq_len``) and run
in batches of ``--batch-size`` with per-batch padding. Output goes to a temporary file renamed into place
at the end, so a failure never leaves half a file; an existing ``--output`` is only replaced with
``--force``. ``--output -`` writes to stdout.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch
from tokenizers import Tokenizer

from encoderlab.data.collators import PaddingCollator
from encoderlab.data.readers import parse_jsonl_line
from encoderlab.data.tokenizer import special_token_ids
from encoderlab.errors import UserError
from encoderlab.files import atomic_file
from encoderlab.training.run_loading import RunClassifier, load_classifier

FORMATS = ("txt", "csv", "tsv", "jsonl")
EXTENSIONS = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
STDIO = "-"

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


# ------------------------------------------------------------------------------------------- input


def input_format(path: str, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    if path == STDIO:
        return "txt"
    ext = Path(path).suffix.lower()
    if ext not in EXTENSIONS:
        raise UserError(
            f"cannot tell the format of {path} from '{ext or 'no extension'}' — use .txt, .csv, .tsv or "
            "JSONL, or pass --format"
        )
    return EXTENSIONS[ext]


def _text_lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        line = line.rstrip("\r\n")
        if line.strip():  # blank lines are separators, not texts
            yield line


def _table_rows(stream: TextIO, fmt: str, column: str, name: str) -> Iterator[str]:
    hint = "pass --text-column with one of them"
    if fmt == "jsonl":
        for n, line in enumerate(stream, 1):
            if not line.strip():
                continue
            row = parse_jsonl_line(line, n, name)
            if column not in row:
                raise UserError(
                    f"line {n} of {name} has no '{column}' field (fields: {', '.join(row)}) — {hint}"
                )
            value = row[column]
            yield "" if value is None else str(value)
        return
    # TSV is read with quoting off, as training reads it (GLUE TSVs hold unbalanced quotes).
    delimiter, quoting = ("\t", csv.QUOTE_NONE) if fmt == "tsv" else (",", csv.QUOTE_MINIMAL)
    reader = csv.reader(stream, delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    if column not in header:
        raise UserError(f"column '{column}' not found in {name} (columns: {', '.join(header)}) — {hint}")
    index = header.index(column)
    for values in reader:
        if not values or (len(values) == 1 and not values[0].strip()):
            continue
        yield values[index] if index < len(values) else ""


def read_texts(path: str, fmt: str, column: str, stdin: TextIO | None = None) -> Iterator[str]:
    """The input's texts, streamed (the file is not held in memory)."""
    name = "stdin" if path == STDIO else path
    if path == STDIO:
        stream = stdin if stdin is not None else io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
        yield from _text_lines(stream) if fmt == "txt" else _table_rows(stream, fmt, column, name)
        return
    p = Path(path)
    if not p.is_file():
        raise UserError(f"input file not found: {p} — pass an existing file with --input (or - for stdin)")
    try:
        with open(p, encoding="utf-8-sig", newline="" if fmt in ("csv", "tsv") else None) as f:
            yield from _text_lines(f) if fmt == "txt" else _table_rows(f, fmt, column, name)
    except UnicodeDecodeError:
        raise UserError(f"{p} is not valid UTF-8 — re-encode the file as UTF-8") from None


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
    """Text → probabilities with a run's classifier, encoding exactly as training did."""

    def __init__(self, model: RunClassifier, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.encoder = model.encoder.to(device)
        self.head = model.head.to(device)
        # A copy: truncation must not leak into the loaded tokenizer (as in the token-id cache).
        self.tokenizer = Tokenizer.from_str(model.tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(model.max_seq_len)
        self.collate = PaddingCollator(special_token_ids(self.tokenizer)["pad"])

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """[len(texts), num_labels] softmax probabilities (float32, on the CPU)."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        batch = self.collate(
            [
                {
                    "input_ids": torch.tensor(e.ids, dtype=torch.long),
                    "token_type_ids": torch.zeros(len(e.ids), dtype=torch.long),
                    "labels": 0,
                }
                for e in encodings
            ]
        )
        mask = batch["attention_mask"].to(self.device)
        hidden = self.encoder(
            batch["input_ids"].to(self.device), mask, batch["token_type_ids"].to(self.device)
        )
        return torch.softmax(self.head(hidden, mask).float(), dim=-1).cpu()

    def rows(self, texts: Iterable[str], batch_size: int) -> Iterator[dict]:
        names = self.model.label_names
        for chunk in batches(texts, batch_size):
            probs = self.probabilities(chunk)
            best = probs.argmax(-1).tolist()
            for text, p, i in zip(chunk, probs.tolist(), best, strict=True):
                yield {"text": text, "label": names[i], "probabilities": dict(zip(names, p, strict=True))}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} — pass --device cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} but no CUDA device is available — pass --device cpu")
    return device


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
    text_column: str = "text",
    fmt: str | None = None,
    batch_size: int = 32,
    device: str = "auto",
    force: bool = False,
    stdin: TextIO | None = None,
) -> int:
    """Write one prediction per input text; returns the number written."""
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size} must be at least 1")
    fmt = input_format(input_path, fmt)
    if input_path != STDIO and not Path(input_path).is_file():
        raise UserError(
            f"input file not found: {input_path} — pass an existing file with --input (or - for stdin)"
        )
    check_output(output, force, input_path)
    model = load_classifier(run_dir)
    if model.text_pair_column:
        raise UserError(
            f"{run_dir} classifies text pairs (data.text_pair_column={model.text_pair_column}); "
            "encoderlab-predict labels single texts — use a single-text classification run"
        )
    predictor = Predictor(model, resolve_device(device))
    texts = read_texts(input_path, fmt, text_column, stdin=stdin)
    count = 0
    with atomic_output(output, force) as out:
        for row in predictor.rows(texts, batch_size):
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
        description="Label texts with a fine-tuned classification run (JSON lines: text, label, probabilities).",
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
        "--text-column", default="text", help="column / field holding the text (csv, tsv, jsonl)"
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
    try:
        count = predict(
            args.run_dir,
            args.input,
            args.output,
            text_column=args.text_column,
            fmt=args.fmt,
            batch_size=args.batch_size,
            device=args.device,
            force=args.force,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.output != STDIO:
        print(f"wrote {count} predictions to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
