#!/usr/bin/env bash
# Installs what the build and tests need and is missing: Debian packages (as root, apt-get -y)
# and the npm test clients pinned in package-lock.json (npm ci into ./node_modules), then the MCP conformance
# tooling (scripts/mcp-tools.sh: Node 22, the conformance suite, the Inspector CLI into ./.mcp-tools).
# `scripts/deps.sh --build` installs only what `make build` needs (the Containerfile's build stage uses it).
set -euo pipefail
cd "$(dirname "$0")/.."

build_debs=(build-essential pkg-config
      libssl-dev libuv1-dev libnghttp2-dev libhttp-parser-dev libjansson-dev libfyaml-dev
      libseccomp-dev libpcre2-dev libcurl4-openssl-dev libsqlite3-dev libhiredis-dev)
debs=("${build_debs[@]}" clang llvm libclang-rt-14-dev libcmocka-dev
      rsyslog rsyslog-openssl openssl curl sqlite3 iproute2 util-linux e2fsprogs procps psmisc nodejs npm lintian redis-server
      debootstrap umoci runc busybox-static)
build_only=0
[ "${1:-}" = --build ] && { build_only=1; debs=("${build_debs[@]}"); }
[ "$build_only" = 0 ] && debs+=(btrfs-progs) # tests/e2e/sandbox_disk: a btrfs subvolume on a loop image
[ "$build_only" = 0 ] && [ "${POSTERN_BENCH_DEPS:-0}" = 1 ] && debs+=(bubblewrap firejail wrk hyperfine openssh-server openssh-client socat nginx python3 ripgrep)

missing=()
for p in "${debs[@]}"; do
  # nodejs/npm may come from outside Debian (nodesource, nvm); a working binary is enough.
  case $p in nodejs) command -v node >/dev/null && continue;; npm) command -v npm >/dev/null && continue;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: apt-get install -y ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || echo "deps: apt-get update failed; trying the install with the cached lists" >&2
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$build_only" = 0 ] && [ -f package-lock.json ]; then
  stamp=node_modules/.postern-lock
  if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
    echo "deps: npm ci (pinned MCP SDK, server-everything, inspector CLI)"
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json "$stamp"
  fi
fi

[ "$build_only" = 1 ] || scripts/mcp-tools.sh
