"""``encoderlab-embed SOURCE --input FILE --output vectors.npy``: one vector per text with a trained encoder.

SOURCE is an encoder export, a pre-training or fine-tuned run directory, a Hugging Face model directory or
``minilm`` (:mod:`encoderlab.embedding.source`). Input is one text per line (``.txt``), or the column
``--column`` of a ``.csv`` / ``.tsv`` / ``.jsonl`` table (``-``: stdin), read as ``encoderlab-predict`` reads
it. ``--id-column`` names a column whose values identify the rows. The output's extension picks the format
(``.npy``, ``.jsonl``, ``.parquet``: :mod:`encoderlab.embedding.output`); ``<output>.json`` beside it records
how the vectors were made. Pooling, normalization and the longest input default to the source's own
(docs/embeddings.md). ``--windows`` (``mean`` or ``max``) reads long texts whole, in overlapping windows of
``--max-seq-len`` tokens (``--window-stride``, ``--max-windows``; docs/tasks.md), instead of truncating them,
and still writes one vector per text; the record notes the windows. Every file is written to a temporary file and renamed into place at the end; an
existing output is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from encoderlab.cli.errors import run_command
from encoderlab.cli.text_input import FORMATS, STDIO, input_format, read_columns, read_texts
from encoderlab.data.windows import DEFAULT_MAX_WINDOWS, Windows
from encoderlab.embedding import Embedder, EmbeddingRecord
from encoderlab.embedding.convention import POOLINGS
from encoderlab.embedding.output import OutputFiles, check_ids, check_output, save_vectors
from encoderlab.embedding.windows import WINDOW_POOLINGS, encode_windows
from encoderlab.errors import UserError
from encoderlab.validate import at_least, check, one_of

COLUMN_HINT = "pass --column (and --id-column) with one of them"


def embed_file(
    source: str,
    input_path: str,
    output: str,
    column: str = "text",
    fmt: str | None = None,
    id_column: str | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    batch_size: int = 32,
    max_seq_len: int | None = None,
    device: str = "cpu",
    force: bool = False,
    stdin: TextIO | None = None,
    progress: bool = True,
    windows: str | None = None,
    window_stride: int | None = None,
    max_windows: int | None = DEFAULT_MAX_WINDOWS,
) -> tuple[OutputFiles, EmbeddingRecord]:
    """Embed every text of ``input_path`` with ``source`` and write the vectors to ``output``: the files
    written and their record. ``windows`` (``mean`` or ``max``) reads each text whole in overlapping windows
    of ``max_seq_len`` tokens, a new one every ``window_stride`` tokens, and pools their vectors so."""
    # Everything that can be checked without the model fails before it loads.
    check("--batch-size", batch_size, at_least(1))
    check("--pooling", pooling, one_of(*POOLINGS), optional=True)
    check("--max-seq-len", max_seq_len, at_least(2), optional=True)
    check("--windows", windows, one_of(*WINDOW_POOLINGS), optional=True)
    check("--window-stride", window_stride, at_least(1), optional=True)
    check("--max-windows", max_windows, at_least(1), optional=True)
    if window_stride is not None and windows is None:
        raise UserError("--window-stride goes with --windows — add --windows (mean or max) or drop it")
    fmt = input_format(input_path, fmt)
    if input_path != STDIO and not Path(input_path).is_file():
        raise UserError(
            f"input file not found: {input_path} — pass an existing file with --input (or - for stdin)"
        )
    files = check_output(output, force, with_ids=id_column is not None, input_path=input_path)
    texts, ids = read_input(input_path, fmt, column, id_column, stdin)
    if files.ids is not None:
        check_ids(ids)
    embedder = Embedder(source, device=device)
    settings = embedder.settings(pooling, normalize, max_seq_len)
    if windows is None:
        vectors = embedder.encode(
            texts, batch_size, settings.pooling, settings.normalize, settings.max_seq_len, progress
        )
        record = embedder.record(settings, len(vectors))
    else:
        tokenizer = embedder.source.tokenizer
        vectors = encode_windows(
            embedder.encoder,
            tokenizer,
            texts,
            settings.max_seq_len,
            window_stride,
            max_windows,
            pooling=settings.pooling,
            window_pooling=windows,
            normalize=settings.normalize,
            batch_size=batch_size,
            stride_key="--window-stride",
        ).numpy()
        stride = Windows(tokenizer, settings.max_seq_len, window_stride).stride  # as resolved
        record = replace(
            embedder.record(settings, len(vectors)),
            windows={"window_stride": stride, "max_windows": max_windows, "window_pooling": windows},
        )
    return save_vectors(output, vectors, record, ids=ids, force=force), record


def read_input(
    input_path: str, fmt: str, column: str, id_column: str | None, stdin: TextIO | None = None
) -> tuple[list[str], list[str] | None]:
    """(texts, row ids or None) of the input; a UserError when it holds no text."""
    if fmt == "txt" and id_column is None:
        texts, ids = list(read_texts(input_path, fmt, column, stdin=stdin)), None
    else:
        columns = [column] if id_column is None else [column, id_column]
        rows = list(read_columns(input_path, fmt, columns, COLUMN_HINT, stdin=stdin))
        texts = [row[0] for row in rows]
        ids = [row[1] for row in rows] if id_column is not None else None
    if not texts:
        raise UserError(f"{'stdin' if input_path == STDIO else input_path} has no texts — nothing to embed")
    return texts, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="encoderlab-embed",
        description="Turn texts into one vector each with a trained encoder (.npy, .jsonl or .parquet, with "
        "a record of how they were made in <output>.json).",
    )
    parser.add_argument(
        "source",
        help="an encoder export (encoder.json), a pre-training or fine-tuned run directory, a Hugging Face "
        "model directory, or minilm",
    )
    parser.add_argument(
        "--input",
        "-i",
        required=True,
        help="a .txt (one text per line), .csv, .tsv or .jsonl file; - for stdin",
    )
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        help="vectors.npy, vectors.jsonl or vectors.parquet (format by extension)",
    )
    parser.add_argument(
        "--column", "--text-column", default="text", help="column / field holding the text (default: text)"
    )
    parser.add_argument(
        "--format",
        choices=("auto", *FORMATS),
        default="auto",
        dest="fmt",
        help="input format (default auto: by extension; stdin: txt)",
    )
    parser.add_argument(
        "--id-column",
        default=None,
        help="column / field identifying each row (written as the vectors' ids; .npy: <stem>.ids.txt)",
    )
    parser.add_argument(
        "--pooling",
        default=None,
        help="cls, mean, max or last (default: the source's own; docs/embeddings.md)",
    )
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="scale each vector to unit length (default: the source's own)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    parser.add_argument(
        "--max-seq-len",
        type=int,
        default=None,
        help="truncate texts to this many tokens (default: what the source was trained or set up for)",
    )
    parser.add_argument(
        "--windows",
        nargs="?",
        const="mean",
        default=None,
        help="read long texts whole in overlapping windows of --max-seq-len tokens and pool the windows' "
        "vectors: mean (the default with --windows) or max (docs/tasks.md)",
    )
    parser.add_argument(
        "--window-stride",
        type=int,
        default=None,
        help="with --windows: tokens from one window's start to the next (default: half a window)",
    )
    parser.add_argument(
        "--max-windows",
        type=int,
        default=DEFAULT_MAX_WINDOWS,
        help=f"with --windows: windows per text at most, the rest cut (default {DEFAULT_MAX_WINDOWS})",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--force", action="store_true", help="replace --output (and its record) if it exists")
    args = parser.parse_args(argv)

    def body() -> None:
        files, record = embed_file(
            args.source,
            args.input,
            args.output,
            column=args.column,
            fmt=None if args.fmt == "auto" else args.fmt,
            id_column=args.id_column,
            pooling=args.pooling,
            normalize=args.normalize,
            batch_size=args.batch_size,
            max_seq_len=args.max_seq_len,
            device=args.device,
            force=args.force,
            windows=args.windows,
            window_stride=args.window_stride,
            max_windows=args.max_windows,
        )
        print(
            f"wrote {record.count} vectors of {record.dims} dims ({record.pooling} pooling"
            f"{', normalized' if record.normalize else ''}) to {files.vectors}; the record: {files.record}",
            file=sys.stderr,
        )

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
