"""pyproject.toml, environment.yml and the Makefile tell the same story."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
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
            name = re.split(r"[<>=! ]", dep, maxsplit=1)[0]
            specs[name.lower()] = dep[len(name) :].strip()
    return specs


def test_environment_yml_lists_every_learner_dependency_with_the_same_bounds():
    conda = _conda_specs()
    for line in _pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        name = req.name.lower()
        assert name in conda, f"{req.name} is in pyproject.toml but not in environment.yml"
        assert conda[name].replace(" ", "") == str(req.specifier).replace(" ", "") or set(
            conda[name].replace(" ", "").split(",")
        ) == set(str(req.specifier).split(",")), (
            f"{req.name}: pyproject says {req.specifier!s}, environment.yml says {conda[name]}"
        )


def test_environment_yml_has_nothing_pyproject_lacks():
    names = {Requirement(d).name.lower() for d in _pyproject()["project"]["dependencies"]}
    extra = set(_conda_specs()) - names - set(_test_extra()) - {"python", "pip", "nodejs"}
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"


def _test_extra() -> dict[str, str]:
    reqs = (Requirement(d) for d in _pyproject()["project"]["optional-dependencies"]["test"])
    return {r.name.lower(): str(r.specifier) for r in reqs}


def test_a_conda_user_can_prove_the_notebooks_run_with_the_test_extras_bounds():
    """`pytest --nbval-lax notebooks/` works inside the conda/Binder environment."""
    conda, test = _conda_specs(), _test_extra()
    for name in ("pytest", "nbval"):
        assert name in conda, f"environment.yml needs {name} (from the test extra)"
    for name in set(conda) & set(test):
        assert set(conda[name].replace(" ", "").split(",")) == set(test[name].split(",")), (
            f"{name}: the test extra says {test[name]}, environment.yml says {conda[name]}"
        )


def test_environment_yml_installs_this_package_and_python_bounds_agree():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_part
    assert _conda_specs()["python"] == _pyproject()["project"]["requires-python"]


def test_grpc_packages_move_in_step():
    deps = {
        Requirement(d).name: Requirement(d).specifier
        for d in _pyproject()["project"]["dependencies"]
    }
    grpc_family = {n: str(s) for n, s in deps.items() if n.startswith("grpcio")}
    assert len(set(grpc_family.values())) == 1, f"grpc packages must share one bound: {grpc_family}"


def test_console_script_and_extras():
    project = _pyproject()["project"]
    assert project["scripts"]["rpclab"] == "rpclab.cli:main"
    assert {"test", "teach"} <= set(project["optional-dependencies"])


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (make installs it into .venv)")
    return uv


def test_an_installed_wheel_finds_its_protos_without_the_source_tree(tmp_path):
    """A non-editable install carries protos/ in <prefix>/share/rpclab/protos, and rpclab finds it
    there."""
    uv = _uv()
    source = tmp_path / "source"
    for part in ("lib", "protos"):
        shutil.copytree(
            ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("rpclab-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            Path(name).name for name in archive.namelist() if "/data/share/rpclab/protos/" in name
        }
    assert shipped == {
        p.name for p in (ROOT / "protos").iterdir() if p.suffix in (".proto", ".thrift")
    }

    # A venv with the wheel installed and, for its dependencies only, this environment's packages.
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "zz_rpclab_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [uv, "pip", "install", "--no-deps", "--python", str(python), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    check = (
        "from rpclab.grpcstack import protos; from rpclab.adapters import thrift; "
        "print(protos.__file__); print(protos.protos_dir()); "
        "print(protos.load('kv')[0].GetRequest.__name__); "
        "print(thrift.THRIFT_FILE.is_file())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RPCLAB_PROTOS", "PYTHONPATH")}
    out = subprocess.run(
        [str(python), "-c", check],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    ).stdout.split("\n")
    assert out[0].startswith(str(site))  # the installed copy, not this source tree
    assert Path(out[1]) == venv / "share" / "rpclab" / "protos"
    assert out[2:4] == ["GetRequest", "True"]
