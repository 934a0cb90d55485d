#!/usr/bin/env bash
# make deb: a Debian package of `make install` (PREFIX=/usr, units in /lib/systemd/system), built with
# dpkg-deb. Version from VERSION, architecture from dpkg. Writes build/deb/postern_<version>_<arch>.deb and
# prints its path. INSTALL_BIN names the binary to package (default build/gcc/postern).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${INSTALL_BIN:=build/gcc/postern}" "${DEB_OUT:=build/deb}"
: "${DEB_MAINTAINER:=postern developers <dev@postern.example.org>}"
version=$(tr -d ' \n' < VERSION)
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || { echo "deb: VERSION '$version' is not a Debian version" >&2; exit 1; }
arch=$(dpkg --print-architecture)
stage=$DEB_OUT/root
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

INSTALL_BIN=$INSTALL_BIN DESTDIR=$stage PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system \
  SYSUSERSDIR=/usr/lib/sysusers.d DOCDIR=/usr/share/doc/postern INSTALL_STRIP=1 scripts/install.sh

doc=$stage/usr/share/doc/postern
cat > "$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: postern

Files: *
Copyright: 2026 the postern authors
License: see the upstream repository
EOF
printf 'postern (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
  "$version" "$version" "$DEB_MAINTAINER" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" \
  | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/copyright" "$doc/changelog.gz"
# No man page: every subcommand's --help is in /usr/share/doc/postern/commands.txt (and `postern X --help`).
install -d -m 0755 "$stage/usr/share/lintian/overrides"
echo 'postern: no-manual-page [usr/bin/postern]' > "$stage/usr/share/lintian/overrides/postern"
chmod 0644 "$stage/usr/share/lintian/overrides/postern"

# The only shared libraries left are glibc's (the others are linked statically): depend on the newest
# GLIBC symbol version the binary uses.
glibc=$(objdump -T "$stage/usr/bin/postern" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
others=$(objdump -p "$stage/usr/bin/postern" | awk '/NEEDED/{print $2}' | grep -Ev '^(libc|libm|libpthread|libdl|ld-linux.*)\.so' || true)
[ -z "$others" ] || { echo "deb: the binary needs shared libraries outside glibc: $others" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: postern
Version: $version
Architecture: $arch
Maintainer: $DEB_MAINTAINER
Installed-Size: $size
Depends: libc6 (>= $glibc), adduser
Section: net
Priority: optional
Description: MCP tunnel, gateway and self-hosted sandboxes for AI agents
 postern gives AI agents the MCP tools inside a private network without an
 inbound port: a public relay (postern edge), a customer-side gateway that
 dials out and terminates end-to-end TLS (postern gateway), and sandboxes.
 .
 The units postern-edge, postern-gateway, postern-worker and postern-control
 are installed, not enabled: edit /etc/postern/*.yaml, then for example
 systemctl enable --now postern-gateway.
EOF
printf '/etc/postern/%s\n' control.yaml edge.yaml gateway.yaml worker.yaml > "$stage/DEBIAN/conffiles"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$stage/DEBIAN/"
( cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum ) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

out=$DEB_OUT/postern_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
