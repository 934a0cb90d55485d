#!/bin/bash
# Runs inside a booted Debian 12 (systemd-nspawn -b, scripts/deb-boot-check.sh) with the postern package
# installed: configures an edge and a gateway on loopback as an operator would, starts both units as
# packaged, and drives an MCP session on a sandbox: route through the edge; then a control plane and a worker
# on it, each from its unit as packaged (the worker fills its warm pool of sandboxes and polls the control
# plane with its environment key). Prints RESULT lines.
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

# control and worker, as docs/operations.md says to set them up
postern certs init --domain control.example.net --out $P/control-pki >/dev/null
chown -R postern:postern $P/control-pki
cat > $P/control.yaml <<YAML
listen_addr: "127.0.0.1:8443"
tls: { cert_file: $P/control-pki/server.pem, key_file: $P/control-pki/server.key }
state_dir: /var/lib/postern/control
store: sqlite
metrics_listen: "127.0.0.1:20252"
YAML
# the unit's StateDirectory=, made ahead so that the admin command (as postern) can write the store
install -d -o postern -g postern -m 0750 /var/lib/postern/control
env=$(runuser -u postern -- postern control env create boot-env -c $P/control.yaml)
env_id=$(echo "$env" | sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p')
env_key=$(echo "$env" | sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')
[ -n "$env_id" ] && [ -n "$env_key" ] && res control-env-create ok || { res control-env-create FAIL; echo "$env"; }
systemctl start postern-control.service
for i in $(seq 50); do curl -sf http://127.0.0.1:20252/metrics >/dev/null && break; sleep 0.2; done
systemctl is-active -q postern-control.service && res control-active ok || res control-active FAIL
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert $P/control-pki/ca.pem --resolve control.example.net:8443:127.0.0.1 \
  -H "authorization: Bearer $env_key" -H "anthropic-beta: managed-agents-2026-04-01" \
  "https://control.example.net:8443/v1/environments/$env_id/work?limit=1")
[ "$code" = 200 ] && res control-serves ok || res control-serves "FAIL ($code)"

install -o postern -g postern -m 0600 /dev/null $P/env.key
echo "$env_key" > $P/env.key
cp $P/control-pki/ca.pem $P/control-ca.pem
cat > $P/worker.yaml <<YAML
base_url: https://control.example.net:8443
environment_id: $env_id
environment_key_file: $P/env.key
workspace_root: /var/lib/postern/worker
ca_file: $P/control-ca.pem
max_sessions: 2
pool_size: 1
sandbox: { memory: 256M, pids: 128 }
metrics_listen: "127.0.0.1:9464"
YAML
grep -q control.example.net /etc/hosts || echo "127.0.0.1 control.example.net" >> /etc/hosts
systemctl start postern-worker.service
for i in $(seq 75); do curl -s http://127.0.0.1:9464/metrics | grep -q '^postern_worker_pool_size 1' && break; sleep 0.2; done
systemctl is-active -q postern-worker.service && res worker-active ok || res worker-active FAIL
curl -s http://127.0.0.1:9464/metrics | grep -q '^postern_worker_pool_size 1' && res worker-pool ok || res worker-pool FAIL
curl -s http://127.0.0.1:9464/metrics | grep -q '^postern_worker_poll_errors_total 0' && res worker-polls ok || res worker-polls FAIL
# a poll is a long poll, counted when answered (block_ms under 1 s)
for i in $(seq 25); do curl -s http://127.0.0.1:20252/metrics | grep -q '^postern_control_requests_total{endpoint="work.poll",status="200"}' && break; sleep 0.2; done
curl -s http://127.0.0.1:20252/metrics | grep -q '^postern_control_requests_total{endpoint="work.poll",status="200"}' \
  && res control-saw-poll ok || res control-saw-poll FAIL
echo "METRICS $(curl -s http://127.0.0.1:20252/metrics | grep '^postern_control_requests_total' | tr '\n' ' ')"
systemctl reload postern-worker.service postern-control.service; sleep 1
systemctl is-active -q postern-worker.service && systemctl is-active -q postern-control.service \
  && res worker-control-after-reload ok || res worker-control-after-reload FAIL

for u in postern-edge postern-gateway postern-control postern-worker; do
  echo "SECURITY $u $(systemd-analyze security $u.service 2>/dev/null | tail -1)"
  echo "PROPS $u $(systemctl show -p User -p MainPID -p NRestarts $u.service | tr '\n' ' ')"
  pid=$(systemctl show -p MainPID --value $u.service)
  [ "$pid" != 0 ] && echo "PROC $u $(grep -E '^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/$pid/status | tr -s '\t\n' '  ')"
done
journalctl -b --no-pager -o cat -u postern-edge.service -u postern-gateway.service -u postern-control.service \
  -u postern-worker.service | sed 's/^/JOURNAL /' | tail -100
