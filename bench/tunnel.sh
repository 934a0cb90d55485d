#!/usr/bin/env bash
# Tunnel data path, one run, side by side: direct to the origin, through ssh -R, through postern
# (edge + gateway, outer TLS 1.3 link and inner end-to-end TLS). Medians of ROUNDS rounds.
set -euo pipefail
# set -e alone ends the run without a word (a `read` at EOF, a failed command substitution): say where.
trap 'echo "bench: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
BIN=${1:?usage: bench/tunnel.sh POSTERN_BIN}
BIN=$(readlink -f "$BIN")
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5}
DUR1=${DUR1:-3}
here=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/postern-bench-XXXXXX)
# mktemp makes the directory 0700: nginx's workers (user nobody) could not reach the 1 GiB file, and every
# "download" was a 153-byte 403 page, which is why MB/s printed 0. Traverse only; keys stay 0600.
chmod 711 "$W"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT INT TERM
# 1,000 held connections need about 3,000 descriptors across the processes; an unprivileged shell (and root
# in a container) cannot raise the hard limit, but the soft limit can always go up to it.
ulimit -n "$(ulimit -Hn)" || echo "bench: cannot raise the open-files limit (soft $(ulimit -Sn), hard $(ulimit -Hn))" >&2

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "bench: port $1 never opened" >&2; exit 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# --- origin: nginx with a small response and a 1 GiB file ---
NGX=$(freeport)
mkdir -p "$W/ngx/www" "$W/ngx/tmp"
head -c $((1024*1024*1024)) /dev/zero > "$W/ngx/www/big"
cat > "$W/ngx/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $W/ngx/nginx.pid; error_log $W/ngx/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; sendfile on;
  client_body_temp_path $W/ngx/tmp; proxy_temp_path $W/ngx/tmp; fastcgi_temp_path $W/ngx/tmp;
  uwsgi_temp_path $W/ngx/tmp; scgi_temp_path $W/ngx/tmp;
  server { listen 127.0.0.1:$NGX; root $W/ngx/www; location = / { return 200 "hello, world\n"; } } }
NGX
nginx -c "$W/ngx/nginx.conf" -p "$W/ngx" -e "$W/ngx/error.log" & pids+=($!)
waitport "$NGX"

# --- ssh -R (default cipher), own sshd on loopback ---
SSHD=$(freeport); SSHR=$(freeport)
ssh-keygen -q -t ed25519 -N '' -f "$W/hostkey"; ssh-keygen -q -t ed25519 -N '' -f "$W/clientkey"
cp "$W/clientkey.pub" "$W/authorized_keys"
cat > "$W/sshd_config" <<SSHC
Port $SSHD
ListenAddress 127.0.0.1
HostKey $W/hostkey
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
LogLevel ERROR
SSHC
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$W/sshd_config" & pids+=($!)
waitport "$SSHD"
ssh -N -T -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ExitOnForwardFailure=yes -o BatchMode=yes \
  -i "$W/clientkey" -p "$SSHD" -R "127.0.0.1:$SSHR:127.0.0.1:$NGX" root@127.0.0.1 & pids+=($!)
waitport "$SSHR"

# --- postern: edge + gateway ---
CONN=$(freeport); CLI=$(freeport); EM=$(freeport); GM=$(freeport)
"$BIN" certs init --domain edge.bench.test --out "$W/edge-pki" >/dev/null
cat > "$W/edge.yaml" <<Y
state_dir: $W/edge-state
domain: tunnel.bench.test
connector_listen: 127.0.0.1:$CONN
connector_tls: { cert_file: $W/edge-pki/server.pem, key_file: $W/edge-pki/server.key }
client_listen: 127.0.0.1:$CLI
metrics_listen: 127.0.0.1:$EM
log_level: warn
Y
TUN=$("$BIN" tunnel create bench -c "$W/edge.yaml")
DOM=$(printf '%s' "$TUN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["domain"])')
printf '%s' "$TUN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' > "$W/token"; chmod 600 "$W/token"
"$BIN" certs init --domain "$DOM" --out "$W/pki" >/dev/null
cat > "$W/gateway.yaml" <<Y
token_file: $W/token
edges: ["127.0.0.1:$CONN"]
edge_ca_file: $W/edge-pki/ca.pem
edge_server_name: connect.edge.bench.test
connections: 2
metrics_listen: 127.0.0.1:$GM
tunnel_domain: $DOM
tls: { cert_file: $W/pki/server.pem, key_file: $W/pki/server.key }
routes: { bench: "http://127.0.0.1:$NGX" }
upstream: { allowed_ips: ["127.0.0.0/8"] }
log_level: warn
Y
"$BIN" edge -c "$W/edge.yaml" 2>"$W/edge.log" & EDGE=$!; pids+=($EDGE)
waitport "$CLI"
"$BIN" gateway -c "$W/gateway.yaml" 2>"$W/gateway.log" & GW=$!; pids+=($GW)
for _ in $(seq 200); do curl -fs "http://127.0.0.1:$GM/ready" >/dev/null && break; sleep 0.05; done
curl -fs "http://127.0.0.1:$GM/ready" >/dev/null || { echo "bench: gateway never became ready"; cat "$W/gateway.log"; exit 1; }
HOST="bench.$DOM"
# wrk has no --resolve: give it a private /etc/hosts in its own mount namespace.
printf '127.0.0.1 localhost %s\n' "$HOST" > "$W/hosts"
wrk_in_ns() { unshare -m sh -c "mount --bind '$W/hosts' /etc/hosts && exec wrk $*"; }
curl_p=(--cacert "$W/pki/ca.pem" --resolve "$HOST:$CLI:127.0.0.1")
curl -fs "${curl_p[@]}" "https://$HOST:$CLI/" | grep -q hello || { echo "bench: request through postern failed"; cat "$W/gateway.log" "$W/edge.log"; exit 1; }

declare -A URL=( [direct]="http://127.0.0.1:$NGX" [ssh-R]="http://127.0.0.1:$SSHR" [postern]="https://$HOST:$CLI" )
paths=(direct ssh-R postern)

idle_edge=$(rss_kb "$EDGE"); idle_gw=$(rss_kb "$GW")

declare -A TP RPS P50 P99 L1
tomsv() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v/1000; else if (v ~ /ms$/) printf "%.3f", v+0; else printf "%.3f", v*1000 }'; }
for r in $(seq "$ROUNDS"); do
  for p in "${paths[@]}"; do
    # %{speed_download} is bytes per second; a failed or short download is an error, not a fast zero.
    # (Not `read < <(curl)`: a failed curl there ended the script silently under set -e.)
    res=$(curl -s -S -o /dev/null -w '%{speed_download} %{size_download}' "${curl_p[@]}" "${URL[$p]}/big" 2>"$W/curl.err") ||
      { echo "bench: $p download failed (curl exit $?): $(cat "$W/curl.err") after $res" >&2; tail -5 "$W/gateway.log" "$W/edge.log" >&2; exit 1; }
    read -r bps size <<<"$res"
    [ "$size" = $((1024*1024*1024)) ] || { echo "bench: $p download got $size bytes" >&2; exit 1; }
    TP[$p]+="$bps "
    out=$(wrk_in_ns -t2 -c50 -d"${DUR}"s --latency "${URL[$p]}/" 2>&1) || { echo "bench: wrk -c50 on $p failed: $out" >&2; exit 1; }
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    RPS[$p]+="$rps "; P50[$p]+="$(tomsv "$p50") "; P99[$p]+="$(tomsv "$p99") "
    # One connection, one request at a time: what the path itself adds, without queueing behind 49 others.
    out=$(wrk_in_ns -t1 -c1 -d"${DUR1}"s --latency "${URL[$p]}/" 2>&1) || { echo "bench: wrk -c1 on $p failed: $out" >&2; exit 1; }
    L1[$p]+="$(tomsv "$(awk '$1=="50%" {print $2}' <<<"$out")") "
  done
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
printf '\n== tunnel data path (loopback, %s rounds, medians; wrk -t2 -c50 -d%ss; curl 1 GiB download)\n' "$ROUNDS" "$DUR"
printf '%-8s %12s %8s %10s %8s %10s %10s %12s\n' path 'MB/s' 'x direct' 'req/s' 'x ssh-R' 'p50 ms' 'p99 ms' '1-conn p50'
d_tp=$(med "${TP[direct]}"); s_rps=$(med "${RPS[ssh-R]}")
for p in "${paths[@]}"; do
  tp=$(med "${TP[$p]}"); rps=$(med "${RPS[$p]}")
  # MB/s is formatted by awk: bash's printf parses "%f" arguments with the locale's decimal point.
  printf '%-8s %12s %8.2f %10.0f %8.2f %10s %10s %12s\n' "$p" "$(awk -v v="$tp" 'BEGIN{printf "%.0f", v/1e6}')" \
    "$(awk -v a="$tp" -v b="$d_tp" 'BEGIN{print a/b}')" "$rps" "$(awk -v a="$rps" -v b="$s_rps" 'BEGIN{print a/b}')" \
    "$(med "${P50[$p]}")" "$(med "${P99[$p]}")" "$(med "${L1[$p]}")"
done
d50=$(med "${P50[direct]}"); p50=$(med "${P50[postern]}")
printf 'postern vs ssh -R: throughput x%.2f, req/s x%.2f; added p50 latency vs direct: %.3f ms at 50 connections, %.3f ms at 1\n' \
  "$(awk -v a="$(med "${TP[postern]}")" -v b="$(med "${TP[ssh-R]}")" 'BEGIN{print a/b}')" \
  "$(awk -v a="$(med "${RPS[postern]}")" -v b="$s_rps" 'BEGIN{print a/b}')" "$(awk -v a="$p50" -v b="$d50" 'BEGIN{print a-b}')" \
  "$(awk -v a="$(med "${L1[postern]}")" -v b="$(med "${L1[direct]}")" 'BEGIN{print a-b}')"

# --- memory: idle and with 1,000 open client connections (TLS through the tunnel, idle) ---
node "$here/hold-conns.mjs" 127.0.0.1 "$CLI" "$HOST" 1000 "$W/pki/ca.pem" > "$W/hold.out" & HOLD=$!; pids+=($HOLD)
for _ in $(seq 600); do grep -q '^held' "$W/hold.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^held 1000' "$W/hold.out" || { echo "bench: could not hold 1000 connections: $(cat "$W/hold.out")"; }
sleep 1
busy_edge=$(rss_kb "$EDGE"); busy_gw=$(rss_kb "$GW")
kill "$HOLD" 2>/dev/null || true
printf '\n== memory (VmRSS)\n'
printf 'edge:    idle %.1f MiB, with 1000 client connections %.1f MiB (%.1f KiB per connection)\n' \
  "$(awk -v v="$idle_edge" 'BEGIN{print v/1024}')" "$(awk -v v="$busy_edge" 'BEGIN{print v/1024}')" \
  "$(awk -v a="$busy_edge" -v b="$idle_edge" 'BEGIN{print (a-b)/1000}')"
printf 'gateway: idle %.1f MiB, with 1000 client connections %.1f MiB (%.1f KiB per connection)\n' \
  "$(awk -v v="$idle_gw" 'BEGIN{print v/1024}')" "$(awk -v v="$busy_gw" 'BEGIN{print v/1024}')" \
  "$(awk -v a="$busy_gw" -v b="$idle_gw" 'BEGIN{print (a-b)/1000}')"
