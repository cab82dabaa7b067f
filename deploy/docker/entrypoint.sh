#!/bin/sh
# Container entrypoint: runs quarry-$QUARRY_SERVICE with the container's
# arguments. QUARRY_SERVICE is removed from the environment first so the
# service only sees its own settings.
set -eu

svc=${QUARRY_SERVICE:-}
unset QUARRY_SERVICE

case "$svc" in
  gateway|auth|ingestion|retriever|reranker|llm-gateway|feedback|devbroker) ;;
  *)
    echo "quarry-entrypoint: QUARRY_SERVICE must be one of gateway auth" \
         "ingestion retriever reranker llm-gateway feedback devbroker" \
         "(got '$svc')" >&2
    exit 64
    ;;
esac

exec "/usr/local/bin/quarry-$svc" "$@"
