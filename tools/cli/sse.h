/* sse.h - an incremental parser for Server-Sent Events (the WHATWG "event
 * stream" format), for streamed answers of POST /v1/query.
 *
 * Bytes are fed as they arrive, split anywhere (even between the \r and \n
 * of a line break); each complete event is handed to a callback. Follows
 * the standard's rules: lines end in \r\n, \n or \r; "field: value" with one
 * optional space after the colon; lines starting with ':' are comments;
 * several data lines join with \n; a blank line dispatches the event, unless
 * it has no data; the type defaults to "message"; a leading byte order mark
 * is skipped; an event cut off by the end of the stream is dropped.
 *
 * Every event is bounded (max_event_bytes): a server that never sends a
 * blank line cannot make the client grow without end. Not thread-safe. */
#ifndef QUARRY_CLI_SSE_H
#define QUARRY_CLI_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "quarry/buf.h"
#include "quarry/error.h"

/* One event; the strings are valid only during the callback. */
typedef struct sse_event {
  const char *type; /* "message" unless an event: field said otherwise */
  const char *data; /* the data lines joined with \n, NUL-terminated */
  size_t data_len;
  const char *id; /* the last event id seen so far ("" when none) */
} sse_event_t;

/* Called per event; a non-zero return stops the parse, and sse_feed
 * returns Q_ECANCELLED. */
typedef int (*sse_event_cb)(void *ud, const sse_event_t *ev);

typedef struct sse_parser {
  sse_event_cb cb;
  void *ud;
  q_buf_t line;  /* the current line, without its break */
  q_buf_t data;  /* data of the current event */
  q_buf_t type;  /* event type of the current event */
  char id[256];  /* last event id (kept across events, as the standard says) */
  bool cr;       /* the last byte was \r: a following \n belongs to it */
  bool started;  /* past the optional byte order mark */
  bool has_data; /* a data field was seen (even an empty one) */
  int bom_seen;  /* bytes of a leading BOM matched so far */
  long retry_ms; /* last retry: field, -1 when none */
} sse_parser_t;

/* Prepares p; events over max_event_bytes (data and line) fail the feed
 * with Q_ETOOBIG. */
void sse_parser_init(sse_parser_t *p, size_t max_event_bytes, sse_event_cb cb, void *ud);

/* Parses n more bytes. 0, Q_ETOOBIG (event too large), Q_ENOMEM, or
 * Q_ECANCELLED when the callback asked to stop; the parser must not be fed
 * again after an error. */
q_err_t sse_feed(sse_parser_t *p, const char *bytes, size_t n);

/* The stream ended: an event not terminated by a blank line is dropped.
 * Returns true when such a partial event (or line) was pending, which for
 * a query means the server hung up mid-answer. */
bool sse_finish(sse_parser_t *p);

/* Frees the buffers; p may be initialised again. */
void sse_parser_cleanup(sse_parser_t *p);

#endif
