"""pyproject.toml, environment.yml and the Makefile tell the same story."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _conda_specs() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name = re.split(r"[<>=! ]", dep, 1)[0]
            specs[name.lower()] = dep[len(name):].strip()
    return specs


def test_environment_yml_lists_every_learner_dependency_with_the_same_bounds():
    conda = _conda_specs()
    for line in _pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        name = req.name.lower()
        assert name in conda, f"{req.name} is in pyproject.toml but not in environment.yml"
        assert conda[name].replace(" ", "") == str(req.specifier).replace(" ", "") or \
            set(conda[name].replace(" ", "").split(",")) == set(str(req.specifier).split(",")), \
            f"{req.name}: pyproject says {req.specifier!s}, environment.yml says {conda[name]}"


def test_environment_yml_has_nothing_pyproject_lacks():
    names = {Requirement(d).name.lower() for d in _pyproject()["project"]["dependencies"]}
    extra = set(_conda_specs()) - names - {"python", "pip", "nodejs"}
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"


def test_environment_yml_installs_this_package_and_python_bounds_agree():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_part
    assert _conda_specs()["python"] == _pyproject()["project"]["requires-python"]


def test_grpc_packages_move_in_step():
    deps = {Requirement(d).name: Requirement(d).specifier for d in _pyproject()["project"]["dependencies"]}
    grpc_family = {n: str(s) for n, s in deps.items() if n.startswith("grpcio")}
    assert len(set(grpc_family.values())) == 1, f"grpc packages must share one bound: {grpc_family}"


def test_console_script_and_extras():
    project = _pyproject()["project"]
    assert project["scripts"]["rpclab"] == "rpclab.cli:main"
    assert {"test", "teach"} <= set(project["optional-dependencies"])
