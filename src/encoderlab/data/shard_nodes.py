"""One shard set built on several nodes: each tokenizes a contiguous share of the pieces into a part, and
the node that finds every part complete merges them into the set a one-node build writes.

Beside the set's final place ``cache_dir/shards/<key>``, on a file system every node sees:

    .<key>.nodes/
        plan/            plan.json (each split's pieces, the node count) + tokenizer/: decided once, by the
                         first node to start, under the set's lock (the others wait for it, then read it)
        part-<i>/        node i's share, complete: part.json + train/ val/ (litdata datasets)
        .part-<i>.*.tmp  a part being built, or a killed node's leftovers: never read, removed when node i
                         runs again
    .launches/<id>.json  the set the first node of a launch (a SLURM job step) builds: a node of that launch
                         whose settings give another set is refused before it tokenizes anything

Node ``i`` of ``N`` takes pieces ``[i * P // N, (i + 1) * P // N)`` of each split, so the parts' chunks, in
part order, hold the split's token stream in corpus order. A part is published by renaming its directory
once its ``part.json`` is written. The merge hard-links the parts' chunks into the set (copies them where
the file system has no links), renumbering each part's workers after the previous parts' so the names stay
unique and in litdata's ``chunk-<worker>-<n>.bin`` form, writes one ``index.json`` per split and the
manifest, renames the set into place and removes ``.<key>.nodes``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from encoderlab.data.shards import (
    FORMAT,
    INDEX,
    MANIFEST,
    SPLITS,
    TOKENIZER_DIR,
    BuildPlan,
    Piece,
    ShardSet,
    ShardSpec,
    default_workers,
    exclusive_lock,
    key_of,
    litdata_version,
    manifest,
    open_shards,
    plan_build,
    tokenize_split,
)
from encoderlab.errors import UserError
from encoderlab.files import atomic_directory, read_json_object, write_json

PLAN = "plan"
PLAN_FILE = "plan.json"
PART_FILE = "part.json"
LAUNCHES = ".launches"
CHUNK_NAME = re.compile(r"chunk-(\d+)-(\d+)\.bin")
# What each setting of the key is called where users set it (for the line refusing a mismatched node).
SETTING_NAMES = {
    "format": "the encoderlab version (shard format)",
    "train": "the training text's content (data.train_file / data.hub)",
    "val": "the validation text (data.val_file)",
    "train_limit": "data.train_limit",
    "val_limit": "data.val_limit",
    "tokenizer": "the tokenizer (data.tokenizer, data.vocab_size, data.lowercase, data.tokenizer_sample)",
    "chunk_bytes": "data.shard_chunk_mb",
}


@dataclass(frozen=True)
class NodeBuild:
    """What one node's call did: its part (``part``: counts, workers and seconds of its share;
    ``part_reused`` when it was complete already) and the set (``shards``) once every part is there, else
    the parts not complete yet (``missing``)."""

    node: int
    nodes: int
    location: Path  # the set's final place
    shards: ShardSet | None = None
    part: dict | None = None
    part_reused: bool = False
    merged: bool = False  # this node merged the parts
    missing: tuple[int, ...] = ()


def build_dir(final: Path) -> Path:
    """Where the nodes build the set whose final place is ``final``."""
    return final.with_name(f".{final.name}.nodes")


def part_dir(build: Path, node: int) -> Path:
    return build / f"part-{node}"


def share(pieces: list[Piece], node: int, nodes: int) -> list[Piece]:
    """Node ``node``'s contiguous run of the pieces (the runs of nodes 0, 1, ... are the pieces in order)."""
    return pieces[node * len(pieces) // nodes : (node + 1) * len(pieces) // nodes]


def build_on_nodes(
    spec: ShardSpec,
    cache_dir: str,
    nodes: int,
    node: int,
    workers: int | None = None,
    on_step: Callable[[str], None] | None = None,
    piece_bytes: int | None = None,
    launch: str | None = None,
) -> NodeBuild:
    """Node ``node`` of ``nodes``' share of the shard set of ``spec`` under ``cache_dir/shards``, built with
    ``workers`` processes (default: every core), then the set merged if every part is complete.

    A complete set is reused at once; a complete part is not built again. ``launch`` names what the nodes
    of one launch share: a node of it whose settings give another set is refused. ``on_step`` hears a line
    when this node starts planning or tokenizing."""
    say = on_step or (lambda line: None)
    root = Path(cache_dir) / "shards"
    parts = spec.key_parts()  # once: it hashes every file of the corpus
    key = key_of(parts)
    final = root / key
    result = NodeBuild(node, nodes, final)
    if (final / MANIFEST).is_file():
        return replace(result, shards=open_shards(str(final), cache_dir, reused=True))
    workers = workers or default_workers()
    if launch is not None:
        _register(root, launch, key, parts, node, nodes)
    plan = _join(spec, key, final, cache_dir, nodes, workers, piece_bytes, say)
    if plan is None:  # another build published the set while this node waited
        return replace(result, shards=open_shards(str(final), cache_dir, reused=True))
    part, reused = _build_part(spec, plan, build_dir(final), node, nodes, workers, say)
    return _merge_if_complete(spec, plan, replace(result, part=part, part_reused=reused), cache_dir)


# ------------------------------------------------------------------------------------------- the plan


def _join(
    spec: ShardSpec,
    key: str,
    final: Path,
    cache_dir: str,
    nodes: int,
    workers: int,
    piece_bytes: int | None,
    say: Callable[[str], None],
) -> dict | None:
    """The build's plan, made now if this node is the first (the others wait on the set's lock meanwhile);
    None when the set was published while this node waited."""
    build = build_dir(final)
    with exclusive_lock(final.parent / f".{key}.lock"):
        if (final / MANIFEST).is_file():
            return None
        if not (build / PLAN / PLAN_FILE).is_file():
            for stale in build.glob(f".{PLAN}.*.tmp"):  # a planner killed mid-way
                shutil.rmtree(stale, ignore_errors=True)
            say(f"planning {final} for {nodes} nodes (pieces, paragraph counts, the tokenizer) ...")
            started = time.perf_counter()
            # Published by one rename, the first wins: even where locks do not reach across nodes, every
            # node reads the one plan on disk.
            with atomic_directory(build / PLAN, replace=False) as tmp:
                plan = plan_build(spec, cache_dir, workers, piece_bytes, tmp / TOKENIZER_DIR, nodes)
                record = {"format": FORMAT, "key": key, "id": uuid.uuid4().hex, "nodes": nodes}
                seconds = round(time.perf_counter() - started, 3)
                write_json(tmp / PLAN_FILE, {**record, "seconds": seconds, **plan.to_json()})
    plan = read_json_object(build / PLAN / PLAN_FILE)
    if plan.get("format") != FORMAT or plan.get("key") != key or "pieces" not in plan:
        raise UserError(
            f"{build / PLAN / PLAN_FILE} is unreadable or stale — delete {build} and run every node again"
        )
    if plan["nodes"] != nodes:
        raise UserError(
            f"the build of {final} in progress is planned for --nodes {plan['nodes']}, this node was started "
            f"with --nodes {nodes} — start every node with the same --nodes, or delete {build} to plan again"
        )
    return plan


def _register(root: Path, launch: str, key: str, parts: dict, node: int, nodes: int) -> None:
    """Refuse a node whose settings give another shard set than the first node of its launch builds."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", launch)
    path = root / LAUNCHES / f"{name}.json"
    mine = {"key": key, "node": node, "nodes": nodes, "settings": parts}
    with exclusive_lock(root / f"{LAUNCHES}.lock"):
        first = read_json_object(path)
        if not first:
            write_json(path, mine)
            return
    if first.get("key") == key and first.get("nodes") == nodes:
        return
    theirs = first.get("settings") or {}
    differ = [SETTING_NAMES.get(k, k) for k, v in mine["settings"].items() if theirs.get(k) != v]
    if first.get("nodes") != nodes:
        differ.append(f"--nodes ({first.get('nodes')} and {nodes})")
    raise UserError(
        f"node {node} of launch {launch} was given other settings than node {first.get('node')}: "
        f"{'; '.join(differ)} differ(s) — give every node the same files (the same content at the same paths), "
        "overrides and --nodes"
    )


def _unregister(root: Path, key: str) -> None:
    if not (root / LAUNCHES).is_dir():
        return
    with exclusive_lock(root / f"{LAUNCHES}.lock"):
        for path in (root / LAUNCHES).glob("*.json"):
            if read_json_object(path).get("key") == key:
                path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- the parts


def _build_part(
    spec: ShardSpec,
    plan: dict,
    build: Path,
    node: int,
    nodes: int,
    workers: int,
    say: Callable[[str], None],
) -> tuple[dict, bool]:
    """This node's part: built now (its record, False) unless complete from an earlier run (True)."""
    part = part_dir(build, node)
    with exclusive_lock(build / f".part-{node}.lock"):  # a second copy of this node waits, then reuses
        record = _part_record(part, plan)
        if record is not None:
            return record, True
        shutil.rmtree(part, ignore_errors=True)  # a part of another plan: never merged
        for stale in build.glob(f".part-{node}.*.tmp"):  # a killed run of this node: never complete
            shutil.rmtree(stale, ignore_errors=True)
        say(f"tokenizing part {node} of {nodes} into {part} ...")
        started = time.perf_counter()
        pieces = BuildPlan.from_json(plan).pieces
        tokenizer_json = build / PLAN / TOKENIZER_DIR / "tokenizer.json"
        with atomic_directory(part, replace=False) as tmp:
            splits, counts, processes = {}, {}, 0
            for split in SPLITS:
                mine = share(pieces[split], node, nodes)
                counts[split] = len(mine)
                processes = max(processes, min(workers, len(mine)))
                splits[split] = tokenize_split(
                    spec,
                    split,
                    mine,
                    tokenizer_json,
                    plan["dtype"],
                    tmp,
                    workers,
                    allow_empty=True,
                )
            record = {
                "key": plan["key"],
                "plan": plan["id"],
                "node": node,
                "pieces": counts,  # this node's share of each split's pieces (a small corpus has few)
                "splits": splits,
                "workers": processes,
                "seconds": round(time.perf_counter() - started, 3),
            }
            write_json(tmp / PART_FILE, record)  # last: the rename publishes a complete part only
    return record, False


def _part_record(part: Path, plan: dict) -> dict | None:
    """A part's record if it is complete and of this plan (and so of this key), else None."""
    record = read_json_object(part / PART_FILE)
    if record.get("key") != plan["key"] or record.get("plan") != plan["id"]:
        return None
    return record


# ------------------------------------------------------------------------------------------- the merge


def _merge_if_complete(spec: ShardSpec, plan: dict, result: NodeBuild, cache_dir: str) -> NodeBuild:
    final = result.location
    build = build_dir(final)
    with exclusive_lock(final.parent / f".{plan['key']}.lock"):
        if (final / MANIFEST).is_file():
            return replace(result, shards=open_shards(str(final), cache_dir, reused=True))
        records = [_part_record(part_dir(build, i), plan) for i in range(result.nodes)]
        missing = tuple(i for i, r in enumerate(records) if r is None)
        if missing:
            return replace(result, missing=missing)
        for stale in final.parent.glob(f".{final.name}.*.tmp"):  # a killed merge (or one-node build)
            shutil.rmtree(stale, ignore_errors=True)
        started = time.perf_counter()
        try:
            with atomic_directory(final, replace=False) as tmp:
                _merge(spec, plan, build, records, tmp, started)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
            # Another node merged at the same moment (where the file system's locks stay on each node).
            return replace(result, shards=open_shards(str(final), cache_dir, reused=True))
        shutil.rmtree(build, ignore_errors=True)
    _unregister(final.parent, plan["key"])
    return replace(result, shards=open_shards(str(final), cache_dir), merged=True)


def _merge(
    spec: ShardSpec,
    plan: dict,
    build: Path,
    records: list[dict],
    out: Path,
    started: float,
) -> None:
    shutil.copytree(build / PLAN / TOKENIZER_DIR, out / TOKENIZER_DIR)
    splits = {}
    for split in SPLITS:
        (out / split).mkdir()
        config, chunks, offset = None, [], 0
        for record in records:
            source = part_dir(build, record["node"]) / split
            if not record["splits"][split]["chunks"]:  # this node's share held no text
                continue
            index = json.loads((source / INDEX).read_text())
            config = config or index["config"]
            if index["config"] != config:
                raise RuntimeError(f"{source / INDEX} was written with another litdata configuration")
            workers = 0
            for chunk in index["chunks"]:
                worker, n = map(int, CHUNK_NAME.fullmatch(chunk["filename"]).groups())
                name = f"chunk-{offset + worker}-{n}.bin"
                _link(source / chunk["filename"], out / split / name)
                chunks.append({**chunk, "filename": name})
                workers = max(workers, worker + 1)
            offset += workers
        if not chunks:
            source = spec.val if split == "val" and spec.val is not None else spec.train
            raise UserError(
                f"the {split} split of {source.describe()} has no text — point it at a non-empty corpus"
            )
        write_json(
            out / split / INDEX,
            {"chunks": chunks, "config": config, "updated_at": str(time.time())},
        )
        counts = {k: sum(r["splits"][split][k] for r in records) for k in ("paragraphs", "tokens", "bytes")}
        listed = [
            {
                "file": c["filename"],
                "tokens": c["dim"],
                "bytes": (out / split / c["filename"]).stat().st_size,
            }
            for c in chunks
        ]
        splits[split] = {**counts, "chunks": listed}
    parts = [{"node": r["node"], "workers": r["workers"], "seconds": r["seconds"]} for r in records]
    build_record = {
        "workers": sum(p["workers"] for p in parts),
        "nodes": len(records),
        # The critical path: the plan, the slowest part, the merge.
        "seconds": round(
            plan["seconds"] + max(p["seconds"] for p in parts) + time.perf_counter() - started,
            3,
        ),
        "parts": parts,
        "litdata": litdata_version(),
    }
    tokenizer = out / TOKENIZER_DIR
    write_json(
        out / MANIFEST,
        manifest(
            spec,
            plan["key"],
            BuildPlan.from_json(plan),
            tokenizer,
            splits,
            build_record,
        ),
    )


def _link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no copy, the part stays intact), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# ------------------------------------------------------------------------------------------- reading


def progress_note(location: Path) -> str | None:
    """The line for a set still being built on several nodes (``location``: its final place or its build
    directory), naming the parts not complete yet; None when no multi-node build of it is under way."""
    build = location if location.name.endswith(".nodes") else build_dir(location)
    if not build.is_dir():
        return None
    final = build.with_name(build.name.removeprefix(".").removesuffix(".nodes"))
    plan = read_json_object(build / PLAN / PLAN_FILE)
    if not plan.get("nodes"):
        return (
            f"no shard set at {final} yet: its build on several nodes is still being planned — wait for "
            f"encoderlab-shard to finish on every node, then train with data.shards={final}"
        )
    missing = [i for i in range(plan["nodes"]) if _part_record(part_dir(build, i), plan) is None]
    if not missing:
        return (
            f"no shard set at {final} yet: all {plan['nodes']} parts are built but not merged — run "
            f"encoderlab-shard with the same overrides and --nodes {plan['nodes']} on any node to merge them"
        )
    listed = ", ".join(map(str, missing))
    return (
        f"no shard set at {final} yet: part(s) {listed} of its {plan['nodes']}-node build are not complete — "
        f"run encoderlab-shard with the same overrides, --nodes {plan['nodes']} and --node-rank {missing[0]} "
        "(each missing rank), then train with data.shards=" + str(final)
    )
