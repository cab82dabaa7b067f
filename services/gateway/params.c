/* params.c - query-string parameters and roles (see params.h). */
#include "params.h"

#include <stdlib.h>
#include <string.h>

#include "http_util.h"
#include "quarry/validate.h"

typedef struct scan {
  const char *const *allowed;
  const char *bad; /* first unknown parameter */
  const char *dup; /* first repeated one */
  unsigned seen;   /* bit i: allowed[i] seen */
} scan_t;

static enum MHD_Result scan_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value) {
  scan_t *s = cls;
  if (!*key && (!value || !*value))
    return MHD_YES; /* "?&a=1" or a trailing "&": nothing was given */
  for (unsigned i = 0; s->allowed[i] && i < 32; i++)
    if (strcmp(key, s->allowed[i]) == 0) {
      if (s->seen & (1u << i)) {
        if (!s->dup)
          s->dup = s->allowed[i];
      }
      s->seen |= 1u << i;
      return MHD_YES;
    }
  if (!s->bad)
    s->bad = key;
  return MHD_YES;
}

/* A parameter name fit to quote in a message: short, printable. */
static bool printable(const char *s) {
  size_t n = strlen(s);
  if (n > 64)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '"')
      return 0;
  return 1;
}

q_err_t params_only(gw_req_t *r, const char *const *allowed) {
  scan_t s = {.allowed = allowed};
  MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, scan_cb, &s);
  if (s.bad) {
    if (printable(s.bad))
      http_reply_error(r, Q_EINVAL, "unknown parameter \"%s\"", s.bad);
    else
      http_reply_error(r, Q_EINVAL, "unknown parameter");
    return Q_EINVAL;
  }
  if (s.dup) {
    http_reply_error(r, Q_EINVAL, "parameter \"%s\" given more than once", s.dup);
    return Q_EINVAL;
  }
  return Q_OK;
}

q_err_t params_int(gw_req_t *r, const char *name, int def, int lo, int hi, int *out) {
  const char *v = http_query_arg(r, name);
  *out = def;
  if (!v)
    return Q_OK;
  char *end = NULL;
  long n = 0;
  bool ok = *v >= '0' && *v <= '9' && strlen(v) <= 9;
  if (ok) {
    n = strtol(v, &end, 10);
    ok = *end == '\0' && n >= lo && n <= hi;
  }
  if (!ok) {
    http_reply_error(r, Q_EINVAL, "parameter \"%s\" must be an integer from %d to %d",
                     name, lo, hi);
    return Q_EINVAL;
  }
  *out = (int)n;
  return Q_OK;
}

q_err_t params_text(gw_req_t *r, const char *name, size_t maxlen, const char **out) {
  const char *v = http_query_arg(r, name);
  *out = "";
  if (!v)
    return Q_OK;
  size_t n = strlen(v);
  bool ok = n <= maxlen && q_valid_utf8(v, n);
  for (size_t i = 0; ok && i < n; i++)
    if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
      ok = 0;
  if (!ok) {
    http_reply_error(
        r, Q_EINVAL,
        "parameter \"%s\" must be at most %zu bytes of UTF-8 without control "
        "characters",
        name, maxlen);
    return Q_EINVAL;
  }
  *out = v;
  return Q_OK;
}

q_err_t params_enum(gw_req_t *r, const char *name, const char *const *values,
                    const char **out) {
  const char *v = http_query_arg(r, name);
  *out = "";
  if (!v || !*v)
    return Q_OK;
  char list[256];
  size_t used = 0;
  list[0] = '\0';
  for (size_t i = 0; values[i]; i++) {
    if (strcmp(v, values[i]) == 0) {
      *out = values[i];
      return Q_OK;
    }
    int k = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", values[i]);
    if (k > 0 && (size_t)k < sizeof list - used)
      used += (size_t)k;
  }
  http_reply_error(r, Q_EINVAL, "parameter \"%s\" must be one of %s", name, list);
  return Q_EINVAL;
}

const char *params_role_name(unsigned bit) {
  return bit == GW_ROLE_ADMIN    ? "admin"
         : bit == GW_ROLE_WRITER ? "writer"
         : bit == GW_ROLE_READER ? "reader"
                                 : "";
}

void params_role_need(unsigned mask, char *out, size_t n) {
  size_t used = 0;
  if (n)
    out[0] = '\0';
  for (unsigned bit = GW_ROLE_READER; bit >= GW_ROLE_ADMIN; bit >>= 1)
    if (mask & bit) {
      int k = snprintf(out + used, n - used, "%s%s", used ? " or " : "",
                       params_role_name(bit));
      if (k > 0 && (size_t)k < n - used)
        used += (size_t)k;
    }
}
