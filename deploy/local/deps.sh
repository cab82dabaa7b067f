#!/usr/bin/env bash
# deps.sh - installs the Debian bookworm packages Quarry needs, and only those
# that are missing. Idempotent: when everything is present it exits at once
# without touching apt. Used by `make deps` (and so by `make run`/`make test`).
# Given package names as arguments, it installs those instead (bench/deps.sh
# uses this for the benchmark's peers).
set -euo pipefail

PACKAGES=(
  # toolchain and code generators
  build-essential pkg-config protobuf-c-compiler protobuf-compiler
  # libraries the C code links
  libgrpc-dev libprotobuf-c-dev librdkafka-dev libhiredis-dev libpq-dev
  libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev libsodium-dev
  libssl-dev libstemmer-dev libutf8proc-dev
  # document formats and the extraction sandbox (quarry-ingestion only)
  libpoppler-glib-dev libxml2-dev libzip-dev libmd4c-dev libuchardet-dev
  libseccomp-dev
  # OCR of scanned pages and images (QUARRY_OCR): Tesseract, Leptonica for
  # image decoding, English language data (others: tesseract-ocr-<lang>)
  libtesseract-dev libleptonica-dev tesseract-ocr-eng
  # language guesses for documents that declare none (extract/lang.c)
  libexttextcat-dev libexttextcat-data
  # tests; clang-format is bookworm's 14, the version `make lint` pins
  libcriterion-dev valgrind curl yamllint clang-format
  python3 python3-grpcio python3-protobuf python3-yaml
  # scanned pages drawn by tests/integration/fixtures.py for the OCR cases
  python3-cairo
  # the web app's browser test (tests/integration/test_web.py): Debian's
  # Chromium (an 81 MB package, 290 MB installed, with its libraries) driven by playwright-core,
  # which the test installs with npm under the build folder
  chromium
  # servers the local stack and the tests start privately
  postgresql redis-server prometheus
)
# Node.js and npm for that test, from Debian unless the machine already has
# them from elsewhere (a NodeSource nodejs bundles npm and conflicts with
# Debian's npm package).
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
if [ $# -gt 0 ]; then
  PACKAGES=("$@")
fi

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

echo "deps.sh: missing Debian packages: ${missing[*]}" >&2

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "deps.sh: not root and no sudo; run as root:" >&2
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
  echo "deps.sh: still not installed: ${still[*]}" >&2
  exit 1
fi
echo "deps.sh: installed ${missing[*]}" >&2
