"""What every data module shares: ``prepare()``/``setup()``, the loaders, the label map, finding the data.

Every data module exposes ``prepare()``, which the entry point calls before building the model: it loads
or trains the tokenizer, reads and tokenizes the data (cached on disk) and builds the label map, so that
``vocab_size``, ``head_kwargs`` and ``task_kwargs`` are known when the model is built.
Local files always win; the optional ``hub`` dict is a fallback for when the local train file is absent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from encoderlab.data.samplers import (
    EpochBatchSampler,
    LengthGroupedSampler,
    ResumableDataLoader,
    ShuffledBatchSampler,
)
from encoderlab.data.tokenizer import copy_tokenizer, resolve_tokenizer, special_token_ids
from encoderlab.data.windows import LONG_DOCUMENTS
from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.run.layout import RunDir
from encoderlab.validate import at_least, boolean, check_all, integer, one_of, open_fraction


class Targets(Enum):
    """What a data module's examples are labelled with (each data module class says, as ``targets``)."""

    TOKENS = "unlabelled text (masked-token targets)"
    CLASSES = "one class per text"
    SCORES = "one numeric target per text"
    LABEL_SETS = "a set of labels per text"
    WORD_TAGS = "one tag per word"
    PROMPTED_CLASSES = "one class per text, wrapped in a cloze prompt"
    CLASS_PAIRS = "one class per text, trained on as pairs of the same or different class (SetFit)"
    TEXT_PAIRS = "texts with their positives (a pair, or a text alone: its own positive)"
    TEACHER_VECTORS = "texts with a teacher encoder's sentence vector for each (distillation)"


# ------------------------------------------------------------------------------------ label map


class LabelMap:
    """Label names in id order (label ``i`` is ``names[i]``), saved with a run as ``label_map.json``."""

    def __init__(self, names: Iterable[str]) -> None:
        self._names = tuple(names)  # kept immutable: the ids of a prepared data module never change

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def to_id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self._names)}

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self._names == other._names

    def __repr__(self) -> str:
        return f"LabelMap({list(self._names)!r})"

    def save(self, path: str | Path) -> None:
        """``label_map.json``: the names in id order and the name → id map (``read`` uses the latter)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        payload = {"label_names": self.names, "label_to_id": self.to_id}
        Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: str | Path) -> LabelMap:
        """The label map saved in ``path``; a UserError naming the file unless its ids are 0..N-1."""
        path = Path(path)
        try:
            to_id = json.loads(path.read_text(encoding="utf-8"))["label_to_id"]
            names = sorted(to_id, key=lambda name: to_id[name])
            if [to_id[n] for n in names] != list(range(len(names))):
                raise ValueError("ids are not 0..N-1")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise UserError(f"{path} is not a valid label map ({err}) — it should hold label_to_id") from None
        return cls(names)


# ------------------------------------------------------------------------ finding and checking data


def local_file(path: str | None) -> Path | None:
    """The local file if configured and present, else None (then the hub may be used)."""
    return Path(path) if path is not None and Path(path).is_file() else None


def missing_file_error(path: str, split: str) -> UserError:
    return UserError(f"data file not found: {path} — set data.{split}_file or ENCODERLAB_DATA_DIR")


def missing_train_error(train_file: str | None) -> UserError:
    if train_file is None:
        return UserError(
            "no training data: data.train_file is not set and no data.hub is configured — set data.train_file"
        )
    return missing_file_error(train_file, "train")


def load_hub_split(hub: dict, split_key: str, columns: list[str], local: str | None) -> dict[str, list]:
    """Columns of one split of a Hugging Face dataset (``hub["splits"][split_key]``)."""
    split = (hub.get("splits") or {}).get(split_key, {"train": "train"}.get(split_key))
    name = hub.get("path")
    datasets = require(  # heavy; only needed on this fallback path
        "datasets",
        for_=f"data.hub (the local data file {local or '(data.train_file unset)'} is missing)",
        or_else="set data.train_file to a local file",
    )
    try:
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


def hub_fingerprint(hub: dict, split_key: str) -> str:
    return "hub:" + json.dumps({"hub": hub, "split": split_key}, sort_keys=True, default=str)


# The integer settings data modules take, with their smallest sensible values.
COUNT_MINIMUMS = {
    "batch_size": 1,
    "max_seq_len": 3,  # [CLS], one token, [SEP]
    "vocab_size": 10,
    "num_workers": 0,
    "train_limit": 1,
    "val_limit": 1,
    "train_sample": 1,
    "train_sample_per_class": 1,
    "test_sample": 1,
    "num_labels": 1,
    "window_stride": 1,
    "max_windows": 1,
}
# Every data module's settings (``data.<name>``) and their rules; a new data setting gets its line here.
SETTING_RULES = {
    **{name: (at_least(minimum),) for name, minimum in COUNT_MINIMUMS.items()},
    "val_split": (open_fraction,),  # something to train on and something to validate on
    "seed": (integer,),
    "lowercase": (boolean,),
    "group_by_length": (boolean,),
    "pairs": (boolean,),
    "balanced_sample": (boolean,),
    "long_documents": (one_of(*LONG_DOCUMENTS),),
}
NULLABLE = (  # null: not set
    "train_limit",
    "val_limit",
    "train_sample",
    "train_sample_per_class",
    "test_sample",
    "num_labels",
    "window_stride",
    "max_windows",
)


def check_settings(values: dict[str, object]) -> None:
    """A data module's constructor arguments (its ``locals()``) against ``SETTING_RULES``, each named as
    ``data.<name>`` (``data.batch_size=abc`` arrives as a string and fails here)."""
    check_all("data", values, SETTING_RULES, optional=NULLABLE)


def heldout_split(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: a seeded ``val_split`` fraction of ``n`` examples held out for validation."""
    n_val = max(1, round(n * val_split))
    if n - n_val < 1:
        raise UserError(f"only {n} training example(s); cannot split off validation — set data.val_file")
    perm = np.random.default_rng(seed).permutation(n)
    # Sorted index sets keep file order inside each part (reproducible, diff-friendly).
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def loader_kwargs(num_workers: int, seed: int) -> dict:
    return {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available(),
        "persistent_workers": num_workers > 0,
        # Its own generator: starting an epoch's iterator then draws nothing from the global RNG (whose
        # state a checkpoint restores), so a resumed run consumes random numbers exactly like an unbroken one.
        "generator": torch.Generator().manual_seed(seed),
    }


# ---------------------------------------------------------------------------------- data modules


class PreparedDataModule(pl.LightningDataModule):
    """Shared ``prepare()``/``setup()`` plumbing and the properties the entry point reads.

    Subclasses set ``targets`` (what their examples are labelled with), ``max_seq_len`` and ``lowercase``.
    """

    targets: Targets

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

    def describe(self) -> dict:
        """Plain values a run records about its data, so predicting encodes new inputs the same way; once
        prepared also the tokenizer it ended up with (``tokenizer``: where it was loaded from, which may be
        inherited from ``init.path`` or trained into the cache; ``vocab_size``: its real size), named as the
        settings they resolve, so readers show what the run used rather than what was configured."""
        described = {
            "targets": self.targets.name,
            "max_seq_len": self.max_seq_len,
            "lowercase": self.lowercase,
        }
        if self._prepared:
            described.update(tokenizer=self._tokenizer_dir, vocab_size=self.vocab_size)
        return described

    def save_artifacts(self, run: RunDir) -> None:
        """What the data leaves in a finished run: nothing here (a pre-training run's encoder export
        carries its tokenizer)."""

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
            **loader_kwargs(self.num_workers, self.seed),
        )

    def _set_tokenizer(self, tokenizer: Tokenizer, location: str) -> None:
        self._tokenizer = tokenizer
        loc = Path(location).resolve()  # recorded in the run, which may be read from another directory
        self._tokenizer_dir = str(loc.parent if loc.is_file() else loc)

    def _adopt_tokenizer(self, texts: Callable[[], Iterable[str]], fingerprint: str) -> Tokenizer:
        """The configured tokenizer, or one trained on ``texts()`` (cached by ``fingerprint``), as the data
        module's own; ``pad_id`` set from it."""
        tok, location = resolve_tokenizer(
            self.tokenizer_path, texts, self.vocab_size_target, self.lowercase, self.cache_dir, fingerprint
        )
        self._set_tokenizer(tok, location)
        self.pad_id = special_token_ids(tok)["pad"]
        return tok

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        """Evaluation batches in file order, through the module's collator (labelled data modules sort them by length:
        :meth:`LabelledDataModule._length_sorted_loader`; pairs keep file order, whose in-batch retrieval reads it)."""
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.collator,
            **loader_kwargs(self.num_workers, self.seed),
        )


class LabelledDataModule(PreparedDataModule):
    """Labelled data: its label map, resumable (length-grouped or shuffled) training batches, ordered
    evaluation batches.

    Subclasses set ``train_dataset`` (with ``lengths``), ``val_dataset``, ``test_dataset`` (or None),
    ``collator`` and the label map ``_labels`` in ``_prepare``.
    """

    def __init__(
        self,
        *,
        tokenizer: str | None,
        vocab_size: int,
        lowercase: bool,
        max_seq_len: int,
        batch_size: int,
        train_limit: int | None,
        val_split: float,
        group_by_length: bool,
        num_workers: int,
        cache_dir: str,
        hub: dict | None,
        seed: int,
    ) -> None:
        super().__init__()
        check_settings(locals())
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
        self.test_dataset: Dataset | None = None
        self._labels = LabelMap(())

    # -- label map ---------------------------------------------------------------------------
    @property
    def label_names(self) -> list[str]:
        self._require()
        return self._labels.names

    @property
    def label_map(self) -> dict[str, int]:
        self._require()
        return self._labels.to_id

    @property
    def num_labels(self) -> int:
        self._require()
        return len(self._labels)

    @property
    def head_kwargs(self) -> dict:
        return {"num_labels": self.num_labels}

    @property
    def task_kwargs(self) -> dict:
        return {"num_labels": self.num_labels, "label_names": self.label_names}

    def save_label_map(self, path: str | Path) -> None:
        self._require()
        self._labels.save(path)

    def save_artifacts(self, run: RunDir) -> None:
        """The label map and a copy of the tokenizer: the run alone can then turn text into predictions."""
        self.save_label_map(run.label_map)
        copy_tokenizer(self.tokenizer_dir, run.tokenizer)

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

    def val_dataloader(self) -> DataLoader:
        self.prepare()
        return self._length_sorted_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader | None:
        self.prepare()
        return self._length_sorted_loader(self.test_dataset) if self.test_dataset is not None else None

    def train_examples_dataloader(self) -> DataLoader:
        """Every training example once, as evaluation batches of similar length: for computing their vectors
        without gradient, e.g. to fit a head on them (``method=knn``)."""
        self.prepare()
        return self._length_sorted_loader(self.train_dataset)

    def _length_sorted_loader(self, dataset) -> DataLoader:
        """Evaluation batches of similar length (longest first, a fixed order): each example's output and the
        epoch's metrics do not depend on its batch-mates, and a batch padded to its longest text costs what
        its length says, not what the longest text of a file-order batch says (half the work on SST-2)."""
        order = np.argsort(-np.asarray(dataset.lengths), kind="stable")
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.collator,
            **loader_kwargs(self.num_workers, self.seed),
        )
