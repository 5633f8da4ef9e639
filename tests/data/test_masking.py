"""Masking objectives: token, whole-word, span and none, the masking-rate schedule, their settings, and the
objective config group; on a WordPiece and on a byte-level BPE vocabulary."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from encoderlab.data.collators import MLMCollator
from encoderlab.data.corpus import TextCorpusDataModule
from encoderlab.data.masking import select_spans, word_starts
from encoderlab.data.samplers import ShuffledBatchSampler
from encoderlab.data.tokenizer import SPECIAL_TOKENS, special_token_ids, train_wordpiece, word_start_ids
from encoderlab.errors import UserError
from encoderlab.tasks.masked_lm import masked_share
from tests.conftest import CONF_DIR

SEQ_LEN = 64


def texts(n: int, seed: int = 0) -> list[str]:
    """Sentences of made-up words of 1-4 syllables, so a small vocabulary splits many of them."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "to", "sa", "vel", "un", "dra", "pe", "qui", "zor", "fa", "ni"]
    lexicon = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(400)]
    weights = [1 / (rank + 1) for rank in range(len(lexicon))]  # Zipf-like: some words frequent, most rare
    return [" ".join(rng.choices(lexicon, weights, k=rng.randint(5, 25))) + "." for _ in range(n)]


def byte_level_bpe(corpus: list[str], vocab_size: int = 400) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


@pytest.fixture(scope="module", params=["wordpiece", "bpe"])
def vocab(request):
    return tokenized(request.param)


def tokenized(kind: str) -> tuple[Tokenizer, list[torch.Tensor]]:
    """(tokenizer, packed blocks [CLS] + 62 stream tokens + [SEP]) as the corpus data module cuts them."""
    corpus = texts(1000)
    tok = train_wordpiece(corpus, vocab_size=250) if kind == "wordpiece" else byte_level_bpe(corpus)
    ids = special_token_ids(tok)
    stream = torch.tensor([i for t in corpus for i in tok.encode(t, add_special_tokens=False).ids])
    chunk = SEQ_LEN - 2
    blocks = [
        torch.cat([torch.tensor([ids["cls"]]), stream[i : i + chunk], torch.tensor([ids["sep"]])])
        for i in range(0, len(stream) - chunk + 1, chunk)
    ]
    # Some shorter sequences, so batches carry padding.
    blocks = [b if n % 3 else b[: 20 + n % 40].clone() for n, b in enumerate(blocks)]
    blocks = [torch.cat([b[:-1], torch.tensor([ids["sep"]])]) if b[-1] != ids["sep"] else b for b in blocks]
    return tok, blocks


def make_collator(tok: Tokenizer, masking: str, **kw) -> MLMCollator:
    ids = special_token_ids(tok)
    return MLMCollator(
        pad_id=ids["pad"],
        mask_id=ids["mask"],
        vocab_size=tok.get_vocab_size(),
        special_ids=list(ids.values()),
        masking=masking,
        word_start_ids=word_start_ids(tok),
        seed=5,
        **kw,
    )


def keyed_batches(blocks: list[torch.Tensor], batch: int = 16, first_key: int = 0):
    keys = list(range(first_key, first_key + len(blocks)))
    return [
        list(zip(keys[i : i + batch], blocks[i : i + batch], strict=True))
        for i in range(0, len(blocks), batch)
    ]


def padded(items) -> torch.Tensor:
    seqs = [s for _, s in items]
    out = torch.full((len(seqs), max(map(len, seqs))), -1)
    for row, s in zip(out, seqs, strict=True):
        row[: len(s)] = s
    return out


def words_of(tok: Tokenizer, row: torch.Tensor) -> list[list[int]]:
    """The words of one sequence as lists of positions, found independently of the masking code: a word is
    an ordinary token that starts a word (or follows a special/padding position) and the pieces after it."""
    starts = word_start_ids(tok)
    special = set(special_token_ids(tok).values()) | {-1}
    words: list[list[int]] = []
    previous_special = True
    for pos, token in enumerate(row.tolist()):
        if token in special:
            previous_special = True
            continue
        if previous_special or bool(starts[token]):
            words.append([pos])
        else:
            words[-1].append(pos)
        previous_special = False
    return words


def masking_stats(tok, blocks, masking: str, **kw) -> dict:
    coll = make_collator(tok, masking, **kw)
    special = torch.tensor(sorted(special_token_ids(tok).values()))
    c = {"eligible": 0, "selected": 0, "masked": 0, "random": 0, "kept": 0, "multi_piece_words": 0}
    for items in keyed_batches(blocks):
        original = padded(items)
        out = coll(items)
        ids, labels = out["input_ids"], out["labels"]
        selected = labels != -100
        eligible = (original >= 0) & ~torch.isin(original, special)
        assert not (selected & ~eligible).any(), "a special or padding position was selected"
        assert torch.equal(labels[selected], original[selected])
        real = original >= 0
        assert torch.equal(ids[~selected & real], original[~selected & real])
        c["eligible"] += int(eligible.sum())
        c["selected"] += int(selected.sum())
        c["masked"] += int((selected & (ids == coll.mask_id)).sum())
        c["kept"] += int((selected & (ids == original)).sum())
        c["random"] += int((selected & (ids != original) & (ids != coll.mask_id)).sum())
        if masking != "token":
            for row in range(len(items)):
                for word in words_of(tok, original[row]):
                    chosen = selected[row, word]
                    assert chosen.all() or not chosen.any(), f"word {word} partly selected"
                    c["multi_piece_words"] += int(len(word) > 1 and bool(chosen.all()))
    return c


@pytest.mark.parametrize("masking", ["token", "whole_word", "span"])
def test_rate_and_replacements(vocab, masking):
    tok, blocks = vocab
    c = masking_stats(tok, blocks, masking, mlm_probability=0.15)
    assert c["eligible"] > 5000
    assert abs(c["selected"] / c["eligible"] - 0.15) < 0.015
    if masking != "token":
        assert c["multi_piece_words"] > 20  # whole words of several pieces were chosen together
    if masking != "span":  # per position (span: per span, below)
        assert abs(c["masked"] / c["selected"] - 0.8) < 0.04
        assert abs(c["kept"] / c["selected"] - 0.1) < 0.03


def test_span_lengths_starts_and_decisions(vocab):
    tok, blocks = vocab
    special = torch.tensor(sorted(special_token_ids(tok).values()))
    coll = make_collator(tok, "span", mlm_probability=0.2)
    rngs = [np.random.default_rng(i) for i in range(len(blocks))]
    original = padded(list(enumerate(blocks)))
    eligible = (original >= 0) & ~torch.isin(original, special)
    starts = word_starts(original.clamp(min=0), coll.word_start_ids, eligible)
    selected, _, spans = select_spans(eligible, starts, 0.2, coll.span_probs, rngs)
    drawn = np.array([s.drawn for row in spans for s in row])
    covered = np.array([s.words for row in spans for s in row])
    # Geometric(0.2) restricted to 1..10 words: SpanBERT's mean span of 3.8 words.
    lengths = np.arange(1, 11)
    weights = 0.2 * 0.8 ** (lengths - 1)
    assert (
        abs(drawn.mean() - (lengths * weights).sum() / weights.sum()) < 0.25 and abs(drawn.mean() - 3.8) < 0.3
    )
    assert drawn.max() <= 10 and (covered <= drawn).all() and (covered >= 1).all()
    assert covered.mean() > 2.5  # most spans are not cut short
    # Every span starts at a word start and covers whole words.
    for row, row_spans in enumerate(spans):
        words = words_of(tok, original[row])
        first_positions = {w[0] for w in words}
        chosen_words = [w for w in words if selected[row, w].all()]
        assert sum(len(w) for w in chosen_words) == int(selected[row].sum())
        begins = [int(torch.nonzero(starts[row]).squeeze(1)[s.first_word]) for s in row_spans]
        assert set(begins) <= first_positions

    # Mask / random / keep is one decision per span: a span is all [MASK] or has no [MASK]. Runs of selected
    # positions are single spans, or touching ones (which may differ); per-position decisions would leave
    # about half the runs of 3+ tokens mixed.
    n_spans = {"mask": 0, "other": 0, "mixed": 0}
    for items in keyed_batches(blocks):
        orig = padded(items)
        out = coll(items)
        for row in range(len(items)):
            sel = (out["labels"][row] != -100).tolist()
            pos = 0
            while pos < len(sel):  # runs of selected positions: one or more touching spans
                if not sel[pos]:
                    pos += 1
                    continue
                end = pos
                while end < len(sel) and sel[end]:
                    end += 1
                is_mask = (out["input_ids"][row, pos:end] == coll.mask_id).tolist()
                if len(set(is_mask)) == 1:
                    n_spans["mask" if is_mask[0] else "other"] += 1
                elif end - pos >= 3:
                    n_spans["mixed"] += 1
                pos = end
        assert torch.equal(out["labels"][out["labels"] != -100], orig[out["labels"] != -100])
    whole = n_spans["mask"] + n_spans["other"]
    assert n_spans["mixed"] < 0.1 * whole, n_spans
    assert abs(n_spans["mask"] / whole - 0.8) < 0.08, n_spans  # 80 % of spans all [MASK]


@pytest.mark.parametrize("masking", ["token", "whole_word", "span"])
def test_same_keys_same_masks(vocab, masking):
    tok, blocks = vocab
    coll = make_collator(tok, masking)
    items = keyed_batches(blocks[:24], batch=24)[0]
    torch.manual_seed(0)
    whole = coll(items)
    torch.manual_seed(1)  # the global RNG plays no part
    again = pickle.loads(pickle.dumps(coll))(items)
    halves = [coll(items[:9]), coll(items[9:])]
    for name in whole:
        assert torch.equal(whole[name], again[name])
    # An item's mask does not depend on the batch it is in (compare the unpadded parts).
    for i, (_, block) in enumerate(items):
        half, j = (halves[0], i) if i < 9 else (halves[1], i - 9)
        assert torch.equal(whole["labels"][i, : len(block)], half["labels"][j, : len(block)])
    # The same blocks under other keys (the next epoch) are masked differently.
    shifted = [(k + 10_000, b) for k, b in items]
    assert not torch.equal(coll(shifted)["labels"], whole["labels"])


def test_none_leaves_inputs_intact(vocab):
    tok, blocks = vocab
    coll = make_collator(tok, "none")
    items = keyed_batches(blocks, batch=12)[0]
    out = coll(items)
    original = padded(items)
    real = original >= 0
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    assert not real.all()  # the batch has padding
    assert torch.equal(out["input_ids"][real], original[real])
    assert torch.equal(out["labels"][real], original[real])
    assert (out["labels"][~real] == -100).all() and torch.equal(out["attention_mask"].bool(), real)


def test_schedule_follows_the_batch_position():
    sampler = ShuffledBatchSampler(64, batch_size=8, seed=3, epoch_keys=True)  # 8 batches per epoch
    coll = MLMCollator(
        0,
        4,
        300,
        [0, 1, 2, 3, 4],
        mlm_probability=0.3,
        mlm_probability_end=0.15,
        masking_schedule_steps=16,
        batch_order=sampler.batch_order(),
    )
    worker_copy = pickle.loads(pickle.dumps(coll))  # what a DataLoader worker holds
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for i, keys in enumerate(sampler):
            step = epoch * 8 + i
            expected = 0.3 - 0.15 * min(step / 16, 1.0)
            assert torch.allclose(coll.rates(keys), torch.full((8, 1), expected, dtype=torch.float64))
            assert torch.equal(worker_copy.rates(keys), coll.rates(keys))
    # Two processes (or two accumulated batches) per optimizer step: half the progress per batch.
    sampler.set_epoch(1)
    keys = next(iter(sampler))
    coll.batches_per_step = 2
    assert torch.allclose(coll.rates(keys), torch.full((8, 1), 0.3 - 0.15 * 4 / 16, dtype=torch.float64))


def test_scheduled_rate_is_realised(vocab):
    tok, blocks = vocab
    n = len(blocks) - len(blocks) % 16
    sampler = ShuffledBatchSampler(n, batch_size=16, seed=0, epoch_keys=True)
    batches_per_epoch = n // 16
    coll = make_collator(
        tok,
        "whole_word",
        mlm_probability=0.4,
        mlm_probability_end=0.1,
        masking_schedule_steps=batches_per_epoch,
        batch_order=sampler.batch_order(),
    )
    special = torch.tensor(sorted(special_token_ids(tok).values()))
    realised = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        chosen = eligible = 0
        for keys in sampler if epoch else list(sampler)[:3]:  # epoch 0: its first batches (rate ~0.4)
            items = [(k, blocks[k % n]) for k in keys]
            out = coll(items)
            original = padded(items)
            chosen += int((out["labels"] != -100).sum())
            eligible += int(((original >= 0) & ~torch.isin(original, special)).sum())
        realised[epoch] = chosen / eligible
    assert abs(realised[0] - (0.4 - 0.3 / batches_per_epoch)) < 0.05  # steps 0, 1, 2
    assert abs(realised[1] - 0.1) < 0.02


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"masking": "bert"}, "data.masking"),
        ({"span_p": 0.0}, "data.span_p"),
        ({"span_p": 1.5}, "data.span_p"),
        ({"span_max": 0}, "data.span_max"),
        ({"mlm_probability_end": 1.0, "masking_schedule_steps": 10}, "data.mlm_probability_end"),
        ({"mlm_probability_end": 0.1}, "data.masking_schedule_steps"),
        ({"mlm_probability_end": 0.1, "masking_schedule_steps": -1}, "data.masking_schedule_steps"),
        ({"mlm_probability_end": 0.1, "masking_schedule_steps": 10, "masking": "none"}, "data.masking"),
        ({"masking_schedule_steps": "abc"}, "data.masking_schedule_steps"),
    ],
)
def test_settings_are_checked(kw, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")) as err:
        TextCorpusDataModule(train_file="unused.txt", **kw)
    assert "\n" not in str(err.value) and " — " in str(err.value)


def test_masking_changes_reuse_the_token_cache(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts(300, seed=1)) + "\n")
    cache = tmp_path / "cache"

    def prepared(**kw) -> TextCorpusDataModule:
        dm = TextCorpusDataModule(
            train_file=str(corpus), vocab_size=200, max_seq_len=32, batch_size=8, cache_dir=str(cache), **kw
        )
        dm.prepare()
        return dm

    prepared()
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    scheduled = {"masking": "span", "mlm_probability": 0.3, "mlm_probability_end": 0.15}
    steps = len(prepared().train_dataloader())  # the rate falls from 0.3 to 0.15 over epoch 0
    dm = prepared(**scheduled, masking_schedule_steps=steps)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == files
    assert dm.val_collator.rates(None) == 0.15  # validation masks at the schedule's end rate

    # The scheduled masking is the same in worker processes and after a mid-epoch resume.
    full = list(dm.train_dataloader())
    assert set(full[0]) == {"input_ids", "attention_mask", "labels"}
    shares = [float((b["labels"] != -100).sum() / b["attention_mask"].sum()) for b in full]
    assert shares[0] > 0.25 and shares[-1] < 0.2  # the realised rate follows the schedule
    resumed = prepared(**scheduled, masking_schedule_steps=steps, num_workers=2).train_dataloader()
    resumed.load_state_dict({"epoch": 0, "batches_done": 3})
    rest = list(resumed)
    assert len(rest) == len(full) - 3
    for a, b in zip(full[3:], rest, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_objective_group_composes_with_the_experiment():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        span = compose(
            "train", overrides=["paths.output_dir=/tmp/unused", "experiment=pretrain_mlm", "objective=span"]
        )
        wwm = compose(
            "train",
            overrides=[
                "paths.output_dir=/tmp/unused",
                "experiment=pretrain_mlm",
                "objective=wwm",
                "data.mlm_probability=0.3",
                "data.mlm_probability_end=0.15",
            ],
        )
        plain = compose("train", overrides=["paths.output_dir=/tmp/unused", "experiment=pretrain_mlm"])
    assert (span.data.masking, span.data.span_p, span.data.span_max) == ("span", 0.2, 10)
    assert plain.data.masking == "token" and plain.data.mlm_probability_end is None
    assert span.task._target_ == plain.task._target_ and span.head._target_ == plain.head._target_
    dm = instantiate(wwm.data)  # no data is read at construction
    assert dm.masking == "whole_word"
    assert dm.masking_schedule_steps == wwm.trainer.max_steps == 10000  # tied to the run's length


def test_logged_mask_rate_is_the_share_of_real_tokens():
    labels = torch.tensor([[-100, 7, -100, 9, -100], [-100, -100, 8, -100, -100]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert masked_share({"labels": labels, "attention_mask": attention_mask}).item() == pytest.approx(3 / 9)
