# Two commands: `make run` starts the platform on its embedded defaults; `make test` runs the suite.
# Also: `make lint` (ruff, import contracts, mypy), `make test-fast` (the suite without real
# platform processes, browsers, clusters or app processes: under a minute), `make format`,
# `make dist` (the client's wheel), `make chart` (the Helm chart's lint, render and validation alone).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast setup sandbox-tool build-deps test-wheelhouse lint format dist chart bench clean

# What `make test-fast` leaves out (markers in pyproject.toml; tests/conftest.py adds them by fixture too).
FAST := not live and not browser and not cluster and not slow

$(STAMP): requirements.txt requirements-chart.txt pyproject.toml | build-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -r requirements-chart.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) sandbox-tool

# python-ldap (LDAP login) is built from source: it needs OpenLDAP's and SASL's headers and a C compiler.
build-deps:
	@if [ ! -f /usr/include/ldap.h ] || [ ! -f /usr/include/sasl/sasl.h ] || ! command -v gcc >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing the headers python-ldap is built with"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libldap2-dev libsasl2-dev gcc >/dev/null; \
	  else \
	    echo "python-ldap needs OpenLDAP's and SASL's headers and gcc. Install them with:"; \
	    echo "    sudo apt-get install libldap2-dev libsasl2-dev gcc"; \
	    exit 1; \
	  fi; \
	fi

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

# Two workers (pytest-xdist), each with a data folder of its own (tests/conftest.py); a test
# module stays on one worker (--dist loadfile). Plain `.venv/bin/pytest` runs the same tests serially.
XDIST := -n 2 --dist loadfile

# The sample apps' requirements, downloaded once, so that the tests build environments offline.
test-wheelhouse: setup
	$(PY) -m tests.wheelhouse var/test-wheelhouse

test: lint test-wheelhouse
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest $(XDIST)

test-fast: setup test-wheelhouse
	$(VENV)/bin/pytest -m "$(FAST)" $(XDIST)

# The Helm chart in deploy/helm/pro-portal: Helm's engine lints and renders it (`helm lint`, `helm
# template`, with no helm binary: requirements-chart.txt) and every manifest is validated against
# the Kubernetes schemas, offline. Part of `make test` too.
chart: $(STAMP)
	$(VENV)/bin/pytest tests/test_helm_chart.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The client's wheel and source archive in dist/ (what they hold: pyproject.toml): the `pro`
# command, the Python client and the app SDK with its local runner, without Django, for
# `pip install dist/pro_platform-*.whl`. The wheel is built from the source archive, in a folder of
# its own; an earlier build's build/ and egg-info go first, so that no file of theirs comes along.
dist: $(STAMP)
	rm -rf dist build pro_platform.egg-info
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) var dist build pro_platform.egg-info
