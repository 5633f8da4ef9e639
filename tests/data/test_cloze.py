"""Cloze prompts: the template on token ids, verbalizer checks, the data module; seeded training samples."""

from __future__ import annotations

import pytest

from encoderlab.data import TextClassificationDataModule
from encoderlab.data.cloze import ClozeDataModule, ClozeTemplate, verbalizer_token_ids
from encoderlab.data.tokenizer import save_tokenizer, special_token_ids
from encoderlab.errors import UserError


def test_template_keeps_the_prompt_and_cuts_the_text(tokenizer):
    template = ClozeTemplate("review: {text} it was [MASK] .", tokenizer)
    ids = special_token_ids(tokenizer)
    text = tokenizer.encode("the film good story " * 5, add_special_tokens=False).ids
    full, position = template.apply(text, max_len=512)
    assert full[0] == ids["cls"] and full[-1] == ids["sep"] and full[position] == ids["mask"]
    assert full.count(ids["mask"]) == 1 and len(full) == len(text) + template.overhead
    short, position = template.apply(text, max_len=template.overhead + 3)
    assert (
        len(short) == template.overhead + 3
        and short[1 + len(template.before) : position] != full[1:position]
        and short[position] == ids["mask"]
        and short[-1] == ids["sep"]
    )
    assert short[-3:] == full[-3:]  # "[MASK] . [SEP]": the prompt's end survives truncation
    with pytest.raises(UserError, match="max_seq_len"):
        template.apply(text, max_len=template.overhead)


@pytest.mark.parametrize(
    "bad", ["{text} it was good", "it was [MASK]", "[MASK] {text}", "{text} {text} [MASK]"]
)
def test_malformed_template(tokenizer, bad):
    with pytest.raises(UserError, match="template"):
        ClozeTemplate(bad, tokenizer)


def test_verbalizer_words_must_be_single_tokens(tokenizer):
    good = verbalizer_token_ids({"neg": "bad", "pos": "good"}, ["neg", "pos"], tokenizer)
    assert good == [tokenizer.token_to_id("bad"), tokenizer.token_to_id("good")]
    with pytest.raises(UserError, match="'outstandingly'.*label pos.*single token"):
        verbalizer_token_ids({"neg": "bad", "pos": "outstandingly"}, ["neg", "pos"], tokenizer)
    with pytest.raises(UserError, match="missing: pos"):
        verbalizer_token_ids({"neg": "bad"}, ["neg", "pos"], tokenizer)
    with pytest.raises(UserError, match="prompt.verbalizer"):
        verbalizer_token_ids(None, ["neg", "pos"], tokenizer)


def test_cloze_data_module(classification_files, tmp_path):
    dm = ClozeDataModule(
        train_file=str(classification_files["train"]),
        val_file=str(classification_files["val"]),
        test_file=str(classification_files["test"]),
        vocab_size=200,
        max_seq_len=16,
        batch_size=4,
        cache_dir=str(tmp_path),
        verbalizer={"neg": "bad", "neutral": "film", "pos": "good"},
    )
    dm.prepare()
    assert dm.task_kwargs["verbalizer_token_ids"] == [
        dm.tokenizer.token_to_id(w) for w in ("bad", "film", "good")
    ]
    assert dm.head_kwargs == {}
    batch = next(iter(dm.val_dataloader()))
    rows = range(batch["input_ids"].shape[0])
    mask_id = special_token_ids(dm.tokenizer)["mask"]
    assert all(batch["input_ids"][r, batch["mask_positions"][r]] == mask_id for r in rows)
    assert batch["input_ids"].shape[1] <= 16


def test_train_sample_is_a_seeded_random_subset(classification_files, tmp_path, tokenizer):
    save_tokenizer(tokenizer, tmp_path / "tok")  # one tokenizer for every sample, so ids compare

    def train_texts(**kw):
        dm = TextClassificationDataModule(
            train_file=str(classification_files["train"]),
            val_file=str(classification_files["val"]),
            tokenizer=str(tmp_path / "tok"),
            cache_dir=str(tmp_path / "cache"),
            **kw,
        )
        dm.prepare()
        return [tuple(dm.train_dataset[i]["input_ids"].tolist()) for i in range(len(dm.train_dataset))]

    everything = train_texts()
    a, a_again, b = (
        train_texts(train_sample=10, seed=1),
        train_texts(train_sample=10, seed=1),
        train_texts(train_sample=10, seed=2),
    )
    assert len(a) == 10 and a == a_again and a != b
    assert set(a) <= set(everything) and a != everything[:10]
    with pytest.raises(UserError, match="train_sample=1000"):
        train_texts(train_sample=1000)


def test_train_sample_keeps_every_label_and_the_full_label_map(tmp_path, write_tsv, make_sentences):
    # 2 of 60 examples are "rare": a plain random 3-example draw would usually miss it.
    texts = make_sentences(60, seed=5)
    rows = [(t, "rare" if i in (17, 41) else ("pos" if i % 2 else "neg")) for i, t in enumerate(texts)]
    write_tsv(tmp_path / "train.tsv", rows)
    write_tsv(tmp_path / "dev.tsv", rows[:6])
    for seed in range(5):
        dm = TextClassificationDataModule(
            train_file=str(tmp_path / "train.tsv"),
            val_file=str(tmp_path / "dev.tsv"),
            vocab_size=150,
            cache_dir=str(tmp_path / "cache"),
            train_sample=3,
            seed=seed,
        )
        dm.prepare()
        assert dm.label_names == ["neg", "pos", "rare"]
        assert sorted(dm.train_dataset.labels.tolist()) == [0, 1, 2]
