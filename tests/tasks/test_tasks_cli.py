"""Sentence-pair classification, regression, NER tagging and multi-label classification through the real
entry point on miniature data sets, then encoderlab-predict on the pair and regression runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from encoderlab.cli.components import build_task
from encoderlab.cli.errors import find_user_error
from encoderlab.cli.predict import main as predict_main
from encoderlab.data import load_tokenizer
from encoderlab.models.encoder import Encoder, EncoderConfig, build
from encoderlab.models.heads import SequenceClassifier, TokenClassifier
from tests.cli.test_config import compose_train
from tests.conftest import FAST, assert_clean_failure, cli_env, labelled_rows, run_train


@pytest.fixture(scope="module")
def env(data_dir, cache_dir):
    return cli_env(data_dir, cache_dir, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")


def train(tmp_path_factory, env, name: str, *overrides: str):
    run = tmp_path_factory.mktemp(name) / "run"
    proc = run_train([*overrides, *FAST, f"hydra.run.dir={run}"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def mrpc_run(tmp_path_factory, env):
    return train(tmp_path_factory, env, "mrpc", "experiment=finetune_mrpc")


@pytest.fixture(scope="module")
def stsb_run(tmp_path_factory, env):
    return train(tmp_path_factory, env, "stsb", "experiment=finetune_stsb", "head.pooling=mean")


def reference_outputs(run, items: list, num_labels: int, pooling: str = "cls") -> torch.Tensor:
    """The run's head outputs for ``items`` (texts or (text, text pair) tuples), one at a time, from an
    encoder and head built by hand (the plain matmul path, not predict's oneDNN one) and loaded from
    last.ckpt's tensors: independent of encoderlab-predict and of the run's task class."""
    state = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    tokenizer = load_tokenizer(run / "tokenizer")
    tokenizer.enable_truncation(32)  # FAST's data.max_seq_len
    config = EncoderConfig(tokenizer.get_vocab_size(), layers=2, hidden=128, heads=2)  # encoder=tiny
    encoder = Encoder(config, onednn_cpu_linear=False).eval()
    head = SequenceClassifier(encoder, num_labels=num_labels, pooling=pooling).eval()
    encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    outputs = []
    with torch.no_grad():
        for item in items:
            encoding = tokenizer.encode(*item) if isinstance(item, tuple) else tokenizer.encode(item)
            ids, types = torch.tensor([encoding.ids]), torch.tensor([encoding.type_ids])
            outputs.append(head(encoder(ids, torch.ones_like(ids), types), torch.ones_like(ids))[0])
    return torch.stack(outputs)


def test_pair_classification_run(mrpc_run):
    run, metrics = mrpc_run
    assert {"val/acc", "val/f1_macro", "val/loss"} <= set(metrics)
    assert not any(k.startswith("test/") for k in metrics)  # MRPC has no test labels
    assert json.loads((run / "label_map.json").read_text())["label_names"] == ["0", "1"]


def test_regression_run(stsb_run):
    run, metrics = stsb_run
    assert {"val/loss", "val/mse", "val/pearson", "val/spearman"} <= set(metrics)
    assert all(math.isfinite(metrics[k]) for k in ("val/mse", "val/pearson", "val/spearman"))
    assert -1.0 <= metrics["val/pearson"] <= 1.0 and metrics["val/loss"] == pytest.approx(metrics["val/mse"])


@pytest.fixture(scope="module")
def conll_run(tmp_path_factory, env):
    return train(tmp_path_factory, env, "conll", "experiment=finetune_conll2003")


def test_token_classification_run(conll_run):
    run, metrics = conll_run
    for stage in ("val", "test"):
        keys = {f"{stage}/{k}" for k in ("entity_f1", "entity_precision", "entity_recall", "token_acc")}
        assert keys <= set(metrics)
        assert all(0.0 <= metrics[k] <= 1.0 for k in keys)
    names = json.loads((run / "label_map.json").read_text())["label_names"]
    assert names == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def test_multilabel_run(tmp_path_factory, env, tmp_path):
    rows = [
        {"text": t, "labels": ["pos" if y == "1" else "neg", *(["long"] if len(t) > 40 else [])]}
        for t, y in labelled_rows(120, 41)
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run, metrics = train(
        tmp_path_factory,
        env,
        "multilabel",
        "data=multilabel_classification",
        f"data.train_file={path}",
        "data.label_column=labels",
        "task=multilabel",
        "task.threshold=0.4",
        "optimized_metric=val/f1_micro",
    )
    assert {"val/f1_micro", "val/f1_macro", "val/subset_acc", "val/loss"} <= set(metrics)
    assert json.loads((run / "label_map.json").read_text())["label_names"] == ["long", "neg", "pos"]

    # encoderlab-predict: a sigmoid per label, and every label at or above the run's threshold (0.4).
    src = tmp_path / "in.txt"
    src.write_text("a great film\nbleak\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    assert predict_main([str(run), "-i", str(src), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["a great film", "bleak"]
    expected = torch.sigmoid(reference_outputs(run, ["a great film", "bleak"], num_labels=3))
    for row, probabilities in zip(rows, expected, strict=True):
        assert list(row["probabilities"]) == ["long", "neg", "pos"]
        got = torch.tensor(list(row["probabilities"].values()))
        assert torch.allclose(got, probabilities, atol=1e-5), (got, probabilities)
        assert row["labels"] == [n for n, p in row["probabilities"].items() if p >= 0.4]


def test_predict_pairs(mrpc_run, tmp_path):
    run, _ = mrpc_run
    src = tmp_path / "pairs.csv"
    src.write_text(
        "#1 String,#2 String\ngreat film,a great film\nbleak plot,wonderful cast\n", encoding="utf-8"
    )
    out = tmp_path / "preds.jsonl"
    assert predict_main([str(run), "-i", str(src), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["text"], r["text_pair"]) for r in rows] == [
        ("great film", "a great film"),
        ("bleak plot", "wonderful cast"),
    ]
    expected = torch.softmax(
        reference_outputs(run, [("great film", "a great film"), ("bleak plot", "wonderful cast")], 2), -1
    )
    for row, probabilities in zip(rows, expected, strict=True):
        assert list(row["probabilities"]) == ["0", "1"]
        got = torch.tensor(list(row["probabilities"].values()))
        assert torch.allclose(got, probabilities, atol=1e-5), (got, probabilities)
        assert row["label"] == str(int(probabilities.argmax()))
    # Other column names, given on the command line; a plain text file cannot hold pairs.
    other = tmp_path / "pairs.jsonl"
    other.write_text(json.dumps({"a": "great film", "b": "a great film"}) + "\n", encoding="utf-8")
    out2 = tmp_path / "preds2.jsonl"
    assert (
        predict_main(
            [str(run), "-i", str(other), "-o", str(out2), "--text-column", "a", "--text-pair-column", "b"]
        )
        == 0
    )
    assert json.loads(out2.read_text())["probabilities"] == pytest.approx(rows[0]["probabilities"], abs=1e-5)
    txt = tmp_path / "in.txt"
    txt.write_text("great film\n")
    assert predict_main([str(run), "-i", str(txt), "-o", str(tmp_path / "x.jsonl")]) == 2


def test_predict_regression(stsb_run, tmp_path):
    run, _ = stsb_run
    src = tmp_path / "pairs.tsv"
    src.write_text("sentence1\tsentence2\ngreat film\ta great film\ngreat film\ta great film\nbleak\tfunny\n")
    out = tmp_path / "scores.jsonl"
    assert predict_main([str(run), "-i", str(src), "-o", str(out), "--batch-size", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(r) for r in rows] == [{"text", "text_pair", "score"}] * 3
    pairs = [("great film", "a great film"), ("great film", "a great film"), ("bleak", "funny")]
    expected = reference_outputs(run, pairs, num_labels=1, pooling="mean").squeeze(-1)  # head.pooling=mean
    assert [r["score"] for r in rows] == pytest.approx(expected.tolist(), abs=1e-5)
    assert abs(rows[0]["score"] - rows[2]["score"]) > 1e-4  # the scores depend on the input


@pytest.mark.slow  # ~8 s, one process for one refusal; keeps the default suite under 10 minutes
def test_a_pair_task_with_one_text_column_fails_in_one_line(tmp_path, env):
    result = run_train(
        [
            "experiment=finetune_mrpc",
            "data.text_pair_column=null",
            *FAST,
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        env,
    )
    assert_clean_failure(result, "data.text_pair_column", "#1 String")
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (
            [
                "data=text_classification",
                "data.train_file=${paths.data_dir}/sst2/train.tsv",
                "data.pairs=true",
            ],
            ["data.text_pair_column"],
        ),
        (["experiment=finetune_sst2", "task=regress"], ["task=regress", "data.num_labels=1"]),
        (["experiment=finetune_stsb", "task=classify"], ["task=regress"]),
        (["experiment=finetune_sst2", "task=tag", "head=token_classifier"], ["task=tag", "data=conll2003"]),
        (["experiment=finetune_conll2003", "head=classifier"], ["head=token_classifier"]),
        (["experiment=finetune_conll2003", "task=classify", "head=classifier"], ["task=tag"]),
        (["experiment=finetune_stsb", "optimized_metric=val/acc"], ["val/acc", "val/pearson"]),
    ],
    ids=[
        "pairs-flag",
        "regress-on-classes",
        "classify-on-scores",
        "tag-on-classes",
        "tag-head",
        "classify-on-tags",
        "metric",
    ],
)
def test_mismatches_are_user_errors(data_dir, cache_dir, overrides, needles):
    cfg = compose_train(
        [
            *overrides,
            *[o for o in FAST if not o.startswith("~")],
            f"paths.data_dir={data_dir}",
            f"paths.cache_dir={cache_dir}",
        ]
    )
    with pytest.raises(Exception) as err:
        build_task(cfg)
    user_error = find_user_error(err.value)  # Hydra wraps what a constructor raises
    assert user_error is not None, err.value
    for needle in needles:
        assert needle in str(user_error), str(user_error)


@pytest.mark.slow  # ~8 s; the bad-input catalogue has the same case in the default suite
def test_nan_regression_target(tmp_path, env, data_dir):
    train_file = tmp_path / "train.tsv"
    lines = (data_dir / "stsb/train.tsv").read_text().splitlines()
    cells = lines[3].split("\t")
    lines[3] = "\t".join([*cells[:-1], "nan"])
    train_file.write_text("\n".join(lines) + "\n")
    result = run_train(
        [
            "experiment=finetune_stsb",
            f"data.train_file={train_file}",
            *FAST,
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        env,
    )
    assert_clean_failure(result, "row 3", "train.tsv", "not a finite number")


def reference_tags(run, sentences: list[list[str]]) -> list[list[str]]:
    """The tagger's own forward pass, one sentence at a time, built apart from encoderlab-predict."""
    state = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    names = json.loads((run / "label_map.json").read_text())["label_names"]
    tokenizer = load_tokenizer(run / "tokenizer")
    tokenizer.enable_truncation(32)  # FAST's data.max_seq_len
    encoder = build(tokenizer.get_vocab_size(), layers=2, hidden=128, heads=2).eval()  # encoder=tiny
    head = TokenClassifier(encoder, num_labels=len(names)).eval()
    encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    out = []
    with torch.no_grad():
        for words in sentences:
            enc = tokenizer.encode(words, is_pretokenized=True)
            ids = torch.tensor([enc.ids])
            best = head(encoder(ids, torch.ones_like(ids), torch.zeros_like(ids)))[0].argmax(-1).tolist()
            first = {}
            for position, w in enumerate(enc.word_ids):
                if w is not None and w not in first:
                    first[w] = names[best[position]]
            out.append([first.get(i, "O") for i in range(len(words))])
    return out


def test_predict_tags(conll_run, tmp_path):
    run, _ = conll_run
    sentences = [
        ["Ada", "Lovelace", "met", "Alan", "Turing", "in", "Paris"],
        ["the", "film"],
        ("the movie is very good and Grace was there " * 6).split(),  # longer than max_seq_len: tail is O
    ]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(" ".join(words) for words in sentences) + "\n", encoding="utf-8")
    out = tmp_path / "tags.jsonl"
    assert predict_main([str(run), "-i", str(src), "-o", str(out), "--batch-size", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tokens"] for r in rows] == sentences
    assert [r["tags"] for r in rows] == reference_tags(run, sentences)
    for row in rows:
        for entity in row["entities"]:
            span = row["tags"][entity["start"] : entity["end"] + 1]
            assert span[0].endswith(entity["type"]) and entity["text"] == " ".join(
                row["tokens"][entity["start"] : entity["end"] + 1]
            )
    # JSONL with a list of words gives the same tags as the text.
    src_json = tmp_path / "in.jsonl"
    src_json.write_text(json.dumps({"tokens": sentences[0]}) + "\n", encoding="utf-8")
    out_json = tmp_path / "tags2.jsonl"
    assert predict_main([str(run), "-i", str(src_json), "-o", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["tags"] == rows[0]["tags"]
