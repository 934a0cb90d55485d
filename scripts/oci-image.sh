#!/usr/bin/env bash
# make oci: the Containerfile's image, built without a container engine, as an OCI image layout in
# build/oci/image (tags <VERSION> and latest): run it with `umoci unpack` and `runc run` (crun 1.8 refuses a
# host with hybrid cgroups), or hand it to an engine (`skopeo copy oci:build/oci/image:latest ...`).
#
# How it stays the Containerfile's image: this script reads the Containerfile and carries out its
# instructions. The build stage is its `make install ...` line, run here on the release binary (INSTALL_BIN,
# default build/gcc/postern; the build stage would compile the same tree with the same deps.sh list). The
# runtime stage is done instruction by instruction: `FROM debian:12-slim` becomes a Debian 12 minbase rootfs
# made by debootstrap from the Debian mirror (no registry is reached; cached in build/oci/bookworm.base),
# each RUN runs in that rootfs with chroot, each `COPY --from=build` copies from the install step's output,
# and ENV, USER, WORKDIR, VOLUME, EXPOSE, ENTRYPOINT and CMD go into the image config with umoci. Any other
# instruction stops the script, so a change to the Containerfile cannot be silently left out.
# Needs root (debootstrap, chroot, files owned by the image's users); installs debootstrap, umoci and runc
# when missing (they are in scripts/deps.sh too). Prints the layout's path.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${INSTALL_BIN:=build/gcc/postern}" "${OCI_OUT:=build/oci}"
[ "$(id -u)" = 0 ] || { echo "oci: needs root (debootstrap, chroot, file ownership in the image)" >&2; exit 1; }
[ -x "$INSTALL_BIN" ] || { echo "oci: $INSTALL_BIN is missing: run make build first (or set INSTALL_BIN)" >&2; exit 1; }
for p in debootstrap umoci runc; do # runc: to run the image (tests/e2e/container.test.mjs)
  command -v "$p" >/dev/null ||
    { apt-get update -qq || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
version=$(tr -d ' \n' < VERSION)
mkdir -p "$OCI_OUT"
OCI_OUT=$(cd "$OCI_OUT" && pwd)
INSTALL_BIN=$(cd "$(dirname "$INSTALL_BIN")" && pwd)/$(basename "$INSTALL_BIN")

base=$OCI_OUT/bookworm.base
if [ ! -x "$base/usr/bin/apt-get" ]; then
  rm -rf "$base.tmp"
  echo "oci: debootstrap --variant=minbase bookworm (the debian:12-slim stand-in; once, then cached)" >&2
  debootstrap --variant=minbase bookworm "$base.tmp" > "$OCI_OUT/debootstrap.log" 2>&1 ||
    { tail -20 "$OCI_OUT/debootstrap.log" >&2; exit 1; }
  mv "$base.tmp" "$base"
fi

# The Containerfile as instructions: continuation lines joined, comments and blank lines dropped.
mapfile -t ins < <(sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' Containerfile | sed -e 's/^[[:space:]]*//' | grep -v -e '^#' -e '^$')
froms=()
for i in "${!ins[@]}"; do [[ ${ins[$i]} == FROM\ * ]] && froms+=("$i"); done
[ ${#froms[@]} = 2 ] || { echo "oci: expected two stages (FROM ... AS build, FROM debian:12-slim)" >&2; exit 1; }

# Stage 1: its `make install ...` (DESTDIR=/out) here, into $stage/out.
stage=$OCI_OUT/stage
rm -rf "$stage"
mkdir -p "$stage"
inst=$(printf '%s\n' "${ins[@]:0:${froms[1]}}" | grep -o 'make install[^&]*' | head -1)
[ -n "$inst" ] || { echo "oci: no 'make install' in the build stage" >&2; exit 1; }
read -r -a args <<< "${inst#make install}"
margs=()
for a in "${args[@]}"; do
  case $a in
    DESTDIR=/out) margs+=("DESTDIR=$stage/out") ;;
    INSTALL_BIN=*) margs+=("INSTALL_BIN=$INSTALL_BIN") ;;
    *) margs+=("$a") ;;
  esac
done
make -s --no-print-directory install "${margs[@]}" > "$OCI_OUT/install.log"
"$stage/out/usr/bin/postern" --version > /dev/null

# Stage 2, one instruction at a time.
root=$OCI_OUT/rootfs
rm -rf "$root"
env_kv=() cfg=()
json_list() { # a JSON array of strings (exec form) as one argument per line
  node -e 'const v = JSON.parse(process.argv[1]); if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) process.exit(1); for (const x of v) console.log(x);' "$1"
}
for ((i = froms[1]; i < ${#ins[@]}; i++)); do
  line=${ins[$i]} op=${ins[$i]%% *} arg=${ins[$i]#* }
  case $op in
    FROM)
      [ "$arg" = debian:12-slim ] || { echo "oci: runtime base '$arg': only debian:12-slim is made here" >&2; exit 1; }
      cp -a "$base" "$root" ;;
    ENV)
      kv=${arg/ /=}
      env_kv+=("$kv") cfg+=(--config.env "$kv") ;;
    RUN)
      # the host's resolver for apt, only while the RUN lasts (an image carries none)
      cp /etc/resolv.conf "$root/etc/resolv.conf"
      chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        "${env_kv[@]}" /bin/sh -ec "$arg" > "$OCI_OUT/run-$i.log" 2>&1 || { tail -20 "$OCI_OUT/run-$i.log" >&2; exit 1; }
      rm -f "$root/etc/resolv.conf" ;;
    COPY)
      read -r from src dst <<< "$arg"
      [ "$from" = --from=build ] && [[ $src == /out/* ]] || { echo "oci: COPY '$arg': only --from=build /out/..." >&2; exit 1; }
      if [[ $src == */ ]]; then
        mkdir -p "$root$dst"
        cp -a "$stage$src." "$root$dst"
      else
        mkdir -p "$(dirname "$root$dst")"
        cp -a "$stage$src" "$root$dst"
      fi ;;
    USER) cfg+=(--config.user "$arg") ;;
    WORKDIR) mkdir -p "$root$arg"; cfg+=(--config.workingdir "$arg") ;;
    VOLUME) while read -r v; do cfg+=(--config.volume "$v"); done < <(json_list "$arg") ;;
    EXPOSE) for p in $arg; do cfg+=(--config.exposedports "${p%/*}/tcp"); done ;;
    ENTRYPOINT) while read -r v; do cfg+=(--config.entrypoint "$v"); done < <(json_list "$arg") ;;
    CMD) while read -r v; do cfg+=(--config.cmd "$v"); done < <(json_list "$arg") ;;
    *) echo "oci: instruction '$line' is not carried out here: teach scripts/oci-image.sh" >&2; exit 1 ;;
  esac
done

img=$OCI_OUT/image
rm -rf "$img" "$OCI_OUT/bundle"
umoci init --layout "$img"
umoci new --image "$img:$version"
umoci unpack --image "$img:$version" "$OCI_OUT/bundle" > /dev/null
rm -rf "$OCI_OUT/bundle/rootfs"
mv "$root" "$OCI_OUT/bundle/rootfs"
umoci repack --image "$img:$version" --history.created_by "scripts/oci-image.sh (Containerfile)" "$OCI_OUT/bundle"
umoci config --image "$img:$version" --clear=config.env --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  "${cfg[@]}" --config.label "org.opencontainers.image.version=$version" --history.created_by "Containerfile config"
umoci tag --image "$img:$version" latest
umoci gc --layout "$img"
rm -rf "$OCI_OUT/bundle" "$stage"
echo "$img"
