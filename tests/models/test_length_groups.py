"""Texts encoded in groups of similar length: same vectors and gradients as one padded batch, less padding."""

from __future__ import annotations

import torch

from encoderlab.models.encoder import build
from encoderlab.models.heads import pool
from encoderlab.models.length_groups import MIN_ROWS, encode_in_length_groups, length_groups


def padded_batch(lengths, vocab=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(5, vocab, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask  # pad id 0 after each text


def mean_vectors(hidden, mask):
    return pool(hidden, mask, "mean")


def test_groups_cover_every_row_once_shortest_first_and_cut_padding():
    lengths = [3, 40, 5, 38, 4, 6, 41, 7, 3, 39, 5, 4]
    groups = length_groups(lengths, call_cost=16, min_rows=2)
    rows = [i for g in groups for i in g]
    assert sorted(rows) == list(range(len(lengths)))
    assert [lengths[i] for i in rows] == sorted(lengths)
    assert len(groups) >= 2
    padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
    assert padded < len(lengths) * max(lengths) / 2  # 8 short texts no longer padded to 41
    assert length_groups([12] * 16) == [sorted(range(16))]  # equal lengths: one call
    assert length_groups([3, 60], call_cost=96, min_rows=1) == [[0, 1]]  # a call costs more than it saves


def cost(groups, lengths, call_cost):
    return sum(len(g) * max(lengths[i] for i in g) + call_cost for g in groups)


def row_by_row_optimum(lengths, call_cost):
    """The cheapest grouping of the sorted rows, searched over every split point (O(n²))."""
    ordered = sorted(lengths)
    best = [0] + [float("inf")] * len(ordered)
    for j in range(1, len(ordered) + 1):
        best[j] = min(best[i] + (j - i) * ordered[j - 1] + call_cost for i in range(j))
    return best[-1]


def test_searching_distinct_lengths_finds_the_row_by_row_optimum():
    g = torch.Generator().manual_seed(3)
    for trial in range(40):
        n = int(torch.randint(1, 60, (1,), generator=g))
        lengths = torch.randint(2, 24 if trial % 2 else 64, (n,), generator=g).tolist()  # many repeats
        groups = length_groups(lengths, call_cost=20, min_rows=1)
        assert sorted(i for group in groups for i in group) == list(range(n))
        assert cost(groups, lengths, 20) == row_by_row_optimum(lengths, 20)
    big = torch.randint(3, 64, (4096,), generator=g).tolist()  # a batch far larger than any SetFit one
    groups = length_groups(big)
    assert sorted(i for group in groups for i in group) == list(range(4096))
    assert all(len(group) >= MIN_ROWS for group in groups)


def test_grouped_vectors_and_gradients_equal_one_padded_batch():
    torch.manual_seed(0)
    encoder = build(200, layers=2, hidden=32, heads=4, dropout=0.0, attention_dropout=0.0).eval()
    ids, mask = padded_batch([3, 30, 4, 28, 5, 6, 31, 7, 3, 29, 5, 4])
    reference = mean_vectors(encoder(ids, mask), mask)
    reference.square().sum().backward()
    want = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
    encoder.zero_grad()
    called = []
    encoder.register_forward_hook(lambda m, args, out: called.append(tuple(args[0].shape)))
    grouped = encode_in_length_groups(encoder, mean_vectors, ids, mask)
    assert len(called) >= 2 and all(width < 31 for _, width in called[:-1])  # really split and cut
    torch.testing.assert_close(grouped, reference, atol=1e-5, rtol=1e-5)
    grouped.square().sum().backward()
    for name, p in encoder.named_parameters():
        if name in want:
            torch.testing.assert_close(p.grad, want[name], atol=1e-5, rtol=1e-4, msg=name)


def test_left_padded_or_unpadded_batches_take_the_plain_path():
    torch.manual_seed(0)
    encoder = build(200, layers=1, hidden=16, heads=2, dropout=0.0, attention_dropout=0.0).eval()
    ids, mask = padded_batch([3, 30, 4, 28, 5, 6, 31, 7])
    left_ids, left_mask = ids.flip(1), mask.flip(1)
    calls = []
    encoder.register_forward_hook(lambda m, args, out: calls.append(1))
    out = encode_in_length_groups(encoder, mean_vectors, left_ids, left_mask)
    assert len(calls) == 1
    torch.testing.assert_close(out, mean_vectors(encoder(left_ids, left_mask), left_mask))
    encode_in_length_groups(encoder, mean_vectors, ids[:, :3], None)
    assert len(calls) == 3  # one call each, never split
