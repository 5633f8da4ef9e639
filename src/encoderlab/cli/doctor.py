"""``encoderlab-doctor RUN_DIR``: diagnose common training failures from a run's logs and config.

It reads what a run leaves (``csv/metrics.csv``, ``metrics.json``, ``.hydra/config.yaml``, ``run.json``,
``label_map.json``; the training file's labels when it is small and still where the config says) and runs
one small function per failure mode. Each returns findings — severity, what is wrong, what to change — and
the doctor prints them. Exit status 0 whatever it finds (the findings are the output); 1 when the directory
is not a run.

Checks: the run failed or never finished; learning rate too high (loss NaN or rising); loss stuck at chance
level; encoder frozen and the head not learning; heavy label imbalance; tokenizer / encoder mismatch; a large
train/val gap (overfitting).

An entry point, like ``train.py``: it may resolve the saved config's interpolations with OmegaConf.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from encoderlab.cli.errors import run_command
from encoderlab.reporting.diagnosis import CHECKS, SEVERITIES, Finding, diagnose

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


# ------------------------------------------------------------------------------------------ output


def render(run_dir: Path, findings: list[Finding], console: Console) -> None:
    console.print(f"[bold]encoderlab-doctor[/bold] {escape(str(run_dir))}")
    if not findings:
        names = ", ".join(c.__name__.removeprefix("check_") for c in CHECKS)
        console.print(f"[green]no problems found[/green] (checked: {names})")
        return
    table = Table(show_lines=True, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("check", no_wrap=True, style="dim")
    table.add_column("what is wrong → what to change", ratio=1)
    for f in findings:
        table.add_row(
            f"[{STYLE[f.severity]}]{f.severity}[/]",
            f.check,
            f"{escape(f.what)}\n[bold]→[/bold] {escape(f.fix)}",
        )
    console.print(table)
    counts = Counter(f.severity for f in findings)
    console.print(
        ", ".join(f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in SEVERITIES if counts[s])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="encoderlab-doctor",
        description="Diagnose common training failures from a run directory's logs and config.",
    )
    parser.add_argument("run_dir", help="a training run's output directory (outputs/<task_name>/runs/<time>)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)

    def body() -> None:
        findings = diagnose(args.run_dir)
        if args.json:
            print(json.dumps([asdict(f) for f in findings], indent=2))
        else:
            render(Path(args.run_dir), findings, Console(highlight=False))

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
