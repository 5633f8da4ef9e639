"""``encoderlab-doctor RUN_DIR``: diagnose common training failures from a run's logs and config;
``encoderlab-doctor --data TRAIN [--val VAL] ...`` or ``RUN_DIR --data``: diagnose the data itself.

It reads what a run leaves (``csv/metrics.csv``, ``metrics.json``, ``.hydra/config.yaml``, ``run.json``,
``label_map.json``; the training file's labels when it is small and still where the config says) and runs
one small function per failure mode. Each returns findings — severity, what is wrong, what to change — and
the doctor prints them. Exit status 0 whatever it finds (the findings are the output); 2 when the directory
is not a run, or a data file or column is missing.

Checks: the run failed or never finished; learning rate too high (loss NaN or rising); loss stuck at chance
level; encoder frozen and the head not learning; heavy label imbalance; tokenizer / encoder mismatch; a large
train/val gap (overfitting). The data checks (``encoderlab.reporting.data_diagnosis``): evaluation rows that
repeat training rows, conflicting labels, label imbalance and labels in one split only, texts cut by
max_seq_len, the [UNK] rate, empty texts and labels.

An entry point, like ``train.py``: it may resolve the saved config's interpolations with OmegaConf.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from encoderlab.cli.errors import run_command
from encoderlab.reporting.data_diagnosis import DATA_CHECKS, DataSpec, data_spec, diagnose_data
from encoderlab.reporting.diagnosis import CHECKS, SEVERITIES, Finding, diagnose
from encoderlab.run.read import load_run

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
FROM_RUN = ""  # ``--data`` given without a file: check the data settings of RUN_DIR
# --option → the DataSpec field it sets (given ones override a run's own settings).
DATA_OPTIONS = {
    "val": Path,
    "test": Path,
    "text_column": str,
    "text_pair_column": str,
    "label_column": str,
    "tokenizer": Path,
    "max_seq_len": int,
    "long_documents": str,
    "window_stride": int,
    "max_windows": int,
}


# ------------------------------------------------------------------------------------------ output


def render(subject: str, findings: list[Finding], console: Console, checks=CHECKS) -> None:
    console.print(f"[bold]encoderlab-doctor[/bold] {escape(subject)}")
    if not findings:
        names = ", ".join(c.__name__.removeprefix("check_") for c in checks)
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


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group(
        "data checks",
        "check a data set instead: --data TRAIN [options], or RUN_DIR --data (the run's own files, "
        "columns, max_seq_len and tokenizer; options given here override them)",
    )
    data.add_argument(
        "--data", nargs="?", const=FROM_RUN, metavar="TRAIN", help="the training file (CSV/TSV/JSONL)"
    )
    data.add_argument("--val", help="the validation file")
    data.add_argument("--test", help="the test file")
    data.add_argument("--text-column", help="the text column (default: text)")
    data.add_argument("--text-pair-column", help="the second text's column, for sentence pairs")
    data.add_argument("--label-column", help="the label column (default: label)")
    data.add_argument(
        "--tokenizer", metavar="DIR", help="a tokenizer directory (tokenizer.json or vocab.txt)"
    )
    data.add_argument("--max-seq-len", type=int, help="the token limit training cuts at (default: 128)")
    data.add_argument(
        "--long-documents",
        choices=("truncate", "window"),
        help="how training reads rows longer than --max-seq-len (default: truncate)",
    )
    data.add_argument(
        "--window-stride", type=int, help="with --long-documents window: tokens between windows"
    )
    data.add_argument("--max-windows", type=int, help="with --long-documents window: windows a row at most")


def _data_spec(args: argparse.Namespace) -> DataSpec:
    given = {
        name: kind(getattr(args, name))
        for name, kind in DATA_OPTIONS.items()
        if getattr(args, name) is not None
    }
    if args.data == FROM_RUN:
        return replace(data_spec(load_run(args.run_dir)), **given)
    return DataSpec(train=Path(args.data), **given)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="encoderlab-doctor",
        description="Diagnose common training failures from a run directory's logs and config, or problems in "
        "the data (--data): leakage, conflicting labels, imbalance, truncation, [UNK] rate, empty rows.",
    )
    parser.add_argument(
        "run_dir", nargs="?", help="a training run's output directory (outputs/<task_name>/runs/<time>)"
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    _data_arguments(parser)
    args = parser.parse_args(argv)
    if args.data is None and any(getattr(args, name) is not None for name in DATA_OPTIONS):
        parser.error("the data options need --data (--data TRAIN, or RUN_DIR --data)")
    if args.data is None and args.run_dir is None:
        parser.error("give a run directory (RUN_DIR) or a data set (--data TRAIN)")
    if args.data == FROM_RUN and args.run_dir is None:
        parser.error("--data without a file checks a run's data: give RUN_DIR, or --data TRAIN")
    if args.data and args.run_dir is not None:
        parser.error("give RUN_DIR --data (the run's data) or --data TRAIN (files), not both")

    def body() -> None:
        if args.data is None:
            subject, findings, checks = args.run_dir, diagnose(args.run_dir), CHECKS
        else:
            spec = _data_spec(args)
            subject, findings, checks = f"--data {spec.train}", diagnose_data(spec), DATA_CHECKS
        if args.json:
            print(json.dumps([asdict(f) for f in findings], indent=2))
        else:
            render(subject, findings, Console(highlight=False), checks)

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
