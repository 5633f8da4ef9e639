"""``encoderlab-study``: the grid's rows and columns picked by --datasets / --methods / --shots, mistakes
refused in one line before anything runs, and everything else handed to encoderlab-suite."""

from __future__ import annotations

import pytest

from encoderlab.cli.config_dirs import SUITE_PRESETS_DIR
from encoderlab.cli.study import grid_task_names, main, parse_args, suite_argv
from encoderlab.errors import UserError
from encoderlab.suite.spec import load_spec


@pytest.fixture(scope="module")
def fewshot():
    return load_spec("fewshot", SUITE_PRESETS_DIR)


def test_filters_pick_the_grid(fewshot):
    names = grid_task_names(fewshot, ["banking77"], ["knn", "setfit"], None)
    assert names == ["banking77-knn-8", "banking77-knn-32", "banking77-setfit-8", "banking77-setfit-32"]
    assert grid_task_names(fewshot, None, None, ["500"]) == [
        f"sst2-{m}-500"
        for m in ("embed_probe", "knn", "setfit", "setfit_library", "probe", "lora", "finetune")
    ]
    with pytest.raises(UserError, match="--methods cloze: not in study fewshot — choose from embed_probe"):
        grid_task_names(fewshot, None, ["cloze"], None)
    with pytest.raises(UserError, match="leave no run"):
        grid_task_names(fewshot, ["banking77"], None, ["100"])


def test_other_options_go_to_the_suite():
    args, rest = parse_args(["minilm", "--methods", "knn", "--datasets", "fpb", "--seeds", "2", "--dry-run"])
    argv = suite_argv(args, rest)
    assert argv[:4] == ["minilm", "--seeds", "2", "--dry-run"]
    assert argv[4:6] == ["--suite", "fewshot"] and argv[6:] == ["--tasks", "fpb-knn-8,fpb-knn-32,fpb-knn-100"]
    args, rest = parse_args(["--resume", "outputs/study/x"])
    assert suite_argv(args, rest) == ["--resume", "outputs/study/x"]  # the directory holds its plan


def test_mistakes_exit_2_in_one_line(capsys):
    assert main(["minilm", "--methods", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --methods nope: not in study fewshot")
    assert main(["minilm", "--suite", "quick"]) == 2
    assert "use --study" in capsys.readouterr().err
