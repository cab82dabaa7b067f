/* milvus_expr.h - Quarry's metadata filters (quarry/filter.h) as Milvus
 * boolean expressions, and the metadata a chunk row carries for them.
 *
 * The Milvus engine filters inside Milvus, during its search, as the
 * embedded engine filters inside its top-k loop and graph walk (engine.h):
 * the compiled filter becomes an expression over the scalar fields of each
 * chunk row (docs/milvus.md, "Filters"), which the client ANDs after
 * `tenant_id == "<tenant>"`. The translation keeps q_filter_match's
 * semantics, including its treatment of absent fields (a condition on one is
 * false, so its `not` is true):
 *
 *   doc_id, title      `doc_id == "x"`, `title in ["a", "b"]`
 *   content_type       the same, under `content_type != ""` (stored empty
 *                      when the document has none: absent)
 *   created_at         `created_ms` (the document's creation time in ms; 0
 *                      unknown) compared with whole-second bounds times
 *                      1000, under `created_ms != 0`
 *   meta.k eq/in       `metadata["k"] == v` / `metadata["k"] in [...]`, or
 *                      for strings also `json_contains(metadata["k"], v)` /
 *                      `json_contains_any(...)` (a list value passes when it
 *                      holds one of them)
 *   meta.k ranges      on the number `metadata["k"]`, or on
 *                      `metadata["#dates"]["k"]`: the unix seconds of a
 *                      string value that is an RFC 3339 date, which
 *                      milvus_meta_stored adds ("#" is not allowed in a user
 *                      key, so it never meets one)
 *   and / or / not     `(a and b)`, `(a or b)`, `not (a)`
 *
 * Strings go in through milvus_quote_append (Go-style escapes), so a value
 * holding `" || tenant_id != "` stays one string literal. */
#ifndef QUARRY_RETRIEVER_MILVUS_EXPR_H
#define QUARRY_RETRIEVER_MILVUS_EXPR_H

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/filter.h"

#include <stdint.h>

/* The key of metadata["#dates"]: a user key cannot hold "#". */
#define MILVUS_DATES_KEY "#dates"

/* Appends to b the Milvus expression of f (which must not be NULL). 0;
 * Q_ETOOBIG when b's maximum is reached; Q_EINVAL when a string is not
 * UTF-8 (the parser already refuses those); err says which. */
q_err_t milvus_filter_expr(const q_filter_t *f, q_buf_t *b, char *err, size_t errlen);

/* The metadata JSON text a chunk row stores for the user metadata text meta
 * (NULL or "": none): the same object with whole numbers written as
 * integers (Milvus compares a JSON integer with an integer literal), plus
 * MILVUS_DATES_KEY: {key: unix seconds} for each string value that is an
 * RFC 3339 date (omitted when there is none). *out is a new string the
 * caller frees, "{}" for none. Q_EINVAL when meta is not a JSON object,
 * Q_ENOMEM. */
q_err_t milvus_meta_stored(const char *meta, char **out);

/* created_ms of a row: the document's creation time (unix seconds, 0
 * unknown) in ms, 0 when unknown. */
int64_t milvus_created_ms(int64_t created_at);

#endif
