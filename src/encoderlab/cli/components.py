"""The components of a training run, instantiated from the composed config (``_target_`` by ``_target_``).

The data is prepared first (it fixes the vocabulary and the labels), then the encoder from its init source,
the head and the task. Whether they go together is read from what each declares
(:mod:`encoderlab.tasks.pairing`); nothing here knows a task, head or data set by name.
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ProgressBar

from encoderlab.adapt.adapters import NoAdapter
from encoderlab.tasks.pairing import build_head, check_data_fits, check_optimized_metric, task_class
from encoderlab.validate import at_most, check


def build_task(cfg: DictConfig, init=None):
    """(datamodule, task) from the config; ``init`` (the ``init/`` source) is instantiated when not given."""
    init = instantiate(cfg.init) if init is None else init
    data_overrides = {"tokenizer": init.tokenizer_dir} if init.tokenizer_dir else {}
    datamodule = instantiate(cfg.data, **data_overrides)
    datamodule.prepare()
    encoder = init.build_encoder(instantiate(cfg.encoder), datamodule.vocab_size)
    positions = encoder.config.max_sequence_length
    check(
        "data.max_seq_len", datamodule.max_seq_len, at_most(positions, f"the encoder's {positions} positions")
    )
    task_factory = instantiate(cfg.task)
    declared = task_class(task_factory)
    if declared is not None:
        check_data_fits(declared, datamodule)
    head = build_head(instantiate(cfg.head), encoder, declared, datamodule.head_kwargs)
    adapter = instantiate(cfg.adapter) if cfg.get("adapter") else NoAdapter()
    adapter.apply(encoder)  # in place: LoRA wraps the targeted projections
    task = task_factory(
        encoder=encoder,
        head=head,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        **datamodule.task_kwargs,
    )
    task.adapter = adapter
    if cfg.get("optimizer_groups"):
        task.lr_rule = instantiate(cfg.optimizer_groups)
    check_optimized_metric(task, cfg.get("optimized_metric"))
    return datamodule, task


def build_callbacks(cfg: DictConfig, *extra) -> list:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()] + [*extra]
    if cfg.get("budget"):
        callbacks.append(instantiate(cfg.budget))
    if not cfg.trainer.get("enable_progress_bar", True):
        # Lightning refuses a progress-bar callback when bars are off; honour the trainer switch.
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(conf) for conf in (cfg.get("logger") or {}).values()]
