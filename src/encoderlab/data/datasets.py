"""torch Datasets over cached token ids (memory-mapped; nothing proportional to the corpus is copied)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from encoderlab.data.token_cache import TokenIds
from encoderlab.validate import at_least, check


class PackedSequenceDataset(Dataset):
    """Fixed-length MLM blocks ``[CLS] + chunk + [SEP]`` cut from the concatenated token stream.

    Packing wastes no compute on padding; block ``i`` covers stream tokens
    ``[i*(seq_len-2), (i+1)*(seq_len-2))`` and the trailing partial block is dropped.
    """

    def __init__(self, token_ids: TokenIds, seq_len: int, cls_id: int, sep_id: int):
        check("data.max_seq_len", seq_len, at_least(3))  # [CLS], one token, [SEP]
        self.token_ids = token_ids
        self.seq_len = seq_len
        self.chunk = seq_len - 2
        self.cls_id = cls_id
        self.sep_id = sep_id

    def __len__(self) -> int:
        return self.token_ids.n_tokens // self.chunk

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(i)
        # The flat token stream is the corpus itself; this reads only this block from disk.
        chunk = self.token_ids.span(i * self.chunk, (i + 1) * self.chunk)
        return framed_block(chunk, self.cls_id, self.sep_id)


def framed_block(tokens: np.ndarray, cls_id: int, sep_id: int) -> torch.Tensor:
    """``[CLS] + tokens + [SEP]`` as one LongTensor: an MLM block of the packed stream (the token cache's
    and the shards' alike)."""
    out = torch.empty(len(tokens) + 2, dtype=torch.long)
    out[0] = cls_id
    out[1:-1] = torch.from_numpy(np.asarray(tokens).astype(np.int64))
    out[-1] = sep_id
    return out


class LabelledDataset(Dataset):
    """Encoded (already truncated, special tokens included) sequences with one label each.

    Items: ``{"input_ids": LongTensor[S], "token_type_ids": LongTensor[S], "labels": int | float | Tensor[L]}``.
    For text pairs the token type ids come from the tokenizer (cached alongside the ids).
    """

    def __init__(self, token_ids: TokenIds, labels, pair_token_ids: TokenIds | None = None):
        if len(labels) != len(token_ids):
            raise ValueError(f"{len(labels)} labels for {len(token_ids)} sequences")
        if pair_token_ids is not None and len(pair_token_ids) != len(token_ids):
            raise ValueError("pair_token_ids must have one sequence per example")
        self.token_ids = token_ids
        self.pair_token_ids = pair_token_ids
        self.labels = np.asarray(labels)
        self.lengths = token_ids.lengths + (pair_token_ids.lengths if pair_token_ids is not None else 0)

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, i: int) -> dict:
        ids = torch.from_numpy(self.token_ids[i].astype(np.int64))
        types = self.token_ids.type_ids_of(i)
        types = torch.zeros_like(ids) if types is None else torch.from_numpy(types.astype(np.int64))
        if self.pair_token_ids is not None:
            # Pre-encoded second segment (no [CLS]); segment B gets type id 1.
            ids_b = torch.from_numpy(self.pair_token_ids[i].astype(np.int64))
            ids = torch.cat([ids, ids_b])
            types = torch.cat([types, torch.ones_like(ids_b)])
        label = self.labels[i]
        # One number (class id, regression target) or a vector (multi-label targets).
        label = label.item() if label.ndim == 0 else torch.from_numpy(label)
        return {"input_ids": ids, "token_type_ids": types, "labels": label}
