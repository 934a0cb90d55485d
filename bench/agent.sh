#!/usr/bin/env bash
# End-to-end step latency of the scripted demo (bench/agent.mjs): p50 per step type, an MCP call through
# edge + gateway + guard + audit and a sandbox call through control plane + worker, next to the same calls
# made directly (the agent straight to the MCP server; a `postern sandbox serve --stdio` child called alone).
# AGENT_BENCH_N steps of each (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: bench/agent.sh POSTERN_BIN}
POSTERN_BIN=$(realpath "$BIN") exec node bench/agent.mjs
