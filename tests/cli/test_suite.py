"""``encoderlab-suite``: sources checked before anything runs, the generated options, and one real suite
(2 tasks × 2 seeds through the joblib launcher) whose second task fails at run time in every job."""

from __future__ import annotations

import contextlib
import io
import json
import statistics

import pytest
from hydra import compose, initialize_config_dir

from encoderlab.cli.config_dirs import CONF_DIR
from encoderlab.cli.suite import main
from encoderlab.cli.suite_jobs import SuitePlan, write_options
from encoderlab.errors import UserError
from encoderlab.run.layout import RunDir
from encoderlab.suite.sources import resolve_all
from encoderlab.suite.spec import SuiteSpec, SuiteTask
from tests.conftest import FAST, cli_env, labelled_rows

BROKEN = "data.num_labels=3"  # the data has 2 labels: each job of this task fails when it reads its data


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A tiny encoder export with a tokenizer of the test data's words (no pre-training: nothing to learn)."""
    from encoderlab.data.tokenizer import save_tokenizer, train_wordpiece
    from encoderlab.formats.export import export_encoder
    from encoderlab.models.encoder import from_preset

    root = tmp_path_factory.mktemp("suite_export")
    tokenizer = train_wordpiece([text for text, _ in labelled_rows(300, 3)], vocab_size=200)
    save_tokenizer(tokenizer, root / "tokenizer")
    encoder = from_preset("tiny", vocab_size=tokenizer.get_vocab_size())
    return export_encoder(encoder, root / "tokenizer", root / "pretrain" / "encoder")


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite_file") / "tiny.yaml"
    path.write_text(
        "seeds: 2\n"
        f"common: {json.dumps(FAST)}\n"
        "tasks:\n"
        "  sst2: {title: SST-2, experiment: finetune_sst2, metrics: [val/acc, val/f1_macro]}\n"
        "  broken:\n"
        "    title: Broken\n"
        f"    overrides: [data=text_classification, 'data.train_file=${{paths.data_dir}}/sst2/train.tsv', {BROKEN}]\n"
        "    metrics: [val/acc]\n"
    )
    return path


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("source", "needle"),
    [("{tmp}/nowhere", "nowhere does not exist"), ("{tmp}", "is not an encoder"), ("x=1:lr", "x=1:lr")],
)
def test_a_bad_source_stops_before_anything_is_written(tmp_path, source, needle):
    out = tmp_path / "suite"
    code, _, stderr = run_main([source.format(tmp=tmp_path), "--out", str(out)])
    assert code == 2 and needle in error_line(stderr)
    assert not out.exists()


def test_dry_run_lists_the_jobs_and_a_misspelt_key_is_refused(tiny_export, suite_file, tmp_path):
    out = tmp_path / "suite"
    code, stdout, _ = run_main(
        [f"tiny={tiny_export}", "--suite", str(suite_file), "--dry-run", "--out", str(out)]
    )
    assert code == 0 and not out.exists()
    assert "2 tasks × 1 sources × 2 seeds = 4 jobs" in stdout
    assert "job 3: broken · tiny · seed 2" in stdout
    assert f"source tiny (encoder export {tiny_export}): init=pretrained init.path={tiny_export}" in stdout
    assert "+suite_task=sst2,broken +suite_source=tiny seed=1,2 ~callbacks.progress_bar" in stdout
    code, _, stderr = run_main(
        [f"tiny={tiny_export}", "--suite", str(suite_file), "--set", "optimizer.lrr=1"]
    )
    line = error_line(stderr)
    assert code == 2 and "task sst2 with source tiny" in line and "optimizer.lrr" in line


def test_generated_options_compose_as_the_command_line(tiny_export, tmp_path):
    byo = SuiteTask(
        "reviews",
        "Reviews",
        None,
        ("data=text_classification", "data.train_file=/d/train.csv", "optimizer.lr=1e-4", "trainer=gpu"),
        ("val/acc",),
    )
    spec = SuiteSpec("mine", (1,), common=("data.max_seq_len=48",), tasks=(byo,))
    plan = SuitePlan(spec, tuple(resolve_all([f"tiny={tiny_export}:optimizer.lr=1e-3,trainer=cpu"])))
    write_options(plan, tmp_path)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"hydra.searchpath=[file://{tmp_path}]", "+suite_task=reviews", "+suite_source=tiny"],
        )
    assert (
        cfg.data._target_.endswith("TextClassificationDataModule") and cfg.data.train_file == "/d/train.csv"
    )
    assert cfg.data.max_seq_len == 48 and cfg.init.path == str(tiny_export)
    assert cfg.optimizer.lr == 1e-3 and cfg.trainer.accelerator == "cpu"  # the source's overrides win


@pytest.fixture(scope="module")
def suite(tiny_export, suite_file, data_dir, cache_dir, tmp_path_factory):
    """One suite through the real launcher (joblib, 2 jobs at a time), shared by the tests below."""
    out = tmp_path_factory.mktemp("suite_run") / "suite"
    argv = [f"tiny={tiny_export}", "--suite", str(suite_file), "--out", str(out), "--jobs", "2"]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in cli_env(data_dir, cache_dir).items():
            patch.setenv(key, value)
        code, stdout, stderr = run_main([*argv, "--published", "bert-tiny"])
    return out, code, stdout, stderr


def test_suite_runs_every_job_and_reports_medians(suite):
    out, code, stdout, stderr = suite
    assert code == 1, stderr  # a failed cell: the exit status says so
    assert (out / "multirun.yaml").is_file() and (
        out / "sweep.json"
    ).is_file()  # a sweep encoderlab-sweep resumes
    report = json.loads((out / "suite.json").read_text())
    cells = {c["task"]: c for c in report["cells"]}
    sst2 = cells["sst2"]
    assert sst2["status"] == "completed"
    runs = [RunDir(sst2["seeds"][s]["run_dir"]) for s in ("1", "2")]
    accs = [json.loads(r.metrics.read_text())["val/acc"] for r in runs]
    assert [sst2["seeds"][s]["val/acc"] for s in ("1", "2")] == accs
    assert sst2["median"]["val/acc"] == pytest.approx(statistics.median(accs))
    assert {json.loads(r.record.read_text())["seed"] for r in runs} == {1, 2}
    assert "[1/4] sst2 · tiny · seed" in stdout and "failed — UserError: num_labels=3" in stdout


def test_a_job_that_fails_at_run_time_shows_in_its_cell(suite):
    out, _, stdout, _ = suite
    report = json.loads((out / "suite.json").read_text())
    broken = next(c for c in report["cells"] if c["task"] == "broken")
    assert broken["status"] == "failed" and set(broken["seeds"]) == {"1", "2"}
    assert (
        broken["reason"].startswith("seeds 1, 2: UserError: num_labels=3")
        and "data.num_labels=2" in broken["reason"]
    )
    assert "failed [1]" in stdout and f"[1] tiny / Broken: failed — {broken['reason']}" in stdout
    row = next(r for r in report["rows"] if r["name"] == "tiny")
    assert row["cells"][1] == "failed [1]" and row["average"] is None
    html = (out / "suite.html").read_text()
    assert "failed [1]" in html and "num_labels=3" in html
    assert '<span class="tag">published</span>' in html and "BERT-Tiny L2/H128 (published, GLUE test)" in html
    assert (out / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_is_rebuilt_from_the_runs(suite):
    out = suite[0]
    (out / "suite.html").unlink()
    before = json.loads((out / "suite.json").read_text())["cells"]
    code, stdout, _ = run_main(["--report", str(out)])
    assert code == 1 and (out / "suite.html").is_file()
    assert json.loads((out / "suite.json").read_text())["cells"] == before
    code, _, stderr = run_main(["--report", str(out / "0")])  # a job directory is not a suite
    assert code == 2 and "is not a suite directory" in error_line(stderr)


def test_encoderlab_sweep_resume_reads_the_suite_as_its_sweep(suite):
    from encoderlab.cli.sweep_plan import KEEP, RESTART, plan

    out = suite[0]
    sweep = plan(out)
    assert [job.action for job in sweep.jobs] == [KEEP, KEEP, RESTART, RESTART]  # the failed jobs run again
    assert [job.dir.name for job in sweep.jobs] == ["0", "1", "2", "3"]
    assert any(o.startswith("hydra.searchpath=") for o in sweep.hydra_overrides)  # a re-run finds the options
    assert sweep.jobs[2].overrides[:3] == ("+suite_task=broken", "+suite_source=tiny", "seed=1")


def test_encoderlab_compare_shows_the_suite_table_and_writes_nothing_in_it(suite, tmp_path):
    from rich.console import Console

    from encoderlab.cli.compare import compare, parse_args

    out = suite[0]
    before = {p: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    console = Console(width=120, record=True)
    html = tmp_path / "report.html"
    compare(parse_args([str(out), "--html", str(html)]), console)
    text = console.export_text()
    assert "SST-2" in text and "failed [1]" in text and "BERT-Tiny" in text
    assert "failed [1]" in html.read_text() and "num_labels=3" in html.read_text()
    assert {p: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == before
    with pytest.raises(UserError, match="cannot be compared in one table"):
        compare(parse_args([str(out), str(out / "0")]), console)


def test_a_study_plan_is_reported_as_grids(suite, tmp_path):
    """The same runs under a study's plan (report: study, grid labels on the tasks): study.md / study.png
    with one row per method, the failed method in its cell, and a recommendation line."""
    import shutil

    out = tmp_path / "study"
    shutil.copytree(suite[0], out)
    plan = json.loads((out / "suite.json").read_text())
    plan["report"] = "study"
    for task in plan["tasks"]:
        task["labels"] = {
            "dataset": "sst2",
            "method": task["name"],
            "shots": "2",
            "shots_key": "data.train_sample",
        }
    (out / "suite.json").write_text(json.dumps(plan))
    code, stdout, _ = run_main(["--report", str(out)])
    assert code == 1  # the broken method's cell failed
    table = (out / "study.md").read_text()
    assert "| sst2 |" in table and "| broken | ? | ? | failed |" in table
    assert (out / "study.png").read_bytes().startswith(b"\x89PNG")
    assert "SST-2 · tiny: N=2: sst2 (" in stdout
    assert json.loads((out / "suite.json").read_text())["recommendations"]
