#!/usr/bin/env bash
# Run a command the way a machine that never ran it would: in a private mount namespace with
# an empty /tmp, /dev/shm and HOME, so nothing an earlier run left (/tmp/ray, ~/.ray, caches)
# can hide a missing set-up step. `.ci/run` runs the test suite through it.
#   scripts/fresh.sh scripts/test.sh -x
# Needs root (or unprivileged user namespaces); without either it runs the command as it is
# and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${PIXYZ_FRESH_INSIDE:-}" != 1 ]; then
  if unshare --mount --propagation private true 2>/dev/null; then
    exec env PIXYZ_FRESH_INSIDE=1 unshare --mount --propagation private "$0" "$@"
  fi
  echo "fresh.sh: cannot make a private mount namespace here; running with this machine's /tmp and HOME" >&2
  exec "$@"
fi

repo=$(pwd -P)
hold=""
case "$repo/" in
  /tmp/* | /dev/shm/*)  # the checkout itself would vanish under the empty /tmp: hold it aside
    hold=$(mktemp -d /var/tmp/pixyz-fresh.XXXXXX)
    mount --bind "$repo" "$hold"
    ;;
esac
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
if [ -n "$hold" ]; then
  mkdir -p "$repo"
  mount --bind "$hold" "$repo"
fi

# Interpreters found through HOME (pyenv's shims) keep working; everything else starts empty.
export PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
PYTHON="${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}"
export PYTHON
HOME=$(mktemp -d /tmp/home.XXXXXX)
export HOME
unset XDG_CACHE_HOME XDG_CONFIG_HOME XDG_DATA_HOME XDG_RUNTIME_DIR PIP_CACHE_DIR TMPDIR RAY_TMPDIR
echo "fresh.sh: empty /tmp, /dev/shm and HOME=$HOME; running: $*" >&2
cd "$repo"
exec "$@"
