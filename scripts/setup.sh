#!/usr/bin/env bash
# Set up everything the service needs on a fresh Debian/Ubuntu machine:
# the EGL/OpenGL libraries for CPU thumbnail rendering (apt), and .venv at the
# repository root with the project installed. Idempotent: re-running is quick.
#   scripts/setup.sh          service only
#   scripts/setup.sh test     service + test tools
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libgl1)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "Installing system packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
echo "Installing the project into .venv (first time: 3-10 minutes, downloads included)"
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -e ".${extras}" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import serve_app, tasks, ray, trimesh" || { echo "setup failed: the project does not import" >&2; exit 1; }
