#!/usr/bin/env bash
# Long fuzzing runs of the libFuzzer targets (tests/fuzz), one after another: builds the fuzz
# preset (clang, AddressSanitizer + UndefinedBehaviorSanitizer), runs each target for SECONDS
# (default 600) from its committed seeds, growing a corpus in build/fuzz/long/<target> (kept
# between runs), and writes any crashing input to build/fuzz/findings/<target>/. Ends with one
# line per target: executions, corpus size, and "no findings" or the crash files.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 3600 fuzz_model
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(fuzz_model fuzz_sampler_settings fuzz_image fuzz_server_request)

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target "${targets[@]}"

summary=()
for t in "${targets[@]}"; do
  corpus=build/fuzz/long/$t findings=build/fuzz/findings/$t log=build/fuzz/long/$t.log
  mkdir -p "$corpus" "$findings"
  echo "== $t for ${seconds}s (log: $log)"
  status=0
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build/fuzz/tests/fuzz/$t -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" "tests/fuzz/corpus/$t" \
    >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  size=$(find "$corpus" -type f | wc -l)
  crashes=$(find "$findings" -type f | wc -l)
  if ((status == 0 && crashes == 0)); then
    summary+=("$t: $runs executions in ${seconds}s, corpus $size inputs, no findings")
  else
    summary+=("$t: $runs executions, exit $status, $crashes finding(s) in $findings (see $log)")
  fi
done
printf '%s\n' "${summary[@]}"
