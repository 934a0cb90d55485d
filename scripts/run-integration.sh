#!/usr/bin/env bash
# Integration tier: real postern processes on loopback, driven by real clients (node:test + MCP SDK, curl, openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${POSTERN_BIN:?POSTERN_BIN must name the postern binary}"
shopt -s nullglob
tests=(tests/e2e/*.test.mjs)
[ ${#tests[@]} -gt 0 ] || { echo "integration: no tests found in tests/e2e" >&2; exit 1; }
echo "== integration with $POSTERN_BIN"
node --test --test-concurrency=1 --test-timeout=300000 "${tests[@]}"
