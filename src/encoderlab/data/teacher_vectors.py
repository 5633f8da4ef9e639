"""Unlabelled texts with a teacher encoder's sentence vector for each, for ``task=distill``.

The texts are the lines of a text file (one per line, as a corpus is read) or ``text_column`` of a
CSV / TSV / JSONL table, whose other columns (labels included) are never read. The teacher
(``data.teacher``: an encoder export, a run, a Hugging Face or sentence-transformers directory, or
``minilm``) embeds every text once, before training, with its own pooling; the vectors are cached
(:mod:`encoderlab.data.teacher_cache`), so the next run on the same texts starts at once. A seeded
``val_split`` share of the texts is held out: ``val/loss`` and ``val/cosine`` say how closely the student
reproduces the teacher on texts it never trained on.

A batch holds ``input_ids`` / ``attention_mask`` / ``token_type_ids`` (the student's own tokenizer, which
need not be the teacher's) and ``teacher_vectors`` [B, teacher dims].
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
from encoderlab.devices import resolve_device
from encoderlab.errors import UserError
from encoderlab.run.layout import RunDir
from encoderlab.validate import at_least, check, text

TEACHER_VECTORS = "teacher_vectors"  # the batch key of the targets


class TeacherVectorDataset(Dataset):
    """Encoded texts and the teacher's vector of each."""

    def __init__(self, ids: TokenIds, vectors: np.ndarray) -> None:
        self.ids = ids
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        tokens = torch.from_numpy(self.ids[i].astype(np.int64))
        return {
            "input_ids": tokens,
            "token_type_ids": torch.zeros_like(tokens),
            TEACHER_VECTORS: torch.from_numpy(np.array(self.vectors[i], dtype=np.float32)),
        }


class TeacherVectorCollator:
    """Pads the texts to the batch's longest and stacks their teacher vectors."""

    def __init__(self, pad_id: int) -> None:
        self.padding = PaddingCollator(pad_id)

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = self.padding.inputs(items)
        batch[TEACHER_VECTORS] = torch.stack([item[TEACHER_VECTORS] for item in items])
        return batch


class TeacherVectorsDataModule(PreparedDataModule):
    """Texts and a teacher's vectors for ``task=distill`` (see the module's docstring for the settings)."""

    targets = Targets.TEACHER_VECTORS
    prediction_input = "text"  # encoderlab-predict embeds single texts

    def __init__(
        self,
        train_file: str | None = None,
        text_column: str = "text",
        teacher: str = "minilm",
        teacher_batch_size: int = 64,
        teacher_max_seq_len: int | None = None,
        teacher_device: str = "auto",
        tokenizer: str | None = None,
        vocab_size: int = 8192,
        lowercase: bool = True,
        max_seq_len: int = 64,
        batch_size: int = 64,
        train_limit: int | None = None,
        val_split: float = 0.02,
        num_workers: int = 0,
        cache_dir: str = ".cache/encoderlab",
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_settings(locals())
        check("data.text_column", text_column, text)
        check("data.teacher", teacher, text)
        check("data.teacher_batch_size", teacher_batch_size, at_least(1))
        check("data.teacher_max_seq_len", teacher_max_seq_len, at_least(3), optional=True)
        resolve_device(teacher_device, key="data.teacher_device")  # a bad or absent device fails here
        self.train_file = train_file
        self.text_column = text_column
        self.teacher = teacher
        self.teacher_batch_size = teacher_batch_size
        self.teacher_max_seq_len = teacher_max_seq_len
        self.teacher_device = teacher_device
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
        self.teacher_dims: int | None = None

    @property
    def head_kwargs(self) -> dict:
        self._require()
        return {"dims": self.teacher_dims}  # the projection head maps the student into the teacher's space

    @property
    def task_kwargs(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {
            **super().describe(),
            "text_column": self.text_column,
            "teacher": self.teacher,
            "teacher_dims": self.teacher_dims,
        }

    def save_artifacts(self, run: RunDir) -> None:
        """A copy of the tokenizer: the run alone can then embed text (``encoderlab-predict``)."""
        copy_tokenizer(self.tokenizer_dir, run.tokenizer)

    @classmethod
    def prediction_batch(cls, tokenizer: Tokenizer, max_seq_len: int, items: list) -> dict[str, torch.Tensor]:
        """Model inputs for raw texts, encoded as training encoded them."""
        return TextClassificationDataModule.prediction_batch(tokenizer, max_seq_len, items)

    # -- preparing ---------------------------------------------------------------------------
    def _read_texts(self, path: Path) -> list[str]:
        """The file's lines, or its ``text_column`` (the first ``train_limit`` either way)."""
        if path.suffix.lower() not in TABLE_EXTENSIONS:
            return read_corpus(path, self.train_limit)
        column = read_table(path, [self.text_column])[self.text_column]
        texts = ["" if value is None else str(value) for value in column][: self.train_limit]
        if not any(t.strip() for t in texts):
            raise UserError(f"column '{self.text_column}' of {path} holds no text — set data.text_column")
        return texts

    def _prepare(self) -> None:
        if self.train_file is None or not Path(self.train_file).is_file():
            raise missing_train_error(self.train_file)
        path = Path(self.train_file)
        texts = self._read_texts(path)
        from encoderlab.data.teacher_cache import teacher_vectors  # loads encoders: only when preparing

        vectors = teacher_vectors(
            texts,
            self.teacher,
            self.cache_dir,
            batch_size=self.teacher_batch_size,
            max_seq_len=self.teacher_max_seq_len,
            device=self.teacher_device,
        )
        self.teacher_dims = int(vectors.shape[1])
        train_index, val_index = heldout_split(len(texts), self.val_split, self.seed)
        fingerprint = (
            f"{file_fingerprint(path)}:texts:{self.text_column}:limit={self.train_limit}:"
            f"split={self.val_split}:seed={self.seed}"
        )
        train_texts = [texts[i] for i in train_index]
        self._adopt_tokenizer(lambda: train_texts, fingerprint)
        self.train_dataset = self._encode(train_texts, vectors[train_index], f"{fingerprint}:train")
        self.val_dataset = self._encode(
            [texts[i] for i in val_index], vectors[val_index], f"{fingerprint}:val"
        )
        self.collator = TeacherVectorCollator(self.pad_id)

    def _encode(self, texts: list[str], vectors: np.ndarray, key: str) -> TeacherVectorDataset:
        ids = cached_token_ids(
            lambda: texts,
            self._tokenizer,
            self.cache_dir,
            [key],
            add_special_tokens=True,
            max_length=self.max_seq_len,
        )
        return TeacherVectorDataset(ids, np.ascontiguousarray(vectors, dtype=np.float32))

    # -- loaders -----------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        self.prepare()
        sampler = ShuffledBatchSampler(len(self.train_dataset), self.batch_size, seed=self.seed)
        return self._resumable_train_loader(self.train_dataset, sampler, self.collator)

    def val_dataloader(self) -> DataLoader:
        self.prepare()
        return self._eval_loader(self.val_dataset)
