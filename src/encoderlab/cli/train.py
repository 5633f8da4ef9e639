"""``encoderlab-train``: compose → instantiate data, task, callbacks, loggers, trainer → fit → test → the
components save what they leave → record.

Every component comes from the composed Hydra config (``conf/train.yaml``); this file only wires them and
never asks what kind a task is. Returns the optimized metric so Hydra sweepers can use it.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from encoderlab.adapt.freeze import freeze_for_optimizer
from encoderlab.cli.components import build_callbacks, build_loggers, build_task
from encoderlab.cli.config_dirs import CONF_DIR
from encoderlab.cli.errors import find_user_error, run_reporting_errors
from encoderlab.cli.resume import open_run, register_resolvers
from encoderlab.files import write_json
from encoderlab.run.layout import RunDir
from encoderlab.run.record import RunRecord
from encoderlab.run.redact import redact
from encoderlab.run.task_record import TaskRecord
from encoderlab.training.checkpoints import LastValidatedStep, check_resumable, save_last_checkpoint
from encoderlab.training.distributed import reporting_lost_peers
from encoderlab.training.kernel_calibration import CUSTOM
from encoderlab.training.kernel_choice import KernelChoice
from encoderlab.training.summaries import callback_summaries
from encoderlab.training.trained_parameters import TrainedParameters

log = logging.getLogger("encoderlab")
register_resolvers()


def _final_metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def train(cfg: DictConfig, record: RunRecord, checkpoint: Path | None = None) -> dict[str, float]:
    pl.seed_everything(cfg.seed, workers=True)
    run = RunDir(cfg.paths.output_dir)
    init, policy = instantiate(cfg.init), instantiate(cfg.freeze)
    record.note(init=init.describe(), freeze=policy.describe())
    datamodule, task = build_task(cfg, init)
    trainable = freeze_for_optimizer(task, policy)
    _, total = task.parameter_counts()
    log.info(
        "parameters: %s trainable / %s total (%.1f %%)",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )

    validated, trained = LastValidatedStep(), TrainedParameters()
    # Decides at fit start, on the device and shapes of the run. A config from before kernels= existed (the
    # resume of an older run) trained with the custom kernels: keep them.
    kernels = instantiate(cfg.kernels) if cfg.get("kernels") else KernelChoice(**CUSTOM)
    callbacks = build_callbacks(cfg, validated, trained, kernels, *policy.callbacks())
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=build_loggers(cfg) or False, callbacks=callbacks)
    for logger in trainer.loggers:
        logger.log_hyperparams(redact(OmegaConf.to_container(cfg, resolve=True)))

    if checkpoint is not None:
        check_resumable(task, checkpoint)
    started = time.perf_counter()
    with reporting_lost_peers(trainer, run):  # a distributed run whose other process died: one line
        # On resume Lightning restores weights, optimizer, scheduler and loop state; freezing was re-applied.
        trainer.fit(task, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None)
        fit_seconds = time.perf_counter() - started
        record.note(kernels=kernels.describe())
        metrics = _final_metrics(trainer)
        if not trainer.fast_dev_run:
            # Training that stops at max_steps mid-epoch skips the epoch-end validation: final metrics need one.
            if validated.step != trainer.global_step:
                trainer.validate(task, datamodule=datamodule, verbose=False)
                metrics.update(_final_metrics(trainer))
            save_last_checkpoint(trainer, run.checkpoints)
        if cfg.get("test") and datamodule.has_test:
            trainer.test(task, datamodule=datamodule, verbose=False)
            metrics.update(_final_metrics(trainer))
    metrics.update(
        {"params/trainable": trained.count, "params/total": total, "time/fit_seconds": fit_seconds}
    )
    metrics.update(callback_summaries(trainer))  # e.g. the steps and tokens a budget bought
    if not trainer.is_global_zero:
        return metrics  # in a distributed run only rank 0 writes the run's files

    if not trainer.fast_dev_run:
        datamodule.save_artifacts(run)  # the label map and the tokenizer: the run alone can predict
        task.save_artifacts(run, datamodule)  # e.g. pre-training: the encoder export and the MLM head
        TaskRecord.write(run, task, datamodule)  # what the run trained, for every reader of the run
    write_json(run.metrics, dict(sorted(metrics.items())))
    if not cfg.get("keep_checkpoint", True) and not trainer.fast_dev_run:
        shutil.rmtree(run.checkpoints, ignore_errors=True)  # after every artifact was written from it
    return metrics


def run(cfg: DictConfig) -> float | None:
    """Train with a run record around it; returns ``cfg.optimized_metric`` for sweepers."""
    cfg, record, checkpoint, lock = open_run(cfg)
    with lock or nullcontext():  # no other process writes the run until its record is final
        record.start()
        try:
            metrics = train(cfg, record, checkpoint)
        except BaseException as err:
            record.finish("failed", error=f"{type(err).__name__}: {err}".splitlines()[0])
            raise
        record.finish("completed", metrics=metrics)
    log.info("run directory: %s", cfg.paths.output_dir)
    return metrics.get(cfg.optimized_metric)


def in_sweep() -> bool:
    """True inside a job of ``encoderlab-train -m ...`` (any launcher, any sweeper)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def app(cfg: DictConfig) -> float | None:
    try:
        return run(cfg)
    except Exception as err:
        if not in_sweep():
            raise  # main() reports it in one line
        # One failed job must not end the sweep: run.json records it ("failed" + the error line) and
        # the sweep report (encoderlab.cli.sweep_report) lists it at the end. None = a failed Optuna trial.
        user_error = find_user_error(err)
        if user_error is None:
            log.exception("job failed: %s", f"{type(err).__name__}: {err}".splitlines()[0])
        else:
            log.error("error: %s", user_error)
        return None


def main() -> None:
    """``encoderlab-train``: the Hydra app, every failure reported as one ``error: ...`` line."""
    run_reporting_errors(app)


if __name__ == "__main__":
    main()
