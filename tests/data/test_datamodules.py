from __future__ import annotations

import json

import pytest
import torch

from encoderlab.data import TextClassificationDataModule, TextCorpusDataModule
from encoderlab.errors import UserError


def corpus_dm(tmp_path, corpus_file, **kw) -> TextCorpusDataModule:
    kw = {"vocab_size": 150, "max_seq_len": 32, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw}
    return TextCorpusDataModule(train_file=str(corpus_file), **kw)


def test_corpus_datamodule(tmp_path, corpus_file):
    dm = corpus_dm(tmp_path, corpus_file)
    dm.prepare()
    assert dm.head_kwargs == {} and dm.task_kwargs == {}
    assert dm.vocab_size == dm.tokenizer.get_vocab_size() <= 150
    assert {"tokenizer.json", "vocab.txt"} <= {
        p.name for p in (tmp_path / "cache" / "tokenizers").glob("*/*")
    }
    assert dm.tokenizer_dir.startswith(str(tmp_path / "cache" / "tokenizers"))
    # No val_file: the last 1% of paragraphs (3 of 300) are held out.
    assert len(dm.train_dataset.token_ids) == 297 and len(dm.val_dataset.token_ids) == 3
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        batch = next(iter(loader))
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        rows = min(4, len(loader.dataset))
        assert all(v.shape == (rows, 32) and v.dtype == torch.long for v in batch.values())
        assert (batch["labels"] != -100).any()
    assert dm.val_dataloader().dataset.dataset is dm.val_dataset

    # A second module with the same settings reuses the tokenizer and the token caches.
    again = corpus_dm(tmp_path, corpus_file)
    again.setup("fit")
    assert again.tokenizer_dir == dm.tokenizer_dir
    assert again.train_dataset.token_ids.from_cache and again.val_dataset.token_ids.from_cache


def test_corpus_val_file_limits_and_tokenizer_path(tmp_path, corpus_file, make_sentences):
    first = corpus_dm(tmp_path, corpus_file)
    first.prepare()
    val = tmp_path / "val.txt"
    val.write_text("\n".join(make_sentences(50, seed=9, min_len=20, max_len=30)) + "\n")
    dm = corpus_dm(
        tmp_path, corpus_file, val_file=str(val), train_limit=100, val_limit=20, tokenizer=first.tokenizer_dir
    )
    dm.prepare()
    assert len(dm.train_dataset.token_ids) == 100 and len(dm.val_dataset.token_ids) == 20
    assert dm.tokenizer.to_str() == first.tokenizer.to_str() and dm.tokenizer_dir == first.tokenizer_dir


def test_corpus_errors(tmp_path, corpus_file):
    with pytest.raises(UserError, match="nope.txt"):
        corpus_dm(tmp_path, tmp_path / "nope.txt").prepare()
    with pytest.raises(UserError, match="data.train_file"):
        TextCorpusDataModule(cache_dir=str(tmp_path)).prepare()
    with pytest.raises(UserError, match="mlm_probability"):
        corpus_dm(tmp_path, corpus_file, mlm_probability=1.5)
    with pytest.raises(UserError, match="max_seq_len"):
        corpus_dm(tmp_path, corpus_file, max_seq_len=100_000).prepare()


def cls_dm(tmp_path, files, **kw) -> TextClassificationDataModule:
    kw = {"vocab_size": 150, "max_seq_len": 16, "batch_size": 8, "cache_dir": str(tmp_path / "cache"), **kw}
    return TextClassificationDataModule(train_file=str(files["train"]), **kw)


def check_batch(batch, batch_size, num_labels):
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    b, s = batch["input_ids"].shape
    assert b == batch_size and s <= 16
    assert batch["attention_mask"].shape == batch["token_type_ids"].shape == (b, s)
    assert all(
        batch[k].dtype == torch.long for k in ("input_ids", "attention_mask", "token_type_ids", "labels")
    )
    assert batch["labels"].shape == (b,) and batch["labels"].min() >= 0 and batch["labels"].max() < num_labels
    assert (batch["input_ids"][:, 0] == 2).all()


def test_classification_datamodule(tmp_path, classification_files):
    f = classification_files
    dm = cls_dm(tmp_path, f, val_file=str(f["val"]), test_file=str(f["test"]))
    dm.prepare()
    assert dm.label_names == ["neg", "neutral", "pos"]  # sorted
    assert dm.label_map == {"neg": 0, "neutral": 1, "pos": 2}
    assert dm.num_labels == 3 and dm.head_kwargs == {"num_labels": 3}
    assert dm.task_kwargs == {"num_labels": 3, "label_names": ["neg", "neutral", "pos"]}
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (90, 15, 15)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        check_batch(next(iter(loader)), 8, 3)
    # Row 0 of train.tsv is labelled "pos" (conftest cycles pos/neg/neutral).
    assert dm.train_dataset[0]["labels"] == 2 and dm.train_dataset[1]["labels"] == 0
    dm.save_label_map(tmp_path / "out" / "labels.json")
    saved = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert saved == {
        "label_names": ["neg", "neutral", "pos"],
        "label_to_id": {"neg": 0, "neutral": 1, "pos": 2},
    }


def test_classification_val_split_int_labels_jsonl(tmp_path, make_sentences):
    rows = [json.dumps({"sentence": s, "y": i % 2}) for i, s in enumerate(make_sentences(50, seed=4))]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    files = {"train": tmp_path / "train.jsonl"}
    dm = cls_dm(
        tmp_path, files, text_column="sentence", label_column="y", group_by_length=False, val_split=0.2
    )
    dm.prepare()
    assert dm.label_names == ["0", "1"] and dm.num_labels == 2
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (40, 10)
    assert dm.test_dataloader() is None
    check_batch(next(iter(dm.train_dataloader())), 8, 2)
    # The split is seeded: same seed -> same split, other seed -> other split.
    same = cls_dm(tmp_path, files, text_column="sentence", label_column="y", val_split=0.2)
    other = cls_dm(tmp_path, files, text_column="sentence", label_column="y", val_split=0.2, seed=1)
    same.prepare()
    other.prepare()
    assert same.val_dataset.labels.tolist() == dm.val_dataset.labels.tolist()
    assert same.val_dataset.lengths.tolist() == dm.val_dataset.lengths.tolist()
    assert other.val_dataset.lengths.tolist() != dm.val_dataset.lengths.tolist()


def test_classification_pairs(tmp_path, make_sentences, write_tsv):
    rows = [
        (a, b, i % 2)
        for i, (a, b) in enumerate(zip(make_sentences(30, 5), make_sentences(30, 6), strict=True))
    ]
    p = write_tsv(tmp_path / "pairs.tsv", rows, header=("s1", "s2", "label"))
    dm = cls_dm(tmp_path, {"train": p}, text_column="s1", text_pair_column="s2")
    dm.prepare()
    batch = next(iter(dm.train_dataloader()))
    assert (batch["token_type_ids"] == 1).any() and batch["input_ids"].shape[1] <= 16
    # Segment B (type 1) ends with [SEP]; padding has type 0.
    row = batch["token_type_ids"][0][batch["attention_mask"][0].bool()]
    assert row[0] == 0 and row[-1] == 1


def test_classification_regression(tmp_path, make_sentences, write_tsv):
    rows = [(s, f"{i / 10:.3f}") for i, s in enumerate(make_sentences(30, 7))]
    dm = cls_dm(tmp_path, {"train": write_tsv(tmp_path / "r.tsv", rows)}, num_labels=1)
    dm.prepare()
    batch = next(iter(dm.val_dataloader()))
    assert batch["labels"].dtype == torch.float and dm.head_kwargs == {"num_labels": 1}


def test_classification_errors(tmp_path, classification_files, write_tsv):
    f = classification_files
    bad_val = write_tsv(tmp_path / "bad_val.tsv", [("some text", "pos"), ("other", "angry")])
    with pytest.raises(UserError, match=r"'angry'.*bad_val.tsv"):
        cls_dm(tmp_path, f, val_file=str(bad_val)).prepare()
    with pytest.raises(UserError, match=r"num_labels=2.*3 labels"):
        cls_dm(tmp_path, f, num_labels=2).prepare()
    with pytest.raises(UserError, match="'sentence'"):
        cls_dm(tmp_path, f, text_column="sentence").prepare()
    with pytest.raises(UserError, match="missing_test.tsv"):
        cls_dm(tmp_path, f, test_file=str(tmp_path / "missing_test.tsv")).prepare()
    with pytest.raises(UserError, match="val_split"):
        cls_dm(tmp_path, f, val_split=1.0)


def fake_hub(monkeypatch, calls: list, make_sentences, fail: bool = False):
    datasets = pytest.importorskip("datasets")
    rows = make_sentences(40, seed=8, min_len=10, max_len=20)

    def load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        if fail:
            raise ConnectionError("no internet")
        return datasets.Dataset.from_dict(
            {"sentence": rows, "label": [i % 2 for i in range(len(rows))], "idx": list(range(40))}
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


HUB = {
    "path": "stanfordnlp/sst2",
    "name": None,
    "text_column": "sentence",
    "label_column": "label",
    "splits": {"train": "train", "val": "validation", "test": None},
}


def test_hub_fallback(tmp_path, monkeypatch, make_sentences):
    calls = []
    fake_hub(monkeypatch, calls, make_sentences)
    dm = cls_dm(tmp_path, {"train": tmp_path / "absent.tsv"}, hub=HUB)
    dm.prepare()
    assert calls == [("stanfordnlp/sst2", None, "train"), ("stanfordnlp/sst2", None, "validation")]
    assert dm.num_labels == 2 and dm.test_dataloader() is None
    check_batch(next(iter(dm.train_dataloader())), 8, 2)

    corpus = TextCorpusDataModule(
        vocab_size=100,
        max_seq_len=16,
        cache_dir=str(tmp_path / "c"),
        hub={"path": "x/wiki", "text_column": "sentence"},
    )
    corpus.prepare()
    assert len(corpus.train_dataset) > 0 and len(corpus.val_dataset) > 0


def test_local_file_wins_over_hub(tmp_path, monkeypatch, classification_files, make_sentences):
    calls = []
    fake_hub(monkeypatch, calls, make_sentences)
    cls_dm(tmp_path, classification_files, hub=HUB).prepare()
    assert calls == []


def test_hub_unreachable(tmp_path, monkeypatch, make_sentences):
    fake_hub(monkeypatch, [], make_sentences, fail=True)
    with pytest.raises(UserError, match=r"absent.tsv.*missing.*stanfordnlp/sst2"):
        cls_dm(tmp_path, {"train": tmp_path / "absent.tsv"}, hub=HUB).prepare()
