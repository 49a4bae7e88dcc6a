#!/usr/bin/env bash
# Instructions per count of the engine in wasm: tokengate_count.wasm in wasmtime, one count of
# each input under callgrind, collecting only inside the count call (so the compile, the input's
# generation and wasmtime's threads add nothing). Deterministic: the same .wasm gives the same
# numbers on any run, so two builds compare to the instruction.
#
#   benches/instructions.sh                  # builds both, prints the table for this checkout
#   benches/instructions.sh --wasm OLD.wasm  # the same for another build of benches/wasm-count
#   benches/instructions.sh --no-build       # skip the two cargo builds
#   benches/instructions.sh --tokenizers "llama3 qwen3"   # the models' tokenizers next to cl100k_base
#       (names of tokenizers/manifest.json, fetched by tokenizers/fetch.sh; the counting module is
#       built with them into target/models)
set -euo pipefail
cd "$(dirname "$0")/.."

wasm=()
build=1
models=()
while [ $# -gt 0 ]; do
    case "$1" in
        --wasm) wasm=(--wasm "$(realpath "$2")"); shift 2 ;;
        --no-build) build=0; shift ;;
        --tokenizers) read -ra models <<<"$2"; shift 2 ;;
        *) echo "usage: $0 [--no-build] [--wasm PATH] [--tokenizers \"NAME...\"]" >&2; exit 2 ;;
    esac
done

if [ ${#models[@]} -gt 0 ] && [ ${#wasm[@]} -eq 0 ]; then
    files=$(tokenizers/fetch.sh "${models[@]}" | sed -n 's/^TOKENGATE_TOKENIZERS=//p')
    if [ "$build" = 1 ]; then
        TOKENGATE_TOKENIZERS="$files" cargo build --release --target wasm32-wasip1 \
            --manifest-path benches/wasm-count/Cargo.toml --target-dir target/models
    fi
    wasm=(--wasm "$(realpath target/models/wasm32-wasip1/release/tokengate_count.wasm)")
fi
if [ "$build" = 1 ]; then
    if [ ${#models[@]} -eq 0 ]; then
        cargo build --release --target wasm32-wasip1 --manifest-path benches/wasm-count/Cargo.toml --target-dir target
    fi
    cargo build --release -p tokengate-benches --example instructions
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One count of INPUT with ENCODING; prints "instructions tokens".
measure() {
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*count_once*' \
        --callgrind-out-file="$out/cg" target/release/examples/instructions "${wasm[@]}" "$1" "$2" \
        >"$out/tokens" 2>"$out/log" || { cat "$out/log" >&2; exit 1; }
    echo "$(awk '/^(summary|totals):/ { print $2; exit }' "$out/cg") $(cat "$out/tokens")"
}

human() {
    awk -v n="$1" 'BEGIN { if (n >= 1e6) printf "%.3f M", n / 1e6; else printf "%.1f K", n / 1e3 }'
}

if [ ${#models[@]} -gt 0 ]; then
    # Instructions per count and tokens, one column per tokenizer.
    names=(cl100k_base "${models[@]}")
    printf '| input |'; printf ' %s |' "${names[@]}"; echo
    printf '|---|'; printf -- '---:|%.0s' "${names[@]}"; echo
    for input in prose-4k code-64k mixed-1m letters-1m cjk-64k; do
        printf '| %s |' "$input"
        for name in "${names[@]}"; do
            read -r n tokens < <(measure "$input" "$name")
            printf ' %s (%s) |' "$(human "$n")" "$tokens"
        done
        echo
    done
    exit 0
fi

echo "| input | cl100k_base | o200k_base | tokens |"
echo "|---|---:|---:|---:|"
for input in prose-4k code-64k mixed-1m letters-1m scripts-1m cjk-64k; do
    read -r cl cl_tokens < <(measure "$input" cl100k_base)
    read -r o o_tokens < <(measure "$input" o200k_base)
    echo "| $input | $(human "$cl") | $(human "$o") | $cl_tokens / $o_tokens |"
done
