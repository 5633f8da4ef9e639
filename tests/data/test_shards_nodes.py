"""Token shards built on several nodes: the parts merge into the set a one-node build writes, which training
reads unchanged; a missing or killed part publishes nothing; nodes given other settings are refused."""

from __future__ import annotations

import json
import shutil
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from encoderlab.cli.shard import main as shard_main
from encoderlab.cli.shard import node_layout
from encoderlab.data import shard_nodes
from encoderlab.data.shard_nodes import PART_FILE, build_dir, build_on_nodes, part_dir
from encoderlab.data.shards import MANIFEST, CorpusSource, ShardSpec, build_shards, open_shards
from encoderlab.data.streaming_corpus import ShardedCorpusDataModule
from encoderlab.errors import UserError
from tests.conftest import write_corpus

litdata = pytest.importorskip("litdata")

SMALL = 4 << 10  # pieces of 4 KiB: about 16 of the corpus, shared by the nodes


def token_stream(location: str, split: str) -> np.ndarray:
    tokens = litdata.StreamingDataset(f"{location}/{split}", item_loader=litdata.TokensLoader(block_size=1))
    return np.concatenate([np.asarray(t) for t in tokens])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "train.txt", 300, seed=1)


def spec_of(corpus: Path, **settings) -> ShardSpec:
    return ShardSpec(CorpusSource((str(corpus),)), None, **{"vocab_size": 400, **settings})


@pytest.fixture(scope="module")
def one_node(corpus, tmp_path_factory):
    return build_shards(spec_of(corpus), str(tmp_path_factory.mktemp("one")), workers=2, piece_bytes=8 << 10)


def with_the_tokenizer_of(one_node, cache: Path) -> str:
    """A cache directory holding the one-node build's tokenizer: WordPiece training is not deterministic from
    run to run, and the nodes' planner finds it there (as a rerun would)."""
    shutil.copytree(Path(one_node.location).parents[1] / "tokenizers", cache / "tokenizers")
    return str(cache)


def test_two_nodes_build_the_one_node_set_which_training_reads(corpus, one_node, tmp_path, monkeypatch):
    cache = with_the_tokenizer_of(one_node, tmp_path / "cache")
    spec = spec_of(corpus)
    first = build_on_nodes(spec, cache, nodes=2, node=0, workers=2, piece_bytes=SMALL)
    assert first.shards is None and first.missing == (1,) and first.part["splits"]["train"]["tokens"] > 0
    assert not (first.location / MANIFEST).exists()
    # Node 1 killed mid-way: its temporary part (complete-looking) is never read, and the set stays unbuilt.
    build = build_dir(first.location)
    shutil.copytree(part_dir(build, 0), build / ".part-1.killed.tmp")
    with pytest.raises(UserError, match=r"part\(s\) 1 of its 2-node build are not complete"):
        open_shards(str(first.location), cache)
    again = build_on_nodes(spec, cache, nodes=2, node=0, workers=2, piece_bytes=SMALL)
    assert again.part_reused and again.missing == (1,)

    second = build_on_nodes(spec, cache, nodes=2, node=1, workers=2, piece_bytes=SMALL)
    merged = second.shards
    assert second.merged and Path(merged.location).name == Path(one_node.location).name  # the same key
    for split in ("train", "val"):
        assert np.array_equal(token_stream(merged.location, split), token_stream(one_node.location, split))
        counts = [
            {k: s.manifest["splits"][split][k] for k in ("paragraphs", "tokens")} for s in (merged, one_node)
        ]
        assert counts[0] == counts[1], split
    chunks = [c["file"] for c in merged.manifest["splits"]["train"]["chunks"]]
    assert len(set(chunks)) == len(chunks) == 4  # two workers on each of two nodes
    assert merged.manifest["build"]["nodes"] == 2 and [
        p["node"] for p in merged.manifest["build"]["parts"]
    ] == [0, 1]
    assert not build.exists()  # the parts (and the killed leftovers) are gone once merged

    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(shard_nodes, "_build_part", no_build)
    assert build_on_nodes(spec, cache, nodes=2, node=0).shards.reused

    # Training reads it as the one-node set: the same validation batches, masked alike, and training batches.
    def data(location: str) -> ShardedCorpusDataModule:
        dm = ShardedCorpusDataModule(shards=location, max_seq_len=32, batch_size=8, seed=3, cache_dir=cache)
        dm.prepare()
        return dm

    val = [list(data(s.location).val_dataloader()) for s in (merged, one_node)]
    assert len(val[0]) == len(val[1]) > 0
    assert all(torch.equal(a[k], b[k]) for a, b in zip(*val, strict=True) for k in a)
    assert (next(iter(data(merged.location).train_dataloader()))["labels"] != -100).any()


def test_parts_of_another_plan_are_rebuilt_never_merged(corpus, one_node, tmp_path):
    cache = with_the_tokenizer_of(one_node, tmp_path / "cache")
    spec = spec_of(corpus)
    build_on_nodes(spec, cache, nodes=2, node=0, workers=1, piece_bytes=SMALL)
    build = build_dir(Path(cache) / "shards" / spec.key())
    # A part 1 from another plan (another key's build, copied in): it looks complete but is not this plan's.
    shutil.copytree(part_dir(build, 0), part_dir(build, 1))
    record = json.loads((part_dir(build, 1) / PART_FILE).read_text())
    (part_dir(build, 1) / PART_FILE).write_text(json.dumps({**record, "node": 1, "plan": "another"}))
    assert build_on_nodes(spec, cache, nodes=2, node=0, workers=1).missing == (1,)
    done = build_on_nodes(spec, cache, nodes=2, node=1, workers=1)
    assert done.merged and not done.part_reused
    assert np.array_equal(
        token_stream(done.shards.location, "train"), token_stream(one_node.location, "train")
    )


def test_nodes_given_other_settings_are_refused_in_one_line(corpus, tmp_path, capsys):
    cache = tmp_path / "cache"
    spec = spec_of(corpus)
    build_on_nodes(spec, str(cache), nodes=2, node=0, workers=1, piece_bytes=SMALL, launch="77.0")
    # Another node count for the same set: refused before it tokenizes anything.
    with pytest.raises(UserError, match="planned for --nodes 2, this node was started with --nodes 3"):
        build_on_nodes(spec, str(cache), nodes=3, node=1, workers=1)

    # A node of the same launch with another vocabulary size (another set): one line naming the setting.
    args = [
        "data=sharded_corpus",
        f"data.train_file={corpus}",
        f"data.cache_dir={cache}",
        "data.vocab_size=500",
    ]
    capsys.readouterr()
    assert shard_main([*args, "--nodes", "2", "--node-rank", "1", "--launch-id", "77.0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: node 1 of launch 77.0 was given other settings"), (
        lines
    )
    assert "data.vocab_size" in lines[0] and "data.train_limit" not in lines[0]
    assert not list((cache / "shards").glob(f".{spec_of(corpus, vocab_size=500).key()}.nodes"))

    # Given the same settings, node 1 builds its part and, finding part 0 complete, merges.
    assert (
        shard_main([*args[:-1], "data.vocab_size=400", "--nodes=2", "--node-rank=1", "--launch-id=77.0"]) == 0
    )
    out = capsys.readouterr().out
    final = cache / "shards" / spec.key()
    assert f"merged 2 parts into {final}" in out and out.endswith(f"train with: data.shards={final}\n")


def test_the_node_layout_comes_from_the_flags_or_an_srun_step():
    flags = Namespace(nodes=None, node_rank=None, launch_id=None)
    step = {
        "SLURM_STEP_NUM_NODES": "4",
        "SLURM_NNODES": "8",
        "SLURM_NODEID": "2",
        "SLURM_JOB_ID": "51",
        "SLURM_STEP_ID": "0",
    }
    assert node_layout(flags, step) == (4, 2, "51.0")
    assert node_layout(flags, {}) == (1, 0, None)
    assert node_layout(Namespace(nodes=2, node_rank=1, launch_id="x"), step) == (2, 1, "x")
    with pytest.raises(UserError, match=r"--node-rank=2 must be an integer from 0 to 1 \(--nodes 2\)"):
        node_layout(Namespace(nodes=2, node_rank=2, launch_id=None), {})
