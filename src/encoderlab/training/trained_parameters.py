"""How many parameters a run actually trained: those that reached an optimizer step with a gradient.

The freeze policy's count at step 0 is not that: a gradual schedule adds layer groups later, and a run
with no optimizer step (``trainer.max_steps=0``, zero-shot) trains nothing. This callback looks at every
optimizer step instead and keeps what it saw in the checkpoint, so on resume ``count`` covers the whole run,
the steps before the restart included (from a checkpoint that lacks this state: the steps since). A head
fitted outside the optimizer (a logistic regression on sentence vectors, ``method=embed_probe``) is trained
too: the task's ``fitted_parameters()`` are added when the fit ends.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class TrainedParameters(pl.Callback):
    """``count``: elements of the parameters that had ``requires_grad`` and a gradient at any optimizer step.

    Each tensor counts once, a tied one (the MLM decoder = the token embeddings) included; 0 when no step ran.
    """

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}  # parameter name → number of elements

    @property
    def count(self) -> int:
        return sum(self.sizes.values())

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        # named_parameters() lists a tied tensor once, under its first name.
        for name, param in pl_module.named_parameters():
            if name not in self.sizes and param.requires_grad and param.grad is not None:
                self.sizes[name] = param.numel()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fitted = getattr(pl_module, "fitted_parameters", None)  # tasks whose head is fitted in one go
        if fitted is not None:
            self.sizes.update(fitted())

    def state_dict(self) -> dict:
        return {"sizes": dict(self.sizes)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.sizes.update(state_dict["sizes"])
