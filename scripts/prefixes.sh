#!/usr/bin/env bash
# make layers: the naming rule of docs/internals.md ("Source layout"). Every src .c file belongs to a module
# of scripts/prefixes.txt (the one table; the docs table must match it), and every function or object it
# defines with external linkage starts with its module's prefix. The names are read from the source (the ones
# `nm -g` lists for the object; no build needed): failures name file, line and symbol. The table itself is
# checked too: a prefix is letters of its module's name in order, no two overlap, no row is stale.
# Usage: scripts/prefixes.sh [SRC_DIR [TABLE [DOC]]]   (the self-test passes a tree with violations; DOC "-"
# skips the docs check)
set -uo pipefail
src=${1:-src} table=${2:-scripts/prefixes.txt} doc=${3:-docs/internals.md}
[ -d "$src" ] || { echo "prefixes: $src is not a directory" >&2; exit 2; }
[ -f "$table" ] || { echo "prefixes: no table $table" >&2; exit 2; }
bad=0
fail() { echo "prefixes: $*" >&2; bad=$((bad + 1)); }

# is_abbrev WORD NAME: WORD is NAME or letters of it in order, starting with its first.
is_abbrev() {
  local w=$1 n=$2 i c
  [ "${w:0:1}" = "${n:0:1}" ] || return 1
  n=${n:1}
  for ((i = 1; i < ${#w}; i++)); do
    c=${w:i:1}
    [[ "$n" == *"$c"* ]] || return 1
    n=${n#*"$c"}
  done
}

declare -A pfx ipfx used
mods=()
while read -r mod p ip rest; do
  case $mod in ''|'#'*) continue ;; esac
  base=${mod##*/}
  [ -n "${pfx[$mod]:-}" ] && fail "$table: $mod has two rows"
  is_abbrev "$p" "$base" || fail "$table: $mod: prefix ${p}_ is not $base or letters of it in order"
  [ -z "$ip" ] || is_abbrev "$ip" "${base}_int" || fail "$table: $mod: internal prefix ${ip}_ is not letters of ${base}_int in order"
  [ -z "$rest" ] || fail "$table: $mod: more than three fields"
  pfx[$mod]=$p ipfx[$mod]=$ip
  mods+=("$mod")
done < "$table"

# No prefix may be the start of another (px_ and px_config_ would be one family read two ways).
all=()
for m in "${mods[@]}"; do all+=("${pfx[$m]}_ $m"); [ -n "${ipfx[$m]}" ] && all+=("${ipfx[$m]}_ $m"); done
for a in "${all[@]}"; do
  for b in "${all[@]}"; do
    [ "$a" = "$b" ] && continue
    pa=${a% *} pb=${b% *}
    [[ "$pb" == "$pa"* ]] && fail "$table: prefix $pa (${a#* }) is the start of $pb (${b#* })"
  done
done

# The docs table names each module `name` (`prefix_` ... and each internal prefix.
if [ "$doc" != - ]; then
  for m in "${mods[@]}"; do
    grep -qF "\`${m##*/}\` (\`${pfx[$m]}_" "$doc" || fail "$doc: no \`${m##*/}\` (\`${pfx[$m]}_\`) for $m in scripts/prefixes.txt"
    [ -z "${ipfx[$m]}" ] || grep -qF "\`${ipfx[$m]}_\`" "$doc" || fail "$doc: no \`${ipfx[$m]}_\` for $m"
  done
fi

# file -> module: the longest row of its folder that is its name or the start of it before a '_'.
declare -A fmod
files=()
while IFS= read -r f; do
  rel=${f#"$src"/} rel=${rel%.c}
  [ "$rel" = main ] && continue
  dir=. base=$rel
  [[ "$rel" == */* ]] && dir=${rel%/*} base=${rel##*/}
  best=
  for m in "${mods[@]}"; do
    mdir=. mbase=$m
    [[ "$m" == */* ]] && mdir=${m%/*} mbase=${m##*/}
    [ "$mdir" = "$dir" ] || continue
    if [ "$base" = "$mbase" ] || [[ "$base" == "${mbase}_"* ]]; then
      [ ${#mbase} -gt ${#best} ] && best=$m
    fi
  done
  if [ -z "$best" ]; then
    fail "$rel.c: no module in $table (add a row, and to docs/internals.md)"
    continue
  fi
  fmod[$f]=$best used[$best]=1
  files+=("$f")
done < <(find "$src" -name '*.c' | sort)
for m in "${mods[@]}"; do [ -n "${used[$m]:-}" ] || fail "$table: $m has no file $src/$m.c"; done

declare -A exempt=([main]=1)
for c in $(grep -oE '^int [a-z_0-9]+_main\(' "$src/commands.h" 2>/dev/null | sed 's/^int //; s/($//'); do exempt[$c]=1; done

names=0
while IFS= read -r hit; do
  f=${hit%%:*} name=${hit##*: } where=${hit% *}
  m=${fmod[$f]:-}
  [ -n "$m" ] || continue
  names=$((names + 1))
  [ -n "${exempt[$name]:-}" ] && continue
  [[ "$name" == "${pfx[$m]}_"* ]] && continue
  [ -n "${ipfx[$m]}" ] && [[ "$name" == "${ipfx[$m]}_"* ]] && continue
  fail "${where#"$src"/} $name: external name without its module's prefix ${pfx[$m]}_${ipfx[$m]:+ or ${ipfx[$m]}_} ($m; make it static or rename it)"
done < <([ ${#files[@]} -gt 0 ] && awk "$(cat <<'AWK'
function reset_stmt() { stmt = ""; stmt_line = 0 }

function has_word(s, w) { return s ~ ("(^|[^A-Za-z0-9_])" w "([^A-Za-z0-9_]|$)") }

# s without its __attribute__((...)) parts.
function strip_attrs(s,    i, j, d, c, out) {
	out = ""
	while ((i = index(s, "__attribute__")) > 0) {
		out = out substr(s, 1, i - 1)
		j = i + 13; d = 0
		for (; j <= length(s); j++) {
			c = substr(s, j, 1)
			if (c == "(") d++
			else if (c == ")") { d--; if (d == 0) { j++; break } }
			else if (d == 0 && c !~ /[ \t]/) break
		}
		s = substr(s, j)
	}
	return out s
}

function emit(name, line) { if (name != "") print FILENAME ":" line ": " name }

# The identifier just before the first '(' of a function head.
function func_name(h,    i, pre) {
	i = index(h, "(")
	if (i == 0) return ""
	pre = substr(h, 1, i - 1)
	sub(/[ \t]+$/, "", pre)
	if (match(pre, /[A-Za-z_][A-Za-z0-9_]*$/)) return substr(pre, RSTART, RLENGTH)
	return ""
}

# The declared name of one declarator (or of the first, with its type): its last identifier.
function decl_name(d,    n, t, i, k) {
	gsub(/\[[^]]*\]/, " ", d)
	gsub(/\{\}/, " ", d)
	if (match(d, /\([ \t]*\*[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*\)/)) { # a pointer to a function or array
		d = substr(d, RSTART, RLENGTH); gsub(/[()* \t]/, "", d); return d
	}
	if (index(d, "(")) return "" # a prototype
	gsub(/\*/, " ", d)
	n = split(d, t, /[ \t]+/)
	k = 0
	for (i = 1; i <= n; i++) if (t[i] != "") t[++k] = t[i]
	if (k == 0) return ""
	if (t[k] ~ /^(struct|union|enum)$/) return ""
	if (k >= 2 && t[k - 1] ~ /^(struct|union|enum)$/) return "" # a tag, not an object
	if (k == 1) return "" # `x;` alone names no type: not a definition we can read
	return t[k]
}

function declaration(s, line,    i, c, d, skip, head, part, first) {
	s = strip_attrs(s)
	if (has_word(s, "static") || has_word(s, "typedef") || has_word(s, "extern") || has_word(s, "_Static_assert"))
		return
	# the declarators before any initializer, split on top-level commas
	head = ""; d = 0; skip = 0
	for (i = 1; i <= length(s); i++) {
		c = substr(s, i, 1)
		if (c == "(" || c == "[" || c == "{") d++
		else if (c == ")" || c == "]" || c == "}") d--
		if (d == 0 && c == "=") skip = 1
		else if (d == 0 && c == ",") skip = 0
		if (!skip) head = head c
	}
	first = 1
	while (head != "") {
		i = index(head, ",")
		if (i == 0) { part = head; head = "" } else { part = substr(head, 1, i - 1); head = substr(head, i + 1) }
		if (first && index(part, "(") && part !~ /\([ \t]*\*/) return # a prototype
		emit(decl_name(part), line)
		first = 0
	}
}

FNR == 1 { in_comment = 0; in_pp = 0; depth = 0; body = ""; reset_stmt() }

{
	line = $0
	if (!in_comment && (in_pp || line ~ /^[ \t]*#/)) { in_pp = (line ~ /\\$/); next }
	# the line without comments, strings and character constants
	out = ""; n = length(line)
	for (i = 1; i <= n; i++) {
		c = substr(line, i, 1)
		if (in_comment) {
			if (c == "*" && substr(line, i + 1, 1) == "/") { in_comment = 0; i++; out = out " " }
			continue
		}
		if (c == "/" && substr(line, i + 1, 1) == "*") { in_comment = 1; i++; continue }
		if (c == "/" && substr(line, i + 1, 1) == "/") break
		if (c == "\"" || c == "'") {
			for (i++; i <= n && substr(line, i, 1) != c; i++) if (substr(line, i, 1) == "\\") i++
			out = out c c
			continue
		}
		out = out c
	}
	# the top level, statement by statement
	n = length(out)
	for (i = 1; i <= n; i++) {
		c = substr(out, i, 1)
		if (depth > 0) {
			if (c == "{") depth++
			else if (c == "}" && --depth == 0) {
				if (body == "fn") reset_stmt()
				else stmt = stmt "{}"
			}
			continue
		}
		if (c == "{") {
			h = strip_attrs(stmt)
			depth = 1
			if (h ~ /\)[ \t]*$/ && index(h, "=") == 0) { # a function body
				body = "fn"
				if (!has_word(h, "static")) emit(func_name(h), stmt_line)
			} else body = "init"
			continue
		}
		if (c == ";") { declaration(stmt, stmt_line); reset_stmt(); continue }
		if (stmt_line == 0 && c !~ /[ \t]/) stmt_line = FNR
		stmt = stmt c
	}
	stmt = stmt " "
}
AWK
)" "${files[@]}")

if [ $bad -gt 0 ]; then
  echo "prefixes: $bad name(s) break the naming rule (docs/internals.md, \"Source layout\"; scripts/prefixes.txt)" >&2
  exit 1
fi
echo "prefixes: ${#files[@]} files, $names external names, rule holds"
