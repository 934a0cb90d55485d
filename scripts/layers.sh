#!/usr/bin/env bash
# make layers: the include rule of docs/internals.md ("Layers"). Each folder of src/ may include only the
# folders below it:
#   core     -> core                       (knows no feature)
#   tunnel   -> core, tunnel               (knows neither proxy nor sandbox)
#   guard    -> core, guard                (the MCP guard's protocol core: bytes in, decisions out)
#   proxy    -> core, guard, proxy
#   sandbox  -> core, sandbox and its sub-folders (knows no transport; the top level is the CLI), where
#     sandbox/engine -> core, sandbox/engine                     (namespaces, init, cgroups, seccomp, slots)
#     sandbox/egress -> core, sandbox/egress, sandbox/engine     (the proxy listens in the sandbox's netns)
#     sandbox/tools  -> core, sandbox/tools                      (knows no MCP server, no engine)
#     sandbox/mcp    -> core, sandbox/mcp, tools, engine, egress (the MCP server face wires them)
#   gateway  -> core, tunnel, guard, proxy, gateway   (the wiring of a daemon)
#   control  -> core, control              (the control plane: HTTP API over one store interface)
#   worker   -> core, worker               (runs sessions' tools in `postern sandbox serve` children)
#   agent    -> core, agent                (an agent loop: a control plane client, an MCP client, a plan)
#   src/*.c  -> anything                   (main and the command table)
# A file's folder is its directory under src/ (sandbox/engine/x.c is in sandbox/engine), and so is a header's;
# and commands.h (the command table) only from a file that defines one of its commands; no two modules
# include each other's headers (x_int.h counts as module x; header-only modules are exempt). It also holds
# the one cheap check of the error convention: no bare `return -1;`.
# Usage: scripts/layers.sh [SRC_DIR]   (default src; the self-test passes a tree with violations)
set -uo pipefail
src=${1:-src}
[ -d "$src" ] || { echo "layers: $src is not a directory" >&2; exit 2; }

allowed() { # folder -> allowed include folders
  case $1 in
    core) echo "core" ;;
    tunnel) echo "core tunnel" ;;
    guard) echo "core guard" ;;
    proxy) echo "core guard proxy" ;;
    sandbox) echo "core sandbox sandbox/engine sandbox/egress sandbox/tools sandbox/mcp" ;;
    sandbox/engine) echo "core sandbox/engine" ;;
    sandbox/egress) echo "core sandbox/egress sandbox/engine" ;;
    sandbox/tools) echo "core sandbox/tools" ;;
    sandbox/mcp) echo "core sandbox/mcp sandbox/tools sandbox/engine sandbox/egress" ;;
    gateway) echo "core tunnel guard proxy gateway" ;;
    control) echo "core control" ;;
    worker) echo "core worker" ;;
    agent) echo "core agent" ;;
    *) echo "" ;;
  esac
}

declare -A edge # "a b": module a (a.c or a.h) includes b.h
cmds=$(grep -oE '^int [a-z_]+_main\(' "$src/commands.h" 2>/dev/null | sed 's/^int //; s/($//')
bad=0 files=0
while IFS= read -r f; do
  files=$((files + 1))
  rel=${f#"$src"/}
  dir=${rel%/*}
  [ "$dir" = "$rel" ] && continue # top level: main.c, check.c, commands.h
  ok=$(allowed "$dir")
  if [ -z "$ok" ]; then
    echo "layers: $rel: folder src/$dir has no rule in scripts/layers.sh (add it and to docs/internals.md)" >&2
    bad=$((bad + 1)); continue
  fi
  while IFS=: read -r line inc; do
    inc=${inc#*\"}; inc=${inc%%\"*}
    if [ "$inc" = commands.h ]; then
      defines=0
      for c in $cmds; do grep -qE "^int $c\(" "$f" && defines=1; done
      if [ $defines = 0 ]; then
        echo "layers: $rel:$line includes commands.h but defines no command of it (only a command's own file may)" >&2
        bad=$((bad + 1))
      fi
      continue
    fi
    to=${inc%/*}
    [ "$to" = "$inc" ] && continue
    from_mod=${rel%.*} to_mod=${inc%.h}
    from_mod=${from_mod%_int} to_mod=${to_mod%_int} # x_int.h is module x's internal header
    [ -e "$src/$to_mod.c" ] || continue # a header-only protocol or type module cannot close a cycle
    [ "$from_mod" != "$to_mod" ] && edge["$from_mod $to_mod"]=$rel:$line # a header of the same folder by bare name, or a generated one
    case " $ok " in
      *" $to "*) ;;
      *) echo "layers: $rel:$line includes \"$inc\": src/$dir may include only: $ok" >&2; bad=$((bad + 1)) ;;
    esac
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"' "$f" | sed -E 's/^([0-9]+):.*(".*").*/\1:\2/')
done < <(find "$src" -name '*.[ch]' | sort)

# Two modules that include each other's headers are one module in two files, or a seam in the wrong place.
for e in "${!edge[@]}"; do
  a=${e% *} b=${e#* }
  if [[ "$a" < "$b" ]] && [ -n "${edge["$b $a"]:-}" ]; then
    echo "layers: include cycle: $a includes $b.h (${edge[$e]}) and $b includes $a.h (${edge["$b $a"]})" >&2
    bad=$((bad + 1))
  fi
done

# The error convention (docs/internals.md, "Errors"): a failure is a negative errno, never a bare -1. A -1
# that is a value and not an error (poll's "no timeout", OpenSSL's BIO retry, "not a hex digit") says so on
# its line: `return -1; /* -1: why */`.
errs=0
while IFS=: read -r f line _; do
  echo "layers: ${f#"$src"/}:$line: return -1; (a failure returns a negative errno; a -1 that is a value says /* -1: why */)" >&2
  errs=$((errs + 1))
done < <(grep -rnE --include='*.[ch]' 'return -1;' "$src" | grep -vE 'return -1; /\* -1: ' || true)

if [ $bad -gt 0 ]; then
  echo "layers: $bad include(s) break the layer rule (docs/internals.md, \"Layers\")" >&2
fi
if [ $errs -gt 0 ]; then
  echo "layers: $errs bare return -1 (docs/internals.md, \"Errors\")" >&2
fi
[ $bad -gt 0 ] || [ $errs -gt 0 ] && exit 1
echo "layers: $files files, rule holds"
