#!/bin/sh
# Entry point of the platform's images: get the admin database ready, then run the command
# (by default `python manage.py run_platform`, the processes of this node's PRO_NODE_ROLES).
#
# A node with the web role migrates the admin database and runs pro_bootstrap (built-in
# runtime, groups, first admin, housekeeping schedule, sample apps unless
# PRO_BOOTSTRAP_SAMPLES=false) under a PostgreSQL advisory lock, so that web nodes starting
# together take turns, then collects the static files. A node without it waits until the
# database answers and has every migration applied. See docker/prepare.py.
set -eu
cd "$(dirname "$0")/.."
python docker/prepare.py
exec "$@"
