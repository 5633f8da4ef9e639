"""Security: no secret lands in a run directory, and nothing is unpickled or instantiated from untrusted files."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from encoderlab.run.redact import (
    MASK,
    env_secrets,
    is_secret_key,
    redact,
    redact_argv,
    redact_text,
    redact_yaml_files,
)
from tests.conftest import FAST, REPO, cli_env, run_train

SRC = REPO / "src" / "encoderlab"
SECRETS = {
    "WANDB_API_KEY": "secret-123-wandb",
    "HF_TOKEN": "hf_secret-456-token",
    "MLFLOW_TRACKING_PASSWORD": "secret-789-mlflow",
}
TYPED_SECRET = "typed-secret-000"
# CLIs that read run directories / checkpoints other people may hand you.
RUN_READERS = [
    "cli/predict.py",
    "cli/embed.py",
    "embedding/source.py",
    "cli/doctor.py",
    "cli/export.py",
    "run/rebuild.py",
    "run/read.py",
    "formats/hf.py",
]


def files_containing(root: Path, needles) -> dict[str, list[str]]:
    hits = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found = [n for n in needles if n.encode() in data]
            if found:
                hits[str(path.relative_to(root))] = found
    return hits


def _train(run, data_dir, cache_dir, *extra):
    proc = run_train([*FAST, *extra, f"hydra.run.dir={run}"], cli_env(data_dir, cache_dir, **SECRETS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [s for s in SECRETS.values() if s in proc.stdout + proc.stderr]
    return run


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory, data_dir, cache_dir):
    """One tiny training with API keys in the environment and one (wrongly) typed into an override."""
    run = tmp_path_factory.mktemp("security") / "run"
    return _train(run, data_dir, cache_dir, "logger=[csv,tensorboard,wandb]", f"+hf_token={TYPED_SECRET}")


def test_environment_secrets_land_in_no_file(secret_run):
    """API keys in the environment (where they belong) are never written: config, logs, run record, loggers."""
    assert (secret_run / "run.json").is_file() and (secret_run / "csv").is_dir()
    assert (secret_run / "tensorboard").is_dir() and (secret_run / "wandb").is_dir()  # W&B offline
    assert files_containing(secret_run, SECRETS.values()) == {}


def test_a_secret_typed_into_an_override_is_redacted(secret_run):
    record = json.loads((secret_run / "run.json").read_text())
    assert "+hf_token=***" in record["overrides"]
    assert files_containing(secret_run, [TYPED_SECRET]) == {}


# ------------------------------------------------------------------------------- no pickle, no _target_


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            yield owner, node.func.attr, node


def test_every_torch_load_is_weights_only():
    loads = []
    for path in sorted(SRC.rglob("*.py")):
        for owner, attr, node in _calls(path):
            if (owner, attr) == ("torch", "load"):
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                loads.append((f"{path.relative_to(SRC)}:{node.lineno}", ok))
    assert loads, "expected torch.load calls (checkpoint readers)"
    assert [where for where, ok in loads if not ok] == []


def test_no_pickle_or_unsafe_yaml_loading():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        for owner, attr, node in _calls(path):
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            if owner in ("pickle", "dill", "cloudpickle", "joblib") and attr in ("load", "loads"):
                bad.append(f"{where} {owner}.{attr}")
            if owner == "yaml" and attr in ("load", "unsafe_load", "full_load"):
                bad.append(f"{where} yaml.{attr} (use yaml.safe_load)")
            if owner == "np" and attr == "load":
                kw = {k.arg: k.value for k in node.keywords}
                if isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is True:
                    bad.append(f"{where} np.load(allow_pickle=True)")
    assert bad == []


@pytest.mark.parametrize("name", RUN_READERS)
def test_run_readers_never_instantiate_targets_from_the_run(name):
    """A run directory's config is data: a ``_target_`` in it must not choose code to run."""
    tree = ast.parse((SRC / name).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not [m for m in imported if m.split(".")[0] == "hydra"]
    methods = {attr for _, attr, _ in _calls(SRC / name)}
    functions = {
        n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    assert not (methods | functions) & {"instantiate", "_locate", "get_class", "get_method"}
    assert not functions & {"eval", "exec", "__import__"}


# -------------------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("WANDB_API_KEY", True),
        ("HF_TOKEN", True),
        ("logger.wandb.api_key", True),
        ("+hf_token", True),
        ("db.password", True),
        ("aws_secret_access_key", True),
        ("client_secret", True),
        ("data.tokenizer", False),
        ("pad_token_id", False),
        ("TOKENIZERS_PARALLELISM", False),
        ("max_tokens", False),
        ("encoder.hidden", False),
    ],
)
def test_secret_key_names(key, secret):
    assert is_secret_key(key) is secret


def test_redact_masks_keys_overrides_urls_and_env_values():
    secrets = env_secrets({"HF_TOKEN": "hf_abcdef123", "HOME": "/home/me"})
    assert secrets == ["hf_abcdef123"]
    cfg = {
        "logger": {"wandb": {"api_key": "k-123", "project": "p"}},
        "mlflow": {"tracking_uri": "https://bob:pa55word@mlflow.example.com/x"},
        "note": "token is hf_abcdef123",
        "data": {"tokenizer": "/models/tok", "token_list": ["a", "b"]},
        "empty_token": None,
    }
    clean = redact(cfg, secrets)
    assert clean["logger"]["wandb"] == {"api_key": MASK, "project": "p"}
    assert clean["mlflow"]["tracking_uri"] == f"https://bob:{MASK}@mlflow.example.com/x"
    assert clean["note"] == f"token is {MASK}"
    assert clean["data"] == cfg["data"] and clean["empty_token"] is None
    assert redact_text("+hf_token=abc,encoder=tiny", []) == f"+hf_token={MASK},encoder=tiny"
    assert redact_argv(["train.py", "logger.wandb.api_key=xyz", "encoder=tiny"])[1:] == [
        f"logger.wandb.api_key={MASK}",
        "encoder=tiny",
    ]


def test_redact_yaml_files_rewrites_only_files_with_secrets(tmp_path):
    hydra = tmp_path / ".hydra"
    hydra.mkdir()
    (hydra / "config.yaml").write_text(
        "hf_token: abc123\nencoder:\n  hidden: 128\npath: ${paths.data_dir}/x\n"
    )
    (hydra / "overrides.yaml").write_text("- +hf_token=abc123\n- encoder=tiny\n")
    clean = "task_name: train\nseed: 42\n"
    (hydra / "hydra.yaml").write_text(clean)
    changed = redact_yaml_files(hydra)
    assert sorted(p.name for p in changed) == ["config.yaml", "overrides.yaml"]
    assert yaml.safe_load((hydra / "config.yaml").read_text()) == {
        "hf_token": MASK,
        "encoder": {"hidden": 128},
        "path": "${paths.data_dir}/x",
    }
    assert yaml.safe_load((hydra / "overrides.yaml").read_text()) == [f"+hf_token={MASK}", "encoder=tiny"]
    assert (hydra / "hydra.yaml").read_text() == clean
