"""``data.mask_count=fixed``: an exact count of targets per sequence and ``masked_positions`` [B, K] of one
shape for every batch (what a compiled GPU step wants), the same loss as selecting the targets by mask,
ELECTRA's filler slots left alone, and ``auto`` choosing it on a GPU only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from encoderlab.data.corpus import TextCorpusDataModule
from encoderlab.data.tokenizer import special_token_ids
from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead
from encoderlab.models.kernels import vocab_cross_entropy
from encoderlab.tasks.electra import replace_masked
from encoderlab.tasks.masked_lm import masked_lm_logits, target_accuracy
from tests.data.test_masking import SEQ_LEN, keyed_batches, make_collator, padded, texts, tokenized


@pytest.fixture(scope="module")
def vocab():
    return tokenized("wordpiece")


def fixed_collator(tok, **kw):
    return make_collator(tok, "token", mask_count="fixed", max_seq_len=SEQ_LEN, **kw)


def test_each_sequence_gets_its_exact_count_in_slots_of_one_shape(vocab):
    tok, blocks = vocab
    coll = fixed_collator(tok)
    special = torch.tensor(sorted(special_token_ids(tok).values()))
    slots = round(0.15 * SEQ_LEN)
    counts = {"selected": 0, "masked": 0}
    for items in keyed_batches(blocks):
        original = padded(items)
        out = coll(items)
        ids, labels, positions = out["input_ids"], out["labels"], out["masked_positions"]
        assert ids.shape == (len(items), SEQ_LEN) and positions.shape == (len(items), slots)
        eligible = torch.zeros_like(ids, dtype=torch.bool)
        eligible[:, : original.shape[1]] = (original >= 0) & ~torch.isin(original, special)
        selected = labels != -100
        assert not (selected & ~eligible).any()
        want = torch.round(0.15 * eligible.sum(1).double()).long().clamp(1, slots)
        assert torch.equal(selected.sum(1), want)  # exactly, not in expectation
        for row in range(len(items)):
            assert len(set(positions[row].tolist())) == slots  # distinct slots
            at = labels[row, positions[row]]
            assert (at[: want[row]] != -100).all() and (at[want[row] :] == -100).all()  # targets, then filler
        counts["selected"] += int(selected.sum())
        counts["masked"] += int((selected & (ids == coll.mask_id)).sum())
    assert 0.75 < counts["masked"] / counts["selected"] < 0.85  # BERT's 80 % [MASK], as with sampled


def test_a_sequences_targets_depend_on_its_key_alone(vocab):
    tok, blocks = vocab
    coll = fixed_collator(tok)
    items = keyed_batches(blocks[:16], batch=16)[0]
    alone = coll(items[:1])
    together = coll(items)
    for key in ("labels", "input_ids", "masked_positions"):
        assert torch.equal(alone[key][0], together[key][0])


def test_the_gathered_loss_equals_the_loss_over_the_selected_tokens(vocab):
    tok, blocks = vocab
    torch.manual_seed(0)
    encoder = build(tok.get_vocab_size(), layers=2, hidden=32, heads=2, dropout=0.0, attention_dropout=0.0)
    head = MaskedLMHead(encoder)
    batch = fixed_collator(tok)(keyed_batches(blocks[:12], batch=12)[0])
    by_mask = {k: v for k, v in batch.items() if k != "masked_positions"}
    logits, targets = masked_lm_logits(encoder, head, batch)
    mask_logits, mask_targets = masked_lm_logits(encoder, head, by_mask)
    assert len(targets) == batch["masked_positions"].numel() > len(mask_targets)  # filler slots included
    torch.testing.assert_close(
        vocab_cross_entropy(logits, targets), vocab_cross_entropy(mask_logits, mask_targets)
    )
    accuracy, count = target_accuracy(logits, targets)
    mask_accuracy, mask_count = target_accuracy(mask_logits, mask_targets)
    assert int(count) == int(mask_count) == len(mask_targets)
    torch.testing.assert_close(accuracy, mask_accuracy)


def test_electra_leaves_the_filler_slots_as_they_are(vocab):
    tok, blocks = vocab
    batch = fixed_collator(tok)(keyed_batches(blocks[:8], batch=8)[0])
    positions = batch["masked_positions"]
    sampled = torch.full((positions.numel(),), 7)  # one id, unlike most of the originals
    corrupted, replaced = replace_masked(batch, sampled)
    filler = batch["labels"].gather(1, positions) == -100
    assert filler.any()
    assert torch.equal(
        corrupted.gather(1, positions)[filler], batch["input_ids"].gather(1, positions)[filler]
    )
    assert not replaced.gather(1, positions)[filler].any()
    targets = ~filler
    assert (corrupted.gather(1, positions)[targets] == 7).all()
    original = batch["labels"].gather(1, positions)[targets]
    assert torch.equal(replaced.gather(1, positions)[targets], original != 7)


def test_fixed_counts_only_single_tokens():
    with pytest.raises(UserError, match=r"data\.mask_count=fixed .* data\.masking=token"):
        TextCorpusDataModule(train_file="unused.txt", masking="whole_word", mask_count="fixed")
    with pytest.raises(UserError, match=r"data\.mask_count"):
        TextCorpusDataModule(train_file="unused.txt", mask_count="sometimes")


def test_auto_is_fixed_on_a_gpu_with_token_masking_only(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts(200, seed=2)) + "\n")

    def module(**kw):
        dm = TextCorpusDataModule(
            train_file=str(corpus),
            vocab_size=200,
            max_seq_len=32,
            batch_size=4,
            cache_dir=str(tmp_path),
            **kw,
        )
        dm.prepare()
        return dm

    cpu, gpu = (
        SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(d))) for d in ("cpu", "cuda")
    )
    dm = module()
    assert dm.resolved_mask_count() == "sampled" and "masked_positions" not in next(
        iter(dm.train_dataloader())
    )
    dm.trainer = cpu
    dm.setup("fit")
    assert dm.describe()["mask_count"] == "sampled"
    dm.trainer = gpu
    dm.setup("fit")  # the device is known only once a trainer holds the data: decided again here
    assert dm.describe()["mask_count"] == "fixed"
    assert dm.val_collator.fixed_count and dm.collator.fixed_count
    words = module(masking="whole_word")
    words.trainer = gpu
    assert words.resolved_mask_count() == "sampled"
    forced = module(mask_count="fixed")
    assert forced.resolved_mask_count() == "fixed" and forced.collator.fixed_count
