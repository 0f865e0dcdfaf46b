"""The web stack's security fixes: pyproject.toml pins the patched minimums of
starlette and python-multipart (in the ``server`` extra, where the web stack
is), and the installed versions satisfy them."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PATCHED = {
    # the newest advisory fixed in each (see the comment in pyproject.toml)
    "starlette": Version("1.3.1"),  # GHSA-82w8-qh3p-5jfq (form parser limits)
    "python-multipart": Version("0.0.31"),  # CVE-2026-53540
}


def pinned() -> dict[str, Requirement]:
    """Every requirement of the project, its extras' included, by name."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    deps = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    return {(r := Requirement(d)).name: r for d in deps}


@pytest.mark.parametrize("name", sorted(PATCHED))
def test_the_minimum_pinned_is_the_patched_version(name: str) -> None:
    requirement = pinned()[name]
    minimums = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert minimums and max(minimums) >= PATCHED[name], str(requirement)


@pytest.mark.parametrize("name", sorted(PATCHED))
def test_the_installed_version_satisfies_the_pin(name: str) -> None:
    installed = Version(version(name))
    assert installed in pinned()[name].specifier
    assert installed >= PATCHED[name]
