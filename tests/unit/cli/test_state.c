/* test_state.c - the ingest state file: round trip, one section per
 * server and key, merging concurrent runs, damaged files, locations. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"

static char dir[] = "/tmp/quarry-cli-state-XXXXXX";
static char path[512];

static void setup(void) {
  cr_assert_not_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/deep/er/ingest-state.json", dir);
}

static void teardown(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(state, .init = setup, .fini = teardown);

static state_t *open_target(const char *target) {
  state_t *st;
  char err[512], warn[1024];
  cr_assert_eq(state_open(path, target, &st, err, sizeof err, warn, sizeof warn), 0, "%s",
               err);
  cr_assert_str_eq(warn, "");
  return st;
}

static state_entry_t entry(const char *sha, const char *status) {
  state_entry_t e;
  memset(&e, 0, sizeof e);
  snprintf(e.sha256, sizeof e.sha256, "%s", sha);
  e.size = 1234;
  e.mtime_ns = 1700000000123456789LL;
  snprintf(e.document_id, sizeof e.document_id, "doc-%s", sha);
  snprintf(e.job_id, sizeof e.job_id, "job-%s", sha);
  e.version = 2;
  snprintf(e.status, sizeof e.status, "%s", status);
  return e;
}

Test(state, missing_file_is_empty_and_save_creates_it_privately) {
  state_t *st = open_target("http://s key k1");
  state_entry_t e;
  cr_assert_not(state_get(st, "my-docs/a.md", &e));
  cr_assert_not(state_dirty(st));
  state_entry_t a = entry("aaa", "queued");
  cr_assert_eq(state_put(st, "my-docs/a.md", &a), 0);
  cr_assert(state_dirty(st));
  char err[512];
  cr_assert_eq(state_save(st, err, sizeof err), 0, "%s", err);
  cr_assert_not(state_dirty(st));
  state_free(st);

  struct stat sb;
  cr_assert_eq(stat(path, &sb), 0);
  cr_assert_eq(sb.st_mode & 0777, 0600, "it names the user's documents");

  st = open_target("http://s key k1");
  cr_assert(state_get(st, "my-docs/a.md", &e));
  cr_assert_str_eq(e.sha256, "aaa");
  cr_assert_eq(e.size, 1234);
  cr_assert_eq(e.mtime_ns, 1700000000123456789LL);
  cr_assert_str_eq(e.document_id, "doc-aaa");
  cr_assert_str_eq(e.job_id, "job-aaa");
  cr_assert_eq(e.version, 2);
  cr_assert_str_eq(e.status, "queued");
  state_free(st);
}

Test(state, sections_are_per_server_and_key) {
  state_t *st = open_target("http://s key k1");
  state_entry_t a = entry("aaa", "done");
  state_put(st, "x.md", &a);
  char err[512];
  cr_assert_eq(state_save(st, err, sizeof err), 0);
  state_free(st);
  state_entry_t e;
  st = open_target("http://s key k2");
  cr_assert_not(state_get(st, "x.md", &e), "another key: another tenant, maybe");
  state_free(st);
  st = open_target("http://other key k1");
  cr_assert_not(state_get(st, "x.md", &e));
  state_free(st);

  char t[256];
  state_target("http://127.0.0.1:8080", "0123456789abcdef", t, sizeof t);
  cr_assert_str_eq(t, "http://127.0.0.1:8080 key 0123456789abcdef");
}

Test(state, saving_merges_with_a_concurrent_run) {
  state_t *one = open_target("T");
  state_t *two = open_target("T");
  state_entry_t a = entry("aaa", "done"), b = entry("bbb", "queued"),
                b2 = entry("bbb", "done");
  state_put(one, "a.md", &a);
  state_put(two, "b.md", &b);
  char err[512];
  cr_assert_eq(state_save(one, err, sizeof err), 0);
  cr_assert_eq(state_save(two, err, sizeof err), 0);
  state_put(one, "b.md", &b2); /* the newer word on b.md */
  cr_assert_eq(state_save(one, err, sizeof err), 0);
  state_free(one);
  state_free(two);

  state_t *st = open_target("T");
  state_entry_t e;
  cr_assert(state_get(st, "a.md", &e),
            "the first run's entry survived the second's save");
  cr_assert(state_get(st, "b.md", &e));
  cr_assert_str_eq(e.status, "done");
  state_free(st);
}

Test(state, a_damaged_file_is_set_aside) {
  char err[512], warn[1024];
  state_t *st = open_target("T");
  state_entry_t a = entry("aaa", "done");
  state_put(st, "a.md", &a);
  cr_assert_eq(state_save(st, err, sizeof err), 0);
  state_free(st);

  FILE *f = fopen(path, "w");
  fputs("{\"version\": 1, \"targets\": {", f); /* cut off */
  fclose(f);
  cr_assert_eq(state_open(path, "T", &st, err, sizeof err, warn, sizeof warn), 0);
  cr_assert(strstr(warn, "is damaged"), "%s", warn);
  state_entry_t e;
  cr_assert_not(state_get(st, "a.md", &e), "starting afresh");
  state_free(st);
  char aside[600];
  snprintf(aside, sizeof aside, "%s.damaged", path);
  cr_assert_eq(access(aside, F_OK), 0, "kept for a person to look at");

  f = fopen(path, "w");
  fputs("{\"version\": 99, \"targets\": {}}", f);
  fclose(f);
  cr_assert_eq(state_open(path, "T", &st, err, sizeof err, warn, sizeof warn), 0);
  cr_assert(strstr(warn, "not a version 1 quarry state file"), "%s", warn);
  state_free(st);
}

Test(state, an_unwritable_location_is_an_error_not_a_crash) {
  state_t *st;
  char err[512], warn[512];
  cr_assert_eq(state_open("/proc/no/such/state.json", "T", &st, err, sizeof err, warn,
                          sizeof warn),
               0);
  state_entry_t a = entry("aaa", "done");
  state_put(st, "a.md", &a);
  cr_assert_eq(state_save(st, err, sizeof err), Q_EIO);
  cr_assert(strstr(err, "/proc/no"), "%s", err);
  cr_assert(state_dirty(st), "kept for a later save");
  state_free(st);
}

Test(state, default_location_follows_xdg) {
  char p[512];
  setenv("XDG_STATE_HOME", "/xdg/state", 1);
  state_default_path(p, sizeof p);
  cr_assert_str_eq(p, "/xdg/state/quarry/ingest-state.json");
  setenv("XDG_STATE_HOME", "relative", 1); /* the spec says: ignore it */
  setenv("HOME", "/home/u", 1);
  state_default_path(p, sizeof p);
  cr_assert_str_eq(p, "/home/u/.local/state/quarry/ingest-state.json");
}
