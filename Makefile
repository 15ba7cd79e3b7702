# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test venv lint schema image clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

## Set up and serve on http://127.0.0.1:8000 (SQLite, the sample volume, background indexing).
run: venv
	$(PY) manage.py migrate --no-input -v0
	$(PY) manage.py collectstatic --no-input -v0
	$(PY) manage.py build_sample_volume --synthetic 300
	$(PY) manage.py reindex
	@echo "Open http://127.0.0.1:8000/ (home page: catalogue, indexing, links to the product pages)."
	@echo "To sign in (annotations, admin), create an account in another terminal: $(PY) manage.py createsuperuser"
	$(PY) manage.py runservice

## Set up and run the whole test suite against a real PostgreSQL (throwaway cluster by default).
test: venv
	bash tools/run-tests.sh $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

schema: venv
	$(PY) manage.py spectacular --file docs/openapi.yaml --validate

## Build the image (Dockerfile) as dpd-backend:latest, where a Docker daemon answers.
image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker daemon answers here: nothing built" >&2; exit 2; }
	docker build -t dpd-backend:latest .

clean:
	rm -rf $(VENV) var
