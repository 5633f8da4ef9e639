"""Word-level tags and entities from a token-classification (NER) run, for ``encoderlab-predict``.

Each sentence is a list of words (a text is split on whitespace). Words are encoded as in training
(``is_pretokenized``, truncated to ``data.max_seq_len``); each word's tag is the prediction at its first
word piece, and words cut off by truncation get ``O``, as in evaluation. Output rows::

    {"tokens": ["Ada", "Lovelace", "wrote"], "tags": ["B-PER", "I-PER", "O"],
     "entities": [{"type": "PER", "start": 0, "end": 1, "text": "Ada Lovelace"}]}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from tokenizers import Tokenizer

from encoderlab.data.collators import pad_sequences
from encoderlab.data.token_classification import align_labels
from encoderlab.data.tokenizer import special_token_ids
from encoderlab.run.rebuild import RunTagger
from encoderlab.tasks.entities import OUTSIDE, entity_spans
from encoderlab.tasks.token_classification import word_predictions


def words_of(value) -> list[str]:
    """A JSON list of words as is, a text split on whitespace."""
    return [str(w) for w in value] if isinstance(value, list) else str(value).split()


class Tagger:
    """Sentences (lists of words) → one tag per word with a run's token classifier."""

    def __init__(self, model: RunTagger, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.encoder = model.encoder.to(device)
        self.head = model.head.to(device)
        self.tokenizer = Tokenizer.from_str(model.tokenizer.to_str())  # a copy: truncation stays local
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(model.max_seq_len)
        self.pad_id = special_token_ids(self.tokenizer)["pad"]
        names = model.label_names
        self.outside_id = names.index(OUTSIDE) if OUTSIDE in names else -1

    @torch.inference_mode()
    def tags(self, sentences: list[list[str]]) -> list[list[str]]:
        encodings = self.tokenizer.encode_batch(sentences, is_pretokenized=True)
        ids = pad_sequences([torch.tensor(e.ids) for e in encodings], self.pad_id)
        starts = [
            align_labels(e.word_ids, [0] * len(words))[1]
            for e, words in zip(encodings, sentences, strict=True)
        ]
        word_index = pad_sequences([torch.tensor(s) for s in starts], -1)
        lengths = torch.tensor([len(e.ids) for e in encodings])
        mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long().to(self.device)
        hidden = self.encoder(ids.to(self.device), mask, torch.zeros_like(mask))
        predictions = self.head(hidden, mask).argmax(-1).cpu()
        longest = max((len(words) for words in sentences), default=0)
        by_word = word_predictions(predictions, word_index, longest, self.outside_id).tolist()
        names = self.model.label_names
        return [
            [names[i] if i >= 0 else OUTSIDE for i in row[: len(words)]]
            for row, words in zip(by_word, sentences, strict=True)
        ]

    def rows(self, sentences: Iterable, batch_size: int) -> Iterator[dict]:
        batch: list[list[str]] = []
        for value in sentences:
            batch.append(words_of(value))
            if len(batch) == batch_size:
                yield from self._rows(batch)
                batch = []
        if batch:
            yield from self._rows(batch)

    def _rows(self, sentences: list[list[str]]) -> Iterator[dict]:
        for words, tags in zip(sentences, self.tags(sentences), strict=True):
            entities = [
                {"type": kind, "start": start, "end": end, "text": " ".join(words[start : end + 1])}
                for kind, start, end in sorted(entity_spans(tags), key=lambda span: span[1])
            ]
            yield {"tokens": words, "tags": tags, "entities": entities}
