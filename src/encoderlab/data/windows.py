"""Texts longer than the encoder's window: cut to it (``data.long_documents=truncate``) or read whole in
overlapping windows (``window``), each framed by the special tokens the tokenizer's post-processor puts
around a text ([CLS] … [SEP], <s> … </s>).

A window holds ``width = max_seq_len - (special tokens)`` text tokens; a new one starts every
``window_stride`` text tokens, so consecutive windows share ``width - window_stride`` tokens, until one
reaches the end of the text; ``max_windows`` caps their number (the rest of a longer text is cut). A text
that fits in one window is encoded exactly as truncation encodes it. The collator batches the windows of
``batch_size`` documents with ``document_index`` (the document of each window, in batch order), which the
head uses to pool the windows back into one vector, and one prediction, per document.

Both readings report what they did to the data (:meth:`Truncation.report`, :meth:`Windows.report`): how
many documents lost tokens, and with windows how many each document needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import Dataset

from encoderlab.data.collators import PaddingCollator, label_tensor
from encoderlab.data.datasets import LabelledDataset
from encoderlab.data.token_cache import TokenIds
from encoderlab.data.tokenizer import encoding_copy, special_token_ids
from encoderlab.errors import UserError
from encoderlab.validate import between, check, only_with

LONG_DOCUMENTS = ("truncate", "window")  # data.long_documents
DEFAULT_MAX_WINDOWS = 16


def check_reading(long_documents: str, window_stride: int | None, text_pair_column: str | None) -> None:
    """The settings that only mean something together (each value's own rule is in ``data.base``)."""
    windowed = long_documents == "window"
    check(
        "data.window_stride", window_stride, only_with(windowed, "data.long_documents=window"), optional=True
    )
    if windowed and text_pair_column:
        raise UserError(
            f"data.long_documents=window reads single texts, but data.text_pair_column={text_pair_column} is "
            "set — use data.long_documents=truncate for sentence pairs"
        )


# ------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Frame:
    """The special tokens (and their token types) the tokenizer puts before and after one text."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_types: tuple[int, ...]
    suffix_types: tuple[int, ...]
    text_type: int

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> Frame:
        # One encoded word shows where the post-processor puts the text among its special tokens.
        e = tokenizer.encode("a", add_special_tokens=True)
        text = [i for i, special in enumerate(e.special_tokens_mask) if not special]
        if not text:
            raise ValueError("the tokenizer encodes 'a' as special tokens only; cannot find its frame")
        first, last = text[0], text[-1] + 1
        return cls(
            prefix=tuple(e.ids[:first]),
            suffix=tuple(e.ids[last:]),
            prefix_types=tuple(e.type_ids[:first]),
            suffix_types=tuple(e.type_ids[last:]),
            text_type=e.type_ids[first],
        )

    def __len__(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def wrap(self, text_ids: np.ndarray) -> dict[str, torch.Tensor]:
        """One window's model inputs: the prefix, the text tokens, the suffix."""
        ids = np.concatenate([self.prefix, np.asarray(text_ids, dtype=np.int64), self.suffix])
        types = [*self.prefix_types, *[self.text_type] * len(text_ids), *self.suffix_types]
        return {
            "input_ids": torch.from_numpy(ids.astype(np.int64)),
            "token_type_ids": torch.tensor(types, dtype=torch.long),
        }


def windows_needed(n_tokens: np.ndarray | int, width: int, stride: int) -> np.ndarray:
    """Windows of ``width`` text tokens, one every ``stride`` tokens, that cover ``n_tokens`` (at least one)."""
    beyond = np.maximum(np.asarray(n_tokens) - width, 0)
    return 1 + -(-beyond // stride)


def window_spans(n_tokens: int, width: int, stride: int, max_windows: int | None) -> list[tuple[int, int]]:
    """``(start, end)`` of each window's text tokens: starts ``0, stride, 2 * stride, ...`` until a window
    reaches ``n_tokens``, the first ``max_windows`` of them."""
    count = int(windows_needed(n_tokens, width, stride))
    if max_windows is not None:
        count = min(count, max_windows)
    return [(k * stride, min(k * stride + width, n_tokens)) for k in range(count)]


class WindowedDataset(Dataset):
    """Documents (text token ids without special tokens) with one label each, read as windows.

    Items: ``{"windows": [{"input_ids", "token_type_ids"}, ...], "labels": ...}``. ``lengths`` (what the
    length-grouped sampler groups by) counts a document's framed window tokens, so batches hold documents of
    similar cost.
    """

    def __init__(self, token_ids: TokenIds, labels, windows: Windows) -> None:
        if len(labels) != len(token_ids):
            raise ValueError(f"{len(labels)} labels for {len(token_ids)} documents")
        self.token_ids = token_ids
        self.labels = np.asarray(labels)
        self.windows = windows
        self.lengths = windows.framed_tokens(token_ids.lengths)

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, i: int) -> dict:
        label = self.labels[i]
        label = label.item() if label.ndim == 0 else torch.from_numpy(label)
        return {"windows": self.windows.split(self.token_ids[i]), "labels": label}


class WindowCollator:
    """Windows of a batch of documents, padded to the longest window, with ``document_index`` [W] (the
    batch position of each window's document) and one label per document."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.padding = PaddingCollator(pad_id, pad_to_multiple_of)

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        return {
            **self.inputs([it["windows"] for it in items]),
            "labels": label_tensor([it["labels"] for it in items]),
        }

    def inputs(self, documents: Sequence[list[dict]]) -> dict[str, torch.Tensor]:
        """The padded windows of ``documents`` (each a list of windows) and their ``document_index``."""
        windows = [w for document in documents for w in document]
        index = [d for d, document in enumerate(documents) for _ in document]
        return {**self.padding.inputs(windows), "document_index": torch.tensor(index, dtype=torch.long)}


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


class Windows:
    """``data.long_documents=window``: each text in overlapping windows of ``max_seq_len`` tokens.

    ``stride`` (``data.window_stride``): text tokens from one window's start to the next one's; None takes
    half a window. ``max_windows`` (``data.max_windows``): at most this many windows per document (None:
    no cap), so one huge document cannot take the memory of a whole batch. ``stride_key`` names the stride
    in errors (the option a command reads it from).
    """

    mode = "window"

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_seq_len: int,
        stride: int | None = None,
        max_windows: int | None = None,
        stride_key: str = "data.window_stride",
    ) -> None:
        self.frame = Frame.of(tokenizer)
        self.max_seq_len = max_seq_len
        self.width = max_seq_len - len(self.frame)
        if self.width < 1:
            raise UserError(
                f"data.max_seq_len={max_seq_len} leaves no room for text beside the {len(self.frame)} special "
                f"tokens — set data.max_seq_len to {len(self.frame) + 1} or more"
            )
        # Overlap up to the whole window less one token; a stride above the width would skip tokens.
        why = f"a window holds {self.width} text tokens at data.max_seq_len={max_seq_len}"
        self.stride = check(
            stride_key,
            max(1, self.width // 2) if stride is None else stride,
            between(1, self.width, why),
        )
        self.max_windows = max_windows
        self.pad_id = special_token_ids(tokenizer)["pad"]

    @property
    def overlap(self) -> int:
        """Text tokens two consecutive windows share."""
        return self.width - self.stride

    def settings(self) -> dict:
        """The values a run records, from which prediction windows new texts the same way."""
        return {"long_documents": self.mode, "window_stride": self.stride, "max_windows": self.max_windows}

    def counts(self, lengths: np.ndarray) -> np.ndarray:
        """Windows used per document of ``lengths`` text tokens (after the cap)."""
        needed = windows_needed(lengths, self.width, self.stride)
        return needed if self.max_windows is None else np.minimum(needed, self.max_windows)

    def framed_tokens(self, lengths: np.ndarray) -> np.ndarray:
        """Tokens of all windows of each document, special tokens included (what the encoder reads)."""
        used = self.counts(lengths)
        # Every window but the last is full; the last holds what is left after the others' starts.
        last = np.clip(np.asarray(lengths) - (used - 1) * self.stride, 0, self.width)
        return (used - 1) * self.width + last + used * len(self.frame)

    def split(self, text_ids: np.ndarray) -> list[dict[str, torch.Tensor]]:
        """One document's windows (model inputs), in order."""
        spans = window_spans(len(text_ids), self.width, self.stride, self.max_windows)
        return [self.frame.wrap(text_ids[start:end]) for start, end in spans]

    # -- what the data module builds with it --------------------------------------------------
    @staticmethod
    def encoding() -> dict:
        """How the token-id cache encodes the texts: whole, without special tokens (windows add them)."""
        return {"add_special_tokens": False, "max_length": None}

    def dataset(self, token_ids: TokenIds, labels) -> WindowedDataset:
        return WindowedDataset(token_ids, labels, self)

    @staticmethod
    def collator(pad_id: int) -> WindowCollator:
        return WindowCollator(pad_id)

    def inputs(self, tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Model inputs for raw texts, windowed as in training (prediction, embeddings)."""
        encodings = encoding_copy(tokenizer, None).encode_batch(list(texts), add_special_tokens=False)
        documents = [self.split(np.asarray(e.ids, dtype=np.int64)) for e in encodings]
        return WindowCollator(self.pad_id).inputs(documents)

    # -- what it did to the data -------------------------------------------------------------
    def report(self, dataset: WindowedDataset) -> dict:
        """Documents, how many span more than one window, windows per document (mean, most) and how many
        were cut by ``max_windows`` (``cut``, ``cut_share``)."""
        lengths = dataset.token_ids.lengths
        needed = windows_needed(lengths, self.width, self.stride)
        used = self.counts(lengths)
        n, cut = len(lengths), int((needed > used).sum())
        return {
            "documents": n,
            "longer_than_window": int((lengths > self.width).sum()),
            "mean_windows": round(float(used.mean()), 2) if n else 0.0,
            "most_windows": int(used.max()) if n else 0,
            "cut": cut,
            "cut_share": _share(cut, n),
        }

    def summary(self, report: dict) -> str:
        """The report as the one line a run logs at its start."""
        n, longer = report["documents"], report["longer_than_window"]
        cap = "no cap" if self.max_windows is None else f"data.max_windows={self.max_windows}"
        return (
            f"long documents: {longer} of {n} training texts ({_share(longer, n):.1%}) span more than one "
            f"window of {self.max_seq_len} tokens; {report['mean_windows']:.2f} windows per text on average, at "
            f"most {report['most_windows']} (a new window every {self.stride} tokens, {self.overlap} shared); "
            f"{report['cut']} cut by {cap}"
        )


class Truncation:
    """``data.long_documents=truncate`` (the default): each text cut to ``max_seq_len`` tokens, special
    tokens included (sentence pairs longest-first)."""

    mode = "truncate"

    def __init__(self, max_seq_len: int) -> None:
        self.max_seq_len = max_seq_len

    def settings(self) -> dict:
        return {"long_documents": self.mode}

    def encoding(self) -> dict:
        return {"add_special_tokens": True, "max_length": self.max_seq_len}

    @staticmethod
    def dataset(token_ids: TokenIds, labels) -> LabelledDataset:
        return LabelledDataset(token_ids, labels)

    @staticmethod
    def collator(pad_id: int) -> PaddingCollator:
        return PaddingCollator(pad_id)

    def report(self, dataset: LabelledDataset) -> dict:
        """Documents and how many were cut (``cut``, ``cut_share``)."""
        ids = dataset.token_ids
        # Caches written before they recorded truncation: a text at the limit may have been cut.
        cut = ids.truncated if ids.truncated is not None else ids.lengths >= self.max_seq_len
        n = len(ids)
        return {
            "documents": n,
            "cut": int(np.count_nonzero(cut)),
            "cut_share": _share(int(np.count_nonzero(cut)), n),
        }

    def summary(self, report: dict) -> str:
        n, cut = report["documents"], report["cut"]
        return (
            f"long documents: {cut} of {n} training texts ({report['cut_share']:.1%}) are longer than "
            f"data.max_seq_len={self.max_seq_len} tokens and get cut"
            + (" (data.long_documents=window reads them whole, in overlapping windows)" if cut else "")
        )


def reading(
    long_documents: str, tokenizer: Tokenizer, max_seq_len: int, stride: int | None, max_windows: int | None
) -> Truncation | Windows:
    """The reading ``data.long_documents`` names, for this tokenizer."""
    if long_documents == "window":
        return Windows(tokenizer, max_seq_len, stride, max_windows)
    return Truncation(max_seq_len)


def recorded_windows(data: dict, tokenizer: Tokenizer, max_seq_len: int) -> Windows | None:
    """The windows a run recorded (its ``task.json`` data settings); None for a run that truncated (every
    run recorded before windows existed)."""
    if data.get("long_documents") != "window":
        return None
    return Windows(tokenizer, max_seq_len, data.get("window_stride"), data.get("max_windows"))
