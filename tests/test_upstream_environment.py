"""A site swaps the SKA DPD API image for ours and keeps the upstream chart's
environment (reference 5.4, 5.5): the service must use the PostgreSQL server
those variables name, and refuse to start, saying why, when it cannot,
rather than fall back to a SQLite file of its own.

Each test starts the real service (`manage.py runservice`: gunicorn and the
django-q2 worker) with an environment that has no DATABASE_URL, against a
PostgreSQL server of its own that wants a password over TCP."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from django.conf import settings

from dpd.sample_volume import build_sample_volume
from tests.service_processes import ServiceSet, ThrowawayPostgres, unavailable, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "s3cret with spaces & #"
PRODUCTION = {
    "DJANGO_ENV": "production",
    "DJANGO_SECRET_KEY": "k8Jq-3vX_pL0wZ9nR2tY7uB5cE1mH4aS6dF8gJ0kQ2xV9bN3zM7pL5rT1yW4eU6i",
    # The probe's plain HTTP to the pod; TLS ends at the ingress.
    "DJANGO_SECURE_SSL_REDIRECT": "false",
}


def chart_environment() -> dict[str, str]:
    """The process environment minus every database and Django variable of ours."""
    return {
        name: value
        for name, value in os.environ.items()
        if name != "DATABASE_URL"
        and not name.startswith(("DJANGO_", "DPD_", "SKA_DATAPRODUCT_API_", "API_", "PG"))
    }


@pytest.fixture
def server():
    try:
        postgres = ThrowawayPostgres(password=PASSWORD)
    except RuntimeError as exc:
        unavailable(str(exc))
    try:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute('CREATE SCHEMA "dpd api"')
        yield postgres
    finally:
        postgres.destroy()


@pytest.fixture
def services(tmp_path):
    volume = tmp_path / "volume"
    build_sample_volume(volume)
    started = ServiceSet(
        {**chart_environment(), "PERSISTENT_STORAGE_PATH": str(volume), "PYTHONUNBUFFERED": "1"},
        tmp_path,
    )
    try:
        yield started
    finally:
        started.stop_all()


def upstream_variables(server: ThrowawayPostgres, **changes: str) -> dict[str, str]:
    return {
        "SKA_DATAPRODUCT_API_POSTGRESQL_HOST": "127.0.0.1",
        "SKA_DATAPRODUCT_API_POSTGRESQL_PORT": str(server.port),
        "SKA_DATAPRODUCT_API_POSTGRESQL_USER": "postgres",
        "SKA_DATAPRODUCT_API_POSTGRESQL_DBNAME": "dpd",
        "SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA": "dpd api",
        **changes,
    }


def test_the_upstream_charts_variables_name_the_database_the_service_uses(
    server, services, tmp_path
):
    secrets = tmp_path / "chart-secrets"
    secrets.write_text(f'SKA_DATAPRODUCT_API_POSTGRESQL_PASSWORD="{PASSWORD}"\n')
    service = services.runservice(
        "chart",
        **PRODUCTION,
        **upstream_variables(server, SKA_DATAPRODUCT_API_SECRETS_FILE_PATH=str(secrets)),
    )

    status = service.wait_ready()
    database = status["metadata_store_status"]["database"]
    assert database == {
        "engine": "PostgreSQL",
        "host": "127.0.0.1",
        "port": server.port,
        "name": "dpd",
        "schema": "dpd api",
        "configured_by": "SKA_DATAPRODUCT_API_POSTGRESQL_*",
    }
    log = service.process.output()
    assert f"database: PostgreSQL postgres@127.0.0.1:{server.port}/dpd (schema dpd api)" in log
    assert PASSWORD not in log

    # The catalogue lives in that server, in that schema: the start-up run's products are there.
    def indexed() -> int:
        body = service.get("/status")[1]
        return body and body["metadata_store_status"]["number_of_dataproducts"]

    shown = wait_for(indexed, timeout=90, what="start-up indexing")
    with psycopg.connect(server.url) as session:
        (stored,) = session.execute(
            'SELECT count(*) FROM "dpd api".dpd_dataproduct WHERE access_group IS NULL'
        ).fetchone()
    assert stored == shown > 0


def test_a_wrong_password_stops_start_up_with_a_clear_error(server, services):
    service = services.runservice(
        "wrong-password",
        **upstream_variables(server, SKA_DATAPRODUCT_API_POSTGRESQL_PASSWORD="not-the-password"),
    )

    code = service.process.popen.wait(timeout=60)
    log = service.process.output()
    assert code != 0
    assert "cannot start" in log and "password authentication failed" in log
    assert f"127.0.0.1:{server.port}/dpd" in log
    assert "SKA_DATAPRODUCT_API_POSTGRESQL_PASSWORD" in log  # where the password came from
    assert "not-the-password" not in log
    assert "SQLite" not in log and "serving on" not in log


def test_a_schema_that_does_not_exist_stops_start_up(server, services):
    service = services.runservice(
        "no-schema",
        **upstream_variables(
            server,
            SKA_DATAPRODUCT_API_POSTGRESQL_PASSWORD=PASSWORD,
            SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA="nowhere",
        ),
    )

    assert service.process.popen.wait(timeout=60) != 0
    assert "the schema 'nowhere'" in service.process.output()


def test_the_upstreams_own_tables_in_the_schema_stop_start_up_with_advice(server, services):
    # The SKA DPD API (v0.17+) keeps its indexing state in a table of this name.
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(
            'CREATE TABLE "dpd api".dpd_indexing_state (volume_prefix TEXT PRIMARY KEY, '
            "indexing_running BOOLEAN)"
        )
    service = services.runservice(
        "upstream-tables",
        **upstream_variables(server, SKA_DATAPRODUCT_API_POSTGRESQL_PASSWORD=PASSWORD),
    )

    assert service.process.popen.wait(timeout=90) != 0
    log = service.process.output()
    assert "cannot start" in log and "dpd_indexing_state" in log
    assert "a schema of its own" in log and "Traceback" not in log


def test_production_without_a_database_refuses_to_start(services):
    service = services.runservice("no-database", **PRODUCTION)

    assert service.process.popen.wait(timeout=60) != 0
    log = service.process.output()
    assert "needs a database" in log
    assert "DATABASE_URL" in log and "SKA_DATAPRODUCT_API_POSTGRESQL_HOST" in log


def settings_of(env: dict[str, str], *names: str) -> list[str]:
    """The values a fresh process's settings take from `env`."""
    code = "from django.conf import settings as s; " + "; ".join(
        f"print(repr({name}))" for name in names
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=settings.BASE_DIR,
        env={**chart_environment(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-len(names) :]


def test_database_url_wins_over_the_upstream_variables_and_says_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'ours.sqlite3'}"
    env = {"DATABASE_URL": url, "SKA_DATAPRODUCT_API_POSTGRESQL_HOST": "db.example.org"}

    source, name, line = settings_of(
        env,
        "s.DATABASE_SOURCE",
        "s.DATABASES['default']['NAME']",
        "__import__('dpd.database_check').database_check.database_in_use_line()",
    )
    assert source == "'DATABASE_URL'"
    assert name == repr(str(tmp_path / "ours.sqlite3"))
    assert "DATABASE_URL wins" in line


def test_without_any_database_variable_development_keeps_the_embedded_sqlite_file():
    (source, engine) = settings_of({}, "s.DATABASE_SOURCE", "s.DATABASES['default']['ENGINE']")
    assert (source, engine) == ("'embedded default'", "'django.db.backends.sqlite3'")


def test_api_verbose_turns_debug_logging_on_and_log_level_still_wins():
    assert settings_of({"API_VERBOSE": "True"}, "s.LOG_LEVEL") == ["'DEBUG'"]
    assert settings_of({"API_VERBOSE": "false"}, "s.LOG_LEVEL") == ["'INFO'"]
    assert settings_of({"API_VERBOSE": "true", "LOG_LEVEL": "warning"}, "s.LOG_LEVEL") == [
        "'WARNING'"
    ]


@pytest.mark.parametrize(
    "env, named",
    [
        ({"API_ROOT_PATH": "dataproduct api"}, "API_ROOT_PATH"),
        ({"API_VERBOSE": "sometimes"}, "API_VERBOSE"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        (
            {
                "SKA_DATAPRODUCT_API_POSTGRESQL_HOST": "db",
                "SKA_DATAPRODUCT_API_POSTGRESQL_PORT": "x",
            },
            "SKA_DATAPRODUCT_API_POSTGRESQL_PORT",
        ),
        (
            {
                "SKA_DATAPRODUCT_API_POSTGRESQL_HOST": "db",
                "SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA": "",
            },
            "SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA",
        ),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env, named):
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env={**chart_environment(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and named in done.stderr
