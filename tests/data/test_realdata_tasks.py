"""The pair, regression and NER data configs on the shared real data; skipped unless ENCODERLAB_DATA_DIR is set."""

from __future__ import annotations

import json

import pytest
from hydra.utils import instantiate

from tests.cli.test_config import compose_train
from tests.conftest import FAST, cli_env, run_train

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize(
    ("experiment", "metric"),
    [
        ("finetune_mrpc", "val/acc"),  # rte takes the same path; its config is read in full below
        pytest.param("finetune_stsb", "val/pearson", marks=pytest.mark.slow),  # ~8 s each; their data
        pytest.param("finetune_conll2003", "val/entity_f1", marks=pytest.mark.slow),  # configs are read below
    ],
)
def test_experiment_runs_on_real_data(real_data_dir, tmp_path, experiment, metric):
    run = tmp_path / "run"
    result = run_train(
        [
            f"experiment={experiment}",
            *FAST,
            "data.train_limit=200",
            "trainer.fast_dev_run=true",
            f"hydra.run.dir={run}",
        ],
        cli_env(real_data_dir, tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert metric in json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("data", "sizes", "labels"),
    [
        ("mrpc", (3667, 408, None), ["0", "1"]),
        ("rte", (2490, 277, None), ["entailment", "not_entailment"]),
        ("stsb", (5749, 1500, None), []),
        (
            "conll2003",
            (14041, 3250, 3453),
            ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"],
        ),
    ],
)
def test_data_config_reads_every_row(real_data_dir, tmp_path, data, sizes, labels):
    cfg = compose_train(
        [
            f"data={data}",
            f"paths.data_dir={real_data_dir}",
            f"paths.cache_dir={tmp_path}",
            "data.vocab_size=2000",
        ]
    )
    dm = instantiate(cfg.data)
    dm.prepare()
    test = len(dm.test_dataset) if dm.test_dataset is not None else None
    assert (len(dm.train_dataset), len(dm.val_dataset), test) == sizes
    assert dm.label_names == labels
