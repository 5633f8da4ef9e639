"""``encoderlab-shard``: tokenize a pre-training corpus into shards once, on every core, before training.

    encoderlab-shard experiment=pretrain_mlm data=wiki_en_sharded [data.shard_workers=32]

It takes the overrides ``encoderlab-train`` takes and builds the shard set of the composed ``data`` (a data
module that builds shards: ``data=sharded_corpus`` and its presets), content-keyed under
``data.cache_dir``: training with the same overrides finds it, and ``data.shards=DIR`` (printed at the end)
finds it without reading the corpus again, e.g. from every node of a cluster.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from encoderlab.cli.errors import USER, describe, run_command
from encoderlab.cli.resume import register_resolvers
from encoderlab.errors import UserError
from encoderlab.validate import at_least, check

CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")  # as encoderlab.cli.train's, without its imports


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="encoderlab-shard",
        description="Tokenize a pre-training corpus into token shards (data=sharded_corpus), on every core.",
    )
    parser.add_argument("overrides", nargs="*", help="encoderlab-train overrides, e.g. data=wiki_en_sharded")
    parser.add_argument(
        "--workers", type=int, default=None, help="tokenizing processes (default: every core)"
    )
    return parser.parse_args(argv)


def compose_data(overrides: list[str]):
    """The data module the overrides compose to, as encoderlab-train would build it."""
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
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
        data = compose_data(args.overrides)
        build = getattr(data, "build_shards", None)
        if build is None:
            raise UserError(
                f"data={type(data).__name__} does not read shards — choose data=sharded_corpus (or a preset "
                "of it such as data=wiki_en_sharded)"
            )
        started = time.perf_counter()
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


if __name__ == "__main__":
    raise SystemExit(main())
