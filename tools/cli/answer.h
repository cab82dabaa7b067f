/* answer.h - an answer of POST /v1/query, assembled from a streamed reply
 * (Server-Sent Events) or taken from a JSON one, and printed for people.
 *
 * Streamed replies are events named retrieval, token, citation, done and
 * error, each with JSON data. The exact payloads are the gateway's to
 * define; this reads them leniently so small differences do not break the
 * client:
 *   token     a JSON string, or an object whose "text" (or "token", "delta",
 *             "content") is the next piece of the answer;
 *   citation  a Citation object (n, document_id, title, chunk_id, snippet,
 *             score, page), or {"citation": {...}};
 *   done      an object with whatever the JSON reply has besides the answer
 *             (query_id, timings_ms, degraded, cache_hit; citations and
 *             answer too, if the server repeats them);
 *   error     {"error": {"code", "message"}} or {"code", "message"};
 *   retrieval and unknown events are ignored. */
#ifndef QUARRY_CLI_ANSWER_H
#define QUARRY_CLI_ANSWER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "quarry/buf.h"
#include "quarry/error.h"
#include "sse.h"

/* Called with each piece of a streamed answer, as it arrives. */
typedef void (*answer_token_cb)(void *ud, const char *text, size_t len);

typedef struct answer {
  q_buf_t text;
  json_t *citations; /* array */
  json_t *done;      /* the done event's data or the JSON reply; NULL before */
  bool got_done;
  bool got_error;
  char error_code[64];
  char error_message[1024];
  int ignored_events; /* events whose data was not the JSON expected */
  answer_token_cb on_token;
  void *ud;
} answer_t;

void answer_init(answer_t *a, answer_token_cb on_token, void *ud);
void answer_cleanup(answer_t *a);

/* sse_event_cb for the streamed reply (ud is the answer_t). Never stops
 * the parse. */
int answer_on_event(void *ud, const sse_event_t *ev);

/* Takes a complete JSON reply (QueryResponse). Q_EINVAL when it is not an
 * object with a string "answer". */
q_err_t answer_from_json(answer_t *a, const json_t *reply);

/* The answer as one QueryResponse-shaped object (answer, citations and the
 * rest of done); new reference, NULL when out of memory. */
json_t *answer_to_json(const answer_t *a);

/* Prints the numbered sources: "[n] title (page p)" and the snippet on
 * the next line, indented, white space collapsed. Nothing when none. */
void answer_print_sources(FILE *f, const json_t *citations);

/* Prints a note per degraded stage of done ("embed", ...) to f. */
void answer_print_degraded(FILE *f, const json_t *done);

#endif
