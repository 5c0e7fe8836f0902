#!/usr/bin/env bash
# Installs, from Debian's packages by name, whatever the build, the tests and the page need and
# is not installed yet. Idempotent: a machine that has everything runs no apt-get at all.
# With --tests, also the npm packages of the browser tests and of the benchmark (by npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
with_tests=0
[[ "${1:-}" == "--tests" ]] && with_tests=1

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # runtime, tools and server
  libeigen3-dev nlohmann-json3-dev libstb-dev zlib1g-dev libcpp-httplib-dev libssl-dev
  # trainer (LibTorch with OpenBLAS instead of the slow reference BLAS)
  libtorch-dev libopenblas-dev
  # data-parallel training: the headers of Gloo, which LibTorch's c10d includes (its code is in
  # libtorch_cpu)
  libgloo-dev
  # tests and benchmarks (python3-torch: the trainer tests write TorchScript models with it and
  # read checkpoints back with torch.jit.load)
  googletest libgtest-dev libgmock-dev libbenchmark-dev python3-numpy python3-torch
  # the browser build and its tests (python3: a plain static host in the page test, and the
  # nginx deployment test)
  emscripten nodejs npm chromium python3
  # hardening: the public deployment behind nginx (deploy/nginx), libFuzzer targets (clang)
  nginx clang libclang-rt-dev
  # a real dataset nobody here drew
  dataset-fashion-mnist
)

# node and npm may come as one package (a nodejs build that bundles npm and conflicts with
# Debian's npm): a working command counts as installed.
provided() {
  case "$1" in
    nodejs) command -v node >/dev/null ;;
    npm) command -v npm >/dev/null ;;
    *) return 1 ;;
  esac
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || provided "$p" ||
    missing+=("$p")
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

# npm packages from the registry, exactly as locked, reinstalled only when a lock file changed:
# tests/web: playwright-core, which drives Debian's chromium (no browser is downloaded);
# bench: the peers of the benchmark (TensorFlow.js, onnxruntime-web and -node, playwright-core),
# whose agreement with our runtime is also a CTest test. No install scripts for the peers
# (onnxruntime-node's would look for optional GPU binaries on the network).
npm_ci() {
  local dir=$1; shift
  local stamp=$dir/node_modules/.installed-lock
  if [[ ! -f $stamp ]] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "install-deps: npm ci in $dir"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error "$@")
    cp "$dir/package-lock.json" "$stamp"
  fi
}
if ((with_tests)); then
  npm_ci tests/web
  npm_ci bench --ignore-scripts
  echo "install-deps: test npm packages present"
fi
