from __future__ import annotations

import pytest
import torch

from encoderlab.data.collators import MLMCollator, PaddingCollator
from encoderlab.data.samplers import LengthGroupedSampler
from encoderlab.errors import UserError

PAD, UNK, CLS, SEP, MASK = range(5)
VOCAB = 1000


def random_batch(gen: torch.Generator, batch: int = 32, max_len: int = 64) -> list[torch.Tensor]:
    out = []
    for _ in range(batch):
        n = int(torch.randint(8, max_len - 1, (1,), generator=gen))
        body = torch.randint(5, VOCAB, (n,), generator=gen)
        out.append(torch.cat([torch.tensor([CLS]), body, torch.tensor([SEP])]))
    return out


def collator(**kw) -> MLMCollator:
    return MLMCollator(
        pad_id=PAD, mask_id=MASK, vocab_size=VOCAB, special_ids=[PAD, UNK, CLS, SEP, MASK], **kw
    )


def masking_counts(coll: MLMCollator, n_batches: int = 200) -> dict[str, int]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    c = dict.fromkeys(["eligible", "selected", "masked", "random", "kept"], 0)
    for _ in range(n_batches):
        seqs = random_batch(gen)
        original = torch.full((len(seqs), max(map(len, seqs))), PAD)
        for row, s in zip(original, seqs, strict=True):
            row[: len(s)] = s
        out = coll(seqs)
        ids, labels, attn = out["input_ids"], out["labels"], out["attention_mask"]
        assert ids.shape == labels.shape == attn.shape == original.shape
        assert ids.dtype == labels.dtype == attn.dtype == torch.long
        eligible = original >= 5
        selected = labels != -100
        # Specials and padding are never selected; labels hold the original id exactly where selected.
        assert not (selected & ~eligible).any()
        assert torch.equal(labels[selected], original[selected])
        assert torch.equal(ids[~selected], original[~selected])
        assert torch.equal(attn.bool(), original != PAD)
        changed = selected & (ids != original)
        # Random replacements come only from ordinary tokens.
        assert (ids[changed & (ids != MASK)] >= 5).all()
        c["eligible"] += int(eligible.sum())
        c["selected"] += int(selected.sum())
        c["masked"] += int((selected & (ids == MASK)).sum())
        c["random"] += int((changed & (ids != MASK)).sum())
        c["kept"] += int((selected & (ids == original)).sum())
    return c


@pytest.mark.parametrize("p", [0.15, 0.3])
def test_masking_statistics(p):
    c = masking_counts(collator(mlm_probability=p))
    assert abs(c["selected"] / c["eligible"] - p) < 0.01
    assert abs(c["masked"] / c["selected"] - 0.8) < 0.02
    assert abs(c["random"] / c["selected"] - 0.1) < 0.02
    assert abs(c["kept"] / c["selected"] - 0.1) < 0.02


def test_masking_fractions_configurable():
    c = masking_counts(collator(mask_replace_prob=0.5, random_replace_prob=0.3), n_batches=60)
    assert abs(c["masked"] / c["selected"] - 0.5) < 0.02
    assert abs(c["random"] / c["selected"] - 0.3) < 0.02


def test_masking_is_seeded():
    seqs = random_batch(torch.Generator().manual_seed(3))
    coll = collator()
    torch.manual_seed(7)
    a = coll(seqs)
    torch.manual_seed(7)
    b = coll(seqs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_at_least_one_target_per_batch():
    coll = collator(mlm_probability=1e-9)
    seqs = [torch.tensor([CLS, 10, 11, SEP]), torch.tensor([CLS, 12, SEP])]
    for seed in range(20):
        torch.manual_seed(seed)
        labels = coll(seqs)["labels"]
        assert int((labels != -100).sum()) == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"mlm_probability": 0.0},
        {"mlm_probability": 1.0},
        {"mask_replace_prob": 0.9, "random_replace_prob": 0.2},
    ],
)
def test_masking_validation(kw):
    with pytest.raises(UserError, match="prob"):
        collator(**kw)


def test_padding_collator():
    items = [
        {"input_ids": torch.tensor([2, 7, 8, 3]), "token_type_ids": torch.tensor([0, 0, 0, 0]), "labels": 1},
        {"input_ids": torch.tensor([2, 9, 3]), "token_type_ids": torch.tensor([0, 0, 0]), "labels": 0},
    ]
    out = PaddingCollator(pad_id=0, pad_to_multiple_of=8)(items)
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert out["input_ids"].shape == (2, 8)
    assert out["input_ids"][1].tolist() == [2, 9, 3, 0, 0, 0, 0, 0]
    assert out["attention_mask"].sum(1).tolist() == [4, 3]
    assert out["labels"].dtype == torch.long and out["labels"].tolist() == [1, 0]
    items[0]["labels"], items[1]["labels"] = 2.5, 0.0
    assert PaddingCollator(0)(items)["labels"].dtype == torch.float


def test_length_grouped_sampler():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 200, (1000,), generator=gen).numpy()
    s = LengthGroupedSampler(lengths, batch_size=8, seed=5, mega_batch_mult=10)
    epoch0 = list(s)
    assert len(epoch0) == len(s) == 125
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))
    assert epoch0 == list(s)  # deterministic for seed + epoch
    s.set_epoch(1)
    assert list(s) != epoch0
    for b in epoch0:
        assert list(lengths[b]) == sorted(lengths[b], reverse=True)
    # Grouping cuts padding well below that of random batches.
    waste = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in epoch0)
    perm = torch.randperm(1000, generator=gen).numpy()
    rand_waste = sum(
        8 * lengths[perm[i : i + 8]].max() - lengths[perm[i : i + 8]].sum() for i in range(0, 1000, 8)
    )
    assert waste < rand_waste / 3
