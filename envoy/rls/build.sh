#!/usr/bin/env bash
# Builds the test rate limit service (target/rls/release/tokengate-test-rls). limitador's default
# features pull in RocksDB, which the service never uses (it counts in Redis): librocksdb-sys links
# Debian's librocksdb instead of compiling its bundled C++ (minutes of it), through its
# ROCKSDB_LIB_DIR / SNAPPY_LIB_DIR options; nothing of it is called, so the linker drops it all.
# Needs Debian's librocksdb-dev, libsnappy-dev, clang, libclang-dev (bindgen), libssl-dev, pkg-config.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
lib="/usr/lib/$(gcc -print-multiarch)"
ROCKSDB_LIB_DIR="$lib" SNAPPY_LIB_DIR="$lib" \
  cargo build --release --locked --manifest-path envoy/rls/Cargo.toml --target-dir target/rls "$@"
