#!/usr/bin/env bash
# The main job: build everything (native and WebAssembly) and serve the page with the models in
# models/ on http://127.0.0.1:$PORT/ (default 8080; PORT=0 picks a free port). Installs what is
# missing first. Ctrl-C stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build-wasm.sh
cmake --preset release -DEBM_WASM_DIR="$PWD/build/site"
cmake --build --preset release

shopt -s nullglob
models=(models/*.safetensors)
if ((${#models[@]} == 0)); then
  echo "run: models/ holds no .safetensors model yet; the page will offer to open one from disk."
  echo "run: for a model with random weights (noise in, noise out) to try the page with:"
  echo "  build/release/tests/runtime/make_test_model models/presets/paper.json models/random-paper.safetensors"
fi
port=${PORT:-8080}
echo "run: serving the page; open the URL below (Ctrl-C stops)"
exec build/release/web/server/ebm-serve --web build/site --models models --host 127.0.0.1 --port "$port"
