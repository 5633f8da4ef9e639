from __future__ import annotations

import json

import pytest

from encoderlab.data.readers import file_fingerprint, read_corpus, read_table
from encoderlab.errors import UserError

ROWS = [
    {"text": 'he said "hi', "label": "pos"},
    {"text": "a, b and c", "label": "neg"},
    {"text": "plain", "label": "pos"},
]


def test_tsv_with_quotes_and_bom(tmp_path):
    p = tmp_path / "d.tsv"
    body = "text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in ROWS)
    p.write_bytes(b"\xef\xbb\xbf" + body.encode())
    # Unbalanced quotes (as in GLUE) stay literal; the BOM does not leak into the first column name.
    assert read_table(p, ["text", "label"]) == {
        "text": [r["text"] for r in ROWS],
        "label": ["pos", "neg", "pos"],
    }


def test_csv_round_trip(tmp_path):
    import csv

    p = tmp_path / "d.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["label", "text"])
        w.writeheader()
        w.writerows(ROWS)
    assert read_table(p, ["text"]) == {"text": [r["text"] for r in ROWS]}


def test_jsonl_keeps_types(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps({"text": r["text"], "label": i}) for i, r in enumerate(ROWS)) + "\n\n")
    assert read_table(p, ["text", "label"]) == {"text": [r["text"] for r in ROWS], "label": [0, 1, 2]}


def test_table_errors(tmp_path):
    with pytest.raises(UserError, match="missing.tsv"):
        read_table(tmp_path / "missing.tsv", ["text"])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="empty.csv"):
        read_table(tmp_path / "empty.csv", ["text"])
    (tmp_path / "header_only.tsv").write_text("text\tlabel\n")
    with pytest.raises(UserError, match="header_only.tsv"):
        read_table(tmp_path / "header_only.tsv", ["text"])
    (tmp_path / "d.tsv").write_text("text\tlabel\nx\t1\n")
    with pytest.raises(UserError, match=r"'sentence'.*available: text, label"):
        read_table(tmp_path / "d.tsv", ["sentence"])
    (tmp_path / "d.parquet").write_text("x")
    with pytest.raises(UserError, match=r"\.parquet.*\.csv, \.tsv, \.jsonl"):
        read_table(tmp_path / "d.parquet", ["text"])
    (tmp_path / "bad.tsv").write_bytes(b"text\tlabel\nok\t1\nbad \xff\t0\n")
    with pytest.raises(UserError, match=r"bad.tsv.*byte offset 20"):
        read_table(tmp_path / "bad.tsv", ["text"])


def test_corpus_skips_headings_and_blank_lines(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text(
        " = Title = \nFirst para.\n\n = = Section = = \nSecond para.\n   \nThird = not a heading =\n"
    )
    assert read_corpus(p) == ["First para.", "Second para.", "Third = not a heading ="]
    assert read_corpus(p, limit=2) == ["First para.", "Second para."]


def test_corpus_errors(tmp_path):
    with pytest.raises(UserError, match="nope.txt"):
        read_corpus(tmp_path / "nope.txt")
    (tmp_path / "blank.txt").write_text("\n = Only a heading = \n\n")
    with pytest.raises(UserError, match="blank.txt"):
        read_corpus(tmp_path / "blank.txt")
    (tmp_path / "latin1.txt").write_bytes("ok line\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.txt.*byte offset 11"):
        read_corpus(tmp_path / "latin1.txt")


def test_fingerprint(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("one")
    fp = file_fingerprint(p)
    assert fp == file_fingerprint(p) and len(fp) == 64
    p.write_text("two")
    assert file_fingerprint(p) != fp
