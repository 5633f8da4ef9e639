"""``encoderlab-compare``: tables, filters, seed aggregation, plots and the HTML report, on run directories
written here directly (no training), plus the report rendered in a real headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from encoderlab.cli.compare import main as compare_main
from encoderlab.reporting.table import build_table
from encoderlab.run.read import find_runs, load_run
from tests.cli.test_compare_layout import write_demo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(
    path: Path,
    overrides: list[str],
    metrics: dict | None,
    status: str = "completed",
    error: str | None = None,
    lr: float = 1e-4,
    seed: int = 42,
    steps: int = 4,
) -> Path:
    """A run directory as encoderlab-train leaves it (the files compare reads)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"task_name": "finetune_sst2", "seed": seed, "optimizer": {"lr": lr, "weight_decay": 0.01}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    choices = {"encoder": "tiny", "freeze": "none", "hydra/launcher": "basic"}
    (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    record = {"status": status, "seed": seed, "overrides": overrides, **({"error": error} if error else {})}
    (path / "run.json").write_text(json.dumps(record))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
        rows = ["epoch,step,train/loss,val/acc,val/loss"]
        for step in range(steps):
            rows.append(f"0,{step},{1.0 - 0.1 * step},,")
        rows.append(f"0,{steps - 1},,{metrics['val/acc']},{metrics['val/loss']}")
        (path / "csv").mkdir()
        (path / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    return path


ACC = {(1e-4, 1): 0.70, (1e-4, 2): 0.72, (1e-4, 3): 0.74, (3e-4, 1): 0.80, (3e-4, 2): 0.84}


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A multirun directory: optimizer.lr=1e-4,3e-4 × seed=1,2,3; the last job failed."""
    root = tmp_path / "multiruns" / "2025-01-01_00-00-00-000000"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    job = 0
    for lr in (1e-4, 3e-4):
        for seed in (1, 2, 3):
            overrides = ["experiment=finetune_sst2", f"optimizer.lr={lr:g}", f"seed={seed}"]
            if (lr, seed) in ACC:
                acc = ACC[(lr, seed)]
                metrics = {"val/acc": acc, "val/loss": 1 - acc, "test/acc": acc - 0.01, "params/total": 1234}
                write_run(root / str(job), overrides, metrics, lr=lr, seed=seed)
            else:
                error = "UserError: data file not found: /nope.tsv — set data.train_file"
                write_run(root / str(job), overrides, None, "failed", error, lr=lr, seed=seed)
            job += 1
    return root


def run_compare(capsys, *args: str) -> str:
    compare_main([*args])
    return capsys.readouterr().out


def test_table_lists_runs_metrics_and_differing_overrides(sweep, capsys):
    out = run_compare(capsys, str(sweep))
    assert "6 runs" in out
    header = next(line for line in out.splitlines() if "optimizer.lr" in line)
    assert "seed" in header and "val/acc" in header and "experiment" not in header
    assert "common overrides: experiment=finetune_sst2" in out
    assert "0.8400" in out and "0.7000" in out
    assert "failed 5: UserError: data file not found" in out


def test_sort_puts_the_best_first_by_the_metrics_direction(sweep):
    runs = find_runs([sweep])
    by_acc = build_table(runs, ["val/acc"], sort="val/acc")
    assert [r.name for r in by_acc.rows] == ["4", "3", "2", "1", "0", "5"]  # failed run last
    by_loss = build_table(runs, ["val/loss"], sort="val/loss")
    assert [r.name for r in by_loss.rows][:2] == ["4", "3"]  # loss: lower first
    assert [r.name for r in build_table(runs, sort="val/acc", reverse=True).rows][0] == "0"
    assert [r.name for r in build_table(runs, sort="seed").rows][:2] == ["0", "3"]


def test_filter_on_overrides_and_status(sweep, capsys):
    out = run_compare(capsys, str(sweep), "--filter", "optimizer.lr=0.0003", "--metrics", "val/acc")
    assert "3 runs" in out and "0.7000" not in out and "0.8000" in out
    out = run_compare(capsys, str(sweep), "--filter", "status!=failed", "--filter", "seed=2")
    assert "2 runs" in out
    out = run_compare(capsys, str(sweep), "--filter", "encoder=tiny")  # a group choice, not an override
    assert "6 runs" in out


def test_group_by_seed_gives_mean_and_std(sweep, capsys):
    table = build_table(find_runs([sweep]), ["val/acc"], group_by_seed=True, sort="val/acc")
    assert table.param_keys == ["optimizer.lr"]
    best, other = table.rows
    assert best.params == {"optimizer.lr": "0.0003"} and best.n == 3 and len(best.failed) == 1
    assert best.mean("val/acc") == pytest.approx(0.82) and best.std("val/acc") == pytest.approx(
        0.0283, abs=1e-4
    )
    assert other.cell("val/acc") == "0.7200 ± 0.0200"
    out = run_compare(capsys, str(sweep), "--group-by-seed", "--metrics", "val/acc,test/acc")
    assert "0.7200 ± 0.0200" in out and "0.7100 ± 0.0200" in out and "1/3 not completed" in out


def test_single_runs_fill_in_values_they_did_not_override(tmp_path, capsys):
    a = write_run(
        tmp_path / "runs" / "a",
        ["optimizer.lr=3e-4", "logger=[csv,wandb]"],
        {"val/acc": 0.8, "val/loss": 0.2},
        lr=3e-4,
    )
    b = write_run(tmp_path / "runs" / "b", [], {"val/acc": 0.7, "val/loss": 0.3})
    runs = find_runs([a, b])
    assert [r.param("optimizer.lr") for r in runs] == ["3e-4", "0.0001"]
    out = run_compare(capsys, str(a), str(b))
    assert "2 runs" in out and "0.0001" in out
    assert "[csv,wandb]" in out  # shown as typed, not eaten as rich markup
    # a folder holding runs works too
    assert "2 runs" in run_compare(capsys, str(tmp_path / "runs"))


def test_learning_curves_are_written_as_png(sweep, tmp_path, capsys):
    assert load_run(sweep / "0").curves()["train/loss"][:2] == [(0.0, 1.0), (1.0, 0.9)]
    out_dir = tmp_path / "plots"
    run_compare(capsys, str(sweep), "--plots", str(out_dir), "--metrics", "val/acc,train/loss")
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["train_loss.png", "val_acc.png"]
    assert all((out_dir / f).read_bytes().startswith(PNG_MAGIC) for f in files)


def test_html_report_is_self_contained(sweep, tmp_path, capsys):
    report = tmp_path / "report.html"
    run_compare(capsys, str(sweep), "--html", str(report), "--metrics", "val/acc,train/loss")
    html = report.read_text()
    assert 'data-run-count="6"' in html and "6 runs" in html
    assert html.count("data:image/png;base64,") == 2  # the learning curves, embedded
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must not load anything"
    assert "data file not found" in html


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Appended to a copy of the report (the product carries no such script): where the first metric's header
# ends, how wide the page is, and whether each wide parameter table scrolls inside its own box.
MEASURE = """<script>
const first = document.querySelector("th.metric");
document.body.dataset.layout = JSON.stringify({
  viewport: document.documentElement.clientWidth,
  firstMetric: first.textContent,
  firstMetricRight: first.getBoundingClientRect().right,
  pageWidth: document.documentElement.scrollWidth,
  paramBoxes: Array.from(document.querySelectorAll("table.params"), t => [t.parentElement.clientWidth,
    t.parentElement.scrollWidth, getComputedStyle(t.parentElement).overflowX]),
});
</script>"""


def in_chromium(report: Path, tmp_path: Path, width: int) -> tuple[str, dict]:
    """The DOM headless Chromium built from ``report`` in a ``width``-px window, and the layout measured."""
    measured = report.with_name(f"measured-{width}.html")
    measured.write_text(report.read_text().replace("</body>", MEASURE + "</body>"))
    screenshot = tmp_path / f"report-{width}.png"
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / f'profile-{width}'}",
            f"--window-size={width},900",
            f"--screenshot={screenshot}",
            "--dump-dom",
            measured.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.read_bytes().startswith(PNG_MAGIC) and screenshot.stat().st_size > 10_000
    found = re.search(r'data-layout="([^"]*)"', result.stdout)
    assert found, "the measuring script did not run"
    return result.stdout, json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_html_report_renders_in_headless_chromium(sweep, tmp_path, capsys):
    report = tmp_path / "report.html"
    run_compare(capsys, str(sweep), "--html", str(report), "--group-by-seed", "--metrics", "val/acc")
    dom, layout = in_chromium(report, tmp_path, 1280)
    # What the browser built: the summary, both groups' rows, and the count the page's script computed.
    assert 'id="summary" data-run-count="6"' in dom and "6 runs, 2 rows" in dom
    assert dom.count('<tr data-row="') == 4  # two configurations, in the metrics and the parameters table
    assert "2 of 2 rows shown" in dom and 'data-visible-rows="2"' in dom
    assert "0.8200 ± 0.0283" in dom
    assert layout["firstMetric"] == "val/acc" and layout["firstMetricRight"] <= layout["viewport"] <= 1280
    assert layout["pageWidth"] <= layout["viewport"]


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_html_report_leads_with_metrics_in_an_800_px_window(tmp_path, capsys):
    """The demo's runs: many wide parameters (paths) scroll inside their box; the page does not."""
    demo = write_demo(tmp_path / "demo")
    report = tmp_path / "demo.html"
    run_compare(capsys, *map(str, demo), "--html", str(report))
    dom, layout = in_chromium(report, tmp_path, 800)
    assert layout["viewport"] <= 800
    assert layout["firstMetric"] == "val/loss"  # the pre-training run's optimized metric leads its table
    assert layout["firstMetricRight"] <= layout["viewport"]
    assert layout["pageWidth"] <= layout["viewport"], "the page scrolls sideways"
    boxes = layout["paramBoxes"]
    assert [overflow for _, _, overflow in boxes] == ["auto"]  # the classification runs' parameters
    assert any(scroll > client for client, scroll, _ in boxes), "expected a parameter table wider than 800 px"
    assert dom.count('<section class="task"') == 2


@pytest.mark.slow  # ~8 s, one process for one refusal; keeps the default suite under 10 minutes
def test_directories_that_are_not_runs_are_named_in_one_error(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "encoderlab.cli.compare", str(empty), str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: not a run directory:") and "Traceback" not in result.stderr
    assert str(empty) in result.stderr and str(tmp_path / "missing") in result.stderr


def test_a_filter_that_matches_nothing_is_a_clear_error(sweep, capsys):
    assert compare_main([str(sweep), "--filter", "optimizer.lr=9"]) == 2
    assert "no run matches --filter optimizer.lr=9" in capsys.readouterr().err
    assert compare_main([str(sweep), "--filter", "nonsense"]) == 2
