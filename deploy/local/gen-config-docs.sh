#!/usr/bin/env bash
# Prints docs/configuration.md from the config tables compiled into each
# binary (`--help-markdown`), so the page cannot drift from the code.
set -euo pipefail
bin=${1:-build/bin}
cat <<'HEAD'
# Configuration

Every Quarry binary is configured only through environment variables. Each
binary declares its settings in one table in its `main.c`; `quarry-<name> --help`
prints it, a bad value stops start-up with a message naming the variable, and
this page is generated from the same tables (`make docs-config`).

HEAD
for svc in gateway auth ingestion retriever reranker llm-gateway feedback; do
  "$bin/quarry-$svc" --help-markdown
  echo
done
