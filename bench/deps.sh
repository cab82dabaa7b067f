#!/usr/bin/env bash
# deps.sh - installs the extra Debian bookworm packages `make bench` needs, and
# only those that are missing. Idempotent: when everything is present it exits
# at once without touching apt. The packages Quarry itself needs come from
# deploy/local/deps.sh (make deps).
set -euo pipefail

PACKAGES=(
  # the independent BM25 peer of bench/retrieval_bench.py
  python3-xapian
  # HTTP load generator of bench/gateway_bench.sh
  wrk
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "bench/deps.sh: missing Debian packages: ${missing[*]}" >&2

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "bench/deps.sh: not root and no sudo; run as root:" >&2
  echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"

# Check again: apt-get can succeed while leaving a package half-configured.
still=()
for pkg in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || still+=("$pkg")
done
if [ ${#still[@]} -ne 0 ]; then
  echo "bench/deps.sh: still not installed: ${still[*]}" >&2
  exit 1
fi
echo "bench/deps.sh: installed ${missing[*]}" >&2
