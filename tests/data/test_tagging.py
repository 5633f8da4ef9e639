"""Word-tagged data: CoNLL / JSONL reading, word-piece label alignment, the datamodule and its batches."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from encoderlab.data.collators import IGNORE_INDEX
from encoderlab.data.conll import read_conll
from encoderlab.data.tagging import (
    TokenClassificationDataModule,
    align_labels,
    continuation_labels,
)
from encoderlab.errors import UserError
from tests.conftest import conll_sentences, write_conll

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_read_conll_skips_docstart_and_splits_on_blank_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
        "-DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n",
        encoding="utf-8",
    )
    words, tags = read_conll(path)
    assert words == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert read_conll(path, tag_column=1)[1] == [["NNP", "VBZ"], ["NNP", "NNP"]]


def test_read_conll_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"line 2 of .*bad.txt.*tag_column"):
        read_conll(bad, tag_column=1)
    empty = tmp_path / "empty.txt"
    empty.write_text("-DOCSTART- -X- O\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="no tagged words"):
        read_conll(empty)


def test_first_piece_carries_the_label_the_rest_and_specials_get_ignore():
    # [CLS] Wash ##ington is big [SEP]  →  words 0, 0, 1, 2
    word_ids = [None, 0, 0, 1, 2, None]
    labels, starts = align_labels(word_ids, [3, 0, 0])
    assert labels == [IGNORE_INDEX, 3, IGNORE_INDEX, 0, 0, IGNORE_INDEX]
    assert starts == [-1, 0, -1, 1, 2, -1]


def test_label_all_subtokens_continues_b_as_i():
    continuation = continuation_labels(LABELS)
    assert continuation == [0, 2, 2, 4, 4]
    # [CLS] Ja ##ck ##son met Lo ##ndon [SEP]: B-PER, O, B-LOC
    word_ids = [None, 0, 0, 0, 1, 2, 2, None]
    labels, starts = align_labels(word_ids, [1, 0, 3], label_all_subtokens=True, continuation=continuation)
    assert labels == [IGNORE_INDEX, 1, 2, 2, 0, 3, 4, IGNORE_INDEX]
    assert starts == [-1, 0, -1, -1, 1, 2, -1, -1]


def test_alignment_with_a_real_tokenizer():
    vocab = {
        t: i
        for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "new", "york", "##er", "is"])
    }
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    enc = tok.encode(["new", "yorker", "is"], is_pretokenized=True)
    assert enc.tokens == ["[CLS]", "new", "york", "##er", "is", "[SEP]"]
    labels, _ = align_labels(enc.word_ids, [3, 4, 0])
    assert labels == [IGNORE_INDEX, 3, 4, IGNORE_INDEX, 0, IGNORE_INDEX]


def datamodule(tmp_path, **kwargs) -> TokenClassificationDataModule:
    files = {
        "train_file": write_conll(tmp_path / "train.txt", conll_sentences(60, 1)),
        "val_file": write_conll(tmp_path / "dev.txt", conll_sentences(20, 2)),
    }
    defaults = {"vocab_size": 200, "max_seq_len": 32, "batch_size": 4, "cache_dir": str(tmp_path / "cache")}
    return TokenClassificationDataModule(**{**{k: str(v) for k, v in files.items()}, **defaults, **kwargs})


def test_datamodule_batches_align_words(tmp_path):
    dm = datamodule(tmp_path)
    dm.prepare()
    assert dm.label_names[0] == "O" and dm.label_names[1:] == sorted(dm.label_names[1:])
    assert dm.head_kwargs == {"num_labels": 7} and dm.task_kwargs["label_names"] == dm.label_names
    assert dm.test_dataloader() is None
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "labels",
        "word_index",
        "word_labels",
    }
    for row in range(4):
        starts = batch["word_index"][row]
        labelled = batch["labels"][row] != IGNORE_INDEX
        # Exactly the word-start tokens carry labels, and they carry their word's gold tag.
        assert torch.equal(labelled, starts >= 0)
        assert torch.equal(batch["labels"][row][labelled], batch["word_labels"][row][starts[labelled]])
        n_words = int((batch["word_labels"][row] != IGNORE_INDEX).sum())
        assert starts[labelled].tolist() == list(range(n_words))
        assert batch["labels"][row][0] == IGNORE_INDEX  # [CLS]


def test_truncation_keeps_every_gold_word(tmp_path):
    dm = datamodule(tmp_path, max_seq_len=6)
    dm.prepare()
    sentences = conll_sentences(20, 2)
    longest = max(range(len(sentences)), key=lambda i: len(sentences[i]))
    item = dm.val_dataset[longest]
    assert len(item["input_ids"]) <= 6 and len(sentences[longest]) > 4
    assert int((item["word_index"] >= 0).sum()) == 4  # [CLS] + 4 one-piece words + [SEP]
    assert len(item["word_labels"]) == len(sentences[longest])  # the cut-off words still count in scoring


def test_label_names_fix_the_order_and_catch_unknown_tags(tmp_path):
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC"]
    dm = datamodule(tmp_path, label_names=names)
    dm.prepare()
    assert dm.label_names == names
    with pytest.raises(UserError, match=r"B-ORG.*not in data.label_names"):
        datamodule(tmp_path, label_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]).prepare()


def test_jsonl_with_integer_tags_needs_label_names(tmp_path):
    rows = [
        {"tokens": ["Ada", "met", "Alan"], "ner_tags": [1, 0, 1]},
        {"tokens": ["in", "Paris"], "ner_tags": [0, 2]},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 10), encoding="utf-8")
    common = {
        "train_file": str(path),
        "tags_column": "ner_tags",
        "vocab_size": 100,
        "cache_dir": str(tmp_path),
    }
    with pytest.raises(UserError, match="set data.label_names"):
        TokenClassificationDataModule(**common).prepare()
    dm = TokenClassificationDataModule(**common, label_names=["O", "B-PER", "B-LOC"])
    dm.prepare()
    assert len(dm.train_dataset) + len(dm.val_dataset) == 20
    assert sorted(set(dm.train_dataset[0]["word_labels"].tolist())) in ([0, 1], [0, 2])


def test_unseen_validation_tag(tmp_path):
    dev = tmp_path / "odd.txt"
    dev.write_text("Ada NN I-NP B-ANIMAL\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"B-ANIMAL.*odd.txt"):
        datamodule(tmp_path, val_file=str(dev)).prepare()


def test_hub_fallback_maps_integer_tags_through_label_names(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(path, name=None, split=None, **kw):
        calls.append((path, split))
        rows = conll_sentences(30, 5)
        ids = {"O": 0, "B-PER": 1, "I-PER": 2, "B-ORG": 3, "I-ORG": 4, "B-LOC": 5, "I-LOC": 6}
        return datasets.Dataset.from_dict(
            {"tokens": [[w for w, _ in s] for s in rows], "ner_tags": [[ids[t] for _, t in s] for s in rows]}
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    hub = {
        "path": "eriktks/conll2003",
        "tokens_column": "tokens",
        "tags_column": "ner_tags",
        "splits": {"train": "train", "val": "validation", "test": None},
    }
    dm = TokenClassificationDataModule(
        train_file=str(tmp_path / "absent.txt"),
        label_names=names,
        hub=hub,
        vocab_size=100,
        cache_dir=str(tmp_path),
    )
    dm.prepare()
    assert calls == [("eriktks/conll2003", "train"), ("eriktks/conll2003", "validation")]
    assert dm.label_names == names and dm.test_dataset is None
    first = conll_sentences(30, 5)[0]
    assert [names[i] for i in dm.train_dataset[0]["word_labels"].tolist()] == [t for _, t in first]
