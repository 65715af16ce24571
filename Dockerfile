# syntax=docker/dockerfile:1
#
# Container images of the platform: one per role, as the cloud variant runs its portal, backend,
# user-session and solve-session containers, and `node` (the default target) with every role.
#
#   docker build -t pro-node .                          # web + sessions + solves (docker-compose.yml)
#   docker build --target web -t pro-web .              # portal, REST API, websocket proxy
#   docker build --target backend -t pro-backend .      # node agent + task workers only
#   docker build --target sessions -t pro-sessions .    # data session processes
#   docker build --target solves -t pro-solves .        # solve jobs
#
# Every image runs `python manage.py run_platform` (which starts the processes of its
# PRO_NODE_ROLES) through docker/entrypoint.sh, as the unprivileged user `pro` (uid 1000), with
# its data folder (job and session work folders, static files) in /var/lib/pro. Everything else
# is configured by the environment: see "Running a cluster" in README.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- pinned dependencies

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# python-ldap (LDAP login) is built from source here; the runtime stage needs only its libraries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libldap2-dev libsasl2-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# ---------------------------------------------------------------- the platform, every role

FROM ${PYTHON_IMAGE} AS base
# tini is process 1: it forwards docker's SIGTERM to run_platform and reaps orphaned processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini bubblewrap libldap-2.5-0 libsasl2-2 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 1000 --user-group --create-home --home-dir /var/lib/pro --shell /usr/sbin/nologin pro
COPY --from=deps /opt/venv /opt/venv
# The same interpreter path on every node: the built-in runtime records it in the admin database.
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=pro_portal.settings \
    PRO_DATA_DIR=/var/lib/pro \
    PRO_HTTP_PORT=8000
WORKDIR /app
COPY . /app
# Editable, as `make setup` installs it: settings find templates, static files and the sample
# apps beside the code, and session and solve processes import the runtime from /app.
RUN pip install --no-deps -e . \
    && python -m compileall -q apps pro_cli pro_portal pro_sdk sessions \
    && chmod 0755 docker/entrypoint.sh
USER pro
ENTRYPOINT ["tini", "--", "/app/docker/entrypoint.sh"]
CMD ["python", "manage.py", "run_platform"]

# ---------------------------------------------------------------- one role per image

# Portal, REST API and websocket proxy; migrates the admin database when it starts.
FROM base AS web
ENV PRO_NODE_ROLES=web \
    PRO_HTTP_HOST=0.0.0.0
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["python", "/app/docker/healthcheck.py"]

# Node agent and task workers only: package verification and housekeeping.
FROM base AS backend
ENV PRO_NODE_ROLES=none

# Users' data session processes (reached by the web nodes' websocket proxies at PRO_NODE_ADDRESS).
FROM base AS sessions
ENV PRO_NODE_ROLES=sessions

# Solve jobs.
FROM base AS solves
ENV PRO_NODE_ROLES=solves

# ---------------------------------------------------------------- default: a full node

FROM base AS node
ENV PRO_NODE_ROLES=web,sessions,solves \
    PRO_HTTP_HOST=0.0.0.0
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["python", "/app/docker/healthcheck.py"]
