#!/usr/bin/env bash
# Builds everything and runs every test: the Release build (all parts) and the same suites under
# AddressSanitizer + UndefinedBehaviorSanitizer (all but the LibTorch trainer).
# Installs what is missing first. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

start=$(date +%s)
echo "== release build and tests"
cmake --preset release
cmake --build --preset release
ctest --preset release

echo "== sanitizer build and tests (address, undefined)"
cmake --preset sanitize
cmake --build --preset sanitize
ctest --preset sanitize

echo "== all tests passed in $(( $(date +%s) - start ))s"
