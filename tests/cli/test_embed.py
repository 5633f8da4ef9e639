"""``encoderlab-embed``: the vectors it writes (.npy with ids, .jsonl, .parquet) are the Python API's, each with
its record; an existing output is kept without --force; a failure leaves nothing; mistakes are one line, exit 2."""

from __future__ import annotations

import csv
import errno
import json

import numpy as np
import pytest

from encoderlab.cli.embed import main
from encoderlab.embedding import Embedder, output

TEXTS = ["the film was great", "a dull , boring plot with a cast", "it is", "bleak, bleak and bleak again"]


def write_table(path, ids=("r1", "r2", "r3", "r4")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(zip(ids, TEXTS, strict=True))
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_cli_vectors_equal_the_python_api(pretrained_run, tmp_path, capsys):
    src = write_table(tmp_path / "in.csv")
    expected = Embedder(pretrained_run).encode(TEXTS)
    assert (
        main([str(pretrained_run), "-i", str(src), "-o", str(tmp_path / "v.npy"), "--id-column", "id"]) == 0
    )
    assert "wrote 4 vectors of 128 dims (mean pooling)" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-6)
    assert (tmp_path / "v.ids.txt").read_text().split("\n") == ["r1", "r2", "r3", "r4", ""]
    record = json.loads((tmp_path / "v.npy.json").read_text())
    assert {
        k: record[k] for k in ("source_kind", "pooling", "normalize", "dims", "max_seq_len", "count", "ids")
    } == {
        "source_kind": "run",
        "pooling": "mean",
        "normalize": False,
        "dims": 128,
        "max_seq_len": 32,
        "count": 4,
        "ids": "v.ids.txt",
    }

    options = ["--pooling", "mean", "--normalize", "--max-seq-len", "4", "--batch-size", "3"]
    assert main([str(pretrained_run), "-i", str(src), "-o", str(tmp_path / "v.jsonl"), *options]) == 0
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]  # no --id-column: the row's position
    mean = Embedder(pretrained_run).encode(TEXTS, pooling="mean", normalize=True, max_seq_len=4)
    np.testing.assert_allclose(np.array([r["vector"] for r in rows], dtype=np.float32), mean, atol=1e-6)
    record = json.loads((tmp_path / "v.jsonl.json").read_text())
    assert (record["pooling"], record["normalize"], record["max_seq_len"]) == ("mean", True, 4)

    parquet = pytest.importorskip("pyarrow.parquet")
    assert (
        main([str(pretrained_run), "-i", str(src), "-o", str(tmp_path / "v.parquet"), "--id-column", "id"])
        == 0
    )
    table = parquet.read_table(tmp_path / "v.parquet")
    assert table.column("id").to_pylist() == ["r1", "r2", "r3", "r4"]
    np.testing.assert_allclose(
        np.array(table.column("vector").to_pylist(), dtype=np.float32), expected, atol=1e-6
    )
    assert json.loads(table.schema.metadata[b"encoderlab.embedding"])["count"] == 4


def test_an_existing_output_is_kept_without_force(pretrained_run, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("great\n\nbad\n")
    out = tmp_path / "v.npy"
    out.write_text("keep me")
    assert main([str(pretrained_run), "-i", str(src), "-o", str(out)]) == 2
    assert "already exists" in error_line(capsys) and out.read_text() == "keep me"
    assert main([str(pretrained_run), "-i", str(src), "-o", str(out), "--force"]) == 0
    assert np.load(out).shape == (2, 128)  # blank lines separate texts


def test_a_failure_while_writing_leaves_no_file(pretrained_run, tmp_path, capsys, monkeypatch):
    def disk_full(tmp, ids):  # after the vectors' file is written, before the ids' and the record
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output, "_write_ids", disk_full)
    src = write_table(tmp_path / "in.csv")
    assert (
        main([str(pretrained_run), "-i", str(src), "-o", str(tmp_path / "v.npy"), "--id-column", "id"]) == 2
    )
    assert "no space left on device" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_ids_a_npy_output_cannot_keep_fail_before_any_work(pretrained_run, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t, "id": f"a\nb{i}"}) + "\n" for i, t in enumerate(TEXTS)))
    assert (
        main([str(pretrained_run), "-i", str(src), "-o", str(tmp_path / "v.npy"), "--id-column", "id"]) == 2
    )
    assert "holds a line break" in error_line(capsys)
    assert (
        main([str(pretrained_run), "-i", str(src), "-o", str(tmp_path / "v.jsonl"), "--id-column", "id"]) == 0
    )
    assert json.loads((tmp_path / "v.jsonl").read_text().splitlines()[0])["id"] == "a\nb0"


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing_source", "does not exist"),
        ("missing_input", "input file not found"),
        ("missing_column", "column 'body' not found"),
        ("missing_id_column", "no 'key' field"),
        ("ids_of_text_lines", "has no columns"),
        ("unknown_pooling", "--pooling='sum' must be one of cls, mean, max, last"),
        ("empty_input", "has no texts — nothing to embed"),
        ("bad_extension", "cannot tell the format from '.csv'"),
        ("too_long", "max_seq_len=999 must be an integer from 2 to 512"),
        ("output_is_input", "is the input file"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(pretrained_run, tmp_path, capsys, case, needle):
    source, src, out, extra = str(pretrained_run), write_table(tmp_path / "in.csv"), tmp_path / "v.npy", []
    if case == "missing_source":
        source = str(tmp_path / "nope")
    elif case == "missing_input":
        src = tmp_path / "absent.txt"
    elif case == "missing_column":
        extra = ["--column", "body"]
    elif case == "missing_id_column":
        src = tmp_path / "in.jsonl"
        src.write_text(json.dumps({"text": "good", "id": 1}) + "\n")
        extra = ["--id-column", "key"]
    elif case == "ids_of_text_lines":
        src = tmp_path / "in.txt"
        src.write_text("good\n")
        extra = ["--id-column", "id"]
    elif case == "unknown_pooling":
        extra = ["--pooling", "sum"]
    elif case == "empty_input":
        src.write_text("id,text\n")
    elif case == "bad_extension":
        out = tmp_path / "v.csv"
    elif case == "too_long":
        extra = ["--max-seq-len", "999"]
    elif case == "output_is_input":
        src = tmp_path / "v.npy.json"  # the record's name, read as JSON lines
        src.write_text(json.dumps({"text": "good"}) + "\n")
    assert main([source, "-i", str(src), "-o", str(out), *extra]) == 2
    assert needle in error_line(capsys)
    assert not out.exists()
