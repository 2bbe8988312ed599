"""The container image, tested without a Docker engine: the wheel is built from what the
Dockerfile copies, installed with the Dockerfile's extras into a clean venv, and its entrypoint
runs (``--version``, ``--help``, sharded runs against the installed mock server, merged). The
compose rehearsal is checked against the CLI, and run where a Docker daemon answers."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from async_updater import __version__
from async_updater.cli import build_parser

from .test_readme import SHARED_LIMIT, parse_run_args, run_options

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
BUILD_TIMEOUT = 300
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 120


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per ``FROM`` stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def dockerfile_extras() -> str:
    (extras,) = [
        line.split("=", 1)[1] for line in dockerfile_stages()[-1] if line.startswith("ARG EXTRAS=")
    ]
    return extras


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(
        self, *argv: str, timeout: float = RUN_TIMEOUT, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a program from the venv in a folder outside the source tree, so only the
        installed package can be imported."""
        return subprocess.run(
            argv, cwd=self.workdir, env=clean_env(**env), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV")) and k != "PIP_REQUIRE_VIRTUALENV"
    }
    empty = Path(os.devnull)
    env.update(
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    env.update(extra)
    return env


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode == 0, f"{what} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built as the Dockerfile's build stage does, installed as its final stage does."""
    base = tmp_path_factory.mktemp("image")
    src = base / "src"
    src.mkdir()
    # The build context holds exactly what the build stage copies.
    for line in dockerfile_stages()[0]:
        if line.startswith("COPY ") and "--from" not in line:
            for name in line.split()[1:-1]:
                origin = ROOT / name
                if origin.is_dir():
                    shutil.copytree(
                        origin, src / name, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(origin, src / name)
    dist = base / "wheels"
    _check(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(src)],
            env=clean_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT,
        ),
        "building the wheel",
    )  # fmt: skip
    (wheel,) = dist.glob("async_updater-*.whl")
    venv = base / "venv"
    _check(
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)],
            env=clean_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT,
        ),
        "creating the venv",
    )  # fmt: skip
    _check(
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
             f"{wheel}[{dockerfile_extras()}]"],
            env=clean_env(), capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
        ),
        "installing the wheel with its extras",
    )  # fmt: skip
    workdir = base / "work"
    workdir.mkdir()
    return Installed(wheel, venv, workdir)


# -- the Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_installs_the_wheel_with_progress_redis_and_fast_and_runs_as_non_root() -> None:
    final = dockerfile_stages()[-1]
    assert set(dockerfile_extras().split(",")) >= {"progress", "redis", "fast"}
    assert final[0].startswith("FROM python:") and final[0].endswith("-slim")
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0  # numeric, so runAsNonRoot can verify it
    assert 'ENTRYPOINT ["async-updater"]' in final


def test_dockerignore_lets_in_only_what_the_dockerfile_copies() -> None:
    rules = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {
        name.rstrip("/")
        for line in dockerfile_stages()[0]
        if line.startswith("COPY ") and "--from" not in line
        for name in line.split()[1:-1]
    }
    assert allowed == copied


# -- what the image installs ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_holds_every_module_of_the_package_and_nothing_else(
    installed: Installed,
) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    package = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "async_updater").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert package <= names
    assert {n.split("/")[0] for n in names} == {
        "async_updater",
        f"async_updater-{__version__}.dist-info",
    }


@pytest.mark.slow
def test_the_installed_entrypoint_prints_its_version_and_help(installed: Installed) -> None:
    version = installed.run(installed.bin("async-updater"), "--version")
    _check(version, "--version")
    assert version.stdout.strip() == f"async-updater {__version__}"
    help_ = installed.run(installed.bin("async-updater"), "--help")
    _check(help_, "--help")
    for command in ("run", "report", "merge-reports", "mock-server"):
        assert re.search(rf"^\s+{command}\s", help_.stdout, re.M), command


@pytest.mark.slow
def test_the_installed_package_and_its_extras_come_from_the_venv(installed: Installed) -> None:
    done = installed.run(
        installed.bin("python"),
        "-c",
        "import async_updater, rich, redis.asyncio, uvloop; print(async_updater.__file__)",
    )
    _check(done, "importing the extras")
    assert Path(done.stdout.strip()).is_relative_to(installed.venv)


@pytest.fixture
def installed_mock(installed: Installed) -> Iterator[str]:
    """The mock server of the installed package, in its own process; yields its URL."""
    proc = subprocess.Popen(
        [
            installed.bin("async-updater"), "mock-server", "--port", "0",
            "--rate-limit", "300", "--latency-ms", "2", "--duration", str(RUN_TIMEOUT),
            "--access-key", "AKIDIMAGE", "--secret-key", "image-secret",
        ],
        cwd=installed.workdir, env=clean_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), line
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_the_installed_entrypoint_runs_two_shards_and_merges_them(
    installed: Installed, installed_mock: str
) -> None:
    work = installed.workdir
    users = work / "users.csv"
    _check(
        installed.run(installed.bin("python"), "-m", "async_updater.testing.sample", str(users),
                      "--users", "150", "--accounts", "1"),
        "writing users",
    )  # fmt: skip
    keys = {"AWS_ACCESS_KEY_ID": "AKIDIMAGE", "AWS_SECRET_ACCESS_KEY": "image-secret"}
    for k in range(2):
        done = installed.run(
            installed.bin("async-updater"), "run", str(users), "--shard", f"{k}/2",
            "--endpoint-url", installed_mock, "--report", str(work / f"shard-{k}.csv"),
            "--no-progress", "--overwrite",
            **keys,
        )  # fmt: skip
        _check(done, f"shard {k}/2")
    merged = work / "merged.csv"
    done = installed.run(
        installed.bin("async-updater"), "merge-reports", str(merged),
        str(work / "shard-0.csv"), str(work / "shard-1.csv"),
    )  # fmt: skip
    _check(done, "merge-reports")
    rows = merged.read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 150 and all(",updated,204," in row for row in rows)
    # One account, yet both shards had work: the split is by user.
    for k in range(2):
        assert len((work / f"shard-{k}.csv").read_text().splitlines()) > 1 + 150 // 4
    with urllib.request.urlopen(f"{installed_mock}/_mock/applied", timeout=10) as response:
        applied: list[list[Any]] = json.load(response)
    assert len(applied) == 150 and {count for *_, count in applied} == {1}


# -- the compose rehearsal -----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def shard_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if name.startswith("shard-")}


def test_compose_shards_cover_one_split_and_reach_the_loopback_mock_through_its_namespace() -> None:
    services = compose()["services"]
    mock = services["mock"]["command"]
    assert mock[0] == "mock-server"
    host, port = mock[mock.index("--host") + 1], mock[mock.index("--port") + 1]
    assert host == "127.0.0.1"
    shards = shard_services(services)
    count = len(shards)
    assert count >= 2
    splits = []
    for name, service in shards.items():
        assert service["network_mode"] == "service:mock", name
        assert isinstance(service["command"], list), name  # exec form: no shell between
        args, shared = parse_run_args(service["command"])
        assert shared == "redis://redis:6379/0"  # the redis service, by name
        assert args.endpoint_url == f"http://{host}:{port}"
        assert args.limit_scope == "global" and args.resume
        assert float(args.rate) == float(mock[mock.index("--rate-limit") + 1])  # full ceiling
        assert args.report == f"/work/{name}.csv"
        splits.append(args.shard)
        assert set(service["depends_on"]) == {"users", "mock", "redis"}
    assert sorted(splits) == [f"{k}/{count}" for k in range(count)]
    merge = services["merge"]
    assert merge["command"][:2] == ["merge-reports", "/work/merged.csv"]
    assert sorted(merge["command"][2:]) == sorted(f"/work/{name}.csv" for name in shards)
    assert set(merge["depends_on"]) == set(shards)
    build_parser().parse_args(merge["command"])


def _docker_compose_or_skip() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker command here: the compose rehearsal needs a Docker engine")
    info = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if info.returncode != 0:
        pytest.skip("no Docker daemon answers `docker info`: the compose rehearsal needs one")
    plugin = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if plugin.returncode != 0:
        pytest.skip("`docker compose` is not installed: the compose rehearsal needs it")
    return [docker, "compose", "--project-directory", str(ROOT), "-f", str(COMPOSE)]


def test_compose_file_is_valid_for_docker_compose() -> None:
    compose_cmd = _docker_compose_or_skip()
    done = subprocess.run(
        [*compose_cmd, "config", "--quiet"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_compose_rehearsal_updates_every_user_once_through_the_shared_limit() -> None:
    compose_cmd = _docker_compose_or_skip()
    if SHARED_LIMIT not in run_options():
        pytest.skip("the shards pass --shared-limit, which the CLI does not have yet")
    project = [*compose_cmd, "--project-name", f"au-rehearsal-{os.getpid()}"]
    env = {**os.environ, "USERS": "2000"}

    def compose_run(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*project, *argv], env=env, capture_output=True, text=True, timeout=timeout
        )

    try:
        _check(compose_run("build"), "docker compose build")
        _check(compose_run("run", "--rm", "merge"), "docker compose run merge")
        merged = compose_run(
            "run", "--rm", "--no-deps", "--entrypoint", "cat", "merge", "/work/merged.csv"
        )
        _check(merged, "reading the merged report")
        rows = list(csv.DictReader(io.StringIO(merged.stdout)))
        assert len(rows) == 2000
        assert {r["status"] for r in rows} == {"updated"}
        assert len({(r["account_id"], r["user_id"]) for r in rows}) == 2000
    finally:
        compose_run("down", "--volumes", "--remove-orphans", timeout=300)
