#!/usr/bin/env bash
# deps.sh - installs the extra Debian bookworm packages `make bench` needs,
# only those that are missing, through the project's installer
# (deploy/local/deps.sh, which also provides what Quarry itself needs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# python3-xapian: the independent BM25 peer of bench/retrieval_bench.py;
# wrk: the HTTP load generator of the gateway part; nginx: the static-reply
# peer of the edge part (bench/edge_bench.py starts it privately, never the
# system service); libh2o-evloop-dev, libevent-dev: the other HTTP server
# libraries of bench/http_floor.c (make bench-http-floor); python3-hnswlib:
# the HNSW peer of bench/hnsw_peer.py (make bench-hnsw-peer); python3-numpy:
# the synthetic corpus of bench/retriever_grpc_bench.py and hnswlib's arrays;
# python3-cairo: the PDF writer of bench/ingest_formats.py (make
# bench-ingest-formats).
exec "$here/../deploy/local/deps.sh" python3-xapian wrk nginx libh2o-evloop-dev libevent-dev \
  python3-hnswlib python3-numpy python3-cairo
