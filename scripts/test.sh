#!/usr/bin/env bash
# Builds everything and runs every test: the WebAssembly runtime and site (Emscripten), the
# Release build of all native parts with the node test of the wasm module and the page's
# end-to-end test in headless Chromium, then the native suites again under AddressSanitizer +
# UndefinedBehaviorSanitizer (all but the LibTorch trainer and the browser tests), then a short
# run of each libFuzzer target (tests/fuzz; scripts/fuzz.sh for long runs).
# Installs what is missing first. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --tests

start=$(date +%s)
echo "== WebAssembly build and site (build/wasm, build/site)"
scripts/build-wasm.sh

echo "== release build and tests"
cmake --preset release -DEBM_WASM_DIR="$PWD/build/site"
cmake --build --preset release
ctest --preset release

echo "== sanitizer build and tests (address, undefined)"
cmake --preset sanitize
cmake --build --preset sanitize
ctest --preset sanitize

echo "== fuzz targets: a short run of each from its committed seeds (clang, address, undefined)"
cmake --preset fuzz
cmake --build --preset fuzz
ctest --preset fuzz

echo "== all tests passed in $(( $(date +%s) - start ))s"
echo "== page screenshot: build/release/tests/web/e2e_work/artifacts/page.png"
