"""pyproject.toml, environment.yml and the Makefile tell the same story."""

from __future__ import annotations

import importlib.util
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

from rpclab import doctor

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


# Not Python packages, so not in pyproject.toml: the interpreter, pip, and programs the notebooks
# run beside the kernel (Node.js for notebook 12's client, nginx for notebook 09's upstream).
NOT_PYTHON = {"python", "pip", "nodejs", "nginx"}


def test_environment_yml_has_nothing_pyproject_lacks():
    names = {Requirement(d).name.lower() for d in _pyproject()["project"]["dependencies"]}
    extra = set(_conda_specs()) - names - set(_test_extra()) - NOT_PYTHON
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
        p.name for p in (ROOT / "protos").iterdir() if p.suffix in (".proto", ".thrift", ".x")
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


# The supported Pythons: requires-python is the one source; everything else is held to it.


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f"rpclab_tools_{name}", ROOT / "tools" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check_python = _tool("check_python")


def _floor() -> tuple[int, int]:
    """requires-python's lower bound, which must have the form the Makefile's gate reads."""
    requires = _pyproject()["project"]["requires-python"]
    match = re.fullmatch(r">=(\d+)\.(\d+)", requires.replace(" ", ""))
    assert match, f'requires-python must read ">=X.Y" (tools/check_python.py), not {requires!r}'
    return int(match[1]), int(match[2])


def test_every_place_that_names_the_supported_pythons_agrees_with_requires_python():
    floor = _floor()
    text = f"{floor[0]}.{floor[1]}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert check_python.lowest_supported(pyproject) == floor  # the Makefile's gate
    assert doctor.supported_pythons() == f">={text}", "reinstall: `make install`"  # rpclab doctor
    readme = re.search(r"You need Python (\d+\.\d+) or newer", (ROOT / "README.md").read_text())
    assert readme and readme[1] == text, "README.md must say: You need Python X.Y or newer"
    assert _conda_specs()["python"] == f">={text}"  # environment.yml
    # ruff's pyupgrade rules write code for this version: never newer than the oldest supported.
    assert _pyproject()["tool"]["ruff"]["target-version"] == f"py{floor[0]}{floor[1]}"
    minors = [
        int(c.rsplit(".", 1)[1])
        for c in _pyproject()["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert minors and minors[0] == floor[1], f"the classifiers must start at {text}: {minors}"
    assert minors == list(range(minors[0], minors[0] + len(minors))), f"a gap: {minors}"


def test_the_gate_answers_an_old_python_in_one_line_and_lets_a_supported_one_through():
    assert check_python.verdict((3, 11), (3, 11, 0), "python3") is None
    assert check_python.verdict((3, 11), (3, 14, 2), "python3") is None
    said = check_python.verdict((3, 11), (3, 10, 13), "/usr/bin/python3")
    assert said.startswith("RPC Lab needs Python 3.11 or newer; /usr/bin/python3 is 3.10.13")
    assert "PYTHON=" in said and "\n" not in said
    said = check_python.verdict((3, 11), (3, 10, 13), "python3", venv=".venv")
    assert ".venv was made with Python 3.10.13" in said and "make clean" in said


def test_the_gate_runs_on_the_old_pythons_this_machine_has():
    """The gate itself must run where RPC Lab cannot: on every Python 3.6+ below the floor found."""
    floor = _floor()
    old = [
        p
        for p in _tool("other_pythons").interpreters()
        if (3, 6) <= (p.version.major, p.version.minor) < floor
    ]
    if not old:
        pytest.skip(f"this machine has no Python from 3.6 up to below {floor[0]}.{floor[1]}")
    for python in old:
        done = subprocess.run(
            [python.path, str(ROOT / "tools" / "check_python.py")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (python, done.stderr)
        assert done.stderr.count("\n") == 1 and "RPC Lab needs Python" in done.stderr, done.stderr
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_python.py")], capture_output=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr


def test_requires_python_is_the_lowest_python_every_dependency_installs_on(tmp_path):
    """A resolver must find every dependency (extras and build requirements included) at the
    floor, and must fail one minor version below it, for want of a Python: so a dependency bump
    that drops a version, or one that frees an older one, shows here.

    Asks PyPI through `uv pip compile`, because the answer depends on every release a specifier
    admits (an older fastapi, matplotlib, ... may support a Python the installed one does not),
    which no installed metadata tells. Skips when PyPI cannot be reached, unless
    RPCLAB_REQUIRE_PYPI=1 (CI sets it)."""
    uv = _uv()
    floor = _floor()
    pyproject = _pyproject()
    project = pyproject["project"]
    requirements = [
        *pyproject["build-system"]["requires"],
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    (tmp_path / "requirements.in").write_text("\n".join(requirements) + "\n")

    def resolve(minor: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [uv, "pip", "compile", "requirements.in", "--no-header", "--no-python-downloads"]
            + ["--python-version", f"{floor[0]}.{minor}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    at = resolve(floor[1])
    if at.returncode != 0 and re.search(r"Failed to fetch|Request failed|dns error", at.stderr):
        reason = f"PyPI cannot be reached: {at.stderr.strip().splitlines()[0]}"
        if os.environ.get("RPCLAB_REQUIRE_PYPI") == "1":
            pytest.fail(reason + " (RPCLAB_REQUIRE_PYPI=1)")
        pytest.skip(reason)
    text = f"{floor[0]}.{floor[1]}"
    assert at.returncode == 0, f"the dependencies do not install on Python {text}: {at.stderr}"
    below = resolve(floor[1] - 1)
    if below.returncode == 0:
        pytest.fail(
            f"every dependency installs on Python {floor[0]}.{floor[1] - 1} too: "
            "lower requires-python (and what the tests above hold to it)"
        )
    assert "No solution found" in below.stderr and "depends on Python>=" in below.stderr, (
        below.stderr
    )
