"""Texts with their positives, for contrastive training: pairs from a table, or single texts (SimCSE).

Training reads ``train_file``: with ``positive_column`` set, (anchor, positive) rows of a CSV / TSV / JSONL
table, kept only where ``score_column`` reaches ``min_score`` when a score column is named (STS-B pairs
scoring 4 or more); with ``positive_column`` null, single texts (a text file with one per line, or one
column of a table), each its own positive: the task passes them through the encoder twice, and the two
dropout masks make the pair (unsupervised SimCSE).

Validation measures two things. Retrieval over held-out pairs (``val_file``, read like the training file,
or a ``val_split`` share of the training pairs); unsupervised runs have no pairs to hold out (a text would
find itself) and take the pairs of ``sts_file`` that score at least ``min_score`` instead. And, with
``sts_file`` (the STS-B layout: ``sentence1``, ``sentence2``, ``score``), how well the embeddings'
similarity ranks every scored pair.

A batch holds ``input_ids`` / ``attention_mask`` / ``token_type_ids`` of the anchors, the same keys
prefixed ``positive_`` for the positives (none for single texts) and, for scored pairs, ``scores``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from encoderlab.data.base import (
    PreparedDataModule,
    Targets,
    check_settings,
    heldout_split,
    missing_train_error,
)
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.data.collators import PaddingCollator
from encoderlab.data.readers import TABLE_EXTENSIONS, file_fingerprint, read_corpus, read_table
from encoderlab.data.samplers import ShuffledBatchSampler
from encoderlab.data.token_cache import TokenIds, cached_token_ids
from encoderlab.data.tokenizer import copy_tokenizer
from encoderlab.errors import UserError
from encoderlab.run.layout import RunDir
from encoderlab.validate import check, differs_from, number, text

POSITIVE = "positive_"  # the prefix of the positives' keys in a batch
STS_COLUMNS = ("sentence1", "sentence2", "score")  # GLUE STS-B's own column names


class Pairs:
    """Texts in file order, with their positives (None: each text is its own) and scores (None: unscored)."""

    def __init__(self, anchors: list[str], positives: list[str] | None, scores: np.ndarray | None = None):
        self.anchors = anchors
        self.positives = positives
        self.scores = scores

    def __len__(self) -> int:
        return len(self.anchors)

    def subset(self, index: Sequence[int]) -> Pairs:
        pick = lambda values: None if values is None else [values[i] for i in index]  # noqa: E731
        scores = None if self.scores is None else self.scores[np.asarray(index, dtype=np.int64)]
        return Pairs(pick(self.anchors), pick(self.positives), scores)


class PairDataset(Dataset):
    """Encoded anchors, their encoded positives (optional) and scores (optional), one item per pair."""

    def __init__(self, anchors: TokenIds, positives: TokenIds | None, scores: np.ndarray | None = None):
        self.anchors = anchors
        self.positives = positives
        self.scores = scores

    def __len__(self) -> int:
        return len(self.anchors)

    @staticmethod
    def _text(ids: TokenIds, i: int) -> dict[str, torch.Tensor]:
        tokens = torch.from_numpy(ids[i].astype(np.int64))
        return {"input_ids": tokens, "token_type_ids": torch.zeros_like(tokens)}

    def __getitem__(self, i: int) -> dict:
        item = {"anchor": self._text(self.anchors, i)}
        if self.positives is not None:
            item["positive"] = self._text(self.positives, i)
        if self.scores is not None:
            item["score"] = float(self.scores[i])
        return item


class PairCollator:
    """Pads anchors and positives each to their own longest; scores as a float tensor."""

    def __init__(self, pad_id: int) -> None:
        self.padding = PaddingCollator(pad_id)

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = self.padding.inputs([item["anchor"] for item in items])
        if "positive" in items[0]:
            positives = self.padding.inputs([item["positive"] for item in items])
            batch.update({POSITIVE + key: value for key, value in positives.items()})
        if "score" in items[0]:
            batch["scores"] = torch.tensor([item["score"] for item in items], dtype=torch.float)
        return batch


def _strings(values: list) -> list[str]:
    return ["" if v is None else str(v) for v in values]


def _scores(values: list, column: str, source: str) -> np.ndarray:
    try:
        scores = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise UserError(
            f"non-numeric score in column '{column}' of {source} ({err}) — fix the file"
        ) from None
    if not np.isfinite(scores).all():
        raise UserError(
            f"column '{column}' of {source} holds a score that is not a finite number — fix the file"
        )
    return scores


class TextPairsDataModule(PreparedDataModule):
    """Texts and their positives for ``task=contrastive`` (see the module's docstring for the settings)."""

    targets = Targets.TEXT_PAIRS
    prediction_input = "text"  # encoderlab-predict embeds single texts

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        sts_file: str | None = None,
        text_column: str = "text",
        positive_column: str | None = None,
        score_column: str | None = None,
        min_score: float = 4.0,
        tokenizer: str | None = None,
        vocab_size: int = 8192,
        lowercase: bool = True,
        max_seq_len: int = 128,
        batch_size: int = 64,
        train_limit: int | None = None,
        val_split: float = 0.05,
        num_workers: int = 0,
        cache_dir: str = ".cache/encoderlab",
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_settings(locals())
        check("data.text_column", text_column, text)
        for key, column in (("data.positive_column", positive_column), ("data.score_column", score_column)):
            check(
                key,
                column,
                text,
                differs_from(text_column, "data.text_column", "it is the anchor"),
                optional=True,
            )
        if score_column is not None:
            why = "the positive is a text, the score a number"
            check(
                "data.score_column", score_column, differs_from(positive_column, "data.positive_column", why)
            )
        check("data.min_score", min_score, number)
        if positive_column is None and score_column is not None:
            raise UserError(
                f"data.score_column={score_column} scores pairs, but data.positive_column is not set (single "
                "texts, unsupervised) — set data.positive_column to the second text's column, or drop "
                "data.score_column"
            )
        if positive_column is None and val_file is not None:
            raise UserError(
                f"data.val_file={val_file} would hold held-out pairs, but unsupervised training (data."
                "positive_column=null) is validated on the STS pairs of data.sts_file — drop data.val_file"
            )
        if positive_column is None and sts_file is None:
            raise UserError(
                "unsupervised training (data.positive_column=null) is validated on scored pairs, and "
                "data.sts_file is not set — set data.sts_file to an STS-B file (e.g. "
                "${paths.data_dir}/stsb/dev.tsv), or data.positive_column to train on pairs"
            )
        self.train_file = train_file
        self.val_file = val_file
        self.sts_file = sts_file
        self.text_column = text_column
        self.positive_column = positive_column
        self.score_column = score_column
        self.min_score = float(min_score)
        self.tokenizer_path = tokenizer
        self.vocab_size_target = vocab_size
        self.lowercase = lowercase
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size
        self.train_limit = train_limit
        self.val_split = val_split
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.seed = seed
        self.sts_dataset: PairDataset | None = None

    @property
    def unsupervised(self) -> bool:
        return self.positive_column is None

    @property
    def head_kwargs(self) -> dict:
        return {}

    @property
    def task_kwargs(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {
            **super().describe(),
            "text_column": self.text_column,
            "positive_column": self.positive_column,
        }

    def save_artifacts(self, run: RunDir) -> None:
        """A copy of the tokenizer: the run alone can then embed text (``encoderlab-predict``)."""
        copy_tokenizer(self.tokenizer_dir, run.tokenizer)

    @classmethod
    def prediction_batch(cls, tokenizer: Tokenizer, max_seq_len: int, items: list) -> dict[str, torch.Tensor]:
        """Model inputs for raw texts, encoded as training encoded each side of a pair."""
        return TextClassificationDataModule.prediction_batch(tokenizer, max_seq_len, items)

    # -- reading -----------------------------------------------------------------------------
    def _read_pairs(self, path: Path, key: str, limit: int | None = None) -> Pairs:
        """The file's texts (a text file: one per line) or pairs, kept where the score reaches min_score."""
        if path.suffix.lower() not in TABLE_EXTENSIONS:
            if not self.unsupervised:
                raise UserError(
                    f"{path} is not a table, but pairs (data.positive_column={self.positive_column}) are read "
                    f"from columns — use a {'/'.join(TABLE_EXTENSIONS)} file, or data.positive_column=null"
                )
            return Pairs(read_corpus(path, limit), None)  # the first lines only: a corpus may be large
        columns = [c for c in (self.text_column, self.positive_column, self.score_column) if c is not None]
        table = read_table(path, columns)
        positives = None if self.unsupervised else _strings(table[self.positive_column])
        pairs = Pairs(_strings(table[self.text_column]), positives)
        if self.score_column is None:
            return pairs
        scores = _scores(table[self.score_column], self.score_column, str(path))
        return self._positive_pairs(pairs, scores, path, key)

    def _positive_pairs(self, pairs: Pairs, scores: np.ndarray, path: Path, key: str) -> Pairs:
        kept = np.flatnonzero(scores >= self.min_score)
        if len(kept) == 0:
            raise UserError(
                f"no pair of {path} ({key}) scores data.min_score={self.min_score:g} or more (highest: "
                f"{scores.max():g}) — lower data.min_score"
            )
        return pairs.subset(kept.tolist())

    def _read_sts(self) -> Pairs:
        path = Path(self.sts_file)
        if not path.is_file():
            raise UserError(
                f"data.sts_file not found: {path} — point it at an STS-B file ({', '.join(STS_COLUMNS)}; "
                "ENCODERLAB_DATA_DIR/stsb/dev.tsv), or set data.sts_file=null"
            )
        table = read_table(path, list(STS_COLUMNS))
        first, second, score = STS_COLUMNS
        scores = _scores(table[score], score, str(path))
        return Pairs(_strings(table[first]), _strings(table[second]), scores)

    # -- preparing ---------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self.train_file is None or not Path(self.train_file).is_file():
            raise missing_train_error(self.train_file)
        sts = self._read_sts() if self.sts_file is not None else None  # the small file first: fails fast
        train_path = Path(self.train_file)
        train = self._read_pairs(train_path, "data.train_file", self.train_limit)
        if self.train_limit is not None:
            train = train.subset(range(min(self.train_limit, len(train))))
        fingerprint = (
            f"{file_fingerprint(train_path)}:pairs:{self.text_column}:{self.positive_column}:"
            f"{self.score_column}>={self.min_score}:limit={self.train_limit}"
        )
        if self.unsupervised:
            heldout = self._positive_pairs(sts, sts.scores, Path(self.sts_file), "data.sts_file")
            heldout = Pairs(heldout.anchors, heldout.positives)  # retrieval pairs: the scores are spent
            heldout_key = f"{file_fingerprint(self.sts_file)}:sts>={self.min_score}"
        elif self.val_file is not None:
            if not Path(self.val_file).is_file():
                raise UserError(
                    f"data file not found: {self.val_file} — set data.val_file or ENCODERLAB_DATA_DIR"
                )
            heldout = self._read_pairs(Path(self.val_file), "data.val_file")
            heldout_key = f"{file_fingerprint(self.val_file)}:{fingerprint}"
        else:
            train_index, val_index = heldout_split(len(train), self.val_split, self.seed)
            train, heldout = train.subset(train_index.tolist()), train.subset(val_index.tolist())
            fingerprint = f"{fingerprint}:split={self.val_split}:seed={self.seed}"
            heldout_key = f"{fingerprint}:val"

        def tokenizer_texts():
            yield from train.anchors
            yield from train.positives or ()

        self._adopt_tokenizer(tokenizer_texts, fingerprint)
        self.train_dataset = self._encode(train, fingerprint)
        self.val_dataset = self._encode(heldout, heldout_key)
        if sts is not None:
            self.sts_dataset = self._encode(sts, f"{file_fingerprint(self.sts_file)}:sts")
        self.collator = PairCollator(self.pad_id)

    def _encode(self, pairs: Pairs, key: str) -> PairDataset:
        def ids(texts: list[str], side: str) -> TokenIds:
            return cached_token_ids(
                lambda: texts,
                self._tokenizer,
                self.cache_dir,
                [key, side],
                add_special_tokens=True,
                max_length=self.max_seq_len,
            )

        positives = None if pairs.positives is None else ids(pairs.positives, "positives")
        return PairDataset(ids(pairs.anchors, "anchors"), positives, pairs.scores)

    # -- loaders -----------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        self.prepare()
        sampler = ShuffledBatchSampler(len(self.train_dataset), self.batch_size, seed=self.seed)
        return self._resumable_train_loader(self.train_dataset, sampler, self.collator)

    def val_dataloader(self) -> list[DataLoader]:
        """The held-out pairs (loss, retrieval) and, with ``sts_file``, the scored STS pairs."""
        self.prepare()
        loaders = [self._eval_loader(self.val_dataset)]
        if self.sts_dataset is not None:
            loaders.append(self._eval_loader(self.sts_dataset))
        return loaders
