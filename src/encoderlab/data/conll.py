"""Readers for word-tagged sentences: CoNLL-style columns, or JSONL with a list of words and of tags.

CoNLL format (CoNLL-2003 NER): one word per line, whitespace-separated columns (``token POS chunk NER``),
a blank line between sentences, ``-DOCSTART-`` lines marking documents (skipped). The word is the first
column and the tag the last one unless told otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from encoderlab.data.readers import read_table
from encoderlab.errors import UserError

DOCSTART = "-DOCSTART-"
JSON_EXTENSIONS = (".jsonl", ".json")

Sentences = tuple[list[list[str]], list[list]]  # words per sentence, tags per sentence


def read_conll(path: str | os.PathLike, token_column: int = 0, tag_column: int = -1) -> Sentences:
    """(words, tags) per sentence of a CoNLL-style file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file not found: {p} — check the path or set ENCODERLAB_DATA_DIR")
    words: list[list[str]] = []
    tags: list[list] = []
    sentence_words: list[str] = []
    sentence_tags: list[str] = []

    def close_sentence() -> None:
        if sentence_words:
            words.append(list(sentence_words))
            tags.append(list(sentence_tags))
            sentence_words.clear()
            sentence_tags.clear()

    try:
        with open(p, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    close_sentence()
                    continue
                if fields[0] == DOCSTART:
                    close_sentence()
                    continue
                try:
                    sentence_words.append(fields[token_column])
                    sentence_tags.append(fields[tag_column])
                except IndexError:
                    raise UserError(
                        f"line {n} of {p} has {len(fields)} column(s), too few for token_column={token_column} "
                        f"and tag_column={tag_column} — fix the line or set data.token_column / data.tag_column"
                    ) from None
    except UnicodeDecodeError:
        raise UserError(f"{p} is not valid UTF-8 — re-encode the file as UTF-8") from None
    close_sentence()
    if not words:
        raise UserError(f"{p} holds no tagged words — point the config at a CoNLL-style file")
    return words, tags


def read_tagged_jsonl(path: str | os.PathLike, tokens_column: str, tags_column: str) -> Sentences:
    """(words, tags) from JSONL rows holding a list of words and a list of tags (same length)."""
    table = read_table(path, [tokens_column, tags_column])
    for i, (ws, ts) in enumerate(zip(table[tokens_column], table[tags_column], strict=True)):
        if not isinstance(ws, list) or not isinstance(ts, list) or len(ws) != len(ts):
            raise UserError(
                f"row {i + 1} of {path}: '{tokens_column}' and '{tags_column}' must be lists of the same length "
                "— write one list of words and one list of tags per line"
            )
    return [[str(w) for w in ws] for ws in table[tokens_column]], list(table[tags_column])


def read_tagged(path: str | os.PathLike, tokens_column: str, tags_column: str, tag_column: int) -> Sentences:
    """JSONL by extension, else CoNLL columns."""
    if Path(path).suffix.lower() in JSON_EXTENSIONS:
        return read_tagged_jsonl(path, tokens_column, tags_column)
    return read_conll(path, tag_column=tag_column)
