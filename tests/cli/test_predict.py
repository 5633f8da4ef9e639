"""``encoderlab-predict``: a tiny classifier trained through the CLI once, then predictions checked against the
model's own forward pass, every input format, stdin/stdout, and each error (one line, exit 2)."""

from __future__ import annotations

import io
import json
import shutil
import sys

import numpy as np
import pytest
import torch
import yaml

from encoderlab.cli.predict import main
from encoderlab.data import load_tokenizer, save_tokenizer
from encoderlab.data.tokenizer import copy_tokenizer, train_wordpiece
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier
from tests.conftest import FAST, cli_env, labelled_rows, run_train, write_tsv

MAX_LEN = 32
TEXTS = [
    "the film was great and the cast was wonderful",
    "a dull , boring plot",
    "it is",
    "this movie " * 40,  # longer than data.max_seq_len: truncated as in training
    "Ünïcode — and CAPITALS too",
    "bleak",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("predict_tokenizer")
    texts = [t for t, _ in labelled_rows(300, 3)]
    save_tokenizer(train_wordpiece(texts, vocab_size=300, min_frequency=1), directory)
    return directory


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory):
    """SST-2 in miniature whose dev set has every fifth label flipped: a model that learned the cue words
    predicts both classes and still makes mistakes, so accuracy and per-class F1 are neither 0 nor 1."""
    root = tmp_path_factory.mktemp("predict_data")
    write_tsv(root / "sst2/train.tsv", labelled_rows(300, 3))
    dev = [
        (text, str(1 - int(label)) if i % 5 == 0 else label)
        for i, (text, label) in enumerate(labelled_rows(60, 4))
    ]
    write_tsv(root / "sst2/dev.tsv", dev)
    write_tsv(root / "sst2/test.tsv", labelled_rows(60, 5))
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, sst2_dir, cache_dir, tokenizer_dir):
    """A fine-tuned classifier, trained through the real entry point (once for this module)."""
    run = tmp_path_factory.mktemp("predict") / "run"
    overrides = [
        *FAST,
        f"data.tokenizer={tokenizer_dir}",
        f"data.max_seq_len={MAX_LEN}",
        "trainer.limit_val_batches=1.0",  # the whole dev set: the logged val/* metrics are over dev.tsv
        "trainer.limit_train_batches=1.0",
        "trainer.max_steps=-1",
        "trainer.max_epochs=2",  # ~76 steps at 1e-3: the cue words are learnt on every seed tried, on any CPU
        "optimizer.lr=1e-3",
        f"hydra.run.dir={run}",
    ]
    proc = run_train(overrides, cli_env(sst2_dir, cache_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def reference_probabilities(run_dir, tokenizer_dir, texts) -> torch.Tensor:
    """The model's own forward pass, built independently of encoderlab-predict: one text at a time."""
    state = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    tokenizer = load_tokenizer(tokenizer_dir)
    tokenizer.enable_truncation(MAX_LEN)
    encoder = build(tokenizer.get_vocab_size(), layers=2, hidden=128, heads=2).eval()  # encoder=tiny
    head = SequenceClassifier(encoder, num_labels=2).eval()
    encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text).ids])
            assert ids.shape[1] <= MAX_LEN
            logits = head(encoder(ids, torch.ones_like(ids), torch.zeros_like(ids)), torch.ones_like(ids))
            rows.append(torch.softmax(logits, -1)[0])
    return torch.stack(rows)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_rows(rows, texts, expected: torch.Tensor) -> None:
    assert [r["text"] for r in rows] == list(texts)
    for row, probs in zip(rows, expected, strict=True):
        assert list(row["probabilities"]) == ["0", "1"]  # label map order
        got = torch.tensor(list(row["probabilities"].values()))
        assert abs(float(got.sum()) - 1.0) < 1e-5
        assert torch.allclose(got, probs, atol=1e-5), (got, probs)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)


def test_predictions_equal_the_models_forward(run_dir, tokenizer_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS[:3]) + "\n\n" + "\n".join(TEXTS[3:]) + "\n")  # a blank line is skipped
    out = tmp_path / "preds.jsonl"
    # batch size 4: padded batches of mixed lengths, and a last batch that is not full
    assert main([str(run_dir), "--input", str(src), "--output", str(out), "--batch-size", "4"]) == 0
    check_rows(read_jsonl(out), TEXTS, reference_probabilities(run_dir, tokenizer_dir, TEXTS))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_logged_accuracy_and_macro_f1_equal_a_direct_computation(run_dir, tokenizer_dir, sst2_dir):
    """val/acc and val/f1_macro of metrics.json, recomputed by hand from the model's own predictions on
    the dev set (the final validation ran on the weights of last.ckpt)."""
    rows = [line.split("\t") for line in (sst2_dir / "sst2/dev.tsv").read_text().splitlines()[1:]]
    names = json.loads((run_dir / "label_map.json").read_text())["label_names"]
    gold = np.array([names.index(label) for _, label in rows])
    predicted = reference_probabilities(run_dir, tokenizer_dir, [text for text, _ in rows]).argmax(-1).numpy()
    assert set(predicted) == {0, 1}  # both classes predicted: a per-class F1 that means something
    assert 0.6 < np.mean(predicted == gold) < 1.0  # learnt, and the flipped labels are missed
    f1 = []
    for label in range(len(names)):
        tp = np.sum((predicted == label) & (gold == label))
        fp = np.sum((predicted == label) & (gold != label))
        fn = np.sum((predicted != label) & (gold == label))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val/acc"] == pytest.approx(np.mean(predicted == gold), abs=1e-6)
    assert metrics["val/f1_macro"] == pytest.approx(np.mean(f1), abs=1e-6)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_table_inputs_use_the_text_column(run_dir, tokenizer_dir, tmp_path, fmt):
    texts = TEXTS[:3]
    src = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        src.write_text("".join(json.dumps({"id": i, "message": t}) + "\n" for i, t in enumerate(texts)))
    else:
        sep = "," if fmt == "csv" else "\t"
        quote = (lambda t: f'"{t}"') if fmt == "csv" else (lambda t: t)
        src.write_text(f"id{sep}message\n" + "".join(f"{i}{sep}{quote(t)}\n" for i, t in enumerate(texts)))
    out = tmp_path / "preds.jsonl"
    assert main([str(run_dir), "-i", str(src), "-o", str(out), "--text-column", "message"]) == 0
    check_rows(read_jsonl(out), texts, reference_probabilities(run_dir, tokenizer_dir, texts))


def test_stdin_to_stdout(run_dir, tokenizer_dir, monkeypatch, capsys):
    text = "\n".join(TEXTS[:2]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main([str(run_dir), "--input", "-", "--output", "-"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    check_rows(rows, TEXTS[:2], reference_probabilities(run_dir, tokenizer_dir, TEXTS[:2]))


def test_stdin_as_jsonl(run_dir, tokenizer_dir, tmp_path, monkeypatch):
    lines = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:2])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    out = tmp_path / "preds.jsonl"
    assert main([str(run_dir), "-i", "-", "--format", "jsonl", "-o", str(out)]) == 0
    check_rows(read_jsonl(out), TEXTS[:2], reference_probabilities(run_dir, tokenizer_dir, TEXTS[:2]))


def test_tokenizer_saved_in_the_run_is_used(run_dir, tokenizer_dir, tmp_path, capsys):
    """Predict reads the tokenizer the run saved (tokenizer/), not what the config names; without it, one line."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = yaml.safe_load((copy / ".hydra/config.yaml").read_text())
    cfg["data"]["tokenizer"] = "/nowhere"
    (copy / ".hydra/config.yaml").write_text(yaml.safe_dump(cfg))
    src = tmp_path / "in.txt"
    src.write_text(TEXTS[0] + "\n")
    assert sorted(p.name for p in (copy / "tokenizer").iterdir()) == ["tokenizer.json", "vocab.txt"]
    shutil.rmtree(copy / "tokenizer")
    capsys.readouterr()
    assert main([str(copy), "-i", str(src), "-o", str(tmp_path / "a.jsonl")]) == 2
    assert "holds no tokenizer" in capsys.readouterr().err
    copy_tokenizer(tokenizer_dir, copy / "tokenizer")
    assert main([str(copy), "-i", str(src), "-o", str(tmp_path / "b.jsonl")]) == 0
    check_rows(
        read_jsonl(tmp_path / "b.jsonl"),
        TEXTS[:1],
        reference_probabilities(run_dir, tokenizer_dir, TEXTS[:1]),
    )


def test_existing_output_needs_force(run_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("great\n")
    out = tmp_path / "preds.jsonl"
    out.write_text("keep me\n")
    assert main([str(run_dir), "-i", str(src), "-o", str(out)]) == 2
    assert out.read_text() == "keep me\n"
    assert main([str(run_dir), "-i", str(src), "-o", str(out), "--force"]) == 0
    assert len(read_jsonl(out)) == 1


def test_a_failure_midway_leaves_no_output(run_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "good"}) + "\n" + json.dumps({"text": "bad"}) + "\nnot json\n")
    out = tmp_path / "preds.jsonl"
    assert main([str(run_dir), "-i", str(src), "-o", str(out), "--batch-size", "1"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no_run_dir", "run directory not found"),
        ("not_a_run", "task.json not found"),
        ("pretraining_run", "pre-training run predicts masked tokens"),
        ("missing_input", "input file not found"),
        ("missing_column", "column 'message' not found"),
        ("missing_jsonl_field", "no 'message' field"),
        ("unknown_extension", "--format"),
        ("empty_input", "has no texts"),
        ("foreign_class", "'os.system', which is not a EncoderTask"),
        ("damaged_task_record", "task.json is not a valid task record"),
        ("bad_batch_size", "--batch-size"),
    ],
)
def test_errors_are_one_line_and_exit_2(run_dir, tmp_path, capsys, request, case, expected):
    run, src, extra = run_dir, tmp_path / "in.txt", []
    src.write_text("great\n")
    if case == "no_run_dir":
        run = tmp_path / "nope"
    elif case == "not_a_run":
        run = tmp_path / "empty"
        run.mkdir()
    elif case == "pretraining_run":
        run = request.getfixturevalue("pretrained_run")
    elif case == "missing_input":
        src = tmp_path / "absent.txt"
    elif case == "missing_column":
        src = tmp_path / "in.csv"
        src.write_text("text,label\ngreat,1\n")
        extra = ["--text-column", "message"]
    elif case == "missing_jsonl_field":
        src = tmp_path / "in.jsonl"
        src.write_text('{"text": "great"}\n')
        extra = ["--text-column", "message"]
    elif case == "unknown_extension":
        src = tmp_path / "in.parquet"
        src.write_text("x")
    elif case == "empty_input":
        src.write_text("\n\n")
    elif case in ("foreign_class", "damaged_task_record"):
        run = tmp_path / "run"
        shutil.copytree(run_dir, run)
        record = json.loads((run / "task.json").read_text())
        record["task"]["class"] = "os.system"  # a run directory must not choose code to call
        text = json.dumps(record) if case == "foreign_class" else "{not json"
        (run / "task.json").write_text(text)
    elif case == "bad_batch_size":
        extra = ["--batch-size", "0"]
    out = tmp_path / "preds.jsonl"
    assert main([str(run), "-i", str(src), "-o", str(out), *extra]) == 2
    assert expected in error_line(capsys)
    assert not out.exists()
