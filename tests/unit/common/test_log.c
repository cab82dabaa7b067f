/* test_log.c - JSON log lines, captured from stderr through a pipe. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"

/* stderr is redirected into a pipe drained by a reader thread, so even
 * output larger than the pipe's capacity cannot block the writers. */
static int saved_fd = -1, pipe_rd = -1;
static char captured[1 << 18];
static size_t captured_len;
static pthread_t reader;

static void *drain_cb(void *arg) {
  ssize_t n;
  while (captured_len < sizeof captured - 1 &&
         (n = read(pipe_rd, captured + captured_len,
                   sizeof captured - 1 - captured_len)) > 0)
    captured_len += (size_t)n;
  captured[captured_len] = '\0';
  return NULL;
}

static void capture_start(void) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  saved_fd = dup(STDERR_FILENO);
  cr_assert_geq(saved_fd, 0);
  cr_assert_geq(dup2(p[1], STDERR_FILENO), 0);
  close(p[1]);
  pipe_rd = p[0];
  captured_len = 0;
  cr_assert_eq(pthread_create(&reader, NULL, drain_cb, NULL), 0);
}

/* Restores stderr (closing the pipe's last write end) and returns
 * everything written meanwhile. */
static const char *capture_end(void) {
  dup2(saved_fd, STDERR_FILENO);
  close(saved_fd);
  pthread_join(reader, NULL);
  close(pipe_rd);
  return captured;
}

static json_t *parse_line(const char *text) {
  size_t len = strlen(text);
  cr_assert_gt(len, 0, "nothing logged");
  cr_assert_eq(text[len - 1], '\n', "line not terminated: %s", text);
  cr_assert_null(memchr(text, '\n', len - 1), "more than one line: %s", text);
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  cr_assert_not_null(j, "not JSON (%s): %s", err.text, text);
  cr_assert(json_is_object(j));
  return j;
}

Test(log, line_has_fixed_keys_and_fields) {
  q_log_init("tester", Q_LOG_DEBUG);
  q_trace_clear();
  capture_start();
  q_log_info("document stored", "{s:s,s:i,s:b}", "doc_id", "d-1", "bytes", 42, "new", 1);
  json_t *j = parse_line(capture_end());
  cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "info");
  cr_assert_str_eq(json_string_value(json_object_get(j, "service")), "tester");
  cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "document stored");
  cr_assert_str_eq(json_string_value(json_object_get(j, "doc_id")), "d-1");
  cr_assert_eq(json_integer_value(json_object_get(j, "bytes")), 42);
  cr_assert(json_is_true(json_object_get(j, "new")));
  cr_assert_null(json_object_get(j, "trace_id"));
  /* ts: RFC 3339 UTC with milliseconds, 2024-05-01T12:34:56.789Z */
  const char *ts = json_string_value(json_object_get(j, "ts"));
  cr_assert_not_null(ts);
  cr_assert_eq(strlen(ts), 24, "%s", ts);
  cr_assert_eq(ts[4], '-');
  cr_assert_eq(ts[10], 'T');
  cr_assert_eq(ts[19], '.');
  cr_assert_eq(ts[23], 'Z');
  json_decref(j);
}

static void library_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  q_log_library_cb("libsomething", fmt, ap);
  va_end(ap);
}

Test(log, library_messages_become_warnings_without_the_line_break) {
  q_log_init("tester", Q_LOG_INFO);
  q_trace_clear();
  capture_start();
  library_log("Failed to bind to port %d: %s\n", 8080, "Address in use");
  json_t *j = parse_line(capture_end());
  cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "warn");
  cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "libsomething");
  cr_assert_str_eq(json_string_value(json_object_get(j, "detail")),
                   "Failed to bind to port 8080: Address in use");
  json_decref(j);
}

Test(log, trace_id_comes_from_thread_context) {
  q_log_init("tester", Q_LOG_INFO);
  q_trace_set("4bf92f3577b34da6a3ce929d0e0e4736", 0);
  capture_start();
  q_log_warn("slow", NULL);
  json_t *j = parse_line(capture_end());
  cr_assert_str_eq(json_string_value(json_object_get(j, "trace_id")),
                   "4bf92f3577b34da6a3ce929d0e0e4736");
  cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "warn");
  json_decref(j);
  q_trace_clear();
}

Test(log, below_min_level_is_dropped) {
  q_log_init("tester", Q_LOG_WARN);
  capture_start();
  q_log_debug("hidden", NULL);
  q_log_info("hidden too", NULL);
  q_log_error("shown", NULL);
  json_t *j = parse_line(capture_end());
  cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "shown");
  cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "error");
  json_decref(j);
}

Test(log, fields_cannot_override_fixed_keys) {
  q_log_init("tester", Q_LOG_DEBUG);
  capture_start();
  q_log_info("real", "{s:s,s:s}", "msg", "fake", "level", "error");
  json_t *j = parse_line(capture_end());
  cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "real");
  cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "info");
  json_decref(j);
}

Test(log, bad_fields_still_log_the_line) {
  q_log_init("tester", Q_LOG_DEBUG);
  capture_start();
  q_log_error("boom", "{s:s}", "detail", (const char *)NULL);
  json_t *j = parse_line(capture_end());
  cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "boom");
  cr_assert_not_null(json_object_get(j, "log_error"));
  json_decref(j);
}

Test(log, special_characters_are_escaped) {
  q_log_init("tester", Q_LOG_DEBUG);
  capture_start();
  q_log_info("line1\nline2 \"quoted\"", "{s:s}", "raw", "tab\there");
  json_t *j = parse_line(capture_end());
  cr_assert_str_eq(json_string_value(json_object_get(j, "msg")),
                   "line1\nline2 \"quoted\"");
  cr_assert_str_eq(json_string_value(json_object_get(j, "raw")), "tab\there");
  json_decref(j);
}

Test(log, invalid_utf8_message_is_still_logged) {
  q_log_init("tester", Q_LOG_DEBUG);
  capture_start();
  q_log_info("bad \xff\xfe bytes", NULL);
  json_t *j = parse_line(capture_end());
  cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "bad ?? bytes");
  json_decref(j);
}

static void *log_many(void *arg) {
  for (int i = 0; i < 200; i++)
    q_log_info("concurrent", "{s:i,s:s}", "i", i, "pad",
               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  return NULL;
}

Test(log, concurrent_lines_do_not_interleave) {
  q_log_init("tester", Q_LOG_DEBUG);
  capture_start();
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, log_many, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  const char *out = capture_end();
  int lines = 0;
  char *copy = strdup(out);
  char *save = NULL;
  for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    json_t *j = json_loads(l, 0, NULL);
    cr_assert_not_null(j, "garbled line: %s", l);
    json_decref(j);
    lines++;
  }
  free(copy);
  cr_assert_eq(lines, 800);
}

Test(log, level_parse) {
  q_log_level_t l;
  cr_assert_eq(q_log_level_parse("debug", &l), 0);
  cr_assert_eq(l, Q_LOG_DEBUG);
  cr_assert_eq(q_log_level_parse("WARN", &l), 0);
  cr_assert_eq(l, Q_LOG_WARN);
  cr_assert_eq(q_log_level_parse("error", &l), 0);
  cr_assert_eq(l, Q_LOG_ERROR);
  cr_assert_eq(q_log_level_parse("verbose", &l), Q_EINVAL);
  cr_assert_eq(q_log_level_parse("", &l), Q_EINVAL);
  cr_assert_eq(q_log_level_parse(NULL, &l), Q_EINVAL);
}
