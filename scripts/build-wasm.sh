#!/usr/bin/env bash
# Builds the WebAssembly runtime with Debian's Emscripten into build/wasm and assembles the site
# (web/page plus ebm_runtime.js/.wasm) in build/site, ready for ebm-serve or any static host.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's emscripten finds its acorn through NODE_PATH.
export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}
if [[ ! -f build/wasm/CMakeCache.txt ]]; then
  emcmake cmake -S . -B build/wasm -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DEigen3_DIR=/usr/share/eigen3/cmake -DEBM_SITE_DIR="$PWD/build/site"
fi
cmake --build build/wasm -j2
echo "build-wasm: site assembled in build/site"
