"""The one resolver of server and key (``client/config.py``): its order
(arguments, environment, ``fitq login``'s file, ``fitq up``'s key), the file's
permissions and atomic write, and that the file's key goes only to its own URL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fitq.service.client import Client, config

REMOTE = "https://fitq.example.org"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No FITQ_* from the caller; a config folder and a working directory of our own."""
    for name in ("FITQ_API_URL", "FITQ_API_KEY", "FITQ_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


class TestFile:
    def test_save_writes_0600_in_a_0700_folder_and_load_reads_it(self, isolated: Path) -> None:
        path = config.save(REMOTE + "/", 'fitq_k"ey')
        assert path == isolated / "xdg" / "fitq" / "config.toml"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert config.load() == (REMOTE, 'fitq_k"ey')

    def test_save_replaces_and_leaves_no_temporary_file(self) -> None:
        config.save(REMOTE, "old")
        path = config.save(REMOTE, "new")
        assert config.load() == (REMOTE, "new")
        assert [p.name for p in path.parent.iterdir()] == ["config.toml"]

    def test_without_xdg_it_lives_under_home(
        self, monkeypatch: pytest.MonkeyPatch, isolated: Path
    ) -> None:
        monkeypatch.delenv("XDG_CONFIG_HOME")
        monkeypatch.setenv("HOME", str(isolated / "home"))
        assert config.config_path() == isolated / "home" / ".config" / "fitq" / "config.toml"

    def test_remove_says_whether_there_was_one(self) -> None:
        assert config.remove() is False
        config.save(REMOTE, "k")
        assert config.remove() is True and config.load() is None

    def test_a_broken_file_is_a_clear_error(self) -> None:
        config.save(REMOTE, "k")
        config.config_path().write_text("url = [")
        with pytest.raises(ValueError, match="fitq login"):
            config.resolve()


class TestOrder:
    def test_nothing_set_is_the_local_server_without_a_key(self) -> None:
        found = config.resolve()
        assert (found.url, found.api_key) == (config.DEFAULT_URL, None)

    def test_fitq_up_key_is_found_in_dot_fitq_or_fitq_home(
        self, monkeypatch: pytest.MonkeyPatch, isolated: Path
    ) -> None:
        Path(".fitq").mkdir()
        Path(".fitq/api_key").write_text("fitq_local\n")
        assert config.resolve().api_key == "fitq_local"
        home = isolated / "elsewhere"
        home.mkdir()
        (home / "api_key").write_text("fitq_home\n")
        monkeypatch.setenv("FITQ_HOME", str(home))
        assert config.resolve().api_key == "fitq_home"

    def test_the_login_file_comes_before_fitq_up_key(self) -> None:
        Path(".fitq").mkdir()
        Path(".fitq/api_key").write_text("fitq_local\n")
        config.save(REMOTE, "fitq_stored")
        found = config.resolve()
        assert (found.url, found.api_key) == (REMOTE, "fitq_stored")

    def test_environment_comes_before_the_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        config.save(REMOTE, "fitq_stored")
        monkeypatch.setenv("FITQ_API_KEY", "fitq_env")
        assert config.resolve().api_key == "fitq_env"
        monkeypatch.setenv("FITQ_API_URL", "http://other:1/")
        assert config.resolve().url == "http://other:1"

    def test_arguments_come_first(self, monkeypatch: pytest.MonkeyPatch) -> None:
        config.save(REMOTE, "fitq_stored")
        monkeypatch.setenv("FITQ_API_URL", "http://env:1")
        monkeypatch.setenv("FITQ_API_KEY", "fitq_env")
        found = config.resolve("http://arg:2", "fitq_arg")
        assert (found.url, found.api_key, found.key_source) == (
            "http://arg:2",
            "fitq_arg",
            "argument",
        )

    def test_the_stored_key_goes_only_to_its_own_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        config.save(REMOTE, "fitq_stored")
        assert config.resolve(REMOTE + "/").api_key == "fitq_stored"
        assert config.resolve("http://someone-else:8000").api_key is None
        monkeypatch.setenv("FITQ_API_URL", "http://someone-else:8000")
        assert config.resolve().api_key is None


def test_client_without_arguments_uses_the_login_file() -> None:
    config.save(REMOTE, "fitq_stored")
    with Client() as client:
        assert client.url == REMOTE
        assert client._http.headers["Authorization"] == "Bearer fitq_stored"
