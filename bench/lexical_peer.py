#!/usr/bin/python3
"""Xapian BM25 on the synthetic corpus of bench/retriever_bench.c, for the
lexical latency figures next to Quarry's (docs/benchmarks.md).

retriever_bench --dump FILE writes its first tenant's chunk texts (one per
line) to FILE and its lexical queries to FILE.queries; this script indexes
the same texts into an on-disk Xapian database in a temporary directory
(TermGenerator without positions, english stemmer), then times the same queries in process
(QueryParser, english stemmer, STEM_SOME, default OR; Enquire with
BM25Weight() at Xapian's defaults) at top 10 and top 100, after one untimed
pass (retriever_bench also runs its queries once, to compare lists, before
timing). Prints index time and p50/p95/mean in ms.

    ./build/bench/retriever_bench --n 1000000 --dim 0 --per-tenant 1000000 \\
        --dump /tmp/corpus.txt
    /usr/bin/python3 bench/lexical_peer.py /tmp/corpus.txt

Needs Debian's python3-xapian (bench/deps.sh installs it).
"""
import shutil
import sys
import tempfile
import time

import xapian


def percentile(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))]


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    corpus = argv[0]
    with open(corpus + ".queries") as f:
        queries = [line.rstrip("\n") for line in f if line.strip()]
    tmp = tempfile.mkdtemp(prefix="quarry-xapian-")
    try:
        t0 = time.perf_counter()
        # No fsync: the database is thrown away after the run.
        db = xapian.WritableDatabase(tmp, xapian.DB_CREATE_OR_OPEN | xapian.DB_NO_SYNC)
        tg = xapian.TermGenerator()
        tg.set_stemmer(xapian.Stem("english"))
        n = 0
        with open(corpus) as f:
            for line in f:
                doc = xapian.Document()
                tg.set_document(doc)
                # Quarry's index keeps no positions either.
                tg.index_text_without_positions(line)
                db.add_document(doc)
                n += 1
                if n % 100000 == 0:
                    print("  %d chunks, %.1f s" % (n, time.perf_counter() - t0),
                          file=sys.stderr, flush=True)
        db.commit()
        db.close()
        build = time.perf_counter() - t0
        db = xapian.Database(tmp)
        qp = xapian.QueryParser()
        qp.set_stemmer(xapian.Stem("english"))
        qp.set_stemming_strategy(xapian.QueryParser.STEM_SOME)
        qp.set_database(db)
        enq = xapian.Enquire(db)
        enq.set_weighting_scheme(xapian.BM25Weight())
        print("xapian %s: %d chunks indexed in %.1f s (%.1f us/chunk); %d queries"
              % (xapian.version_string(), n, build, build * 1e6 / max(n, 1), len(queries)))
        for k in (10, 100):
            for q in queries:  # untimed pass
                enq.set_query(qp.parse_query(q))
                enq.get_mset(0, k)
            ms = []
            for q in queries:
                t = time.perf_counter()
                enq.set_query(qp.parse_query(q))
                mset = enq.get_mset(0, k)
                for _ in mset:
                    pass
                ms.append((time.perf_counter() - t) * 1000.0)
            ms.sort()
            print("  top %3d: p50 %.3f ms, p95 %.3f ms, mean %.3f ms"
                  % (k, percentile(ms, 0.5), percentile(ms, 0.95), sum(ms) / len(ms)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
