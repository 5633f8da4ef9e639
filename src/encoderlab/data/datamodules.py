"""LightningDataModules: an unlabelled text corpus for MLM pre-training, labelled text for fine-tuning.

Both expose ``prepare()``, which the entry point calls before building the model: it loads or trains
the tokenizer, reads and tokenizes the data (cached on disk) and builds the label map, so that
``vocab_size``, ``head_kwargs`` and ``task_kwargs`` are known when the model is built.
Local files always win; the optional ``hub`` dict is a fallback for when the local train file is absent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from encoderlab.data.collators import MLMCollator, PaddingCollator
from encoderlab.data.datasets import LabelledDataset, PackedSequenceDataset
from encoderlab.data.readers import file_fingerprint, keep_paragraph, read_corpus, read_table
from encoderlab.data.samplers import (
    EpochBatchSampler,
    EpochKeyedDataset,
    LengthGroupedSampler,
    ResumableDataLoader,
    ShuffledBatchSampler,
)
from encoderlab.data.token_cache import cached_token_ids
from encoderlab.data.tokenizer import resolve_tokenizer, special_token_ids
from encoderlab.errors import UserError

_INT_LIKE = re.compile(r"^\s*\d+\s*$")


def _local(path: str | None) -> Path | None:
    """The local file if configured and present, else None (then the hub may be used)."""
    return Path(path) if path is not None and Path(path).is_file() else None


def _missing_train_error(train_file: str | None) -> UserError:
    if train_file is None:
        return UserError(
            "no training data: data.train_file is not set and no data.hub is configured — set data.train_file"
        )
    return UserError(f"data file not found: {train_file} — set data.train_file or ENCODERLAB_DATA_DIR")


def _load_hub_split(hub: dict, split_key: str, columns: list[str], local: str | None) -> dict[str, list]:
    """Columns of one split of a Hugging Face dataset (``hub["splits"][split_key]``)."""
    split = (hub.get("splits") or {}).get(split_key, {"train": "train"}.get(split_key))
    name = hub.get("path")
    try:
        import datasets  # heavy; only needed on this fallback path

        ds = datasets.load_dataset(name, hub.get("name"), split=split)
    except Exception as e:
        raise UserError(
            f"local data file {local or '(data.train_file unset)'} is missing and hub dataset '{name}' split "
            f"'{split}' could not be loaded ({type(e).__name__}) — set data.train_file or ENCODERLAB_DATA_DIR"
        ) from None
    for c in columns:
        if c not in ds.column_names:
            raise UserError(
                f"column '{c}' not found in hub dataset '{name}' (available: {', '.join(ds.column_names)}) — "
                "set data.hub.*_column"
            )
    return {c: list(ds[c]) for c in columns}


def _hub_fingerprint(hub: dict, split_key: str) -> str:
    return "hub:" + json.dumps({"hub": hub, "split": split_key}, sort_keys=True, default=str)


def _check_counts(minimums: dict[str, int], values: dict[str, object]) -> None:
    """Integer settings (``data.batch_size=abc`` arrives as a string) fail here, naming the key."""
    for name, minimum in minimums.items():
        value = values[name]
        if value is None and name.endswith("_limit"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UserError(f"data.{name}={value!r} must be an integer >= {minimum} — set data.{name}")


def _empty_label_row(raw: list) -> int | None:
    """1-based data row of the first missing label (an empty cell), or None."""
    for i, v in enumerate(raw):
        if v is None or (isinstance(v, str) and not v.strip()):
            return i + 1
    return None


COUNTS = {"batch_size": 1, "max_seq_len": 3, "vocab_size": 10, "num_workers": 0, "train_limit": 1}


def heldout_split(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: a seeded ``val_split`` fraction of ``n`` examples held out for validation."""
    n_val = max(1, round(n * val_split))
    if n - n_val < 1:
        raise UserError(f"only {n} training example(s); cannot split off validation — set data.val_file")
    perm = np.random.default_rng(seed).permutation(n)
    # Sorted index sets keep file order inside each part (reproducible, diff-friendly).
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def write_label_map(path: str | Path, label_names: list[str]) -> None:
    """``label_map.json``: the label names in id order and the name → id map (read back by predict)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    payload = {"label_names": label_names, "label_to_id": {name: i for i, name in enumerate(label_names)}}
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _loader_kwargs(num_workers: int, seed: int) -> dict:
    return {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available(),
        "persistent_workers": num_workers > 0,
        # Its own generator: starting an epoch's iterator then draws nothing from the global RNG (whose
        # state a checkpoint restores), so a resumed run consumes random numbers exactly like an unbroken one.
        "generator": torch.Generator().manual_seed(seed),
    }


class _PreparedDataModule(pl.LightningDataModule):
    """Shared ``prepare()``/``setup()`` plumbing and the properties the entry point reads."""

    def __init__(self) -> None:
        super().__init__()
        self._prepared = False
        self._tokenizer: Tokenizer | None = None
        self._tokenizer_dir: str | None = None

    def prepare(self) -> None:
        if not self._prepared:
            self._prepare()
            self._prepared = True

    def _prepare(self) -> None:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _require(self):
        if not self._prepared:
            raise RuntimeError(f"{type(self).__name__}.prepare() must run first")

    @property
    def tokenizer(self) -> Tokenizer:
        self._require()
        return self._tokenizer

    @property
    def tokenizer_dir(self) -> str:
        self._require()
        return self._tokenizer_dir

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def has_test(self) -> bool:
        """Whether a labelled test split exists (the entry point then runs ``trainer.test``)."""
        return getattr(self, "test_dataset", None) is not None

    def _resumable_train_loader(self, dataset, batch_sampler: EpochBatchSampler, collate_fn) -> DataLoader:
        """The training loader: this process's share of each epoch's batches, resumable mid-epoch."""
        trainer = self.trainer
        if trainer is not None:
            batch_sampler.shard(trainer.global_rank, trainer.world_size)

        def batches_done() -> int:
            return trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer else 0

        return ResumableDataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=collate_fn,
            batches_done=batches_done,
            **_loader_kwargs(self.num_workers, self.seed),
        )

    def _set_tokenizer(self, tokenizer: Tokenizer, location: str) -> None:
        self._tokenizer = tokenizer
        loc = Path(location)
        self._tokenizer_dir = str(loc.parent if loc.is_file() else loc)


class TextCorpusDataModule(_PreparedDataModule):
    """Unlabelled text (one paragraph per line) packed into fixed-length blocks for MLM pre-training."""

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        tokenizer: str | None = None,
        vocab_size: int = 8192,
        lowercase: bool = True,
        max_seq_len: int = 128,
        batch_size: int = 32,
        train_limit: int | None = None,
        val_limit: int | None = None,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        num_workers: int = 0,
        cache_dir: str = ".cache/encoderlab",
        hub: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        _check_counts({**COUNTS, "val_limit": 1}, locals())
        self.seed = seed
        self.train_file = train_file
        self.val_file = val_file
        self.tokenizer_path = tokenizer
        self.vocab_size_target = vocab_size
        self.lowercase = lowercase
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size
        self.train_limit = train_limit
        self.val_limit = val_limit
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.hub = dict(hub) if hub else None
        # Fail on bad masking settings at construction, before any data work.
        MLMCollator(0, 4, 6, [0, 1, 2, 3, 4], mlm_probability, mask_replace_prob, random_replace_prob)

    @property
    def head_kwargs(self) -> dict:
        return {}

    @property
    def task_kwargs(self) -> dict:
        return {}

    def _hub_paragraphs(self, split_key: str, limit: int | None) -> list[str]:
        col = self.hub.get("text_column", "text")
        rows = _load_hub_split(self.hub, split_key, [col], self.train_file)[col]
        paragraphs = [str(t).strip() for t in rows if t is not None and keep_paragraph(str(t))]
        paragraphs = paragraphs[:limit] if limit is not None else paragraphs
        if not paragraphs:
            raise UserError(
                f"hub dataset '{self.hub.get('path')}' has no text in column '{col}' — set data.hub.text_column"
            )
        return paragraphs

    def _prepare(self) -> None:
        train_path = _local(self.train_file)
        if train_path is not None:
            fingerprint = f"{file_fingerprint(train_path)}:limit={self.train_limit}"
            read_all = cache(lambda: read_corpus(train_path, self.train_limit))
        elif self.hub:
            fingerprint = f"{_hub_fingerprint(self.hub, 'train')}:limit={self.train_limit}"
            read_all = cache(lambda: self._hub_paragraphs("train", self.train_limit))
        else:
            raise _missing_train_error(self.train_file)

        # Validation: local val_file, else the hub's val split (hub mode), else the last 1% of train.
        val_path = _local(self.val_file)
        hub_val = train_path is None and self.hub and (self.hub.get("splits") or {}).get("val")
        if self.val_file is not None and val_path is None and not hub_val:
            raise UserError(
                f"data file not found: {self.val_file} — set data.val_file or ENCODERLAB_DATA_DIR"
            )
        if val_path is not None:
            train_texts: Callable[[], list[str]] = read_all
            val_key = f"{file_fingerprint(val_path)}:limit={self.val_limit}"
            val_texts = cache(lambda: read_corpus(val_path, self.val_limit))
        elif hub_val:
            train_texts = read_all
            val_key = f"{_hub_fingerprint(self.hub, 'val')}:limit={self.val_limit}"
            val_texts = cache(lambda: self._hub_paragraphs("val", self.val_limit))
        else:
            train_texts = cache(lambda: self._split(read_all())[0])
            val_key = f"{fingerprint}:heldout1pct:limit={self.val_limit}"
            val_texts = cache(lambda: self._split(read_all())[1])
            fingerprint = f"{fingerprint}:minus-heldout"

        tok, location = resolve_tokenizer(
            self.tokenizer_path,
            train_texts,
            self.vocab_size_target,
            self.lowercase,
            self.cache_dir,
            fingerprint,
        )
        self._set_tokenizer(tok, location)
        ids = special_token_ids(tok)
        train_ids = cached_token_ids(
            train_texts, tok, self.cache_dir, [fingerprint], add_special_tokens=False
        )
        val_ids = cached_token_ids(val_texts, tok, self.cache_dir, [val_key], add_special_tokens=False)
        self.train_dataset = PackedSequenceDataset(train_ids, self.max_seq_len, ids["cls"], ids["sep"])
        self.val_dataset = PackedSequenceDataset(val_ids, self.max_seq_len, ids["cls"], ids["sep"])
        for name, ds in (("train", self.train_dataset), ("val", self.val_dataset)):
            if len(ds) == 0:
                raise UserError(
                    f"{name} corpus has fewer than {self.max_seq_len - 2} tokens, so no block of max_seq_len="
                    f"{self.max_seq_len} fits — use more text (data.{name}_limit) or a smaller data.max_seq_len"
                )
        self.collator = MLMCollator(
            pad_id=ids["pad"],
            mask_id=ids["mask"],
            vocab_size=tok.get_vocab_size(),
            special_ids=[ids[k] for k in ("pad", "unk", "cls", "sep", "mask")],
            mlm_probability=self.mlm_probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
            seed=self.seed,
        )

    def _split(self, paragraphs: list[str]) -> tuple[list[str], list[str]]:
        if len(paragraphs) < 2:
            raise UserError(
                f"corpus {self.train_file} has {len(paragraphs)} paragraph(s); need 2+ to hold out validation — "
                "add text or set data.val_file"
            )
        n_val = max(1, len(paragraphs) // 100)
        val = paragraphs[-n_val:]
        return paragraphs[:-n_val], val[: self.val_limit] if self.val_limit is not None else val

    def train_dataloader(self) -> DataLoader:
        self.prepare()
        # Keyed items: each block's masking is seeded by (seed, epoch, index), reproducible on resume.
        sampler = ShuffledBatchSampler(len(self.train_dataset), self.batch_size, self.seed, epoch_keys=True)
        return self._resumable_train_loader(EpochKeyedDataset(self.train_dataset), sampler, self.collator)

    def val_dataloader(self) -> DataLoader:
        self.prepare()
        # Keys 0..n-1: the same masking at every validation, so validation losses compare across steps.
        return DataLoader(
            EpochKeyedDataset(self.val_dataset),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.collator,
            **_loader_kwargs(self.num_workers, self.seed),
        )


class _LabelledDataModule(_PreparedDataModule):
    """Loaders of labelled data: resumable (length-grouped or shuffled) training batches, ordered eval batches.

    Subclasses call ``_set_loading`` from ``__init__`` and set ``train_dataset`` (with ``lengths``),
    ``val_dataset``, ``test_dataset`` (or None) and ``collator`` in ``_prepare``.
    """

    def _set_loading(
        self, tokenizer, vocab_size, lowercase, max_seq_len, batch_size, train_limit, val_split,
        group_by_length, num_workers, cache_dir, hub, seed,
    ) -> None:  # fmt: skip
        """The tokenizer, split and loader settings every labelled data module has."""
        if not 0.0 < val_split < 1.0:
            raise UserError(f"val_split={val_split} must be in (0, 1) — set data.val_split")
        self.tokenizer_path = tokenizer
        self.vocab_size_target = vocab_size
        self.lowercase = lowercase
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size
        self.train_limit = train_limit
        self.val_split = val_split
        self.group_by_length = group_by_length
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.hub = dict(hub) if hub else None
        self.seed = seed

    # -- loaders -----------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        self.prepare()
        n, size = len(self.train_dataset), self.batch_size
        sampler = (
            LengthGroupedSampler(self.train_dataset.lengths, size, seed=self.seed)
            if self.group_by_length
            else ShuffledBatchSampler(n, size, seed=self.seed)
        )
        return self._resumable_train_loader(self.train_dataset, sampler, self.collator)

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.collator,
            **_loader_kwargs(self.num_workers, self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        self.prepare()
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader | None:
        self.prepare()
        return self._eval_loader(self.test_dataset) if self.test_dataset is not None else None


class TextClassificationDataModule(_LabelledDataModule):
    """Labelled text (single sentences or pairs) from CSV / TSV / JSONL, with dynamic padding.

    ``num_labels=1`` means regression: labels are read as floats and no label map is built.
    ``pairs=True`` declares a sentence-pair task: ``text_pair_column`` must then name the second text.
    """

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        text_pair_column: str | None = None,
        tokenizer: str | None = None,
        vocab_size: int = 8192,
        lowercase: bool = True,
        max_seq_len: int = 128,
        batch_size: int = 32,
        train_limit: int | None = None,
        train_sample: int | None = None,
        val_split: float = 0.1,
        pairs: bool = False,
        num_labels: int | None = None,
        group_by_length: bool = True,
        num_workers: int = 0,
        cache_dir: str = ".cache/encoderlab",
        hub: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        _check_counts(COUNTS, locals())
        self._set_loading(
            tokenizer, vocab_size, lowercase, max_seq_len, batch_size, train_limit, val_split,
            group_by_length, num_workers, cache_dir, hub, seed,
        )  # fmt: skip
        if pairs and not text_pair_column:
            raise UserError(
                f"a sentence-pair task (data.pairs=true) needs two text columns but only data.text_column="
                f"{text_column} is set — set data.text_pair_column to the second text's column"
            )
        self.train_file = train_file
        self.val_file = val_file
        self.test_file = test_file
        self.text_column = text_column
        self.label_column = label_column
        self.text_pair_column = text_pair_column
        self.train_sample = train_sample
        self.num_labels_expected = num_labels
        self.test_dataset: LabelledDataset | None = None

    # -- label map ---------------------------------------------------------------------------
    @property
    def regression(self) -> bool:
        return self.num_labels_expected == 1

    @property
    def label_names(self) -> list[str]:
        self._require()
        return list(self._label_names)

    @property
    def label_map(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @property
    def num_labels(self) -> int:
        self._require()
        return 1 if self.regression else len(self._label_names)

    @property
    def head_kwargs(self) -> dict:
        return {"num_labels": self.num_labels}

    @property
    def task_kwargs(self) -> dict:
        return {"num_labels": self.num_labels, "label_names": self.label_names}

    def save_label_map(self, path: str | Path) -> None:
        write_label_map(path, self.label_names)

    def _check_labels_present(self, raw: list, source: str) -> None:
        row = _empty_label_row(raw)
        if row is not None:
            raise UserError(
                f"data row {row} of {source} has no label (empty '{self.label_column}' cell) — "
                "fill it in or remove the row"
            )

    @staticmethod
    def _regression_targets(raw: list, source: str) -> np.ndarray:
        try:
            values = np.asarray([float(v) for v in raw], dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise UserError(
                f"non-numeric label in {source} ({e}) — regression (num_labels=1) needs numbers"
            ) from None
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise UserError(
                f"label '{raw[bad[0]]}' in data row {bad[0] + 1} of {source} is not a finite number "
                f"({len(bad)} such rows) — regression targets must be finite: fix or drop those rows"
            )
        return values

    def _build_label_map(self, raw: list, source: str) -> None:
        self._check_labels_present(raw, source)
        if self.regression:
            self._regression_targets(raw, source)  # fail on NaN targets before any other work
            self._label_names = []
            self._int_labels = False
            return
        self._int_labels = all(
            (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
            or (isinstance(v, str) and _INT_LIKE.match(v))
            for v in raw
        )
        if self._int_labels:
            self._label_names = [str(i) for i in range(max(int(v) for v in raw) + 1)]
        else:
            self._label_names = sorted({str(v) for v in raw})
        found = len(self._label_names)
        if self.num_labels_expected is not None and self.num_labels_expected != found:
            raise UserError(
                f"num_labels={self.num_labels_expected} but {source} has {found} labels "
                f"({', '.join(self._label_names[:10])}{', ...' if found > 10 else ''}) — set data.num_labels={found}"
            )

    def _encode_labels(self, raw: list, source: str) -> np.ndarray:
        self._check_labels_present(raw, source)
        if self.regression:
            return self._regression_targets(raw, source)
        mapping = {name: i for i, name in enumerate(self._label_names)}
        out = np.empty(len(raw), dtype=np.int64)
        for i, v in enumerate(raw):
            key = str(int(v)) if self._int_labels and _INT_LIKE.match(str(v)) else str(v)
            if key not in mapping:
                raise UserError(
                    f"label '{v}' in {source} does not occur in the training data (labels: "
                    f"{', '.join(self._label_names[:10])}) — fix the file or data.label_column"
                )
            out[i] = mapping[key]
        return out

    # -- data --------------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        cols = [self.text_column, self.label_column]
        return cols + [self.text_pair_column] if self.text_pair_column else cols

    def _hub_columns(self) -> tuple[list[str], dict[str, str]]:
        """Hub column names, and how they map onto the local names."""
        rename = {
            self.hub.get("text_column", self.text_column): self.text_column,
            self.hub.get("label_column", self.label_column): self.label_column,
        }
        if self.text_pair_column:
            rename[self.hub.get("text_pair_column", self.text_pair_column)] = self.text_pair_column
        return list(rename), rename

    def _read_split(
        self, split_key: str, local: str | None, from_hub: bool
    ) -> tuple[dict[str, list], str, str] | None:
        """(columns, source name, fingerprint) for a split, or None when it is not configured."""
        path = _local(local)
        if path is not None:
            return read_table(path, self._columns()), str(path), file_fingerprint(path)
        hub_split = (self.hub or {}).get("splits", {}).get(split_key) if from_hub else None
        if from_hub and (split_key == "train" or hub_split):
            cols, rename = self._hub_columns()
            data = _load_hub_split(self.hub, split_key, cols, local)
            return (
                {rename[c]: v for c, v in data.items()},
                f"hub:{self.hub.get('path')}",
                _hub_fingerprint(self.hub, split_key),
            )
        if local is not None:
            raise UserError(
                f"data file not found: {local} — set data.{split_key}_file or ENCODERLAB_DATA_DIR"
            )
        return None

    def _texts(self, table: dict[str, list]) -> Callable[[], list]:
        def norm(v) -> str:
            return "" if v is None else str(v)

        a = [norm(v) for v in table[self.text_column]]
        if not self.text_pair_column:
            return lambda: a
        b = [norm(v) for v in table[self.text_pair_column]]
        return lambda: list(zip(a, b, strict=True))

    def _prepare(self) -> None:
        from_hub = _local(self.train_file) is None
        if from_hub and not self.hub:
            raise _missing_train_error(self.train_file)
        train, train_src, train_fp = self._read_split("train", self.train_file, from_hub)
        if self.train_limit is not None:
            train = {c: v[: self.train_limit] for c, v in train.items()}
        # The label map comes from the whole training set: a small sample keeps every label and label id.
        self._build_label_map(train[self.label_column], train_src)
        if self.train_sample is not None:
            train = self._sample(train, train_src)
        sample = f":sample={self.train_sample}:seed={self.seed}" if self.train_sample is not None else ""
        train_fp = f"{train_fp}:limit={self.train_limit}{sample}:cols={self._columns()}"

        val = self._read_split("val", self.val_file, from_hub)
        if val is None:
            train, val_table = self._split_off_val(train)
            train_fp = f"{train_fp}:split={self.val_split}:seed={self.seed}"
            val = (val_table, f"{train_src} (val_split={self.val_split})", f"{train_fp}:val")
        test = self._read_split("test", self.test_file, from_hub)

        pairs = bool(self.text_pair_column)
        train_texts = self._texts(train)

        def tokenizer_texts():
            for item in train_texts():
                yield from (item if pairs else (item,))

        tok, location = resolve_tokenizer(
            self.tokenizer_path,
            tokenizer_texts,
            self.vocab_size_target,
            self.lowercase,
            self.cache_dir,
            train_fp,
        )
        self._set_tokenizer(tok, location)
        self.pad_id = special_token_ids(tok)["pad"]

        def build(table: dict[str, list], source: str, fp: str) -> LabelledDataset:
            labels = self._encode_labels(table[self.label_column], source)
            ids = cached_token_ids(
                self._texts(table),
                tok,
                self.cache_dir,
                [fp, str(self._columns())],
                add_special_tokens=True,
                max_length=self.max_seq_len,
                pairs=pairs,
            )
            return LabelledDataset(ids, labels)

        self.train_dataset = build(train, train_src, train_fp)
        self.val_dataset = build(*val)
        self.test_dataset = build(*test) if test is not None else None
        self.collator = PaddingCollator(self.pad_id)

    def _sample(self, table: dict[str, list], source: str) -> dict[str, list]:
        """``train_sample`` random examples drawn with ``seed`` (one draw per seed in a few-shot study).

        Classification samples hold every label at least once when there are enough places (a 32-example
        draw from a skewed set could otherwise miss a class); the remaining places are drawn at random.
        """
        n = len(table[self.label_column])
        if not 1 <= self.train_sample <= n:
            raise UserError(
                f"data.train_sample={self.train_sample} but {source} has {n} training examples — "
                f"choose 1 <= data.train_sample <= {n}"
            )
        order = np.random.default_rng(self.seed).permutation(n)
        first_of_label: dict[str, int] = {}
        if not self.regression:
            for i in order:
                first_of_label.setdefault(str(table[self.label_column][i]), int(i))
        picked = list(first_of_label.values()) if len(first_of_label) <= self.train_sample else []
        taken = set(picked)
        picked += [int(i) for i in order if int(i) not in taken][: self.train_sample - len(picked)]
        return {c: [v[i] for i in sorted(picked)] for c, v in table.items()}

    def _split_off_val(self, table: dict[str, list]) -> tuple[dict[str, list], dict[str, list]]:
        train_idx, val_idx = heldout_split(len(table[self.label_column]), self.val_split, self.seed)
        pick = lambda idx: {c: [v[i] for i in idx] for c, v in table.items()}  # noqa: E731
        return pick(train_idx), pick(val_idx)
