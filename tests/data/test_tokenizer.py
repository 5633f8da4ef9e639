from __future__ import annotations

import json

import pytest

from encoderlab.data.tokenizer import (
    SPECIAL_TOKENS,
    load_tokenizer,
    resolve_tokenizer,
    save_tokenizer,
    special_token_ids,
    train_wordpiece,
)
from encoderlab.errors import UserError

TEXT = "The funny actor's movie, a BORING story!"


def test_trained_tokenizer(tokenizer):
    assert [tokenizer.id_to_token(i) for i in range(5)] == SPECIAL_TOKENS
    assert special_token_ids(tokenizer) == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert tokenizer.get_vocab_size() <= 200
    enc = tokenizer.encode(TEXT)
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert "boring" in enc.tokens  # lowercased
    pair = tokenizer.encode("good film", "bad plot")
    assert pair.tokens.count("[SEP]") == 2 and pair.type_ids[-1] == 1 and pair.type_ids[0] == 0
    assert tokenizer.truncation is None and tokenizer.padding is None


def test_cased_tokenizer(sentences):
    tok = train_wordpiece([s.title() for s in sentences], vocab_size=200, lowercase=False)
    assert "Film" in tok.get_vocab()


def test_save_load_round_trip(tmp_path, tokenizer):
    save_tokenizer(tokenizer, tmp_path / "tok")
    vocab_lines = (tmp_path / "tok" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab_lines[:5] == SPECIAL_TOKENS and len(vocab_lines) == tokenizer.get_vocab_size()
    for path in (tmp_path / "tok", tmp_path / "tok" / "tokenizer.json"):
        loaded = load_tokenizer(path)
        assert loaded.encode(TEXT).ids == tokenizer.encode(TEXT).ids

    # A directory holding only vocab.txt (e.g. a BERT checkpoint) builds an equivalent tokenizer.
    only_vocab = tmp_path / "vocab_only"
    only_vocab.mkdir()
    (only_vocab / "vocab.txt").write_text("\n".join(vocab_lines) + "\n", encoding="utf-8")
    from_vocab = load_tokenizer(only_vocab)
    assert from_vocab.encode(TEXT).ids == tokenizer.encode(TEXT).ids
    assert from_vocab.encode("a", "b").type_ids == tokenizer.encode("a", "b").type_ids


def test_hf_bert_tokenizer_reads_vocab(tmp_path, tokenizer):
    transformers = pytest.importorskip("transformers")
    save_tokenizer(tokenizer, tmp_path)
    (tmp_path / "tokenizer.json").unlink()  # make transformers build its tokenizer from vocab.txt alone
    hf = transformers.BertTokenizer.from_pretrained(str(tmp_path))
    assert hf(TEXT)["input_ids"] == tokenizer.encode(TEXT).ids


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"\[CLS\]"):
        load_tokenizer(tmp_path / "v")


def test_load_sets_post_processor(tmp_path, tokenizer):
    data = json.loads(tokenizer.to_str())
    data["post_processor"] = None
    data["truncation"] = {"direction": "Right", "max_length": 3, "strategy": "LongestFirst", "stride": 0}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode(TEXT).ids == tokenizer.encode(TEXT).ids


def test_resolve_tokenizer_caches(tmp_path, sentences):
    calls = []

    def texts():
        calls.append(1)
        return sentences

    tok1, d1 = resolve_tokenizer(None, texts, 150, True, str(tmp_path), "fp1")
    tok2, d2 = resolve_tokenizer(None, texts, 150, True, str(tmp_path), "fp1")
    assert d1 == d2 and len(calls) == 1 and tok1.to_str() == tok2.to_str()
    _, d3 = resolve_tokenizer(None, texts, 150, True, str(tmp_path), "fp2")
    _, d4 = resolve_tokenizer(None, texts, 160, True, str(tmp_path), "fp1")
    assert len({d1, d3, d4}) == 3 and len(calls) == 3
    tok5, d5 = resolve_tokenizer(d1, texts, 999, True, str(tmp_path), "ignored")
    assert d5 == d1 and len(calls) == 3 and tok5.get_vocab_size() == tok1.get_vocab_size()
