"""run/: the layout names every file once, task.json round-trips, and one Run reads what a run says."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from encoderlab.errors import UserError
from encoderlab.run.layout import RunDir
from encoderlab.run.read import find_runs, load_run, read_history
from encoderlab.run.task_record import TaskRecord, import_class
from encoderlab.tasks.base import EncoderTask


def test_layout_paths_and_what_makes_a_run(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.last_checkpoint == tmp_path / "r/checkpoints/last.ckpt"
    assert run.config == tmp_path / "r/.hydra/config.yaml" and run.curves == tmp_path / "r/csv/metrics.csv"
    assert not run.is_run() and not (tmp_path / "r").exists()  # constructing one touches nothing
    run.hydra.mkdir(parents=True)
    assert not run.is_run()
    run.config.write_text("seed: 1\n")
    assert run.is_run()
    names = [p.name for p in (run.record, run.metrics, run.task, run.label_map, run.mlm_head, run.log)]
    assert len(set(names)) == len(names)


def test_history_keeps_nan_and_curves_drop_it(tmp_path):
    run = RunDir(tmp_path)
    run.config.parent.mkdir()
    run.config.write_text("{}\n")
    run.curves.parent.mkdir()
    run.curves.write_text("epoch,step,train/loss,val/acc\n0,0,1.5,\n0,1,nan,\n0,1,,0.7\n")
    history = read_history(run.curves)
    assert len(history) == 3 and math.isnan(history[1]["train/loss"])
    loaded = load_run(tmp_path)
    assert loaded.curves() == {"train/loss": [(0.0, 1.5)], "val/acc": [(1.0, 0.7)]}
    assert math.isnan(loaded.series("train/loss")[-1][1])  # the doctor sees a divergence
    assert loaded.final("val/acc") == 0.7


def test_config_values_resolve_simple_interpolations(tmp_path):
    run = RunDir(tmp_path)
    run.hydra.mkdir()
    config = {
        "paths": {"data_dir": "/data"},
        "data": {"train_file": "${paths.data_dir}/sst2/train.tsv", "batch_size": "${seed}"},
        "seed": 7,
        "trainer": {"max_steps": "${oc.env:STEPS}"},
    }
    run.config.write_text(yaml.safe_dump(config))
    loaded = load_run(tmp_path)
    assert loaded.get("data.train_file") == "/data/sst2/train.tsv"
    assert loaded.get("data.batch_size") == 7  # a whole "${a}" keeps the value's type
    assert loaded.get("trainer.max_steps", "unknown") == "unknown"  # a resolver: not guessed
    (tmp_path / "csv").mkdir()
    run.logged_hparams.write_text(yaml.safe_dump({"trainer": {"max_steps": 40}}))
    assert load_run(tmp_path).get("trainer.max_steps") == 40  # what training resolved and logged


def test_not_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="not a run directory"):
        load_run(tmp_path)
    with pytest.raises(UserError, match="no such directory"):
        find_runs([tmp_path / "absent"])


def test_task_record_is_required_and_validated(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(UserError, match="task.json not found"):
        TaskRecord.read(run)
    run.task.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UserError, match="not a valid task record"):
        TaskRecord.read(run)
    run.task.write_text(
        json.dumps(
            {
                "format": "encoderlab-task",
                "task": {"class": "x.Y", "kind": "classify", "settings": {"label_names": ["neg", "pos"]}},
                "head": {},
                "encoder": {},
                "adapter": None,
                "data": {"targets": "CLASSES"},
            }
        )
    )
    record = TaskRecord.read(run)
    assert record.kind == "classify" and record.label_names == ["neg", "pos"]


def test_only_classes_of_the_declared_kind_are_accepted(tmp_path):
    assert import_class("encoderlab.tasks.regression.SequenceRegressionTask", EncoderTask, tmp_path)
    for path in ("os.system", "builtins.dict", "subprocess.Popen", "no_such_module.Task", "Task"):
        with pytest.raises(UserError, match="pass a run directory|cannot be imported"):
            import_class(path, EncoderTask, tmp_path)
