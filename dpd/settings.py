"""Settings for the DPD back end: every knob comes from the environment.

Each variable is documented in docs/configuration.md. Defaults let a fresh
clone run with no configuration (SQLite, the bundled sample volume). A value
that cannot be parsed stops start-up with ImproperlyConfigured naming the
variable, rather than being silently misread (upstream bug 8.2 #20).
"""

import ipaddress
import os
import re
from importlib import metadata as _pkg_metadata
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dpd import database_env

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} must be at most {maximum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _package_version() -> str:
    try:
        return _pkg_metadata.version("dpd-backend")
    except _pkg_metadata.PackageNotFoundError:
        return "0.0.0"


# --- Django core -----------------------------------------------------------

# "production" refuses to start without a real DJANGO_SECRET_KEY or with DEBUG
# on, and turns the secure defaults below on; "development" runs on a fresh clone.
DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r} must be development or production")
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env_bool("DJANGO_DEBUG", False)
# The fallback key is for a local demo only; `check --deploy` flags it.
_DEMO_SECRET_KEY = "django-insecure-dpd-local-demo-key-change-me"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "" if PRODUCTION else _DEMO_SECRET_KEY)
if PRODUCTION and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "DJANGO_ENV=production needs DJANGO_SECRET_KEY: at least 50 random characters"
    )
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

# The SKA DPD API chart's API_ROOT_PATH: the path prefix clients reach the
# service at (e.g. /dataproduct/api). Every URL the service writes carries it
# (Django's script prefix); requests are served with it or without it, since
# the upstream chart's ingress strips it (reference 1.1; dpd.wsgi).
API_ROOT_PATH = env_str("API_ROOT_PATH", "").strip().rstrip("/")
if API_ROOT_PATH and not re.fullmatch(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+", API_ROOT_PATH):
    raise ImproperlyConfigured(
        f"API_ROOT_PATH={API_ROOT_PATH!r} is not a URL path such as /dataproduct/api"
    )
FORCE_SCRIPT_NAME = API_ROOT_PATH or None

# Transport security: on by default in production (`manage.py check --deploy` passes).
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
# Kubernetes probes speak plain HTTP to the pod.
SECURE_REDIRECT_EXEMPT = [rf"^(?:{re.escape(API_ROOT_PATH.lstrip('/'))}/)?status/?$"]
SECURE_HSTS_SECONDS = env_int(
    "DJANGO_SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", PRODUCTION)
# Database sessions that ignore malformed cookie values (dpd/sessions.py).
SESSION_ENGINE = "dpd.sessions"
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", PRODUCTION)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# A header name such as X-Forwarded-Proto; only behind a proxy that always sets it.
_PROXY_SSL_HEADER = env_str("DJANGO_SECURE_PROXY_SSL_HEADER", "").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https") if _PROXY_SSL_HEADER else None
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "corsheaders",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Before django_q: its `qcluster` command extends django-q2's (a run stops at
    # its next batch on SIGTERM instead of holding the cluster for its whole length).
    "indexing",
    "django_q",
    "dpd",
    "annotations",
    "dlm_bridge",
]

MIDDLEWARE = [
    # /healthz, /readyz and /metrics before anything checks the host or redirects (dpd/ops).
    "dpd.ops.middleware.OpsEndpointsMiddleware",
    "dpd.ops.middleware.RequestLogMiddleware",
    # gzip for JSON, CSV and TSV answers whose client accepts it, never for a
    # download (dpd/compression.py).
    "dpd.compression.ApiGZipMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "dpd.middleware.CorsAllowRequestedHeadersMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "dpd.hardening.RequestBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "dpd.middleware.JsonWithoutContentTypeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "dpd.hardening.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dpd.urls"
WSGI_APPLICATION = "dpd.wsgi.application"
ASGI_APPLICATION = "dpd.asgi.application"
# The upstream serves /status and /status/ alike; never redirect POST bodies away.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The database: DATABASE_URL, else the SKA DPD API chart's variables
# (SKA_DATAPRODUCT_API_POSTGRESQL_*, reference 5.5), else, outside production,
# the embedded SQLite file (dpd/database_env.py says why production refuses it).
DATABASE_URL = env_str("DATABASE_URL", "").strip()
SKA_DATAPRODUCT_API_POSTGRESQL_HOST = env_str(database_env.UPSTREAM_HOST, "").strip()
# The upstream's schema: its tables' search path, and where its annotations table is.
SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA = env_str("SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA", "public")
SKA_DATAPRODUCT_API_POSTGRESQL_ANNOTATIONS_TABLE_NAME = env_str(
    "SKA_DATAPRODUCT_API_POSTGRESQL_ANNOTATIONS_TABLE_NAME", "data_products_annotations_v1"
)
DATABASE_SCHEMA = None  # the search path given by the environment, if any
DATABASE_PASSWORD_FROM = ""
if DATABASE_URL:
    DATABASE_SOURCE = database_env.FROM_URL
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    except Exception as exc:  # dj-database-url raises bare ValueErrors and KeyErrors
        raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
elif SKA_DATAPRODUCT_API_POSTGRESQL_HOST:
    DATABASE_SOURCE = database_env.FROM_UPSTREAM
    DATABASE_SCHEMA = SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA
    # Said in the start-up error when the server refuses the password.
    _password, DATABASE_PASSWORD_FROM = database_env.upstream_password(os.environ)
    DATABASES = {
        "default": database_env.upstream_database(
            host=SKA_DATAPRODUCT_API_POSTGRESQL_HOST,
            port=env_int("SKA_DATAPRODUCT_API_POSTGRESQL_PORT", 5432, minimum=1),
            user=env_str("SKA_DATAPRODUCT_API_POSTGRESQL_USER", "postgres"),
            password=_password,
            dbname=env_str("SKA_DATAPRODUCT_API_POSTGRESQL_DBNAME", "postgres"),
            schema=DATABASE_SCHEMA,
        )
    }
elif PRODUCTION:
    raise ImproperlyConfigured(
        "DJANGO_ENV=production needs a database, and none is configured: set DATABASE_URL "
        "(postgres://user:password@host:port/dbname) or the SKA DPD API chart's "
        "SKA_DATAPRODUCT_API_POSTGRESQL_HOST (with _PORT, _USER, _PASSWORD or "
        "SKA_DATAPRODUCT_API_SECRETS_FILE_PATH, _DBNAME, _SCHEMA). The embedded SQLite file "
        "is for development only: each pod would keep a catalogue of its own and lose it."
    )
else:
    DATABASE_SOURCE = database_env.EMBEDDED
    _sqlite = f"sqlite:///{BASE_DIR / 'var' / 'dpd.sqlite3'}"
    DATABASES = {"default": dj_database_url.parse(_sqlite, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Background indexing writes while the API reads; WAL keeps readers unblocked.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    if DATABASES["default"]["OPTIONS"].get("server_side_binding"):
        # Searches send a read with its settings as one simple query
        # (dpd.search_rows), which needs psycopg's client-side binding.
        raise ImproperlyConfigured(
            "DATABASE_URL asks for server_side_binding, which the search queries cannot use"
        )
    # Fail fast when the server is unreachable; the API answers 503 instead of hanging.
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
    )
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # DATABASE_RANDOM_PAGE_COST: what the planner charges for reading a heap
    # page out of order; PostgreSQL's default, 4, prices a disk seek. The
    # catalogue's pages are in memory, and at 4 the planner preferred ANDing a
    # 35,000-row date bitmap (3.2 ms) to rechecking 669 cached rows (0.7 ms):
    # the grid's filter at 100,000 products, 2.3 -> 4.8 ms once its indexes
    # were freshly built (docs/api.md). Empty: the server's own setting.
    if os.environ.get("DATABASE_RANDOM_PAGE_COST", "1.1").strip():
        _page_cost = env_float("DATABASE_RANDOM_PAGE_COST", 1.1, minimum=0.0)
        database_env.add_server_setting(
            DATABASES["default"]["OPTIONS"], "random_page_cost", _page_cost
        )
    # DATABASE_WORK_MEM: PostgreSQL's work_mem for the service's connections.
    # A search or grid filter matching many products collects their pages in
    # a bitmap; past work_mem it turns lossy and every row of a lossy page is
    # rechecked against its ~2.7 KB search text. The default 4MB holds an
    # exact bitmap up to ~400,000 products; 32MB to ~3,000,000 (a grid
    # filter matching half of 1,000,000 products: 854,575 rechecks instead
    # of 583,607, 12.3 -> 8.4 s). Empty: the server's own setting.
    _work_mem = os.environ.get("DATABASE_WORK_MEM", "32MB").strip()
    if _work_mem:
        if not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB)?", _work_mem):
            raise ImproperlyConfigured(
                f"DATABASE_WORK_MEM={_work_mem!r} is not a PostgreSQL memory size "
                "(a whole number with kB, MB or GB, e.g. 32MB)"
            )
        database_env.add_server_setting(DATABASES["default"]["OPTIONS"], "work_mem", _work_mem)
IS_POSTGRESQL = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
# runservice applies the migrations before it serves (the upstream chart has no migration job).
DPD_MIGRATE_ON_STARTUP = env_bool("DPD_MIGRATE_ON_STARTUP", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Per-process caches. "default": login-failure counts, throttle history,
# bearer-token lookups, the catalogue's field list. "counts": the totals
# dpd.remembered_counts keeps, one per filter and caller; in a store of their
# own, so that a client sending hundreds of distinct filters cannot push the
# others out (LocMemCache drops the least recently used past MAX_ENTRIES).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "dpd"},
    "counts": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "dpd-counts",
        "OPTIONS": {"MAX_ENTRIES": 2000},
    },
    # The orders of sorted grid pages (dpd.remembered_counts, Remembered.order):
    # 8 bytes a match each, so a few only: at most 64 MB a process at
    # 1,000,000 products, were all eight whole-catalogue sorts (past
    # MAX_ENTRIES a third of them, the least recently used, are dropped).
    # Kept as they are, not pickled: a copy per page read was 2-8 MB.
    "orders": {
        "BACKEND": "dpd.caches.UnpickledLocMemCache",
        "LOCATION": "dpd-orders",
        "OPTIONS": {"MAX_ENTRIES": 8},
    },
    # The grid's capped plain lists, whole (dpd.remembered_counts,
    # Remembered.answer): ~2 KB a row, 20 MB at the default cap of 10,000
    # rows, so four only (past four the least recently used is dropped),
    # each with its gzip once a browser asks (2.4 MB; dpd.compression): at
    # most ~90 MB a process at that cap. Not pickled either.
    "answers": {
        "BACKEND": "dpd.caches.UnpickledLocMemCache",
        "LOCATION": "dpd-answers",
        "OPTIONS": {"MAX_ENTRIES": 4},
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Absolute, with the prefix: Django adds the script prefix to a relative one only
# as it stands when the setting is first read, which may be before any request.
STATIC_URL = f"{API_ROOT_PATH}/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "admin:login"

# LOG_LEVEL, else the SKA DPD API chart's API_VERBOSE: true is DEBUG (as upstream);
# false keeps our INFO (the upstream's WARNING would hide the start-up lines).
LOG_LEVEL = env_str("LOG_LEVEL", "DEBUG" if env_bool("API_VERBOSE", False) else "INFO")
LOG_LEVEL = LOG_LEVEL.strip().upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} is not DEBUG, INFO, WARNING or ERROR")

# plain: one human-readable line per record; json: one JSON object per line
# (python-json-logger), with a request's or a batch's fields as keys.
LOG_FORMAT = env_str("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is not plain or json")
LOG_FORMATTERS = {
    "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    "json": {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    },
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": LOG_FORMATTERS[LOG_FORMAT]},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

# --- The volume and its metadata files -------------------------------------

# The volume root exactly as configured: uids hash this string (reference 4.1),
# so the same setting gives the same uids as the upstream API. A relative path
# is resolved against the project directory for file access only.
PERSISTENT_STORAGE_PATH = env_str("PERSISTENT_STORAGE_PATH", "var/sample-volume")
METADATA_FILE_NAME = env_str("METADATA_FILE_NAME", "ska-data-product.yaml")
# The name of the volume's store in /status and in rows' metadata_store_name.
PVCNAME = env_str("PVCNAME", "shared")
METADATA_MAX_BYTES = env_int("METADATA_MAX_BYTES", 1024 * 1024, minimum=1024)
# 1 MiB: fewer Python-level pieces per GiB; bench_api download_vs_tar 0.66-0.73 -> 0.75-0.80.
STREAM_CHUNK_SIZE = env_int("STREAM_CHUNK_SIZE", 1024 * 1024, minimum=512)
SKA_DATAPRODUCT_API_VERSION = env_str("SKA_DATAPRODUCT_API_VERSION", _package_version())

# --- Serving (gunicorn, dpd/gunicorn_conf.py; docs/deployment.md) -------------

# Downloads in flight at once in one web process, and in all of one server's
# processes; beyond either, /download is 503 with Retry-After before any byte.
DPD_DOWNLOADS_PER_PROCESS = env_int("DPD_DOWNLOADS_PER_PROCESS", 32, minimum=1)
DPD_DOWNLOADS_TOTAL = env_int("DPD_DOWNLOADS_TOTAL", 64, minimum=1)
DPD_DOWNLOADS_RETRY_AFTER_SECONDS = env_int("DPD_DOWNLOADS_RETRY_AFTER_SECONDS", 30, minimum=1)
# Digests of volume files remembered per web process (dpd.checksums), so a
# resumed download's manifest needs no second read of the files it skipped.
DPD_CHECKSUM_CACHE_ENTRIES = env_int("DPD_CHECKSUM_CACHE_ENTRIES", 200_000, minimum=0)
# A whole /download of at least this many files (averaging under 1 MiB) comes
# from a GNU tar process, each header checked against the walk (dpd.tar_process);
# 0 sends every archive from Python.
DPD_TAR_PROCESS_MIN_FILES = env_int("DPD_TAR_PROCESS_MIN_FILES", 1000, minimum=0)
# That tar starts while the walk still stats files, and its output is held in
# memory up to this many MiB until the response starts (then 1 MiB); 0 starts
# tar after the walk.
DPD_TAR_READ_AHEAD_MIB = env_int("DPD_TAR_READ_AHEAD_MIB", 32, minimum=0)
# A search-body /download (every matching product in one archive) is refused
# with 413 beyond either figure, before any byte.
DPD_QUERY_DOWNLOAD_MAX_PRODUCTS = env_int("DPD_QUERY_DOWNLOAD_MAX_PRODUCTS", 1000, minimum=1)
DPD_QUERY_DOWNLOAD_MAX_BYTES = env_int("DPD_QUERY_DOWNLOAD_MAX_BYTES", 1024**4, minimum=1)
# gzip for JSON, CSV and TSV answers of clients that accept it (browsers and
# `requests` do; dpd/compression.py); never for downloads. false: every answer
# as it is (an ingress that compresses, or CPU dearer than bandwidth).
DPD_GZIP_ANSWERS = env_bool("DPD_GZIP_ANSWERS", True)
# Threads of each web process for everything but downloads: a process runs
# DPD_DOWNLOADS_PER_PROCESS + DPD_WEB_THREADS threads, so downloads never take them all.
DPD_WEB_THREADS = env_int("DPD_WEB_THREADS", 16, minimum=1)
# A client must send its request line and headers within this many seconds of connecting.
DPD_REQUEST_HEADER_TIMEOUT = env_float("DPD_REQUEST_HEADER_TIMEOUT", 10.0, minimum=0.1)
# A client that neither sends nor reads a byte for this long is disconnected;
# an active transfer, however slow, is never cut.
DPD_CLIENT_IDLE_TIMEOUT = env_float("DPD_CLIENT_IDLE_TIMEOUT", 60.0, minimum=0.1)
# On SIGTERM, requests in flight (downloads) get this long to finish before they are cut.
DPD_SHUTDOWN_GRACE_SECONDS = env_float("DPD_SHUTDOWN_GRACE_SECONDS", 20.0, minimum=0)

# --- Indexing ----------------------------------------------------------------

INDEXING_TIMEOUT_SECONDS = env_int("INDEXING_TIMEOUT_SECONDS", 21600, minimum=1)
INDEXING_HEARTBEAT_STALE_SECONDS = env_int("INDEXING_HEARTBEAT_STALE_SECONDS", 300, minimum=1)
# /status calls a run stalled (not running) once its heartbeat is this old: a
# few batch intervals (a batch of 500 files takes 1-2 s on 2 cores).
INDEXING_STALLED_SECONDS = env_int("INDEXING_STALLED_SECONDS", 30, minimum=1)
INDEXING_BATCH_SIZE = env_int("INDEXING_BATCH_SIZE", 500, minimum=1)
# 0 means one worker per core.
INDEXING_PARALLEL_WORKERS = env_int("INDEXING_PARALLEL_WORKERS", 0, minimum=0)
INDEXING_WORK_UNIT_DEPTH = env_int("INDEXING_WORK_UNIT_DEPTH", 3, minimum=1)
# This instance's name in dpd_indexing_state.indexed_by; empty means hostname-pid.
DPD_INSTANCE_NAME = env_str("DPD_INSTANCE_NAME", "")
# Index the volume in the background when the service starts (runservice).
INDEXING_ON_STARTUP = env_bool("INDEXING_ON_STARTUP", True)
# Minutes between periodic incremental re-indexes (a django-q2 schedule); 0 disables.
INDEXING_SCHEDULE_MINUTES = env_int("INDEXING_SCHEDULE_MINUTES", 60, minimum=0)
# CPU niceness of background indexing (the django-q2 worker and its parse
# processes), so the API's processes get the CPU first; 0 leaves it as it is.
INDEXING_NICENESS = env_int("INDEXING_NICENESS", 10, minimum=0, maximum=19)
# TEST KNOB ONLY: sleep this long after every batch so fault tests can act mid-run.
INDEXING_TEST_BATCH_DELAY_SECONDS = env_float("INDEXING_TEST_BATCH_DELAY_SECONDS", 0.0, minimum=0)

# --- Search ------------------------------------------------------------------

# Rows of a plain (unpaged) list from /dataproductsearch and /filterdataproducts:
# the upstream's query size limit, at its deployed value (Helm v0.18, reference
# 3.4; its code says 100). The dashboard does not page: a lower cap hides rows.
SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = env_int(
    "SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT", 10_000, minimum=1
)
# Largest page of rows a paged search or filter request gets (larger requests are capped).
SEARCH_MAX_PAGE_SIZE = env_int("SEARCH_MAX_PAGE_SIZE", 1000, minimum=1)
# key:value search on PostgreSQL looks for its page among this many newest
# products before running the full (trigram) query; 0 turns that off.
SEARCH_WINDOW_ROWS = env_int("SEARCH_WINDOW_ROWS", 2000, minimum=0)
# key:value search on PostgreSQL: search texts sampled per process to choose the
# part of a pair the trigram index looks up (dpd/search_pieces.py); 0 turns
# that off (the whole pattern goes to the index). Each trigram of the sample
# keeps a bit per text: at most 10,000 texts (~1.2 KB a trigram).
SEARCH_SAMPLE_ROWS = env_int("SEARCH_SAMPLE_ROWS", 2000, minimum=0, maximum=10_000)

# --- SDP configuration database (etcd) and DLM ------------------------------

# SDP_ETCD_HOST (DPD docs) and SDP_CONFIG_HOST (Helm) both name the host; set empty to
# turn flow enrichment off. dpd/sdp.py is the only reader.
SDP_ETCD_HOST = env_str("SDP_ETCD_HOST", env_str("SDP_CONFIG_HOST", "localhost")).strip()
SDP_CONFIG_PORT = env_int("SDP_CONFIG_PORT", 2379, minimum=1)
# Key prefix of the SDP keys (ska-sdp-config's SDP_CONFIG_PATH), e.g. "/sdp".
SDP_CONFIG_PATH = env_str("SDP_CONFIG_PATH", "").strip().rstrip("/")
# No event for this long: the watcher checks that etcd still answers.
SDP_WATCHER_TIMEOUT_SECONDS = env_float(
    "SKA_DATAPRODUCT_API_SDP_WATCHER_TIMEOUT_SECONDS", 30.0, minimum=0.1
)
# After an error or a compacted watch: wait this long, then snapshot again.
SDP_WATCHER_RECONNECT_DELAY_SECONDS = env_float(
    "SKA_DATAPRODUCT_API_SDP_WATCHER_RECONNECT_DELAY_SECONDS", 10.0, minimum=0
)
# The watcher's leader slot goes to another instance after this long without a heartbeat.
SDP_WATCHER_STALE_SECONDS = env_int("SDP_WATCHER_STALE_SECONDS", 30, minimum=1)
# Placeholder rows (SDP work with no product yet) for signed-in callers only.
SDP_PLACEHOLDERS_SIGNED_IN_ONLY = env_bool("SDP_PLACEHOLDERS_SIGNED_IN_ONLY", False)
SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED = env_bool("SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED", False)
SKA_DATAPRODUCT_API_POSTGRESQL_DLM_SCHEMA = env_str(
    "SKA_DATAPRODUCT_API_POSTGRESQL_DLM_SCHEMA", "dlm"
)
# --- DLM bridge (issue 19; dlm_bridge/) ---
SKA_DATAPRODUCT_API_POSTGRESQL_DLM_METADATA_TABLE_NAME = env_str(
    "SKA_DATAPRODUCT_API_POSTGRESQL_DLM_METADATA_TABLE_NAME", "data_item"
)
# The DLM's database: its own URL, else the main database (the upstream chart's
# "shared PostgreSQL"). Always a connection of its own, read-only in the server
# (default_transaction_read_only) as well as in the router.
DLM_DATABASE_URL = env_str("DLM_DATABASE_URL", "").strip()
if DLM_DATABASE_URL:
    try:
        DATABASES["dlm"] = dj_database_url.parse(DLM_DATABASE_URL, conn_max_age=60)
    except Exception as exc:
        raise ImproperlyConfigured(
            f"DLM_DATABASE_URL is not a usable database URL: {exc}"
        ) from None
else:
    DATABASES["dlm"] = {**DATABASES["default"], "OPTIONS": dict(DATABASES["default"]["OPTIONS"])}
    # Tests: the main test database, through this connection of its own.
    DATABASES["dlm"]["TEST"] = {"MIRROR": "default"}
if DATABASES["dlm"]["ENGINE"].startswith("django.db.backends.postgresql"):
    _dlm_options = DATABASES["dlm"].setdefault("OPTIONS", {})
    _dlm_options["connect_timeout"] = env_int("DLM_CONNECT_TIMEOUT", 3, minimum=1)
    database_env.add_server_setting(_dlm_options, "default_transaction_read_only", "on")
    DATABASES["dlm"]["CONN_HEALTH_CHECKS"] = True
# A request touches the DLM once per DLM_PROBE_SECONDS at most: no connection
# kept per serving thread for it (each would double the main database's).
DATABASES["dlm"]["CONN_MAX_AGE"] = 0
DATABASE_ROUTERS = ["dlm_bridge.router.DlmRouter"]
# How old the DLM's reachability and access may be when a request uses it (seconds).
DLM_PROBE_SECONDS = env_float("DLM_PROBE_SECONDS", 5.0, minimum=0)
# The mirror's refresh (a django-q2 schedule; 0 turns it off).
DLM_SYNC_MINUTES = env_int("DLM_SYNC_MINUTES", 1, minimum=0)

# --- Access --------------------------------------------------------------------

SKA_PERMISSIONS_API_HOST = env_str("SKA_PERMISSIONS_API_HOST", "http://localhost:8000")
# Dashboard bearer tokens: each lookup's timeout, and how long an answer is reused.
SKA_PERMISSIONS_API_TIMEOUT_SECONDS = env_float(
    "SKA_PERMISSIONS_API_TIMEOUT_SECONDS", 3.0, minimum=0.1
)
SKA_PERMISSIONS_CACHE_SECONDS = env_int("SKA_PERMISSIONS_CACHE_SECONDS", 60, minimum=0)
# `Authorization: Token <key>` for service accounts (manage.py create_service_account).
DPD_AUTH_TOKENS = env_bool("DPD_AUTH_TOKENS", True)
# Trusted-header mode: off unless the proxy's addresses (CIDRs) are listed.
TRUSTED_PROXY_ADDRESSES = env_list("TRUSTED_PROXY_ADDRESSES", [])
for _cidr in TRUSTED_PROXY_ADDRESSES:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXY_ADDRESSES: {_cidr!r} is not an address or CIDR"
        ) from None
TRUSTED_USER_HEADER = env_str("TRUSTED_USER_HEADER", "X-Forwarded-User")
TRUSTED_GROUPS_HEADER = env_str("TRUSTED_GROUPS_HEADER", "X-Forwarded-Groups")
# Upstream compatibility, off by default (docs/security.md explains the trade-off):
# anyone who knows a uid may read its metadata and download it ...
DPD_COMPAT_OPEN_PRODUCT_ACCESS = env_bool("DPD_COMPAT_OPEN_PRODUCT_ACCESS", False)
# ... and anyone may ingest and start a re-index.
DPD_COMPAT_OPEN_MANAGEMENT = env_bool("DPD_COMPAT_OPEN_MANAGEMENT", False)

# --- Hardening -------------------------------------------------------------------

# Largest request body (bytes); larger gets 413 before anything reads it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int(
    "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", max(2621440, 2 * METADATA_MAX_BYTES), minimum=1024
)
# DRF rate for unauthenticated callers per address ("N/second|minute|hour|day"); empty: off.
DPD_THROTTLE_ANON_RATE = env_str("DPD_THROTTLE_ANON_RATE", "1200/minute").strip()
if DPD_THROTTLE_ANON_RATE and not re.fullmatch(
    r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", DPD_THROTTLE_ANON_RATE
):
    raise ImproperlyConfigured(
        f"DPD_THROTTLE_ANON_RATE={DPD_THROTTLE_ANON_RATE!r} is not a rate like 1200/minute"
    )
# Reverse proxies in front of us: the client address is taken from X-Forwarded-For
# this many hops back (0: the connection's address; a client can't choose it).
DPD_NUM_PROXIES = env_int("DPD_NUM_PROXIES", 0, minimum=0)
# Those proxies' addresses (CIDRs): X-Forwarded-For is believed only from them; empty: from any.
DPD_PROXY_ADDRESSES = env_list("DPD_PROXY_ADDRESSES", [])
for _cidr in DPD_PROXY_ADDRESSES:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"DPD_PROXY_ADDRESSES: {_cidr!r} is not an address or CIDR"
        ) from None
# Who may read /metrics: addresses or CIDRs of the connection (not X-Forwarded-For:
# Prometheus scrapes the pod directly); "*" is anyone.
DPD_METRICS_ALLOWED_ADDRESSES = env_list("DPD_METRICS_ALLOWED_ADDRESSES", ["127.0.0.1", "::1"])
for _cidr in set(DPD_METRICS_ALLOWED_ADDRESSES) - {"*"}:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"DPD_METRICS_ALLOWED_ADDRESSES: {_cidr!r} is not an address, a CIDR or *"
        ) from None
# Failed admin logins from one address before further attempts get 429 (0: off).
DPD_LOGIN_FAILURE_LIMIT = env_int("DPD_LOGIN_FAILURE_LIMIT", 5, minimum=0)
DPD_LOGIN_LOCKOUT_SECONDS = env_int("DPD_LOGIN_LOCKOUT_SECONDS", 300, minimum=1)


def _origin(value: str) -> str | None:
    """`scheme://host[:port]` of a URL, or None when it is not an origin (e.g. a path)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _upstream_cors_origins() -> list[str]:
    """The upstream's CORS origins (reference 1.4); a URL that is a path is dropped."""
    url = env_str("REACT_APP_SKA_DATAPRODUCT_DASHBOARD_URL", "http://localhost")
    port = env_str("REACT_APP_SKA_DATAPRODUCT_DASHBOARD_PORT", "8100")
    candidates = ["http://localhost", "http://localhost:8000", f"http://localhost:{port}"]
    candidates += [url, f"{url.rstrip('/')}:{port}"]
    origins = [origin for origin in map(_origin, candidates) if origin]
    return list(dict.fromkeys(origins))


CORS_ALLOWED_ORIGINS = env_list("DPD_CORS_ALLOWED_ORIGINS", _upstream_cors_origins())
for _value in CORS_ALLOWED_ORIGINS:
    if _origin(_value) != _value.rstrip("/"):
        raise ImproperlyConfigured(f"DPD_CORS_ALLOWED_ORIGINS: {_value!r} is not an origin")
CORS_ALLOW_CREDENTIALS = True
# A capped plain list says so in these (dpd.api.search_views); the dashboard may read them.
CORS_EXPOSE_HEADERS = ["X-Total-Count", "X-Truncated"]

# --- Annotations -----------------------------------------------------------------

# Longest annotation_text accepted (characters); longer gets 413 from the API.
ANNOTATION_MAX_LENGTH = env_int("ANNOTATION_MAX_LENGTH", 10000, minimum=1)

# --- REST framework and OpenAPI ---------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON with a nesting limit (dpd/api/parsers.py); forms for the browsable API.
    # JSON when no renderer matches Accept, never 406 (dpd/api/negotiation.py).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "dpd.api.negotiation.JSONFallbackNegotiation",
    "DEFAULT_PARSER_CLASSES": [
        "dpd.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Each class checks its own on/off setting at request time (dpd/authentication.py).
    # Token first: its WWW-Authenticate makes a refused anonymous call a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "dpd.authentication.ServiceTokenAuthentication",
        "dpd.authentication.DashboardBearerAuthentication",
        "dpd.authentication.TrustedHeaderAuthentication",
        "dpd.authentication.SessionAuthenticationReadsWithoutCsrf",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["dpd.hardening.AnonymousRateThrottle"],
    "NUM_PROXIES": DPD_NUM_PROXIES,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "dpd.api.exceptions.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Data Product Dashboard API",
    "DESCRIPTION": (
        "Catalogue, search, metadata and download of data products; wire-compatible "
        "with the SKA Data Product Dashboard API."
    ),
    "VERSION": SKA_DATAPRODUCT_API_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # Under API_ROOT_PATH, "Try it out" in /docs calls the API through the prefix.
    "SERVERS": [{"url": API_ROOT_PATH}] if API_ROOT_PATH else [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Routes answering with and without a trailing slash are documented without it.
    "PREPROCESSING_HOOKS": ["dpd.api.schema_hooks.drop_optional_trailing_slash"],
}

# --- django-q2 -------------------------------------------------------------------

Q_CLUSTER = {
    "name": "dpd",
    "orm": "default",
    "workers": env_int("Q_WORKERS", 1, minimum=1),
    # Tasks are idempotent; retry must exceed timeout (django-q2 delivers at least once).
    # A start-up task may wait for a leader's whole run (timeout + stale limit)
    # before taking over and running its own, hence twice the indexing timeout.
    "timeout": 2 * INDEXING_TIMEOUT_SECONDS + INDEXING_HEARTBEAT_STALE_SECONDS + 300,
    "retry": 2 * INDEXING_TIMEOUT_SECONDS + INDEXING_HEARTBEAT_STALE_SECONDS + 600,
    "max_attempts": 1,
    "catch_up": False,
    "poll": 1,
    # The indexer parses in a process pool (INDEXING_PARALLEL_WORKERS); a daemonic
    # worker may not have children, so every background run with a pool failed.
    "daemonize_workers": False,
}
