/* search.c - mode, fusion policy and aggregation of a Search (see search.h). */
#include "search.h"

#include "quarry/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

q_err_t search_policy_parse(const char *spec, search_policy_t *p, char *err,
                            size_t errlen) {
  unsigned k = p->rrf_k;
  memset(p, 0, sizeof *p);
  p->rrf_k = k;
  const char *s = spec ? spec : "";
  while (*s) {
    const char *end = strchr(s, ',');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    char rule[Q_LIMIT_MODEL_BYTES + 32];
    if (len == 0 || len >= sizeof rule) {
      snprintf(err, errlen, "rule %zu is %s", p->nrules + 1,
               len ? "too long" : "empty (two commas in a row?)");
      return Q_EINVAL;
    }
    memcpy(rule, s, len);
    rule[len] = '\0';
    if (p->nrules == SEARCH_MAX_RULES) {
      snprintf(err, errlen, "more than %d rules", SEARCH_MAX_RULES);
      return Q_EINVAL;
    }
    char *eq = strrchr(rule, '=');
    char *colon = eq ? strchr(eq, ':') : NULL;
    if (!eq || !colon || eq == rule) {
      snprintf(err, errlen, "rule \"%s\" is not PREFIX=METHOD:PERCENT", rule);
      return Q_EINVAL;
    }
    *eq = *colon = '\0';
    search_rule_t *r = &p->rules[p->nrules];
    if (strcmp(eq + 1, "rrf") == 0) {
      r->method = FUSION_RRF;
    } else if (strcmp(eq + 1, "weighted") == 0) {
      r->method = FUSION_WEIGHTED;
    } else {
      snprintf(err, errlen, "rule for \"%s\": method \"%s\" is neither rrf nor weighted",
               rule, eq + 1);
      return Q_EINVAL;
    }
    char *num_end;
    long pct = strtol(colon + 1, &num_end, 10);
    if (!colon[1] || *num_end || pct < 0 || pct > 10000) {
      snprintf(err, errlen, "rule for \"%s\": weight \"%s\" is not a percentage 0..10000",
               rule, colon + 1);
      return Q_EINVAL;
    }
    r->w_dense_pct = (unsigned)pct;
    size_t plen = strlen(rule);
    if (plen >= sizeof r->prefix) {
      snprintf(err, errlen, "rule %zu: the prefix is longer than %d bytes", p->nrules + 1,
               Q_LIMIT_MODEL_BYTES);
      return Q_EINVAL;
    }
    memcpy(r->prefix, rule, plen + 1);
    p->nrules++;
    s += len;
    if (*s == ',')
      s++;
  }
  return 0;
}

q_err_t search_policy_validate(const char *value, char *err, size_t errlen) {
  search_policy_t p = {0};
  return search_policy_parse(value, &p, err, errlen);
}

const search_rule_t *search_policy_rule(const search_policy_t *p,
                                        const char *embed_model) {
  const char *m = embed_model ? embed_model : "";
  for (size_t i = 0; i < p->nrules; i++) {
    const search_rule_t *r = &p->rules[i];
    if (strcmp(r->prefix, "*") == 0 || strncmp(m, r->prefix, strlen(r->prefix)) == 0)
      return r;
  }
  return NULL;
}

/* The engine's own fusion (engine_ops_t.hybrid) for a hybrid search whose
 * rule it can express: plain RRF (dense weight 100%) or weighted scores
 * (the weights scaled so the larger is 1: Milvus takes each in [0, 1]).
 * Weighted RRF and the lexical fallback (weight 0) are not expressible:
 * Q_EUNIMPL, and the caller fuses the two lists itself, as it does when
 * the engine declines. */
static q_err_t engine_fused(const engine_t *e, const search_policy_t *p,
                            const search_req_t *rq, const engine_query_t *q,
                            q_arena_t *arena, search_out_t *out, char *err,
                            size_t errlen) {
  const search_rule_t *rule = search_policy_rule(p, rq->embed_model);
  fusion_method_t method = rule ? rule->method : FUSION_RRF;
  unsigned pct = rule ? rule->w_dense_pct : 100;
  unsigned k = p->rrf_k ? p->rrf_k : Q_FUSION_RRF_K;
  engine_fusion_t how = {.weighted = method == FUSION_WEIGHTED, .rrf_k = k};
  if (pct == 0 || (method == FUSION_RRF && pct != 100))
    return Q_EUNIMPL;
  if (how.weighted) {
    double wd = pct / 100.0, top = wd > 1.0 ? wd : 1.0;
    how.w_lex = 1.0 / top;
    how.w_dense = wd / top;
  }
  engine_cand_t *c;
  size_t n;
  q_err_t rc = e->ops->hybrid(e->st, q, &how, arena, &c, &n, err, errlen);
  if (rc)
    return rc;
  out->hits = n ? q_arena_alloc(arena, n * sizeof *out->hits) : NULL;
  if (n && !out->hits) {
    snprintf(err, errlen, "result too large for the request's memory");
    return Q_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    out->hits[i] = (fusion_hit_t){.cand = &c[i], .fused = c[i].score};
  out->n = fusion_cap_per_doc(out->hits, n, rq->max_per_doc);
  if (out->n > rq->top_k)
    out->n = rq->top_k;
  out->mode = "hybrid";
  out->dense_used = n > 0; /* the engine fuses only where every chunk has a vector */
  const char *model = rq->embed_model && *rq->embed_model ? rq->embed_model : "unnamed";
  if (how.weighted)
    snprintf(out->fusion, sizeof out->fusion,
             "engine %s: weighted w_lex=%.2f w_dense=%.2f (embedder %.64s, rule %.64s)",
             e->ops->name, how.w_lex, how.w_dense, model,
             rule ? rule->prefix : "default");
  else
    snprintf(out->fusion, sizeof out->fusion,
             "engine %s: rrf k=%u (embedder %.64s, rule %.64s)", e->ops->name, k, model,
             rule ? rule->prefix : "default");
  return 0;
}

q_err_t search_run(const engine_t *e, const search_policy_t *p, const search_req_t *rq,
                   q_arena_t *arena, search_out_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  bool has_text = rq->text && !q_is_blank(rq->text, rq->text_len);
  bool has_vec = rq->dim > 0;
  const char *mode = rq->mode ? rq->mode : "";
  unsigned lists;
  if (!*mode) {
    lists = (has_text ? ENGINE_LEXICAL : 0) | (has_vec ? ENGINE_DENSE : 0);
  } else if (strcmp(mode, "lexical") == 0) {
    if (!has_text) {
      snprintf(err, errlen, "mode lexical needs a query text");
      return Q_EINVAL;
    }
    lists = ENGINE_LEXICAL;
  } else if (strcmp(mode, "dense") == 0) {
    if (!has_vec) {
      snprintf(err, errlen, "mode dense needs a query_embedding");
      return Q_EINVAL;
    }
    lists = ENGINE_DENSE;
  } else if (strcmp(mode, "hybrid") == 0) {
    /* Hybrid uses what it is given: a caller whose embedding failed still
     * gets a lexical answer, and the reply says so (mode, lexical_only). */
    lists = (has_text ? ENGINE_LEXICAL : 0) | (has_vec ? ENGINE_DENSE : 0);
  } else {
    snprintf(err, errlen, "mode \"%.32s\" is none of lexical, dense, hybrid", mode);
    return Q_EINVAL;
  }
  if (!lists) {
    snprintf(err, errlen, "query is empty and there is no query_embedding");
    return Q_EINVAL;
  }

  engine_query_t q = {
      .tenant = rq->tenant,
      .lists = lists,
      .text = has_text ? rq->text : NULL,
      .text_len = has_text ? rq->text_len : 0,
      .embedding = has_vec ? rq->embedding : NULL,
      .dim = has_vec ? rq->dim : 0,
      .top_k = rq->top_k,
      .filter = rq->filter,
  };
  q_err_t rc;
  if (lists == (ENGINE_LEXICAL | ENGINE_DENSE) && e->ops->hybrid) {
    rc = engine_fused(e, p, rq, &q, arena, out, err, errlen);
    if (rc != Q_EUNIMPL)
      return rc;
    memset(out, 0, sizeof *out); /* declined: fused here from the two lists */
  }
  engine_result_t r;
  rc = e->ops->search(e->st, &q, arena, &r, err, errlen);
  if (rc)
    return rc;
  out->dense_used = r.dense_used;

  fusion_params_t fp = {
      .method = FUSION_RRF, .k = p->rrf_k, .w_lex = 1.0, .w_dense = 1.0};
  bool both = (lists & ENGINE_LEXICAL) && r.dense_used;
  if (both) {
    out->mode = "hybrid";
    const search_rule_t *rule = search_policy_rule(p, rq->embed_model);
    fp.method = rule ? rule->method : FUSION_RRF;
    fp.w_dense = rule ? rule->w_dense_pct / 100.0 : 1.0;
    const char *model = rq->embed_model && *rq->embed_model ? rq->embed_model : "unnamed";
    if (fp.w_dense == 0.0)
      snprintf(out->fusion, sizeof out->fusion,
               "lexical fallback: embedder %.64s is weak (rule %.64s): lexical ranking, "
               "dense-only candidates after it",
               model, rule ? rule->prefix : "-");
    else if (fp.method == FUSION_WEIGHTED)
      snprintf(out->fusion, sizeof out->fusion,
               "weighted w_lex=1.00 w_dense=%.2f (embedder %.64s, rule %.64s)",
               fp.w_dense, model, rule ? rule->prefix : "default");
    else
      snprintf(out->fusion, sizeof out->fusion,
               "rrf k=%u w_lex=1.00 w_dense=%.2f (embedder %.64s, rule %.64s)",
               p->rrf_k ? p->rrf_k : Q_FUSION_RRF_K, fp.w_dense, model,
               rule ? rule->prefix : "default");
  } else {
    out->mode = (lists & ENGINE_LEXICAL) ? "lexical" : "dense";
    snprintf(out->fusion, sizeof out->fusion, "none");
  }
  /* Only the lists of the mode that ran are fused: a hybrid request whose
   * tenant has no vectors is lexical. */
  const engine_cand_t *den = both || !(lists & ENGINE_LEXICAL) ? r.dense : NULL;
  size_t nden = den ? r.ndense : 0;
  rc = fusion_merge(r.lexical, r.nlexical, den, nden, &fp, arena, &out->hits, &out->n);
  if (rc) {
    snprintf(err, errlen, "result too large for the request's memory");
    return rc;
  }
  out->n = fusion_cap_per_doc(out->hits, out->n, rq->max_per_doc);
  if (out->n > rq->top_k)
    out->n = rq->top_k;
  return 0;
}
