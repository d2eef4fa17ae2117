# make run: serve the shop and the embedded WeChat Pay simulator on http://127.0.0.1:$(PORT)
# make test: the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000
HOST ?= 127.0.0.1

.PHONY: run test bench init clean

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
	PORT=$(PORT) SCHEDULER_INTERVAL_SECONDS=60 $(PY) -m flask --app wsgi run --host $(HOST) --port $(PORT) --with-threads --no-reload --no-debugger

test: $(VENV)/.dev init
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev init
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
