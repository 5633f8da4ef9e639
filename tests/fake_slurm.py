"""A stand-in for SLURM's ``sbatch``, ``srun``, ``sacct`` and ``scancel`` on one machine, enough for submitit:
``sbatch`` runs the script at once (each array task in turn, with the environment SLURM gives it) and
prints the job id; ``srun`` runs its command with the output files submitit asked for; ``sacct`` reports
what ran. ``install(bin_dir, state_dir)`` writes the four commands; put ``bin_dir`` first on ``PATH``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "scancel")


def install(bin_dir: Path, state_dir: Path) -> dict[str, str]:
    """The commands in ``bin_dir``; returns the environment entries that make them the ones found."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            f"import fake_slurm\nsys.exit(fake_slurm.{name}(sys.argv[1:]))\n"
        )
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_STATE": str(state_dir)}


def _state() -> Path:
    return Path(os.environ["FAKE_SLURM_STATE"])


def _jobs() -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted(_state().glob("*.json"))}


def _write(job: str, record: dict) -> None:
    tmp = _state() / f"{job}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(_state() / f"{job}.json")


def sbatch(argv: list[str]) -> int:
    """Records the job and starts it in the background: submitit moves the job's files to their folder
    only once sbatch has answered, so the tasks wait for that folder (``run_job``)."""
    job = str(1000 + len(list(_state().glob("*.json"))))
    script = _state() / f"{job}.sh"  # a copy: submitit moves its file once sbatch has answered
    script.write_text(Path(argv[-1]).read_text())
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script.read_text(), re.M))
    tasks: list[int | None] = [None]
    if "array" in flags:
        low, high = flags["array"].split("%")[0].split("-")
        tasks = list(range(int(low), int(high) + 1))
    names = [job if t is None else f"{job}_{t}" for t in tasks]
    _write(
        job,
        {"script": str(script), "flags": flags, "tasks": tasks, "states": dict.fromkeys(names, "PENDING")},
    )
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import fake_slurm; fake_slurm.run_job({job!r})"
    # Its output goes to a file, not to the pipe submitit reads the job id from (which would stay open).
    with open(_state() / f"{job}.log", "w") as log:
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=log, stderr=log)
    print(f"Submitted batch job {job}")
    return 0


def run_job(job: str) -> None:
    record = _jobs()[job]
    script = Path(record["script"])
    output = dict(re.findall(r"--(output) (\S+)", script.read_text())).get("output")
    for n, task in enumerate(record["tasks"]):
        env = {
            **os.environ,
            "SLURM_JOB_ID": str(int(job) * 1000 + n),
            "SLURM_NTASKS": "1",
            "SLURM_JOB_NUM_NODES": "1",
            "SLURM_NODEID": "0",
            "SLURM_PROCID": "0",
            "SLURM_LOCALID": "0",
            "SLURM_JOB_NODELIST": "localhost",
        }
        if task is not None:
            env.update(SLURM_ARRAY_JOB_ID=job, SLURM_ARRAY_TASK_ID=str(task))
        name = job if task is None else f"{job}_{task}"
        if output:
            folder = Path(_expand(output, env)).parent
            for _ in range(600):  # submitit's files arrive within moments of sbatch answering
                if folder.is_dir():
                    break
                time.sleep(0.1)
        record["states"][name] = "RUNNING"
        _write(job, record)
        done = subprocess.run(["bash", str(script)], env=env)
        record["states"][name] = "COMPLETED" if done.returncode == 0 else "FAILED"
        _write(job, record)


def _expand(pattern: str, env=os.environ) -> str:
    job = env.get("SLURM_ARRAY_JOB_ID", env["SLURM_JOB_ID"])
    return (
        pattern.replace("%A", job)
        .replace("%a", env.get("SLURM_ARRAY_TASK_ID", "0"))
        .replace("%j", env["SLURM_JOB_ID"])
        .replace("%t", "0")
    )


def srun(argv: list[str]) -> int:
    files = {"--output": None, "--error": None}
    while argv and argv[0].startswith("--"):
        flag = argv.pop(0)
        if flag in files:
            files[flag] = _expand(argv.pop(0))
    out = open(files["--output"], "a") if files["--output"] else None  # noqa: SIM115
    err = open(files["--error"], "a") if files["--error"] else out  # noqa: SIM115
    return subprocess.run(argv, stdout=out, stderr=err).returncode


def sacct(argv: list[str]) -> int:
    wanted = [argv[i + 1] for i, a in enumerate(argv) if a == "-j"]
    print("JobID|State|NodeList")
    for job, record in _jobs().items():
        if job in wanted:
            for name, state in record["states"].items():
                print(f"{name}|{state}|localhost")
    return 0


def scancel(argv: list[str]) -> int:
    return 0
