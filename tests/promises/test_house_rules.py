"""The house rules of the source tree, checked on the code itself (docs/architecture.md states them).

1. Config stays at the edges: nothing outside ``cli/`` imports hydra or omegaconf.
2. The run directory has one owner: its file names are spelled only in ``run/layout.py``.
3. Components say what they are: no module decides what a run, task or logger is by matching class-name
   or ``_target_`` strings.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src" / "encoderlab"
RUN_FILES = (
    "run.json",
    "run.lock",
    "metrics.json",
    "task.json",
    "label_map.json",
    "last.ckpt",
    "mlm_head.safetensors",
    "metrics.csv",
    "hparams.yaml",
    "train.log",
    "sweep.json",
    "config.yaml",
    "overrides.yaml",
    "hydra.yaml",
)
LIGHTNING_CLASSES = {"WandbLogger", "MLFlowLogger", "TensorBoardLogger", "CSVLogger", "DDPStrategy"}


def modules(exclude: tuple[str, ...] = ()) -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if not str(p.relative_to(SRC)).startswith(exclude)]


def strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant of ``path`` except docstrings."""
    tree = ast.parse(path.read_text())
    exports = {  # __all__ lists name what a package exports, not what a run is
        id(element)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
        for element in ast.walk(node.value)
    }
    docstrings = exports | {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_only_the_command_line_imports_the_config_system():
    pattern = re.compile(r"^\s*(import|from)\s+(hydra|omegaconf)\b", re.M)
    offenders = [str(p.relative_to(SRC)) for p in modules(exclude=("cli/",)) if pattern.search(p.read_text())]
    assert offenders == []


def test_run_directory_file_names_are_spelled_only_in_the_layout():
    spelled = re.compile("|".join(re.escape(name) for name in RUN_FILES))
    offenders = [
        f"{p.relative_to(SRC)}:{line}: {text!r}"
        for p in modules(exclude=("run/layout.py",))
        for line, text in strings(p)
        if spelled.search(text)
    ]
    assert offenders == []


def test_no_kind_is_decided_by_class_name_or_target_strings():
    own_classes = {
        node.name
        for p in modules()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ClassDef)
    }
    names = own_classes | LIGHTNING_CLASSES
    offenders = []
    for path in modules():
        where = path.relative_to(SRC)
        for line, text in strings(path):
            if text == "_target_" or text.rsplit(".", 1)[-1] in names:
                offenders.append(f"{where}:{line}: {text!r}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                isinstance(part, ast.Attribute) and part.attr == "__name__" for part in ast.walk(node)
            ):
                offenders.append(f"{where}:{node.lineno}: compares a __name__")
    assert offenders == []


def test_the_rules_can_fail(tmp_path):
    """The scanners above see the patterns they forbid (so an empty offender list means something)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstrings may mention run.json."""\n'
        "import omegaconf\n"
        'PATH = "metrics.json"\n'
        'def kind(cfg, task):\n    return cfg["_target_"].endswith("ClozeTask") or type(task).__name__ == "X"\n'
    )
    texts = [text for _, text in strings(sample)]
    assert "metrics.json" in texts and "_target_" in texts and "ClozeTask" in texts
    assert not any("run.json" in t for t in texts)
    assert re.search(r"^\s*(import|from)\s+(hydra|omegaconf)\b", sample.read_text(), re.M)
