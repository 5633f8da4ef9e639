from __future__ import annotations

import numpy as np
import torch

from encoderlab.data.datasets import LabelledDataset, PackedSequenceDataset
from encoderlab.data.token_cache import cached_token_ids


def test_packing(tmp_path, tokenizer, sentences):
    tok_ids = cached_token_ids(lambda: sentences, tokenizer, str(tmp_path), ["s"], add_special_tokens=False)
    stream = np.concatenate([tok_ids[i] for i in range(len(tok_ids))]).astype(np.int64)
    assert isinstance(tok_ids.ids, np.memmap)
    ds = PackedSequenceDataset(tok_ids, seq_len=32, cls_id=2, sep_id=3)
    assert len(ds) == len(stream) // 30 > 10
    blocks = [ds[i] for i in range(len(ds))]
    for b in blocks:
        assert b.dtype == torch.long and b.shape == (32,)
        assert b[0] == 2 and b[-1] == 3
    inner = torch.cat([b[1:-1] for b in blocks]).numpy()
    assert np.array_equal(inner, stream[: len(ds) * 30])
    # The dataset reads the flat memmap directly rather than holding a copy.
    assert ds.token_ids.ids is tok_ids.ids


def test_labelled_dataset_pairs(tmp_path, tokenizer):
    pairs = [("the film was good", "a great movie"), ("bad plot", "the story was long and boring")]
    ids = cached_token_ids(lambda: pairs, tokenizer, str(tmp_path), ["p"], True, max_length=8, pairs=True)
    ds = LabelledDataset(ids, [1, 0])
    item = ds[1]
    assert set(item) == {"input_ids", "token_type_ids", "labels"}
    assert len(item["input_ids"]) == 8 == len(item["token_type_ids"])  # truncated to max_length
    assert item["input_ids"][0] == 2 and item["input_ids"][-1] == 3
    assert item["token_type_ids"][0] == 0 and item["token_type_ids"][-1] == 1
    assert item["labels"] == 0
    assert ds.lengths.tolist() == [len(ds[0]["input_ids"]), 8]
