/* manage.c - the list and management commands: `quarry docs list`,
 * `docs rm`, `jobs` (`jobs list`), `keys create`, `keys list`,
 * `keys revoke`, on GET /v1/documents, DELETE /v1/documents/{id},
 * GET /v1/jobs and /v1/keys.
 *
 * Lists print one page (--limit, the server's default 50) as a table, and
 * the next page's cursor on stderr, or every page with --all. With --json
 * stdout carries one document: the server's page, or with --all
 * {"<items>": [every item], "next_cursor": null}. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "commands.h"
#include "quarry/buf.h"

/* Most pages --all follows: 200 pages of 500 is 100000 items. */
#define MAX_PAGES 200

/* One request; its exit code, with the reply in r for the caller (which
 * cleans it up). what names the object for a 404. */
static int request(cmd_ctx_t *ctx, api_t *api, const char *method, const char *path,
                   const json_t *body, bool idempotent, const char *what, const char *id,
                   api_reply_t *r) {
  api_reply_init(r);
  api_call(api, method, path, body, NULL, idempotent, r);
  const char *slug;
  char msg[2048];
  int rc = api_outcome(api, r, &slug, msg, sizeof msg);
  if (rc == CLI_EXIT_FAILED && r->status == 404 && id)
    return cli_fail(ctx->out, rc, slug,
                    "no %s %s on this server for this key's tenant (%s)", what, id, msg);
  if (rc)
    return cli_fail(ctx->out, rc, slug, "%s", msg);
  return CLI_EXIT_OK;
}

/* Appends "&name=<escaped value>" to b when the option is set. */
static q_err_t add_param(q_buf_t *b, const args_t *args, const char *opt,
                         const char *name) {
  const char *v = args_get(args, opt);
  if (!v)
    return Q_OK;
  char *esc = api_escape(v);
  if (!esc)
    return Q_ENOMEM;
  q_err_t rc = q_buf_printf(b, "&%s=%s", name, esc);
  curl_free(esc);
  return rc;
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

/* A list's columns: the field, its heading and width (0: the rest). */
typedef struct column {
  const char *field, *heading;
  int width;
} column_t;

static void print_row(FILE *f, const column_t *cols, json_t *item) {
  for (const column_t *c = cols; c->field; c++) {
    json_t *v = item ? json_object_get(item, c->field) : NULL;
    char cell[256];
    if (!item)
      snprintf(cell, sizeof cell, "%s", c->heading);
    else if (json_is_string(v))
      snprintf(cell, sizeof cell, "%s", json_string_value(v));
    else if (json_is_integer(v))
      snprintf(cell, sizeof cell, "%lld", (long long)json_integer_value(v));
    else if (json_is_true(v))
      snprintf(cell, sizeof cell, "yes");
    else if (json_is_false(v))
      snprintf(cell, sizeof cell, "no");
    else if (json_is_array(v)) {
      size_t used = 0;
      cell[0] = '\0';
      for (size_t i = 0; i < json_array_size(v) && used < sizeof cell; i++)
        used += (size_t)snprintf(cell + used, sizeof cell - used, "%s%s", i ? "," : "",
                                 json_string_value(json_array_get(v, i))
                                     ? json_string_value(json_array_get(v, i))
                                     : "?");
    } else
      snprintf(cell, sizeof cell, "-");
    if (c->width)
      fprintf(f, "%-*.*s  ", c->width, c->width, cell);
    else
      fprintf(f, "%s", cell);
  }
  fputc('\n', f);
}

/* GET base + filters, one page or (--all) every page. */
static int list(cmd_ctx_t *ctx, const char *base, const char *items_key,
                const char *const *filters, const column_t *cols, const char *empty) {
  const cli_out_t *o = ctx->out;
  long limit;
  char msg[256];
  if (args_int(ctx->args, "limit", 0, 1, 500, &limit, msg, sizeof msg))
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "%s", msg);
  bool all = args_has(ctx->args, "all");
  q_buf_t q;
  q_buf_init(&q, 8192);
  /* Every parameter is appended as "&name=value"; the first "&" becomes
   * the "?" when the path is built. */
  q_err_t qrc = limit ? q_buf_printf(&q, "&limit=%ld", limit) : Q_OK;
  for (size_t i = 0; !qrc && filters[i]; i += 2)
    qrc = add_param(&q, ctx->args, filters[i], filters[i + 1]);
  if (qrc) {
    q_buf_cleanup(&q);
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "options too long");
  }
  api_t api;
  if (api_init(&api, ctx->cfg, ctx->timeout_ms)) {
    q_buf_cleanup(&q);
    return cli_fail(o, CLI_EXIT_FAILED, "internal", "cannot start libcurl");
  }
  json_t *every = json_array();
  char *cursor = NULL;
  int rc = CLI_EXIT_OK, pages = 0, shown = 0;
  if (!o->json)
    print_row(o->out, cols, NULL);
  do {
    char *esc = cursor ? api_escape(cursor) : NULL;
    size_t len = q.len + strlen(base) + (esc ? strlen(esc) : 0) + 16;
    char *path = malloc(len);
    if (!path || (cursor && !esc)) {
      free(path);
      curl_free(esc);
      rc = cli_fail(o, CLI_EXIT_FAILED, "internal", "out of memory");
      break;
    }
    int n =
        snprintf(path, len, "%s%s%s", base, q.len ? "?" : "", q.len ? q.data + 1 : "");
    if (esc)
      snprintf(path + n, len - (size_t)n, "%scursor=%s", q.len ? "&" : "?", esc);
    curl_free(esc);
    api_reply_t r;
    rc = request(ctx, &api, "GET", path, NULL, true, NULL, NULL, &r);
    free(path);
    json_t *arr = json_object_get(r.json, items_key);
    json_t *next = json_object_get(r.json, "next_cursor");
    if (!rc && (!json_is_array(arr) || !(json_is_null(next) || json_is_string(next))))
      rc = cli_fail(o, CLI_EXIT_SERVER, "bad_reply",
                    "the server's reply holds no \"%s\" list", items_key);
    if (rc) {
      api_reply_cleanup(&r);
      break;
    }
    free(cursor);
    cursor = json_is_string(next) && *json_string_value(next)
                 ? strdup(json_string_value(next))
                 : NULL;
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it) {
      if (o->json)
        json_array_append(every, it);
      else
        print_row(o->out, cols, it);
      shown++;
    }
    if (o->json && !all)
      cli_print_json(o, r.json);
    api_reply_cleanup(&r);
    pages++;
  } while (all && cursor && pages < MAX_PAGES && !cli_interrupted());
  if (!rc && all && cursor)
    rc = cli_fail(o, cli_interrupted() ? CLI_EXIT_INTERRUPTED : CLI_EXIT_FAILED,
                  "too_many_pages",
                  "stopped after %d pages; narrow the list with filters", pages);
  else if (!rc && o->json && all) {
    json_t *doc = json_pack("{s:O,s:n}", items_key, every, "next_cursor");
    cli_print_json(o, doc);
    json_decref(doc);
  } else if (!rc && !o->json) {
    if (!shown)
      fprintf(o->out, "(%s)\n", empty);
    if (cursor)
      fprintf(o->err, "more: --cursor %s (or --all)\n", cursor);
  }
  json_decref(every);
  free(cursor);
  q_buf_cleanup(&q);
  api_cleanup(&api);
  return rc;
}

static const column_t DOC_COLS[] = {{"id", "ID", 36},
                                    {"status", "STATUS", 8},
                                    {"version", "VER", 4},
                                    {"chunk_count", "CHUNKS", 6},
                                    {"created_at", "CREATED", 24},
                                    {"title", "TITLE", 0},
                                    {NULL, NULL, 0}};
static const column_t JOB_COLS[] = {{"id", "ID", 36},
                                    {"document_id", "DOCUMENT", 36},
                                    {"status", "STATUS", 8},
                                    {"chunk_count", "CHUNKS", 6},
                                    {"created_at", "CREATED", 24},
                                    {"error", "REASON", 0},
                                    {NULL, NULL, 0}};
static const column_t KEY_COLS[] = {
    {"id", "ID", 16},          {"roles", "ROLES", 20},
    {"revoked", "REVOKED", 7}, {"created_at", "CREATED", 24},
    {"name", "NAME", 0},       {NULL, NULL, 0}};

int cmd_docs_list(cmd_ctx_t *ctx) {
  static const char *const filters[] = {"cursor",
                                        "cursor",
                                        "query",
                                        "q",
                                        "type",
                                        "content_type",
                                        "state",
                                        "state",
                                        "created-after",
                                        "created_after",
                                        "created-before",
                                        "created_before",
                                        NULL};
  return list(ctx, "/v1/documents", "documents", filters, DOC_COLS, "no documents");
}

int cmd_jobs_list(cmd_ctx_t *ctx) {
  static const char *const filters[] = {"cursor",   "cursor",      "state", "state",
                                        "document", "document_id", NULL};
  return list(ctx, "/v1/jobs", "jobs", filters, JOB_COLS, "no jobs");
}

int cmd_keys_list(cmd_ctx_t *ctx) {
  static const char *const filters[] = {"cursor", "cursor", NULL};
  return list(ctx, "/v1/keys", "keys", filters, KEY_COLS, "no keys");
}

/* DELETE /v1/<collection>/<id> → 204. */
static int remove_one(cmd_ctx_t *ctx, const char *collection, const char *what,
                      const char *done_word) {
  const cli_out_t *o = ctx->out;
  const char *id = ctx->args->operands[0];
  if (!*id)
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "the %s id is empty", what);
  api_t api;
  if (api_init(&api, ctx->cfg, ctx->timeout_ms))
    return cli_fail(o, CLI_EXIT_FAILED, "internal", "cannot start libcurl");
  char *esc = api_escape(id);
  char path[512];
  snprintf(path, sizeof path, "/v1/%s/%.400s", collection, esc ? esc : "");
  curl_free(esc);
  api_reply_t r;
  /* Not retried on 5xx: a retry after a lost reply would say 404. */
  int rc = request(ctx, &api, "DELETE", path, NULL, false, what, id, &r);
  if (!rc) {
    if (o->json) {
      json_t *doc = json_pack("{s:o,s:b}", "id", cli_json_text(id), done_word, 1);
      cli_print_json(o, doc);
      json_decref(doc);
    } else {
      fprintf(o->out, "%s %s %s\n", done_word, what, id);
    }
  }
  api_reply_cleanup(&r);
  api_cleanup(&api);
  return rc;
}

int cmd_docs_rm(cmd_ctx_t *ctx) {
  return remove_one(ctx, "documents", "document", "deleted");
}

int cmd_keys_revoke(cmd_ctx_t *ctx) {
  return remove_one(ctx, "keys", "key", "revoked");
}

int cmd_keys_create(cmd_ctx_t *ctx) {
  const cli_out_t *o = ctx->out;
  const char *const *roles = args_list(ctx->args, "role");
  json_t *arr = json_array();
  for (size_t i = 0; roles && roles[i]; i++)
    json_array_append_new(arr, cli_json_text(roles[i]));
  if (!json_array_size(arr))
    json_array_append_new(arr, json_string("reader"));
  json_t *body =
      json_pack("{s:o,s:o}", "name", cli_json_text(ctx->args->operands[0]), "roles", arr);
  api_t api;
  if (!body || api_init(&api, ctx->cfg, ctx->timeout_ms)) {
    json_decref(body);
    return cli_fail(o, CLI_EXIT_FAILED, "internal", "cannot start libcurl");
  }
  api_reply_t r;
  /* Not retried: a retry after a lost reply would make a second key. */
  int rc = request(ctx, &api, "POST", "/v1/keys", body, false, NULL, NULL, &r);
  if (!rc && !json_is_string(json_object_get(r.json, "api_key")))
    rc = cli_fail(o, CLI_EXIT_SERVER, "bad_reply", "the server's reply holds no key");
  if (!rc) {
    if (o->json)
      cli_print_json(o, r.json);
    else {
      fprintf(o->out, "key id   %s\nname     %s\nroles    ", str(r.json, "id"),
              str(r.json, "name"));
      json_t *granted = json_object_get(r.json, "roles");
      for (size_t i = 0; i < json_array_size(granted); i++)
        fprintf(o->out, "%s%s", i ? "," : "",
                json_string_value(json_array_get(granted, i))
                    ? json_string_value(json_array_get(granted, i))
                    : "?");
      fprintf(o->out, "\napi key  %s\n(shown this once: store it now)\n",
              str(r.json, "api_key"));
    }
  }
  api_reply_cleanup(&r);
  api_cleanup(&api);
  json_decref(body);
  return rc;
}
