"""What `pip install` puts in site-packages: everything under ``fitq``, every folder listed."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]


def _folder(package: str) -> Path:
    """The repository folder that installs as ``package`` (pyproject's package-dir)."""
    parts = package.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        if prefix in PACKAGE_DIRS:
            return ROOT / PACKAGE_DIRS[prefix] / Path(*parts[depth:])
    raise AssertionError(f"{package} has no package-dir entry")


def _package_folders() -> set[str]:
    found = set()
    for top in ("service", "worker"):
        for folder in {source.parent for source in (ROOT / top).rglob("*.py")}:
            rel = folder.relative_to(ROOT)
            if rel.parts[:2] == ("service", "_root"):
                continue
            found.add("fitq." + ".".join(rel.parts))
    return found


def test_every_package_folder_is_installed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert _package_folders() - listed == set(), "add these to [tool.setuptools] packages"


def test_every_listed_package_exists() -> None:
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        assert any(_folder(package).glob("*.py")), package


def test_nothing_installs_under_a_generic_name() -> None:
    listed = PYPROJECT["tool"]["setuptools"]["packages"]
    assert all(p == "fitq" or p.startswith("fitq.") for p in listed)
    assert PYPROJECT["project"]["scripts"]["fitq"].startswith("fitq.")


def test_torch_is_pinned_for_every_install() -> None:
    constraints = (ROOT / "constraints.txt").read_text().split()
    assert "torch==2.13.0" in constraints
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    installs = [line for line in bootstrap.splitlines() if "pip install" in line]
    pinned = ("-c constraints.txt" in line or "--upgrade pip" in line for line in installs)
    assert installs and all(pinned)
