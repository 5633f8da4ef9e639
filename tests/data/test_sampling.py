"""Few-shot training samples: class-balanced draws (K per class, or N spread over the classes), seeded and
reproducible, refused in one line when a class is short; the old random draw is unchanged."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from encoderlab.data import TextClassificationDataModule
from encoderlab.data.sampling import balanced_counts, random_draw
from encoderlab.data.tokenizer import save_tokenizer
from encoderlab.errors import UserError

# 60 examples: "a" 30, "b" 20, "c" 10 (sorted by nothing in particular).
LABELS = [("a", "b", "a", "c", "a", "b")[i % 6] for i in range(60)]


@pytest.fixture(scope="module")
def files(tmp_path_factory, write_tsv, make_sentences, tokenizer):
    root = tmp_path_factory.mktemp("sampling")
    texts = [f"{text} {i}" for i, text in enumerate(make_sentences(60, seed=11))]  # all different
    write_tsv(root / "train.tsv", list(zip(texts, LABELS, strict=True)))
    write_tsv(root / "dev.tsv", list(zip(texts[:6], LABELS[:6], strict=True)))
    save_tokenizer(tokenizer, root / "tok")  # one tokenizer for every draw: the ids of a text compare
    return root


def draw(files, val_file=True, **settings) -> TextClassificationDataModule:
    dm = TextClassificationDataModule(
        train_file=str(files / "train.tsv"),
        val_file=str(files / "dev.tsv") if val_file else None,
        tokenizer=str(files / "tok"),
        cache_dir=str(files / "cache"),
        **settings,
    )
    dm.prepare()
    return dm


def texts_and_labels(dm) -> list[tuple[tuple[int, ...], int]]:
    return [
        (tuple(dm.train_dataset[i]["input_ids"].tolist()), int(dm.train_dataset.labels[i]))
        for i in range(len(dm.train_dataset))
    ]


def test_k_of_every_class_seeded(files):
    first, again, other = (draw(files, train_sample_per_class=4, seed=s) for s in (1, 1, 2))
    for dm in (first, again, other):
        assert Counter(dm.train_dataset.labels.tolist()) == {0: 4, 1: 4, 2: 4}
        assert dm.describe()["train_sample_counts"] == {"a": 4, "b": 4, "c": 4}
    assert texts_and_labels(first) == texts_and_labels(again)
    assert texts_and_labels(first) != texts_and_labels(other)
    assert len(set(texts_and_labels(first))) == 12  # twelve different examples


def test_n_spread_over_the_classes(files):
    """N // C of each class, the remainder one more each for random classes, differing between seeds."""
    extra_classes = set()
    for seed in range(6):
        dm = draw(files, train_sample=11, balanced_sample=True, seed=seed)
        counts = Counter(dm.train_dataset.labels.tolist())
        assert sum(counts.values()) == 11 and sorted(counts.values()) == [3, 4, 4]
        assert dm.describe()["train_sample_counts"] == {"abc"[c]: n for c, n in sorted(counts.items())}
        extra_classes.add(min(counts, key=counts.get))
    assert len(extra_classes) > 1  # the class left at N // C is drawn, not always the same
    assert texts_and_labels(draw(files, train_sample=11, balanced_sample=True, seed=3)) == texts_and_labels(
        draw(files, train_sample=11, balanced_sample=True, seed=3)
    )


def test_balanced_counts_take_distinct_classes_for_the_remainder():
    for seed in range(20):
        counts = balanced_counts([0, 1, 2, 3], 10, np.random.default_rng(seed))
        assert sorted(counts.values()) == [2, 2, 3, 3] and sum(counts.values()) == 10


def test_held_out_validation_comes_first_without_a_val_file(files):
    """No val file: validation is split off the whole training set, so the sample keeps exact counts."""
    dm = draw(files, val_file=False, train_sample_per_class=5, seed=1)
    assert Counter(dm.train_dataset.labels.tolist()) == {0: 5, 1: 5, 2: 5}
    assert len(dm.val_dataset) == 6  # 10 % of all 60, not of the 15 drawn
    assert not set(texts_and_labels(dm)) & {
        (tuple(dm.val_dataset[i]["input_ids"].tolist()), int(dm.val_dataset.labels[i]))
        for i in range(len(dm.val_dataset))
    }


def test_a_short_class_is_named_with_its_count(files):
    with pytest.raises(
        UserError, match=r"train_sample_per_class=11 needs 11 .* class 'c', which has 10 .*=10 or less"
    ):
        draw(files, train_sample_per_class=11)
    with pytest.raises(
        UserError, match=r"train_sample=40 with data.balanced_sample=true .* 'c', which has 10"
    ):
        draw(files, train_sample=40, balanced_sample=True)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"train_sample": 6, "train_sample_per_class": 2}, "null the other"),
        ({"balanced_sample": True}, "no sample is drawn"),
        ({"train_sample_per_class": 0}, "data.train_sample_per_class=0"),
        ({"balanced_sample": "yes", "train_sample": 6}, "data.balanced_sample='yes'"),
    ],
)
def test_bad_settings_fail_in_one_line(files, settings, words):
    with pytest.raises(UserError, match=words):
        draw(files, **settings)


def test_regression_data_has_no_classes_to_balance(tmp_path, write_tsv, make_sentences):
    write_tsv(tmp_path / "scores.tsv", [(t, str(i % 5)) for i, t in enumerate(make_sentences(20, seed=3))])
    with pytest.raises(UserError, match="train_sample_per_class=2 draws from each class.*numeric targets"):
        TextClassificationDataModule(
            train_file=str(tmp_path / "scores.tsv"),
            num_labels=1,
            vocab_size=100,
            cache_dir=str(tmp_path),
            train_sample_per_class=2,
        ).prepare()


def _old_draw(labels: list[str], size: int, seed: int) -> list[int]:
    """The random draw as every earlier few-shot run made it (before class-balanced draws existed)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    first_of_label: dict[str, int] = {}
    for i in order:
        first_of_label.setdefault(labels[i], int(i))
    picked = list(first_of_label.values()) if len(first_of_label) <= size else []
    taken = set(picked)
    picked += [int(i) for i in order if int(i) not in taken][: size - len(picked)]
    return sorted(picked)


def test_the_random_draw_of_earlier_runs_is_unchanged(files):
    for seed, size in ((1, 2), (2, 3), (3, 32), (7, 59)):
        assert random_draw(60, size, seed, LABELS) == _old_draw(LABELS, size, seed)
    dm = draw(files, train_sample=9, seed=4)  # balanced_sample defaults to false: the old draw
    expected = [LABELS[i] for i in _old_draw(LABELS, 9, 4)]
    assert dm.train_dataset.labels.tolist() == [dm.label_map[name] for name in expected]
    assert dm.describe()["train_sample_counts"] == dict(sorted(Counter(expected).items()))


def test_a_test_sample_is_the_same_subset_for_every_seed(files):
    kwargs = {"test_file": str(files / "train.tsv"), "train_sample_per_class": 2}
    first, other = (draw(files, test_sample=10, seed=s, **kwargs) for s in (1, 2))
    assert len(first.test_dataset) == 10 and first.describe()["test_sample"] == 10
    ids = [first.test_dataset[i]["input_ids"].tolist() for i in range(10)]
    assert ids == [other.test_dataset[i]["input_ids"].tolist() for i in range(10)]  # not the run's seed
    texts, labels = first.labelled_texts("test")
    assert len(texts) == len(labels) == 10 and len(set(texts)) == 10
    assert len(draw(files, test_sample=1000, **kwargs).test_dataset) == 60  # more than there are: all
    train_texts, _ = first.labelled_texts("train")
    assert len(train_texts) == len(first.train_dataset)
