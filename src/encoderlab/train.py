"""``encoderlab-train``: seed → data → init → encoder + head → task → freeze → fit → test → record.

Every component comes from the composed Hydra config (``conf/train.yaml``); this file only wires them.
Returns the optimized metric so Hydra sweepers can use it.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from encoderlab.errors import UserError
from encoderlab.files import write_json
from encoderlab.models.heads import MaskedLMHead
from encoderlab.run_dirs import LAST_CHECKPOINT, register_resolvers, resume_config
from encoderlab.task_checks import check_optimized_metric, check_task_fits
from encoderlab.tasks.masked_lm import MaskedLMTask
from encoderlab.training.checkpoints import LastValidatedStep, save_last_checkpoint
from encoderlab.training.export import MLM_HEAD_FILE, export_encoder, save_mlm_head
from encoderlab.training.freeze import freeze
from encoderlab.training.redact import redact, redact_argv, redact_yaml_files
from encoderlab.training.run_loading import save_run_tokenizer
from encoderlab.training.run_record import RunRecord

log = logging.getLogger("encoderlab")
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
register_resolvers()


def build_task(cfg: DictConfig):
    """Data, encoder, head and task from the config; the data is prepared first (it fixes vocab and labels)."""
    init = instantiate(cfg.init)
    data_overrides = {"tokenizer": init.tokenizer_dir} if init.tokenizer_dir else {}
    datamodule = instantiate(cfg.data, **data_overrides)
    datamodule.prepare()
    encoder = init.build_encoder(instantiate(cfg.encoder), datamodule.vocab_size)
    head = instantiate(cfg.head)(encoder, **datamodule.head_kwargs)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    task_factory = instantiate(cfg.task)
    check_task_fits(getattr(task_factory, "func", task_factory), head, datamodule)
    task = task_factory(
        encoder=encoder,
        head=head,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        **datamodule.task_kwargs,
    )
    if isinstance(task, MaskedLMTask) != isinstance(head, MaskedLMHead):
        raise UserError(
            "task=pretrain needs head=mlm (and head=mlm needs task=pretrain) — fix the task/head pair"
        )
    check_optimized_metric(task, cfg.get("optimized_metric"))
    return datamodule, task


def _final_metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def _instantiate_loggers(cfg: DictConfig, record: RunRecord) -> list:
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        # A resumed run continues the same W&B run rather than starting a new one.
        same_run = (
            {"id": record.data["wandb_id"], "resume": "allow"}
            if name == "wandb" and record.data.get("wandb_id")
            else {}
        )
        loggers.append(instantiate(conf, **same_run))
    return loggers


def train(cfg: DictConfig, record: RunRecord, checkpoint: Path | None = None) -> dict[str, float]:
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    datamodule, task = build_task(cfg)
    trainable = freeze(task, instantiate(cfg.freeze))
    _, total = task.parameter_counts()
    log.info(
        "parameters: %s trainable / %s total (%.1f %%)",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )

    loggers = _instantiate_loggers(cfg, record)
    validated = LastValidatedStep()
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()] + [validated]
    if not cfg.trainer.get("enable_progress_bar", True):
        # Lightning refuses a progress-bar callback when bars are off; honour the trainer switch.
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    for logger in trainer.loggers:
        logger.log_hyperparams(redact(OmegaConf.to_container(cfg, resolve=True)))
        if type(logger).__name__ == "WandbLogger":
            record.data["wandb_id"] = logger.version

    started = time.perf_counter()
    # On resume Lightning restores weights, optimizer, scheduler and loop state; freezing was re-applied above.
    trainer.fit(task, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None)
    fit_seconds = time.perf_counter() - started
    metrics = _final_metrics(trainer)
    if not trainer.fast_dev_run:
        # Training that stops at max_steps mid-epoch skips the epoch-end validation: final metrics need one.
        if validated.step != trainer.global_step:
            trainer.validate(task, datamodule=datamodule, verbose=False)
            metrics.update(_final_metrics(trainer))
        save_last_checkpoint(trainer, run_dir / "checkpoints")
    if cfg.get("test") and datamodule.has_test:
        trainer.test(task, datamodule=datamodule, verbose=False)
        metrics.update(_final_metrics(trainer))
    metrics.update({"params/trainable": trainable, "params/total": total, "time/fit_seconds": fit_seconds})

    if trainer.is_global_zero and not trainer.fast_dev_run:
        if hasattr(datamodule, "save_label_map"):
            datamodule.save_label_map(run_dir / "label_map.json")
            save_run_tokenizer(datamodule.tokenizer_dir, run_dir)  # the run alone can tokenize for predict
        if isinstance(task, MaskedLMTask):
            # Stage 1's product: the encoder alone, plus the MLM head kept aside for prompt-style reuse.
            export_encoder(task.encoder, datamodule.tokenizer_dir, run_dir / "encoder")
            save_mlm_head(task.head, run_dir / MLM_HEAD_FILE)
            log.info("encoder exported to %s", run_dir / "encoder")
    write_json(run_dir / "metrics.json", dict(sorted(metrics.items())))
    return metrics


def run(cfg: DictConfig) -> float | None:
    """Train with a run record around it; returns ``cfg.optimized_metric`` for sweepers."""
    run_dir = Path(cfg.paths.output_dir)
    # Secrets typed into overrides: mask them in what Hydra saved and in the argv that loggers (W&B) record.
    redact_yaml_files(run_dir / ".hydra")
    sys.argv[:] = redact_argv(sys.argv)
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    checkpoint = None
    if cfg.get("resume"):
        cfg = resume_config(run_dir, overrides)
        checkpoint = run_dir / LAST_CHECKPOINT
        record = RunRecord.resume(run_dir, overrides)
    elif (run_dir / "run.json").exists():
        raise UserError(
            f"{run_dir} already holds a run — choose a new hydra.run.dir (it is never overwritten)"
        )
    else:
        record = RunRecord(run_dir, seed=cfg.seed, overrides=overrides)
    record.start()
    try:
        metrics = train(cfg, record, checkpoint)
    except BaseException as err:
        record.finish("failed", error=f"{type(err).__name__}: {err}".splitlines()[0])
        raise
    record.finish("completed", metrics=metrics)
    log.info("run directory: %s", run_dir)
    return metrics.get(cfg.optimized_metric)


def find_user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err``, if any (Hydra's instantiate wraps what a constructor raises)."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__ or err.__context__
    return None


def in_sweep() -> bool:
    """True inside a job of ``encoderlab-train -m ...`` (any launcher, any sweeper)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return run(cfg)
    except Exception as err:
        user_error = find_user_error(err)
        if in_sweep():
            # One failed job must not end the sweep: run.json records it ("failed" + the error line) and
            # the sweep report (encoderlab.sweep_report) lists it at the end. None = a failed Optuna trial.
            if user_error is None:
                log.exception("job failed: %s", f"{type(err).__name__}: {err}".splitlines()[0])
            else:
                log.error("error: %s", user_error)
            return None
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
