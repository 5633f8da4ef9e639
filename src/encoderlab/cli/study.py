"""``encoderlab-study SOURCE... [--datasets] [--methods] [--shots]``: the few-shot study — data sets × ways of
adapting × numbers of labelled examples × seeds for each encoder — and its report (per data set, a table of
methods × N with mean ± std, trainable parameters and wall time per run, a plot of the score against N, and
a recommendation line).

A study is a suite whose preset (``suites/fewshot.yaml``) has a ``grid`` and ``report: study``, so it
runs, resumes and reports exactly as ``encoderlab-suite`` does (one Hydra multirun, parallel jobs, a failed
job in its cell); this command only picks the grid's rows and columns and passes everything else on.
"""

from __future__ import annotations

import argparse
import sys

from encoderlab.cli.config_dirs import SUITE_PRESETS_DIR
from encoderlab.cli.errors import run_command
from encoderlab.cli.suite import main as suite_main
from encoderlab.errors import UserError
from encoderlab.suite.spec import SuiteSpec, load_spec

DEFAULT_STUDY = "fewshot"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="encoderlab-study",
        description="Run the few-shot study (a suite with report: study) on each SOURCE and report, per data "
        "set, methods × N (mean ± std over seeds, trainable parameters, seconds per run) with a "
        "recommendation line. Every other option is encoderlab-suite's (--seeds, --jobs, --launcher, --out, "
        "--set, --dry-run, --resume, --report).",
        epilog="e.g. encoderlab-study minilm --datasets sst2 --methods setfit,knn,embed_probe --shots 8,32",
    )
    parser.add_argument("--study", default=DEFAULT_STUDY, help="a study preset or suite YAML with a grid")
    parser.add_argument("--datasets", help="only these data sets of the grid, comma-separated")
    parser.add_argument("--methods", help="only these methods, comma-separated")
    parser.add_argument("--shots", help="only these N, comma-separated")
    return parser.parse_known_args(argv)


def _chosen(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def grid_task_names(spec: SuiteSpec, datasets, methods, shots) -> list[str]:
    """The grid's tasks that the filters keep; a filter naming something the grid lacks is an error."""
    grid = [t for t in spec.tasks if t.label("dataset") is not None]
    if not grid:
        raise UserError(f"{spec.name} has no grid — pass a study (a suite YAML with grid: and report: study)")
    for key, wanted in (("dataset", datasets), ("method", methods), ("shots", shots)):
        known = list(dict.fromkeys(t.label(key) for t in grid))
        unknown = [w for w in wanted or () if w not in known]
        if unknown:
            raise UserError(
                f"--{key if key == 'shots' else key + 's'} {','.join(unknown)}: not in study {spec.name} — "
                f"choose from {', '.join(known)}"
            )
    names = [
        t.name
        for t in grid
        if (not datasets or t.label("dataset") in datasets)
        and (not methods or t.label("method") in methods)
        and (not shots or t.label("shots") in shots)
    ]
    if not names:
        raise UserError("the filters leave no run of the grid — widen --datasets / --methods / --shots")
    return names


def suite_argv(args: argparse.Namespace, rest: list[str]) -> list[str]:
    if (
        "--resume" in rest
        or "--report" in rest
        or any(a.startswith(("--resume=", "--report=")) for a in rest)
    ):
        return rest  # the study directory holds its plan
    datasets, methods, shots = _chosen(args.datasets), _chosen(args.methods), _chosen(args.shots)
    argv = [*rest, "--suite", args.study]
    if datasets or methods or shots:
        spec = load_spec(args.study, SUITE_PRESETS_DIR)
        argv += ["--tasks", ",".join(grid_task_names(spec, datasets, methods, shots))]
    return argv


def main(argv: list[str] | None = None) -> int:
    args, rest = parse_args(argv)

    def body() -> int:
        if "--suite" in rest:
            raise UserError("--suite is encoderlab-suite's — use --study to pick the study's preset or file")
        return suite_main(suite_argv(args, rest))

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
