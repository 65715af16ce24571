# Two commands: `make run` starts the platform on its embedded defaults; `make test` runs the suite.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test setup sandbox-tool lint format bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) sandbox-tool

# App code runs only in a bubblewrap sandbox (sessions/launcher): install it where it is missing.
sandbox-tool:
	@if [ "$${PRO_SANDBOX:-}" != off ] && ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing bubblewrap, the sandbox of app code"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "App code runs in a bubblewrap sandbox, which is not installed. Install it with:"; \
	    echo "    sudo apt-get install bubblewrap"; \
	    echo "(or set PRO_SANDBOX=off to run apps unconfined, only for apps you trust)"; \
	    exit 1; \
	  fi; \
	fi

run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py pro_bootstrap
	exec $(PY) manage.py run_platform

test: setup
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var
