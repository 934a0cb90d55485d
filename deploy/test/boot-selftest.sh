#!/bin/bash
# Runs inside a booted Debian 12 (systemd-nspawn -b, scripts/deb-boot-check.sh) with the postern package
# installed: configures an edge and a gateway on loopback as an operator would, starts both units as
# packaged, and drives an MCP session on a sandbox: route through the edge. Prints RESULT lines.
set -u
res() { echo "RESULT $1 $2"; }
P=/etc/postern
DOMAIN=t1.tunnel.example.net
getent passwd postern >/dev/null && res user ok || res user FAIL

postern certs init --domain edge.example.net --out $P/edge-pki >/dev/null
chown -R postern:postern $P/edge-pki
cat > $P/edge.yaml <<YAML
state_dir: /var/lib/postern
domain: tunnel.example.net
connector_listen: "127.0.0.1:7844"
connector_tls: { cert_file: $P/edge-pki/server.pem, key_file: $P/edge-pki/server.key }
client_listen: "127.0.0.1:443"
YAML
systemctl start postern-edge.service
for i in $(seq 50); do curl -sf http://127.0.0.1:20250/ready >/dev/null && break; sleep 0.2; done
systemctl is-active -q postern-edge.service && res edge-active ok || res edge-active FAIL
created=$(runuser -u postern -- postern tunnel create t1 -c $P/edge.yaml)
tok=$(echo "$created" | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
domain=$(echo "$created" | sed -n 's/.*"domain" *: *"\([^"]*\)".*/\1/p')
[ -n "$tok" ] && res tunnel-create ok || res tunnel-create FAIL
DOMAIN=${domain:-$DOMAIN}

postern certs init --domain "$DOMAIN" --out $P/pki >/dev/null
chown -R postern:postern $P/pki
install -o postern -g postern -m 0600 /dev/null $P/token
echo "$tok" > $P/token
cp $P/edge-pki/ca.pem $P/edge-ca.pem
cat > $P/gateway.yaml <<YAML
token_file: $P/token
edges: ["127.0.0.1:7844"]
edge_server_name: edge.example.net
edge_ca_file: $P/edge-ca.pem
tunnel_domain: $DOMAIN
tls: { cert_file: $P/pki/server.pem, key_file: $P/pki/server.key }
routes:
  box:
    sandbox: { memory: 256M, timeout: 20s, workspace_root: /var/lib/postern/ws }
YAML
install -d -o postern -g postern -m 0750 /var/lib/postern/ws
postern check -c $P/gateway.yaml && res check ok || res check FAIL
postern boundary -c $P/gateway.yaml | grep -q '^== route box' && res boundary ok || res boundary FAIL
systemctl start postern-gateway.service
for i in $(seq 50); do curl -sf http://127.0.0.1:20251/ready >/dev/null && break; sleep 0.2; done
systemctl is-active -q postern-gateway.service && res gateway-active ok || res gateway-active FAIL

mcp() { curl -sS -m 20 --cacert $P/pki/ca.pem --resolve "box.$DOMAIN:443:127.0.0.1" "https://box.$DOMAIN/mcp" \
  -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' "$@"; }
hdrs=$(mktemp)
mcp -D "$hdrs" -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}' > /tmp/init.out
sid=$(sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: *\([^\r]*\).*/\1/p' "$hdrs")
grep -q serverInfo /tmp/init.out && res mcp-initialize ok || { res mcp-initialize FAIL; cat /tmp/init.out; }
mcp -H "mcp-session-id: $sid" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}' >/dev/null
mcp -H "mcp-session-id: $sid" -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"bash","arguments":{"command":"echo sandboxed-$(id -u)-$(hostname); head -3 /proc/self/cgroup"}}}' > /tmp/call.out
grep -q 'sandboxed-' /tmp/call.out && res sandbox-call ok || { res sandbox-call FAIL; cat /tmp/call.out; }
echo "CALL $(head -c 600 /tmp/call.out)"

# reload: SIGHUP
systemctl reload postern-gateway.service; sleep 1
systemctl is-active -q postern-gateway.service && res gateway-after-reload ok || res gateway-after-reload FAIL

for u in postern-edge postern-gateway; do
  echo "SECURITY $u $(systemd-analyze security $u.service 2>/dev/null | tail -1)"
  echo "PROPS $u $(systemctl show -p User -p MainPID -p NRestarts $u.service | tr '\n' ' ')"
  pid=$(systemctl show -p MainPID --value $u.service)
  [ "$pid" != 0 ] && echo "PROC $u $(grep -E '^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/$pid/status | tr -s '\t\n' '  ')"
done
journalctl -b --no-pager -o cat -u postern-edge.service -u postern-gateway.service | sed 's/^/JOURNAL /' | tail -60
