"""``encoderlab-reproduce RUN_DIR``: run a run again from the config saved with it, and compare the metrics.

The saved ``.hydra/config.yaml`` is the whole composed config, so the re-run needs none of the config
files it came from. A different code commit, or uncommitted changes, is reported before it starts.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from encoderlab.cli.errors import run_command
from encoderlab.errors import UserError
from encoderlab.files import read_json_object
from encoderlab.run.layout import RunDir
from encoderlab.run.record import git_state
from encoderlab.training.kernel_choice import recorded_overrides
from encoderlab.validate import check, non_negative

console = Console(stderr=True)
# Wall-clock figures differ between any two runs; they are not part of the comparison.
UNCOMPARED_PREFIXES = ("time/",)


def code_warnings(run_dir: Path) -> list[str]:
    saved = read_json_object(RunDir(run_dir).record).get("git") or {}
    now = git_state()
    warnings = []
    if saved.get("commit") and now.get("commit") and saved["commit"] != now["commit"]:
        warnings.append(
            f"the run used commit {saved['commit'][:10]}, the code is now at {now['commit'][:10]}"
        )
    if saved.get("dirty"):
        warnings.append("the run was made from a working tree with uncommitted changes")
    if now.get("dirty"):
        warnings.append("the working tree has uncommitted changes now")
    return warnings


def compare_metrics(
    saved: dict, new: dict, tolerance: float
) -> list[tuple[str, float | None, float | None, bool]]:
    rows = []
    for key in sorted(set(saved) | set(new)):
        if key.startswith(UNCOMPARED_PREFIXES):
            continue
        a, b = saved.get(key), new.get(key)
        same = (
            a is not None and b is not None and (a == b or math.isclose(a, b, rel_tol=0, abs_tol=tolerance))
        )
        rows.append((key, a, b, same))
    return rows


def reproduce(run_dir: Path, out: Path | None, tolerance: float, extra: list[str]) -> int:
    check("--tolerance", tolerance, non_negative)
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists — pass a new directory for the re-run")
    run = RunDir(run_dir)
    config = run.config
    if not config.is_file():
        raise UserError(
            f"{run_dir} has no {config.relative_to(run.path)} — reproduce needs a run directory made by "
            "encoderlab-train"
        )
    if not run.metrics.is_file():
        raise UserError(
            f"{run_dir} has no {run.metrics.name} (did the run finish?) — reproduce a completed run"
        )
    for warning in code_warnings(run_dir):
        console.print(f"[yellow]warning:[/] {warning}")
    out = out or run_dir.with_name(f"{run_dir.name}-reproduced-{datetime.now():%Y-%m-%d_%H-%M-%S}")
    command = [
        sys.executable,
        "-m",
        "encoderlab.train",
        f"--config-path={config.parent.resolve()}",
        "--config-name=config",
        f"hydra.run.dir={out}",
        "resume=null",
        *recorded_overrides(read_json_object(run.record)),  # the kernels the run chose, not a new measurement
        *extra,
    ]
    if subprocess.run(command).returncode != 0:
        raise UserError(f"the re-run failed — see {RunDir(out).log}")
    rows = compare_metrics(read_json_object(run.metrics), read_json_object(RunDir(out).metrics), tolerance)
    table = Table(title=f"{run_dir} → {out}")
    for column in ("metric", "saved", "reproduced", "same"):
        table.add_column(column)
    for key, a, b, same in rows:
        table.add_row(key, f"{a}", f"{b}", "yes" if same else "[red]NO[/]")
    Console().print(table)
    differing = [key for key, *_, same in rows if not same]
    if differing:
        console.print(f"[red]{len(differing)} metric(s) differ:[/] {', '.join(differing)}")
        return 1
    Console().print(f"all {len(rows)} metrics reproduced (tolerance {tolerance})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--out", type=Path, default=None, help="run directory of the re-run (default: beside it)"
    )
    parser.add_argument("--tolerance", type=float, default=0.0, help="absolute difference allowed per metric")
    parser.add_argument("overrides", nargs="*", help="overrides for the re-run, e.g. trainer.accelerator=gpu")
    args = parser.parse_intermixed_args(argv)
    return run_command(lambda: reproduce(args.run_dir, args.out, args.tolerance, args.overrides))


if __name__ == "__main__":
    sys.exit(main())
