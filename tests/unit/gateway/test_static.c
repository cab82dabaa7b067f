/* test_static.c - the web app's file serving (static.c) over real HTTP
 * against a folder the test makes: what the integration tests cannot set
 * up in the repository's web/ (symbolic links out of the folder, folders
 * and files of other types under servable names). */
#include "gateway.h"
#include "handlers.h"
#include "ratelimit.h"
#include "server.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quarry/error.h"
#include "quarry/log.h"

static char dir[64], outside[96];
static gw_cfg_t cfg;
static gw_server_t *gw;
static char base[64];

static void put(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

static void setup(void) {
  q_log_init("gateway-test", Q_LOG_ERROR);
  snprintf(dir, sizeof dir, "/tmp/quarry-static-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  char p[160];
  snprintf(p, sizeof p, "%s/index.html", dir);
  put(p, "<!doctype html><title>t</title>");
  snprintf(p, sizeof p, "%s/app.js", dir);
  put(p, "export {};\n");
  snprintf(p, sizeof p, "%s/notes.md", dir); /* present, but not a served type */
  put(p, "# notes\n");
  snprintf(p, sizeof p, "%s/folder.js", dir); /* a folder under a servable name */
  cr_assert_eq(mkdir(p, 0700), 0);
  snprintf(outside, sizeof outside, "%s-secret.txt", dir);
  put(outside, "TOP-SECRET-CONTENT\n");
  snprintf(p, sizeof p, "%s/link.txt", dir); /* points out of the folder */
  cr_assert_eq(symlink(outside, p), 0);

  cr_assert_eq(static_init(dir), 0);
  cfg = (gw_cfg_t){
      .http_listen = "127.0.0.1:0",
      .http_threads = 2,
      .auth_addr = "127.0.0.1:1",
      .ingestion_addr = "127.0.0.1:1",
      .retriever_addr = "127.0.0.1:1",
      .reranker_addr = "127.0.0.1:1",
      .llm_addr = "127.0.0.1:1",
      .feedback_addr = "127.0.0.1:1",
      .redis_addr = "127.0.0.1:1",
      .max_upload_bytes = 1 << 20,
      .max_json_bytes = 8192,
      .query_timeout_ms = 1500,
      .upload_timeout_ms = 10000,
      .drain_bytes = 65536,
  };
  cr_assert_eq(ratelimit_init(cfg.redis_addr, 0), 0);
  gw = gw_server_start(&cfg);
  cr_assert_not_null(gw);
  snprintf(base, sizeof base, "http://127.0.0.1:%d", gw_server_port(gw));
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void) {
  gw_server_stop(gw, 1000);
  ratelimit_shutdown();
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, outside);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(static_files, .init = setup, .fini = teardown, .timeout = 30);

static size_t keep_cb(char *p, size_t sz, size_t n, void *ud) {
  char *out = ud;
  size_t have = strlen(out), add = sz * n;
  if (have + add < 256) {
    memcpy(out + have, p, add);
    out[have + add] = '\0';
  }
  return sz * n;
}

/* Status of GET path; the body's first bytes in body (256). */
static long get(const char *path, char *body) {
  body[0] = '\0';
  CURL *c = curl_easy_init();
  char url[256];
  snprintf(url, sizeof url, "%s%s", base, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* send "..": no client cleanup */
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  cr_assert_eq(curl_easy_perform(c), CURLE_OK, "%s", path);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  return status;
}

Test(static_files, serves_the_folders_files) {
  char body[256];
  cr_assert_eq(get("/", body), 200);
  cr_assert(strstr(body, "<title>t</title>"));
  cr_assert_eq(get("/app/app.js", body), 200);
  cr_assert_str_eq(body, "export {};\n");
}

Test(static_files, never_follows_a_link_out_of_the_folder) {
  char body[256];
  cr_assert_eq(get("/app/link.txt", body), 404);
  cr_assert_null(strstr(body, "TOP-SECRET"));
}

Test(static_files, serves_only_regular_files_of_known_types) {
  char body[256];
  cr_assert_eq(get("/app/folder.js", body), 404);
  cr_assert_eq(get("/app/notes.md", body), 404);
  cr_assert_eq(get("/app/index.html", body), 200);
}

Test(static_files, names_cannot_leave_the_folder) {
  char body[256];
  const char *paths[] = {"/app/../secret.txt", "/app/..%2f..%2ftmp%2fx.txt",
                         "/app/%2e%2e",        "/app/.hidden.txt",
                         "/app/a.b.js",        "/app/app.js%00.txt",
                         "/app/..%2f"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    long st = get(paths[i], body);
    cr_assert(st == 404 || st == 400, "%s: %ld", paths[i], st);
    cr_assert_null(strstr(body, "TOP-SECRET"), "%s", paths[i]);
  }
}

Test(static_files, an_explicit_folder_that_cannot_be_opened_is_an_error) {
  cr_assert_eq(static_init("/nonexistent/quarry-web"), Q_EINVAL);
}
