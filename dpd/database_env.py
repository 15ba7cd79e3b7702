"""Which database the service uses, as the environment says.

Imported by dpd/settings.py before Django is set up, so nothing here touches
Django's settings or connections. Three sources, first match wins:

1. `DATABASE_URL` (ours);
2. the SKA DPD API chart's `SKA_DATAPRODUCT_API_POSTGRESQL_*` variables
   (reference 5.4 and 5.5), so that a site swapping the upstream image for
   ours keeps its database without a new variable;
3. the embedded SQLite file, outside production only: a pod that silently
   got a SQLite file of its own would lose its annotations at every restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

UPSTREAM = "SKA_DATAPRODUCT_API_POSTGRESQL_"
UPSTREAM_HOST = UPSTREAM + "HOST"
UPSTREAM_PASSWORD = UPSTREAM + "PASSWORD"
SECRETS_FILE = "SKA_DATAPRODUCT_API_SECRETS_FILE_PATH"

FROM_URL = "DATABASE_URL"
FROM_UPSTREAM = UPSTREAM + "*"
EMBEDDED = "embedded default"


def secrets_file_values(path: Path) -> dict[str, str]:
    """The `NAME=value` lines of an env-style secrets file (the upstream's
    `.secrets`): blank lines and `#` comments skipped, an optional `export `,
    values optionally in single or double quotes (a `#` inside quotes is
    kept). A missing file is no file, as upstream; an unreadable one is an
    error, since its password would silently be missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{SECRETS_FILE}: cannot read {path}: {exc}") from None
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        values[name.strip()] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if value[0] == '"':
            inner = inner.replace('\\"', '"').replace("\\\\", "\\")
        return inner
    # Unquoted: a ` #` starts a comment, as in shell and python-dotenv.
    return value.split(" #", 1)[0].rstrip()


def upstream_password(environ: dict[str, str] | Any) -> tuple[str, str]:
    """The PostgreSQL password and where it came from: the environment first,
    then the secrets file (reference 5.5); ("", "nowhere ...") when neither has one."""
    password = environ.get(UPSTREAM_PASSWORD, "")
    if password:
        return password, UPSTREAM_PASSWORD
    path = Path(environ.get(SECRETS_FILE, ".secrets"))
    password = secrets_file_values(path).get(UPSTREAM_PASSWORD, "")
    if password:
        return password, f"{SECRETS_FILE} ({path})"
    return "", f"nowhere: {UPSTREAM_PASSWORD} is unset and {path} has no such line"


def search_path_option(schema: str) -> str:
    """libpq's `options` that make `schema` the search path, as upstream:
    the name double-quoted for PostgreSQL, spaces and backslashes escaped
    for libpq (which splits options at unescaped spaces)."""
    quoted = '"' + schema.replace('"', '""') + '"'
    return "-c search_path=" + quoted.replace("\\", "\\\\").replace(" ", "\\ ")


def add_server_setting(options: dict[str, Any], name: str, value: object) -> None:
    """Append `-c name=value` to the libpq `options` of a DATABASES entry's
    OPTIONS: a PostgreSQL setting for every connection, whatever the pooler."""
    options["options"] = f"{options.get('options', '')} -c {name}={value}".strip()


def upstream_database(
    *, host: str, port: int, user: str, password: str, dbname: str, schema: str
) -> dict[str, Any]:
    """A Django DATABASES entry from the upstream chart's variables."""
    if not schema.strip():
        raise ImproperlyConfigured(f"{UPSTREAM}SCHEMA must not be empty (default: public)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": dbname,
        "USER": user,
        "PASSWORD": password,
        "HOST": host,
        "PORT": port,
        "CONN_MAX_AGE": 60,
        "OPTIONS": {"options": search_path_option(schema)},
    }


def describe(database: dict[str, Any], source: str, schema: str | None = None) -> dict[str, Any]:
    """Which database is in use, for /status and the start-up log: never the
    password (nor the user, since /status is public)."""
    if database["ENGINE"].endswith("sqlite3"):
        return {"engine": "SQLite", "name": str(database["NAME"]), "configured_by": source}
    return {
        "engine": "PostgreSQL",
        "host": database.get("HOST") or "",
        "port": int(database.get("PORT") or 5432),
        "name": database.get("NAME") or "",
        "schema": schema,
        "configured_by": source,
    }


def describe_line(database: dict[str, Any], source: str, schema: str | None = None) -> str:
    """One line for the start-up log, e.g. `PostgreSQL dpd@db:5432/dpd
    (schema public), from SKA_DATAPRODUCT_API_POSTGRESQL_*`."""
    info = describe(database, source, schema)
    if info["engine"] == "SQLite":
        return f"SQLite {info['name']}, from {source}"
    user = f"{database['USER']}@" if database.get("USER") else ""
    where = f"{user}{info['host']}:{info['port']}/{info['name']}"
    in_schema = f" (schema {schema})" if schema else ""
    return f"PostgreSQL {where}{in_schema}, from {source}"
