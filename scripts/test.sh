#!/usr/bin/env bash
# Second command of the README: set up with test tools, then run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/api -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check serve_app tasks tests bench pixyz_client
.venv/bin/ruff format --check serve_app tasks tests bench pixyz_client
exec .venv/bin/python -m pytest "$@"
