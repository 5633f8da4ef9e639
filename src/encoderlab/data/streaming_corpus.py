"""A pre-training corpus streamed from token shards (``data=sharded_corpus``): corpora larger than a machine.

The same blocks, masking and objectives as ``data=text_corpus`` (this module subclasses it), read through
litdata instead of one memory-mapped cache: ``data.shards`` names a shard set built by ``encoderlab-shard``
(a directory, or an object-store URL such as ``s3://bucket/shards/<key>``); left null, the shard set of
``data.train_file`` / ``data.hub`` is built at first use (content-keyed under ``data.cache_dir``, reused
afterwards; see ``encoderlab.data.shards``).

Training blocks come from litdata's ``StreamingDataset``: each process, and each loader worker in it, reads
its own chunks of the shards (disjoint within an epoch), in an order shuffled by ``(seed, epoch)``. Every
block is keyed ``epoch * blocks + block index``, as ``EpochKeyedDataset`` keys data=text_corpus's, so its
masking is seeded by what it is, not by where or by whom it was read. The loader's position (the batches
Lightning has trained in this epoch) goes into the checkpoint, and a resumed run continues with exactly
the batches an unbroken one would have seen; see docs/scaling.md for what a resume with another number of
processes guarantees. With a masking-rate schedule each batch is masked in the training process, where the
step that trains it is known.
"""

from __future__ import annotations

import glob
import importlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from encoderlab.data.base import loader_kwargs
from encoderlab.data.corpus import TextCorpusDataModule
from encoderlab.data.datasets import framed_block
from encoderlab.data.masking import WORD_STRATEGIES
from encoderlab.data.shards import CorpusSource, ShardSet, ShardSpec, build_shards, is_url, open_shards
from encoderlab.data.tokenizer import load_tokenizer, special_token_ids, word_start_ids
from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.validate import at_least, check, text

STREAM = "data=sharded_corpus (streaming from token shards)"
log = logging.getLogger("encoderlab")
# litdata logs two INFO lines for every dataset it opens (in every loader worker, at every epoch).
logging.getLogger("litdata").setLevel(logging.WARNING)


def _litdata():
    return require("litdata", for_=STREAM, or_else="use data=text_corpus")


class ShardedCorpusDataModule(TextCorpusDataModule):
    """``data=text_corpus`` read from token shards: the same settings, plus where the shards are and how
    they are built."""

    def __init__(
        self,
        shards: str | None = None,
        shard_workers: int | None = None,
        shard_chunk_mb: int = 64,
        tokenizer_sample: int = 1_000_000,
        **corpus,
    ):
        super().__init__(**corpus)
        check("data.shards", shards, text, optional=True)
        check("data.shard_workers", shard_workers, at_least(1), optional=True)
        check("data.shard_chunk_mb", shard_chunk_mb, at_least(1))
        check("data.tokenizer_sample", tokenizer_sample, at_least(1))
        self.shards = shards
        self.shard_workers = shard_workers
        self.shard_chunk_mb = shard_chunk_mb
        self.tokenizer_sample = tokenizer_sample
        self.shard_set: ShardSet | None = None

    # -- the shard set ---------------------------------------------------------------------------
    def shard_spec(self) -> ShardSpec:
        """What the shards are built from: these data settings."""
        train = self._source(self.train_file, "train")
        if train is None and self.train_file is None:
            raise UserError(
                "no training data: data.train_file, data.hub and data.shards are not set — set data.train_file "
                "(or data.shards to a built shard set)"
            )
        if train is None:
            raise UserError(
                f"data file not found: {self.train_file} — set data.train_file (or data.hub), or data.shards "
                "to a built shard set"
            )
        val = None
        if self.val_file is not None:
            val = self._source(self.val_file, "val")
            if val is None:
                raise UserError(
                    f"data file not found: {self.val_file} — set data.val_file or ENCODERLAB_DATA_DIR"
                )
        elif train.hub is not None and (self.hub.get("splits") or {}).get("val"):
            val = CorpusSource(hub=self.hub, split=self.hub["splits"]["val"])
        return ShardSpec(
            train=train,
            val=val,
            train_limit=self.train_limit,
            val_limit=self.val_limit,
            tokenizer=self.tokenizer_path,
            vocab_size=self.vocab_size_target,
            lowercase=self.lowercase,
            tokenizer_sample=self.tokenizer_sample,
            chunk_bytes=self.shard_chunk_mb << 20,
        )

    def _source(self, path: str | None, split: str) -> CorpusSource | None:
        """Local files (a file, or a glob pattern such as ``dir/*.txt``), else the hub split (train only)."""
        files = _glob(path) if path is not None else []
        if files:
            return CorpusSource(files=tuple(files))
        if split == "train" and self.hub:
            return CorpusSource(hub=self.hub, split=(self.hub.get("splits") or {}).get("train", "train"))
        return None

    def build_shards(
        self, workers: int | None = None, on_start: Callable[[str], None] | None = None
    ) -> ShardSet:
        """The shard set of these settings: ``data.shards`` checked, or the corpus's reused if built, else
        built now with every core."""
        _litdata()
        if self.shards is not None:
            return open_shards(self.shards, self.cache_dir, reused=True)
        return build_shards(self.shard_spec(), self.cache_dir, workers or self.shard_workers, on_start)

    def _prepare(self) -> None:
        self.shard_set = self.build_shards(on_start=lambda d: log.info("tokenizing the corpus into %s", d))
        if not self.shard_set.reused:
            log.info("shards built: %s", self.shard_set.summary())
        tok = load_tokenizer(self.shard_set.tokenizer_dir)
        if self.tokenizer_path is not None and self.shards is not None:
            wanted = load_tokenizer(self.tokenizer_path, lowercase=self.lowercase)
            if wanted.to_str() != tok.to_str():
                raise UserError(
                    f"data.shards={self.shards} were tokenized with another tokenizer than {self.tokenizer_path} "
                    "(data.tokenizer or init.path's) — build shards with that tokenizer (encoderlab-shard "
                    f"data.tokenizer={self.tokenizer_path} ...) and pass those"
                )
        self._set_tokenizer(tok, str(self.shard_set.tokenizer_dir))
        self.block_tokens = self.max_seq_len - 2  # between [CLS] and [SEP]
        for split in ("train", "val"):
            if self.shard_set.num_blocks(split, self.block_tokens) == 0:
                raise UserError(
                    f"{split} shards hold fewer than {self.block_tokens} tokens per chunk, so no block of "
                    f"max_seq_len={self.max_seq_len} fits — use more text (data.{split}_limit) or a smaller "
                    "data.max_seq_len"
                )
        self._word_start_ids = word_start_ids(tok) if self.masking in WORD_STRATEGIES else None
        self.collator = self._collator()
        self.val_collator = self._collator(fixed_rate=self.mlm_probability_end)

    def _chunk_cache(self, split: str) -> str | None:
        """Where chunks streamed from an object store are kept (litdata evicts them past its budget)."""
        if not is_url(self.shard_set.location):
            return None
        return str(self.shard_set.local / "chunks" / split)

    def _blocks(self, split: str, shuffle: bool) -> TokenBlocks:
        ids = special_token_ids(self._tokenizer)
        return TokenBlocks(
            self.shard_set.split(split),
            self.max_seq_len,
            ids["cls"],
            ids["sep"],
            self.shard_set.num_blocks(split, self.block_tokens),
            seed=self.seed,
            shuffle=shuffle,
            cache_dir=self._chunk_cache(split),
        )

    # -- loaders --------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        self.prepare()
        # Built here, after the distributed processes have met: litdata reads the rank and world size then.
        trainer = self.trainer
        kwargs = loader_kwargs(self.num_workers, self.seed)
        kwargs["persistent_workers"] = False  # workers take the epoch and resume position when they start
        collate, mask = self.collator, None
        if self.mlm_probability_end is not None:
            # A scheduled rate needs the step that trains each block, known only where the batches arrive in
            # order: the workers pass the blocks on, and each batch is masked here, told its number.
            batch = BatchInRun()
            per_step = trainer.accumulate_grad_batches if trainer is not None else 1
            collator = self._collator(batch_order=batch, batches_per_step=per_step)
            collate, mask = list, batch.masking(collator)
        return ResumableStreamingLoader(
            self._blocks("train", shuffle=True),
            batch_size=self.batch_size,
            collate_fn=collate,
            epoch=lambda: trainer.current_epoch if trainer is not None else 0,
            batches_done=lambda: (
                trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer is not None else 0
            ),
            mask=mask,
            **kwargs,
        )

    def val_dataloader(self) -> DataLoader:
        self.prepare()
        # Every process evaluates the whole validation split, keyed 0..n-1: the same masking every time.
        blocks = ValidationBlocks(self._blocks("val", shuffle=False))
        return DataLoader(
            blocks,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.val_collator,
            **loader_kwargs(self.num_workers, self.seed),
        )


def _glob(pattern: str) -> list[str]:
    """The files a path names: itself, or the sorted matches of a glob pattern (``corpus/*.txt``)."""
    if Path(pattern).is_file():
        return [pattern]
    return sorted(p for p in glob.glob(pattern) if Path(p).is_file())


# ------------------------------------------------------------------------------------ streaming blocks


def _streaming_base(name: str, fallback: type) -> type:
    """litdata's ``name`` class when litdata is installed; else ``fallback`` (the classes below then refuse
    to be built, with the extra to install)."""
    try:
        litdata = importlib.import_module("litdata")
    except ModuleNotFoundError:
        return fallback
    return getattr(litdata, name)


class TokenBlocks(_streaming_base("StreamingDataset", torch.utils.data.IterableDataset)):
    """Blocks ``[CLS] + max_seq_len - 2 tokens + [SEP]`` of a shard split, as ``(key, block)`` items.

    litdata's ``TokensLoader`` cuts the split's token stream into blocks inside each chunk (a chunk's last
    partial block is dropped); block ``i`` of the split is keyed ``epoch * num_blocks + i`` in epoch
    ``epoch`` (0-based; litdata counts epochs from 1).
    """

    def __init__(
        self,
        location: str,
        seq_len: int,
        cls_id: int,
        sep_id: int,
        num_blocks: int,
        seed: int,
        shuffle: bool,
        cache_dir: str | None = None,
    ):
        litdata = _litdata()
        super().__init__(
            location,
            cache_dir=cache_dir,
            item_loader=litdata.TokensLoader(block_size=seq_len - 2),
            shuffle=shuffle,
            seed=seed,
            # Always: litdata equalises the processes' shares by dropping a few blocks of each epoch with
            # several processes, and a resume with another number of processes needs the same setting.
            drop_last=True,
            item_shuffle_window=0,  # a full permutation inside each chunk: token blocks are cheap to seek
        )
        self.seq_len = seq_len
        self.cls_id = cls_id
        self.sep_id = sep_id
        self.num_blocks = num_blocks

    def __getitem__(self, index):
        from litdata.streaming.sampler import ChunkedIndex

        tokens = super().__getitem__(index)
        position = index.index if isinstance(index, ChunkedIndex) else int(index)
        key = (self.current_epoch - 1) * self.num_blocks + int(position)
        return key, framed_block(tokens, self.cls_id, self.sep_id)


class BatchInRun:
    """``MLMCollator``'s ``batch_order`` when batches are masked one at a time, in order: every key of the
    batch being masked belongs to batch ``batch`` of this process's run (``epoch * batches per epoch +
    batch of the epoch``; with ``accumulate_grad_batches`` of them per optimizer step, the step of any
    number of processes, as ``KeyedBatchOrder`` counts it)."""

    def __init__(self) -> None:
        self.batch = 0

    def __call__(self, keys: torch.Tensor) -> torch.Tensor:
        return torch.full_like(keys, self.batch)

    def masking(self, collator: Callable[[list], dict]) -> Callable[[list, int], dict]:
        def mask(items: list, batch: int) -> dict:
            self.batch = batch
            return collator(items)

        return mask


class ValidationBlocks(Dataset):
    """Every block of a (validation) shard split, in order, keyed 0..n-1, read by random access."""

    def __init__(self, blocks: TokenBlocks) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return self.blocks.num_blocks

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        _, block = self.blocks[i]
        return i, block


class ResumableStreamingLoader(_streaming_base("StreamingDataLoader", DataLoader)):
    """litdata's ``StreamingDataLoader`` keyed to Lightning's epochs, its position in the checkpoint.

    litdata counts its own epochs (one per ``iter``) and the batches it has handed out; Lightning starts
    iterators of its own (its fetcher runs a batch ahead of training, ``limit_train_batches`` ends epochs
    early). So each epoch here is Lightning's ``epoch()``, and ``state_dict`` records the batches trained
    (``batches_done()``), from which litdata's state at that point is derived: a resumed run replays the
    interrupted epoch from exactly the next untrained batch.
    """

    def __init__(
        self,
        dataset,
        *,
        epoch: Callable[[], int],
        batches_done: Callable[[], int],
        mask: Callable[[list, int], dict] | None = None,
        **kwargs,
    ):
        super().__init__(dataset, **kwargs)
        self._epoch = epoch
        self._batches_done = batches_done
        self._mask = mask  # (items, number of the batch in the run) -> batch, when masking is done here
        self._resume: dict | None = None

    def __iter__(self) -> Iterator:
        epoch, resume = int(self._epoch()), self._resume
        self._resume, start = None, 0
        if resume is not None and resume["epoch"] == epoch and 0 < resume["batches_done"] < len(self):
            self._check_resumable(resume["litdata"]["dataset"])
            super().load_state_dict(resume["litdata"])  # litdata replays the epoch up to that batch
            start = resume["batches_done"]
        else:
            self.restore = False
            self.current_epoch = epoch  # litdata's next iteration is its epoch epoch + 1
        if self._mask is None:
            yield from super().__iter__()
            return
        first = epoch * len(self)
        for k, items in enumerate(super().__iter__(), start=start):
            yield self._mask(items, first + k)

    def _check_resumable(self, saved: dict) -> None:
        """The settings the interrupted epoch's order depends on, as they were (litdata would refuse them
        with a traceback, in a loader worker)."""
        ds = self.dataset
        now = {
            "seed": ds.seed,
            "data.max_seq_len - 2": ds.item_loader.state_dict()["block_size"],
            "shards": ds.input_dir.url or ds.input_dir.path,
        }
        was = {
            "seed": saved.get("seed"),
            "data.max_seq_len - 2": (saved.get("item_loader") or {}).get("block_size"),
            "shards": saved.get("input_dir_url") or saved.get("input_dir_path"),
        }
        changed = [f"{k} was {was[k]}, now {now[k]}" for k in now if was[k] != now[k]]
        if changed:
            raise UserError(
                f"cannot resume mid-epoch from the shards: {'; '.join(changed)} — resume with the run's own "
                "seed, data.max_seq_len and data.shards"
            )

    def state_dict(self) -> dict:
        epoch, done = int(self._epoch()), int(self._batches_done())
        samples = done * self.batch_size
        dataset = dict(self.dataset.state_dict(samples, self.num_workers, self.batch_size))
        dataset["current_epoch"] = epoch + 1
        return {
            "epoch": epoch,
            "batches_done": done,
            "litdata": {
                "dataset": dataset,
                "current_epoch": epoch + 1,
                "num_samples_yielded": samples,
                # The worker that made the last trained batch: litdata resumes with the next one.
                "latest_worker_idx": (done - 1) % max(1, self.num_workers),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self._resume = state
