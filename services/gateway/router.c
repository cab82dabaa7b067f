/* router.c - matching a request's method and path against a route table.
 * The gateway's own table is in routes.c. */
#include "router.h"

#include <string.h>

/* Matches path against tmpl segment by segment; on success *param/len
 * name the "{id}" segment (if the template has one). */
static bool path_matches(const char *tmpl, const char *path, const char **param,
                         size_t *param_len) {
  const char *t = tmpl, *p = path;
  *param = NULL;
  *param_len = 0;
  while (*t && *p) {
    if (*t != '/' || *p != '/')
      return 0;
    t++;
    p++;
    const char *te = strchr(t, '/');
    size_t tl = te ? (size_t)(te - t) : strlen(t);
    const char *pe = strchr(p, '/');
    size_t pl = pe ? (size_t)(pe - p) : strlen(p);
    if (tl == 4 && memcmp(t, "{id}", 4) == 0) {
      if (pl == 0 || pl > GW_PARAM_MAX)
        return 0;
      *param = p;
      *param_len = pl;
    } else if (tl != pl || memcmp(t, p, tl) != 0) {
      return 0;
    }
    t += tl;
    p += pl;
  }
  return *t == '\0' && *p == '\0';
}

route_status_t router_match(const route_t *table, size_t n, const char *method,
                            const char *path, route_match_t *m) {
  memset(m, 0, sizeof *m);
  if (!method || !path || path[0] != '/')
    return ROUTE_NOT_FOUND;
  int path_known = 0;
  size_t alen = 0;
  for (size_t i = 0; i < n; i++) {
    const char *param;
    size_t plen;
    if (!path_matches(table[i].tmpl, path, &param, &plen))
      continue;
    if (!m->tmpl)
      m->tmpl = table[i].tmpl;
    if (strcmp(table[i].method, method) == 0) {
      m->route = &table[i];
      m->tmpl = table[i].tmpl;
      m->param = param;
      m->param_len = plen;
      return ROUTE_OK;
    }
    /* Remember the methods this path accepts, for the Allow header. */
    size_t ml = strlen(table[i].method);
    if (!strstr(m->allow, table[i].method) && alen + ml + 2 < sizeof m->allow) {
      if (alen) {
        memcpy(m->allow + alen, ", ", 2);
        alen += 2;
      }
      memcpy(m->allow + alen, table[i].method, ml);
      alen += ml;
      m->allow[alen] = '\0';
    }
    path_known = 1;
  }
  return path_known ? ROUTE_BAD_METHOD : ROUTE_NOT_FOUND;
}
