#!/usr/bin/env bash
# The naming check must be able to fail: on a copy of src/, the table and the docs with one violation of each
# kind injected, it must exit 1 and name each of them (and nothing that is fine); on the untouched copy it must
# pass.
set -euo pipefail
cd "$(dirname "$0")/.."
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
cp -r src "$t/src"; cp scripts/prefixes.txt "$t/prefixes.txt"; cp docs/internals.md "$t/internals.md"
scripts/prefixes.sh "$t/src" "$t/prefixes.txt" "$t/internals.md" >/dev/null ||
  { echo "prefixes self-test: the clean copy failed" >&2; exit 1; }
cat >> "$t/src/core/log.c" <<'C'
int helper_x(void) { return 0; }             /* a function without its prefix */
static int helper_y(void) { return 1; }      /* fine: static */
int other_proto(void);                       /* fine: a declaration */
struct tag_only { int a; };                  /* fine: a type */
C
echo 'const char *wsd_name = "x";' >> "$t/src/sandbox/engine/ws_doors.c"   # an object without its prefix
echo 'int ctri_stray(void) { return 0; }' >> "$t/src/tunnel/edge_relay.c"  # another module's internal prefix
cat >> "$t/src/core/cbuf.c" <<'C'
/* int fake_c(void) { */
const char *cbuf_s = "{ int fake_d(void) {";
__attribute__((unused)) int
bad_attr(void)
{
	return 0;
}
C
echo 'int newmod_x;' > "$t/src/tunnel/newmod.c"                           # a file with no row
echo 'int pxe_x;' > "$t/src/proxy/extra.c"; echo 'proxy/extra pxe' >> "$t/prefixes.txt"  # not letters of extra
echo 'int log_e_x;' > "$t/src/core/log_extra.c"; echo 'core/log_extra log_e' >> "$t/prefixes.txt" # log_ starts log_e_
echo 'core/gone gone' >> "$t/prefixes.txt"                                  # a row with no file
echo '`extra` (`pxe_`) `log_extra` (`log_e_`) `gone` (`gone_`)' >> "$t/internals.md"
sed -i 's/`h1` (`h1_`)/`h1`/' "$t/internals.md"                            # the docs disagree
if out=$(scripts/prefixes.sh "$t/src" "$t/prefixes.txt" "$t/internals.md" 2>&1); then
  echo "prefixes self-test: violations passed" >&2; exit 1
fi
for want in 'core/log.c:[0-9]*: helper_x: external name without its module.s prefix log_' \
            'sandbox/engine/ws_doors.c:[0-9]*: wsd_name: external name without its module.s prefix ws_doors_' \
            'tunnel/edge_relay.c:[0-9]*: ctri_stray: external name without its module.s prefix edge_ or edgi_' \
            'core/cbuf.c:[0-9]*: bad_attr: ' 'tunnel/newmod.c: no module' \
            'proxy/extra: prefix pxe_ is not extra or letters of it' 'prefix log_ (core/log) is the start of log_e_' \
            'core/gone has no file' 'internals.md: no `h1` (`h1_`)' '9 name(s) break'; do
  grep -q "$want" <<<"$out" || { echo "prefixes self-test: missing: $want"; echo "$out"; exit 1; } >&2
done
if grep -qE 'helper_y|other_proto|tag_only|fake_c|fake_d|cbuf_s|log_e_x|pxe_x' <<<"$out"; then
  echo "prefixes self-test: a name that is fine was reported:"; echo "$out"; exit 1
fi >&2
echo "prefixes self-test: 9 injected violations caught"
