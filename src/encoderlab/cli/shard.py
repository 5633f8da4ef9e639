"""``encoderlab-shard``: tokenize a pre-training corpus into shards once, on every core, before training.

    encoderlab-shard experiment=pretrain_mlm data=wiki_en_sharded [data.shard_workers=32]

It takes the overrides ``encoderlab-train`` takes and builds the shard set of the composed ``data`` (a data
module that builds shards: ``data=sharded_corpus`` and its presets), content-keyed under
``data.cache_dir``: training with the same overrides finds it, and ``data.shards=DIR`` (printed at the end)
finds it without reading the corpus again, e.g. from every node of a cluster.

    srun --nodes=4 --ntasks-per-node=1 encoderlab-shard experiment=pretrain_mlm data=wiki_en_sharded

builds one set on several nodes (``--nodes``/``--node-rank``, by default an srun step's): each node
tokenizes its share of the corpus, and the last to finish merges the shares (encoderlab.data.shard_nodes).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from encoderlab.cli.config_dirs import CONF_DIR
from encoderlab.cli.errors import USER, describe, run_command
from encoderlab.cli.resume import register_resolvers
from encoderlab.data.shard_nodes import NodeBuild, build_on_nodes
from encoderlab.errors import UserError
from encoderlab.validate import at_least, between, check


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="encoderlab-shard",
        description="Tokenize a pre-training corpus into token shards (data=sharded_corpus), on every core.",
    )
    parser.add_argument("overrides", nargs="*", help="encoderlab-train overrides, e.g. data=wiki_en_sharded")
    parser.add_argument(
        "--workers", type=int, default=None, help="tokenizing processes (default: every core)"
    )
    parser.add_argument(
        "--nodes", type=int, default=None, help="nodes building one set together (default: srun's, else 1)"
    )
    parser.add_argument(
        "--node-rank",
        type=int,
        default=None,
        help="this node, 0 to --nodes - 1 (default: SLURM_NODEID, else 0)",
    )
    parser.add_argument(
        "--launch-id",
        default=None,
        help="an id the nodes of one launch share: a node whose settings give another shard set is refused "
        "(default: SLURM_JOB_ID.SLURM_STEP_ID)",
    )
    return parser.parse_args(argv)


def node_layout(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[int, int, str | None]:
    """(nodes, this node's rank, launch id): the flags, else an srun step's SLURM variables, else 1, 0."""

    def number(flag: int | None, names: tuple[str, ...], default: int) -> int:
        if flag is not None:
            return flag
        name = next((n for n in names if env.get(n)), None)
        if name is None:
            return default
        try:
            return int(env[name])
        except ValueError:
            raise UserError(
                f"{name}={env[name]!r} is not a whole number — pass --nodes and --node-rank"
            ) from None

    # The step's node count where there is one: a batch script's own commands run on one node of the job.
    nodes = number(args.nodes, ("SLURM_STEP_NUM_NODES", "SLURM_NNODES"), default=1)
    check("--nodes", nodes, at_least(1))
    rank = number(args.node_rank, ("SLURM_NODEID",), default=0)
    check("--node-rank", rank, between(0, nodes - 1, f"--nodes {nodes}"))
    launch = args.launch_id
    if launch is None and env.get("SLURM_JOB_ID") and env.get("SLURM_STEP_ID"):
        launch = f"{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}"
    return nodes, rank, launch


def compose_data(overrides: list[str]):
    """The data module the overrides compose to, as encoderlab-train would build it."""
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            # The run directory is Hydra's at run time; nothing here writes one.
            cfg = compose("train", overrides=["paths.output_dir=.", *overrides])
        return instantiate(cfg.data)
    except Exception as err:
        message, status = describe(err)
        if status == USER:
            raise UserError(message) from None
        raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        check("--workers", args.workers, at_least(1), optional=True)
        nodes, rank, launch = node_layout(args, os.environ)
        data = compose_data(args.overrides)
        build = getattr(data, "build_shards", None)
        if build is None:
            raise UserError(
                f"data={type(data).__name__} does not read shards — choose data=sharded_corpus (or a preset "
                "of it such as data=wiki_en_sharded)"
            )
        started = time.perf_counter()
        if nodes > 1 and data.shards is None:  # a given data.shards is only checked, as on one node
            workers = args.workers or data.shard_workers
            result = build_on_nodes(
                data.shard_spec(), data.cache_dir, nodes, rank, workers, say_now, launch=launch
            )
            return report_node(result, time.perf_counter() - started)
        shards = build(args.workers, on_start=lambda d: print(f"tokenizing into {d} ...", flush=True))
        seconds = time.perf_counter() - started
        built = shards.manifest["build"]
        if shards.reused:
            print(f"shards already built: {shards.location}")
        else:
            read_mb = sum(s["bytes"] for s in shards.manifest["splits"].values()) / 1e6
            tokens = sum(s["tokens"] for s in shards.manifest["splits"].values())
            print(
                f"built in {seconds:.1f} s with {built['workers']} workers, the tokenizer's training "
                f"included: {read_mb / seconds:.2f} MB/s of text, {tokens / seconds:,.0f} tokens/s"
            )
        print(shards.summary())
        print(f"train with: data.shards={shards.location}")
        return 0

    return run_command(body)


def say_now(line: str) -> None:
    print(line, flush=True)


def report_node(result: NodeBuild, seconds: float) -> int:
    """What this node built, and the set once it is complete."""
    part, name = result.part, f"part {result.node} of {result.nodes}"
    if part is not None and result.part_reused:
        print(f"{name} already built")
    elif part is not None and not any(part["pieces"].values()):
        print(
            f"{name}: no piece of the corpus is this node's (the corpus is cut into fewer pieces than nodes)"
        )
    elif part is not None:
        read_mb = sum(s["bytes"] for s in part["splits"].values()) / 1e6
        tokens = sum(s["tokens"] for s in part["splits"].values())
        print(
            f"{name} built in {seconds:.1f} s with {part['workers']} workers, planning included: "
            f"{read_mb / seconds:.2f} MB/s of text, {tokens / seconds:,.0f} tokens/s"
        )
    if result.shards is None:
        missing = ", ".join(map(str, result.missing))
        print(
            f"waiting for part(s) {missing}: the last node to finish merges the parts into {result.location} "
            "(a node that was killed: run it again with its --node-rank)"
        )
        return 0
    if result.merged:
        print(f"merged {result.nodes} parts into {result.location}")
    else:
        print(f"shards already built: {result.shards.location}")
    print(result.shards.summary())
    print(f"train with: data.shards={result.shards.location}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
