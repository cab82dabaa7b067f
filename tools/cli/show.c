/* show.c - `quarry docs show ID` and `quarry jobs show ID`: one GET, the
 * reply as labelled lines (or as is with --json). */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "commands.h"
#include "progress.h"

typedef struct field {
  const char *name;  /* in the reply */
  const char *label; /* shown */
} field_t;

static const field_t DOC_FIELDS[] = {
    {"id", "document"},
    {"title", "title"},
    {"filename", "filename"},
    {"content_type", "type"},
    {"external_id", "external id"},
    {"version", "version"},
    {"size_bytes", "size"},
    {"sha256", "sha256"},
    {"status", "status"},
    {"chunk_count", "chunks"},
    {"job_id", "job"},
    {"created_at", "created"},
    {"updated_at", "updated"},
    {NULL, NULL},
};

static const field_t JOB_FIELDS[] = {
    {"id", "job"},
    {"document_id", "document"},
    {"status", "status"},
    {"error", "reason"},
    {"chunk_count", "chunks"},
    {"attempts", "attempts"},
    {"created_at", "created"},
    {"updated_at", "updated"},
    {NULL, NULL},
};

static void print_value(FILE *f, const char *label, const char *name, json_t *v) {
  fprintf(f, "%-12s ", label);
  if (json_is_string(v))
    fputs(json_string_value(v), f);
  else if (strcmp(name, "size_bytes") == 0 && json_is_integer(v)) {
    char b[32];
    progress_bytes(b, sizeof b, (double)json_integer_value(v));
    fprintf(f, "%s (%lld bytes)", b, (long long)json_integer_value(v));
  } else if (json_is_null(v) || !v)
    fputs("-", f);
  else {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    fputs(s ? s : "?", f);
    free(s);
  }
  fputc('\n', f);
}

/* A document's versions, newest first, one line each. */
static void print_versions(FILE *f, json_t *versions) {
  fprintf(f, "%-12s\n", "versions");
  size_t i;
  json_t *v;
  json_array_foreach(versions, i, v) {
    char size[32];
    progress_bytes(size, sizeof size,
                   (double)json_integer_value(json_object_get(v, "size_bytes")));
    const char *status = json_string_value(json_object_get(v, "status"));
    const char *created = json_string_value(json_object_get(v, "created_at"));
    const char *file = json_string_value(json_object_get(v, "filename"));
    fprintf(f, "  v%-4lld %-8s %10s  %-24s  %s\n",
            (long long)json_integer_value(json_object_get(v, "version")),
            status && *status ? status : "-", size, created ? created : "-",
            file ? file : "");
  }
}

static bool known(const field_t *fields, const char *name) {
  for (const field_t *f = fields; f->name; f++)
    if (strcmp(f->name, name) == 0)
      return true;
  return false;
}

static int show(cmd_ctx_t *ctx, const char *collection, const char *what,
                const field_t *fields) {
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
  api_reply_init(&r);
  api_call(&api, "GET", path, NULL, NULL, true, &r);
  const char *slug;
  char msg[2048];
  int rc = api_outcome(&api, &r, &slug, msg, sizeof msg);
  if (rc == CLI_EXIT_OK && !json_is_object(r.json))
    rc = cli_fail(o, CLI_EXIT_SERVER, "bad_reply",
                  "the server's reply is not a JSON object");
  else if (rc == CLI_EXIT_FAILED && r.status == 404)
    rc = cli_fail(o, rc, slug, "no %s %s on this server for this key's tenant (%s)", what,
                  id, msg);
  else if (rc)
    rc = cli_fail(o, rc, slug, "%s", msg);
  else if (o->json)
    cli_print_json(o, r.json);
  else {
    for (const field_t *f = fields; f->name; f++) {
      json_t *v = json_object_get(r.json, f->name);
      if (strcmp(f->name, "error") == 0 && (!json_is_string(v) || !*json_string_value(v)))
        continue; /* no reason unless it failed */
      if (v)
        print_value(o->out, f->label, f->name, v);
    }
    const char *k;
    json_t *v;
    json_object_foreach(r.json, k, v) {
      if (strcmp(k, "versions") == 0 && json_is_array(v))
        print_versions(o->out, v);
      else if (!known(fields, k))
        print_value(o->out, k, k, v);
    }
  }
  api_reply_cleanup(&r);
  api_cleanup(&api);
  return rc;
}

int cmd_docs_show(cmd_ctx_t *ctx) {
  return show(ctx, "documents", "document", DOC_FIELDS);
}

int cmd_jobs_show(cmd_ctx_t *ctx) {
  return show(ctx, "jobs", "job", JOB_FIELDS);
}
