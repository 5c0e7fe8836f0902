#!/usr/bin/env bash
# The peer benchmark (bench/README.md), one command: builds what it needs (the native Release
# targets bench_peers, make_test_model and ebm-sample; the wasm runtime and site) after
# scripts/install-deps.sh has installed what is missing (the npm peers exactly as locked), then
# runs bench/run.mjs, which makes the model, verifies every peer against our runtime, times them
# side by side and prints the table. Arguments go to run.mjs: --model M.safetensors, --rounds N,
# --min-ms MS, --quick, --only chromium,node,native.
# Results: build/bench/results.md and results.json. About 3 minutes on 2 cores after the builds.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Debian packages and the npm peers (scripts/install-deps.sh --tests)"
scripts/install-deps.sh --tests

echo "== native build (build/release: bench_peers, make_test_model, ebm-sample)"
[[ -f build/release/CMakeCache.txt ]] || cmake --preset release
cmake --build --preset release -j2 --target bench_peers make_test_model ebm-sample

echo "== WebAssembly runtime and site (build/site)"
scripts/build-wasm.sh

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg) (2-thread numbers mean little when other work holds the cores)"
exec node bench/run.mjs "$@"
