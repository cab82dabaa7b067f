/* test_router.c - method + path matching: literal and {id} segments,
 * 404 versus 405 with the Allow list, and the gateway's own route table. */
#include "routes.h"

#include <criterion/criterion.h>
#include <string.h>

static void h(gw_req_t *r) {
  (void)r;
}

static const route_t table[] = {
    {"POST", "/v1/things", BODY_JSON, 0, h, NULL, 0, NULL},
    {"GET", "/v1/things/{id}", BODY_NONE, 0, h, NULL, 0, NULL},
    {"DELETE", "/v1/things/{id}", BODY_NONE, 0, h, NULL, 0, NULL},
    {"GET", "/v1/things/{id}/parts", BODY_NONE, 0, h, NULL, 0, NULL},
    {"GET", "/healthz", BODY_NONE, 1, h, NULL, 0, NULL},
};
#define N (sizeof table / sizeof table[0])

Test(router, literal_path_matches_its_method) {
  route_match_t m;
  cr_assert_eq(router_match(table, N, "POST", "/v1/things", &m), ROUTE_OK);
  cr_assert_eq(m.route, &table[0]);
  cr_assert_null(m.param);
  cr_assert_str_eq(m.tmpl, "/v1/things");
}

Test(router, id_segment_is_captured) {
  route_match_t m;
  cr_assert_eq(router_match(table, N, "GET", "/v1/things/abc-123", &m), ROUTE_OK);
  cr_assert_eq(m.route, &table[1]);
  cr_assert_eq(m.param_len, 7);
  cr_assert_eq(strncmp(m.param, "abc-123", m.param_len), 0);
  cr_assert_str_eq(m.tmpl, "/v1/things/{id}");

  cr_assert_eq(router_match(table, N, "GET", "/v1/things/x9/parts", &m), ROUTE_OK);
  cr_assert_eq(m.route, &table[3]);
  cr_assert_eq(m.param_len, 2);
  cr_assert_eq(strncmp(m.param, "x9", 2), 0);
}

Test(router, same_path_other_method_selects_other_route) {
  route_match_t m;
  cr_assert_eq(router_match(table, N, "DELETE", "/v1/things/7", &m), ROUTE_OK);
  cr_assert_eq(m.route, &table[2]);
}

Test(router, wrong_method_is_405_with_allow_list) {
  route_match_t m;
  cr_assert_eq(router_match(table, N, "PUT", "/v1/things/7", &m), ROUTE_BAD_METHOD);
  cr_assert_null(m.route);
  cr_assert_str_eq(m.allow, "GET, DELETE");
  cr_assert_str_eq(m.tmpl, "/v1/things/{id}");
  cr_assert_eq(router_match(table, N, "GET", "/v1/things", &m), ROUTE_BAD_METHOD);
  cr_assert_str_eq(m.allow, "POST");
}

Test(router, unknown_paths_are_404) {
  route_match_t m;
  const char *paths[] = {"/",
                         "/v1",
                         "/v1/thing",
                         "/v1/things/",
                         "/v1/things//parts",
                         "/v1/things/7/",
                         "/v1/things/7/parts/x",
                         "/healthz/",
                         "/HEALTHZ",
                         "healthz",
                         "",
                         "/v1/thingsx"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    cr_assert_eq(router_match(table, N, "GET", paths[i], &m), ROUTE_NOT_FOUND, "%s",
                 paths[i]);
  cr_assert_eq(router_match(table, N, "GET", NULL, &m), ROUTE_NOT_FOUND);
}

Test(router, id_segment_is_bounded) {
  char path[600];
  route_match_t m;
  memcpy(path, "/v1/things/", 11);
  memset(path + 11, 'a', GW_PARAM_MAX);
  path[11 + GW_PARAM_MAX] = '\0';
  cr_assert_eq(router_match(table, N, "GET", path, &m), ROUTE_OK);
  cr_assert_eq(m.param_len, GW_PARAM_MAX);
  path[11 + GW_PARAM_MAX] = 'a';
  path[12 + GW_PARAM_MAX] = '\0';
  cr_assert_eq(router_match(table, N, "GET", path, &m), ROUTE_NOT_FOUND);
}

Test(router, gateway_table_serves_the_rest_contract) {
  route_match_t m;
  struct {
    const char *method, *path, *tmpl;
    body_kind_t body;
    int is_public;
    unsigned roles; /* of which the key needs one; 0: any */
  } ok[] = {
      {"POST", "/v1/documents", "/v1/documents", BODY_STREAM, 0,
       GW_ROLE_WRITER | GW_ROLE_ADMIN},
      {"POST", "/v1/documents/batch", "/v1/documents/batch", BODY_STREAM, 0,
       GW_ROLE_WRITER | GW_ROLE_ADMIN},
      {"GET", "/v1/documents/0b6f", "/v1/documents/{id}", BODY_NONE, 0, 0},
      {"GET", "/v1/documents", "/v1/documents", BODY_NONE, 0, 0},
      {"DELETE", "/v1/documents/0b6f", "/v1/documents/{id}", BODY_NONE, 0,
       GW_ROLE_WRITER | GW_ROLE_ADMIN},
      {"GET", "/v1/jobs", "/v1/jobs", BODY_NONE, 0, 0},
      {"GET", "/v1/jobs/j1", "/v1/jobs/{id}", BODY_NONE, 0, 0},
      {"GET", "/v1/me", "/v1/me", BODY_NONE, 0, 0},
      {"GET", "/v1/keys", "/v1/keys", BODY_NONE, 0, GW_ROLE_ADMIN},
      {"POST", "/v1/keys", "/v1/keys", BODY_JSON, 0, GW_ROLE_ADMIN},
      {"DELETE", "/v1/keys/0123456789abcdef", "/v1/keys/{id}", BODY_NONE, 0,
       GW_ROLE_ADMIN},
      {"POST", "/v1/query", "/v1/query", BODY_JSON, 0, 0},
      {"POST", "/v1/feedback", "/v1/feedback", BODY_JSON, 0, 0},
      {"GET", "/healthz", "/healthz", BODY_NONE, 1, 0},
      {"GET", "/readyz", "/readyz", BODY_NONE, 1, 0},
      {"GET", "/metrics", "/metrics", BODY_NONE, 1, 0},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    cr_assert_eq(router_match(gw_routes, gw_nroutes, ok[i].method, ok[i].path, &m),
                 ROUTE_OK, "%s %s", ok[i].method, ok[i].path);
    cr_assert_str_eq(m.route->tmpl, ok[i].tmpl);
    cr_assert_eq(m.route->body, ok[i].body);
    cr_assert_eq(m.route->is_public, ok[i].is_public);
    cr_assert_eq(m.route->roles, ok[i].roles, "%s %s", ok[i].method, ok[i].path);
    cr_assert(!m.route->roles || m.route->action, "a refusal names what is refused");
    cr_assert(m.route->handle || m.route->stream);
  }
  cr_assert_eq(router_match(gw_routes, gw_nroutes, "GET", "/v1/query", &m),
               ROUTE_BAD_METHOD);
  cr_assert_str_eq(m.allow, "POST");
  cr_assert_eq(router_match(gw_routes, gw_nroutes, "PUT", "/v1/documents/x", &m),
               ROUTE_BAD_METHOD);
  cr_assert_str_eq(m.allow, "GET, DELETE");
  cr_assert_eq(router_match(gw_routes, gw_nroutes, "DELETE", "/v1/documents", &m),
               ROUTE_BAD_METHOD);
  cr_assert_str_eq(m.allow, "POST, GET");
  cr_assert_eq(router_match(gw_routes, gw_nroutes, "POST", "/v1/me", &m),
               ROUTE_BAD_METHOD);
  cr_assert_str_eq(m.allow, "GET");
  cr_assert_eq(router_match(gw_routes, gw_nroutes, "GET", "/v2/query", &m),
               ROUTE_NOT_FOUND);
}
