/* ask_filter.h - the metadata filter of `quarry ask`, composed from its
 * options into the JSON that POST /v1/query takes as "filter"
 * (docs/retrieval.md, "Filters"; docs/cli.md).
 *
 * The client checks only what is its own: that --filter is JSON and that
 * a shorthand has its shape (KEY=VALUE). Whether the filter means
 * anything (fields, operators, dates, sizes) is the gateway's one rule:
 * a filter it refuses is its 400, shown with its message. */
#ifndef QUARRY_CLI_ASK_FILTER_H
#define QUARRY_CLI_ASK_FILTER_H

#include <jansson.h>
#include <stddef.h>

#include "args.h"
#include "quarry/error.h"

/* The options ask_filter_build reads, for the command's option table. */
#define ASK_FILTER_OPTS                                                                  \
  {"filter", 0, "JSON", false, "a metadata filter as JSON (docs/retrieval.md)"},         \
      {"where", 0, "KEY=VALUE", true,                                                    \
       "only documents whose KEY (meta.<key>, title, doc_id, ...) is VALUE; "            \
       "repeatable"},                                                                    \
      {"type", 0, "TYPE", true,                                                          \
       "only documents of this content type (application/pdf); repeatable: any of "      \
       "them"},                                                                          \
      {"after", 0, "DATE", false,                                                        \
       "only documents created at or after DATE (2024-01-01 or RFC 3339)"},              \
  {                                                                                      \
    "before", 0, "DATE", false, "only documents created before DATE"                     \
  }

/* Builds the filter from --filter JSON, --where KEY=VALUE (each
 * {"field": KEY, "eq": VALUE}, VALUE a string), --type TYPE (content_type
 * eq TYPE, or "in" every TYPE when repeated), --after DATE and --before
 * DATE (one created_at condition with "gte" / "lt"). One of them is the
 * filter itself; several are joined with {"and": [...]} in that order.
 * 0 and *out a new reference (json_decref it), or NULL when none of the
 * options is given; Q_EINVAL with err naming the option when --filter is
 * not JSON or a --where has no '=' or an empty KEY; Q_ENOMEM. */
q_err_t ask_filter_build(args_t *args, json_t **out, char *err, size_t errlen);

#endif
