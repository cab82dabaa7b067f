#!/usr/bin/env bash
# deps.sh - the Debian packages `make fuzz` needs besides the build's own
# (deploy/local/deps.sh): clang 14 and its runtime libraries, which hold
# libFuzzer and the ASan/UBSan runtimes clang links. Only `make fuzz` runs
# it, so the default build and `make test` never need clang. Idempotent.
set -euo pipefail
exec "$(dirname "$0")/../../deploy/local/deps.sh" clang-14 libclang-rt-14-dev
