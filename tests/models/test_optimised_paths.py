"""Each speed optimisation gives the same numbers as the plain path (within float tolerance).

Optimisations covered: the MLM loss computed with the encoder's last layer finishing only the masked positions
(``output_positions``, boolean select or fixed-count gather), the fused q/k/v matmul, and oneDNN matmuls for
CPU fp32 linear layers (``onednn_cpu_linear``). All on a tiny model: fast on CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from encoderlab.models.encoder import build, select_positions
from encoderlab.models.heads import MaskedLMHead
from encoderlab.models.kernels import linear, set_onednn_cpu_linear
from encoderlab.tasks.masked_lm import masked_lm_logits, masked_lm_loss

VOCAB, B, S = 500, 4, 24


def tiny(onednn: bool = True, dropout: float = 0.0, norm_first: bool = False):
    torch.manual_seed(0)
    encoder = build(
        VOCAB,
        layers=2,
        hidden=64,
        heads=4,
        dropout=dropout,
        attention_dropout=dropout,
        norm_first=norm_first,
        onednn_cpu_linear=onednn,
    )
    return encoder, MaskedLMHead(encoder)


def mlm_batch(padded: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    if padded:
        for row, n in enumerate([S, S - 5, S - 11, 7]):
            mask[row, n:] = 0
            ids[row, n:] = 0
    selected = (torch.rand(B, S, generator=g) < 0.3) & mask.bool()
    selected[:, 1] = True  # every row has a target
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def plain_mlm_loss(encoder, head, batch) -> torch.Tensor:
    """The reference: every position through every layer, then select the masked ones."""
    hidden = encoder(batch["input_ids"], batch["attention_mask"])  # B,S,H
    selected = batch["labels"] != -100
    return F.cross_entropy(head(hidden[selected]), batch["labels"][selected])


def grads(*modules) -> dict[str, torch.Tensor]:
    out = {}
    for i, m in enumerate(modules):
        for name, p in m.named_parameters():
            if p.grad is not None:
                out[f"{i}.{name}"] = p.grad.clone()
    return out


def assert_grads_close(a: dict, b: dict, rtol: float = 1e-4) -> None:
    assert a.keys() == b.keys()
    scale = max(g.abs().max().item() for g in b.values())
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=rtol * scale, msg=name)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_output_positions_equals_selecting_full_output(padded, norm_first):
    encoder, _ = tiny(norm_first=norm_first)
    encoder.eval()
    batch = mlm_batch(padded)
    selected = batch["labels"] != -100
    full = encoder(batch["input_ids"], batch["attention_mask"])
    sparse = encoder(batch["input_ids"], batch["attention_mask"], output_positions=selected)
    torch.testing.assert_close(sparse, full[selected], rtol=1e-5, atol=1e-5)


def test_output_positions_by_index_equals_gather():
    encoder, _ = tiny()
    encoder.eval()
    batch = mlm_batch(padded=False)
    positions = torch.tensor([[1, 3, 5], [0, 2, 23], [4, 4, 9], [7, 8, 1]])
    full = encoder(batch["input_ids"])
    sparse = encoder(batch["input_ids"], output_positions=positions)  # B·K,H
    expected = torch.stack([full[b, positions[b]] for b in range(B)]).flatten(0, 1)
    torch.testing.assert_close(sparse, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(select_positions(full, positions), expected)


@pytest.mark.parametrize("onednn", [True, False])
def test_optimised_mlm_loss_and_grads_match_plain_path(onednn):
    encoder, head = tiny(onednn=onednn)
    batch = mlm_batch()
    loss = masked_lm_loss(encoder, head, batch)
    loss.backward()
    optimised = grads(encoder, head)
    encoder.zero_grad(), head.zero_grad()
    set_onednn_cpu_linear(encoder, False), set_onednn_cpu_linear(head, False)
    reference = plain_mlm_loss(encoder, head, batch)
    reference.backward()
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    assert_grads_close(optimised, grads(encoder, head))


def test_fixed_count_masked_positions_match_boolean_select():
    encoder, head = tiny()
    encoder.eval()
    batch = mlm_batch(padded=False)
    positions = torch.stack(
        [torch.randperm(S, generator=torch.Generator().manual_seed(r))[:5] for r in range(B)]
    )
    positions = positions.sort(1).values  # row-major order, as a boolean mask selects
    ids = batch["input_ids"]
    labels = torch.full_like(ids, -100).scatter(1, positions, ids.gather(1, positions))
    logits_bool, targets_bool = masked_lm_logits(encoder, head, {"input_ids": ids, "labels": labels})
    logits_idx, targets_idx = masked_lm_logits(
        encoder, head, {"input_ids": ids, "labels": labels, "masked_positions": positions}
    )
    torch.testing.assert_close(logits_idx, logits_bool, rtol=1e-5, atol=1e-5)
    assert torch.equal(targets_idx, targets_bool)


@pytest.mark.parametrize("shape", [(7, 33), (3, 5, 33)])
def test_onednn_linear_matches_f_linear(shape):
    torch.manual_seed(0)
    w = torch.randn(17, 33, requires_grad=True)
    b = torch.randn(17, requires_grad=True)
    x = torch.randn(*shape, requires_grad=True)
    g = torch.randn(*shape[:-1], 17)
    results = []
    for onednn in (True, False):
        y = linear(x, w, b, onednn=onednn)
        (dx, dw, db) = torch.autograd.grad(y, (x, w, b), g)
        results.append((y, dx, dw, db))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_onednn_linear_non_contiguous_input_and_no_bias():
    torch.manual_seed(0)
    w = torch.randn(9, 12, requires_grad=True)
    x = torch.randn(12, 6, requires_grad=True)
    y1 = linear(x.t(), w, None, onednn=True)
    y2 = F.linear(x.t(), w)
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-4)
    g1 = torch.autograd.grad(y1.sum(), (x, w))
    g2 = torch.autograd.grad(y2.sum(), (x, w))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_onednn_encoder_output_matches_plain():
    encoder, _ = tiny(onednn=True)
    encoder.eval()
    batch = mlm_batch()
    fast = encoder(batch["input_ids"], batch["attention_mask"])
    set_onednn_cpu_linear(encoder, False)
    plain = encoder(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_optimisations_keep_parameter_names_and_tying():
    encoder, head = tiny()
    keys = list(encoder.state_dict())
    assert keys[:5] == [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    assert keys[5:21] == [
        f"layers.0.{n}"
        for n in [
            "attention.query.weight",
            "attention.query.bias",
            "attention.key.weight",
            "attention.key.bias",
            "attention.value.weight",
            "attention.value.bias",
            "attention.output.weight",
            "attention.output.bias",
            "attention_norm.weight",
            "attention_norm.bias",
            "intermediate.weight",
            "intermediate.bias",
            "output.weight",
            "output.bias",
            "output_norm.weight",
            "output_norm.bias",
        ]
    ]
    assert list(head.state_dict()) == [
        "dense.weight",
        "dense.bias",
        "layer_norm.weight",
        "layer_norm.bias",
        "decoder.weight",
        "decoder.bias",
    ]
    assert head.decoder.weight is encoder.embeddings.word_embeddings.weight
    assert all(isinstance(m, torch.nn.Linear) for m in (head.dense, encoder.layers[0].attention.query))


def test_compile_in_place_keeps_state_dict_keys():
    encoder, head = tiny()
    before = list(encoder.state_dict()), list(head.state_dict())
    encoder.compile()  # nn.Module.compile: compiled forward, no "_orig_mod." prefix (nothing runs here)
    head.compile()
    assert (list(encoder.state_dict()), list(head.state_dict())) == before


def test_wrapped_projection_bypasses_fused_qkv():
    """A module that wraps query/key/value (as a LoRA adapter does) is called, not skipped by the fusion."""

    class AddOne(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base
            self.weight, self.bias = base.weight, base.bias  # what adapters expose; must not be used alone

        def forward(self, x):
            return self.base(x) + 1.0

    encoder, _ = tiny()
    encoder.eval()
    ids = mlm_batch(padded=False)["input_ids"]
    attention = encoder.layers[0].attention
    x = torch.randn(B, S, 64)
    plain = attention(x, None)
    attention.value = AddOne(attention.value)
    wrapped = attention(x, None)
    # +1 on every value adds +1 to every attention output row before the output projection.
    expected = plain + attention.output.weight.sum(1)
    torch.testing.assert_close(wrapped, expected, rtol=1e-4, atol=1e-4)
    assert encoder(ids).shape == (B, S, 64)


@pytest.mark.parametrize("mask", ["bits", "rand"])
def test_cpu_dropout_matches_f_dropout_statistics_and_gradient(mask):
    from encoderlab.models.kernels import dropout

    x = torch.ones(200, 500, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, 0.1, training=True, mask=mask)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005
    # bits rounds p to 1/65,536 and scales by the rounded keep rate: the expectation stays exactly x.
    scale = 65536 / (65536 - round(0.1 * 65536)) if mask == "bits" else 1 / 0.9
    assert abs(scale * 0.9 - 1) < 1e-5
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], scale))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() * scale)
    assert dropout(x, 0.1, training=False) is x


def test_bits_masks_keep_every_position_alike_and_follow_the_seed():
    from encoderlab.models.kernels import keep_mask

    torch.manual_seed(1)
    keep, _ = keep_mask(torch.Size([4001, 64]), 0.25, "bits")  # an element count not a multiple of 4
    assert keep.shape == (4001, 64) and keep.dtype == torch.bool
    # Four 16-bit draws share each 64-bit word: every one of the four slots must keep 75 %, uncorrelated.
    slots = keep.flatten()[: 4000 * 64].view(-1, 4).float()
    for k in range(4):
        assert abs(slots[:, k].mean().item() - 0.75) < 0.01, k
    both = (slots[:, 0] * slots[:, 1]).mean().item()
    assert abs(both - 0.75**2) < 0.01
    torch.manual_seed(1)
    again, _ = keep_mask(torch.Size([4001, 64]), 0.25, "bits")
    assert torch.equal(keep, again)


@pytest.mark.parametrize("padded", [False, True])
def test_manual_cpu_attention_matches_sdpa(padded):
    from encoderlab.models.kernels import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 8, generator=g) for _ in range(3))
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    if padded:
        mask[1, ..., 6:] = False
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask if padded else None)
    # A vanishing dropout rate takes the manual path while keeping (almost surely) every weight.
    got = attention(q, k, v, mask if padded else None, dropout_p=1e-12)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_cls_head_lets_the_last_layer_finish_only_the_first_position(pooling):
    """A [CLS]-pooling classifier: the encoder's last layer finishes position 0 alone, same logits and grads."""
    from types import SimpleNamespace

    from encoderlab.models.heads import SequenceClassifier
    from encoderlab.tasks.base import EncoderTask

    encoder, _ = tiny(dropout=0.0)
    head = SequenceClassifier(encoder, num_labels=3, pooling=pooling, dropout=0.0)
    assert head.reads_first_position_only == (pooling == "cls")
    batch = mlm_batch(padded=True)
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    task = SimpleNamespace(encoder=encoder, head=head)
    fast = EncoderTask.forward(task, batch)
    fast.square().sum().backward()
    fast_grads = grads(encoder, head)
    encoder.zero_grad(set_to_none=True), head.zero_grad(set_to_none=True)
    full = head(encoder(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"])
    full.square().sum().backward()
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    assert_grads_close(fast_grads, grads(encoder, head))


def test_onednn_linear_takes_an_expanded_gradient_like_f_linear():
    """y.sum()'s gradient is a stride-0 view; the oneDNN backward copies it dense and gets F.linear's grads."""
    from encoderlab.models.kernels import linear

    x = torch.randn(37, 16, requires_grad=True)
    w = torch.randn(300, 16, requires_grad=True)
    linear(x, w, None, True).sum().backward()
    ours = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    F.linear(x, w).sum().backward()
    torch.testing.assert_close(ours[0], x.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours[1], w.grad, rtol=1e-4, atol=1e-4)
