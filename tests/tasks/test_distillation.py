"""task=distill: the loss, that a student learns a teacher's vectors, the teacher-vector data and its
cache, the checks that refuse what does not go together, and one tiny run through the real entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoderlab.cli.components import build_task
from encoderlab.cli.errors import find_user_error
from encoderlab.cli.predict import predict
from encoderlab.data.base import heldout_split
from encoderlab.data.readers import read_table
from encoderlab.data.teacher_vectors import TEACHER_VECTORS, TeacherVectorsDataModule
from encoderlab.embedding.embedder import Embedder
from encoderlab.errors import UserError
from encoderlab.formats.export import load_encoder, read_export_config
from encoderlab.models.encoder import Encoder
from encoderlab.models.heads import ProjectionHead
from encoderlab.tasks.distillation import DistillationTask, distillation_loss
from tests.cli.test_config import compose_train
from tests.conftest import FAST, cli_env, run_train, write_columns

# ----------------------------------------------------------------------------------------------- loss


def test_cosine_loss_ignores_length_and_mse_does_not():
    targets = F.normalize(torch.randn(5, 12, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert distillation_loss(3.0 * targets, targets, "cosine").abs() < 1e-6
    assert distillation_loss(-targets, targets, "cosine") == pytest.approx(2.0)
    assert distillation_loss(3.0 * targets, targets, "mse") == pytest.approx(4.0 / 12, rel=1e-5)


def test_a_student_learns_to_reproduce_fixed_teacher_vectors(pretrained_run):
    torch.manual_seed(0)
    student = Encoder(read_export_config(pretrained_run / "encoder"))
    head = ProjectionHead(student, dims=16)
    task = DistillationTask(student, head, optimizer=lambda groups: torch.optim.AdamW(groups, lr=3e-3))
    ids = torch.randint(5, student.config.vocab_size, (8, 10))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        TEACHER_VECTORS: F.normalize(torch.randn(8, 16), dim=-1),
    }
    optimizer = torch.optim.AdamW(task.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        vectors = task(batch)
        return distillation_loss(vectors, batch[TEACHER_VECTORS], "cosine")

    before = float(loss())
    for _ in range(60):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert before > 0.5 and float(loss()) < 0.1 * before


def test_an_unknown_loss_is_refused(pretrained_run):
    student = Encoder(read_export_config(pretrained_run / "encoder"))
    with pytest.raises(UserError, match="task.loss"):
        DistillationTask(student, ProjectionHead(student, dims=4), loss="kl")


# ------------------------------------------------------------------------------------------- data


def module(path, teacher, cache_dir, **settings) -> TeacherVectorsDataModule:
    values = {"vocab_size": 400, "max_seq_len": 32, "val_split": 0.1, "seed": 3, **settings}
    return TeacherVectorsDataModule(
        train_file=str(path), teacher=str(teacher), cache_dir=str(cache_dir), **values
    )


def test_each_text_carries_its_teacher_vector(pretrained_run, data_dir, cache_dir):
    teacher = pretrained_run / "encoder"
    data = module(data_dir / "sst2/train.tsv", teacher, cache_dir)
    data.prepare()
    texts = read_table(data_dir / "sst2/train.tsv", ["text"])["text"]
    want = Embedder(str(teacher)).encode(texts, batch_size=16)
    assert data.teacher_dims == want.shape[1] == data.head_kwargs["dims"]
    assert len(data.train_dataset) + len(data.val_dataset) == len(texts) == 300
    assert len(data.val_dataset) == 30
    # Each example carries its own text's vector: the split's order, vector by vector.
    train_index, val_index = heldout_split(len(texts), 0.1, 3)
    assert np.allclose(data.train_dataset.vectors, want[train_index], atol=1e-5)
    assert np.allclose(data.val_dataset.vectors, want[val_index], atol=1e-5)
    batch = data.collator([data.train_dataset[0], data.train_dataset[1]])
    assert batch[TEACHER_VECTORS].shape == (2, want.shape[1]) and batch["input_ids"].shape[0] == 2


def test_teacher_vectors_are_read_from_the_cache_until_a_text_changes(
    pretrained_run, tmp_path, cache_dir, monkeypatch
):
    teacher = pretrained_run / "encoder"
    rows = [(f"text number {i} about films", "not a label at all") for i in range(40)]
    table = write_columns(tmp_path / "texts.tsv", ("text", "label"), rows)
    first = module(table, teacher, tmp_path / "cache")
    first.prepare()

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran although its vectors were cached")

    monkeypatch.setattr(Embedder, "encode", no_teacher)
    again = module(table, teacher, tmp_path / "cache")
    again.prepare()
    assert np.array_equal(again.train_dataset.vectors, first.train_dataset.vectors)
    write_columns(table, ("text", "label"), [*rows[:-1], ("an edited last text", "x")])
    with pytest.raises(AssertionError, match="the teacher ran"):
        module(table, teacher, tmp_path / "cache").prepare()


def test_a_text_file_is_read_line_by_line(pretrained_run, data_dir, cache_dir):
    data = module(data_dir / "wiki_en/valid.txt", pretrained_run / "encoder", cache_dir, train_limit=20)
    data.prepare()
    assert len(data.train_dataset) + len(data.val_dataset) == 20


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"text_column": "sentence"}, "sentence"),
        ({"teacher": "/nonexistent/teacher"}, "pass an encoder export"),
        ({"teacher_device": "tpu"}, "data.teacher_device"),
        ({"teacher_batch_size": 0}, "data.teacher_batch_size"),
    ],
    ids=["missing-column", "missing-teacher", "bad-device", "bad-batch-size"],
)
def test_bad_settings_are_one_line_naming_them(pretrained_run, data_dir, cache_dir, settings, needle):
    values = {"teacher": pretrained_run / "encoder", **settings}
    teacher = values.pop("teacher")
    with pytest.raises(UserError, match=needle):
        module(data_dir / "sst2/train.tsv", teacher, cache_dir, **values).prepare()


# ---------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["experiment=distill_minilm", "head=classifier"], ["task=distill", "head=projection"]),
        (
            ["experiment=finetune_sst2", "task=distill", "head=projection"],
            ["teacher encoder's sentence vector"],
        ),
    ],
    ids=["classifier-head", "classes-data"],
)
def test_task_head_and_data_must_go_together(pretrained_run, data_dir, cache_dir, overrides, needles):
    cfg = compose_train(
        [
            *overrides,
            *[o for o in FAST if not o.startswith("~")],
            f"data.teacher={pretrained_run / 'encoder'}"
            if "experiment=distill_minilm" in overrides
            else "seed=1",
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


def test_distillation_is_an_objective_of_the_pre_training_experiment():
    cfg = compose_train(["experiment=pretrain_mlm", "objective=distill"])
    assert cfg.task._target_ == "encoderlab.tasks.distillation.DistillationTask"
    assert cfg.head._target_ == "encoderlab.models.heads.ProjectionHead"
    assert cfg.data._target_ == "encoderlab.data.teacher_vectors.TeacherVectorsDataModule"
    assert cfg.data.train_file.endswith("wiki_en/train.txt") and cfg.data.max_seq_len == 128


# ------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def distill_run(pretrained_run, data_dir, cache_dir, tmp_path_factory):
    """The pre-training run's export distilled from itself as teacher, through encoderlab-train."""
    run_dir = tmp_path_factory.mktemp("runs") / "distill"
    export = pretrained_run / "encoder"
    result = run_train(
        [
            "experiment=distill_minilm",
            "init=pretrained",
            f"init.path={export}",
            f"data.teacher={export}",
            *FAST,
            f"hydra.run.dir={run_dir}",
        ],
        cli_env(data_dir, cache_dir),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_a_distillation_run_records_its_metrics_and_leaves_the_encoder(distill_run, pretrained_run):
    metrics = json.loads((distill_run / "metrics.json").read_text())
    for name in ("train/loss", "val/loss", "val/cosine"):
        assert np.isfinite(metrics[name]), name
    assert -1 <= metrics["val/cosine"] <= 1
    assert metrics["val/loss"] == pytest.approx(1 - metrics["val/cosine"], abs=1e-4)
    record = json.loads((distill_run / "task.json").read_text())
    assert record["task"]["kind"] == "distill" and record["task"]["settings"] == {"loss": "cosine"}
    assert record["head"]["settings"] == {"dims": 128, "pooling": "mean"}
    assert record["data"]["teacher"] == str(pretrained_run / "encoder")
    load_encoder(distill_run / "encoder")  # every tensor accounted for
    # It went on with the export's tokenizer, which the export it leaves carries.
    tokenizer = (distill_run / "encoder/tokenizer.json").read_text()
    assert tokenizer == (pretrained_run / "encoder/tokenizer.json").read_text()


def test_predict_writes_each_texts_vector_in_the_teachers_space(distill_run, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("the film was great\na dull story\n")
    assert predict(distill_run, str(texts), str(tmp_path / "out.jsonl")) == 2
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    vectors = torch.tensor([row["embedding"] for row in rows])
    assert vectors.shape == (2, 128) and torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)
