#!/bin/sh
# symbols.sh - q_ is the shared library's prefix (libquarry.a), so no object of
# a service or a tool may define a symbol starting with q_: not an exported
# function, not a static one, not a variable. Services name theirs after the
# service or module (engine_, gw_) and keep file-local helpers static.
#
#   tests/lint/symbols.sh [ARCHIVE_OR_OBJECT...]
#
# Without arguments it reads $BUILD (default build): lib/libsvc_*.a and the
# objects of services/*/main.c and tools/. `make lint` passes its own list.
set -eu
cd "$(dirname "$0")/../.."

if [ $# -eq 0 ]; then
  b=${BUILD:-build}
  set -- "$b"/lib/libsvc_*.a "$b"/obj/services/*/main.o
  [ -d "$b/obj/tools" ] && set -- "$@" $(find "$b/obj/tools" -name '*.o' | sort)
fi
missing=0
for f in "$@"; do
  if [ ! -e "$f" ]; then
    echo "symbols: $f does not exist: run 'make all' first"
    missing=1
  fi
done
[ "$missing" = 0 ] || exit 1

# nm -A prefixes each line with archive:member: or object:; -l appends the
# definition's file:line from the debug info (the build uses -g), printed here
# relative to the tree.
out=$(nm -A -l --defined-only "$@" | awk -v root="$(pwd)/" '
  $3 ~ /^q_/ {
    where = $1; sub(/:[0-9a-fA-F]+$/, "", where)
    src = (NF >= 4) ? $4 : where
    if (index(src, root) == 1) src = substr(src, length(root) + 1)
    printf "%s: %s defines %s (nm type %s): q_ is for libquarry only\n", src, where, $3, $2
  }')
if [ -n "$out" ]; then
  echo "$out"
  echo "symbols: $(echo "$out" | wc -l) q_ symbols defined outside libquarry.a"
  exit 1
fi
echo "symbols: no q_ symbol defined in $# service/tool archives and objects"
