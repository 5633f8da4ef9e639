"""An unlabelled text corpus (one paragraph per line) packed into fixed-length blocks for MLM pre-training."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch.utils.data import DataLoader

from encoderlab.data.base import (
    PreparedDataModule,
    Targets,
    check_settings,
    hub_fingerprint,
    load_hub_split,
    loader_kwargs,
    local_file,
    missing_file_error,
    missing_train_error,
)
from encoderlab.data.collators import MASK_COUNTS, MLMCollator
from encoderlab.data.datasets import PackedSequenceDataset
from encoderlab.data.masking import WORD_STRATEGIES
from encoderlab.data.readers import file_fingerprint, keep_paragraph, read_corpus
from encoderlab.data.samplers import EpochKeyedDataset, ShuffledBatchSampler
from encoderlab.data.token_cache import cached_token_ids
from encoderlab.data.tokenizer import resolve_tokenizer, special_token_ids, word_start_ids
from encoderlab.errors import UserError
from encoderlab.validate import check, one_of


class TextCorpusDataModule(PreparedDataModule):
    """Unlabelled text (one paragraph per line) packed into fixed-length blocks for MLM pre-training."""

    targets = Targets.TOKENS

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
        masking: str = "token",
        span_p: float = 0.2,
        span_max: int = 10,
        mlm_probability_end: float | None = None,
        masking_schedule_steps: int | None = None,
        mask_count: str = "auto",
        num_workers: int = 0,
        cache_dir: str = ".cache/encoderlab",
        hub: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        check_settings(locals())
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
        # The masking lives in the collator alone: changing it reuses the same token cache.
        self.masking = masking
        self.span_p = span_p
        self.span_max = span_max
        self.mlm_probability_end = mlm_probability_end
        self.masking_schedule_steps = masking_schedule_steps
        check("data.mask_count", mask_count, one_of("auto", *MASK_COUNTS))
        self.mask_count = mask_count
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.hub = dict(hub) if hub else None
        # Fail on bad masking settings at construction, before any data work.
        MLMCollator(
            0,
            4,
            6,
            [0, 1, 2, 3, 4],
            mlm_probability,
            mask_replace_prob,
            random_replace_prob,
            masking=masking,
            word_start_ids=torch.ones(6, dtype=torch.bool),
            span_p=span_p,
            span_max=span_max,
            mlm_probability_end=mlm_probability_end,
            masking_schedule_steps=masking_schedule_steps,
            mask_count="sampled" if mask_count == "auto" else mask_count,
            max_seq_len=max_seq_len,
        )

    def resolved_mask_count(self) -> str:
        """``data.mask_count``, with ``auto`` decided: ``fixed`` when training on a GPU with token masking
        (static shapes for the compiled step), else ``sampled``. The device is known once a trainer holds
        the data, so the decision is taken again at ``setup``."""
        if self.mask_count != "auto":
            return self.mask_count
        trainer = self.trainer
        on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
        return "fixed" if on_gpu and self.masking == "token" else "sampled"

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.collator.fixed_count != (self.resolved_mask_count() == "fixed"):
            self.collator = self._collator()
            self.val_collator = self._collator(fixed_rate=self.mlm_probability_end)

    def describe(self) -> dict:
        return {**super().describe(), "mask_count": self.resolved_mask_count()}

    @property
    def head_kwargs(self) -> dict:
        return {}

    @property
    def task_kwargs(self) -> dict:
        return {}

    def _hub_paragraphs(self, split_key: str, limit: int | None) -> list[str]:
        col = self.hub.get("text_column", "text")
        rows = load_hub_split(self.hub, split_key, [col], self.train_file)[col]
        paragraphs = [str(t).strip() for t in rows if t is not None and keep_paragraph(str(t))]
        paragraphs = paragraphs[:limit] if limit is not None else paragraphs
        if not paragraphs:
            raise UserError(
                f"hub dataset '{self.hub.get('path')}' has no text in column '{col}' — set data.hub.text_column"
            )
        return paragraphs

    def _prepare(self) -> None:
        train_path = local_file(self.train_file)
        if train_path is not None:
            fingerprint = f"{file_fingerprint(train_path)}:limit={self.train_limit}"
            read_all = cache(lambda: read_corpus(train_path, self.train_limit))
        elif self.hub:
            fingerprint = f"{hub_fingerprint(self.hub, 'train')}:limit={self.train_limit}"
            read_all = cache(lambda: self._hub_paragraphs("train", self.train_limit))
        else:
            raise missing_train_error(self.train_file)

        # Validation: local val_file, else the hub's val split (hub mode), else the last 1% of train.
        val_path = local_file(self.val_file)
        hub_val = train_path is None and self.hub and (self.hub.get("splits") or {}).get("val")
        if self.val_file is not None and val_path is None and not hub_val:
            raise missing_file_error(self.val_file, "val")
        if val_path is not None:
            train_texts: Callable[[], list[str]] = read_all
            val_key = f"{file_fingerprint(val_path)}:limit={self.val_limit}"
            val_texts = cache(lambda: read_corpus(val_path, self.val_limit))
        elif hub_val:
            train_texts = read_all
            val_key = f"{hub_fingerprint(self.hub, 'val')}:limit={self.val_limit}"
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
        self._word_start_ids = word_start_ids(tok) if self.masking in WORD_STRATEGIES else None
        self.collator = self._collator()
        # Validation masks at one fixed rate (a schedule's end rate), so its losses compare across steps.
        self.val_collator = self._collator(fixed_rate=self.mlm_probability_end)

    def _collator(self, fixed_rate: float | None = None, batch_order=None, batches_per_step: int = 1):
        """The masking collator; with ``batch_order`` the scheduled rate follows the training batches."""
        ids = special_token_ids(self._tokenizer)
        return MLMCollator(
            pad_id=ids["pad"],
            mask_id=ids["mask"],
            vocab_size=self._tokenizer.get_vocab_size(),
            special_ids=[ids[k] for k in ("pad", "unk", "cls", "sep", "mask")],
            mlm_probability=fixed_rate or self.mlm_probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
            seed=self.seed,
            masking=self.masking,
            word_start_ids=self._word_start_ids,
            span_p=self.span_p,
            span_max=self.span_max,
            mlm_probability_end=None if fixed_rate else self.mlm_probability_end,
            masking_schedule_steps=None if fixed_rate else self.masking_schedule_steps,
            batch_order=batch_order,
            batches_per_step=batches_per_step,
            mask_count=self.resolved_mask_count(),
            max_seq_len=self.max_seq_len,
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
        collator = self.collator
        if self.mlm_probability_end is not None:
            # The scheduled rate counts optimizer steps: each takes a batch from every process, times the
            # gradient accumulation.
            trainer = self.trainer
            per_step = trainer.world_size * trainer.accumulate_grad_batches if trainer is not None else 1
            collator = self._collator(batch_order=sampler.batch_order(), batches_per_step=per_step)
        return self._resumable_train_loader(EpochKeyedDataset(self.train_dataset), sampler, collator)

    def val_dataloader(self) -> DataLoader:
        self.prepare()
        # Keys 0..n-1: the same masking at every validation, so validation losses compare across steps.
        return DataLoader(
            EpochKeyedDataset(self.val_dataset),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.val_collator,
            **loader_kwargs(self.num_workers, self.seed),
        )
