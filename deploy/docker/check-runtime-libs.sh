#!/usr/bin/env bash
# check-runtime-libs.sh - without a Docker engine, checks that the runtime
# stage of deploy/docker/Dockerfile installs every shared library the built
# binaries need.
#
#   deploy/docker/check-runtime-libs.sh [BIN_DIR]     (default build/bin)
#
# Reads the package list of the runtime stage's apt-get install, checks each
# name exists in this bookworm's apt index, resolves every library `ldd`
# reports for BIN_DIR/quarry-* to its Debian package (dpkg -S), and fails
# when one of those packages is not among the runtime packages or their
# dependencies (apt-cache depends --recurse). Run on Debian bookworm after
# `make all`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/bin}
dockerfile=$here/Dockerfile
ls "$bin"/quarry-* >/dev/null 2>&1 || { echo "no quarry-* binaries in $bin (make all first)" >&2; exit 1; }

# The install line(s) after "FROM ... AS runtime": every word between
# "--no-install-recommends" and the next "&&".
pkgs=$(awk '/^FROM .* AS runtime/{rt=1} rt' "$dockerfile" |
  sed -n '/--no-install-recommends/,/&&/p' | tr -d "\\\\" |
  sed 's/.*--no-install-recommends//; s/&&.*//' | tr -s ' \n' '\n' | grep -v '^$' | sort -u)
[ -n "$pkgs" ] || { echo "no runtime packages found in $dockerfile" >&2; exit 1; }

missing=0
for p in $pkgs; do
  if ! apt-cache show "$p" >/dev/null 2>&1; then
    echo "runtime package $p does not exist in this apt index" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] || exit 1

# shellcheck disable=SC2086
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances $pkgs 2>/dev/null | grep -v '^ ' |
  sed 's/:.*//' | sort -u)

needed=$(ldd "$bin"/quarry-* | awk '/=>/ && $3 ~ /^\// {print $3}' | sort -u |
  while read -r lib; do
    dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null ||
      echo "UNKNOWN($lib): x"
  done | cut -d: -f1 | sed 's/:.*//' | sort -u)
notfound=$(ldd "$bin"/quarry-* | grep 'not found' || true)
[ -z "$notfound" ] || { echo "ldd: unresolved libraries:" >&2; echo "$notfound" >&2; exit 1; }

uncovered=$(comm -23 <(echo "$needed") <(echo "$closure"))
if [ -n "$uncovered" ]; then
  echo "the binaries need these packages, which the runtime stage does not install:" >&2
  echo "$uncovered" >&2
  exit 1
fi
nbin=$(find "$bin" -maxdepth 1 -name 'quarry-*' -type f | wc -l)
echo "runtime stage: $(echo "$pkgs" | wc -l) packages cover the $(echo "$needed" | wc -l) packages" \
  "behind every library of $nbin binaries"
