#!/usr/bin/env bash
# Trains the shipped bridge model from scratch, the way models/bridges.safetensors was made
# (models/README.md, "bridges.safetensors"), in resumable stages:
#
#   1. the unet-global U-Net, denoising score matching, learning rate 1e-3, 4,460 steps (33 epochs)
#   2. the rate falling along a half cosine to 0 by epoch 45              (--quick stops here)
#   3. two restarts from half the rate, falling to 0 by epochs 57 and 69
#   4. the unet-wide U-Net (half as many filters again) started from that model
#      (ebm-train --init-from), 40 more epochs with the rate falling from 5e-4 to 0
#   5. a full-resolution refinement after that U-Net (the unet-wide-fine preset), trained alone
#      for 25 epochs with the U-Net's weights kept as they are (--init-from, --freeze-layers 34),
#      summed on at every noise level as it first shipped, then 3 epochs with the preset's gate
#      (the refinement summed on up to sigma 5 only)
#   6. export, carrying the stage-1 model (epoch 33) as the weaker network the sampler's
#      autoguidance pushes away from (ebm-export --autoguide), then ebm-eval at seeds 1 and 2
#
# Each stage leaves a marker in the run folder; run the script again after an interruption
# (Ctrl-C, a closed session) and it resumes the stage it was in, bit for bit, and skips the
# finished ones. Same thread count, same result.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<EOF
Usage: scripts/train-bridges.sh [--quick] [--threads N] [--run DIR] [--out FILE]

Trains the bridge model from scratch in resumable stages (see the top of this script and
models/README.md), exports it and evaluates it.

  --quick       stop after stage 2 (the unet-global model at 45 epochs: about 28 minutes on two
                cores; Frechet 22.0 / 21.7x in models/README.md) instead of the whole recipe
                (unet-wide after 69 + 40 epochs and its refinement after 25 + 3 more: about
                2 h 39 min on two cores, measured end to end on 2026-12-06)
  --threads N   CPU threads for training (default 2; a run resumes with any count, but results
                are bit for bit only at the same count)
  --run DIR     run folder (default runs/bridges-recipe; runs/bridges-quick with --quick)
  --out FILE    the model file to write (default runs/<run>/bridges.safetensors; the evaluation
                goes beside it, in FILE without .safetensors plus -eval-seed1 and -eval-seed2)
  -h, --help    this help

Needs the release build (cmake --preset release && cmake --build --preset release) and writes
the dataset to data/bridges first if it is not there (ebm-bridges).
EOF
}

quick=0
threads=2
run=""
out=""
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --threads) threads=${2:?--threads needs a number}; shift ;;
    --run) run=${2:?--run needs a folder}; shift ;;
    --out) out=${2:?--out needs a file name}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "train-bridges: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "train-bridges: --threads must be a positive number, not '$threads'" >&2; exit 2; }
run=${run:-runs/bridges-$( ((quick)) && echo quick || echo recipe)}
out=${out:-$run/bridges.safetensors}

B=build/release
for tool in trainer/ebm-train trainer/ebm-export trainer/ebm-eval trainer/ebm-bridges; do
  [[ -x "$B/$tool" ]] || { echo "train-bridges: $B/$tool is missing: build first (cmake --preset release && cmake --build --preset release)" >&2; exit 1; }
done
[[ -f data/bridges/labels.csv ]] || "$B/trainer/ebm-bridges" --out data/bridges

trap 'rc=$?; ((rc == 0)) || echo "train-bridges: stopped (status $rc); the same command continues from the last checkpoint" >&2' EXIT

narrow=$run/unet-global
wide=$run/unet-wide
fine=$run/unet-wide-fine
gated=$run/unet-wide-fine-gated
mkdir -p "$run"

# stage NAME DIR "FRESH ARGS" "RESUME ARGS": skipped when DIR/.NAME-done exists; otherwise a
# fresh run when FRESH ARGS are given and DIR has no checkpoint yet, else DIR resumed with RESUME
# ARGS (the stage's own epochs and schedule, so an interrupted stage continues where it stopped).
stage() {
  local name=$1 dir=$2 fresh=$3 resume=$4
  if [[ -e "$dir/.$name-done" ]]; then
    echo "train-bridges: $name: done already ($dir)"
    return
  fi
  echo "train-bridges: $name ($dir, $threads threads)"
  if [[ -n "$fresh" && ! -e "$dir/checkpoint.pt" ]]; then
    # shellcheck disable=SC2086
    "$B/trainer/ebm-train" --data data/bridges --run "$dir" --threads "$threads" $fresh
  else
    # shellcheck disable=SC2086
    "$B/trainer/ebm-train" --run "$dir" --resume --threads "$threads" $resume
  fi
  touch "$dir/.$name-done"
}

stage 1-constant-rate "$narrow" "--preset unet-global --epochs 35 --max-steps 4460" "--epochs 35 --max-steps 4460"
# The epoch-33 model is the weaker network of the full recipe's autoguidance: kept before stage 2
# continues the same run.
weak=$run/unet-global-33.safetensors
if ((!quick)) && [[ ! -e "$weak" ]]; then
  [[ ! -e "$narrow/.2-decay-to-45-done" ]] || { echo "train-bridges: $weak is missing and the run is past epoch 33; start a new --run" >&2; exit 1; }
  "$B/trainer/ebm-export" "$narrow" --out "$weak" --name bridges-unet-global-33 --license CC-BY-4.0 \
    --description "The unet-global U-Net after 33 epochs (stage 1 of scripts/train-bridges.sh): the weaker network of the bridge model's autoguidance"
fi
stage 2-decay-to-45 "$narrow" "" "--epochs 45 --lr-decay-epochs 12 --max-steps 0"
final=$narrow
if ((!quick)); then
  stage 3-restart-to-57 "$narrow" "" "--epochs 57 --lr-decay-epochs 24 --max-steps 0"
  stage 4-restart-to-69 "$narrow" "" "--epochs 69 --lr-decay-epochs 24 --max-steps 0"
  [[ -e "$run/unet-global-69.safetensors" ]] ||
    "$B/trainer/ebm-export" "$narrow" --out "$run/unet-global-69.safetensors" --f32
  stage 5-wide "$wide" "--preset unet-wide --init-from $run/unet-global-69.safetensors --lr 5e-4 --epochs 40 --lr-decay-epochs 40" \
    "--epochs 40 --lr-decay-epochs 40"
  # The refinement starts from the U-Net as the shipped file stores it (F16), as the shipped one did.
  [[ -e "$run/unet-wide-40.safetensors" ]] ||
    "$B/trainer/ebm-export" "$wide" --out "$run/unet-wide-40.safetensors"
  # The refinement's first 25 epochs summed it on at every noise level, as the preset did before
  # its gate ("sigma_max" on the closing add, models/README.md): the preset without it.
  ungated=$run/unet-wide-fine-ungated.json
  sed 's/"skip": "trunk", "sigma_max": 5}/"skip": "trunk"}/' models/presets/unet-wide-fine.json > "$ungated"
  ! grep -q '"sigma_max": 5' "$ungated" || { echo "train-bridges: could not take the gate out of $ungated" >&2; exit 1; }
  stage 6-fine "$fine" "--preset $ungated --init-from $run/unet-wide-40.safetensors --freeze-layers 34 --lr 1e-3 --epochs 25 --lr-decay-epochs 25" \
    "--epochs 25 --lr-decay-epochs 25"
  [[ -e "$run/unet-wide-fine-25.safetensors" ]] ||
    "$B/trainer/ebm-export" "$fine" --out "$run/unet-wide-fine-25.safetensors"
  stage 7-gated "$gated" "--preset unet-wide-fine --init-from $run/unet-wide-fine-25.safetensors --freeze-layers 34 --lr 1e-4 --epochs 3 --lr-decay-epochs 3" \
    "--epochs 3 --lr-decay-epochs 3"
  final=$gated
fi

if ((quick)); then
  desc="Bridge elevation drawings (192x48): beam, arch, cable-stayed and suspension bridges in eight subtypes. The quick preset of this project's method: an energy that knows how noisy a drawing is (a light U-Net trained by denoising score matching), sampled from pure noise down 40 noise levels."
  how="45 epochs of the unet-global U-Net (the learning rate falling along a half cosine to 0 over epochs 34-45; scripts/train-bridges.sh --quick); ddim sampler, 40 noise levels from 80 to 0.02"
else
  desc="Bridge elevation drawings (192x48): beam, arch, cable-stayed and suspension bridges in eight subtypes. This project's method: an energy that knows how noisy a drawing is (a U-Net trained by denoising score matching), sampled from pure noise down 18 noise levels and pushed away from a weaker copy of itself. bridges-cd is the paper's method, for comparison."
  how="69 epochs of the unet-global U-Net (16/32/64/64 filters), then 40 epochs of the wider unet-wide one (24/48/96/96) started from it (ebm-train --init-from), then a full-resolution refinement summed onto its output up to sigma 5 (12 filters at 48x192), trained for 25 epochs and 3 more with its gate with the U-Net kept as it was (the unet-wide-fine preset); ddim sampler, 18 noise levels spaced evenly in sigma^(1/3), 3 from 160 toward 20 and 15 from 20 to 0.02, the 5 up to sigma 2 taken twice (a restart of the small-noise end), autoguided (w 2.5, up to sigma 20) by the unet-global model at epoch 33, which the file carries. scripts/train-bridges.sh makes it; models/README.md has every step."
fi
card='{"architecture":{"preset":"'$( ((quick)) && echo unet-global || echo unet-wide-fine)'"},"how_made":"'$how'"}'
# The quick model keeps its training run's sampler (40 geometric levels); the full one walks 18
# levels spaced evenly in sigma^(1/3): 3 from sigma 160 toward 20, above the training noise, and
# 15 from 20 down (models/README.md, "The split schedule").
# The full one also follows 2.5 E - 1.5 E_weak at the levels up to sigma 20 (autoguidance by the
# epoch-33 model: models/README.md, "Autoguidance"), and takes the 5 levels up to sigma 2 twice,
# with a jump back up in between (models/README.md, "Rounds at the small-noise end").
sampler=$( ((quick)) && echo '{}' || echo '{"steps":18,"rho":3,"sigma_max":160,"split_sigma":20,"split_levels":3,"resample":2,"resample_sigma_max":2,"autoguide":2.5,"autoguide_sigma_max":20}')
autoguide=()
((quick)) || autoguide=(--autoguide "$weak")
"$B/trainer/ebm-export" "$final" --out "$out" --name bridges --license CC-BY-4.0 --description "$desc" --card "$card" --sampler "$sampler" "${autoguide[@]}"
eval1=${out%.safetensors}-eval-seed1
eval2=${out%.safetensors}-eval-seed2
"$B/trainer/ebm-eval" --model "$out" --seed 1 --threads "$threads" --out "$eval1"
"$B/trainer/ebm-eval" --model "$out" --seed 2 --threads "$threads" --out "$eval2"
# The same weights again, now with the evaluation in the card (the page shows it).
"$B/trainer/ebm-export" "$final" --out "$out" --name bridges --license CC-BY-4.0 --description "$desc" --card "$card" --sampler "$sampler" \
  "${autoguide[@]}" --evaluation "$eval1/report.json,$eval2/report.json"
echo "train-bridges: wrote $out; evaluations in $eval1 and $eval2 (report.md, samples.png)"
