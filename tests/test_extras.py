"""Optional packages: each import name maps to the extra that installs it; a missing one names that extra."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib

import pytest

from encoderlab.errors import UserError
from encoderlab.extras import EXTRAS, NO_DEPS, install_hint, optional_package, require
from tests.conftest import REPO


def distribution_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[=<>!~\[; (]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def installed_closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install: themselves and what they require (optuna comes with the
    Optuna sweeper), as far as they are installed here."""
    found, pending = set(), distribution_names(requirements)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        try:
            needs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        pending |= distribution_names([r for r in needs if "extra ==" not in r])
    return found


def test_every_optional_package_is_brought_by_the_extra_named_for_it():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = importlib.metadata.packages_distributions()
    for module, extra in EXTRAS.items():
        assert extra in extras, (module, extra)
        top = module.split(".")[0]
        providers = {d.lower().replace("_", "-") for d in installed.get(top, [])}
        if not providers:
            continue  # not installed here: nothing to compare against
        if module in NO_DEPS:  # installed by itself with --no-deps; its extra brings what it needs
            assert NO_DEPS[module].split("==")[0] in providers, module
            project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
            everything = [*project["dependencies"], *(d for deps in extras.values() for d in deps)]
            wanted = distribution_names(importlib.metadata.requires(module) or []) - {"torch", "torchvision"}
            assert wanted <= installed_closure(everything), (module, wanted - installed_closure(everything))
            continue
        assert providers & installed_closure(extras[extra]), (module, extra, providers)


def test_a_package_installed_without_its_dependencies_says_how():
    assert install_hint("litdata") == (
        "pip install 'encoderlab[stream]' && pip install --no-deps litdata==0.2.76"
    )


def test_a_submodule_belongs_to_its_package():
    assert optional_package("peft.tuners.lora") == "peft"
    assert (
        optional_package("hydra_plugins.hydra_optuna_sweeper.config") == "hydra_plugins.hydra_optuna_sweeper"
    )
    assert optional_package("hydra_plugins") is None and optional_package("torch") is None
    assert install_hint("optuna.samplers") == "pip install 'encoderlab[sweeps]'"
    assert install_hint("no_such_pkg") == "pip install no-such-pkg"


def test_a_missing_package_names_what_needed_it_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # as if it were not installed
    with pytest.raises(UserError) as missing:
        require("peft", for_="adapter=lora")
    assert str(missing.value) == (
        "adapter=lora needs the optional package 'peft', which is not installed — pip install 'encoderlab[adapt]'"
    )
    with pytest.raises(UserError, match=r"encoderlab\[hub\]', or set data.train_file"):
        monkeypatch.setitem(sys.modules, "datasets", None)
        require("datasets", for_="data.hub", or_else="set data.train_file")


def test_a_package_missing_a_dependency_of_its_own_says_to_reinstall(monkeypatch, tmp_path):
    (tmp_path / "half_installed.py").write_text("import no_such_dependency_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="cannot import 'no_such_dependency_here' — reinstall it"):
        require("half_installed", for_="this")


def test_an_installed_package_is_returned():
    assert require("json", for_="reading") is importlib.import_module("json")
