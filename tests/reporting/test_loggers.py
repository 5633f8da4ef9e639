"""Dashboards: each logger config composes and builds; W&B runs are one per job and grouped per sweep;
TensorBoard gets the HPARAMS tab; MLflow gets the config's tags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from encoderlab.cli.sweep_report import SWEEP_ENV, SweepReport
from encoderlab.reporting.loggers import TensorBoardLogger, mlflow_logger, mlflow_tags, wandb_logger
from tests.conftest import CONF_DIR


def compose_train(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides)


def test_many_means_every_logger():
    assert set(compose_train(["logger=many"]).logger) == {"csv", "tensorboard", "wandb", "mlflow"}


def test_wandb_group_is_the_sweep_id_else_the_task(monkeypatch):
    cfg = compose_train(["experiment=finetune_sst2", "logger=wandb", "tags=[a,b]"])
    monkeypatch.delenv(SWEEP_ENV, raising=False)
    assert cfg.logger.wandb.group == "finetune_sst2"
    assert list(cfg.logger.wandb.tags) == ["a", "b"]
    monkeypatch.setenv(SWEEP_ENV, "finetune_sst2/2025-01-01_00-00-00-000000")
    assert cfg.logger.wandb.group == "finetune_sst2/2025-01-01_00-00-00-000000"


def test_sweep_jobs_export_the_sweep_id_and_respect_the_users(monkeypatch, tmp_path):
    job = OmegaConf.create(
        {"task_name": "t", "hydra": {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(tmp_path / "sweepX")}}}
    )
    monkeypatch.delenv(SWEEP_ENV, raising=False)
    callback = SweepReport(fail_on_error=False)
    callback.on_job_start(job)
    assert os.environ[SWEEP_ENV] == "t/sweepX"
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "none")}}}))
    assert SWEEP_ENV not in os.environ  # not left behind for later runs in this process
    monkeypatch.setenv(SWEEP_ENV, "mine")
    callback.on_job_start(job)
    assert os.environ[SWEEP_ENV] == "mine"


def test_wandb_offline_one_run_per_job(tmp_path, monkeypatch):
    """Two jobs in one process (the basic launcher): two offline runs, both in the sweep's group."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    ids = []
    for job in range(2):
        logger = wandb_logger(
            save_dir=str(tmp_path / str(job)), project="encoderlab", group="t/sweep", tags=["x"]
        )
        logger.log_hyperparams({"optimizer": {"lr": 1e-4}, "seed": job})
        logger.log_metrics({"val/acc": 0.5 + job / 10}, step=1)
        assert logger.experiment.group == "t/sweep" and logger.experiment.offline
        ids.append(logger.version)
        SweepReport().on_job_end(OmegaConf.create({}), job_return=None)
        assert wandb.run is None
    assert ids[0] != ids[1]
    for job, run_id in enumerate(ids):
        runs = list((tmp_path / str(job) / "wandb").glob(f"offline-run-*-{run_id}"))
        assert len(runs) == 1 and list(runs[0].glob("run-*.wandb")), "syncable with `wandb sync`"


def test_wandb_goes_online_only_with_a_key(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.netrc from `wandb login`
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_logger(project="p")._offline
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not wandb_logger(project="p")._offline
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_logger(project="p")._offline


def test_tensorboard_writes_the_hparams_tab(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    logger = TensorBoardLogger(
        save_dir=str(tmp_path), name=None, version="", default_hp_metric=False, hparam_metrics=["val/acc"]
    )
    logger.log_hyperparams({"optimizer": {"lr": 1e-4, "betas": [0.9, 0.99]}, "encoder": "tiny"})
    logger.log_metrics({"val/acc": 0.75}, step=3)
    logger.finalize("success")
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {h.name for h in experiment.hparam_infos} >= {"optimizer/lr", "optimizer/betas", "encoder"}
    assert [m.name.tag for m in experiment.metric_infos] == ["val/acc"]
    assert [s.value for s in events.Scalars("val/acc")] == [0.75]
    assert (Path(tmp_path) / "hparams.yaml").is_file()


def test_mlflow_defaults_to_a_sqlite_store_and_takes_the_tags(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(SWEEP_ENV, "t/sweep")
    cfg = compose_train(["logger=mlflow", "tags=[baseline,sst2]", "paths.output_root=/runs"])
    assert cfg.logger.mlflow.tracking_uri == "sqlite:////runs/mlflow.db"
    section = cfg.logger.mlflow
    assert section._target_ == "encoderlab.reporting.loggers.mlflow_logger"
    assert mlflow_tags(section.tags, section.sweep) == {
        "baseline": "true",
        "sst2": "true",
        "sweep": "t/sweep",
    }
    monkeypatch.delenv(SWEEP_ENV)
    assert compose_train(["logger=mlflow"]).logger.mlflow.sweep is None


@pytest.mark.slow
def test_mlflow_logs_params_and_metrics_to_sqlite(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = mlflow_logger(tags=["a"], experiment_name="t", run_name="r", tracking_uri=uri)
    logger.log_hyperparams({"optimizer": {"lr": 1e-4}})
    logger.log_metrics({"val/acc": 0.5}, step=1)
    logger.finalize("success")
    run = MlflowClient(uri).get_run(logger.run_id)
    assert run.data.params["optimizer/lr"] == "0.0001" and run.data.metrics["val/acc"] == 0.5
    assert run.data.tags["a"] == "true"
