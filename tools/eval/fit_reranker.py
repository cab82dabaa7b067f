#!/usr/bin/python3
"""Fits the reranker's feature model on a BEIR dataset, measured on held-out queries.

1. Features (needs the stack): starts a private stack, ingests the corpus as
   `make eval` does (beir_eval.py), and for every query with qrels asks for
   the candidates the gateway would get - Embed, then the retriever's hybrid
   Search with the gateway's candidate count (PIPELINE_RETRIEVE_TOP_K, 50) -
   and has the running reranker compute their features
   (Reranker/Rerank with return_features). Written to --dump as JSON.
2. Fit (stdlib only): a linear model of the features, trained pairwise (a
   logistic loss on score differences of a passage of a relevant document
   and one of an irrelevant one, every query weighing the same, L2
   penalty), solved by Newton's method on standardised features.
3. Measure, never on the queries it was fitted on:
   - k-fold cross-validation over queries (--folds, 5): fit on k-1 folds,
     nDCG@10 of the held-out fold, retrieval order vs reranked, per fold;
   - the weights written to --out are fitted on half A of the queries
     (sha1(query id) even) only, and scored on half B, which `make eval`
     also reports apart (beir_eval.py).

    /usr/bin/python3 tools/eval/fit_reranker.py --data ../shared/data/scifact \\
        --dump build/eval/scifact-features.json --out services/reranker/models/features.v1.json
    /usr/bin/python3 tools/eval/fit_reranker.py --data ../shared/data/scifact \\
        --features build/eval/scifact-features.json      # refit without the stack

A second check that uses none of the test queries (--pseudo-titles N): the
corpus is ingested without titles, N documents (by sha1 of their id) are
asked for by their title, the document it came from being the one relevant
answer, and the weights file (--model) is scored on them, not fitted:

    /usr/bin/python3 tools/eval/fit_reranker.py --data ../shared/data/scifact \
        --pseudo-titles 500

A document's rank is the rank of its best passage (as in beir_eval.py).
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import beir_eval  # noqa: E402  (load_beir, ingest, dcg; sets up the import path)

# What the gateway asks the retriever for (services/gateway/pipeline.h).
PIPELINE_RETRIEVE_TOP_K = 50
L2 = 1e-3


# ---- the split ---------------------------------------------------------------

def qhash(qid):
    return int(hashlib.sha1(qid.encode()).hexdigest(), 16)


def in_fit_half(qid):
    """Half A: the queries the shipped weights are fitted on."""
    return qhash(qid) % 2 == 0


def folds_of(qids, k):
    """k folds over the queries, by their hash (stable, not by file order)."""
    order = sorted(qids, key=lambda q: (qhash(q), q))
    return [order[i::k] for i in range(k)]


# ---- collecting features through the stack -----------------------------------

def pseudo_title_queries(corpus, n):
    """A check that does not use the test queries: n documents (by sha1 of
    their id), each asked for by its title, which is removed from what is
    ingested (else the title would find itself); the one relevant document
    is the one it came from. Returns (corpus without titles, queries,
    qrels)."""
    picked = sorted((d for d in corpus if d.get("title") and d.get("text")),
                    key=lambda d: (qhash(d["_id"]), d["_id"]))[:n]
    queries = {"t" + d["_id"]: d["title"] for d in picked}
    qrels = {"t" + d["_id"]: {d["_id"]: 1} for d in picked}
    bare = [{"_id": d["_id"], "title": "", "text": d.get("text") or d.get("title", "")}
            for d in corpus]
    return bare, queries, qrels


def collect(args, corpus, queries, qrels):
    import grpc
    import stack
    from quarry.v1 import llm_pb2, reranker_pb2, retriever_pb2

    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(beir_eval.ROOT, "build", "bin"))
    out = {"data": os.path.basename(os.path.normpath(args.data)), "queries": []}
    with tempfile.TemporaryDirectory(prefix="quarry-fit-") as run_dir:
        st = stack.Stack(bin_dir, run_dir, test_mode=True,
                         env={"QUARRY_RATE_LIMIT_RPS": "0"}, quiet=True)
        try:
            st.start_all()
            key = st.create_key(beir_eval.TENANT, "fit", ("admin",))
            t0 = time.time()
            to_beir = beir_eval.ingest(st, key, corpus, args.threads)
            rch = grpc.insecure_channel(st.grpc_addr("retriever"))
            stats = rch.unary_unary("/quarry.v1.Retriever/Stats",
                                    request_serializer=retriever_pb2.StatsRequest.SerializeToString,
                                    response_deserializer=retriever_pb2.StatsResponse.FromString)
            while stats(retriever_pb2.StatsRequest(tenant_id=beir_eval.TENANT),
                        timeout=10).documents < len(to_beir):
                if time.time() - t0 > 1800:
                    raise SystemExit("indexing did not finish within 30 minutes")
                time.sleep(1)
            print("ingested %d documents in %.1f s" % (len(to_beir), time.time() - t0))
            search = rch.unary_unary("/quarry.v1.Retriever/Search",
                                     request_serializer=retriever_pb2.SearchRequest.SerializeToString,
                                     response_deserializer=retriever_pb2.SearchResponse.FromString)
            lch = grpc.insecure_channel(st.grpc_addr("llm-gateway"))
            embed = lch.unary_unary("/quarry.v1.LlmGateway/Embed",
                                    request_serializer=llm_pb2.EmbedRequest.SerializeToString,
                                    response_deserializer=llm_pb2.EmbedResponse.FromString)
            xch = grpc.insecure_channel(st.grpc_addr("reranker"))
            rerank = xch.unary_unary("/quarry.v1.Reranker/Rerank",
                                     request_serializer=reranker_pb2.RerankRequest.SerializeToString,
                                     response_deserializer=reranker_pb2.RerankResponse.FromString)
            for qid in sorted(qrels):
                text = queries[qid]
                req = retriever_pb2.SearchRequest(tenant_id=beir_eval.TENANT, query=text,
                                                  top_k=PIPELINE_RETRIEVE_TOP_K)
                e = embed(llm_pb2.EmbedRequest(texts=[text]), timeout=10)
                req.query_embedding.extend(e.embeddings[0].values)
                req.embed_model = e.model  # as the gateway sends it: the fusion rule follows
                reply = search(req, timeout=10)
                if not reply.passages:
                    out["queries"].append({"qid": qid, "docs": [], "x": []})
                    continue
                r = rerank(reranker_pb2.RerankRequest(query=text, passages=reply.passages,
                                                      method="none", return_features=True),
                           timeout=10)
                out["feature_names"] = list(r.feature_names)
                out["queries"].append({
                    "qid": qid,
                    "docs": [to_beir.get(p.doc_id, "") for p in reply.passages],
                    "x": [list(f.values) for f in r.features]})
        finally:
            st.stop_all()
    return out


# ---- metrics -------------------------------------------------------------------

def ranked_docs(docs, scores):
    """Documents by their best passage: passages by descending score, equal
    scores in incoming order (the reranker's tie rule)."""
    order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
    seen, ranked = set(), []
    for i in order:
        if docs[i] and docs[i] not in seen:
            seen.add(docs[i])
            ranked.append(docs[i])
    return ranked


def ndcg10(ranked, rel):
    ideal = beir_eval.dcg(sorted(rel.values(), reverse=True)[:10])
    return beir_eval.dcg([rel.get(d, 0) for d in ranked[:10]]) / ideal


def deltas(queries, qrels, w):
    """Per query: (nDCG@10 of the retrieval order, nDCG@10 reranked by w)."""
    out = []
    for q in queries:
        rel = qrels[q["qid"]]
        n = len(q["docs"])
        out.append((ndcg10(ranked_docs(q["docs"], [-i for i in range(n)]), rel),
                    ndcg10(ranked_docs(q["docs"], [score(w, x) for x in q["x"]]), rel)))
    return out


def mean_ndcg(queries, qrels, w):
    """(retrieval order, reranked by w) mean nDCG@10 over queries."""
    d = deltas(queries, qrels, w)
    return sum(a for a, _ in d) / len(d), sum(b for _, b in d) / len(d)


def bootstrap(pairs, rounds=2000, seed=1):
    """95% interval of the mean gain (reranked - retrieval) by a paired
    bootstrap over queries, and the queries that went up / down."""
    import random
    gains = [b - a for a, b in pairs]
    rng = random.Random(seed)
    n = len(gains)
    means = sorted(sum(rng.choice(gains) for _ in range(n)) / n for _ in range(rounds))
    up = sum(1 for g in gains if g > 1e-12)
    down = sum(1 for g in gains if g < -1e-12)
    return means[int(rounds * 0.025)], means[int(rounds * 0.975) - 1], up, down


def score(w, x):
    return sum(wi * xi for wi, xi in zip(w, x))


# ---- fitting ---------------------------------------------------------------------

def solve(a, b):
    """a x = b by Gaussian elimination with partial pivoting (a is small)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        if abs(m[c][c]) < 1e-12:
            continue
        for r in range(n):
            if r != c and m[r][c]:
                f = m[r][c] / m[c][c]
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    return [m[i][n] / m[i][i] if abs(m[i][i]) >= 1e-12 else 0.0 for i in range(n)]


def fit(queries, qrels, nfeat, l2=L2, iters=25):
    """Raw-feature weights from a pairwise logistic fit on queries."""
    xs = [x for q in queries for x in q["x"]]
    mu = [sum(x[f] for x in xs) / len(xs) for f in range(nfeat)]
    sd = [math.sqrt(sum((x[f] - mu[f]) ** 2 for x in xs) / len(xs)) for f in range(nfeat)]
    # Pairs (relevant passage - irrelevant passage) on standardised features,
    # each query's pairs weighing 1 in total.
    pairs = []
    for q in queries:
        rel = qrels[q["qid"]]
        z = [[(x[f] - mu[f]) / sd[f] if sd[f] > 0 else 0.0 for f in range(nfeat)]
             for x in q["x"]]
        g = [rel.get(d, 0) for d in q["docs"]]
        qp = [(i, j) for i in range(len(z)) for j in range(len(z)) if g[i] > g[j]]
        for i, j in qp:
            pairs.append(([a - b for a, b in zip(z[i], z[j])], 1.0 / len(qp)))
    nq = len(queries)
    w = [0.0] * nfeat
    for _ in range(iters):
        grad = [2 * l2 * wi for wi in w]
        hess = [[2 * l2 if r == c else 0.0 for c in range(nfeat)] for r in range(nfeat)]
        for d, cw in pairs:
            s = sum(wi * di for wi, di in zip(w, d))
            p = 1.0 / (1.0 + math.exp(-s)) if s > -30 else 0.0
            cw /= nq
            k = (p - 1.0) * cw
            h = p * (1.0 - p) * cw
            for r in range(nfeat):
                grad[r] += k * d[r]
                if h:
                    hr = h * d[r]
                    row = hess[r]
                    for c in range(nfeat):
                        row[c] += hr * d[c]
        step = solve(hess, grad)
        w = [wi - si for wi, si in zip(w, step)]
        if max(abs(s) for s in step) < 1e-6:
            break
    return [wi / sd[f] if sd[f] > 0 else 0.0 for f, wi in enumerate(w)]


def score_model(path, names, qs, qrels):
    """The weights file at path on queries it was not fitted on."""
    with open(path) as f:
        model = json.load(f)
    w = [model["weights"][nm] for nm in names]
    pairs = deltas(qs, qrels, w)
    a = sum(p[0] for p in pairs) / len(pairs)
    b = sum(p[1] for p in pairs) / len(pairs)
    lo, hi, up, down = bootstrap(pairs)
    print("weights %s (%s) on %d pseudo-queries: nDCG@10 retrieval order %.4f, reranked %.4f "
          "(%+.4f; 95%% interval [%+.4f, %+.4f]; %d queries up, %d down)"
          % (path, model.get("name"), len(pairs), a, b, b - a, lo, hi, up, down))
    return 0


# ---- main ---------------------------------------------------------------------------

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="BEIR dataset directory (qrels)")
    ap.add_argument("--features", help="read features from this file (no stack)")
    ap.add_argument("--dump", help="write the collected features here")
    ap.add_argument("--out", help="write the weights file here")
    ap.add_argument("--name", default="scifact-pairwise", help="the weights file's name")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=8, help="parallel uploads")
    ap.add_argument("--pseudo-titles", type=int, default=0, metavar="N",
                    help="no fit: score the weights file --model on N pseudo-queries "
                         "(document titles, titles not ingested) instead")
    ap.add_argument("--model", default=os.path.join(beir_eval.ROOT, "services", "reranker",
                                                    "models", "features.v1.json"))
    args = ap.parse_args(argv)

    corpus, queries, qrels = beir_eval.load_beir(args.data)
    if args.pseudo_titles:
        corpus, queries, qrels = pseudo_title_queries(corpus, args.pseudo_titles)
    if args.features:
        with open(args.features) as f:
            data = json.load(f)
    else:
        data = collect(args, corpus, queries, qrels)
        if args.dump:
            os.makedirs(os.path.dirname(os.path.abspath(args.dump)), exist_ok=True)
            with open(args.dump, "w") as f:
                json.dump(data, f)
    names = data["feature_names"]
    qs = [q for q in data["queries"] if q["qid"] in qrels and q["docs"]]
    byid = {q["qid"]: q for q in qs}
    print("%d queries with candidates, %d features: %s" % (len(qs), len(names), " ".join(names)))
    if args.pseudo_titles:
        return score_model(args.model, names, qs, qrels)

    print("\n%d-fold cross-validation over queries (fit on %d folds, nDCG@10 of the held-out one)"
          % (args.folds, args.folds - 1))
    print("%-6s %8s %10s %10s %8s" % ("fold", "queries", "retrieval", "reranked", "delta"))
    folds = folds_of(list(byid), args.folds)
    cv, cv_pairs = [], []
    for k, held in enumerate(folds):
        train = [byid[q] for f, fq in enumerate(folds) if f != k for q in fq]
        test = [byid[q] for q in held]
        w = fit(train, qrels, len(names))
        pairs = deltas(test, qrels, w)
        cv_pairs += pairs
        a = sum(p[0] for p in pairs) / len(pairs)
        b = sum(p[1] for p in pairs) / len(pairs)
        cv.append({"fold": k, "queries": len(test), "retrieval": round(a, 4),
                   "reranked": round(b, 4)})
        print("%-6d %8d %10.4f %10.4f %+8.4f" % (k, len(test), a, b, b - a))
    n = sum(c["queries"] for c in cv)
    ma = sum(c["retrieval"] * c["queries"] for c in cv) / n
    mb = sum(c["reranked"] * c["queries"] for c in cv) / n
    print("%-6s %8d %10.4f %10.4f %+8.4f" % ("all", n, ma, mb, mb - ma))
    cv_lo, cv_hi, cv_up, cv_down = bootstrap(cv_pairs)
    print("gain over all held-out folds: 95%% interval [%+.4f, %+.4f] (paired bootstrap "
          "over queries); %d queries up, %d down, %d unchanged"
          % (cv_lo, cv_hi, cv_up, cv_down, n - cv_up - cv_down))

    half_a = [q for q in qs if in_fit_half(q["qid"])]
    half_b = [q for q in qs if not in_fit_half(q["qid"])]
    w = fit(half_a, qrels, len(names))
    fa, fb = mean_ndcg(half_a, qrels, w)
    ha, hb = mean_ndcg(half_b, qrels, w)
    print("\nshipped weights: fitted on half A (%d queries), measured on half B (%d queries)"
          % (len(half_a), len(half_b)))
    print("%-22s %10s %10s %8s" % ("", "retrieval", "reranked", "delta"))
    print("%-22s %10.4f %10.4f %+8.4f" % ("half A (fitted on)", fa, fb, fb - fa))
    print("%-22s %10.4f %10.4f %+8.4f" % ("half B (held out)", ha, hb, hb - ha))
    b_lo, b_hi, b_up, b_down = bootstrap(deltas(half_b, qrels, w))
    print("half B gain: 95%% interval [%+.4f, %+.4f]; %d queries up, %d down"
          % (b_lo, b_hi, b_up, b_down))
    print("weights: " + ", ".join("%s %.4g" % (nm, wi) for nm, wi in zip(names, w)))
    # Rerank by default only when the gain on held-out queries is more than
    # noise: the lower ends of both 95% intervals (cross-validation, and the
    # shipped weights on half B) above zero. A mean above zero is not
    # enough: on 150 queries a few that move decide its sign.
    helps = cv_lo > 0 and b_lo > 0
    print("\nverdict: the feature model %s the retrieval order on held-out queries; "
          "default method (QUARRY_RERANK_METHOD): %s"
          % ("beats" if helps else "does not demonstrably beat",
             "features" if helps else "none"))

    if args.out:
        model = {
            "format": "quarry-rerank-linear",
            "version": 1,
            "name": args.name,
            "weights": {nm: wi for nm, wi in zip(names, w)},
            "fit": {
                "tool": "tools/eval/fit_reranker.py",
                "date": datetime.date.today().isoformat(),
                "data": data.get("data", ""),
                "candidates": "hybrid Search, top %d, as the gateway asks" % PIPELINE_RETRIEVE_TOP_K,
                "fitted_on": "half A: queries whose sha1(query id) is even (%d)" % len(half_a),
                "loss": "pairwise logistic, every query weighing the same, L2 %g" % L2,
                "held_out_half_b": {"queries": len(half_b), "retrieval": round(ha, 4),
                                    "reranked": round(hb, 4),
                                    "gain_95": [round(b_lo, 4), round(b_hi, 4)]},
                "cross_validation": cv,
                "cross_validation_gain_95": [round(cv_lo, 4), round(cv_hi, 4)],
                "verdict": "default %s" % ("features" if helps else "none"),
            },
        }
        with open(args.out, "w") as f:
            json.dump(model, f, indent=2)
            f.write("\n")
        print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
