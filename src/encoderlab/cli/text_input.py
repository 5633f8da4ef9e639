"""The texts a command reads: one per line (``.txt``), or a column of a ``.csv`` / ``.tsv`` / ``.jsonl`` table,
from a file or ``-`` (stdin); shared by ``encoderlab-predict`` and ``encoderlab-embed``.

Texts are streamed, not held in memory. Blank lines of a text file are separators, not texts; TSV is read
with quoting off, as training reads it. Every problem (missing file or column, bad JSON, not UTF-8) is a
one-line ``UserError``.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from encoderlab.data.readers import parse_jsonl_line
from encoderlab.errors import UserError

FORMATS = ("txt", "csv", "tsv", "jsonl")
EXTENSIONS = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
STDIO = "-"

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


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


TEXT_COLUMN_HINT = "pass --text-column (and --text-pair-column) with one of them"


def _table_rows(
    stream: TextIO,
    fmt: str,
    columns: list[str],
    name: str,
    keep_lists: bool = False,
    hint: str = TEXT_COLUMN_HINT,
) -> Iterator[tuple]:
    if fmt == "jsonl":
        for n, line in enumerate(stream, 1):
            if not line.strip():
                continue
            row = parse_jsonl_line(line, n, name)
            for column in columns:
                if column not in row:
                    raise UserError(
                        f"line {n} of {name} has no '{column}' field (fields: {', '.join(row)}) — {hint}"
                    )
            yield tuple(_cell(row[c], keep_lists) for c in columns)
        return
    # TSV is read with quoting off, as training reads it (GLUE TSVs hold unbalanced quotes).
    delimiter, quoting = ("\t", csv.QUOTE_NONE) if fmt == "tsv" else (",", csv.QUOTE_MINIMAL)
    reader = csv.reader(stream, delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    for column in columns:
        if column not in header:
            raise UserError(f"column '{column}' not found in {name} (columns: {', '.join(header)}) — {hint}")
    indices = [header.index(c) for c in columns]
    for values in reader:
        if not values or (len(values) == 1 and not values[0].strip()):
            continue
        yield tuple(values[i] if i < len(values) else "" for i in indices)


def _cell(value, keep_lists: bool):
    """A JSON value as text; a list of words stays a list when asked (sentences for a tagger)."""
    if keep_lists and isinstance(value, list):
        return value
    return "" if value is None else str(value)


def _texts(
    stream: TextIO, fmt: str, column: str, pair_column: str | None, name: str, keep_lists: bool = False
) -> Iterator:
    if fmt == "txt":
        if pair_column:
            raise UserError(
                f"{name}: a sentence-pair run needs both texts of each pair — give a .csv, .tsv or .jsonl "
                f"with columns '{column}' and '{pair_column}'"
            )
        yield from _text_lines(stream)
        return
    rows = _table_rows(stream, fmt, [column, pair_column] if pair_column else [column], name, keep_lists)
    yield from (rows if pair_column else (row[0] for row in rows))


def read_texts(
    path: str,
    fmt: str,
    column: str,
    stdin: TextIO | None = None,
    pair_column: str | None = None,
    keep_lists: bool = False,
) -> Iterator[str | tuple[str, str] | list]:
    """The input's texts (``(text, text_pair)`` with ``pair_column``; JSON lists kept with ``keep_lists``),
    streamed (not held in memory)."""
    with _opened(path, fmt, stdin) as (stream, name):
        yield from _texts(stream, fmt, column, pair_column, name, keep_lists)


def read_columns(
    path: str, fmt: str, columns: list[str], hint: str, stdin: TextIO | None = None
) -> Iterator[tuple]:
    """One tuple of text values per row of a table input (csv, tsv, jsonl), in the order of ``columns``;
    ``hint`` ends the error of a missing column (which options name them)."""
    with _opened(path, fmt, stdin) as (stream, name):
        if fmt == "txt":
            raise UserError(
                f"{name} is one text per line, it has no columns ({', '.join(columns)}) — give a .csv, .tsv "
                "or .jsonl file (or --format)"
            )
        yield from _table_rows(stream, fmt, columns, name, hint=hint)


@contextmanager
def _opened(path: str, fmt: str, stdin: TextIO | None) -> Iterator[tuple[TextIO, str]]:
    """(stream, name to report) of ``path``, ``-`` being stdin; a missing or non-UTF-8 file is a UserError."""
    if path == STDIO:
        if stdin is None:
            stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
        yield stdin, "stdin"
        return
    p = Path(path)
    if not p.is_file():
        raise UserError(f"input file not found: {p} — pass an existing file with --input (or - for stdin)")
    try:
        with open(p, encoding="utf-8-sig", newline="" if fmt in ("csv", "tsv") else None) as f:
            yield f, path
    except UnicodeDecodeError:
        raise UserError(f"{p} is not valid UTF-8 — re-encode the file as UTF-8") from None
