#!/usr/bin/env bash
# The main job: build everything and serve the page with the shipped model.
# Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release
cmake --build --preset release

echo "run: the native runtime and tools are built in build/release."
echo "run: the page, the WebAssembly runtime and the server arrive with the browser issue; until"
echo "run: then, sample natively, e.g.:"
echo "  build/release/runtime/ebm-sample --model MODEL.safetensors --count 16 --out grid.png"
