/* sse.h - an incremental parser of Server-Sent Events (the WHATWG event
 * stream format), fed with whatever pieces the network delivers.
 *
 * Used by the streaming chat provider (gen_openai.c): curl's write callback
 * hands each received piece to sse_feed, which calls back once per complete
 * event, so a token goes on to the client as soon as its event's blank line
 * has arrived, however the bytes were split. Lines end in \n, \r\n or \r;
 * only "data" fields are kept (joined with \n when an event has several);
 * comments (":") and other fields are skipped. Memory is bounded: an event
 * or line longer than max_bytes fails the stream with Q_ETOOBIG. */
#ifndef QUARRY_LLM_SSE_H
#define QUARRY_LLM_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include "quarry/buf.h"
#include "quarry/error.h"

/* One complete event's data, NUL-terminated (len excludes the NUL). A
 * non-zero return stops the parser and is returned by sse_feed. */
typedef q_err_t (*sse_event_cb)(const char *data, size_t len, void *ud);

typedef struct sse_parser {
  q_buf_t line;    /* the line being received */
  q_buf_t data;    /* the event's data so far */
  bool has_data;   /* a data field was seen since the last dispatch */
  bool after_cr;   /* the last byte was \r: a following \n is the same break */
  q_err_t stopped; /* the callback's or the parser's error, sticky */
  size_t events;   /* events dispatched */
  sse_event_cb cb;
  void *ud;
} sse_parser_t;

/* max_bytes bounds one line and one event's data. */
void sse_init(sse_parser_t *p, size_t max_bytes, sse_event_cb cb, void *ud);

/* Parses buf[0..n), calling cb for each event it completes. 0, cb's error,
 * or Q_ETOOBIG; once it has failed it returns the same error at once. */
q_err_t sse_feed(sse_parser_t *p, const char *buf, size_t n);

/* true when the stream has an event begun but not ended (bytes after the
 * last blank line): a stream that stops there was cut short. */
bool sse_pending(const sse_parser_t *p);

void sse_cleanup(sse_parser_t *p);

#endif
