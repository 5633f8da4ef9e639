"""``encoderlab-doctor``: each diagnosis on a hand-made run directory (no training needed)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import yaml

from encoderlab.cli.doctor import diagnose, main
from encoderlab.data import save_tokenizer
from encoderlab.data.tokenizer import train_wordpiece
from tests.conftest import labelled_rows

TASK = "encoderlab.tasks.classification.SequenceClassificationTask"
SCRATCH, NO_FREEZE = {"source": "scratch"}, {"policy": "none"}


def write_run(
    path,
    *,
    labels=("0", "1"),
    metrics=None,
    history=None,
    config=None,
    record=None,
    train_rows=None,
    init=SCRATCH,
    freeze=NO_FREEZE,
):
    """A run directory as training leaves it: .hydra/config.yaml, run.json (with where the encoder came from
    and what was frozen), task.json (what it trained), metrics.json, label_map.json, csv/metrics.csv."""
    path.mkdir(parents=True)
    cfg = {
        "paths": {"data_dir": str(path / "data")},
        "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 5e-5},
        "trainer": {"max_steps": -1, "max_epochs": 3},
        "data": {
            "train_file": "${paths.data_dir}/train.tsv" if train_rows is not None else None,
            "text_column": "text",
            "label_column": "label",
            "tokenizer": None,
            "train_limit": None,
        },
    }
    for section, values in (config or {}).items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    (path / ".hydra").mkdir()
    (path / ".hydra/config.yaml").write_text(yaml.safe_dump(cfg))
    facts = {"status": "completed", "started": "t0", "init": init, "freeze": freeze, **(record or {})}
    (path / "run.json").write_text(json.dumps(facts))
    task = {
        "class": TASK,
        "kind": "classify",
        "settings": {"num_labels": len(labels or ()), "label_names": labels and list(labels)},
    }
    (path / "task.json").write_text(
        json.dumps(
            {
                "format": "encoderlab-task",
                "task": task,
                "head": {},
                "encoder": {},
                "data": {"targets": "CLASSES"},
            }
        )
    )
    (path / "metrics.json").write_text(json.dumps(metrics or {}))
    if labels is not None:
        (path / "label_map.json").write_text(
            json.dumps({"label_names": list(labels), "label_to_id": {n: i for i, n in enumerate(labels)}})
        )
    if history:
        columns = ["epoch", "step", *sorted({k for row in history for k in row} - {"epoch", "step"})]
        (path / "csv").mkdir()
        with open(path / "csv/metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for i, row in enumerate(history):
                writer.writerow({"epoch": 0, "step": (i + 1) * 10, **row})
    if train_rows is not None:
        (path / "data").mkdir()
        (path / "data/train.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in train_rows))
    return path


def losses(*values, name="train/loss"):
    return [{name: v} for v in values]


HEALTHY = {
    "metrics": {
        "train/loss": 0.2,
        "train/acc": 0.93,
        "val/loss": 0.28,
        "val/acc": 0.9,
        "val/f1_macro": 0.9,
        "params/trainable": 1000,
        "params/total": 1000,
    },
    "history": losses(0.69, 0.6, 0.45, 0.35, 0.3, 0.25, 0.22, 0.2)
    + [{"val/loss": 0.4}, {"val/loss": 0.3}, {"val/loss": 0.28}],
}


def checks(findings, severity=None) -> set[str]:
    return {f.check for f in findings if severity is None or f.severity == severity}


def only(findings, check):
    found = [f for f in findings if f.check == check]
    assert found, findings
    return found[0]


def test_healthy_run_has_no_findings(tmp_path, capsys):
    run = write_run(tmp_path / "run", train_rows=labelled_rows(40, 1), **HEALTHY)
    assert diagnose(run) == []
    assert main([str(run)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_not_a_run_exits_2_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert main([str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") and "not a run directory" in line for line in err)


def test_failed_and_unfinished_runs(tmp_path):
    failed = write_run(tmp_path / "a", record={"status": "failed", "error": "ValueError: boom"})
    assert only(diagnose(failed), "status").severity == "error"
    running = write_run(tmp_path / "b", record={"status": "running"})
    assert "never finished" in only(diagnose(running), "status").what


def test_nan_loss_is_divergence_and_names_the_learning_rate(tmp_path):
    run = write_run(
        tmp_path / "run",
        config={"optimizer": {"lr": 0.01}},
        history=losses(0.69, 0.9, 4.0, math.nan),
        metrics={"train/loss": math.nan},
    )
    finding = only(diagnose(run), "divergence")
    assert finding.severity == "error" and "nan" in finding.what
    assert "optimizer.lr=0.01" in finding.fix


def test_run_stopped_on_a_nan_loss_is_divergence(tmp_path):
    error = (
        "TrainingDiverged: training loss became NaN at step 7 — lower optimizer.lr (now 0.5) or keep warmup; "
        "the last good checkpoint is kept at run/checkpoints/last.ckpt"
    )
    run = write_run(
        tmp_path / "run", config={"optimizer": {"lr": 0.5}}, record={"status": "failed", "error": error}
    )
    finding = only(diagnose(run), "divergence")
    assert finding.severity == "error" and finding.what == "training loss became NaN at step 7"
    assert "optimizer.lr=0.5" in finding.fix


def test_rising_loss_is_divergence(tmp_path):
    run = write_run(tmp_path / "run", history=losses(0.7, 0.68, 0.8, 0.95, 1.2, 1.5, 1.9, 2.4))
    finding = only(diagnose(run), "divergence")
    assert "rose" in finding.what and "lower the learning rate" in finding.fix


def test_loss_at_chance_level(tmp_path):
    rows = labelled_rows(60, 2)
    run = write_run(
        tmp_path / "run",
        config={"optimizer": {"lr": 1e-6}, "trainer": {"max_steps": 50}},
        train_rows=rows,
        history=losses(0.695, 0.694, 0.693, 0.693),
        metrics={"train/loss": 0.693, "val/loss": 0.6932, "val/acc": 0.5, "val/f1_macro": 0.33},
    )
    findings = diagnose(run)
    finding = only(findings, "chance_level")
    assert "ln 2" in finding.what
    assert "optimizer.lr=1e-06" in finding.fix and "trainer.max_steps=50" in finding.fix
    assert "data.label_column" in finding.fix and "init=pretrained" in finding.fix
    assert "divergence" not in checks(findings)


def test_frozen_encoder_and_head_not_learning(tmp_path):
    run = write_run(
        tmp_path / "run",
        labels=("a", "b", "c"),
        freeze={"policy": "encoder"},
        init={"source": "export", "path": "/models/enc"},
        config={"optimizer": {"lr": 2e-5}},
        history=losses(1.10, 1.099, 1.098, 1.098, 1.097, 1.097),
        metrics={"params/trainable": 387, "params/total": 500_000, "val/acc": 0.34, "val/f1_macro": 0.3},
    )
    finding = only(diagnose(run), "frozen_head")
    assert finding.severity == "warning" and "not learning" in finding.what
    assert "optimizer.lr=1e-3" in finding.fix and "optimizer.lr=2e-05 now" in finding.fix
    assert "freeze=bottom_k" in finding.fix


def test_frozen_random_encoder_and_nothing_trainable(tmp_path):
    run = write_run(
        tmp_path / "a",
        freeze={"policy": "encoder"},
        metrics={"params/trainable": 258, "params/total": 400_000},
    )
    assert "init=scratch" in only(diagnose(run), "frozen_head").what
    run = write_run(tmp_path / "b", metrics={"params/trainable": 0, "params/total": 400_000})
    assert only(diagnose(run), "frozen_head").severity == "error"


def test_label_imbalance_from_the_training_data(tmp_path):
    rows = [(t, "common") for t, _ in labelled_rows(95, 3)] + [(t, "rare") for t, _ in labelled_rows(5, 4)]
    run = write_run(
        tmp_path / "run",
        labels=("common", "rare"),
        train_rows=rows,
        metrics={**HEALTHY["metrics"], "val/acc": 0.95, "val/f1_macro": 0.49},
    )
    found = [f for f in diagnose(run) if f.check == "label_imbalance"]
    assert len(found) == 2
    assert "'common' has 95 examples (95%)" in found[0].what and "19× fewer" in found[0].what
    assert "optimized_metric=val/f1_macro" in found[0].fix
    assert "mostly predicts the common labels" in found[1].what


def test_label_counts_respect_train_limit(tmp_path):
    rows = [(t, "common") for t, _ in labelled_rows(20, 3)] + [(t, "rare") for t, _ in labelled_rows(20, 4)]
    run = write_run(tmp_path / "run", labels=("common", "rare"), train_rows=rows, **HEALTHY)
    assert "label_imbalance" not in checks(diagnose(run))
    run = write_run(
        tmp_path / "limited",
        labels=("common", "rare"),
        train_rows=rows,
        config={"data": {"train_limit": 20}},
        **HEALTHY,
    )
    assert "label_imbalance" in checks(diagnose(run))  # the first 20 rows hold one label only


def test_tokenizer_error_recorded_by_training(tmp_path):
    error = "UserError: tokenizer vocabulary has 400 tokens but the encoder in /x has 30522 embeddings"
    run = write_run(tmp_path / "run", record={"status": "failed", "error": error})
    finding = only(diagnose(run), "tokenizer")
    assert finding.severity == "error" and "30522" in finding.what and "data.tokenizer" in finding.fix


@pytest.fixture(scope="module")
def english_tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    save_tokenizer(
        train_wordpiece([t for t, _ in labelled_rows(200, 5)], vocab_size=200, min_frequency=1), directory
    )
    return directory


def test_tokenizer_does_not_fit_the_checkpoint(tmp_path, english_tokenizer):
    run = write_run(tmp_path / "run", config={"data": {"tokenizer": str(english_tokenizer)}}, **HEALTHY)
    (run / "checkpoints").mkdir()
    state = {
        "encoder.embeddings.word_embeddings.weight": torch.zeros(30522, 4),
        "head.out.weight": torch.zeros(2, 4),
    }
    torch.save({"state_dict": state}, run / "checkpoints/last.ckpt")
    finding = only(diagnose(run), "tokenizer")
    assert finding.severity == "error" and "30522 rows" in finding.what


def test_tokenizer_that_does_not_cover_the_data(tmp_path, english_tokenizer):
    greek = [("η ταινία ήταν υπέροχη και συγκινητική", "1"), ("βαρετή και κακή ιστορία", "0")] * 10
    run = write_run(
        tmp_path / "run", train_rows=greek, config={"data": {"tokenizer": str(english_tokenizer)}}, **HEALTHY
    )
    finding = only(diagnose(run), "tokenizer")
    assert finding.severity == "warning" and "[UNK]" in finding.what
    # The same tokenizer on the text it was trained for: no finding.
    run = write_run(
        tmp_path / "ok",
        train_rows=labelled_rows(40, 6),
        config={"data": {"tokenizer": str(english_tokenizer)}},
        **HEALTHY,
    )
    assert "tokenizer" not in checks(diagnose(run))


def test_large_train_val_gap(tmp_path):
    run = write_run(
        tmp_path / "run",
        history=losses(0.69, 0.4, 0.2, 0.1, 0.05, 0.02)
        + [{"val/loss": 0.5}, {"val/loss": 0.45}, {"val/loss": 0.7}],
        metrics={"train/acc": 0.99, "val/acc": 0.74, "val/f1_macro": 0.73, "train/loss": 0.02},
    )
    found = [f for f in diagnose(run) if f.check == "train_val_gap"]
    assert len(found) == 2
    assert "0.990 vs val/acc 0.740" in found[0].what and "0.45" in found[1].what
    assert "checkpoints/best.ckpt" in found[0].fix and "head.dropout" in found[0].fix


def test_cli_prints_findings_with_rich_and_as_json(tmp_path, capsys):
    run = write_run(tmp_path / "run", history=losses(0.7, 0.68, 0.8, 0.95, 1.2, 1.5, 1.9, 2.4))
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "divergence" in out and "1 error" in out
    assert main([str(run), "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert findings[0]["check"] == "divergence" and set(findings[0]) == {"check", "severity", "what", "fix"}
