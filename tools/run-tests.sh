#!/usr/bin/env bash
# Runs the whole suite against a real PostgreSQL, with etcd and Chromium installed.
# DATABASE_URL set: use that server. Otherwise: a throwaway cluster (pg_virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" != "--inside-cluster" ]]; then
    bash tools/install-system-deps.sh
    if [[ -z "${DATABASE_URL:-}" ]]; then
        if ! command -v pg_virtualenv >/dev/null; then
            echo "run-tests: pg_virtualenv not found; set DATABASE_URL or install postgresql-common" >&2
            exit 2
        fi
        # pg_virtualenv makes a fresh cluster, exports PG* for it, and drops it afterwards.
        # -t keeps the cluster in a temp dir even as root, so a "regress" cluster left
        # in /etc/postgresql by a killed run can never block this one.
        exec pg_virtualenv -t -v 15 bash tools/run-tests.sh --inside-cluster "$@"
    fi
else
    shift
    export DATABASE_URL="postgres://${PGUSER}:${PGPASSWORD}@${PGHOST}:${PGPORT:-5432}/postgres"
fi

export PYTHONDONTWRITEBYTECODE=1
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null \
    || { echo "run-tests: models and migrations differ (run makemigrations)" >&2; exit 1; }
.venv/bin/ruff check --quiet . || { echo "run-tests: ruff check failed" >&2; exit 1; }

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [[ $status -eq 5 ]]; then
    # pytest's "no tests collected": fine when the caller narrowed the selection,
    # a broken suite when the whole suite collected nothing.
    if [[ $# -gt 0 ]]; then
        echo "run-tests: no test matched the selection: $*"
        exit 0
    fi
    echo "run-tests: the suite collected no tests" >&2
fi
exit $status
