#!/usr/bin/env bash
# Load and abuse benchmark of ebm-serve on 127.0.0.1 (bench/README.md, "Server under load and
# abuse"): builds ebm-serve and bench_serve_abuse (no-torch preset), then 64 keep-alive clients
# for 30 s download a model (every body checked by SHA-256) while it is republished every 0.5 s
# and 200 idle + 200 slowloris connections are held open. Extra arguments go to
# bench_serve_abuse (--connections, --seconds, --idle, --slowloris). Exit status 1 on any error.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset no-torch >/dev/null
cmake --build --preset no-torch --target ebm-serve bench_serve_abuse
exec build/no-torch/bench/bench_serve_abuse --serve build/no-torch/web/server/ebm-serve "$@"
