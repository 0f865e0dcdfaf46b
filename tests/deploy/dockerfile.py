"""Reading docker/Dockerfile: its stages and, per stage, the instructions that
matter to the tests (FROM, ENV, USER, ENTRYPOINT, CMD, HEALTHCHECK)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from tests.deploy.tools import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    found = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        found.append((keyword.upper(), args.strip()))
    return found


def stages(text: str | None = None) -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    stage: Stage | None = None
    for keyword, args in instructions(text if text is not None else DOCKERFILE.read_text()):
        if keyword == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, args
            stage = Stage(name=match.group(2) or f"stage{len(found)}", base=match.group(1))
            found[stage.name] = stage
        elif stage is not None:
            stage.instructions.append((keyword, args))
    return found


def inherited(all_stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    """The last ``keyword`` of stage ``name`` or of the stage it is built FROM."""
    stage: Stage | None = all_stages.get(name)
    while stage is not None:
        value = stage.last(keyword)
        if value is not None:
            return value
        stage = all_stages.get(stage.base)
    return None


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) ENTRYPOINT/CMD/HEALTHCHECK CMD."""
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def command_line(all_stages: dict[str, Stage], target: str) -> list[str]:
    """ENTRYPOINT + CMD of ``target``, as the container runs them."""
    entrypoint = inherited(all_stages, target, "ENTRYPOINT")
    cmd = inherited(all_stages, target, "CMD")
    assert entrypoint and cmd, target
    return exec_form(entrypoint) + exec_form(cmd)
