"""Run many ``encoderlab-train`` command lines quickly: ``python tests/cli_batch.py CASES.json RESULTS.json``.

One interpreter imports ``encoderlab.cli.train`` once; each command line then runs in a process forked from it,
through the real entry point (``encoderlab.cli.train:main``) with its own argv, working directory and stderr —
what ``python -m encoderlab.train ARGS`` does, minus ~5 s of imports per command. Two run at a time.
CASES.json: ``{name: {"argv": [...], "cwd": "...", "module": "encoderlab.cli.predict", "env": {...}, "hide":
["peft"]}}`` (module, env and hide optional; other modules' ``main(argv)`` run the same way; ``hide`` makes
those packages uninstalled for that command, as ``sys.modules[name] = None`` does); RESULTS.json: ``{name:
{"returncode", "stderr"}}``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import encoderlab.cli.compare
import encoderlab.cli.demo
import encoderlab.cli.doctor
import encoderlab.cli.export
import encoderlab.cli.predict
import encoderlab.cli.reproduce
import encoderlab.cli.train

PARALLEL = 2


def _child(case: dict, stderr_path: str) -> None:
    code = 1
    try:
        os.chdir(case["cwd"])
        os.environ.update(case.get("env", {}))
        for hidden in case.get("hide", []):
            for loaded in [m for m in sys.modules if m == hidden or m.startswith(f"{hidden}.")]:
                del sys.modules[loaded]
            sys.modules[hidden] = None  # import raises ModuleNotFoundError, as if it were not installed
        os.dup2(os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        module = importlib.import_module(case.get("module", "encoderlab.cli.train"))
        sys.argv = [module.__file__, *case["argv"]]
        try:
            code = module.main() if module is encoderlab.cli.train else module.main(case["argv"])
            code = code or 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        except BaseException:
            traceback.print_exc()  # as the interpreter would print it
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(cases_file: str, results_file: str) -> None:
    cases = json.loads(Path(cases_file).read_text())
    workdir = Path(tempfile.mkdtemp(prefix="cli_batch_"))
    pending, running, done = list(cases.items()), {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            name, case = pending.pop(0)
            stderr_path = str(workdir / f"{len(done) + len(running)}.stderr")
            pid = os.fork()
            if pid == 0:
                _child(case, stderr_path)
            running[pid] = (name, stderr_path)
        pid, status = os.wait()
        name, stderr_path = running.pop(pid)
        done[name] = {
            "returncode": os.waitstatus_to_exitcode(status),
            "stderr": Path(stderr_path).read_text(),
        }
    Path(results_file).write_text(json.dumps(done))


if __name__ == "__main__":
    main(*sys.argv[1:])
