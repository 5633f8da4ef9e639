"""A study's grids from suite cells: mean ± std per (method, N), the cheapest tied method recommended, the
plot and the markdown table; and the grid of a study file expanded into labelled tasks."""

from __future__ import annotations

import pytest

from encoderlab.errors import UserError
from encoderlab.reporting.study_table import markdown_grid, study_grids, study_png
from encoderlab.suite.results import Cell
from encoderlab.suite.spec import grid_tasks, load_spec, select_tasks

GRID = {
    "metrics": ["test/acc"],
    "shots": [8, 32],
    "methods": {"knn": None, "setfit": ["method=setfit", "data.num_iterations=5"]},
    "datasets": {"sst2": {"title": "SST-2", "experiment": "fewshot_sst2"}},
}


def test_a_grid_expands_into_labelled_tasks():
    tasks = grid_tasks(GRID, "")
    assert [t.name for t in tasks] == ["sst2-knn-8", "sst2-knn-32", "sst2-setfit-8", "sst2-setfit-32"]
    setfit = tasks[3]
    assert setfit.overrides == ("method=setfit", "data.num_iterations=5", "data.train_sample_per_class=32")
    assert (setfit.label("dataset"), setfit.label("method"), setfit.label("shots")) == (
        "sst2",
        "setfit",
        "32",
    )
    assert tasks[0].overrides == ("method=knn", "data.train_sample_per_class=8")
    with pytest.raises(UserError, match="grid.shots must be a list of whole numbers"):
        grid_tasks({**GRID, "shots": [0]}, "")
    with pytest.raises(UserError, match="unknown key"):
        grid_tasks({**GRID, "shot": [8]}, "")


def test_tasks_are_picked_by_pattern(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "report: study\ngrid:\n  shots: [8, 32]\n  methods: [knn, probe]\n"
        "  datasets: {sst2: {experiment: fewshot_sst2}, fpb: {}}\n"
    )
    spec = load_spec(str(tmp_path / "s.yaml"), tmp_path)
    assert spec.report == "study" and len(spec.tasks) == 8
    assert [t.name for t in select_tasks(spec, ["*-knn-*"]).tasks] == [
        "sst2-knn-8",
        "sst2-knn-32",
        "fpb-knn-8",
        "fpb-knn-32",
    ]
    with pytest.raises(UserError, match="not in suite"):
        select_tasks(spec, ["*-lora-*"])


def cell(task, scores, seconds, trainable):
    found = Cell("minilm", task.name, task.metrics, (1, 2, 3))
    found.values["test/acc"] = dict(enumerate(scores, 1))
    found.run_seconds = dict(enumerate([seconds] * len(scores), 1))
    found.trainable = dict(enumerate([trainable] * len(scores), 1))
    return found


def test_grid_rows_and_the_recommendation():
    tasks = grid_tasks(GRID, "")
    knn8, knn32, setfit8, setfit32 = tasks
    cells = [
        cell(knn8, [0.70, 0.75, 0.74], 3.0, 0),  # 73.0 ± 2.6, cheap
        cell(setfit8, [0.71, 0.75, 0.76], 40.0, 22_000_000),  # 74.0: ahead by 1, 0, 2 — within noise
        cell(knn32, [0.75, 0.75, 0.75], 3.0, 0),
        cell(setfit32, [0.85, 0.86, 0.87], 60.0, 22_000_000),  # clearly best
    ]
    [grid] = study_grids(tasks, cells, ["minilm"])
    assert grid.title == "SST-2" and grid.shots == [8, 32]
    knn, setfit = grid.rows
    assert knn.cell(8) == "73.0 ± 2.6" and setfit.mean(32) == pytest.approx(86.0)
    assert grid.best(8) is setfit and grid.best(32) is setfit
    line = grid.recommendation()
    assert line.startswith("SST-2 · minilm: N=8: knn (73.0") and "best mean setfit 74.0" in line
    assert "N=32: setfit (86.0, 60 s/run)" in line
    table = markdown_grid(grid, 3)
    assert "| setfit | 22,000,000 | 40–60 s | **74.0 ± 2.6** | **86.0 ± 1.0** |" in table
    assert study_png([grid]).startswith(b"\x89PNG")


def test_ties_are_judged_on_the_same_seeds_draws():
    """A method behind on every seed's draw is not tied, however wide the spread over the draws; one that
    wins some draws and loses others is."""
    tasks = grid_tasks(GRID, "")
    knn8, knn32, setfit8, setfit32 = tasks
    cells = [
        cell(knn8, [0.60, 0.70, 0.80], 3.0, 0),  # 2 points behind on every draw: the spread is the draws'
        cell(setfit8, [0.62, 0.72, 0.82], 40.0, 22_000_000),  # 72.0 ± 10.0
        cell(knn32, [0.60, 0.80, 0.70], 3.0, 0),  # ahead on one draw, behind on two: noise
        cell(setfit32, [0.65, 0.74, 0.74], 40.0, 22_000_000),
    ]
    [grid] = study_grids(tasks, cells, ["minilm"])
    knn, setfit = grid.rows
    assert knn.gap_to(setfit, 8) == pytest.approx((2.0, 0.0))
    assert not knn.ties(setfit, 8)  # unpaired, 70.0 is well inside 72.0 ± 10.0
    assert knn.ties(setfit, 32)
    line = grid.recommendation()
    assert "N=8: setfit (72.0, 40 s/run)" in line and "N=32: knn (70.0" in line
    knn.by_seed[8] = {1: 60.0}  # one paired seed: the unpaired rule again
    assert knn.ties(setfit, 8)


def test_the_fewshot_preset_composes_into_a_grid():
    from encoderlab.cli.config_dirs import SUITE_PRESETS_DIR

    spec = load_spec("fewshot", SUITE_PRESETS_DIR)
    datasets = {t.label("dataset") for t in spec.tasks}
    assert spec.report == "study" and datasets == {"sst2", "fpb", "banking77"}
    assert all("data.train_sample_per_class=" in t.overrides[-1] for t in spec.tasks)
