"""Token classification (NER): word-tagged sentences → word pieces with labels aligned to words.

Each word's label goes on its first word piece; the other pieces of the word and the special tokens get
-100 (ignored by the loss), unless ``label_all_subtokens`` puts the word's label on every piece (a ``B-X``
continuing as ``I-X``). Each item also carries, per token, the index of the word it starts (-1 elsewhere)
and every word's gold tag, so evaluation works on words: one prediction per word, read at its first
piece, and words cut off by ``max_seq_len`` count as predicted ``O`` (their entities are missed, not
dropped from the score).
"""

from __future__ import annotations

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import Dataset

from encoderlab.data.base import (
    LabelledDataModule,
    LabelMap,
    Targets,
    heldout_split,
    hub_fingerprint,
    load_hub_split,
    local_file,
    missing_file_error,
    missing_train_error,
)
from encoderlab.data.collators import IGNORE_INDEX, pad_sequences
from encoderlab.data.conll import read_tagged
from encoderlab.data.readers import file_fingerprint
from encoderlab.data.tokenizer import encoding_copy, resolve_tokenizer, special_token_ids
from encoderlab.errors import UserError
from encoderlab.validate import boolean, check, integer

OUTSIDE = "O"


def continuation_labels(label_names: list[str]) -> list[int]:
    """For each label id, the id a later piece of the same word gets: ``B-X`` → ``I-X`` when it exists."""
    ids = {name: i for i, name in enumerate(label_names)}
    return [ids.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(label_names)]


def word_starts(word_ids: list[int | None]) -> list[int]:
    """Per token, the index of the word whose first piece it is (-1 on later pieces and special tokens)."""
    starts: list[int] = []
    previous = None
    for w in word_ids:
        starts.append(w if w is not None and w != previous else -1)
        previous = w
    return starts


def align_labels(
    word_ids: list[int | None],
    word_labels: list[int],
    label_all_subtokens: bool = False,
    continuation: list[int] | None = None,
) -> tuple[list[int], list[int]]:
    """Per-token labels and per-token word starts for one encoded sentence.

    ``word_ids`` is the tokenizer's word index per token (None on special tokens). Returns the token
    labels (-100 on specials and, unless ``label_all_subtokens``, on every piece after a word's first)
    and, per token, the index of the word whose first piece it is (-1 elsewhere).
    """
    starts = word_starts(word_ids)
    labels: list[int] = []
    for w, start in zip(word_ids, starts, strict=True):
        if w is None:
            labels.append(IGNORE_INDEX)
        elif start >= 0:
            labels.append(word_labels[w])
        else:
            label = word_labels[w]
            labels.append(
                (continuation[label] if continuation else label) if label_all_subtokens else IGNORE_INDEX
            )
    return labels, starts


class TaggedDataset(Dataset):
    """Encoded sentences with aligned token labels, word starts and the words' gold labels."""

    def __init__(
        self,
        input_ids: list[np.ndarray],
        labels: list[np.ndarray],
        word_index: list[np.ndarray],
        word_labels: list[np.ndarray],
    ):
        self.input_ids = input_ids
        self.labels = labels
        self.word_index = word_index
        self.word_labels = word_labels
        self.lengths = np.asarray([len(x) for x in input_ids])

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": torch.from_numpy(self.input_ids[i]),
            "labels": torch.from_numpy(self.labels[i]),
            "word_index": torch.from_numpy(self.word_index[i]),
            "word_labels": torch.from_numpy(self.word_labels[i]),
        }


class TaggingCollator:
    """Pad a batch of TaggedDataset items: ids with [PAD], labels with -100, word starts with -1."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {
            **self.inputs(items),
            "labels": pad_sequences([it["labels"] for it in items], IGNORE_INDEX),
            "word_labels": pad_sequences([it["word_labels"] for it in items], IGNORE_INDEX),
        }

    def inputs(self, items: list[dict]) -> dict[str, torch.Tensor]:
        """The padded model inputs and word starts alone (prediction has no labels)."""
        ids = [it["input_ids"] for it in items]
        input_ids = pad_sequences(ids, self.pad_id)
        attention_mask = torch.zeros_like(input_ids)
        for row, s in zip(attention_mask, ids, strict=True):
            row[: len(s)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
            "word_index": pad_sequences([it["word_index"] for it in items], -1),
        }


class TokenClassificationDataModule(LabelledDataModule):
    """Word-tagged sentences (CoNLL columns or JSONL lists) for a token classifier, with dynamic padding.

    ``label_names`` fixes the label set and its order (needed when the hub gives tags as integers);
    without it the labels are the training tags, ``O`` first, the rest sorted.
    """

    targets = Targets.WORD_TAGS
    prediction_input = "words"  # one prediction input is a sentence as a list of words

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        tokens_column: str = "tokens",
        tags_column: str = "tags",
        tag_column: int = -1,
        label_names: list[str] | None = None,
        label_all_subtokens: bool = False,
        tokenizer: str | None = None,
        vocab_size: int = 8192,
        lowercase: bool = False,
        max_seq_len: int = 128,
        batch_size: int = 32,
        train_limit: int | None = None,
        val_split: float = 0.1,
        group_by_length: bool = True,
        num_workers: int = 0,
        cache_dir: str = ".cache/encoderlab",
        hub: dict | None = None,
        seed: int = 0,
    ):
        super().__init__(
            tokenizer=tokenizer,
            vocab_size=vocab_size,
            lowercase=lowercase,
            max_seq_len=max_seq_len,
            batch_size=batch_size,
            train_limit=train_limit,
            val_split=val_split,
            group_by_length=group_by_length,
            num_workers=num_workers,
            cache_dir=cache_dir,
            hub=hub,
            seed=seed,
        )
        check("data.tag_column", tag_column, integer)
        check("data.label_all_subtokens", label_all_subtokens, boolean)
        self.train_file = train_file
        self.val_file = val_file
        self.test_file = test_file
        self.tokens_column = tokens_column
        self.tags_column = tags_column
        self.tag_column = tag_column
        self.fixed_label_names = list(label_names) if label_names else None
        self.label_all_subtokens = label_all_subtokens

    @classmethod
    def prediction_batch(cls, tokenizer: Tokenizer, max_seq_len: int, items: list) -> dict[str, torch.Tensor]:
        """Model inputs and word starts for sentences (lists of words), encoded as in training.

        ``word_index`` gives, per token, the index of the word it starts (-1 elsewhere): each word's tag
        is read at its first piece, and words cut off by ``max_seq_len`` have none.
        """
        encodings = encoding_copy(tokenizer, max_seq_len).encode_batch(items, is_pretokenized=True)
        items = [
            {
                "input_ids": torch.tensor(e.ids, dtype=torch.long),
                "word_index": torch.tensor(word_starts(e.word_ids), dtype=torch.long),
            }
            for e in encodings
        ]
        return TaggingCollator(special_token_ids(tokenizer)["pad"]).inputs(items)

    # -- labels ------------------------------------------------------------------------------
    def _tag_names(self, tags: list[list], source: str) -> list[list[str]]:
        """Tags as names; integer tags (hub ClassLabels) are looked up in ``label_names``."""
        if not any(isinstance(t, int) and not isinstance(t, bool) for sent in tags for t in sent):
            return [[str(t) for t in sent] for sent in tags]
        names = self.fixed_label_names
        if not names:
            raise UserError(
                f"{source} gives tags as integers — set data.label_names to the tag names in id order"
            )
        try:
            return [[names[int(t)] for t in sent] for sent in tags]
        except (IndexError, ValueError):
            raise UserError(
                f"{source} has a tag id outside data.label_names ({len(names)} names) — fix data.label_names"
            ) from None

    def _build_label_map(self, tags: list[list[str]], source: str) -> None:
        seen = {t for sent in tags for t in sent}
        if self.fixed_label_names:
            unknown = sorted(seen - set(self.fixed_label_names))
            if unknown:
                raise UserError(
                    f"tag(s) {', '.join(unknown[:5])} in {source} are not in data.label_names — add them or set "
                    "data.label_names=null to take the labels from the training data"
                )
            self._labels = LabelMap(self.fixed_label_names)
        else:
            self._labels = LabelMap(sorted(seen, key=lambda t: (t != OUTSIDE, t)))
        if len(self._labels) < 2:
            raise UserError(
                f"{source} has only the tag(s) {', '.join(self._labels.names)} — a tagger needs 2+ labels"
            )

    def _encode_tags(self, tags: list[list[str]], source: str) -> list[np.ndarray]:
        mapping = self._labels.to_id
        out = []
        for sent in tags:
            try:
                out.append(np.asarray([mapping[t] for t in sent], dtype=np.int64))
            except KeyError as err:
                raise UserError(
                    f"tag {err.args[0]} in {source} does not occur in the training data (labels: "
                    f"{', '.join(self._labels.names[:10])}) — fix the file or set data.label_names"
                ) from None
        return out

    # -- data --------------------------------------------------------------------------------
    def _read_split(self, split_key: str, local: str | None, from_hub: bool):
        """((words, tags), source name, fingerprint) for a split, or None when it is not configured."""
        path = local_file(local)
        if path is not None:
            words, tags = read_tagged(path, self.tokens_column, self.tags_column, self.tag_column)
            return (words, self._tag_names(tags, str(path))), str(path), file_fingerprint(path)
        hub_split = (self.hub or {}).get("splits", {}).get(split_key) if from_hub else None
        if from_hub and (split_key == "train" or hub_split):
            tokens_col = self.hub.get("tokens_column", self.tokens_column)
            tags_col = self.hub.get("tags_column", self.tags_column)
            data = load_hub_split(self.hub, split_key, [tokens_col, tags_col], local)
            source = f"hub:{self.hub.get('path')}"
            words = [[str(w) for w in ws] for ws in data[tokens_col]]
            return (
                (words, self._tag_names(data[tags_col], source)),
                source,
                hub_fingerprint(self.hub, split_key),
            )
        if local is not None:
            raise missing_file_error(local, split_key)
        return None

    def _encode(self, tok: Tokenizer, words: list[list[str]], tags: list[np.ndarray]) -> TaggedDataset:
        enc_tok = encoding_copy(tok, self.max_seq_len)
        continuation = continuation_labels(self._labels.names)
        ids, labels, starts = [], [], []
        for e, word_labels in zip(enc_tok.encode_batch(words, is_pretokenized=True), tags, strict=True):
            token_labels, word_starts = align_labels(
                e.word_ids, word_labels.tolist(), self.label_all_subtokens, continuation
            )
            ids.append(np.asarray(e.ids, dtype=np.int64))
            labels.append(np.asarray(token_labels, dtype=np.int64))
            starts.append(np.asarray(word_starts, dtype=np.int64))
        return TaggedDataset(ids, labels, starts, tags)

    def _prepare(self) -> None:
        from_hub = local_file(self.train_file) is None
        if from_hub and not self.hub:
            raise missing_train_error(self.train_file)
        (words, tags), train_src, train_fp = self._read_split("train", self.train_file, from_hub)
        if self.train_limit is not None:
            words, tags = words[: self.train_limit], tags[: self.train_limit]
        train_fp = f"{train_fp}:limit={self.train_limit}:tokens"
        self._build_label_map(tags, train_src)

        val = self._read_split("val", self.val_file, from_hub)
        if val is None:
            train_idx, val_idx = heldout_split(len(words), self.val_split, self.seed)
            val = (
                ([words[i] for i in val_idx], [tags[i] for i in val_idx]),
                f"{train_src} (val_split={self.val_split})",
                None,
            )
            words, tags = [words[i] for i in train_idx], [tags[i] for i in train_idx]
            train_fp = f"{train_fp}:split={self.val_split}:seed={self.seed}"
        test = self._read_split("test", self.test_file, from_hub)

        tok, location = resolve_tokenizer(
            self.tokenizer_path,
            lambda: [" ".join(ws) for ws in words],
            self.vocab_size_target,
            self.lowercase,
            self.cache_dir,
            train_fp,
        )
        self._set_tokenizer(tok, location)
        self.pad_id = special_token_ids(tok)["pad"]

        def build(sentences, source: str, _fingerprint=None) -> TaggedDataset:
            # Encoded in memory (fast for NER-sized sets), so the fingerprint of eval splits is unused.
            split_words, split_tags = sentences
            return self._encode(tok, split_words, self._encode_tags(split_tags, source))

        self.train_dataset = build((words, tags), train_src)
        self.val_dataset = build(*val)
        self.test_dataset = build(*test) if test is not None else None
        self.collator = TaggingCollator(self.pad_id)
