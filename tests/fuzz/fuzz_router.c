/* fuzz_router.c - route matching (router.c) against the gateway's own
 * route table (routes.c), for any method and path a client can send.
 *
 * Input: the method, a newline, the path. Checked: a match names a route
 * of that method whose template fits the path, its {id} is one non-empty
 * segment of at most GW_PARAM_MAX bytes inside the path, and a 405's Allow
 * list is a terminated string. */
#include "fuzz.h"
#include "router.h"
#include "routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether the Allow list ("GET, POST") names method exactly. */
static int allows(const char *allow, const char *method) {
  size_t n = strlen(method);
  for (const char *p = allow; *p;) {
    const char *e = strstr(p, ", ");
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == n && memcmp(p, method, n) == 0)
      return 1;
    p += l + (e ? 2 : 0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *f[2];
  char *block = fuzz_split(data, size, f, 2, NULL);
  const char *method = f[0], *path = f[1];
  route_match_t m;
  route_status_t st = router_match(gw_routes, gw_nroutes, method, path, &m);
  size_t plen = strlen(path);
  switch (st) {
  case ROUTE_OK:
    FUZZ_CHECK(m.route != NULL, "OK without a route");
    FUZZ_CHECK(strcmp(m.route->method, method) == 0, "%s matched a %s route", method,
               m.route->method);
    FUZZ_CHECK(m.tmpl == m.route->tmpl, "template of another route");
    if (strstr(m.route->tmpl, "{id}")) {
      FUZZ_CHECK(m.param != NULL, "template %s matched without its {id}", m.tmpl);
      FUZZ_CHECK(m.param > path && m.param + m.param_len <= path + plen,
                 "{id} outside the path");
      FUZZ_CHECK(m.param_len >= 1 && m.param_len <= GW_PARAM_MAX, "{id} of %zu bytes",
                 m.param_len);
      FUZZ_CHECK(!memchr(m.param, '/', m.param_len), "{id} spans a '/'");
    } else {
      FUZZ_CHECK(m.param == NULL, "a parameter without {id}");
      FUZZ_CHECK(strcmp(m.route->tmpl, path) == 0, "%s matched %s", path, m.tmpl);
    }
    break;
  case ROUTE_BAD_METHOD:
    FUZZ_CHECK(m.route == NULL && m.tmpl != NULL, "405 without the template");
    FUZZ_CHECK(memchr(m.allow, '\0', sizeof m.allow) && m.allow[0], "Allow list");
    FUZZ_CHECK(!allows(m.allow, method), "405 for %s although Allow lists it (%s)",
               method, m.allow);
    break;
  case ROUTE_NOT_FOUND: FUZZ_CHECK(m.route == NULL, "404 with a route"); break;
  default: FUZZ_CHECK(0, "status %d", (int)st);
  }
  free(block);
  return 0;
}
