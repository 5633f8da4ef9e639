"""Labelled text for sequence classification: single texts or pairs, classes or (``num_labels=1``) scores."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np
import torch
from tokenizers import Tokenizer

from encoderlab.data.base import (
    LabelledDataModule,
    LabelMap,
    Targets,
    check_settings,
    heldout_split,
    hub_fingerprint,
    load_hub_split,
    local_file,
    missing_file_error,
    missing_train_error,
)
from encoderlab.data.collators import PaddingCollator
from encoderlab.data.datasets import LabelledDataset
from encoderlab.data.readers import file_fingerprint, read_table
from encoderlab.data.sampling import balanced_counts, balanced_draw, class_sizes, random_draw, short_classes
from encoderlab.data.token_cache import cached_token_ids
from encoderlab.data.tokenizer import encoding_copy, special_token_ids
from encoderlab.data.windows import DEFAULT_MAX_WINDOWS, WindowedDataset, Windows, check_reading, reading
from encoderlab.errors import UserError
from encoderlab.validate import between, check, differs_from, text

log = logging.getLogger("encoderlab")
_INT_LIKE = re.compile(r"^\s*\d+\s*$")


def _empty_label_row(raw: list) -> int | None:
    """1-based data row of the first missing label (an empty cell), or None."""
    for i, v in enumerate(raw):
        if v is None or (isinstance(v, str) and not v.strip()):
            return i + 1
    return None


class TextClassificationDataModule(LabelledDataModule):
    """Labelled text (single sentences or pairs) from CSV / TSV / JSONL, with dynamic padding.

    ``num_labels=1`` means regression: labels are read as floats and no label map is built.
    ``pairs=True`` declares a sentence-pair task: ``text_pair_column`` must then name the second text.
    """

    # One prediction input is a text; a ``(text, text_pair)`` tuple when the run has a text_pair_column.
    prediction_input = "text"

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
        train_sample_per_class: int | None = None,
        balanced_sample: bool = False,
        test_sample: int | None = None,
        val_split: float = 0.1,
        pairs: bool = False,
        num_labels: int | None = None,
        group_by_length: bool = True,
        num_workers: int = 0,
        cache_dir: str = ".cache/encoderlab",
        hub: dict | None = None,
        seed: int = 0,
        long_documents: str = "truncate",
        window_stride: int | None = None,
        max_windows: int | None = DEFAULT_MAX_WINDOWS,
    ):
        check_settings(locals())
        self._check_columns(text_column, label_column, text_pair_column)
        check_reading(long_documents, window_stride, text_pair_column)
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
        self.train_sample_per_class = train_sample_per_class
        self.balanced_sample = balanced_sample
        self.test_sample = test_sample
        self._check_draw()
        self.train_sample_counts: dict[str, int] | None = None  # per class, once a sample is drawn
        self.num_labels_expected = num_labels
        # How texts longer than max_seq_len are read (data/windows.py); bound to the tokenizer in _prepare.
        self.long_documents = long_documents
        self.window_stride = window_stride
        self.max_windows = max_windows
        self.reading = None
        self.documents: dict[str, dict] = {}  # per split: what the reading did to its texts

    @staticmethod
    def _check_columns(text_column: str, label_column: str, text_pair_column: str | None) -> None:
        """Three different columns: a model that reads its labels as its text learns nothing."""
        check("data.text_column", text_column, text)
        check("data.label_column", label_column, text)
        reads_labels = "the model would read its own labels"
        check("data.text_column", text_column, differs_from(label_column, "data.label_column", reads_labels))
        if text_pair_column is not None:
            check("data.text_pair_column", text_pair_column, text)
            for other, key in ((label_column, "data.label_column"), (text_column, "data.text_column")):
                why = reads_labels if other == label_column else "a pair needs two texts"
                check("data.text_pair_column", text_pair_column, differs_from(other, key, why))

    def _check_draw(self) -> None:
        """One size of sample: N examples (``train_sample``) or K of each class (``train_sample_per_class``)."""
        if self.train_sample is not None and self.train_sample_per_class is not None:
            raise UserError(
                f"data.train_sample={self.train_sample} and data.train_sample_per_class="
                f"{self.train_sample_per_class} both set the training sample's size — set one, null the other"
            )
        if self.balanced_sample and self.train_sample is None and self.train_sample_per_class is None:
            raise UserError(
                "data.balanced_sample=true but no sample is drawn — set data.train_sample=N (N // classes of each "
                "class) or data.train_sample_per_class=K"
            )

    @property
    def draws_by_class(self) -> bool:
        """Whether the training sample is class-balanced (``train_sample_per_class`` or ``balanced_sample``)."""
        balanced_n = self.balanced_sample and self.train_sample is not None
        return self.train_sample_per_class is not None or balanced_n

    @property
    def regression(self) -> bool:
        return self.num_labels_expected == 1

    @property
    def targets(self) -> Targets:
        return Targets.SCORES if self.regression else Targets.CLASSES

    @property
    def num_labels(self) -> int:
        self._require()
        return 1 if self.regression else len(self._labels)  # regression: one output, no label map

    def describe(self) -> dict:
        return {
            **super().describe(),
            "text_column": self.text_column,
            "text_pair_column": self.text_pair_column,
            **self._reading_settings(),
            **({"documents": self.documents} if self.documents else {}),
            **({"train_sample_counts": self.train_sample_counts} if self.train_sample_counts else {}),
            **({"test_sample": self.test_sample} if self.test_sample is not None else {}),
        }

    def _reading_settings(self) -> dict:
        """``long_documents`` and, with windows, ``window_stride`` (resolved once prepared) and ``max_windows``."""
        if self.reading is not None:
            return self.reading.settings()
        if self.long_documents != "window":
            return {"long_documents": self.long_documents}
        return {
            "long_documents": "window",
            "window_stride": self.window_stride,
            "max_windows": self.max_windows,
        }

    @classmethod
    def prediction_batch(
        cls, tokenizer: Tokenizer, max_seq_len: int, items: list, windows: Windows | None = None
    ) -> dict[str, torch.Tensor]:
        """Model inputs for raw texts (strings, or ``(text, text_pair)`` tuples), encoded as in training.

        ``[CLS] a [SEP] b [SEP]`` with token types 0 / 1, truncated to ``max_seq_len`` (pairs longest-first,
        as the token-id cache does) and padded to the batch's longest, as the training collator pads. With
        ``windows`` (a run that read long documents in windows) each text's windows, with ``document_index``.
        """
        if windows is not None:
            return windows.inputs(tokenizer, items)
        encodings = encoding_copy(tokenizer, max_seq_len).encode_batch(items, add_special_tokens=True)
        items = [
            {
                "input_ids": torch.tensor(e.ids, dtype=torch.long),
                "token_type_ids": torch.tensor(e.type_ids, dtype=torch.long),
            }
            for e in encodings
        ]
        return PaddingCollator(special_token_ids(tokenizer)["pad"]).inputs(items)

    # -- labels ------------------------------------------------------------------------------
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
            self._labels = LabelMap(())
            self._int_labels = False
            return
        self._int_labels = all(
            (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
            or (isinstance(v, str) and _INT_LIKE.match(v))
            for v in raw
        )
        if self._int_labels:
            names = [str(i) for i in range(max(int(v) for v in raw) + 1)]
        else:
            names = sorted({str(v) for v in raw})
        self._labels = LabelMap(names)
        occurring = sorted({str(int(v)) if self._int_labels else str(v) for v in raw})
        if len(occurring) < 2:
            raise UserError(
                f"{source} has one label only ('{occurring[0]}' in column '{self.label_column}') — classification "
                "needs at least 2: fix the file or data.label_column, or set data.num_labels=1 for regression"
            )
        self._check_expected_count(names, source)

    def _check_expected_count(self, names: list[str], source: str) -> None:
        """``data.num_labels``, when set, must be the number of labels the data has."""
        found = len(names)
        if self.num_labels_expected is not None and self.num_labels_expected != found:
            raise UserError(
                f"num_labels={self.num_labels_expected} but {source} has {found} labels "
                f"({', '.join(names[:10])}{', ...' if found > 10 else ''}) — set data.num_labels={found}"
            )

    def _encode_labels(self, raw: list, source: str) -> np.ndarray:
        self._check_labels_present(raw, source)
        if self.regression:
            return self._regression_targets(raw, source)
        mapping = self._labels.to_id
        out = np.empty(len(raw), dtype=np.int64)
        for i, v in enumerate(raw):
            key = str(int(v)) if self._int_labels and _INT_LIKE.match(str(v)) else str(v)
            if key not in mapping:
                raise UserError(
                    f"label '{v}' in {source} does not occur in the training data (labels: "
                    f"{', '.join(self._labels.names[:10])}) — fix the file or data.label_column"
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
        path = local_file(local)
        if path is not None:
            return read_table(path, self._columns()), str(path), file_fingerprint(path)
        hub_split = (self.hub or {}).get("splits", {}).get(split_key) if from_hub else None
        if from_hub and (split_key == "train" or hub_split):
            cols, rename = self._hub_columns()
            data = load_hub_split(self.hub, split_key, cols, local)
            return (
                {rename[c]: v for c, v in data.items()},
                f"hub:{self.hub.get('path')}",
                hub_fingerprint(self.hub, split_key),
            )
        if local is not None:
            raise missing_file_error(local, split_key)
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
        from_hub = local_file(self.train_file) is None
        if from_hub and not self.hub:
            raise missing_train_error(self.train_file)
        train, train_src, train_fp = self._read_split("train", self.train_file, from_hub)
        if self.train_limit is not None:
            train = {c: v[: self.train_limit] for c, v in train.items()}
        # The label map comes from the whole training set: a small sample keeps every label and label id.
        self._build_label_map(train[self.label_column], train_src)
        if self.draws_by_class:
            # Validation is held out of the whole training set first, so the training sample keeps the
            # draw's exact per-class counts.
            train_fp = f"{train_fp}:limit={self.train_limit}:cols={self._columns()}"
            train, train_fp, val = self._val_or_split(train, train_src, train_fp, from_hub)
            train = self._sample(train, train_src)
            size = self.train_sample or f"{self.train_sample_per_class}/class"
            train_fp = f"{train_fp}:sample={size}:balanced:seed={self.seed}"
        else:  # the order of every earlier run: draw, then split validation off the sample
            if self.train_sample is not None:
                train = self._sample(train, train_src)
            sample = f":sample={self.train_sample}:seed={self.seed}" if self.train_sample is not None else ""
            train_fp = f"{train_fp}:limit={self.train_limit}{sample}:cols={self._columns()}"
            train, train_fp, val = self._val_or_split(train, train_src, train_fp, from_hub)
        if self.train_sample is not None or self.train_sample_per_class is not None:
            self.train_sample_counts = self._class_counts(train[self.label_column], train_src)
        test = self._test_subset(self._read_split("test", self.test_file, from_hub))

        pairs = bool(self.text_pair_column)
        train_texts = self._texts(train)

        def tokenizer_texts():
            for item in train_texts():
                yield from (item if pairs else (item,))

        tok = self._adopt_tokenizer(tokenizer_texts, train_fp)

        self.reading = reading(
            self.long_documents, tok, self.max_seq_len, self.window_stride, self.max_windows
        )

        def build(table: dict[str, list], source: str, fp: str) -> LabelledDataset | WindowedDataset:
            labels = self._encode_labels(table[self.label_column], source)
            ids = cached_token_ids(
                self._texts(table),
                tok,
                self.cache_dir,
                [fp, str(self._columns())],
                pairs=pairs,
                **self.reading.encoding(),
            )
            return self.reading.dataset(ids, labels)

        self.train_dataset = build(train, train_src, train_fp)
        # The texts themselves, for methods that hand them to another library (method=setfit_library).
        self._tables = {"train": (train, train_src), "val": val[:2], "test": test[:2] if test else None}
        self.val_dataset = build(*val)
        self.test_dataset = build(*test) if test is not None else None
        self.collator = self.reading.collator(self.pad_id)
        splits = {"train": self.train_dataset, "val": self.val_dataset, "test": self.test_dataset}
        self.documents = {name: self.reading.report(ds) for name, ds in splits.items() if ds is not None}
        log.info(self.reading.summary(self.documents["train"]))

    def _test_subset(self, test):
        """The test split, or ``test_sample`` of its examples drawn with a fixed seed (not the run's): every
        run of a study scores the same sentences, at a fraction of the cost of the whole split."""
        if test is None or self.test_sample is None:
            return test
        table, source, fingerprint = test
        n = len(table[self.label_column])
        if self.test_sample >= n:
            return test
        keep = np.sort(np.random.default_rng(0).permutation(n)[: self.test_sample])
        subset = {column: [values[i] for i in keep] for column, values in table.items()}
        return (
            subset,
            f"{source} ({self.test_sample} of {n})",
            f"{fingerprint}:test_sample={self.test_sample}",
        )

    def labelled_texts(self, split: str) -> tuple[list, list[int]]:
        """(texts, class ids) of ``split`` ("train": the drawn sample) as the run reads them."""
        self.prepare()
        found = self._tables.get(split)
        if found is None:
            raise UserError(f"the data has no {split} split — set data.{split}_file")
        table, source = found
        labels = self._encode_labels(table[self.label_column], source)
        return list(self._texts(table)()), [int(v) for v in np.asarray(labels).reshape(-1)]

    def _val_or_split(self, train: dict[str, list], train_src: str, train_fp: str, from_hub: bool):
        """(train, its fingerprint, the val split): ``val_file`` (or the hub's split), else ``val_split`` of
        ``train`` held out."""
        val = self._read_split("val", self.val_file, from_hub)
        if val is None:
            train, val_table = self._split_off_val(train)
            train_fp = f"{train_fp}:split={self.val_split}:seed={self.seed}"
            val = (val_table, f"{train_src} (val_split={self.val_split})", f"{train_fp}:val")
        return train, train_fp, val

    def _sample(self, table: dict[str, list], source: str) -> dict[str, list]:
        """The training sample drawn with ``seed`` (one draw per seed in a few-shot study): class-balanced
        (:attr:`draws_by_class`), else ``train_sample`` random examples holding every label at least once
        when there are enough places (:func:`encoderlab.data.sampling.random_draw`)."""
        n = len(table[self.label_column])
        if self.draws_by_class:
            picked = self._balanced_draw(table[self.label_column], source)
        else:
            self._check_sample_size(n, source)
            labels = None if self.regression else [str(v) for v in table[self.label_column]]
            picked = random_draw(n, self.train_sample, self.seed, labels)
        return {c: [v[i] for i in picked] for c, v in table.items()}

    def _check_sample_size(self, n: int, source: str) -> None:
        check("data.train_sample", self.train_sample, between(1, n, f"{source} has {n} training examples"))

    def _class_ids(self, raw: list, source: str, key: str) -> np.ndarray:
        """One class id per example, or a UserError naming ``key`` for data without one class per text."""
        ids = None if self.regression else self._encode_labels(raw, source)
        if ids is None or ids.ndim != 1:
            raise UserError(
                f"{key} draws from each class, but {source} has "
                f"{'numeric targets' if ids is None else 'label sets'}, not one class per text — use "
                "data.train_sample=N (a random draw)"
            )
        return ids

    def _balanced_draw(self, raw: list, source: str) -> list[int]:
        key = (
            f"data.train_sample_per_class={self.train_sample_per_class}"
            if self.train_sample is None
            else f"data.train_sample={self.train_sample} with data.balanced_sample=true"
        )
        class_ids = self._class_ids(raw, source, key)
        available = class_sizes(class_ids)
        rng = np.random.default_rng(self.seed)
        if self.train_sample is None:
            wanted = dict.fromkeys(available, self.train_sample_per_class)
        else:
            self._check_sample_size(len(class_ids), source)
            wanted = balanced_counts(list(available), self.train_sample, rng)
        short = short_classes(wanted, available)
        if short:
            c = short[0]
            fix = (
                f"set data.train_sample_per_class={available[c]} or less"
                if self.train_sample is None
                else f"lower data.train_sample to {len(available) * available[c]} or less, or set "
                "data.balanced_sample=false (a random draw)"
            )
            raise UserError(
                f"{key} needs {wanted[c]} training examples of class '{self._labels.names[c]}', which has "
                f"{available[c]} in {source} — {fix}"
            )
        return balanced_draw(class_ids, wanted, rng)

    def _class_counts(self, raw: list, source: str) -> dict[str, int] | None:
        """Training examples per class name (the label map's order), None without one class per text."""
        ids = None if self.regression else self._encode_labels(raw, source)
        if ids is None or ids.ndim != 1:
            return None
        return {self._labels.names[c]: n for c, n in class_sizes(ids).items()}

    def _split_off_val(self, table: dict[str, list]) -> tuple[dict[str, list], dict[str, list]]:
        train_idx, val_idx = heldout_split(len(table[self.label_column]), self.val_split, self.seed)
        pick = lambda idx: {c: [v[i] for i in idx] for c, v in table.items()}  # noqa: E731
        return pick(train_idx), pick(val_idx)
