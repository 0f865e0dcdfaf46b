"""The requirements of fitq with some extras, from pyproject.toml alone.

    python docker/requirements.py pyproject.toml server s3 > requirements.txt

The Dockerfile installs these in a layer of their own, before fitq's code, so
that a code change does not reinstall the dependencies. The base dependencies
come first, then each extra's; an extra that names fitq itself
(``fitq[server]``) is expanded in place. Standard library only: it runs in the
bare Python image.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SELF_REFERENCE = re.compile(r"^\s*(?P<name>[A-Za-z0-9._-]+)\s*\[(?P<extras>[^\]]*)\]\s*$")


def requirements(pyproject: dict, extras: list[str]) -> list[str]:  # type: ignore[type-arg]
    """Base dependencies plus each extra's, self-references expanded, each line once."""
    project = pyproject["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        if extra not in optional:
            raise SystemExit(f"{project['name']} has no extra {extra!r}")
        seen.add(extra)
        for line in optional[extra]:
            match = SELF_REFERENCE.match(line)
            if match and match["name"] == project["name"]:
                for inner in match["extras"].split(","):
                    add(inner.strip())
            elif line not in found:
                found.append(line)

    for extra in extras:
        add(extra)
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(f"usage: {argv[0]} PYPROJECT [EXTRA …]", file=sys.stderr)
        return 2
    pyproject = tomllib.loads(Path(argv[1]).read_text())
    print("\n".join(requirements(pyproject, argv[2:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
