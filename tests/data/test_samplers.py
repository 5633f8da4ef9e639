"""Batch order from (seed, epoch): resumable mid-epoch, sharded so that global batches do not depend on the
number of processes, and MLM masking tied to each item rather than to the batch or the global RNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch

from encoderlab.data import TextClassificationDataModule
from encoderlab.data.collators import MLMCollator
from encoderlab.data.samplers import (
    EpochKeyedDataset,
    LengthGroupedSampler,
    ResumableDataLoader,
    ShuffledBatchSampler,
)


def samplers():
    lengths = np.random.default_rng(0).integers(1, 60, 203)
    return [
        ShuffledBatchSampler(203, batch_size=8, seed=3),
        LengthGroupedSampler(lengths, batch_size=8, seed=3, mega_batch_mult=4),
    ]


@pytest.mark.parametrize("sampler", samplers(), ids=["shuffled", "length_grouped"])
def test_resume_continues_the_same_epoch_order(sampler):
    sampler.set_epoch(2)
    epoch2 = list(sampler)
    assert sorted(i for b in epoch2 for i in b) == list(range(203)) and len(epoch2) == len(sampler)
    sampler.set_epoch(0)
    assert list(sampler) != epoch2  # another epoch, another order
    sampler.resume(epoch=2, batches_done=11)
    assert len(sampler) == len(epoch2)  # Lightning counts the batches already done itself
    assert list(sampler) == epoch2[11:]
    assert list(sampler) == epoch2  # the skip applies to the resumed epoch's first pass only


@pytest.mark.parametrize("sampler", samplers(), ids=["shuffled", "length_grouped"])
def test_shards_split_each_step_of_one_process(sampler):
    whole = list(sampler.epoch_batches(1))
    shards = []
    for rank in range(3):
        sampler.shard(rank, 3)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    assert len({len(s) for s in shards}) == 1  # same number of batches everywhere, or DDP hangs
    steps = [[b for shard in shards for b in shard[step : step + 1]] for step in range(len(shards[0]))]
    padded = whole + whole[: len(shards[0]) * 3 - len(whole)]
    assert [b for step in steps for b in step] == padded
    # Resuming a shard skips that process's own batches.
    sampler.shard(1, 3)
    sampler.resume(epoch=1, batches_done=4)
    assert list(sampler) == shards[1][4:]


def test_lightning_sets_the_epoch_of_a_batch_sampler():
    sampler = ShuffledBatchSampler(20, batch_size=4)
    loader = ResumableDataLoader(range(20), batch_sampler=sampler, batches_done=lambda: 0)
    _set_sampler_epoch(loader, 5)
    assert sampler.epoch == 5


def test_keyed_masking_depends_on_the_item_only():
    torch.manual_seed(0)
    blocks = [torch.randint(5, 300, (16,)) for _ in range(12)]
    keyed = EpochKeyedDataset(blocks)
    collate = MLMCollator(0, 4, 300, [0, 1, 2, 3, 4], seed=9)
    whole = collate([keyed[k] for k in range(12)])
    halves = [collate([keyed[k] for k in range(6)]), collate([keyed[k] for k in range(6, 12)])]
    torch.manual_seed(123)  # the global RNG plays no part
    for name in whole:
        assert torch.equal(whole[name], torch.cat([h[name] for h in halves]))
    # The same block drawn in the next epoch (key + len) is masked differently.
    again = collate([keyed[k + 12] for k in range(12)])
    assert torch.equal(again["attention_mask"], whole["attention_mask"])
    assert not torch.equal(again["labels"], whole["labels"])


def test_classification_loader_resumes_mid_epoch(tmp_path, classification_files):
    def loader():
        dm = TextClassificationDataModule(
            train_file=str(classification_files["train"]),
            vocab_size=150,
            batch_size=8,
            cache_dir=str(tmp_path / "cache"),
        )
        dm.prepare()
        return dm.train_dataloader()

    first = loader()
    first.batch_sampler.set_epoch(1)
    full = [b["input_ids"] for b in first]
    state = {"epoch": 1, "batches_done": 5}
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [b["input_ids"] for b in resumed]
    assert len(rest) == len(full) - 5
    assert all(torch.equal(a, b) for a, b in zip(full[5:], rest, strict=True))
    assert resumed.state_dict() == {"epoch": 1, "batches_done": 0}  # no trainer attached: nothing trained


def test_an_epoch_order_costs_eight_bytes_an_item():
    # Python lists of the epoch's batches would cost ~40 bytes an item: GBs for a large corpus's blocks.
    batches = ShuffledBatchSampler(10_001, batch_size=32, seed=1, epoch_keys=True).epoch_batches(2)
    assert batches.order.dtype == np.int64 and batches.order.nbytes == 8 * 10_001
    assert len(batches) == 313 and len(batches[312]) == 10_001 - 312 * 32
    assert sorted(i for b in batches for i in b) == list(range(2 * 10_001, 3 * 10_001))
