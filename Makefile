# make run: serve the shop and the embedded WeChat Pay simulator on http://127.0.0.1:$(PORT)
# make test: the whole test suite (what .ci/run calls)
# make translations: compile the message catalogues; make translations-update: extract the strings
#   from the code and templates and merge them into every language (README, "Languages")
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000
HOST ?= 127.0.0.1

.PHONY: run serve-prod test lint bench init clean docs-screenshots cjk-fonts translations translations-update

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.runtime
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

init: $(VENV)/.runtime translations
	$(PY) -m flask --app wsgi init

# Catalogues: storefront/translations/<lang>/LC_MESSAGES/messages.po (committed) -> .mo (built here).
TRANSLATIONS := storefront/translations
BABEL_EXTRACT := $(VENV)/bin/pybabel extract -F babel.cfg -k _l --no-location --sort-output --omit-header

translations: $(VENV)/.runtime
	$(VENV)/bin/pybabel compile -d $(TRANSLATIONS) --statistics

translations-update: $(VENV)/.runtime
	$(BABEL_EXTRACT) -o $(TRANSLATIONS)/messages.pot .
	$(VENV)/bin/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) --no-wrap --ignore-obsolete \
		--ignore-pot-creation-date

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

# make docs-screenshots: retake the docs' screenshots with the test suite's browser (the tests/test_browser_*.py
# that shoot for the docs), in Chinese (docs/img/, for docs/zh/) and English (docs/img/en/, for docs/en/).
DOCS_SHOOTERS := tests/test_browser_flow.py tests/test_browser_reconciliation.py tests/test_browser_test_backend.py
docs-screenshots: cjk-fonts $(VENV)/.dev init
	DOCS_SCREENSHOTS=1 $(PY) -m pytest -q $(DOCS_SHOOTERS)
	DOCS_SCREENSHOTS=1 DOCS_LANG=en $(PY) -m pytest -q $(DOCS_SHOOTERS)

# Without a CJK font Chromium draws every Chinese glyph as a box: refuse rather than commit such screenshots.
cjk-fonts:
	@if ! command -v fc-list >/dev/null 2>&1 || [ -z "$$(fc-list :lang=zh family 2>/dev/null)" ]; then \
		echo "make docs-screenshots: no CJK font found (fc-list :lang=zh is empty)." >&2; \
		echo "  Chinese would be drawn as boxes. Install one first: sudo apt-get install fonts-noto-cjk" >&2; \
		exit 1; \
	fi

# RATELIMIT_ENABLED=0: the load comes from one address; a rate limit would measure itself.
bench: $(VENV)/.dev init
	RATELIMIT_ENABLED=0 $(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
