"""Suite files: the presets, a user's suite built on one (a bring-your-own task), and one-line refusals."""

from __future__ import annotations

import pytest

from encoderlab.errors import UserError
from encoderlab.suite.spec import load_spec, parse_seeds, select_tasks
from tests.conftest import CONF_DIR

PRESETS = CONF_DIR.parent / "suites"


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_presets_name_existing_experiments_and_the_usual_metrics(preset):
    spec = load_spec(preset, PRESETS)
    experiments = {p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")}
    assert [t.name for t in spec.tasks] == ["sst2", "mrpc", "rte", "stsb", "conll2003", "fpb", "banking77"]
    assert all(t.experiment in experiments for t in spec.tasks)
    metrics = {t.name: t.metrics for t in spec.tasks}
    assert metrics["mrpc"] == ("val/f1", "val/acc") and metrics["stsb"] == ("val/pearson", "val/spearman")
    assert metrics["conll2003"] == ("test/entity_f1",)
    assert "task.positive_label=1" in spec.task("mrpc").overrides  # F1 of "paraphrase", as GLUE reports it
    assert spec.seeds == (1, 2, 3)


def test_a_suite_file_extends_a_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "base: quick\nseeds: [7, 8]\ncommon: [data.batch_size=16]\nsources: {export: [optimizer.lr=1e-3]}\n"
        "tasks:\n  rte: null\n  reviews:\n    title: Reviews\n"
        "    overrides: [data=text_classification, data.train_file=train.csv]\n    metrics: [val/acc]\n"
    )
    spec = load_spec(str(path), PRESETS)
    names = [t.name for t in spec.tasks]
    assert "rte" not in names and names[-1] == "reviews"
    assert spec.seeds == (7, 8)
    assert spec.common[-1] == "data.batch_size=16" and "data.max_seq_len=64" in spec.common  # base's first
    assert spec.kind_overrides["export"] == ("optimizer.lr=1e-3",)
    assert spec.kind_overrides["minilm"] == ("optimizer.lr=5.0e-5",)
    reviews = spec.task("reviews")
    assert reviews.experiment is None and reviews.header == "Reviews val acc"
    assert [t.name for t in select_tasks(spec, ["reviews", "sst2"]).tasks] == ["reviews", "sst2"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tasks: {a: {metrics: [val/acc], lr: 1}}", "tasks.a has unknown key(s) lr"),
        ("tasks: {a: {overrides: [x=1]}}", "tasks.a needs metrics"),
        ("tasks: {a: {metrics: []}}", "tasks.a.metrics"),
        ("seeds: 0\ntasks: {a: {metrics: [val/acc]}}", "seeds 0 must be at least 1"),
        ("sources: {gpu: [x=1]}\ntasks: {a: {metrics: [val/acc]}}", "sources.gpu is not a source kind"),
        ("epochs: 3\ntasks: {a: {metrics: [val/acc]}}", "unknown key(s) epochs"),
        ("tasks: {}", "has no tasks"),
        ("tasks: [a", "is not valid YAML"),
    ],
)
def test_a_bad_suite_file_is_one_line_naming_the_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_spec(str(path), PRESETS)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_seeds_and_unknown_names():
    assert parse_seeds("3") == (1, 2, 3) and parse_seeds("5,9") == (5, 9) and parse_seeds(2) == (1, 2)
    for bad in ("a,b", "1,1", "0"):
        with pytest.raises(UserError):
            parse_seeds(bad)
    with pytest.raises(UserError, match="choose one of fewshot, fewshot_prompts, full, quick"):
        load_spec("fast", PRESETS)
    with pytest.raises(UserError, match="not in suite quick"):
        select_tasks(load_spec("quick", PRESETS), ["sst2", "cola"])
