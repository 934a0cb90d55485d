#!/usr/bin/env bash
# make install: lays out the binary, the docs, example configs and the systemd units under $DESTDIR.
# Variables (make passes them): INSTALL_BIN, PREFIX, BINDIR, DOCDIR, SYSCONFDIR, UNITDIR, SYSUSERSDIR, DESTDIR,
# INSTALL_STRIP (1: strip the binary, as the Debian package does). Existing configs are never overwritten.
# `scripts/install.sh --list` prints the files it installs (path and mode), for the packaging test.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PREFIX:=/usr/local}" "${BINDIR:=$PREFIX/bin}" "${DOCDIR:=$PREFIX/share/doc/postern}" "${SYSCONFDIR:=/etc}"
: "${UNITDIR:=$PREFIX/lib/systemd/system}" "${SYSUSERSDIR:=$PREFIX/lib/sysusers.d}" "${DESTDIR:=}"
: "${INSTALL_BIN:=build/gcc/postern}" "${INSTALL_STRIP:=0}"

docs=(README.md BENCHMARKS.md docs/*.md)
units=(postern-edge.service postern-gateway.service postern-worker.service postern-control.service)
examples=(edge.yaml gateway.yaml worker.yaml control.yaml)

if [ "${1:-}" = --list ]; then
  echo "$BINDIR/postern 0755"
  for f in "${docs[@]}"; do echo "$DOCDIR/$(basename "$f") 0644"; done
  echo "$DOCDIR/commands.txt 0644"
  for f in "${examples[@]}"; do echo "$DOCDIR/examples/$f 0644"; echo "$SYSCONFDIR/postern/$f 0644"; done
  for u in "${units[@]}"; do echo "$UNITDIR/$u 0644"; done
  echo "$SYSUSERSDIR/postern.conf 0644"
  exit 0
fi

[ -x "$INSTALL_BIN" ] || { echo "install: $INSTALL_BIN is missing: run make build first (or set INSTALL_BIN)" >&2; exit 1; }
D=$DESTDIR
install -d -m 0755 "$D$BINDIR" "$D$DOCDIR/examples" "$D$SYSCONFDIR/postern" "$D$UNITDIR" "$D$SYSUSERSDIR"
if [ "$INSTALL_STRIP" = 1 ]; then
  install -m 0755 "$INSTALL_BIN" "$D$BINDIR/postern.tmp"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$D$BINDIR/postern.tmp"
  mv "$D$BINDIR/postern.tmp" "$D$BINDIR/postern"
else
  install -m 0755 "$INSTALL_BIN" "$D$BINDIR/postern"
fi
install -m 0644 "${docs[@]}" "$D$DOCDIR/"

# Every subcommand's --help in one file: the reference that a man page would be.
{
  "$INSTALL_BIN" --help
  for c in $("$INSTALL_BIN" --help | awk '/^commands:/{on=1; next} on && /^  [a-z]/{print $1}'); do
    printf '\n\n==== postern %s --help\n\n' "$c"
    "$INSTALL_BIN" "$c" --help 2>&1 || { echo "install: postern $c --help failed" >&2; exit 1; }
  done
} > "$D$DOCDIR/commands.txt.tmp"
chmod 0644 "$D$DOCDIR/commands.txt.tmp"
mv "$D$DOCDIR/commands.txt.tmp" "$D$DOCDIR/commands.txt"

for f in "${examples[@]}"; do
  install -m 0644 "deploy/examples/$f" "$D$DOCDIR/examples/$f"
  if [ -e "$D$SYSCONFDIR/postern/$f" ]; then
    echo "install: $D$SYSCONFDIR/postern/$f exists: kept (the example is in $D$DOCDIR/examples/$f)"
  else
    install -m 0644 "deploy/examples/$f" "$D$SYSCONFDIR/postern/$f"
  fi
done
for u in "${units[@]}"; do
  sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" -e "s|@DOCDIR@|$DOCDIR|g" \
    "deploy/systemd/$u.in" > "$D$UNITDIR/$u.tmp"
  chmod 0644 "$D$UNITDIR/$u.tmp"
  mv "$D$UNITDIR/$u.tmp" "$D$UNITDIR/$u"
done
install -m 0644 deploy/sysusers.d/postern.conf "$D$SYSUSERSDIR/postern.conf"

if [ -z "$D" ]; then
  echo "install: done. Next: systemd-sysusers (creates the user postern), systemctl daemon-reload, edit"
  echo "  $SYSCONFDIR/postern/gateway.yaml (or edge.yaml, worker.yaml, control.yaml), then systemctl enable --now"
  echo "  postern-gateway (or postern-edge, postern-worker, postern-control)"
fi
