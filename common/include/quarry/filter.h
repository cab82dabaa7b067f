/* filter.h - document metadata and the retrieval filter language.
 *
 * A filter is JSON (docs/retrieval.md, "Filters"): a condition
 *   {"field": "content_type", "eq": "application/pdf"}
 *   {"field": "meta.team", "in": ["legal", "hr"]}
 *   {"field": "created_at", "gte": "2020-01-01T00:00:00Z", "lt": 1700000000}
 * or a combination {"and": [...]}, {"or": [...]}, {"not": {...}}. Fields are
 * doc_id, title, content_type, author, language (a BCP 47 tag, compared
 * without regard to case), created_at (unix seconds) and meta.<key> (the
 * document's user metadata). Operators: eq, in, gt, gte, lt, lte; a condition
 * with several range operators needs all of them. Range operands are numbers
 * or RFC 3339 dates (a date compares as unix seconds).
 *
 * The same parser runs in the gateway (POST /v1/query: 400 naming the
 * problem) and in the retriever (Search: INVALID_ARGUMENT), which then
 * evaluates the compiled filter against each candidate document's fields
 * inside the engine. Sizes are bounded by the Q_LIMIT_FILTER_* and
 * Q_LIMIT_METADATA_* limits (quarry/limits.h).
 *
 * User metadata is a JSON object of at most Q_LIMIT_METADATA_KEYS keys whose
 * values are strings, finite numbers, booleans or lists of strings;
 * q_meta_check says whether an object is one. */
#ifndef QUARRY_FILTER_H
#define QUARRY_FILTER_H

#include "quarry/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A compiled filter (heap; q_filter_free). Immutable once parsed, so any
 * number of threads may evaluate it at once. */
typedef struct q_filter q_filter_t;

/* The fields of one document a filter looks at. Every pointer is borrowed;
 * NULL strings and meta are "absent". */
typedef struct q_filter_doc {
  const char *doc_id;
  const char *title;
  const char *content_type;
  const char *author;   /* "" or NULL: the file names none (absent) */
  const char *language; /* BCP 47 tag; "" or NULL: unknown (absent) */
  int64_t created_at;   /* unix seconds; 0: unknown (absent) */
  const json_t *meta;   /* the user metadata object, or NULL */
} q_filter_doc_t;

/* Compiles the filter v. 0 and *out set (the caller frees it with
 * q_filter_free); Q_EINVAL with err naming the problem and where it is
 * ("filter.and[1].not: unknown operator \"like\""); Q_ENOMEM. A JSON null
 * is no filter: 0 with *out NULL. */
q_err_t q_filter_compile(const json_t *v, q_filter_t **out, char *err, size_t errlen);

/* q_filter_compile of the JSON text s[0..len): Q_EINVAL when it is longer
 * than Q_LIMIT_FILTER_BYTES or not JSON. An empty text is no filter (0,
 * *out NULL). */
q_err_t q_filter_parse(const char *s, size_t len, q_filter_t **out, char *err,
                       size_t errlen);

/* Frees f. NULL is fine. */
void q_filter_free(q_filter_t *f);

/* Whether document d passes f (a NULL f passes everything). A condition on
 * an absent field is false (so {"not": ...} of it is true). */
bool q_filter_match(const q_filter_t *f, const q_filter_doc_t *d);

/* Checks that meta is user metadata: an object of at most
 * Q_LIMIT_METADATA_KEYS keys of 1..Q_LIMIT_METADATA_KEY_BYTES bytes of
 * [A-Za-z0-9_.-], each value a string (valid UTF-8, at most
 * Q_LIMIT_METADATA_VALUE_BYTES), a finite number, a boolean, or a list of at
 * most Q_LIMIT_METADATA_LIST_ITEMS such strings; and at most
 * Q_LIMIT_METADATA_BYTES as compact JSON. 0 or Q_EINVAL with err naming the
 * key and the problem. */
q_err_t q_meta_check(const json_t *meta, char *err, size_t errlen);

/* Parses the user metadata text s[0..len) (white space allowed; text over
 * 4 * Q_LIMIT_METADATA_BYTES is refused unread) and checks it
 * (q_meta_check). 0
 * and *out set to a new reference (json_decref it), Q_EINVAL with err. An
 * empty text gives *out NULL. */
q_err_t q_meta_parse(const char *s, size_t len, json_t **out, char *err, size_t errlen);

/* Parses an RFC 3339 date-time ("2024-05-01T12:00:00Z", fraction and
 * +hh:mm offsets allowed) or full-date ("2024-05-01", midnight UTC) into
 * unix seconds. Predicate: false when s is neither. */
bool q_rfc3339_parse(const char *s, int64_t *out);

/* ---- reading a compiled filter ---------------------------------------------
 * What an engine that filters by itself (the Milvus engine translates a
 * filter into Milvus's boolean expressions) needs to walk the tree. Every
 * pointer is the filter's and lives as long as it. */

/* A node of the tree: a combination or a condition. */
typedef struct q_filter_node q_filter_node_t;

typedef enum { Q_FILTER_AND, Q_FILTER_OR, Q_FILTER_NOT, Q_FILTER_COND } q_filter_op_t;

typedef enum {
  Q_FILTER_DOC_ID,
  Q_FILTER_TITLE,
  Q_FILTER_CONTENT_TYPE,
  Q_FILTER_AUTHOR,
  Q_FILTER_LANGUAGE,
  Q_FILTER_CREATED_AT,
  Q_FILTER_META
} q_filter_field_t;

typedef enum { Q_FILTER_STR, Q_FILTER_NUM, Q_FILTER_BOOL } q_filter_kind_t;

/* An operand of eq or in. created_at's are numbers (unix seconds). */
typedef struct q_filter_value {
  q_filter_kind_t kind;
  const char *s; /* Q_FILTER_STR */
  double n;      /* Q_FILTER_NUM */
  bool b;        /* Q_FILTER_BOOL */
} q_filter_value_t;

/* A condition as q_filter_match evaluates it: eq (one value), in (nin
 * values) or a range (lo and/or hi, dates already unix seconds). On a meta
 * key, eq and in also pass when the value is a list holding one of the
 * values, and a range also compares a string value that is an RFC 3339
 * date, as unix seconds. A condition on an absent field is false. */
typedef struct q_filter_cond {
  q_filter_field_t field;
  const char *key; /* Q_FILTER_META: the metadata key */
  bool has_eq, has_in;
  const q_filter_value_t *values; /* eq: 1, in: nin */
  size_t nvalues;
  bool has_lo, lo_incl, has_hi, hi_incl;
  double lo, hi;
} q_filter_cond_t;

/* The root node of f (NULL for a NULL f). */
const q_filter_node_t *q_filter_root(const q_filter_t *f);

/* What n is; for and/or the number of its children (not: 1). */
q_filter_op_t q_filter_node_op(const q_filter_node_t *n);
size_t q_filter_node_nkids(const q_filter_node_t *n);
const q_filter_node_t *q_filter_node_kid(const q_filter_node_t *n, size_t i);

/* The condition n (q_filter_node_op Q_FILTER_COND) into *out. */
void q_filter_node_cond(const q_filter_node_t *n, q_filter_cond_t *out);

#endif
