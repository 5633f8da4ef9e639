"""task=contrastive: the InfoNCE loss, SimCSE's two dropout passes, the retrieval metric, the gather across
DDP processes (2 gloo processes), the pairs data and one tiny run through the real entry point that leaves
both exports."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from encoderlab.cli.components import build_task
from encoderlab.cli.errors import find_user_error
from encoderlab.cli.predict import predict
from encoderlab.data.pairs import POSITIVE, TextPairsDataModule
from encoderlab.data.tokenizer import load_tokenizer
from encoderlab.errors import UserError
from encoderlab.formats.export import load_encoder
from encoderlab.models.encoder import build
from encoderlab.models.heads import PoolingHead, pool
from encoderlab.models.similarity import info_nce
from encoderlab.tasks.contrastive import ContrastiveTask, PairRetrievalAccuracy
from tests.cli.test_config import compose_train
from tests.conftest import FAST, cli_env, run_train
from tests.tasks import gather_worker

unit_rows = gather_worker.unit_rows


def by_hand(anchors, positives, temperature) -> torch.Tensor:
    """Cross-entropy of cosine / temperature with the diagonal as targets, written out."""
    logits = F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T / temperature
    return (logits.logsumexp(-1) - logits.diagonal()).mean()


# ----------------------------------------------------------------------------------------------- loss


def test_identical_pairs_give_a_low_loss_and_unrelated_ones_a_high_one():
    anchors = unit_rows(8)
    assert info_nce(anchors, anchors, 0.05) < 1e-3
    # Unrelated "positives": the loss sits near chance, log(8) = 2.08, or above.
    assert info_nce(anchors, unit_rows(8, seed=1), 0.05) > 1.0


def test_temperature_divides_the_cosine_similarities():
    anchors, positives = unit_rows(6), unit_rows(6, seed=1) + 0.5 * unit_rows(6)
    for temperature in (0.05, 0.5, 2.0):
        assert torch.allclose(
            info_nce(anchors, positives, temperature), by_hand(anchors, positives, temperature)
        )
    # Scaling the embeddings changes nothing (cosine); a lower temperature sharpens a right answer.
    assert torch.allclose(info_nce(3 * anchors, positives, 0.5), info_nce(anchors, positives, 0.5))
    assert info_nce(anchors, anchors, 0.05) < info_nce(anchors, anchors, 1.0)


def test_symmetric_loss_averages_both_directions():
    anchors, positives = unit_rows(6), unit_rows(6, seed=1) + unit_rows(6)
    one_way, other_way = by_hand(anchors, positives, 0.1), by_hand(positives, anchors, 0.1)
    assert not torch.allclose(one_way, other_way)  # the case tells the directions apart
    assert torch.allclose(info_nce(anchors, positives, 0.1), one_way)
    assert torch.allclose(info_nce(anchors, positives, 0.1, symmetric=True), (one_way + other_way) / 2)


# ------------------------------------------------------------------------------------------- metric


def test_retrieval_accuracy_counts_anchors_whose_own_positive_ranks_first():
    e = torch.eye(4)
    anchors = e.clone()
    # Anchor 3 sits nearer positive 2 (0.71) than its own (0.5): one miss. Anchor 1 still finds its own
    # (1.0 against positive 3's 0.87).
    positives = torch.stack([e[0], e[1], e[2] + e[3], 0.5 * e[3] + 0.866 * e[1]])
    metric = PairRetrievalAccuracy()
    metric.update(anchors[:3], positives[:3])  # over two batches: ranked against all positives at the end
    metric.update(anchors[3:], positives[3:])
    assert metric.compute() == pytest.approx(0.75)
    metric.reset()
    metric.update(anchors[:3], positives[:3])
    assert metric.compute() == pytest.approx(1.0)  # without the distracting pair nothing is missed


# ------------------------------------------------------------------------------------------- SimCSE


def tiny_task(dropout: float = 0.1, **settings) -> ContrastiveTask:
    torch.manual_seed(0)
    encoder = build(vocab_size=50, layers=2, hidden=32, heads=2, dropout=dropout, attention_dropout=dropout)
    return ContrastiveTask(encoder, PoolingHead(encoder), **settings)


def text_batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 50, (4, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_simcse_passes_differ_only_by_dropout():
    batch = text_batch()  # single texts: no positive_* keys
    task = tiny_task().train()
    anchors, positives = task.pair_embeddings(batch)
    assert (anchors - positives).abs().max() > 1e-3  # two dropout masks
    task.eval()
    anchors, positives = task.pair_embeddings(batch)
    assert torch.equal(anchors, positives)  # same weights, same texts: only dropout told them apart
    still = tiny_task(dropout=0.0).train()
    assert torch.equal(*still.pair_embeddings(batch))
    # With positives in the batch, those are what is embedded second.
    paired = {**batch, **{POSITIVE + k: v.flip(0) for k, v in batch.items()}}
    anchors, positives = task.pair_embeddings(paired)
    assert torch.equal(positives, anchors.flip(0))


def test_training_step_learns_from_in_batch_negatives():
    task = tiny_task(temperature=0.05)
    task.configure_optimizers = lambda: torch.optim.AdamW(task.parameters(), lr=1e-2)
    optimizer = task.configure_optimizers()
    task.log = lambda *a, **k: None  # no trainer here
    batch, losses = text_batch(), []
    for _ in range(5):
        loss = task._step(batch, task.train_metrics, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


# ------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("temperature", [0, -0.1, "warm"])
def test_a_temperature_that_is_not_positive_is_refused(temperature):
    with pytest.raises(UserError, match=r"task\.temperature=.* must be a number > 0"):
        tiny_task(temperature=temperature)


def pairs_data(data_dir, cache_dir, **settings) -> TextPairsDataModule:
    base = {
        "train_file": str(data_dir / "stsb/train.tsv"),
        "val_file": str(data_dir / "stsb/dev.tsv"),
        "sts_file": str(data_dir / "stsb/dev.tsv"),
        "text_column": "sentence1",
        "positive_column": "sentence2",
        "score_column": "score",
        "vocab_size": 300,
        "max_seq_len": 32,
        "batch_size": 8,
        "cache_dir": str(cache_dir),
    }
    return TextPairsDataModule(**{**base, **settings})


def test_a_missing_pairs_column_is_one_line_naming_it(data_dir, cache_dir):
    with pytest.raises(UserError, match="column 'paraphrase' not found .* data.\\*_column") as err:
        pairs_data(data_dir, cache_dir, positive_column="paraphrase").prepare()
    assert "\n" not in str(err.value)


def test_sts_data_asked_for_but_absent_is_one_line(data_dir, cache_dir, tmp_path):
    with pytest.raises(UserError, match="data.sts_file not found: .*missing.tsv .* data.sts_file=null"):
        pairs_data(data_dir, cache_dir, sts_file=str(tmp_path / "missing.tsv")).prepare()
    with pytest.raises(UserError, match="data.sts_file is not set .* set data.sts_file"):
        pairs_data(data_dir, cache_dir, positive_column=None, score_column=None, val_file=None, sts_file=None)


def test_pairs_keep_only_scores_from_min_score_and_unsupervised_data_has_no_positives(data_dir, cache_dir):
    data = pairs_data(data_dir, cache_dir)
    data.prepare()
    train = [data.train_dataset.scores is None, len(data.train_dataset)]
    assert train[0] and 0 < train[1] < 120  # the fixture's 120 rows, about half scoring 3-5
    batch = data.collator([data.train_dataset[i] for i in range(3)])
    assert {"input_ids", POSITIVE + "input_ids", POSITIVE + "attention_mask"} <= set(batch)
    assert "scores" in data.collator([data.sts_dataset[0]])

    single = pairs_data(
        data_dir,
        cache_dir,
        train_file=str(data_dir / "wiki_en/train.txt"),
        positive_column=None,
        score_column=None,
        val_file=None,
    )
    single.prepare()
    batch = single.collator([single.train_dataset[i] for i in range(3)])
    assert POSITIVE + "input_ids" not in batch  # SimCSE: the task embeds each text twice
    # Held-out pairs are the STS pairs scoring at least min_score; all STS pairs are scored.
    assert len(single.val_dataset) == len(data.val_dataset) < len(single.sts_dataset) == 40
    assert len(single.val_dataloader()) == 2


# ----------------------------------------------------------------------------------------------- DDP


@pytest.mark.slow  # two processes: about 5 s, like the other DDP tests
def test_negatives_are_gathered_across_ddp_processes_with_their_gradient(tmp_path):
    """Each of 2 gloo processes scores its 4 pairs against all 8: their mean loss is the global batch's,
    and (DDP then averaging over the processes) their gradients are the global loss's."""
    mp.spawn(gather_worker.run, args=(2, 29500 + os.getpid() % 1000, str(tmp_path)), nprocs=2, join=True)
    a, p = (t.clone().requires_grad_() for t in gather_worker.global_batch())
    whole = info_nce(a, p, 0.1, symmetric=True)
    whole.backward()
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert float(sum(r["loss"] for r in results)) / 2 == pytest.approx(whole.item(), rel=1e-5)
    for rank, result in enumerate(results):
        mine = slice(4 * rank, 4 * rank + 4)
        assert torch.allclose(result["a"] / 2, a.grad[mine], atol=1e-6)
        assert torch.allclose(result["p"] / 2, p.grad[mine], atol=1e-6)
        assert result["uneven"].tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]] and result["offset"] == rank


# ------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def contrastive_run(pretrained_run, data_dir, cache_dir, tmp_path_factory):
    """Supervised STS-B pairs from the shared tiny pre-training run's export, through encoderlab-train."""
    run_dir = tmp_path_factory.mktemp("runs") / "contrastive"
    result = run_train(
        [
            "experiment=contrastive_stsb",
            "init=pretrained",
            f"init.path={pretrained_run / 'encoder'}",
            *FAST,
            "task.symmetric=true",
            f"hydra.run.dir={run_dir}",
        ],
        cli_env(data_dir, cache_dir),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_a_contrastive_run_records_its_metrics_and_leaves_both_exports(contrastive_run):
    metrics = json.loads((contrastive_run / "metrics.json").read_text())
    for name in ("train/loss", "val/loss", "val/retrieval_acc", "val/spearman"):
        assert torch.isfinite(torch.tensor(metrics[name])), name
    assert 0 <= metrics["val/retrieval_acc"] <= 1 and -1 <= metrics["val/spearman"] <= 1
    record = json.loads((contrastive_run / "task.json").read_text())
    assert record["task"]["kind"] == "contrastive"
    assert record["task"]["settings"] == {"temperature": 0.05, "symmetric": True}
    assert record["head"]["settings"] == {"pooling": "mean", "normalize": True}
    load_encoder(contrastive_run / "encoder")  # every tensor accounted for
    st = contrastive_run / "sentence_transformers"
    modules = json.loads((st / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]


def test_sentence_transformers_reproduces_the_encoder_and_its_pooling(contrastive_run):
    sentence_transformers = pytest.importorskip(
        "sentence_transformers", reason="pip install sentence-transformers"
    )
    texts = [
        "the film was great",
        "a dull and tedious story , with a cast that never found its footing",
        "ok",
    ]
    encoder = load_encoder(contrastive_run / "encoder").eval()
    batch = TextPairsDataModule.prediction_batch(load_tokenizer(contrastive_run / "encoder"), 32, texts)
    with torch.no_grad():
        hidden = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        want = F.normalize(pool(hidden, batch["attention_mask"], "mean"), dim=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the classic module names are deprecated aliases in newer releases
        model = sentence_transformers.SentenceTransformer(
            str(contrastive_run / "sentence_transformers"), device="cpu"
        )
    got = torch.from_numpy(model.encode(texts))
    assert model.max_seq_length == 32
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["experiment=contrastive_stsb", "head=classifier"], ["task=contrastive", "head=pooling"]),
        (["experiment=finetune_sst2", "task=contrastive", "head=pooling"], ["texts with their positives"]),
        (["experiment=contrastive_stsb", "task=regress", "head=classifier"], ["task=contrastive"]),
    ],
    ids=["classifier-head", "classes-data", "regress-on-pairs"],
)
def test_task_head_and_data_must_go_together(data_dir, cache_dir, overrides, needles):
    cfg = compose_train(
        [
            *overrides,
            "init=scratch",
            *[o for o in FAST if not o.startswith("~")],
            f"paths.data_dir={data_dir}",
            f"paths.cache_dir={cache_dir}",
        ]
    )
    with pytest.raises(Exception) as err:
        build_task(cfg)
    user_error = find_user_error(err.value)  # Hydra wraps what a constructor raises
    assert user_error is not None, err.value
    for needle in needles:
        assert needle in str(user_error), str(user_error)


def test_predict_writes_each_texts_embedding(contrastive_run, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("the film was great\na dull story\n")
    assert predict(contrastive_run, str(texts), str(tmp_path / "out.jsonl")) == 2
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    vectors = torch.tensor([row["embedding"] for row in rows])
    assert [row["text"] for row in rows] == ["the film was great", "a dull story"]
    assert vectors.shape == (2, 128) and torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)
