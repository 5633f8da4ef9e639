"""Small additions to Lightning's loggers, built from ``conf/logger/*`` through ``_target_``.

- ``TensorBoardLogger``: also fills TensorBoard's HPARAMS tab (the composed config against the metrics
  named in ``hparam_metrics``, whose values TensorBoard reads from the logged scalars).
- ``wandb_logger``: online when an API key is available (``WANDB_API_KEY``, ``wandb login``), offline
  otherwise; an offline run is uploaded later with ``wandb sync <run dir>/wandb/offline-run-*``. A run
  directory that already holds a W&B run (a resumed training run) continues that W&B run.
- ``mlflow_logger``: the config's ``tags`` list becomes MLflow tags; the sweep id becomes tag ``sweep``.

Each first checks that its package (an optional extra, ``encoderlab[loggers]``) is installed.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
from pytorch_lightning import loggers
from pytorch_lightning.utilities import rank_zero_only

from encoderlab.extras import require


class TensorBoardLogger(loggers.TensorBoardLogger):
    def __init__(self, *args: Any, hparam_metrics: Sequence[str] = (), **kwargs: Any) -> None:
        require("tensorboard", for_="logger=tensorboard")
        super().__init__(*args, **kwargs)
        self.hparam_metrics = [str(m) for m in hparam_metrics]

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, **kwargs: Any) -> None:
        super().log_hyperparams(params, metrics, **kwargs)
        if metrics is not None or not self.hparam_metrics:
            return  # Lightning wrote the HPARAMS summary itself
        from torch.utils.tensorboard.summary import hparams

        flat = self._sanitize_params(_flatten_dict(_convert_params(params)))
        # The values here only declare the metrics; the tab shows the last value logged under each name.
        experiment, start, end = hparams(flat, dict.fromkeys(self.hparam_metrics, 0.0))
        writer = self.experiment._get_file_writer()
        for summary in (experiment, start, end):
            writer.add_summary(summary)


def wandb_api_key_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def previous_wandb_run(save_dir: str | Path | None) -> str | None:
    """The id of the latest W&B run kept in ``save_dir`` (W&B names its run folders ``run-<time>-<id>`` and
    ``offline-run-<time>-<id>``), or None."""
    runs = sorted(Path(save_dir or ".").glob("wandb/*run-*-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1].name.rsplit("-", 1)[-1] if save_dir and runs else None


def wandb_logger(offline: bool | None = None, **kwargs: Any) -> loggers.WandbLogger:
    """Lightning's WandbLogger; ``offline=None`` picks online only when there is a key to upload with.

    ``WANDB_MODE`` (``offline``, ``online``, ``disabled``) still wins, as wandb reads it itself. When
    ``save_dir`` (the run directory) already holds a W&B run, the logger continues it: a resumed training
    run stays one W&B run.
    """
    require("wandb", for_="logger=wandb")
    if offline is None:
        mode = os.environ.get("WANDB_MODE", "")
        offline = mode != "online" and not (mode != "offline" and wandb_api_key_available())
    previous = previous_wandb_run(kwargs.get("save_dir"))
    if previous and not kwargs.get("id"):
        kwargs.update(id=previous, resume="allow")
    return loggers.WandbLogger(offline=offline, **kwargs)


def mlflow_tags(tags: Sequence[str] | Mapping[str, Any] | None, sweep: str | None = None) -> dict[str, str]:
    """The config's ``tags`` (a list, or a mapping) as MLflow's key → value tags, plus ``sweep``."""
    if isinstance(tags, Mapping):
        tag_map = {str(k): str(v) for k, v in tags.items()}
    else:
        tag_map = {str(t): "true" for t in tags or []}
    if sweep:
        tag_map["sweep"] = sweep
    return tag_map


def mlflow_logger(
    tags: Sequence[str] | Mapping[str, Any] | None = None, sweep: str | None = None, **kwargs: Any
) -> loggers.MLFlowLogger:
    require("mlflow", for_="logger=mlflow")
    return loggers.MLFlowLogger(tags=mlflow_tags(tags, sweep) or None, **kwargs)
