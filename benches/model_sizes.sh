#!/usr/bin/env bash
# What each model tokenizer adds to tokengate.wasm: builds the filter once per tokenizer of
# tokenizers/manifest.json (fetched by tokenizers/fetch.sh), alone, and prints the code and data
# sections next to the default build's. The data section is what every VM copies into its linear
# memory (one VM per Envoy worker plus two), so its growth is the memory per worker.
#
#   benches/model_sizes.sh                       # every tokenizer the engine reads
#   benches/model_sizes.sh llama3 qwen3          # these
# Builds go to target/sizes (one cargo build each, about a minute apiece on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(llama3 llama3.1 gpt-oss qwen3 deepseek-v3 mistral-tekken qwen3.6 gemma3)

# Code and data section sizes of a .wasm: "code data".
sections() {
    python3 - "$1" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
i, sizes = 8, {}
while i < len(b):
    sid = b[i]; i += 1
    size = shift = 0
    while True:
        x = b[i]; i += 1
        size |= (x & 0x7f) << shift; shift += 7
        if x < 0x80:
            break
    sizes[sid] = sizes.get(sid, 0) + size
    i += size
print(sizes.get(10, 0), sizes.get(11, 0))
PY
}

build() {
    TOKENGATE_TOKENIZERS="$1" cargo build --quiet --release --target wasm32-wasip1 -p tokengate --target-dir target/sizes
    sections target/sizes/wasm32-wasip1/release/tokengate.wasm
}

files=$(tokenizers/fetch.sh "${names[@]}" | sed -n 's/^TOKENGATE_TOKENIZERS=//p')
read -r code0 data0 < <(build "")
echo "| build | code | data (per VM) | + code | + data |"
echo "|---|---:|---:|---:|---:|"
printf '| default (cl100k_base, o200k_base) | %d | %d | | |\n' "$code0" "$data0"
IFS=, read -ra pairs <<<"$files"
for pair in "${pairs[@]}"; do
    read -r code data < <(build "$pair")
    printf '| + %s | %d | %d | %+d | %+d |\n' "${pair%%=*}" "$code" "$data" $((code - code0)) $((data - data0))
done
read -r code data < <(build "$files")
printf '| + all of them | %d | %d | %+d | %+d |\n' "$code" "$data" $((code - code0)) $((data - data0))
