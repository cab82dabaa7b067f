/* params.h - query-string parameters and roles of the REST list and
 * management routes (GET /v1/documents, /v1/jobs, /v1/keys, ...).
 *
 * Each function replies 400 (or 403) itself, naming the parameter, and
 * returns Q_EINVAL (Q_EPERM) then; 0 when the request may go on. */
#ifndef QUARRY_GW_PARAMS_H
#define QUARRY_GW_PARAMS_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway.h"
#include "quarry/error.h"

/* Replies 400 when the query string holds a parameter not in allowed
 * (NULL-terminated), or one of them twice. */
q_err_t params_only(gw_req_t *r, const char *const *allowed);

/* Reads integer parameter name (def when absent) into *out, lo..hi. */
q_err_t params_int(gw_req_t *r, const char *name, int def, int lo, int hi, int *out);

/* Reads text parameter name ("" when absent) into *out: at most maxlen
 * bytes of UTF-8 without control characters. */
q_err_t params_text(gw_req_t *r, const char *name, size_t maxlen, const char **out);

/* Reads parameter name ("" when absent), which must be one of values
 * (NULL-terminated). */
q_err_t params_enum(gw_req_t *r, const char *name, const char *const *values,
                    const char **out);

/* Writes the roles in mask (GW_ROLE_* bits) as "writer or admin" (least
 * privileged first) into out.
 * Which route needs which role is in the route table (routes.c). */
void params_role_need(unsigned mask, char *out, size_t n);

/* The JSON names of roles, in the order admin, writer, reader. */
const char *params_role_name(unsigned bit);

#endif
