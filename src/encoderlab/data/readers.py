"""Readers for plain-text corpora and labelled tables (CSV / TSV / JSONL).

Every problem a user can fix (missing file, bad column, bad encoding) raises ``UserError``
with one line naming the file and what to do.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from encoderlab.errors import UserError

_HEADING = re.compile(r"^\s*=+ .* =+\s*$")
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json")

# GLUE rows can hold very long fields; the stdlib default (128 KiB) is too small for some corpora.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file not found: {p} — check the path or set ENCODERLAB_DATA_DIR")
    return p


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes; keys the tokenizer and token caches to the data, not its name."""
    h = hashlib.sha256()
    with open(_check_file(path), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _decode_error(p: Path, err: UnicodeDecodeError, line_start: int) -> UserError:
    return UserError(
        f"{p} is not valid UTF-8 (byte offset {line_start + err.start}) — re-encode the file as UTF-8"
    )


def _bad_utf8(p: Path) -> UserError:
    # Text-mode decoding reports offsets within an internal buffer; rescan by line for the file offset.
    offset = 0
    with open(p, "rb") as f:
        for raw in f:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return _decode_error(p, e, offset)
            offset += len(raw)
    return UserError(f"{p} is not valid UTF-8 — re-encode the file as UTF-8")


def keep_paragraph(line: str) -> bool:
    """False for blank lines and WikiText/WikiExtractor ``= Heading =`` lines."""
    return bool(line.strip()) and not _HEADING.match(line)


def read_corpus(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """Paragraphs of a text file: one per line, skipping blank lines and ``= Heading =`` lines."""
    p = _check_file(path)
    paragraphs: list[str] = []
    offset = 0
    # Read bytes and decode per line so a bad byte is reported with its file offset.
    with open(p, "rb") as f:
        for raw in f:
            if limit is not None and len(paragraphs) >= limit:
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _decode_error(p, e, offset) from None
            offset += len(raw)
            if offset == len(raw) and line.startswith("\ufeff"):
                line = line[1:]
            if keep_paragraph(line):
                paragraphs.append(line.strip())
    if not paragraphs:
        raise UserError(
            f"corpus file has no text: {p} — point data.train_file/data.val_file at a non-empty file"
        )
    return paragraphs


def paragraphs_in_range(path: str | os.PathLike, start: int, end: int) -> Iterator[tuple[str, int]]:
    """(paragraph, bytes read) for each line of ``path`` that starts at a byte offset in ``[start, end)``,
    by ``read_corpus``'s rules (UTF-8, a leading byte-order mark dropped, blank and heading lines skipped).

    ``start`` must be a line start (0, or just after a newline): pieces of one file cut at line starts are
    read in parallel and together yield exactly the file's paragraphs, each once.
    """
    p = _check_file(path)
    with open(p, "rb") as f:
        f.seek(start)
        offset = start
        while offset < end:
            raw = f.readline()
            if not raw:
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _decode_error(p, e, offset) from None
            if offset == 0 and line.startswith("\ufeff"):
                line = line[1:]
            offset += len(raw)
            if keep_paragraph(line):
                yield line.strip(), len(raw)


def line_starts(path: str | os.PathLike, every: int) -> list[int]:
    """Byte offsets that cut ``path`` into pieces of about ``every`` bytes, each at a line start; the last
    offset is the file's size."""
    p = _check_file(path)
    size = p.stat().st_size
    cuts = [0]
    with open(p, "rb") as f:
        for target in range(every, size, every):
            if target <= cuts[-1]:
                continue
            f.seek(target - 1)
            f.readline()  # to the end of the line holding byte target - 1
            if f.tell() < size:
                cuts.append(f.tell())
    return [*dict.fromkeys(cuts), size] if size else [0]


def read_table(path: str | os.PathLike, columns: list[str]) -> dict[str, list]:
    """Read the named columns of a CSV/TSV/JSONL file (format chosen by extension)."""
    p = _check_file(path)
    ext = p.suffix.lower()
    if ext not in TABLE_EXTENSIONS:
        raise UserError(
            f"unsupported table format '{ext or p.name}' for {p} — use one of {', '.join(TABLE_EXTENSIONS)}"
        )
    try:
        if ext in (".jsonl", ".json"):
            rows, available = _read_jsonl(p)
        else:
            rows, available = _read_delimited(p, "\t" if ext == ".tsv" else ",")
    except UnicodeDecodeError:
        raise _bad_utf8(p) from None
    if not rows:
        raise UserError(f"data file has no rows: {p} — point the config at a non-empty file")
    for c in columns:
        if c not in available:
            raise UserError(
                f"column '{c}' not found in {p} (available: {', '.join(available)}) — set the matching "
                "data.*_column option"
            )
    out: dict[str, list] = {c: [] for c in columns}
    for i, row in enumerate(rows):
        for c in columns:
            if c not in row:
                raise UserError(f"row {i + 1} of {p} has no '{c}' field — fix the file or the column name")
            out[c].append(row[c])
    return out


def _read_delimited(p: Path, delimiter: str) -> tuple[list[dict], list[str]]:
    # GLUE TSVs contain unbalanced quote characters, so TSV is read with quoting off.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open(p, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            return [], []
        header = [h.strip() for h in header]
        rows = []
        for values in reader:
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            rows.append(dict(zip(header, values, strict=False)))
    return rows, header


def parse_jsonl_line(line: str, n: int, source) -> dict:
    """Line ``n`` of a JSONL file as a dict; a clear error when it is not one JSON object."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(
            f"line {n} of {source} is not valid JSON ({e.msg}) — write one JSON object per line"
        ) from None
    if not isinstance(row, dict):
        raise UserError(f"line {n} of {source} is not a JSON object — write one JSON object per line")
    return row


def _read_jsonl(p: Path) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    available: dict[str, None] = {}
    with open(p, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = parse_jsonl_line(line, n, p)
            available.update(dict.fromkeys(row))
            rows.append(row)
    return rows, list(available)
