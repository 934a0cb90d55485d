#!/usr/bin/env bash
# make deb-boot-check: the Debian package on a fresh Debian 12 with systemd as PID 1. debootstrap makes a
# minimal bookworm root (cached in build/deb/bookworm.clean; delete it for a new one), the package is
# installed with dpkg -i, and systemd-nspawn boots it (private network: loopback only). A one-shot unit runs
# deploy/test/boot-selftest.sh (edge and gateway started as packaged, an MCP call on a sandbox: route through
# the edge, SIGHUP reload, systemd-analyze security), then powers off. Fails when a RESULT line says FAIL.
# Needs root, debootstrap and systemd-container (installed here when missing) and a Debian mirror; ~3 min.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "deb-boot-check: needs root (debootstrap, systemd-nspawn)" >&2; exit 1; }
for p in debootstrap systemd-container; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
    { apt-get update -qq || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
deb=${1:-$(INSTALL_BIN=${INSTALL_BIN:-build/gcc/postern} scripts/mkdeb.sh)}
out=build/deb
clean=$out/bookworm.clean
root=$out/bookworm
if [ ! -x "$clean/bin/systemctl" ]; then
  rm -rf "$clean"
  echo "deb-boot-check: debootstrap bookworm into $clean"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates,curl,procps,iproute2 \
    bookworm "$clean" > "$out/debootstrap.log" 2>&1 || { tail -20 "$out/debootstrap.log" >&2; exit 1; }
fi
rm -rf "$root"
cp -a "$clean" "$root"
cp "$deb" "$root/root/postern.deb"
# adduser (the package's dependency) comes the way an operator's apt would bring it: from the mirror.
chroot "$root" sh -c 'apt-get install -y -qq /root/postern.deb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq /root/postern.deb; }'
install -m 0755 deploy/test/boot-selftest.sh "$root/root/selftest.sh"
cat > "$root/etc/systemd/system/postern-selftest.service" <<'EOF'
[Unit]
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c '/root/selftest.sh > /root/selftest.out 2>&1'
ExecStartPost=/bin/systemctl poweroff
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/postern-selftest.service "$root/etc/systemd/system/multi-user.target.wants/"
# nspawn refuses to clear its propagation directory on a /run that is not tmpfs: give it one, privately.
timeout 300 unshare -m sh -c 'mount --make-rprivate /; mkdir -p /run/systemd/nspawn;
  mount -t tmpfs tmpfs /run/systemd/nspawn;
  exec systemd-nspawn -q -D "$0" --private-network --register=no --keep-unit -b' "$root" > "$out/boot.log" 2>&1 || true
[ -f "$root/root/selftest.out" ] || { echo "deb-boot-check: the self-test did not run; boot log:" >&2; tail -40 "$out/boot.log" >&2; exit 1; }
cp "$root/root/selftest.out" "$out/selftest.out"
grep -E '^(RESULT|SECURITY|PROC|CALL)' "$out/selftest.out"
if grep -q '^RESULT .* FAIL' "$out/selftest.out"; then
  echo "deb-boot-check: FAILED (full output: $out/selftest.out)" >&2
  exit 1
fi
echo "deb-boot-check: passed ($(grep -c '^RESULT .* ok' "$out/selftest.out") checks)"
