#!/usr/bin/env bash
# postern control latencies on this machine (bench/control.mjs): work poll/ack/heartbeat and event
# append/list/SSE delivery, one client over loopback, SQLite store (synchronous=FULL: every write is an
# fsync). CONTROL_BENCH_N calls per step (300), CONTROL_BENCH_STORE sqlite|redis (redis: a redis-server
# the bench starts, appendfsync always, or POSTERN_REDIS_URL). The tool-call round trip needs a worker: it is
# bench/worker.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: bench/control.sh POSTERN_BIN}
POSTERN_BIN=$(realpath "$BIN") exec node bench/control.mjs
