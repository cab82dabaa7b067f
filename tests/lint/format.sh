#!/bin/sh
# format.sh - every tracked .c and .h file is formatted as .clang-format says,
# by clang-format 14: the version Debian bookworm (CI) ships, because other
# versions lay out the same code differently. `make lint` runs the check;
# `make format` runs `format.sh --fix`, which rewrites the same files in place,
# so the check and the fix never disagree about which files count.
# CLANG_FORMAT names another binary (it must still be version 14).
set -eu
cd "$(dirname "$0")/../.."

fix=0
case "${1:-}" in
  --fix) fix=1 ;;
  "") ;;
  *) echo "usage: $0 [--fix]" >&2; exit 2 ;;
esac

cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
  if command -v clang-format-14 >/dev/null 2>&1; then cf=clang-format-14; else cf=clang-format; fi
fi
if ! command -v "$cf" >/dev/null 2>&1; then
  echo "format: $cf not found: run 'make deps' (Debian package clang-format)"
  exit 1
fi
major=$("$cf" --version | sed -n 's/.*clang-format version \([0-9][0-9]*\)\..*/\1/p')
if [ "$major" != 14 ]; then
  echo "format: $cf is version ${major:-unknown}; Quarry's layout is what clang-format 14" \
       "(Debian bookworm) produces: install clang-format-14 or set CLANG_FORMAT"
  exit 1
fi

# Tracked sources only; generated code lives under build*/, which git ignores.
list=$(mktemp)
trap 'rm -f "$list" "$list.out"' EXIT
git ls-files -z -- '*.c' '*.h' ':!:build/' ':!:build-*/' >"$list"
total=$(tr -cd '\0' <"$list" | wc -c)

if [ "$fix" = 1 ]; then
  xargs -0 -r "$cf" -i --style=file <"$list"
  echo "format: formatted $total files with $cf"
  exit 0
fi

# --dry-run --Werror prints "file:line:col: error: code should be
# clang-formatted", the offending line and a caret for each place; keep the
# first of those lines.
if xargs -0 -r "$cf" --dry-run --Werror --style=file <"$list" >"$list.out" 2>&1; then
  echo "format: $total files match .clang-format"
  exit 0
fi
grep -E '^[^ ].*:[0-9]+:[0-9]+: ' "$list.out" | sed 's/ \[-Wclang-format-violations\]$//' ||
  cat "$list.out"
places=$(grep -cE '^[^ ].*:[0-9]+:[0-9]+: ' "$list.out" || true)
files=$(grep -E '^[^ ].*:[0-9]+:[0-9]+: ' "$list.out" | cut -d: -f1 | sort -u | wc -l)
echo "format: $files of $total files differ from .clang-format ($places places):" \
     "run 'make format' and review 'git diff'"
exit 1
