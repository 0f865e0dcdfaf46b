"""Where the client and the CLI find their server and key: the one resolver.

In this order, the first that gives a value wins:

1. the arguments (``Client(url, api_key)``, ``fitq --url … --api-key …``);
2. ``FITQ_API_URL`` / ``FITQ_API_KEY``;
3. the per-user file that ``fitq login`` writes
   (``$XDG_CONFIG_HOME/fitq/config.toml``, else ``~/.config/fitq/config.toml``);
4. the key ``fitq up`` leaves in ``$FITQ_HOME/api_key`` (``./.fitq/api_key`` by
   default) and the local server ``http://127.0.0.1:8000``.

The file's key is sent only to the URL it was stored with: a URL from an argument
or the environment that names another server does not get it. Reads only the
environment and files, so it stays as light as the client.
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
"""Where ``fitq up`` listens by default."""
DEFAULT_HOME = Path(".fitq")
"""``fitq up``'s state folder when ``FITQ_HOME`` is not set."""


@dataclass(frozen=True)
class Resolved:
    """A server and the key to send it (``None``: no key found), and where each came from."""

    url: str
    api_key: str | None
    url_source: str
    key_source: str


def config_path() -> Path:
    """The per-user config file (it may not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fitq" / "config.toml"


def load() -> tuple[str, str] | None:
    """The ``(url, api_key)`` that ``fitq login`` stored, or ``None`` when there is none."""
    path = config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML ({exc}); run `fitq login` again") from exc
    url, key = data.get("url"), data.get("api_key")
    if not isinstance(url, str) or not isinstance(key, str):
        raise ValueError(f"{path} lacks url or api_key; run `fitq login` again")
    return _norm(url), key


def save(url: str, api_key: str) -> Path:
    """Store ``url`` and ``api_key`` for this user: the folder 0700, the file 0600,
    written to a temporary file beside it and renamed over it (never half-written,
    never readable by others even for a moment)."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    text = (
        "# written by `fitq login`; `fitq logout` removes it\n"
        f"url = {json.dumps(_norm(url))}\n"  # a JSON string is a TOML basic string
        f"api_key = {json.dumps(api_key)}\n"
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove() -> bool:
    """Delete the stored login; ``False`` when there was none."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True


def local_key_file() -> Path:
    """Where ``fitq up`` leaves its key (``$FITQ_HOME/api_key``)."""
    return Path(os.environ.get("FITQ_HOME") or DEFAULT_HOME) / "api_key"


def resolve(url: str | None = None, api_key: str | None = None) -> Resolved:
    """The server and key to use, by the order in this module's docstring."""
    stored = load()
    env_url, env_key = os.environ.get("FITQ_API_URL"), os.environ.get("FITQ_API_KEY")
    if url:
        chosen, url_source = _norm(url), "argument"
    elif env_url:
        chosen, url_source = _norm(env_url), "FITQ_API_URL"
    elif stored:
        chosen, url_source = stored[0], str(config_path())
    else:
        chosen, url_source = DEFAULT_URL, "default"
    if api_key:
        return Resolved(chosen, api_key, url_source, "argument")
    if env_key:
        return Resolved(chosen, env_key, url_source, "FITQ_API_KEY")
    if stored and stored[0] == chosen:
        return Resolved(chosen, stored[1], url_source, str(config_path()))
    key_file = local_key_file()
    if key_file.is_file():
        return Resolved(chosen, key_file.read_text().strip() or None, url_source, str(key_file))
    return Resolved(chosen, None, url_source, "none")


def _norm(url: str) -> str:
    return url.strip().rstrip("/")
