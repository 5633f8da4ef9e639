"""``encoderlab-compare`` laid out for people: the demo's four runs (one pre-training run, three fine-tunes)
plus a fine-tune in a long-named directory, written here directly (no training) as encoderlab-train leaves
them. At 80 and 120 columns run names stay whole, the optimized metric leads, nothing is wider than the
console; pre-training and classification metrics never share a table or a chart; one-point metrics are
bars, not curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from encoderlab.cli.compare import compare, parse_args
from encoderlab.reporting import plots

LONG_NAME = "scratch-seed-7-with-a-much-longer-directory-name-2025-01-01_12-00-00-000000"
CLASSIFY_METRICS = ("val/acc", "val/f1_macro", "val/loss", "test/acc", "test/f1_macro", "test/loss")


def write_demo_run(path: Path, kind: str, overrides: list[str], used: dict, metrics: dict) -> Path:
    """One run directory: config, overrides, choices, run.json, task.json, metrics.json, metrics.csv."""
    (path / ".hydra").mkdir(parents=True)
    optimized = "val/loss" if kind == "pretrain" else "val/acc"
    config = {
        "optimized_metric": optimized,
        "seed": 42,
        "data": {"vocab_size": 8192, "tokenizer": None, "max_seq_len": 128},
        "encoder": {"dropout": 0.1},
    }
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"task": kind, "init": used.get("init", "scratch"), "freeze": used.get("freeze", "none")}
    (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    init = {"source": "export", "path": used["init.path"]} if "init.path" in used else {"source": "scratch"}
    record = {"status": "completed", "seed": 42, "overrides": overrides, "init": init}
    (path / "run.json").write_text(json.dumps(record))
    task = {
        "format": "encoderlab-task",
        "task": {"class": "x.Task", "kind": kind, "settings": {}},
        "head": {"class": "x.Head", "settings": {}},
        "encoder": {
            "vocab_size": used["vocab"],
            "dropout": used.get("dropout", 0.1),
            "attention_dropout": used.get("dropout", 0.1),
        },
        "adapter": None,
        "data": {"class": "x.Data", "tokenizer": used["tokenizer"], "vocab_size": used["vocab"]},
    }
    (path / "task.json").write_text(json.dumps(task))
    (path / "metrics.json").write_text(json.dumps(metrics))
    steps = 10
    header = ["epoch", "step", "train/acc", "val/acc", "val/loss"]
    rows = [f"0,{s},{0.1 + 0.05 * s},," for s in range(steps)]
    rows += [f"0,{s},,{metrics['val/acc'] - 0.01 * (s < 9)},{metrics['val/loss']}" for s in (4, 9)]
    tests = [m for m in metrics if m.startswith("test/")]
    if tests:  # logged once, at the end
        header += tests
        rows = [r + "," * len(tests) for r in rows] + [
            f"0,9,,,{''.join(',' + str(metrics[m]) for m in tests)}"
        ]
    (path / "csv").mkdir()
    (path / "csv" / "metrics.csv").write_text("\n".join([",".join(header), *rows]) + "\n")
    return path


def write_demo(root: Path) -> list[Path]:
    """The demo's runs: pre-train, then fine-tune / linear probe / scratch (+ a long-named scratch run)."""
    export = root / "pretrain" / "encoder"
    pretrain_vocab, cache = 4096, "/cache/tokenizers/5d41402abc4b2a76"
    common = ["encoder=tiny", "encoder.position_init=sinusoidal", "seed=42"]
    pretrain = write_demo_run(
        root / "pretrain",
        "pretrain",
        ["experiment=pretrain_mlm", *common, "data.vocab_size=4096", "encoder.dropout=0.0"],
        {"tokenizer": cache, "vocab": pretrain_vocab, "dropout": 0.0},
        {"val/loss": 4.96, "val/acc": 0.052, "val/perplexity": 142.9, "train/acc": 0.03},
    )
    export.mkdir()
    finetune = ["experiment=finetune_sst2", *common, "head.pooling=mean", "test=true"]
    from_export = ["init=pretrained", f"init.path={export}"]
    inherited = {"tokenizer": str(export), "vocab": pretrain_vocab, "init.path": str(export)}

    def classify(acc: float) -> dict:
        return {m: acc - 0.01 * i for i, m in enumerate(CLASSIFY_METRICS)}

    runs = [
        pretrain,
        write_demo_run(
            root / "finetune",
            "classify",
            [*finetune, *from_export, "init.dropout=0.1", "init.attention_dropout=0.1", "optimizer.lr=0.001"],
            {**inherited, "init": "pretrained"},
            classify(0.81),
        ),
        write_demo_run(
            root / "probe",
            "classify",
            [*finetune, *from_export, "freeze=encoder", "optimizer.lr=0.01"],
            {**inherited, "init": "pretrained", "freeze": "encoder", "dropout": 0.0},
            classify(0.74),
        ),
    ]
    for name in ("scratch", LONG_NAME):
        runs.append(
            write_demo_run(
                root / name,
                "classify",
                [
                    *finetune,
                    "init=scratch",
                    f"data.tokenizer={export}",
                    "encoder.dropout=0.1",
                    "encoder.attention_dropout=0.1",
                    "optimizer.lr=0.001",
                ],
                {"tokenizer": str(export), "vocab": pretrain_vocab},
                classify(0.62),
            )
        )
    return runs


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> list[Path]:
    return write_demo(tmp_path_factory.mktemp("compare_layout") / "demo")


def printed(demo: list[Path], width: int, *options: str) -> list[str]:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    compare(parse_args([*map(str, demo), *options]), console)
    console.file.close()
    return console.export_text().splitlines()


def section(lines: list[str], heading: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] == ""), len(lines))
    return lines[start:end]


def row_line(lines: list[str], number: int) -> str:
    return next(line for line in lines if line.split()[:1] == [str(number)])


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_width_with_names_whole_and_the_optimized_metric_first(demo, width):
    lines = printed(demo, width)
    assert max(len(line) for line in lines) <= width
    classify = section(lines, "classify: 4 runs")
    header = next(line for line in classify if line.lstrip().startswith("#"))
    assert header.split()[:3] == ["#", "run", "val/acc"]  # the optimized metric leads, whole
    for number, name in ((2, "finetune"), (3, "probe"), (4, "scratch")):
        assert name in row_line(classify, number).split()  # on the row's one line, not folded
    long_row = row_line(classify, 5).split()[1]  # shortened in its middle, never folded
    assert "…" in long_row and LONG_NAME.startswith(long_row.split("…")[0])
    assert LONG_NAME.endswith(long_row.split("…")[1])
    assert str(demo[4]) in "".join(line.rstrip() for line in lines)  # the full path is listed below
    pretrain = section(lines, "pretrain: 1 run")
    header = next(line for line in pretrain if line.lstrip().startswith("#"))
    assert header.split()[:3] == ["#", "run", "val/loss"]


def test_parameters_are_the_values_in_effect_and_fold_below_when_narrow(demo):
    lines = printed(demo, 80)
    classify = section(lines, "classify: 4 runs")
    params_at = classify.index("parameters that differ")
    metrics_rows = [line for line in classify[:params_at] if line.split()[:1] == ["2"]]
    assert metrics_rows and all("pretrained" not in line for line in metrics_rows)  # params went below
    below = classify[params_at + 1 :]
    headers = [line.split() for line in below if line.split()[:1] == ["#"]]
    assert len(headers) == 2 and all(header[0] == "#" for header in headers)  # keyed by row number
    shown = [key for header in headers for key in header[1:]]
    assert shown == [
        "encoder.attention_dropout",
        "encoder.dropout",
        "freeze",
        "init",
        "init.attention_dropout",
        "init.dropout",
        "init.path",
        "optimizer.lr",
    ]
    probe = [line.split() for line in below if line.split()[:1] == ["3"]]
    assert probe[0][1:4] == ["0.0", "0.0", "encoder"]  # the probe kept the export's dropout, not 0.1
    assert probe[1][3] == "pretrain/encoder"  # init.path named by the run it points into
    # Every fine-tune used the export's 4,096-token tokenizer, configured or inherited: no difference.
    text = "\n".join(classify)
    assert "data.vocab_size" not in text and "8192" not in text and "data.tokenizer" not in shown
    assert "configured differently, same value in effect: data.tokenizer" in text


def test_few_runs_with_many_parameters_are_transposed_and_metrics_continue_below(demo):
    three = section(printed(demo[1:4], 80), "classify: 3 runs")
    below = three[three.index("parameters that differ") + 1 :]
    assert below[0].split() == ["parameter", "#1", "#2", "#3"]  # a column per run
    dropout = next(line for line in below if line.startswith("encoder.dropout ")).split()
    assert dropout == ["encoder.dropout", "0.1", "0.0", "0.1"]
    assert max(len(line) for line in three) <= 80
    # 120 columns: every metric in one table; 80: the metrics that do not fit continue below, keyed by row.
    wide = section(printed(demo, 120), "classify: 4 runs")
    assert [line.split()[2:] for line in wide if line.split()[:2] == ["#", "run"]] == [list(CLASSIFY_METRICS)]
    narrow = section(printed(demo, 80), "classify: 4 runs")
    parts = [line.split()[2:] for line in narrow if line.split()[:2] == ["#", "run"]]
    assert len(parts) == 2 and [m for part in parts for m in part] == list(CLASSIFY_METRICS)


def test_tasks_are_kept_apart_in_tables_and_plots(demo, tmp_path, monkeypatch):
    lines = printed(demo, 120)
    pretrain, classify = section(lines, "pretrain: 1 run"), section(lines, "classify: 4 runs")
    assert "val/perplexity" in "\n".join(pretrain) and "val/perplexity" not in "\n".join(classify)
    assert "test/acc" in "\n".join(classify) and "test/acc" not in "\n".join(pretrain)
    assert "finetune" not in "\n".join(pretrain) and "0.0520" not in "\n".join(classify)

    charts: dict[str, tuple[str, dict]] = {}
    line_chart, bar_chart = plots.line_chart_png, plots.bar_chart_png

    def line_spy(title, lines, **kwargs):
        charts[title] = ("curve", dict(lines))
        return line_chart(title, lines, **kwargs)

    def bar_spy(title, values, **kwargs):
        charts[title] = ("bar", dict(values))
        return bar_chart(title, values, **kwargs)

    monkeypatch.setattr(plots, "line_chart_png", line_spy)
    monkeypatch.setattr(plots, "bar_chart_png", bar_spy)
    out = tmp_path / "plots"
    printed(demo, 120, "--plots", str(out), "--metrics", "val/acc,train/acc,test/acc")
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "classify-test_acc.png",
        "classify-train_acc.png",
        "classify-val_acc.png",
        "pretrain-train_acc.png",
        "pretrain-val_acc.png",
    ]
    # MLM's masked-token accuracy and the classifiers' accuracy: two charts, never one axis.
    kind, mlm = charts["train/acc (pretrain)"]
    assert kind == "curve" and len(mlm) == 1
    kind, classifiers = charts["train/acc (classify)"]
    assert kind == "curve" and len(classifiers) == 4
    # Curves are labelled by what tells the runs apart, not by directory names.
    assert sorted(classifiers) == [
        "#2 freeze=none init=pretrained",
        "#3 freeze=encoder init=pretrained",
        "#4 freeze=none init=scratch",
        "#5 freeze=none init=scratch",
    ]
    # test/acc was logged once per run: a bar per run, not a one-point curve.
    kind, bars = charts["test/acc (classify)"]
    assert kind == "bar" and sorted(bars.values()) == pytest.approx([0.59, 0.59, 0.71, 0.78])


def test_one_point_metrics_are_bars_not_curves(monkeypatch):
    runs = {
        "#1 a": {"test/acc": [(9, 0.8)], "val/acc": [(4, 0.7), (9, 0.8)]},
        "#2 b": {"test/acc": [(9, 0.7)]},
    }
    bars, real = {}, plots.bar_chart_png
    monkeypatch.setattr(plots, "bar_chart_png", lambda t, v, **kw: bars.setdefault(t, v) and real(t, v, **kw))
    charts = plots.learning_curve_pngs(runs)
    assert set(charts) == {"test/acc", "val/acc"} and all(
        png.startswith(b"\x89PNG") for png in charts.values()
    )
    assert bars == {"test/acc": {"#1 a": 0.8, "#2 b": 0.7}}  # val/acc has two steps: a curve
