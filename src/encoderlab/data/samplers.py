"""Training batch order as a pure function of (seed, epoch): sharded across processes, resumable mid-epoch.

Every training loader draws its batches from an ``EpochBatchSampler``. The batches of epoch ``e`` depend only
on ``seed`` and ``e`` (never on the global RNG), each process takes every ``world_size``-th batch (so the
global batch of a step is the same whatever the number of processes), and ``ResumableDataLoader`` tells
Lightning how many batches of the epoch were consumed, so that a run resumed from a mid-epoch checkpoint
continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from encoderlab.validate import at_least, check


class EpochBatchSampler(Sampler[list[int]]):
    """Base class: subclasses define ``epoch_batches(epoch)``; this class shards, pads and resumes."""

    def __init__(self, batch_size: int, seed: int = 0) -> None:
        check("data.batch_size", batch_size, at_least(1))
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.rank = 0
        self.world_size = 1
        self._resume_at: tuple[int, int] | None = None

    def epoch_batches(self, epoch: int) -> Sequence[list[int]]:
        raise NotImplementedError

    def num_batches(self) -> int:
        """Batches in one epoch over all processes."""
        raise NotImplementedError

    @property
    def sampler(self) -> EpochBatchSampler:
        # Lightning calls set_epoch on ``loader.batch_sampler.sampler`` (not on the batch sampler itself).
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def resume(self, epoch: int, batches_done: int) -> None:
        """The next iteration is epoch ``epoch`` without its first ``batches_done`` batches (of this process)."""
        self.epoch = epoch
        self._resume_at = (epoch, batches_done)

    def __len__(self) -> int:
        # The whole epoch, also when resuming: Lightning counts the batches already done itself.
        return -(-self.num_batches() // self.world_size)

    def _my_batch(self, batches: Sequence[list[int]], k: int) -> list[int]:
        # Every process needs the same number of batches (else DDP hangs): the last step is padded by
        # repeating batches from the start of the epoch.
        return list(batches[(self.rank + k * self.world_size) % len(batches)])

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the order is fixed at the first batch, after Lightning restored the position.
        batches = self.epoch_batches(self.epoch)
        start = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            start = self._resume_at[1]
        self._resume_at = None
        for k in range(start, len(self)):
            yield self._my_batch(batches, k)


class SlicedBatches(Sequence):
    """The batches of one epoch, cut on demand from one index array.

    Holding the epoch's order as a flat int64 array costs 8 bytes per item; a list of Python lists would
    cost about 40, which for a 100 GB corpus's hundreds of millions of blocks is several GB of process
    memory.
    """

    def __init__(self, order: np.ndarray, batch_size: int) -> None:
        self.order = order
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __getitem__(self, b: int) -> list[int]:
        if not 0 <= b < len(self):
            raise IndexError(b)
        return self.order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def epoch_permutation(seed: int, epoch: int, num_samples: int) -> torch.Tensor:
    """The order in which ``ShuffledBatchSampler`` draws the indices of epoch ``epoch``."""
    return torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed + epoch))


class ShuffledBatchSampler(EpochBatchSampler):
    """Shuffle ``num_samples`` indices per epoch and cut them into batches of ``batch_size``.

    With ``epoch_keys`` the items are ``epoch * num_samples + index`` (see ``EpochKeyedDataset``), so each
    item knows which epoch drew it: MLM masking is seeded by that key.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, epoch_keys: bool = False) -> None:
        super().__init__(batch_size, seed)
        self.num_samples = num_samples
        self.epoch_keys = epoch_keys

    def num_batches(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def epoch_batches(self, epoch: int) -> SlicedBatches:
        perm = epoch_permutation(self.seed, epoch, self.num_samples).numpy()
        if self.epoch_keys:
            perm += epoch * self.num_samples
        return SlicedBatches(perm, self.batch_size)

    def batch_order(self) -> KeyedBatchOrder:
        """Maps the epoch keys this sampler yields to the number of the batch that drew them."""
        return KeyedBatchOrder(self.num_samples, self.batch_size, self.seed)


class KeyedBatchOrder:
    """Which batch of the run drew an epoch-keyed item: key ``epoch * num_samples + index`` belongs to
    batch ``epoch * batches_per_epoch + (position of index in the epoch's shuffle) // batch_size``.

    A pure function of the key (the shuffle is recomputed from the seed), so a collator in a worker process
    or in a resumed run finds the same position as the unbroken run's; batch ``b`` counts the batches of
    all processes together (process ``r`` of ``n`` trains batches ``r, r + n, ...``).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.batches_per_epoch = -(-num_samples // batch_size)
        self._inverse: tuple[int, torch.Tensor] | None = None  # (epoch, position of each index)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_inverse": None}  # workers recompute it rather than receive it

    def _positions(self, epoch: int) -> torch.Tensor:
        if self._inverse is None or self._inverse[0] != epoch:
            perm = epoch_permutation(self.seed, epoch, self.num_samples)
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(self.num_samples)
            self._inverse = (epoch, inverse)
        return self._inverse[1]

    def __call__(self, keys: torch.Tensor) -> torch.Tensor:
        epochs, indices = keys // self.num_samples, keys % self.num_samples
        out = torch.empty_like(keys)
        for epoch in epochs.unique().tolist():
            rows = epochs == epoch
            in_epoch = self._positions(epoch)[indices[rows]] // self.batch_size
            out[rows] = epoch * self.batches_per_epoch + in_epoch
        return out


class LengthGroupedSampler(EpochBatchSampler):
    """Batches of similar lengths to cut padding, while staying random.

    Shuffle all indices, split into mega-batches of ``mega_batch_mult * batch_size``, sort each by
    length (longest first), cut into batches, shuffle the batch order.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
        mega_batch_mult: int = 50,
    ):
        super().__init__(batch_size, seed)
        self.lengths = np.asarray(lengths)
        self.drop_last = drop_last
        self.mega = mega_batch_mult * batch_size

    def num_batches(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        perm = torch.randperm(len(self.lengths), generator=g).numpy()
        batches = []
        for start in range(0, len(perm), self.mega):
            mega = perm[start : start + self.mega]
            # Stable sort so ties keep the shuffled order.
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]
            batches.extend(
                mega[i : i + self.batch_size].tolist() for i in range(0, len(mega), self.batch_size)
            )
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        order = torch.randperm(len(batches), generator=g).tolist()
        return [batches[j] for j in order]


class EpochKeyedDataset(Dataset):
    """``dataset`` addressed by keys ``epoch * len(dataset) + index``; items are ``(key, dataset[index])``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int):
        return key, self.dataset[key % len(self.dataset)]


class ResumableDataLoader(DataLoader):
    """A training DataLoader whose position in the epoch goes into Lightning checkpoints.

    Lightning saves ``state_dict()`` of every training loader that has one and calls ``load_state_dict``
    on resume, just before the first batch is drawn. ``batches_done`` reads how many batches of the
    current epoch have been trained (the loader itself runs ahead of training by its prefetching).
    """

    def __init__(self, *args, batches_done: Callable[[], int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.batch_sampler.epoch), "batches_done": int(self._batches_done())}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.resume(state["epoch"], state["batches_done"])
