#!/usr/bin/env bash
# First command of the README: set up, then start the service on an embedded
# default (a local Ray cluster, storage in ./var/storage), printing URL and key.
# Extra arguments go to `pixyz serve` (e.g. --port 9000 --storage s3://bucket/prefix).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/pixyz serve --host "${PIXYZ_HOST:-127.0.0.1}" --port "${PIXYZ_PORT:-8000}" "$@"
