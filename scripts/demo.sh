#!/usr/bin/env bash
# make demo: the whole system on loopback with embedded defaults (see scripts/demo.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
export POSTERN_BIN="${1:?usage: demo.sh POSTERN_BIN}"
exec node scripts/demo.mjs
