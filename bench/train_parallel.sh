#!/usr/bin/env bash
# Data-parallel ebm-train on one machine: STEPS training steps of PRESET on DATA as 1 process x 1
# thread, 1 x 2 threads, 2 processes x 1 thread and 4 x 1 (on loopback, started as torchrun
# would: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Prints, per layout, the median step time
# and rate from rank 0's metrics.csv (first step left out: warm-up), the scaling efficiency
# against 1 x 1 (rate / (processes x threads x the 1 x 1 rate)), and from log.txt the time of one
# all-reduce of every gradient alone and how long rank 0 waited for it after its backward pass.
#
#   bench/train_parallel.sh DATA PRESET STEPS [LAYOUT...] [-- ebm-train options]
#   bench/train_parallel.sh data/bridges paper 5
#   bench/train_parallel.sh data/bridges unet 8 1x1 2x1 -- --batch 64
#
# LAYOUT is PROCESSESxTHREADS (default: 1x1 1x2 2x1 4x1). Runs go to a fresh folder under /tmp,
# which is kept (its path is printed) for a look at the logs.
set -euo pipefail
cd "$(dirname "$0")/.."
exe=${EBM_TRAIN:-build/release/trainer/ebm-train}
[[ $# -ge 3 ]] || { sed -n '2,14p' "$0"; exit 2; }
data=$1 preset=$2 steps=$3
shift 3
layouts=()
while [[ $# -gt 0 && $1 != -- ]]; do layouts+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
extra=("$@")
((${#layouts[@]})) || layouts=(1x1 1x2 2x1 4x1)
out=$(mktemp -d /tmp/ebm-parallel.XXXXXX)
echo "runs in $out"

# A free port from the kernel (port 0), for this layout's rank 0.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The median of column $2 of CSV $1, rows after the first data row.
median_after_first() {
  awk -F, -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
                       NR > 2 { print $c }' "$1" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

base_rate=""
printf '%-8s %10s %12s %9s %14s %14s %8s\n' layout "step (s)" rate efficiency \
  "all-reduce ms" "waited ms" "wall s"
for layout in "${layouts[@]}"; do
  n=${layout%x*} t=${layout#*x}
  dir=$out/$layout
  args=("$exe" --data "$data" --preset "$preset" --run "$dir" --threads "$t" --max-steps "$steps"
        --sample-count 0 --quiet "${extra[@]}")
  t0=$(date +%s.%N)
  if ((n == 1)); then
    "${args[@]}" 2>"$dir.log"
  else
    port=$(free_port)
    pids=()
    for ((r = 0; r < n; r++)); do
      RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 \
        MASTER_PORT=$port "${args[@]}" 2>"$dir.$r.log" &
      pids+=($!)
    done
    status=0
    for p in "${pids[@]}"; do wait "$p" || status=$?; done
    ((status == 0)) || { echo "$layout failed: see $dir.*.log" >&2; exit 1; }
  fi
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  rate_col=$(head -1 "$dir/metrics.csv" | tr , '\n' | grep -E '_per_s$')
  step_s=$(median_after_first "$dir/metrics.csv" seconds)
  rate=$(median_after_first "$dir/metrics.csv" "$rate_col")
  [[ -n $base_rate ]] || base_rate=$rate
  eff=$(awk -v r="$rate" -v b="$base_rate" -v k=$((n * t)) 'BEGIN { printf "%.0f%%", 100 * r / (k * b) }')
  alone=$(grep -o '[0-9.e+-]* ms alone' "$dir/log.txt" | head -1 | cut -d' ' -f1 || true)
  waited=$(grep -o 'waited [0-9.e+-]* ms a step' "$dir/log.txt" | tail -1 | cut -d' ' -f2 || true)
  printf '%-8s %10.3f %12.1f %9s %14s %14s %8.1f\n' "$layout" "$step_s" "$rate" "$eff" \
    "${alone:--}" "${waited:--}" "$wall"
done
echo "rate: $rate_col of the global batch (rank 0's step time); efficiency against 1x1"
