"""``encoderlab-train``: seed → data → init → encoder + head → task → freeze → fit → test → record.

Every component comes from the composed Hydra config (``conf/train.yaml``); this file only wires them.
Returns the optimized metric so Hydra sweepers can use it.
"""

from __future__ import annotations

import logging
import sys
import time
import typing
from pathlib import Path
from types import UnionType

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from encoderlab.adapt.adapters import ADAPTER_DIR, has_adapters, merged_copy, save_adapter
from encoderlab.adapt.freeze import FreezeGradual, freeze
from encoderlab.adapt.unfreezing import GradualUnfreezing
from encoderlab.cli.errors import find_user_error, run_reporting_errors
from encoderlab.cli.resume import (
    LAST_CHECKPOINT,
    forget_refused_resume,
    is_primary_process,
    register_resolvers,
    resume_config,
)
from encoderlab.data.cloze import ClozeDataModule
from encoderlab.errors import UserError
from encoderlab.files import write_json
from encoderlab.formats.export import MLM_HEAD_FILE, export_encoder, save_mlm_head
from encoderlab.models.heads import MaskedLMHead
from encoderlab.run.rebuild import save_run_tokenizer
from encoderlab.run.record import RunRecord
from encoderlab.run.redact import redact, redact_argv, redact_yaml_files
from encoderlab.tasks.cloze import ClozeTask
from encoderlab.tasks.masked_lm import MaskedLMTask
from encoderlab.tasks.pairing import check_optimized_metric, check_task_fits
from encoderlab.training.checkpoints import LastValidatedStep, check_resumable, save_last_checkpoint

log = logging.getLogger("encoderlab")
CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")
register_resolvers()


def builds(factory, kind: type | UnionType) -> bool:
    """Whether a partial from the config builds a ``kind``: a class, or a function annotated to return one."""
    func = getattr(factory, "func", factory)
    if isinstance(func, type):
        return issubclass(func, kind)
    returned = typing.get_type_hints(func).get("return")
    return isinstance(returned, type) and issubclass(returned, kind)


def build_task(cfg: DictConfig):
    """Data, encoder, head and task from the config; the data is prepared first (it fixes vocab and labels)."""
    init = instantiate(cfg.init)
    data_overrides = {"tokenizer": init.tokenizer_dir} if init.tokenizer_dir else {}
    datamodule = instantiate(cfg.data, **data_overrides)
    datamodule.prepare()
    encoder = init.build_encoder(instantiate(cfg.encoder), datamodule.vocab_size)
    positions = encoder.config.max_positions
    if getattr(datamodule, "max_seq_len", 0) > positions:
        raise UserError(
            f"data.max_seq_len={datamodule.max_seq_len} exceeds the encoder's {positions} positions — "
            f"lower data.max_seq_len to at most {positions}"
        )
    head_factory, task_factory = instantiate(cfg.head), instantiate(cfg.task)
    # Checked before building: an MLM head cannot take a classifier's arguments, nor the reverse.
    if builds(task_factory, MaskedLMTask | ClozeTask) != builds(head_factory, MaskedLMHead):
        raise UserError(
            "task=pretrain needs head=mlm, task=cloze head=mlm_pretrained (and an MLM head needs one of "
            "them) — fix the task/head pair"
        )
    if isinstance(datamodule, ClozeDataModule) != builds(task_factory, ClozeTask):
        raise UserError("task=cloze and cloze data (method=cloze: data with prompt.template) go together")
    head = head_factory(encoder, **datamodule.head_kwargs)
    if cfg.get("adapter"):
        instantiate(cfg.adapter).apply(encoder)  # in place: LoRA wraps the targeted projections
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    check_task_fits(getattr(task_factory, "func", task_factory), head, datamodule)
    task = task_factory(
        encoder=encoder,
        head=head,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        **datamodule.task_kwargs,
    )
    if cfg.get("optimizer_groups"):
        task.lr_rule = instantiate(cfg.optimizer_groups)
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
    policy = instantiate(cfg.freeze)
    trainable = freeze(task, policy)
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
    if isinstance(policy, FreezeGradual):
        callbacks.append(GradualUnfreezing(policy))
    if not cfg.trainer.get("enable_progress_bar", True):
        # Lightning refuses a progress-bar callback when bars are off; honour the trainer switch.
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    for logger in trainer.loggers:
        logger.log_hyperparams(redact(OmegaConf.to_container(cfg, resolve=True)))
        if type(logger).__name__ == "WandbLogger":
            record.data["wandb_id"] = logger.version

    if checkpoint is not None:
        check_resumable(task, checkpoint)
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
    # A run that takes no optimizer step (zero-shot: trainer.max_steps=0) trains nothing.
    trained = trainable if trainer.max_steps != 0 else 0
    metrics.update({"params/trainable": trained, "params/total": total, "time/fit_seconds": fit_seconds})
    if not trainer.is_global_zero:
        return metrics  # in a distributed run only rank 0 writes the run's files

    if not trainer.fast_dev_run:
        if hasattr(datamodule, "save_label_map"):
            datamodule.save_label_map(run_dir / "label_map.json")
            save_run_tokenizer(datamodule.tokenizer_dir, run_dir)  # the run alone can tokenize for predict
        if has_adapters(task.encoder):
            save_adapter(task, run_dir / ADAPTER_DIR)  # LoRA tensors + head: the run's small artifact
            if cfg.adapter.get("merge_on_export") and not isinstance(task, MaskedLMTask):
                export_encoder(merged_copy(task.encoder), datamodule.tokenizer_dir, run_dir / "encoder")
        if isinstance(task, MaskedLMTask):
            # Stage 1's product: the encoder alone, plus the MLM head kept aside for prompt-style reuse.
            export_encoder(merged_copy(task.encoder), datamodule.tokenizer_dir, run_dir / "encoder")
            save_mlm_head(task.head, run_dir / MLM_HEAD_FILE)
            log.info("encoder exported to %s", run_dir / "encoder")
    write_json(run_dir / "metrics.json", dict(sorted(metrics.items())))
    return metrics


def run(cfg: DictConfig) -> float | None:
    """Train with a run record around it; returns ``cfg.optimized_metric`` for sweepers."""
    run_dir = Path(cfg.paths.output_dir)
    primary = is_primary_process()  # the other processes of a distributed run share rank 0's directory
    # Secrets typed into overrides: mask them in what Hydra saved and in the argv that loggers (W&B) record.
    if primary:
        redact_yaml_files(run_dir / ".hydra")
    sys.argv[:] = redact_argv(sys.argv)
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    checkpoint = None
    if cfg.get("resume"):
        try:
            cfg = resume_config(run_dir, overrides)
        except UserError:
            forget_refused_resume(
                run_dir, HydraConfig.get().output_subdir if HydraConfig.initialized() else None
            )
            raise
        checkpoint = run_dir / LAST_CHECKPOINT
        record = RunRecord.resume(run_dir, overrides, write=primary)
    elif primary and (run_dir / "run.json").exists():
        raise UserError(
            f"{run_dir} already holds a run — choose a new hydra.run.dir (it is never overwritten)"
        )
    else:
        record = RunRecord(run_dir, seed=cfg.seed, overrides=overrides, write=primary)
    record.start()
    try:
        metrics = train(cfg, record, checkpoint)
    except BaseException as err:
        record.finish("failed", error=f"{type(err).__name__}: {err}".splitlines()[0])
        raise
    record.finish("completed", metrics=metrics)
    log.info("run directory: %s", run_dir)
    return metrics.get(cfg.optimized_metric)


def in_sweep() -> bool:
    """True inside a job of ``encoderlab-train -m ...`` (any launcher, any sweeper)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
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
