/* test_config.c - the environment configuration table. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quarry/config.h"

/* Redirects fd (1 or 2) into a temporary file until capture_end. */
static int cap_saved = -1, cap_fd = -1;
static FILE *cap_file;

static void capture_start(int fd) {
  fflush(NULL);
  cap_fd = fd;
  cap_file = tmpfile();
  cr_assert_not_null(cap_file);
  cap_saved = dup(fd);
  dup2(fileno(cap_file), fd);
}

static const char *capture_end(void) {
  static char out[1 << 16];
  fflush(NULL);
  dup2(cap_saved, cap_fd);
  close(cap_saved);
  rewind(cap_file);
  size_t n = fread(out, 1, sizeof out - 1, cap_file);
  out[n] = '\0';
  fclose(cap_file);
  return out;
}

static q_common_cfg_t common;
static const char *name, *token, *dsn;
static int64_t count;
static int flag;

static q_cfg_entry_t table[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7009", "127.0.0.1:9109"),
    {"QUARRY_T_NAME", Q_CFG_STRING, "anon", 0, 0, NULL, "A name.", 0, &name},
    {"QUARRY_T_COUNT", Q_CFG_INT, "3", 1, 10, NULL, "How many.", 0, &count},
    {"QUARRY_T_FLAG", Q_CFG_BOOL, "false", 0, 0, NULL, "A switch.", 0, &flag},
    {"QUARRY_T_TOKEN", Q_CFG_STRING, "", 0, 0, NULL, "An API token.", 1, &token},
    {"QUARRY_T_DSN", Q_CFG_STRING, NULL, 0, 0, NULL, "Where | the data is.", 0, &dsn},
};
#define N (sizeof table / sizeof table[0])

static void clean_env(void) {
  for (size_t i = 0; i < N; i++)
    unsetenv(table[i].name);
  setenv("QUARRY_T_DSN", "postgresql://x", 1);
}

static int load(int argc, char **argv) {
  return q_cfg_load("quarry-test", "Tests the config table.", table, N, argc, argv);
}

static char *no_args[] = {"quarry-test", NULL};

Test(config, defaults_fill_every_destination, .init = clean_env) {
  cr_assert_eq(load(1, no_args), 0);
  cr_assert_str_eq(common.grpc_listen, "127.0.0.1:7009");
  cr_assert_str_eq(common.metrics_listen, "127.0.0.1:9109");
  cr_assert_str_eq(common.log_level, "info");
  cr_assert_eq(common.grpc_threads, 8);
  cr_assert_eq(common.max_msg_bytes, 67108864);
  cr_assert_eq(common.grace_ms, 10000);
  cr_assert_str_eq(name, "anon");
  cr_assert_eq(count, 3);
  cr_assert_eq(flag, 0);
  cr_assert_str_eq(token, "");
  cr_assert_str_eq(dsn, "postgresql://x");
}

Test(config, environment_overrides, .init = clean_env) {
  setenv("QUARRY_GRPC_LISTEN", "[::1]:7100", 1);
  setenv("QUARRY_METRICS_LISTEN", "", 1);
  setenv("QUARRY_LOG_LEVEL", "debug", 1);
  setenv("QUARRY_T_COUNT", "10", 1);
  setenv("QUARRY_T_FLAG", "Yes", 1);
  setenv("QUARRY_T_NAME", "bob", 1);
  cr_assert_eq(load(1, no_args), 0);
  cr_assert_str_eq(common.grpc_listen, "[::1]:7100");
  cr_assert_str_eq(common.metrics_listen, "");
  cr_assert_str_eq(common.log_level, "debug");
  cr_assert_eq(count, 10);
  cr_assert_eq(flag, 1);
  /* the value is a private copy, not the environment's storage */
  setenv("QUARRY_T_NAME", "changed", 1);
  cr_assert_str_eq(name, "bob");
}

Test(config, bad_int_is_rejected_with_message, .init = clean_env) {
  setenv("QUARRY_T_COUNT", "11", 1);
  capture_start(2);
  int rc = load(1, no_args);
  const char *err = capture_end();
  cr_assert_eq(rc, -1);
  cr_assert_str_eq(err, "quarry-test: QUARRY_T_COUNT: must be between 1 and 10 "
                        "(got '11')\n");
}

Test(config, non_numbers_are_rejected, .init = clean_env) {
  static const char *const bad[] = {"",   "abc", "5x",
                                    " 5", "0x5", "99999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    setenv("QUARRY_T_COUNT", bad[i], 1);
    capture_start(2);
    int rc = load(1, no_args);
    const char *err = capture_end();
    cr_assert_eq(rc, -1, "accepted '%s'", bad[i]);
    cr_assert_not_null(strstr(err, "QUARRY_T_COUNT"), "%s", err);
  }
}

Test(config, bounds_are_inclusive, .init = clean_env) {
  setenv("QUARRY_T_COUNT", "1", 1);
  cr_assert_eq(load(1, no_args), 0);
  cr_assert_eq(count, 1);
  setenv("QUARRY_T_COUNT", "0", 1);
  capture_start(2);
  cr_assert_eq(load(1, no_args), -1);
  capture_end();
  setenv("QUARRY_T_COUNT", "-3", 1);
  setenv("QUARRY_GRPC_THREADS", "1025", 1);
  capture_start(2);
  cr_assert_eq(load(1, no_args), -1);
  const char *err = capture_end();
  /* every problem is reported, not only the first */
  cr_assert_not_null(strstr(err, "QUARRY_GRPC_THREADS: must be between 1 and 1024"));
  cr_assert_not_null(strstr(err, "QUARRY_T_COUNT"));
}

Test(config, bad_bool_addr_and_log_level, .init = clean_env) {
  setenv("QUARRY_T_FLAG", "maybe", 1);
  setenv("QUARRY_GRPC_LISTEN", "localhost", 1);
  setenv("QUARRY_LOG_LEVEL", "loud", 1);
  capture_start(2);
  cr_assert_eq(load(1, no_args), -1);
  const char *err = capture_end();
  cr_assert_not_null(strstr(err, "QUARRY_T_FLAG:"), "%s", err);
  cr_assert_not_null(strstr(err, "(got 'maybe')"), "%s", err);
  cr_assert_not_null(strstr(err, "QUARRY_GRPC_LISTEN:"), "%s", err);
  cr_assert_not_null(strstr(err, "QUARRY_LOG_LEVEL: must be one of"), "%s", err);
}

Test(config, required_missing_is_an_error, .init = clean_env) {
  unsetenv("QUARRY_T_DSN");
  capture_start(2);
  int rc = load(1, no_args);
  const char *err = capture_end();
  cr_assert_eq(rc, -1);
  cr_assert_str_eq(err, "quarry-test: QUARRY_T_DSN: required but not set\n");
  setenv("QUARRY_T_DSN", "", 1);
  capture_start(2);
  cr_assert_eq(load(1, no_args), -1);
  cr_assert_not_null(strstr(capture_end(), "QUARRY_T_DSN: required"));
}

static int reject_secret(const char *v, char *err, size_t errlen) {
  if (strlen(v) >= 8)
    return 0;
  snprintf(err, errlen, "must be at least 8 characters");
  return 1;
}

Test(config, secret_values_never_printed, .init = clean_env) {
  static const char *tok;
  q_cfg_entry_t t[] = {{"QUARRY_T_SECRET", Q_CFG_STRING, "hunter2hunter2", 0, 0,
                        reject_secret, "A key.", 1, &tok}};
  setenv("QUARRY_T_SECRET", "hunter2", 1);
  capture_start(2);
  int rc = q_cfg_load("quarry-test", "s", t, 1, 1, no_args);
  const char *err = capture_end();
  cr_assert_eq(rc, -1);
  cr_assert_str_eq(err, "quarry-test: QUARRY_T_SECRET: must be at least 8 characters\n");

  char *help[] = {"quarry-test", "--help", NULL};
  capture_start(1);
  cr_assert_eq(q_cfg_load("quarry-test", "s", t, 1, 2, help), 1);
  const char *out = capture_end();
  cr_assert_null(strstr(out, "hunter2"), "%s", out);
  cr_assert_not_null(strstr(out, "QUARRY_T_SECRET"));

  char *md[] = {"quarry-test", "--help-markdown", NULL};
  capture_start(1);
  cr_assert_eq(q_cfg_load("quarry-test", "s", t, 1, 2, md), 1);
  out = capture_end();
  cr_assert_null(strstr(out, "hunter2"), "%s", out);
}

Test(config, help_prints_table_and_returns_1, .init = clean_env) {
  setenv("QUARRY_T_COUNT", "999", 1); /* --help must not validate */
  char *argv[] = {"quarry-test", "--help", NULL};
  capture_start(1);
  int rc = load(2, argv);
  const char *out = capture_end();
  cr_assert_eq(rc, 1);
  cr_assert_not_null(strstr(out, "Usage: quarry-test"), "%s", out);
  cr_assert_not_null(strstr(out, "Tests the config table."));
  cr_assert_not_null(strstr(out, "VARIABLE"));
  cr_assert_not_null(strstr(out, "QUARRY_GRPC_THREADS"));
  cr_assert_not_null(strstr(out, "int 1..1024"));
  cr_assert_not_null(strstr(out, "Worker threads serving gRPC calls."));
  cr_assert_not_null(strstr(out, "(required)"));
  /* one line per entry plus the column header */
  int rows = 0;
  for (const char *p = out; (p = strstr(p, "\n  QUARRY_")); p++)
    rows++;
  cr_assert_eq(rows, (int)N);
}

Test(config, help_markdown_prints_docs_table, .init = clean_env) {
  char *argv[] = {"quarry-test", "--help-markdown", NULL};
  capture_start(1);
  int rc = load(2, argv);
  const char *out = capture_end();
  cr_assert_eq(rc, 1);
  cr_assert_not_null(strstr(out, "| Variable | Type | Default | Description |\n"
                                 "|---|---|---|---|\n"),
                     "%s", out);
  cr_assert_not_null(strstr(out, "| `QUARRY_T_COUNT` | int 1..10 | `3` | How many. |\n"),
                     "%s", out);
  /* a pipe in help text must not break the table */
  cr_assert_not_null(strstr(out, "Where \\| the data is."), "%s", out);
}

Test(config, unknown_argument_is_an_error, .init = clean_env) {
  char *argv[] = {"quarry-test", "--verbose", NULL};
  capture_start(2);
  int rc = load(2, argv);
  const char *err = capture_end();
  cr_assert_eq(rc, -1);
  cr_assert_not_null(strstr(err, "--verbose"), "%s", err);
}

Test(config, log_level_validator) {
  char err[128] = "";
  cr_assert_eq(q_cfg_validate_log_level("warn", err, sizeof err), 0);
  cr_assert_neq(q_cfg_validate_log_level("trace", err, sizeof err), 0);
  cr_assert_neq(err[0], '\0');
}
