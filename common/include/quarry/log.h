/* log.h - structured logging: one JSON object per line on stderr.
 *
 * Each line has ts (RFC 3339, UTC, ms), level, service, trace_id (when the
 * calling thread has one, see trace.h), msg and the extra fields given by the
 * caller. Fields are described with a jansson json_pack() format, so
 *   q_log_info("document stored", "{s:s,s:i}", "doc_id", id, "bytes", n);
 * Never pass secrets (keys, passwords, tokens) as fields. Thread-safe: each
 * line is written with a single write(2). */
#ifndef QUARRY_LOG_H
#define QUARRY_LOG_H

#include <stdarg.h>
#include "quarry/error.h"

typedef enum { Q_LOG_DEBUG = 0, Q_LOG_INFO, Q_LOG_WARN, Q_LOG_ERROR } q_log_level_t;

/* Sets the service name and minimum level. Call once at start. */
void q_log_init(const char *service, q_log_level_t min_level);

/* Parses "debug" | "info" | "warn" | "error". 0 on success, Q_EINVAL else. */
q_err_t q_log_level_parse(const char *s, q_log_level_t *out);

/* Logs msg with optional fields (fields_fmt may be NULL). */
void q_logf(q_log_level_t level, const char *msg, const char *fields_fmt, ...);

#define q_log_debug(msg, ...) q_logf(Q_LOG_DEBUG, msg, __VA_ARGS__)
#define q_log_info(msg, ...) q_logf(Q_LOG_INFO, msg, __VA_ARGS__)
#define q_log_warn(msg, ...) q_logf(Q_LOG_WARN, msg, __VA_ARGS__)
#define q_log_error(msg, ...) q_logf(Q_LOG_ERROR, msg, __VA_ARGS__)

/* A library's printf-style log hook (libmicrohttpd's
 * MHD_OPTION_EXTERNAL_LOGGER has exactly this shape): logs a warning whose
 * msg is cls, a const char * naming the source, with the formatted text,
 * line break removed, in field "detail". */
void q_log_library_cb(void *cls, const char *fmt, va_list ap);

#endif
