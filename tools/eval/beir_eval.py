#!/usr/bin/python3
"""Scores Quarry's retrieval on a BEIR-format dataset.

Starts a private stack (deploy/local/stack.py, test mode), ingests the
corpus through the REST API exactly as a user would (one text/plain document
per corpus entry, its BEIR id as external_id), waits until the retriever has
indexed every document, then runs every test query through the retriever's
Search over gRPC (embedding from the llm-gateway's Embed) and reports
nDCG@10, Recall@100 and MRR@10 per ranking mode (SearchRequest.mode, with the
embedder's name as embed_model so the retriever applies its fusion rule for
that embedder), plus Search latency. Then it cross-validates the hybrid
fusion weighting (--folds, 5 by default; 0 skips): the lexical and dense lists
of every query are fused offline exactly as services/retriever/fusion.c does,
for every method and dense weight of a grid; each fold's weighting is chosen
on the other folds and scored on it. The lexical settings are cross-validated
the same way, on the same folds: the retriever is restarted with each BM25F
title weight (QUARRY_RETRIEVER_BM25_TITLE_WEIGHT) and stopword list
(QUARRY_RETRIEVER_STOPWORDS) of a grid, every query's lexical list is taken,
and each fold's setting is chosen on the other folds and scored on it.
Then the ranking users get: the gateway's 50 hybrid candidates reordered by
Reranker/Rerank over gRPC with the reranker's configured method (the
`rerank_method` of /v1/query), next to the retrieval order and each method
by name, on all queries and on the half the reranker's weights were not
fitted on (tools/eval/fit_reranker.py).

    make eval DATA=../shared/data/scifact
    /usr/bin/python3 tools/eval/beir_eval.py --data DIR [--modes lexical,dense,hybrid]

A document's rank is the rank of its best chunk. Needs the binaries
($QUARRY_BIN) and the Python messages from protoc ($QUARRY_PYGEN).
"""
import argparse
import concurrent.futures
import json
import math
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "deploy", "local"))
sys.path.insert(0, os.environ.get("QUARRY_PYGEN", os.path.join(ROOT, "build", "py")))

import grpc  # noqa: E402  (Debian python3-grpcio)
import stack  # noqa: E402
from quarry.v1 import llm_pb2, reranker_pb2, retriever_pb2  # noqa: E402

TENANT = "eval"


def load_beir(data):
    corpus = [json.loads(line) for line in open(os.path.join(data, "corpus.jsonl"))]
    queries = {}
    for line in open(os.path.join(data, "queries.jsonl")):
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    qrels = {}
    with open(os.path.join(data, "qrels", "test.tsv")) as f:
        next(f)  # header
        for line in f:
            qid, docid, score = line.split()
            if int(score) > 0:
                qrels.setdefault(qid, {})[docid] = int(score)
    return corpus, queries, qrels


def ingest(st, key, corpus, threads):
    """Uploads every corpus entry; returns {quarry document id: BEIR id}."""

    def upload(doc):
        text = doc.get("text") or doc.get("title") or ""
        query = urllib.parse.urlencode({"title": doc.get("title", ""),
                                        "external_id": doc["_id"]})
        req = urllib.request.Request(
            st.url + "/v1/documents?" + query, data=text.encode(), method="POST",
            headers={"Authorization": "Bearer " + key, "Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)["document_id"], doc["_id"]

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        return dict(ex.map(upload, corpus))


def dcg(gains):
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def search_request(embed, text, mode, depth):
    """The SearchRequest of one query in one mode (what the gateway sends)."""
    req = retriever_pb2.SearchRequest(tenant_id=TENANT, top_k=depth, mode=mode)
    if mode != "dense":
        req.query = text
    if mode != "lexical":
        e = embed(llm_pb2.EmbedRequest(texts=[text]), timeout=10)
        req.query_embedding.extend(e.embeddings[0].values)
        req.embed_model = e.model
    return req


def evaluate(search, embed, queries, qrels, to_beir, mode, depth):
    ndcg = recall = mrr = 0.0
    lat = []
    fusions = set()
    for qid, rel in qrels.items():
        text = queries[qid]
        req = search_request(embed, text, mode, depth)
        t0 = time.perf_counter()
        reply = search(req, timeout=10)
        lat.append(time.perf_counter() - t0)
        fusions.add(reply.fusion)
        ranked = []
        for p in reply.passages:
            d = to_beir.get(p.doc_id)
            if d is not None and d not in ranked:
                ranked.append(d)
        ideal = dcg(sorted(rel.values(), reverse=True)[:10])
        ndcg += dcg([rel.get(d, 0) for d in ranked[:10]]) / ideal
        recall += len([d for d in ranked[:100] if d in rel]) / len(rel)
        mrr += next((1.0 / (i + 1) for i, d in enumerate(ranked[:10]) if d in rel), 0.0)
    n = len(qrels)
    lat.sort()
    return {"nDCG@10": ndcg / n, "Recall@100": recall / n, "MRR@10": mrr / n,
            "p50_ms": lat[n // 2] * 1000, "p95_ms": lat[min(n - 1, int(n * 0.95))] * 1000,
            "fusion": sorted(fusions)}


# ---- cross-validated choice of the hybrid fusion weighting --------------------

RRF_K = 60
# Dense weights tried, in percent of the lexical weight (the unit of
# QUARRY_RETRIEVER_FUSION_WEIGHTS); 0 is the lexical fallback.
CV_WEIGHTS = [0, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200]
CV_METHODS = ["rrf", "weighted"]


def fetch_lists(search, embed, queries, qrels, depth):
    """{qid: (lexical, dense)}, each a list of (chunk_id, doc_id, score), best first."""
    out = {}
    for qid in qrels:
        lists = []
        for mode in ("lexical", "dense"):
            reply = search(search_request(embed, queries[qid], mode, depth), timeout=10)
            score = (lambda p: p.lexical_score) if mode == "lexical" else (lambda p: p.dense_score)
            lists.append([(p.chunk_id, p.doc_id, score(p)) for p in reply.passages])
        out[qid] = tuple(lists)
    return out


def fuse(lex, den, method, pct, depth):
    """The ranking services/retriever/fusion.c makes of two lists (fusion_merge)."""
    w = pct / 100.0
    hits = {}
    for i, (cid, doc, s) in enumerate(lex):
        hits[cid] = {"doc": doc, "lr": i + 1, "dr": 0, "ls": s, "ds": 0.0}
    for i, (cid, doc, s) in enumerate(den):
        h = hits.setdefault(cid, {"doc": doc, "lr": 0, "dr": 0, "ls": 0.0, "ds": 0.0})
        h["dr"], h["ds"] = i + 1, s
    big = 1 << 32

    def best(h):
        return min(h["lr"] or big, h["dr"] or big)

    if w == 0:  # lexical fallback: lexical order, then dense-only hits
        key = lambda c: (0 if hits[c]["lr"] else 1, hits[c]["lr"] or hits[c]["dr"], c)  # noqa: E731
    else:
        if method == "rrf":
            def fused(h):
                return ((1.0 / (RRF_K + h["lr"]) if h["lr"] else 0.0)
                        + (w / (RRF_K + h["dr"]) if h["dr"] else 0.0))
        else:
            def rng(lst):
                sc = [x[2] for x in lst] or [0.0]
                return min(sc), max(sc)
            (llo, lhi), (dlo, dhi) = rng(lex), rng(den)

            def norm(s, lo, hi):
                return (s - lo) / (hi - lo) if hi > lo else 1.0

            def fused(h):
                return ((norm(h["ls"], llo, lhi) if h["lr"] else 0.0)
                        + (w * norm(h["ds"], dlo, dhi) if h["dr"] else 0.0))
        key = lambda c: (-fused(hits[c]), best(hits[c]), c)  # noqa: E731
    return [hits[c]["doc"] for c in sorted(hits, key=key)[:depth]]


def query_metrics(chunk_docs, rel, to_beir):
    """nDCG@10, Recall@100 and MRR@10 of one ranking (a document ranks at its
    best chunk)."""
    ranked = []
    for d in chunk_docs:
        b = to_beir.get(d)
        if b is not None and b not in ranked:
            ranked.append(b)
    ideal = dcg(sorted(rel.values(), reverse=True)[:10])
    return (dcg([rel.get(d, 0) for d in ranked[:10]]) / ideal,
            len([d for d in ranked[:100] if d in rel]) / len(rel),
            next((1.0 / (i + 1) for i, d in enumerate(ranked[:10]) if d in rel), 0.0))


def cross_validate(lists, qrels, to_beir, depth, folds):
    """Chooses (method, weight) on folds - 1 folds by nDCG@10, scores it on the
    held-out fold, for each fold; prints the folds and the held-out means."""
    qids = sorted(qrels)
    grid = [(m, w) for m in CV_METHODS for w in CV_WEIGHTS if not (m == "weighted" and w == 0)]
    per = {}  # (method, w) -> {qid: (ndcg, recall, mrr)}
    for cfg in grid:
        per[cfg] = {q: query_metrics(fuse(*lists[q], cfg[0], cfg[1], depth), qrels[q], to_beir)
                    for q in qids}
    lexical = {q: query_metrics([c[1] for c in lists[q][0]], qrels[q], to_beir) for q in qids}
    fold_of = {q: i % folds for i, q in enumerate(qids)}

    def mean(table, qs, k=0):
        return sum(table[q][k] for q in qs) / len(qs)

    print("\nfusion weighting, %d-fold cross-validation over %d queries (fit nDCG@10 on %d folds,"
          " score the held-out one; weight in %% of lexical, 0 = lexical fallback)"
          % (folds, len(qids), folds - 1))
    print("%-5s %-18s %12s %12s %12s" % ("fold", "chosen", "fit nDCG@10", "held nDCG@10",
                                          "lexical held"))
    held = {q: None for q in qids}
    for f in range(folds):
        train = [q for q in qids if fold_of[q] != f]
        test = [q for q in qids if fold_of[q] == f]
        # Ties go to the smaller weight: the closer to lexical, the safer.
        cfg = max(grid, key=lambda c: (round(mean(per[c], train), 6), -c[1], c[0] == "rrf"))
        for q in test:
            held[q] = per[cfg][q]
        print("%-5d %-18s %12.4f %12.4f %12.4f" % (f, "%s:%d" % cfg, mean(per[cfg], train),
                                                    mean(per[cfg], test), mean(lexical, test)))
    print("held-out mean: nDCG@10 %.4f Recall@100 %.4f MRR@10 %.4f (lexical: %.4f %.4f %.4f)"
          % (mean(held, qids, 0), mean(held, qids, 1), mean(held, qids, 2),
             mean(lexical, qids, 0), mean(lexical, qids, 1), mean(lexical, qids, 2)))
    print("whole-set nDCG@10 per weighting (for reading, not for choosing):")
    for m in CV_METHODS:
        print("  %-8s %s" % (m, " ".join("%d:%.4f" % (w, mean(per[(m, w)], qids))
                                          for w in CV_WEIGHTS if (m, w) in per)))


# ---- cross-validated choice of the lexical settings ----------------------------

# BM25F title weights and stopword lists tried (QUARRY_RETRIEVER_BM25_TITLE_WEIGHT,
# QUARRY_RETRIEVER_STOPWORDS); the first of each is the retriever's default
# before the title became a field of its own.
CV_TITLE_WEIGHTS = ["1", "0", "0.5", "1.5", "2", "3", "5"]
CV_STOPWORDS = ["english", "none"]


def lexical_cv(st, search, embed, queries, qrels, to_beir, depth, folds, n_docs):
    """Restarts the retriever with each lexical setting of the grid, takes
    every query's lexical list, and chooses the setting on folds - 1 folds by
    nDCG@10, scoring it on the held-out fold; prints the folds and the
    held-out means. Leaves the retriever restarted with its defaults."""
    qids = sorted(qrels)
    fold_of = {q: i % folds for i, q in enumerate(qids)}
    grid = [(sw, w) for sw in CV_STOPWORDS for w in CV_TITLE_WEIGHTS]
    per = {}
    env = st.svc_env.setdefault("retriever", {})
    stats = grpc.insecure_channel(st.grpc_addr("retriever")).unary_unary(
        "/quarry.v1.Retriever/Stats",
        request_serializer=retriever_pb2.StatsRequest.SerializeToString,
        response_deserializer=retriever_pb2.StatsResponse.FromString)
    for sw, w in grid:
        env["QUARRY_RETRIEVER_STOPWORDS"] = sw
        env["QUARRY_RETRIEVER_BM25_TITLE_WEIGHT"] = w
        st.restart("retriever")
        deadline = time.time() + 600
        while stats(retriever_pb2.StatsRequest(tenant_id=TENANT), timeout=10).documents < n_docs:
            if time.time() > deadline:
                raise SystemExit("the retriever did not load every document again")
            time.sleep(0.5)
        per[(sw, w)] = {}
        for q in qids:
            reply = search(search_request(embed, queries[q], "lexical", depth), timeout=10)
            per[(sw, w)][q] = query_metrics([p.doc_id for p in reply.passages], qrels[q],
                                            to_beir)
    env.pop("QUARRY_RETRIEVER_STOPWORDS")
    env.pop("QUARRY_RETRIEVER_BM25_TITLE_WEIGHT")
    st.restart("retriever")

    def mean(table, qs, k=0):
        return sum(table[q][k] for q in qs) / len(qs)

    print("\nlexical settings, %d-fold cross-validation over %d queries (stopwords:title "
          "weight; fit nDCG@10 on %d folds, score the held-out one)"
          % (folds, len(qids), folds - 1))
    print("%-5s %-16s %12s %12s %14s" % ("fold", "chosen", "fit nDCG@10", "held nDCG@10",
                                          "english:1 held"))
    held = {}
    base = per[(CV_STOPWORDS[0], CV_TITLE_WEIGHTS[0])]
    for f in range(folds):
        train = [q for q in qids if fold_of[q] != f]
        test = [q for q in qids if fold_of[q] == f]
        # Ties go to the earlier setting of the grid (the old behaviour first).
        cfg = max(grid, key=lambda c: (round(mean(per[c], train), 6), -grid.index(c)))
        for q in test:
            held[q] = per[cfg][q]
        print("%-5d %-16s %12.4f %12.4f %14.4f" % (f, "%s:%s" % cfg, mean(per[cfg], train),
                                                    mean(per[cfg], test), mean(base, test)))
    print("held-out mean: nDCG@10 %.4f Recall@100 %.4f MRR@10 %.4f (english:1: %.4f %.4f %.4f)"
          % (mean(held, qids, 0), mean(held, qids, 1), mean(held, qids, 2),
             mean(base, qids, 0), mean(base, qids, 1), mean(base, qids, 2)))
    print("whole-set nDCG@10 per setting (for reading, not for choosing):")
    for sw in CV_STOPWORDS:
        print("  %-8s %s" % (sw, " ".join("%s:%.4f" % (w, mean(per[(sw, w)], qids))
                                          for w in CV_TITLE_WEIGHTS)))


# ---- what users get: hybrid candidates, then the reranker --------------------

# The gateway's candidate count (services/gateway/pipeline.h,
# PIPELINE_RETRIEVE_TOP_K) and the most a Rerank returns
# (Q_LIMIT_GENERATE_PASSAGES): the user's top_k passages are the first
# top_k of this list.
USER_CANDIDATES = 50
USER_TOP_N = 64


def doc_metrics(runs, qrels, qids):
    """nDCG@10, Recall@100, MRR@10 of {qid: [BEIR ids, best first]} over qids."""
    ndcg = recall = mrr = 0.0
    for qid in qids:
        rel, ranked = qrels[qid], runs[qid]
        ideal = dcg(sorted(rel.values(), reverse=True)[:10])
        ndcg += dcg([rel.get(d, 0) for d in ranked[:10]]) / ideal
        recall += len([d for d in ranked[:100] if d in rel]) / len(rel)
        mrr += next((1.0 / (i + 1) for i, d in enumerate(ranked[:10]) if d in rel), 0.0)
    n = len(qids)
    return {"nDCG@10": ndcg / n, "Recall@100": recall / n, "MRR@10": mrr / n}


def user_runs(st, search, embed, queries, qrels, to_beir):
    """The ranking a user gets, through the real services: Embed, the
    retriever's hybrid Search with the gateway's candidate count, then
    Reranker/Rerank of those candidates - with the reranker's configured
    method (what /v1/query runs), and with each method by name. Returns
    ({row: {qid: ranked BEIR ids}}, {row: [seconds]}, configured method)."""
    ch = grpc.insecure_channel(st.grpc_addr("reranker"))
    rerank = ch.unary_unary("/quarry.v1.Reranker/Rerank",
                            request_serializer=reranker_pb2.RerankRequest.SerializeToString,
                            response_deserializer=reranker_pb2.RerankResponse.FromString)

    def docs(passages):
        ranked = []
        for p in passages:
            d = to_beir.get(p.doc_id)
            if d is not None and d not in ranked:
                ranked.append(d)
        return ranked

    runs, lat, configured = {}, {}, set()
    rows = [("hybrid@%d (retrieval order)" % USER_CANDIDATES, None),
            ("user: hybrid -> rerank", ""),
            ("hybrid -> rerank features", "features"),
            ("hybrid -> rerank none", "none")]
    for qid in qrels:
        text = queries[qid]
        req = retriever_pb2.SearchRequest(tenant_id=TENANT, query=text, top_k=USER_CANDIDATES)
        e = embed(llm_pb2.EmbedRequest(texts=[text]), timeout=10)
        req.query_embedding.extend(e.embeddings[0].values)
        req.embed_model = e.model  # as the gateway sends it: the fusion rule follows
        t0 = time.perf_counter()
        reply = search(req, timeout=10)
        t_search = time.perf_counter() - t0
        for row, method in rows:
            if method is None:
                ranked, t = docs(reply.passages), t_search
            elif not reply.passages:
                ranked, t = [], t_search
            else:
                t0 = time.perf_counter()
                r = rerank(reranker_pb2.RerankRequest(query=text, passages=reply.passages,
                                                      top_n=USER_TOP_N, method=method),
                           timeout=10)
                t = t_search + time.perf_counter() - t0
                ranked = docs(r.passages)
                if method == "":
                    configured.add(r.method)
            runs.setdefault(row, {})[qid] = ranked
            lat.setdefault(row, []).append(t)
    return runs, lat, ",".join(sorted(configured))


def print_user_rows(st, search, embed, queries, qrels, to_beir):
    """The rows of what users get, on every query and on the held-out half
    of fit_reranker.py (the queries the shipped weights were not fitted on)."""
    import fit_reranker
    runs, lat, configured = user_runs(st, search, embed, queries, qrels, to_beir)
    held = [q for q in qrels if not fit_reranker.in_fit_half(q)]
    print("\nwhat users get: Embed, hybrid Search top %d (the gateway's candidates), "
          "Reranker/Rerank; configured method: %s" % (USER_CANDIDATES, configured))
    for title, qids in (("all %d queries" % len(qrels), list(qrels)),
                        ("held-out half B of fit_reranker.py, %d queries" % len(held), held)):
        print("%s\n%-30s %8s %11s %7s %10s %10s"
              % (title, "ranking", "nDCG@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms"))
        for row in runs:
            m = doc_metrics(runs[row], qrels, qids)
            t = sorted(lat[row][i] for i, q in enumerate(qrels) if q in set(qids))
            n = len(t)
            print("%-30s %8.4f %11.4f %7.4f %10.2f %10.2f"
                  % (row, m["nDCG@10"], m["Recall@100"], m["MRR@10"], t[n // 2] * 1000,
                     t[min(n - 1, int(n * 0.95))] * 1000))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="BEIR dataset directory")
    ap.add_argument("--modes", default="lexical,dense,hybrid")
    ap.add_argument("--depth", type=int, default=300, help="top_k of each Search")
    ap.add_argument("--threads", type=int, default=8, help="parallel uploads")
    ap.add_argument("--folds", type=int, default=5,
                    help="cross-validation folds for the fusion weighting (0: skip)")
    ap.add_argument("--no-lexical-cv", dest="lexical_cv", action="store_false",
                    help="skip the cross-validation of the lexical settings (it "
                         "restarts the retriever %d times)"
                         % (len(CV_TITLE_WEIGHTS) * len(CV_STOPWORDS)))
    ap.add_argument("--env", action="append", default=[],
                    help="VAR=value for every service "
                         "(e.g. QUARRY_RETRIEVER_FUSION_WEIGHTS='*=rrf:100')")
    args = ap.parse_args(argv)
    corpus, queries, qrels = load_beir(args.data)
    env = {"QUARRY_RATE_LIMIT_RPS": "0"}
    env.update(kv.split("=", 1) for kv in args.env)
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    with tempfile.TemporaryDirectory(prefix="quarry-eval-") as run_dir:
        st = stack.Stack(bin_dir, run_dir, test_mode=True, env=env, quiet=True)
        try:
            st.start_all()
            key = st.create_key(TENANT, "eval", ("admin",))
            t0 = time.time()
            to_beir = ingest(st, key, corpus, args.threads)
            rch = grpc.insecure_channel(st.grpc_addr("retriever"))
            stats = rch.unary_unary("/quarry.v1.Retriever/Stats",
                                    request_serializer=retriever_pb2.StatsRequest.SerializeToString,
                                    response_deserializer=retriever_pb2.StatsResponse.FromString)
            deadline = time.time() + 1800
            while True:
                s = stats(retriever_pb2.StatsRequest(tenant_id=TENANT), timeout=10)
                if s.documents >= len(to_beir):
                    break
                if time.time() > deadline:
                    raise SystemExit("indexing did not finish within 30 minutes")
                time.sleep(1)
            print("ingested %d documents (%d chunks) through the REST API in %.1f s"
                  % (s.documents, s.chunks, time.time() - t0))
            search = rch.unary_unary("/quarry.v1.Retriever/Search",
                                     request_serializer=retriever_pb2.SearchRequest.SerializeToString,
                                     response_deserializer=retriever_pb2.SearchResponse.FromString)
            lch = grpc.insecure_channel(st.grpc_addr("llm-gateway"))
            embed = lch.unary_unary("/quarry.v1.LlmGateway/Embed",
                                    request_serializer=llm_pb2.EmbedRequest.SerializeToString,
                                    response_deserializer=llm_pb2.EmbedResponse.FromString)
            print("%d test queries, Search depth %d" % (len(qrels), args.depth))
            print("%-8s %8s %11s %7s %10s %10s"
                  % ("mode", "nDCG@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms"))
            for mode in args.modes.split(","):
                r = evaluate(search, embed, queries, qrels, to_beir, mode, args.depth)
                print("%-8s %8.4f %11.4f %7.4f %10.2f %10.2f   fusion: %s"
                      % (mode, r["nDCG@10"], r["Recall@100"], r["MRR@10"],
                         r["p50_ms"], r["p95_ms"], "; ".join(r["fusion"])))
            if args.folds > 1:
                lists = fetch_lists(search, embed, queries, qrels, args.depth)
                cross_validate(lists, qrels, to_beir, args.depth, args.folds)
            if args.folds > 1 and args.lexical_cv:
                lexical_cv(st, search, embed, queries, qrels, to_beir, args.depth,
                           args.folds, len(to_beir))
            print_user_rows(st, search, embed, queries, qrels, to_beir)
        finally:
            st.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
