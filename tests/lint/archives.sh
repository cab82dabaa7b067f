#!/bin/sh
# archives.sh - libsvc_<svc>.a holds exactly the objects of every .c under
# services/<svc>/, subfolders included, except the top-level main.c (the
# binary's entry). Independent of the Makefile's own source lists, so it
# proves that a module added in a subfolder (services/retriever/engine/hnsw.c)
# is compiled into the archive, and catches an archive holding an object
# whose source is gone (the Makefile does not notice a deleted source).
#
#   tests/lint/archives.sh [SERVICE...]     (default: every services/*/main.c)
# Reads $BUILD (default build).
set -eu
cd "$(dirname "$0")/../.."
b=${BUILD:-build}

if [ $# -eq 0 ]; then
  set -- $(for m in services/*/main.c; do basename "$(dirname "$m")"; done)
fi
want=$(mktemp)
have=$(mktemp)
trap 'rm -f "$want" "$have"' EXIT
bad=0
for svc in "$@"; do
  lib="$b/lib/libsvc_$svc.a"
  if [ ! -f "$lib" ]; then
    echo "archives: $lib does not exist: run 'make all' first"
    bad=1
    continue
  fi
  # ar keeps only a member's base name, so compare base names (with repeats).
  find "services/$svc" -type f -name '*.c' ! -path "services/$svc/main.c" |
    sed 's|.*/||; s|\.c$|.o|' | LC_ALL=C sort >"$want"
  ar t "$lib" | grep -v '^empty\.o$' | LC_ALL=C sort >"$have" || true
  for o in $(LC_ALL=C comm -23 "$want" "$have"); do
    src=$(find "services/$svc" -type f -name "${o%.o}.c" ! -path "services/$svc/main.c" | head -1)
    echo "$src:1: not in $lib: the Makefile did not pick it up"
    bad=1
  done
  for o in $(LC_ALL=C comm -13 "$want" "$have"); do
    echo "$lib: holds $o, which no services/$svc/**.c makes: delete the archive (or make clean) and rebuild"
    bad=1
  done
done
if [ "$bad" != 0 ]; then
  echo "archives: a service archive does not match its sources"
  exit 1
fi
echo "archives: each of $# service archives holds every .c of its service but main.c"
