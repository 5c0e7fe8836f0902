#!/usr/bin/env bash
# Installs, from Debian's packages by name, whatever the build, the tests and the page need and
# is not installed yet. Idempotent: a machine that has everything runs no apt-get at all.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # runtime, tools and server
  libeigen3-dev nlohmann-json3-dev libstb-dev zlib1g-dev libcpp-httplib-dev libssl-dev
  # trainer (LibTorch with OpenBLAS instead of the slow reference BLAS)
  libtorch-dev libopenblas-dev
  # tests and benchmarks (python3-torch: the trainer tests write TorchScript models with it and
  # read checkpoints back with torch.jit.load)
  googletest libgtest-dev libgmock-dev libbenchmark-dev python3-numpy python3-torch
  # the browser build and its tests
  emscripten nodejs npm chromium
  # a real dataset nobody here drew
  dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# LibTorch links the reference BLAS unless the OpenBLAS alternative is selected.
if [[ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]]; then
  current=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | awk '/^Value:/{print $2}')
  if [[ "$current" != */openblas-pthread/* ]]; then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
    $sudo update-alternatives --set liblapack.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so.3 || true
  fi
fi
echo "install-deps: all Debian packages present"
