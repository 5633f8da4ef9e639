"""A catalogue of bad inputs through the real command lines. Each must exit non-zero with one clear last line
on stderr (``error: <problem> — <fix>``), print no traceback (unless HYDRA_FULL_ERROR=1), and leave an
existing run directory exactly as it was.

All cases run once, two at a time, from one interpreter (tests/cli_batch.py); a few also run through
``python -m encoderlab.train`` to show that the two give the same result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, cli_env, run_train, write_tsv

FINETUNE = ["experiment=finetune_sst2", *FAST]
PRETRAIN = ["experiment=pretrain_mlm", *FAST]


def catalogue(tmp: Path, pretrained: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (command-line arguments, words the last stderr line must hold)."""
    bad = tmp / "bad"
    return {
        # Overrides and settings
        "malformed_override": ([*FINETUNE, "data.batch_size=[1,"], ["malformed override", "key=value"]),
        "override_without_value": ([*FINETUNE, "data.batch_size"], ["malformed override", "data.batch_size"]),
        "unknown_group_option": (
            [*FINETUNE, "encoder=gigantic"],
            ["encoder/gigantic", "choose one of", "tiny"],
        ),
        "unknown_key": ([*FINETUNE, "data.batchsize=3"], ["data.batchsize", "spelling"]),
        "batch_size_not_a_number": ([*FINETUNE, "data.batch_size=abc"], ["data.batch_size='abc'", "integer"]),
        "batch_size_zero": ([*FINETUNE, "data.batch_size=0"], ["data.batch_size=0", ">= 1"]),
        "negative_learning_rate": ([*FINETUNE, "optimizer.lr=-1"], ["learning rate", "optimizer.lr"]),
        "learning_rate_not_a_number": (
            [*FINETUNE, "optimizer.lr=abc"],
            ["optimizer settings", "optimizer.lr"],
        ),
        "max_steps_not_a_number": ([*FINETUNE, "trainer.max_steps=abc"], ["Trainer", "trainer.*"]),
        "unknown_precision": ([*FINETUNE, "trainer.precision=banana"], ["banana", "trainer.*"]),
        "max_seq_len_beyond_positions": ([*FINETUNE, "data.max_seq_len=100000"], ["100000", "512 positions"]),
        "freeze_more_layers_than_exist": (
            [*FINETUNE, "freeze=bottom_k", "freeze.k=9"],
            ["freeze.k=9", "2 layers"],
        ),
        "mlm_head_on_classification": (
            [*FINETUNE, "head=mlm"],
            ["MaskedLMHead", "task/head", "head=classifier"],
        ),
        "val_split_out_of_range": ([*FINETUNE, "data.val_split=2", "data.val_file=null"], ["val_split=2"]),
        "checkpoint_every_zero_steps": (
            [*FINETUNE, "callbacks.last_checkpoint.every_n_steps=0"],
            ["every_n_steps=0", "callbacks.last_checkpoint.every_n_steps"],
        ),
        # Data files
        "missing_train_file": ([*FINETUNE, f"data.train_file={bad}/nope.tsv", "data.hub=null"], ["nope.tsv"]),
        "empty_train_file": ([*FINETUNE, f"data.train_file={bad}/empty.tsv"], ["empty.tsv", "no rows"]),
        "header_only_file": ([*FINETUNE, f"data.train_file={bad}/header.tsv"], ["header.tsv", "no rows"]),
        "non_utf8_table": ([*FINETUNE, f"data.train_file={bad}/latin1.tsv"], ["latin1.tsv", "UTF-8"]),
        "non_utf8_corpus": ([*PRETRAIN, f"data.train_file={bad}/latin1.txt"], ["latin1.txt", "UTF-8"]),
        "empty_label_cell": ([*FINETUNE, f"data.train_file={bad}/no_label.tsv"], ["data row 4", "no label"]),
        "nan_regression_target": (
            ["data=text_classification", *FAST, f"data.train_file={bad}/nan.tsv", "data.num_labels=1"],
            ["'nan'", "data row 3", "finite"],
        ),
        "missing_label_column": ([*FINETUNE, "data.label_column=sentiment"], ["sentiment", "data.*_column"]),
        "unseen_validation_label": ([*FINETUNE, f"data.val_file={bad}/dev7.tsv"], ["'7'", "training data"]),
        "num_labels_disagrees_with_data": (
            [*FINETUNE, "data.num_labels=5"],
            ["num_labels=5", "data.num_labels=2"],
        ),
        # Weights and checkpoints
        "tokenizer_disagrees_with_encoder": (
            [*FINETUNE, "init=pretrained", f"init.path={bad}/other_tokenizer"],
            ["tokenizer vocabulary has", "embeddings"],
        ),
        "truncated_safetensors": (
            [*FINETUNE, "init=pretrained", f"init.path={bad}/truncated"],
            ["model.safetensors", "damaged"],
        ),
        "init_path_missing": ([*FINETUNE, "init=pretrained", f"init.path={bad}/absent"], ["does not exist"]),
        "init_path_is_a_run_not_an_export": (
            [*FINETUNE, "init=pretrained", f"init.path={pretrained}"],
            ["not an encoder export", "encoder/"],
        ),
        "resume_with_another_encoder_size": (
            [f"resume={pretrained}", "encoder.hidden=64"],
            ["cannot change 'encoder.hidden'", "new run"],
        ),
        "resume_from_a_damaged_checkpoint": (
            [f"resume={bad}/damaged_run"],
            ["last.ckpt", "damaged"],
        ),
        # Output directories
        "existing_run_directory": ([*FINETUNE, f"hydra.run.dir={pretrained}"], ["already holds a run"]),
        "unwritable_output_directory": ([*FINETUNE, f"hydra.run.dir={bad}/empty.tsv/run"], ["empty.tsv/run"]),
    }


OTHER_COMMANDS = {
    "predict_missing_input": (
        "encoderlab.cli.predict",
        ["{pretrained}", "--input", "{bad}/absent.txt"],
        ["absent"],
    ),
    "predict_on_a_pretraining_run": (
        "encoderlab.cli.predict",
        ["{pretrained}", "--input", "{bad}/texts.txt"],
        ["fine-tun"],
    ),
    "export_over_an_existing_directory": (
        "encoderlab.cli.export",
        ["{pretrained}", "{bad}", "--format", "encoderlab"],
        ["exists", "--force"],
    ),
}


def write_bad_inputs(bad: Path, pretrained: Path) -> None:
    rows = [("a good film", "1"), ("a dull film", "0"), ("fine", "1")]
    write_tsv(bad / "header.tsv", [])
    (bad / "empty.tsv").write_text("")
    (bad / "latin1.tsv").write_bytes("text\tlabel\nun film très bon\t1\n".encode("latin-1"))
    (bad / "latin1.txt").write_bytes(("un film très bon et long " * 20 + "\n").encode("latin-1") * 20)
    write_tsv(bad / "no_label.tsv", [*rows, ("no label here", "")])
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


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file with its size and modification time."""
    files = (p for p in run_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, data_dir, cache_dir, pretrained_run):
    """(results by case name, cases, env, the pre-trained run, its snapshots before and after the catalogue)."""
    tmp = tmp_path_factory.mktemp("catalogue")
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    pretrained = pretrained_run
    (tmp / "bad").mkdir()
    write_bad_inputs(tmp / "bad", pretrained)
    before = snapshot(pretrained)

    cases = catalogue(tmp, pretrained)
    batch = {}
    for i, (name, (argv, _)) in enumerate(cases.items()):
        has_dir = any(a.startswith(("hydra.run.dir=", "resume=")) for a in argv)
        batch[name] = {"argv": argv if has_dir else [*argv, f"hydra.run.dir={tmp}/runs/{i}"], "cwd": str(tmp)}
    for name, (module, argv, _) in OTHER_COMMANDS.items():
        filled = [a.format(pretrained=pretrained, bad=tmp / "bad") for a in argv]
        batch[name] = {"module": module, "argv": filled, "cwd": str(tmp)}
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
    return results, batch, env, pretrained, before, snapshot(pretrained)


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_the_catalogue_is_large_enough():
    assert len(catalogue(Path("/x"), Path("/y"))) + len(OTHER_COMMANDS) >= 20


@pytest.mark.parametrize("name", list(catalogue(Path("/x"), Path("/y"))))
def test_bad_input_fails_with_one_clear_line(outcome, name):
    results, _, _, _, _, _ = outcome
    words = catalogue(Path("/x"), Path("/y"))[name][1]
    result = results[name]
    assert result["returncode"] == 2, result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"], result["stderr"][-2000:]
    line = last_line(result["stderr"])
    assert line.startswith("error: ") and " — " in line, line
    for word in words:
        assert word in line, (word, line)


@pytest.mark.parametrize("name", list(OTHER_COMMANDS))
def test_predict_and_export_fail_with_one_clear_line(outcome, name):
    results, _, _, _, _, _ = outcome
    result = results[name]
    assert result["returncode"] == 2 and "Traceback" not in result["stderr"], result["stderr"][-2000:]
    line = last_line(result["stderr"])
    assert line.startswith("error: "), line
    for word in OTHER_COMMANDS[name][2]:
        assert word in line, (word, line)


def test_hydra_full_error_shows_the_traceback(outcome):
    results = outcome[0]
    result = results["full_error_shows_the_traceback"]
    assert result["returncode"] != 0 and "Traceback" in result["stderr"]
    assert "data.batch_size='abc'" in result["stderr"]


def test_the_existing_run_directory_is_untouched(outcome):
    _, _, _, _, before, after = outcome
    assert after == before


def test_a_failed_run_records_the_error(outcome):
    results, batch, _, _, _, _ = outcome
    run_dir = Path(batch["missing_label_column"]["argv"][-1].removeprefix("hydra.run.dir="))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "sentiment" in record["error"]
    assert not (run_dir / "metrics.json").exists()


def test_a_refused_directory_gets_nothing_written(outcome):
    results, batch, _, _, _, _ = outcome
    # Config errors stop before a run starts: the run directory they name holds no run record.
    for name in ("malformed_override", "unknown_group_option", "unknown_key"):
        run_dir = Path(batch[name]["argv"][-1].removeprefix("hydra.run.dir="))
        assert not (run_dir / "run.json").exists(), name


@pytest.mark.parametrize("name", ["negative_learning_rate", "unknown_group_option"])
def test_python_dash_m_gives_the_same_result(outcome, name):
    results, batch, env, _, _, _ = outcome
    argv = [a for a in batch[name]["argv"] if not a.startswith("hydra.run.dir=")]
    direct = run_train([*argv, f"hydra.run.dir={Path(batch[name]['cwd']) / 'direct' / name}"], env)
    assert direct.returncode == results[name]["returncode"]
    assert last_line(direct.stderr) == last_line(results[name]["stderr"])
