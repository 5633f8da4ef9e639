"""Every config composes, every _target_ binds, and components never import the config system."""

from __future__ import annotations

import importlib
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, REPO

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in {"hydra", "paths"})


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=/tmp/unused", *overrides])


def targets(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        if "_target_" in node:
            found.append(node["_target_"])
        for value in node.values():
            found += targets(value)
    elif isinstance(node, list):
        for value in node:
            found += targets(value)
    return found


def resolve_target(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_group_of_the_contract_exists():
    contract = {
        "encoder",
        "head",
        "task",
        "data",
        "optimizer",
        "scheduler",
        "init",
        "freeze",
        "trainer",
        "logger",
    }
    assert contract <= set(GROUPS)
    assert {"tiny", "mini", "small", "medium", "base"} <= set(options("encoder"))
    assert {"none", "encoder", "bottom_k"} <= set(options("freeze"))
    assert {"cpu", "gpu", "ddp"} <= set(options("trainer"))
    assert {"csv", "tensorboard", "wandb", "mlflow", "many"} <= set(options("logger"))
    assert {"pretrain_mlm", "finetune_sst2"} <= set(options("experiment"))


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in GROUPS for o in options(g) if g not in {"experiment", "hparams_search"}]
    + [f"experiment={o}" for o in options("experiment")],
)
def test_option_composes_and_its_targets_bind(override):
    extra = ["init.path=/x"] if override in {"init=pretrained", "init=hf"} else []
    cfg = compose_train([override, *extra])
    container = OmegaConf.to_container(cfg, resolve=False)
    found = targets(container)
    assert found, "a composed config must instantiate something"
    for target in found:
        assert callable(resolve_target(target)), target


def test_experiments_only_override():
    for path in (CONF_DIR / "experiment").glob("*.yaml"):
        assert path.read_text().startswith("# @package _global_"), path.name


def test_components_do_not_import_the_config_system():
    pattern = re.compile(r"^\s*(import|from)\s+(hydra|omegaconf)\b", re.M)
    offenders = [
        str(path.relative_to(REPO))
        for part in ("models", "data", "tasks", "training")
        for path in (REPO / "src/encoderlab" / part).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []
