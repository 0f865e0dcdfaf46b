"""The documents that ship with the repository stand alone: they cite nothing
outside it, they say how a figure was taken rather than who took it, the
README's install path names what a fresh host gets, and the deployment guide
names the images the compose file runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    *(ROOT / "docs" / n for n in ("deployment.md", "reliability.md", "performance.md")),
]
OUTSIDE = re.compile(r"SPEC\s*§|SPEC's|\.\./shared|shared/SPEC|SPEC\.md")
WHO = re.compile(r"engineers'|\b(?:I|we) (?:measured|ran|took)\b|\bour (?:machine|runs?)\b", re.I)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_cites_nothing_outside_the_repository(doc: Path) -> None:
    found = OUTSIDE.findall(doc.read_text())
    assert not found, f"{doc.name}: {found}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_says_how_not_who(doc: Path) -> None:
    found = WHO.findall(doc.read_text())
    assert not found, f"{doc.name}: {found}"


class TestReadme:
    text = (ROOT / "README.md").read_text()

    def test_fitq_is_not_installed_from_pypi(self) -> None:
        assert not re.search(r"pip install (?:-U )?fitq\b(?!\S)", self.text)
        assert "git+" in self.text and "-c constraints.txt" in self.text

    def test_the_torch_build_of_each_path_is_named(self) -> None:
        assert "CUDA build" in self.text and "CPU build" in self.text
        assert "download.pytorch.org/whl/cpu" in self.text

    def test_the_client_example_defines_its_key_first(self) -> None:
        example = self.text[self.text.index("from fitq import Client") :]
        assert example.index("api_key =") < example.index("Client(")

    def test_the_two_commands(self) -> None:
        assert "scripts/up " in self.text and "scripts/test " in self.text


def test_the_deployment_guide_names_the_images_compose_runs() -> None:
    guide = (ROOT / "docs" / "deployment.md").read_text()
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        assert f"`{name}`" in guide, name
        if "build" not in service:
            assert service["image"] in guide, service["image"]
