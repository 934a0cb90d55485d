#!/usr/bin/env bash
# The layer check must be able to fail: on a copy of src/ with one violation of each kind injected, it must
# exit 1 and name each of them; on the untouched copy it must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
cp -r src "$t/src"
scripts/layers.sh "$t/src" >/dev/null || { echo "layers self-test: the clean copy failed" >&2; exit 1; }
echo '#include "tunnel/sni.h"' >> "$t/src/core/log.c"          # core knows a feature
echo '#include "proxy/proxy.h"' >> "$t/src/tunnel/reg.c"        # tunnel knows the proxy
echo '#include "sandbox/engine/sandbox.h"' >> "$t/src/tunnel/sni.h"    # tunnel knows the sandbox
echo '#include "tunnel/edge.h"' >> "$t/src/sandbox/engine/landlock.c"  # sandbox knows a transport
echo '#include "commands.h"' >> "$t/src/proxy/route.c"          # below the command table
echo '#include "sandbox/tools/tools.h"' >> "$t/src/sandbox/tools/tool_text.c"   # a cycle with tools.c -> tool_text.h
echo '#include "sandbox/mcp/mcp_server.h"' >> "$t/src/sandbox/tools/tool_wire.c" # tools know the MCP server
echo '#include "sandbox/tools/tools.h"' >> "$t/src/sandbox/engine/ws_quota.c"     # the engine knows the tools
mkdir "$t/src/newdir" && echo 'int x;' > "$t/src/newdir/a.c"    # a folder with no rule
printf 'int bo_bad(void);\nint bo_bad(void)\n{\n\treturn -1;\n}\n' >> "$t/src/core/backoff.c"  # a bare -1
if out=$(scripts/layers.sh "$t/src" 2>&1); then echo "layers self-test: violations passed" >&2; exit 1; fi
for want in 'core/log.c:[0-9]* includes "tunnel/sni.h"' 'tunnel/reg.c:[0-9]* includes "proxy/proxy.h"' \
            'tunnel/sni.h:[0-9]* includes "sandbox/engine/sandbox.h"' 'sandbox/engine/landlock.c:[0-9]* includes "tunnel/edge.h"' \
            'proxy/route.c:[0-9]* includes commands.h but defines no command' 'newdir/a.c: folder src/newdir has no rule' \
            'include cycle: sandbox/tools/tool_text includes sandbox/tools/tools.h' \
            'sandbox/tools/tool_wire.c:[0-9]* includes "sandbox/mcp/mcp_server.h": src/sandbox/tools may include only' \
            'sandbox/engine/ws_quota.c:[0-9]* includes "sandbox/tools/tools.h": src/sandbox/engine may include only' \
            '9 include(s) break' 'core/backoff.c:[0-9]*: return -1;' '1 bare return -1'; do
  grep -q "$want" <<<"$out" || { echo "layers self-test: missing: $want"; echo "$out"; exit 1; } >&2
done
echo "layers self-test: 10 injected violations caught"
