"""``pip install`` of fitq without extras, as a user on a laptop does it: a
fresh virtual environment, a non-editable install of this working tree with
constraints.txt, then the client and the CLI against a running fitq.

What it must give: ``from fitq import Client`` and the ``fitq`` command,
nothing of the server (no torch, SQLAlchemy, pyarrow or FastAPI), and nothing
installed under a generic top-level name such as ``service`` or ``worker``.

It needs the package index (pip fetches setuptools and the client's few
dependencies) and takes a minute or two.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.stack import Stack, fitq_up

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "constraints.txt", "service", "worker")
SERVER_ONLY = ("torch", "sqlalchemy", "pyarrow", "fastapi")
INSTALL_TIMEOUT_SECONDS = 600
RUN_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Venv:
    folder: Path

    @property
    def python(self) -> str:
        return str(self.folder / "bin" / "python")

    @property
    def fitq(self) -> str:
        return str(self.folder / "bin" / "fitq")

    def site_packages(self) -> Path:
        found = list(self.folder.glob("lib/python3*/site-packages"))
        assert len(found) == 1, found
        return found[0]

    def run(self, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        """``args`` with only this venv on PATH and no FITQ_* but ``env``."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("FITQ_", "PYTHON"))}
        clean["PATH"] = f"{self.folder / 'bin'}{os.pathsep}{clean.get('PATH', '')}"
        return subprocess.run(
            args,
            cwd=cwd,
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
        )


def copy_sources(target: Path) -> Path:
    """This working tree's package sources, without caches or build output."""
    target.mkdir(parents=True)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=junk)
        else:
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with fitq installed from a copy of this tree, no extras."""
    base = tmp_path_factory.mktemp("client-install")
    src = copy_sources(base / "src")
    made = Venv(base / "venv")
    subprocess.run(
        [sys.executable, "-m", "venv", str(made.folder)], check=True, timeout=RUN_TIMEOUT_SECONDS
    )
    install = subprocess.run(
        [made.python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(src / "constraints.txt"), str(src)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    return made


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A running fitq (``fitq up`` from the development environment)."""
    with fitq_up(tmp_path_factory.mktemp("live")) as stack:
        yield stack


class TestWhatIsInstalled:
    def test_nothing_of_the_server(self, venv: Venv, tmp_path: Path) -> None:
        probe = (
            "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
        )
        found = venv.run([venv.python, "-c", probe, *SERVER_ONLY], cwd=tmp_path)
        assert found.returncode == 0, found.stderr
        assert found.stdout.strip() == "[]", f"installed without extras: {found.stdout}"

    def test_nothing_under_a_generic_top_level_name(self, venv: Venv) -> None:
        site = venv.site_packages()
        assert (site / "fitq" / "__init__.py").is_file()
        for name in ("service", "worker"):
            assert not (site / name).exists(), f"site-packages/{name}"

    def test_the_client_imports(self, venv: Venv, tmp_path: Path) -> None:
        done = venv.run([venv.python, "-c", "from fitq import Client; print(Client)"], tmp_path)
        assert done.returncode == 0, done.stderr

    def test_the_cli_starts(self, venv: Venv, tmp_path: Path) -> None:
        done = venv.run([venv.fitq, "--help"], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "jobs" in done.stdout and "submit" in done.stdout


class TestAgainstARunningFitq:
    def test_the_cli_submits_and_lists_jobs(self, venv: Venv, live: Stack, tmp_path: Path) -> None:
        where = {"FITQ_API_URL": live.url, "FITQ_API_KEY": live.key}
        spec, data = ROOT / "examples" / "digits-mlp.json", ROOT / "examples" / "digits.csv"
        submit = [venv.fitq, "submit", str(spec), "--data", str(data), "--json"]
        submitted = venv.run(submit, cwd=tmp_path, **where)
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["id"]

        listed = venv.run([venv.fitq, "jobs", "--json"], cwd=tmp_path, **where)
        assert listed.returncode == 0, listed.stderr
        assert job_id in [job["id"] for job in json.loads(listed.stdout)]

    def test_the_client_lists_jobs(self, venv: Venv, live: Stack, tmp_path: Path) -> None:
        code = (
            "import os; from fitq import Client\n"
            "with Client(os.environ['FITQ_API_URL'], os.environ['FITQ_API_KEY']) as c:\n"
            "    print(len(c.jobs()))\n"
        )
        where = {"FITQ_API_URL": live.url, "FITQ_API_KEY": live.key}
        done = venv.run([venv.python, "-c", code], cwd=tmp_path, **where)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) >= 0
