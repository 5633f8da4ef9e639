"""Cells read back from a suite's job directories: values by seed, failures with their reason, pending jobs."""

from __future__ import annotations

import json
import statistics

import yaml

from encoderlab.run.layout import RunDir
from encoderlab.suite.results import COMPLETED, FAILED, PARTIAL, PENDING, collect
from encoderlab.suite.sources import Source
from encoderlab.suite.spec import SuiteTask

SST2 = SuiteTask("sst2", "SST-2", "finetune_sst2", (), ("val/acc",))
MRPC = SuiteTask("mrpc", "MRPC", "finetune_mrpc", (), ("val/f1", "val/acc"))
SOURCES = [Source("a", "minilm"), Source("b", "scratch")]


def job(suite, num, task, source, seed, status="completed", metrics=None, error=None):
    """A job directory as encoderlab-train leaves it in a sweep: its overrides, run record and metrics."""
    run = RunDir(suite / str(num))
    run.hydra.mkdir(parents=True)
    run.overrides.write_text(
        yaml.safe_dump([f"+suite_task={task}", f"+suite_source={source}", f"seed={seed}"])
    )
    record = {"status": status, "seed": seed, "started": "2025-01-01T00:00:00+00:00"}
    record.update(ended="2025-01-01T00:00:30+00:00", error=error)
    run.record.write_text(json.dumps(record))
    if metrics is not None:
        run.metrics.write_text(json.dumps(metrics))


def test_cells_from_job_directories(tmp_path):
    accs = {1: 0.81, 2: 0.74, 3: 0.90}
    for n, (seed, acc) in enumerate(accs.items()):
        job(tmp_path, n, "sst2", "a", seed, metrics={"val/acc": acc, "val/loss": 0.4})
    job(tmp_path, 3, "mrpc", "a", 1, metrics={"val/f1": 0.8, "val/acc": 0.7})
    job(tmp_path, 4, "mrpc", "a", 2, status="failed", error="UserError: bad thing — fix it")
    job(tmp_path, 5, "mrpc", "a", 3, metrics={"val/acc": 0.7})  # completed without the cell's f1
    job(tmp_path, 6, "sst2", "b", 1, status="failed", error="RuntimeError: nan")
    job(tmp_path, 7, "sst2", "b", 2, status="running")  # killed: nothing but a running record
    (tmp_path / "conf").mkdir()  # the suite's generated options sit beside the jobs
    cells = {(c.source, c.task): c for c in collect(tmp_path, SOURCES, [SST2, MRPC], (1, 2, 3))}

    sst2 = cells["a", "sst2"]
    assert sst2.status == COMPLETED and sst2.values["val/acc"] == accs
    assert sst2.median("val/acc") == statistics.median(accs.values()) == 0.81
    assert sst2.wall_seconds == 90 and sst2.reason() is None

    mrpc = cells["a", "mrpc"]
    assert mrpc.status == PARTIAL and mrpc.done_seeds == [1]
    assert mrpc.score() == statistics.fmean([0.8, 0.7])  # the mean of the task's metrics
    assert mrpc.errors[2] == "UserError: bad thing — fix it"
    assert "logged no val/f1" in mrpc.errors[3] and "val/acc" in mrpc.errors[3]

    failed = cells["b", "sst2"]
    assert failed.status == FAILED and failed.reason() == "seed 1: RuntimeError: nan"
    assert sorted(failed.run_dirs) == [1, 2]  # the killed one is found, but counts as not run
    assert cells["b", "mrpc"].status == PENDING and cells["b", "mrpc"].medians() is None
    as_json = json.loads(json.dumps(mrpc.to_dict()))
    assert as_json["seeds"]["1"]["val/f1"] == 0.8 and as_json["seeds"]["2"]["error"].startswith("UserError")
