"""data=sharded_corpus: text_corpus's blocks and masking, streamed; exact mid-epoch resume; another number
of processes on resume; two gloo processes reading disjoint parts of every epoch."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from encoderlab.data.corpus import TextCorpusDataModule
from encoderlab.errors import UserError
from tests.conftest import write_corpus

pytest.importorskip("litdata")
from encoderlab.data.shards import CorpusSource, ShardSpec, build_shards  # noqa: E402
from encoderlab.data.streaming_corpus import ShardedCorpusDataModule  # noqa: E402

SETTINGS = {"vocab_size": 400, "max_seq_len": 32, "batch_size": 8, "seed": 3}


class FakeTrainer:
    """What the training loader reads of Lightning's trainer: the epoch, the batches trained in it, the device."""

    def __init__(self, epoch: int = 0, world_size: int = 1) -> None:
        self.current_epoch, self.world_size, self.accumulate_grad_batches = epoch, world_size, 1
        self.global_rank = 0
        self.strategy = SimpleNamespace(root_device=torch.device("cpu"))
        self.progress = SimpleNamespace(processed=0)
        self.fit_loop = SimpleNamespace(
            epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(current=self.progress))
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    return write_corpus(root / "train.txt", 300, seed=1), root / "cache"


@pytest.fixture(scope="module")
def chunked(corpus) -> str:
    """A shard set of the corpus in chunks of 8 KiB (about 4,000 tokens each) from two workers."""
    train, cache = corpus
    spec = ShardSpec(CorpusSource((str(train),)), None, vocab_size=400, chunk_bytes=8 << 10)
    return build_shards(spec, str(cache), workers=2, piece_bytes=8 << 10).location


def sharded(corpus, trainer=None, **settings) -> ShardedCorpusDataModule:
    train, cache = corpus
    dm = ShardedCorpusDataModule(train_file=str(train), **{**SETTINGS, "cache_dir": str(cache), **settings})
    dm.trainer = trainer
    dm.prepare()
    return dm


def train(loader, trainer, start: int = 0, stop: int | None = None) -> list[dict]:
    """The batches of ``loader`` from batch ``start`` of the epoch, counted as trained (Lightning's fetcher
    draws one batch more than it trains: at ``stop``, one more is drawn)."""
    trainer.progress.processed = start
    batches = []
    for batch in loader:
        if trainer.progress.processed == stop:
            break
        batches.append(batch)
        trainer.progress.processed += 1
    return batches


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)


def keyed(items) -> dict:
    """A collator keeping only the blocks' keys."""
    return {"keys": torch.tensor([k for k, _ in items])}


def keys(batches) -> list[int]:
    return [int(k) for b in batches for k in b["keys"]]


def test_streamed_blocks_and_their_masking_are_text_corpus_s(corpus):
    dm = sharded(corpus)
    train, cache = corpus
    reference = TextCorpusDataModule(train_file=str(train), tokenizer=str(dm.tokenizer_dir), **SETTINGS)
    reference.cache_dir = str(cache / "reference")
    reference.prepare()
    blocks = reference.train_dataset
    loader = dm.train_dataloader()
    items = [item for item in loader.dataset]  # (key, block) in the streamed order of epoch 0
    keys = [k for k, _ in items]
    # Every block once (one chunk here: the same blocks as the token cache's) but the last partial batch's
    # (litdata drops it), shuffled.
    assert len(set(keys)) == len(keys) > len(blocks) - SETTINGS["batch_size"]
    assert set(keys) <= set(range(len(blocks))) and keys != sorted(keys)
    assert all(torch.equal(block, blocks[key]) for key, block in items)
    # A batch is masked exactly as data=text_corpus masks the same keyed blocks.
    batch = next(iter(loader))
    first = [(k, blocks[k]) for k in keys[: SETTINGS["batch_size"]]]
    expected = reference.collator(first)
    assert all(torch.equal(batch[k], expected[k]) for k in expected)
    assert (batch["labels"] != -100).any()


def test_a_resumed_epoch_continues_with_the_batches_an_unbroken_one_trains(corpus, chunked):
    # Two loader workers: litdata resumes each of them and the round-robin between them.
    trainer = FakeTrainer()
    dm = sharded(corpus, trainer, shards=chunked, num_workers=2)
    unbroken = train(dm.train_dataloader(), trainer)
    assert len(unbroken) == len(dm.train_dataloader()) > 6
    assert len(dm.shard_set.manifest["splits"]["train"]["chunks"]) > 2

    killed = FakeTrainer()
    loader = sharded(corpus, killed, shards=chunked, num_workers=2).train_dataloader()
    trained = train(loader, killed, stop=5)
    state = loader.state_dict()
    assert state["batches_done"] == 5 and len(trained) == 5

    resumed = FakeTrainer()
    dm = sharded(corpus, resumed, shards=chunked, num_workers=2)
    loader = dm.train_dataloader()
    loader.load_state_dict(state)
    assert same(trained + train(loader, resumed, start=5), unbroken)

    # A resume that would replay another order is refused in one line.
    other = sharded(corpus, FakeTrainer(), shards=chunked, seed=4, max_seq_len=16).train_dataloader()
    other.load_state_dict(state)
    with pytest.raises(UserError, match="seed was 3, now 4; data.max_seq_len - 2 was 30, now 14 — resume"):
        next(iter(other))

    # The next epoch is the unbroken run's next epoch; a state saved at an epoch's end resumes nothing.
    trainer.current_epoch = resumed.current_epoch = 1
    loader.load_state_dict({**state, "batches_done": len(unbroken)})
    second = train(loader, resumed)
    assert same(
        second, train(sharded(corpus, trainer, shards=chunked, num_workers=2).train_dataloader(), trainer)
    )
    assert not same(second, unbroken)


def test_another_number_of_processes_resumes_the_rest_of_the_epoch(corpus, chunked, monkeypatch):
    # Two processes train 6 batches each; the run resumes on one process, with two loader workers.
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        trainer = FakeTrainer(world_size=2)
        dm = sharded(corpus, trainer, shards=chunked)
        dm.collator = keyed
        loader = dm.train_dataloader()
        seen += keys(train(loader, trainer, stop=6))
        state = loader.state_dict()  # both processes are at the same batch; rank 0's is saved
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("GLOBAL_RANK", "0")
    trainer = FakeTrainer()
    dm = sharded(corpus, trainer, shards=chunked, num_workers=2)
    dm.collator = keyed
    loader = dm.train_dataloader()
    loader.load_state_dict(state)
    rest = keys(train(loader, trainer, start=6))
    counts = collections.Counter(seen + rest)
    blocks = dm.shard_set.num_blocks("train", 30)
    # No block twice; none lost but the few litdata drops to give two processes equal shares.
    assert max(counts.values()) == 1 and blocks - 2 * 8 < len(counts) <= blocks


def read_my_part(rank: int, world: int, init: str, corpus, chunked: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        trainer = FakeTrainer(world_size=world)
        trainer.global_rank = rank
        dm = sharded(corpus, trainer, shards=chunked)
        dm.collator = keyed
        parts = {}
        for epoch in (0, 1):
            trainer.current_epoch = epoch
            parts[epoch] = keys(train(dm.train_dataloader(), trainer))
        with open(f"{out}.{rank}", "w") as f:
            json.dump({"parts": parts, "blocks": dm.shard_set.num_blocks("train", 30)}, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_read_disjoint_parts_that_cover_every_epoch(corpus, chunked, tmp_path):
    out = str(tmp_path / "keys")
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(read_my_part, args=(2, init, corpus, chunked, out), nprocs=2, start_method="fork")
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1)]
    blocks = ranks[0]["blocks"]
    for epoch in ("0", "1"):
        a, b = (set(r["parts"][epoch]) for r in ranks)
        assert len(a) == len(ranks[0]["parts"][epoch]) == len(ranks[1]["parts"][epoch]) > 0
        assert not a & b  # disjoint
        offset = int(epoch) * blocks  # keys of epoch e are e * blocks + block
        covered = {k - offset for k in a | b}
        # Together the whole corpus, but for the few blocks that give both the same share.
        assert covered <= set(range(blocks)) and len(covered) > blocks - 2 * SETTINGS["batch_size"]
    assert ranks[0]["parts"]["0"] != [k - blocks for k in ranks[0]["parts"]["1"]]  # reshuffled


def test_shards_stream_from_an_object_store_url(corpus, chunked, tmp_path):
    # litdata's `local:` scheme stands in for a store: the manifest and tokenizer are downloaded, the chunks
    # streamed into a cache beside them.
    trainer, remote_trainer = FakeTrainer(), FakeTrainer()
    local = sharded(corpus, trainer, shards=chunked)
    remote = sharded(corpus, remote_trainer, shards=f"local:{chunked}", cache_dir=str(tmp_path))
    assert remote.shard_set.local.is_relative_to(tmp_path) and remote.vocab_size == local.vocab_size
    assert same(
        train(remote.train_dataloader(), remote_trainer, stop=3),
        train(local.train_dataloader(), trainer, stop=3),
    )
    assert list((remote.shard_set.local / "chunks" / "train").rglob("chunk-*.bin"))


def test_a_masking_schedule_follows_the_batches_trained(corpus, chunked):
    # The rate moves from 0.5 to 0.05 over 10 optimizer steps of 2 accumulated batches: 20 batches.
    schedule = {"mlm_probability": 0.5, "mlm_probability_end": 0.05, "masking_schedule_steps": 10}
    trainer = FakeTrainer()
    trainer.accumulate_grad_batches = 2
    dm = sharded(corpus, trainer, shards=chunked, num_workers=2, **schedule)
    batches = train(dm.train_dataloader(), trainer, stop=24)
    masked = [float((b["labels"] != -100).float().mean()) for b in batches]
    assert min(masked[:2]) > 0.35 and max(masked[20:]) < 0.12
    # Resumed after 13 batches, the rest is masked as in the unbroken run.
    killed = FakeTrainer()
    killed.accumulate_grad_batches = 2
    loader = sharded(corpus, killed, shards=chunked, num_workers=2, **schedule).train_dataloader()
    trained = train(loader, killed, stop=13)
    resumed = FakeTrainer()
    resumed.accumulate_grad_batches = 2
    again = sharded(corpus, resumed, shards=chunked, num_workers=2, **schedule).train_dataloader()
    again.load_state_dict(loader.state_dict())
    assert same(trained + train(again, resumed, start=13, stop=24), batches)


def test_settings_of_the_shards_are_checked(corpus):
    train, cache = corpus
    with pytest.raises(UserError, match=r"data\.shard_workers=0 must be an integer >= 1"):
        ShardedCorpusDataModule(train_file=str(train), shard_workers=0)
    with pytest.raises(UserError, match="data file not found"):
        ShardedCorpusDataModule(train_file=str(cache / "missing.txt"), cache_dir=str(cache)).prepare()
    with pytest.raises(UserError, match="no training data: data.train_file, data.hub and data.shards"):
        ShardedCorpusDataModule(cache_dir=str(cache)).prepare()
