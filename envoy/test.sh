#!/usr/bin/env bash
# Runs the Envoy end-to-end tests (envoy/tests) against target/wasm32-wasip1/release/tokengate.wasm.
# Build the module first: cargo build --release --target wasm32-wasip1 -p tokengate
# Extra arguments go to pytest, e.g. envoy/test.sh -k streaming
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
envoy/setup.sh
exec .venv/bin/pytest -q -p no:cacheprovider envoy/tests "$@"
