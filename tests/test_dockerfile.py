"""The image's invariants, read from the Dockerfile (no Docker needed): an
unprivileged user, a health check on /healthz, dependencies installed from
pyproject.toml in a build stage with no packaging tools left in the final
one, static files collected for whitenoise, and the web or worker side
chosen by the command."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "libpq-dev", "python3-dev", "cc ")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, rest))
    return result


@pytest.fixture
def final():
    return stages()[-1]


def args_of(stage, keyword: str) -> list[str]:
    return [rest for key, rest in stage if key == keyword]


def test_the_image_is_built_in_two_stages_from_pyproject():
    build, *_ = stages()
    assert len(stages()) >= 2
    copied = " ".join(args_of(build, "COPY"))
    assert "pyproject.toml" in copied
    runs = " ".join(args_of(build, "RUN"))
    assert re.search(r"pip .*install .*\s\.($|\s)", runs), runs
    # Every package pyproject.toml installs is in the build context of both stages.
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in includes["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert (ROOT / package).is_dir()
        for stage in stages():
            assert any(f"{package} " in f"{c} " for c in args_of(stage, "COPY")), package


def test_the_final_stage_has_no_build_tools(final):
    runs = " ".join(args_of(final, "RUN"))
    assert "apt-get install" not in runs and "apk add" not in runs
    assert not any(tool in runs for tool in BUILD_TOOLS)
    assert not re.search(r"pip\s+(--\S+\s+)*install", runs), (
        "nothing is installed in the final stage"
    )
    assert "pip uninstall" in runs  # nor is pip itself left there
    assert any("--from=build" in c and "/opt/venv" in c for c in args_of(final, "COPY"))


def test_it_runs_as_an_unprivileged_user(final):
    users = args_of(final, "USER")
    assert users, "no USER: the service would run as root"
    name = users[-1].split(":")[0]
    assert name not in ("root", "0")
    assert "useradd" in " ".join(args_of(final, "RUN")) and name in " ".join(args_of(final, "RUN"))
    # USER comes before the command, after everything that needs root.
    keywords = [key for key, _ in final]
    assert keywords.index("USER") > max(i for i, key in enumerate(keywords) if key == "RUN")


def test_the_health_check_asks_healthz_on_the_exposed_port(final):
    from tests.test_ops_endpoints import wsgi_get

    (check,) = args_of(final, "HEALTHCHECK")
    (port,) = args_of(final, "EXPOSE")
    assert f"127.0.0.1:{port}/healthz" in check
    assert wsgi_get("/healthz")[0] == "200 OK"  # answered by the application


def test_static_files_are_collected_for_whitenoise(final):
    assert "collectstatic" in " ".join(args_of(final, "RUN"))
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE


def test_the_command_chooses_the_web_or_the_worker_side(final):
    (entrypoint,) = args_of(final, "ENTRYPOINT")
    (command,) = args_of(final, "CMD")
    assert shlex.split(entrypoint.strip("[]").replace(",", " ")) == ["python", "manage.py"]
    assert command.startswith('["runservice"') and "0.0.0.0:8000" in command
    header = (ROOT / "Dockerfile").read_text()
    commands = get_commands()
    for side in ("runservice", "runweb", "runworker"):
        assert side in commands, side
        assert f"IMAGE {side}" in header or side == "runservice"
