from __future__ import annotations

import pickle

import numpy as np

from encoderlab.data.readers import file_fingerprint, read_corpus
from encoderlab.data.token_cache import cached_token_ids
from encoderlab.data.tokenizer import train_wordpiece


def test_cache_hit_and_misses(tmp_path, corpus_file, tokenizer):
    cache = str(tmp_path / "cache")
    calls = []

    def texts():
        calls.append(1)
        return read_corpus(corpus_file)

    key = [file_fingerprint(corpus_file)]
    first = cached_token_ids(texts, tokenizer, cache, key, add_special_tokens=False)
    second = cached_token_ids(texts, tokenizer, cache, key, add_special_tokens=False)
    assert not first.from_cache and second.from_cache and len(calls) == 1
    assert np.array_equal(first.ids, second.ids) and np.array_equal(first.offsets, second.offsets)
    assert first.ids.dtype == np.uint16 and first.offsets.dtype == np.int64
    assert len(first) == len(read_corpus(corpus_file)) and len(first.offsets) == len(first) + 1
    expected = tokenizer.encode(read_corpus(corpus_file)[3], add_special_tokens=False).ids
    assert first[3].tolist() == expected

    # Changed file contents -> different fingerprint -> miss.
    corpus_file.write_text("brand new text here\n", encoding="utf-8")
    third = cached_token_ids(
        texts, tokenizer, cache, [file_fingerprint(corpus_file)], add_special_tokens=False
    )
    assert not third.from_cache and len(third) == 1
    # Different tokenizer -> miss.
    other = train_wordpiece(["brand new text here"] * 3, vocab_size=60)
    assert not cached_token_ids(texts, other, cache, key, add_special_tokens=False).from_cache
    # Different encoding settings -> miss.
    assert not cached_token_ids(texts, tokenizer, cache, key, add_special_tokens=True).from_cache
    assert not list((tmp_path / "cache" / "tokens").glob(".*"))  # no temp dirs left behind


def test_token_ids_pickle_by_path(tmp_path, tokenizer, sentences):
    ids = cached_token_ids(lambda: sentences, tokenizer, str(tmp_path), ["x"], add_special_tokens=False)
    blob = pickle.dumps(ids)
    assert len(blob) < 2000  # path only, not the data
    back = pickle.loads(blob)
    assert np.array_equal(back[5], ids[5]) and isinstance(back.ids, np.memmap)


def test_span_reads_the_stream_without_the_memory_map(tmp_path, corpus_file, tokenizer):
    ids = cached_token_ids(
        lambda: read_corpus(corpus_file), tokenizer, str(tmp_path), ["k"], add_special_tokens=False
    )
    reopened = pickle.loads(pickle.dumps(ids))  # as a DataLoader worker gets it
    n = ids.n_tokens
    for start, stop in ((0, 5), (n // 3, n // 3 + 17), (n - 4, n)):
        piece = reopened.span(start, stop)
        assert piece.dtype == ids.ids.dtype and not isinstance(piece, np.memmap)
        assert piece.tolist() == ids.ids[start:stop].tolist()
