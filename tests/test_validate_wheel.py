"""A non-editable wheel carries the schema: installed elsewhere, run from elsewhere, it validates.

Slow-ish (builds a wheel with pip, ~5-15 s) but part of the default run: the
schema living outside the package is exactly what an editable install hides.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).parent.parent
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    wheels = tmp_path_factory.mktemp("wheels")
    target = tmp_path_factory.mktemp("site")
    subprocess.run([*PIP, "wheel", "--no-deps", "-w", str(wheels), str(REPO)],
                   check=True, timeout=120)
    (wheel,) = wheels.glob("swarm_launch-*.whl")
    subprocess.run([*PIP, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=60)
    return target


def run_installed(site: pathlib.Path, cwd: pathlib.Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, text=True,
                            capture_output=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.timeout(180)
def test_wheel_ships_the_schema_inside_the_package(
    installed_wheel: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    out = run_installed(installed_wheel, tmp_path, (
        "import swarm_launch.spec as s, importlib.resources as r; "
        "print(s.__file__); print(s.schema()['$schema']); "
        "print(r.files('swarm_launch').joinpath('_data/swarm.schema.json').is_file())"
    ))
    module_file, draft, packaged = out.splitlines()
    assert module_file.startswith(str(installed_wheel))
    assert draft == "https://json-schema.org/draft/2020-12/schema"
    assert packaged == "True"


@pytest.mark.timeout(180)
def test_installed_wheel_validates_an_example_from_another_directory(
    installed_wheel: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    demo = REPO / "examples" / "demo.yaml"
    out = run_installed(installed_wheel, tmp_path, (
        "import sys; from swarm_launch.cli import main; "
        f"sys.argv = ['swarm-launch', 'validate', {str(demo)!r}]; main()"
    ))
    assert out == f"{demo}: ok\n"


@pytest.mark.timeout(180)
def test_wheel_ships_the_perl_and_c_log_writers(installed_wheel: pathlib.Path,
                                               tmp_path: pathlib.Path) -> None:
    out = run_installed(installed_wheel, tmp_path, (
        "import os; from swarm_launch import logpipe; "
        "print(logpipe.PERL_WRITER); print(os.path.isfile(logpipe.PERL_WRITER)); "
        "print(logpipe.C_WRITER); print(os.path.isfile(logpipe.C_WRITER))"
    ))
    perl, perl_exists, c_source, c_exists = out.splitlines()
    assert perl.startswith(str(installed_wheel)) and perl_exists == "True"
    assert c_source.startswith(str(installed_wheel)) and c_exists == "True"
