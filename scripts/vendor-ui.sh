#!/usr/bin/env bash
# Refresh the web console's vendored JavaScript (serve_app/ui/vendor/) from npm.
# Not part of setup or install: the copied files are committed, so the console needs no
# network, CDN or build step. Run it by hand to move to newer versions, then check the
# console (python -m pytest tests/ui) and commit serve_app/ui/vendor/.
#   scripts/vendor-ui.sh                 latest versions
#   THREE=0.187.0 scripts/vendor-ui.sh   a pinned three.js
set -euo pipefail
cd "$(dirname "$0")/.."
dest=serve_app/ui/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --no-audit --no-fund \
  "three@${THREE:-latest}" "meshoptimizer@${MESHOPT:-latest}" >/dev/null)
src="$work/node_modules/three"
rm -rf "$dest"
mkdir -p "$dest/three"
# three.js keeps its package layout, so the addons' relative imports hold.
files=(
  LICENSE
  examples/jsm/controls/OrbitControls.js
  examples/jsm/environments/RoomEnvironment.js
  examples/jsm/loaders/GLTFLoader.js
  examples/jsm/loaders/DRACOLoader.js
  examples/jsm/loaders/KTX2Loader.js
  examples/jsm/utils/BufferGeometryUtils.js
  examples/jsm/utils/SkeletonUtils.js
  examples/jsm/utils/WorkerPool.js
  examples/jsm/math/ColorSpaces.js
  examples/jsm/libs/meshopt_decoder.module.js
  examples/jsm/libs/ktx-parse.module.js
  examples/jsm/libs/zstddec.module.js
  examples/jsm/libs/draco/README.md
  examples/jsm/libs/draco/draco_decoder.wasm
  examples/jsm/libs/draco/draco_wasm_wrapper.js
  examples/jsm/libs/basis/README.md
  examples/jsm/libs/basis/basis_transcoder.js
  examples/jsm/libs/basis/basis_transcoder.wasm
)
# build/ is git-ignored here: the two build files go to three/ itself (three.module.js
# imports ./three.core.js; the addons import "three" through index.html's import map).
cp "$src/build/three.core.js" "$src/build/three.module.js" "$dest/three/"
for f in "${files[@]}"; do
  mkdir -p "$dest/three/$(dirname "$f")"
  cp "$src/$f" "$dest/three/$f"
done
# The decoders bundled in three's package carry their own licenses.
cp "$work/node_modules/meshoptimizer/LICENSE.md" "$dest/three/examples/jsm/libs/LICENSE.meshoptimizer.md"
cp /usr/share/common-licenses/Apache-2.0 "$dest/three/examples/jsm/libs/draco/LICENSE"
cp /usr/share/common-licenses/Apache-2.0 "$dest/three/examples/jsm/libs/basis/LICENSE"
version=$(node -p "require('$src/package.json').version")
cat > "$dest/VERSIONS.md" <<TXT
# Vendored for the web console (scripts/vendor-ui.sh; do not edit by hand)

| files | from | license |
|---|---|---|
| three/three.module.js, three.core.js (its build/), three/examples/jsm (loaders, controls, environments, utils, math) | npm three@$version | MIT, three/LICENSE |
| three/examples/jsm/libs/meshopt_decoder.module.js | npm three@$version (meshoptimizer) | MIT, three/examples/jsm/libs/LICENSE.meshoptimizer.md |
| three/examples/jsm/libs/draco | npm three@$version (Google Draco, the wasm decoder) | Apache-2.0, three/examples/jsm/libs/draco/LICENSE |
| three/examples/jsm/libs/basis | npm three@$version (Binomial Basis Universal) | Apache-2.0, three/examples/jsm/libs/basis/LICENSE |
| three/examples/jsm/libs/ktx-parse.module.js, zstddec.module.js | npm three@$version (Don McCurdy) | MIT, headers in the files |
TXT
echo "vendored three@$version into $dest"
