/* log.c - structured logging: one JSON object per line on stderr.
 *
 * A line is built with jansson (fixed keys first, then the caller's fields;
 * a caller field never overrides a fixed key) and written with one write(2)
 * so lines from concurrent threads never interleave. If the caller's
 * json_pack format fails (bad format, NULL string, invalid UTF-8) the line is
 * still written, with the reason in "log_error". */
#include "quarry/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "quarry/error.h"
#include "quarry/trace.h"

static char log_service[64] = "quarry";
static atomic_int log_min_level = Q_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void q_log_init(const char *service, q_log_level_t min_level) {
  snprintf(log_service, sizeof log_service, "%s", service ? service : "");
  atomic_store(&log_min_level, (int)min_level);
}

q_err_t q_log_level_parse(const char *s, q_log_level_t *out) {
  if (!s)
    return Q_EINVAL;
  for (int i = Q_LOG_DEBUG; i <= Q_LOG_ERROR; i++) {
    if (strcasecmp(s, level_names[i]) == 0) {
      *out = (q_log_level_t)i;
      return 0;
    }
  }
  return Q_EINVAL;
}

/* RFC 3339 UTC with milliseconds: 2024-05-01T12:34:56.789Z */
static void format_ts(char *out, size_t outlen) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, outlen, "%.20s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

/* A JSON string for s; bytes that are not valid UTF-8 become '?' so a
 * message carrying hostile input is still logged. */
static json_t *safe_string(const char *s) {
  json_t *j = json_string(s);
  if (j)
    return j;
  size_t n = strlen(s);
  char *copy = malloc(n + 1);
  if (!copy)
    return json_string("?");
  for (size_t i = 0; i <= n; i++)
    copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
  j = json_string(copy);
  free(copy);
  return j;
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

void q_logf(q_log_level_t level, const char *msg, const char *fields_fmt, ...) {
  if (level < Q_LOG_DEBUG || level > Q_LOG_ERROR)
    level = Q_LOG_ERROR;
  if ((int)level < atomic_load(&log_min_level))
    return;

  char ts[48];
  format_ts(ts, sizeof ts);
  json_t *line = json_object();
  if (!line)
    return;
  json_object_set_new(line, "ts", json_string(ts));
  json_object_set_new(line, "level", json_string(level_names[level]));
  json_object_set_new(line, "service", safe_string(log_service));
  const char *tid = q_trace_id();
  if (tid[0])
    json_object_set_new(line, "trace_id", safe_string(tid));
  json_object_set_new(line, "msg", safe_string(msg ? msg : ""));

  if (fields_fmt) {
    json_error_t jerr;
    va_list ap;
    va_start(ap, fields_fmt);
    json_t *fields = json_vpack_ex(&jerr, 0, fields_fmt, ap);
    va_end(ap);
    if (!fields) {
      json_object_set_new(line, "log_error", safe_string(jerr.text));
    } else if (!json_is_object(fields)) {
      json_object_set_new(line, "log_error",
                          json_string("fields format must build an object"));
    } else {
      json_object_update_missing(line, fields);
    }
    json_decref(fields);
  }

  char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
  json_decref(line);
  if (!text)
    return;
  size_t n = strlen(text);
  char *out = realloc(text, n + 2);
  if (!out) {
    free(text);
    return;
  }
  out[n] = '\n';
  out[n + 1] = '\0';
  write_all(out, n + 1);
  free(out);
}

void q_log_library_cb(void *cls, const char *fmt, va_list ap) {
  char detail[512];
  vsnprintf(detail, sizeof detail, fmt, ap);
  size_t n = strlen(detail);
  while (n && (detail[n - 1] == '\n' || detail[n - 1] == '\r'))
    detail[--n] = '\0';
  q_logf(Q_LOG_WARN, cls ? (const char *)cls : "library", "{s:s}", "detail", detail);
}
