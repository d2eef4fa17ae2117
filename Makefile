# make run: serve the shop and the embedded WeChat Pay simulator on http://127.0.0.1:$(PORT)
# make test: the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000
HOST ?= 127.0.0.1

.PHONY: run serve-prod test lint bench init clean docs-screenshots

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.runtime
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

init: $(VENV)/.runtime
	$(PY) -m flask --app wsgi init

run: init
	@$(PY) -m flask --app wsgi banner --host $(HOST) --port $(PORT)
	PORT=$(PORT) SCHEDULER_INTERVAL_SECONDS=60 $(PY) -m flask --app wsgi run --host $(HOST) --port $(PORT) --with-threads --no-reload --no-debugger

# Four gunicorn workers against PostgreSQL (the machine's local server by default).
serve-prod: export DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
serve-prod: init
	PORT=$(PORT) $(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

test: $(VENV)/.dev init
	$(PY) -m pytest $(PYTEST_ARGS)

# make lint: ruff (lint and import order, ruff.toml); .ci/run runs it before make test
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

# make docs-screenshots: retake docs/img/*.png with the test suite's browser (tests/test_browser_*.py that shoot for the docs)
docs-screenshots: $(VENV)/.dev init
	DOCS_SCREENSHOTS=1 $(PY) -m pytest -q tests/test_browser_flow.py tests/test_browser_reconciliation.py tests/test_browser_test_backend.py

# RATELIMIT_ENABLED=0: the load comes from one address; a rate limit would measure itself.
bench: $(VENV)/.dev init
	RATELIMIT_ENABLED=0 $(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
