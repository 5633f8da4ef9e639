"""Parameter-efficient adapters on the encoder: the ``adapter/`` config group (``none`` | ``lora``).

LoRA (Hu et al. 2021) through ``peft``: each targeted projection ``W`` becomes ``W + (alpha / r) · B A``
with ``A`` (r × in) and ``B`` (out × r) trained and ``W`` frozen. ``freeze`` keeps the encoder's own
weights frozen whenever adapter weights are present; the task head trains fully. ``merge_lora`` folds the
update into ``W`` and gives back a plain encoder (same keys as an export), for serving without peft.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.run.layout import RunDir
from encoderlab.validate import at_least, check, non_empty, positive, probability

ADAPTER_MARKER = "lora_"  # every LoRA tensor's name contains it (lora_A, lora_B, lora_dropout)


@dataclass(frozen=True)
class NoAdapter:
    """The encoder as it is."""

    merge_on_export: bool = False

    def apply(self, encoder: nn.Module) -> nn.Module:
        return encoder

    def describe(self) -> None:
        return None

    def save_artifacts(self, run: RunDir, task: nn.Module, tokenizer_dir: str | Path) -> None:
        """Nothing: the checkpoint and the task's own artifacts hold the model."""


@dataclass(frozen=True)
class LoRA:
    """Low-rank adapters on the encoder projections named in ``target_modules``.

    Names are matched as peft does: a module whose full name equals one, or ends with ``.<name>``
    (``query``, ``key``, ``value``; ``output`` = attention output and feed-forward output; ``intermediate``).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = field(default=("query", "value"))
    merge_on_export: bool = False

    def __post_init__(self) -> None:
        check("adapter.r", self.r, at_least(1))
        check("adapter.alpha", self.alpha, positive)
        check("adapter.dropout", self.dropout, probability)
        check("adapter.target_modules", self.target_modules, non_empty("[query,value]"))
        object.__setattr__(self, "target_modules", tuple(str(t) for t in self.target_modules))

    def apply(self, encoder: nn.Module) -> nn.Module:
        """Inject the adapters into ``encoder`` in place (and return it)."""
        peft = require("peft", for_="adapter=lora")  # heavy; only when LoRA is used

        linear_names = [name for name, m in encoder.named_modules() if isinstance(m, nn.Linear)]
        unmatched = [t for t in self.target_modules if not any(_matches(n, t) for n in linear_names)]
        if unmatched:
            short = sorted({n.rsplit(".", 1)[-1] for n in linear_names})
            raise UserError(
                f"adapter.target_modules {unmatched} match no linear layer of the encoder — available names: "
                f"{', '.join(short)} (or full names such as {linear_names[0]})"
            )
        config = peft.LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
        )
        return peft.inject_adapter_in_model(config, encoder)

    def describe(self) -> dict:
        """What the run records: the settings that re-apply the same adapters for inference."""
        return {
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": list(self.target_modules),
        }

    def save_artifacts(self, run: RunDir, task: nn.Module, tokenizer_dir: str | Path) -> None:
        """The run's small artifact (``adapter/``: LoRA tensors + head) and, with ``merge_on_export``, the
        merged encoder as a plain export (``encoder/``)."""
        save_adapter(task, run.adapter)
        if self.merge_on_export:
            from encoderlab.formats.export import export_encoder

            export_encoder(merged_copy(task.encoder), tokenizer_dir, run.encoder)


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith(f".{target}")


def has_adapters(module: nn.Module) -> bool:
    return any(ADAPTER_MARKER in name for name, _ in module.named_parameters())


def adapter_state(module: nn.Module) -> dict:
    """The adapter tensors alone (what a LoRA run adds to its base encoder)."""
    return {k: v for k, v in module.state_dict().items() if ADAPTER_MARKER in k}


def merged_copy(encoder: nn.Module) -> nn.Module:
    """``encoder`` itself when it has no adapters, else a merged plain copy (on the CPU) for exporting."""
    return merge_lora(copy.deepcopy(encoder).cpu()) if has_adapters(encoder) else encoder


def merge_lora(encoder: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight and unwrap it, in place: a plain encoder again."""
    require("peft", for_="merging LoRA adapters")
    from peft.tuners.lora import LoraLayer

    for name, module in list(encoder.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = encoder.get_submodule(parent_name) if parent_name else encoder
            setattr(parent, child, module.get_base_layer())
    return encoder


def save_adapter(task: nn.Module, out_dir: Path) -> Path:
    """The small artifact of a LoRA run: adapter tensors (encoder-relative names) and the head's tensors.

    With the base encoder export they rebuild the model; ``checkpoints/last.ckpt`` holds everything too.
    """
    from safetensors.torch import save_file

    from encoderlab.files import atomic_directory

    def plain(state: dict) -> dict:
        return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}

    with atomic_directory(out_dir) as tmp:
        save_file(plain(adapter_state(task.encoder)), str(tmp / "adapter.safetensors"))
        save_file(plain(task.head.state_dict()), str(tmp / "head.safetensors"))
    return out_dir
