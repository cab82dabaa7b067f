/* sink.h - where the query pipeline reports: a table of functions, one
 * implementation per way of answering (provider.h's pattern).
 *
 * The pipeline (pipeline.h) knows nothing of HTTP. It calls a sink, in this
 * order and from one thread at a time:
 *
 *   retrieval   once, with the query's id and the passages the answer is
 *               generated from, numbered as the answer cites them ([1] is
 *               passages[0]);
 *   token       zero or more times, the answer as it is generated. The
 *               pieces are already checked: invalid [n] markers are removed
 *               and a UTF-8 character is never split, so the pieces add up
 *               to summary->answer exactly;
 *   citation    once per cited passage, by ascending n, with the span of
 *               the passage the answer relies on;
 *   done        once, with the summary, or
 *   error       once, instead of done, at any point (also before retrieval).
 *
 * Exactly one of done and error ends every run; nothing follows it. A sink
 * copies what it keeps: no pointer it is given survives the call. The three
 * progress calls return 0 to go on, or an error (the consumer went away,
 * its buffer is full) to make the pipeline stop at once; the pipeline then
 * ends with error(Q_ECANCELLED). A sink must not block for long: it runs on
 * the pipeline's thread (a gRPC client loop thread, which serves many
 * queries).
 *
 * Three sinks: JSON (sink_json.c) builds today's POST /v1/query reply; SSE
 * (sink_sse.c) turns each call into a Server-Sent Event; OpenAI
 * (sink_openai.c) answers POST /v1/chat/completions, delivering through a
 * JSON or SSE sink it owns (its "carrier"). None touches
 * the connection: each tells its owner through a wake callback that there
 * is something to send (query.c resumes the suspended connection). */
#ifndef QUARRY_GW_SINK_H
#define QUARRY_GW_SINK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "quarry/error.h"
#include "quarry/v1/retriever.pb-c.h"

/* One passage the answer cites. */
typedef struct sink_citation {
  unsigned n; /* its marker number */
  const Quarry__V1__Passage *passage;
  /* The snippet: bytes [snippet_start, snippet_end) of passage->text, the
   * sentences the answer relies on (citations_locate). Both 0: the start
   * of the passage, as sink_passage_json gives it. */
  size_t snippet_start, snippet_end;
} sink_citation_t;

/* Milliseconds per stage, as the reply's timings_ms gives them. */
typedef struct sink_timings {
  double auth, embed, retrieve, rerank, generate, total;
} sink_timings_t;

/* What a finished query produced (the fields of the JSON reply). */
typedef struct sink_summary {
  const char *query_id;
  const char *answer; /* checked answer; may hold invalid UTF-8 (repaired
                         when serialised) */
  size_t answer_len;
  const sink_citation_t *citations; /* by ascending n */
  size_t ncitations;
  sink_timings_t timings_ms;
  const char *const *degraded; /* stage names, in the order they fell back */
  size_t ndegraded;
  bool cache_hit;
  /* The reranker's method that ordered the passages (RerankResponse.method),
   * "none" when the retrieval order was kept (no candidates, or the
   * reranker failed: then degraded has "rerank"). */
  const char *rerank_method;
  bool has_usage; /* the model's token counts are known: */
  int prompt_tokens, completion_tokens;
  double cost; /* Usage.cost: the estimate from the provider's prices, 0: none */
  /* Who answered, from the llm-gateway's last Generate message; all NULL
   * (the reply's "generation" is null) when no answer was generated (no
   * passages to answer from). */
  const char *provider;       /* e.g. "openai-0", "extractive" */
  const char *model;          /* the model that answered, "" unknown */
  const char *prompt_version; /* e.g. "answer.v2", "" none */
  bool fallback;              /* every provider failed: the built-in answered */
} sink_summary_t;

typedef struct sink sink_t;

struct sink {
  const char *name; /* "json", "sse" */

  q_err_t (*retrieval)(sink_t *s, const char *query_id,
                       Quarry__V1__Passage *const *passages, size_t n);
  q_err_t (*token)(sink_t *s, const char *text, size_t len);
  q_err_t (*citation)(sink_t *s, const sink_citation_t *citation);
  void (*done)(sink_t *s, const sink_summary_t *summary);
  /* err: a q_err_t (its HTTP status and slug follow q_err_to_http and
   * q_err_slug); message names what failed; retry_after_s > 0 asks the
   * client to wait that long before trying again. */
  void (*error)(sink_t *s, q_err_t err, const char *message, int retry_after_s);

  /* Frees the sink. Not called by the pipeline: by the sink's owner, once
   * neither the pipeline nor the reader uses it any more. */
  void (*free)(sink_t *s);
};

/* Called by a sink, on the pipeline's thread and without holding any lock
 * of the sink, after it has new output for its reader. */
typedef void (*sink_wake_fn)(void *ud);

/* A reply to send in one piece: the JSON sink's result, and the SSE
 * sink's when the query failed before the stream started. Either body (a
 * 200 reply, the reference is the taker's) or an error. */
typedef struct sink_reply {
  json_t *body;
  q_err_t err;
  char message[1024];
  int retry_after_s;
} sink_reply_t;

/* ---- JSON (sink_json.c) --------------------------------------------------- */

/* A sink that builds the reply of POST /v1/query: on done the object
 * {"query_id","answer","citations","timings_ms","cache_hit","degraded",
 * "rerank_method","generation"} (sink_generation_json),
 * on error the error to reply with. wake(ud) runs after either. NULL when
 * out of memory. Thread-safe between the pipeline and the reader. */
sink_t *sink_json_new(sink_wake_fn wake, void *ud);

/* Ends the query with body as its 200 reply (takes the reference; NULL:
 * out of memory, a 500) and wakes the reader. For a sink that builds its
 * own reply shape on top of this one (sink_openai.c); call once, instead
 * of done or error. */
void sink_json_publish(sink_t *s, json_t *body);

/* True once the query has ended, with the reply moved into *out (the
 * caller owns out->body). False before, and after it has been taken. */
bool sink_json_take(sink_t *s, sink_reply_t *out);

/* ---- Server-Sent Events (sink_sse.c) --------------------------------------- */

/* Events are "event: <name>\ndata: <one line of JSON>\n\n":
 *   retrieval {"query_id","passages":[Citation...]} (n = 1..count)
 *   token     {"text"}
 *   citation  Citation ({"n","document_id","title","chunk_id","snippet",
 *             "snippet_start","snippet_end","document_start","document_end",
 *             "chunk_start","chunk_end","score","page"})
 *   done      the JSON reply of POST /v1/query, exactly
 *   error     the error envelope {"error":{"code","message"}}
 * The stream starts with the first event; an error before it is not an
 * event but a reply with its own HTTP status. max_bytes bounds what may
 * wait to be read: a consumer that far behind stops the query. NULL when
 * out of memory. */
sink_t *sink_sse_new(size_t max_bytes, sink_wake_fn wake, void *ud);

/* Queues frame[0..len) as it is (a sink with its own framing, such as
 * sink_openai.c's "data: ...") and wakes the reader; the stream has then
 * started. Whole or not at all: Q_ETOOBIG when the reader is max_bytes
 * behind (the stream is then cut), Q_ENOMEM for a NULL frame. last: the
 * stream ends after it. Same thread rules as the sink's own calls. */
q_err_t sink_sse_push(sink_t *s, const char *frame, size_t len, bool last);

typedef enum {
  SINK_SSE_WAIT,   /* nothing yet */
  SINK_SSE_STREAM, /* the stream has started: read it */
  SINK_SSE_REPLY,  /* failed before the stream: reply with *out */
} sink_sse_state_t;

/* Where the stream stands before its first byte is sent. On SINK_SSE_REPLY
 * the reply is moved into *out (once). */
sink_sse_state_t sink_sse_begin(sink_t *s, sink_reply_t *out);

/* The end of the stream, as sink_sse_read reports it: after the last
 * event, or cut short because the reader fell max_bytes behind (the client
 * must see a broken stream, not a finished one). */
#define SINK_SSE_END ((ssize_t)-1)
#define SINK_SSE_CUT ((ssize_t)-2)

/* Moves up to max bytes of the stream into buf: their count (> 0), 0 when
 * nothing is waiting now, or SINK_SSE_END / SINK_SSE_CUT once everything
 * queued has been read. */
ssize_t sink_sse_read(sink_t *s, char *buf, size_t max);

/* ---- OpenAI chat completions (sink_openai.c) ------------------------------ */

/* What a chat completion says besides the pipeline's events. */
typedef struct sink_openai_opts {
  const char *model;      /* answered as "model" until the model that
                             answered is known (copied) */
  const char *query;      /* what the pipeline was asked (copied) */
  long long created;      /* "created", Unix seconds */
  unsigned prompt_tokens; /* usage.prompt_tokens (words; see chat.h) */
  bool stream;            /* chunks over SSE, else one chat.completion */
  size_t max_bytes;       /* stream: as sink_sse_new's */
} sink_openai_opts_t;

/* A sink answering POST /v1/chat/completions (docs/api/openapi.yaml):
 *   stream false: on done the chat.completion object
 *     {"id":"chatcmpl-<query id>","object","created","model","choices":
 *      [{"index":0,"message":{"role":"assistant","content"},
 *        "finish_reason","logprobs":null}],"usage","citations","quarry"};
 *   stream true: "data: <chat.completion.chunk>\n\n" frames - delta.role
 *     first (on retrieval), one delta.content per token, then an empty
 *     delta with finish_reason, "citations", "usage" and "quarry" - and
 *     "data: [DONE]\n\n"; an error after the first frame is one frame
 *     "data: {"error":{...}}" and the end of the stream.
 * finish_reason is "stop", or "length" when the answer was cut
 * (degraded "answer_truncated"). citations are sink_citation_json objects;
 * quarry is {"query_id","query","timings_ms","cache_hit","degraded",
 * "rerank_method","generation"},
 * query being the question as the pipeline was asked it (after chat.c's
 * follow-up rewrite). "model" is the model that answered
 * (summary->model) where it is known - the chat.completion and the last
 * chunk - and o->model before that (the earlier chunks) or when no model
 * answered. The reader
 * reads the carrier (sink_openai_carrier) with sink_json_take or
 * sink_sse_begin / sink_sse_read; an error before the first byte is a
 * sink_reply_t error there (its body is shaped by http_util.c). NULL when
 * out of memory. */
sink_t *sink_openai_new(const sink_openai_opts_t *o, sink_wake_fn wake, void *ud);

/* The JSON (stream false) or SSE (stream true) sink s delivers through;
 * owned by s. */
sink_t *sink_openai_carrier(sink_t *s);

/* Whitespace-separated words in s[0..n): how usage counts "tokens" (the
 * pipeline does not see the model's token counts, and an extractive
 * answer has none). */
unsigned sink_openai_words(const char *s, size_t n);

/* OpenAI's error object {"error":{"message","type","param","code"}} for
 * an HTTP status: type from the status (invalid_request_error,
 * authentication_error, permission_error, not_found_error,
 * rate_limit_error, server_error), code the Quarry slug, param the field
 * at fault or null. NULL when out of memory. */
json_t *sink_openai_error_json(unsigned status, const char *slug, const char *message,
                               const char *param);

/* Bytes queued and not read yet (the pipeline's flow control looks at it).
 * Thread-safe. */
size_t sink_sse_unread(sink_t *s);

/* ---- shared by the sinks (sink_json.c) ------------------------------------ */

/* {"n","document_id","title","chunk_id","snippet","snippet_start",
 * "snippet_end","document_start","document_end","chunk_start","chunk_end",
 * "score","page"} of passage n; the snippet is the start of the text, at
 * most Q_LIMIT_SNIPPET_BYTES; snippet_start/_end are its offsets in the
 * passage's text, document_start/_end the same span's offsets in the
 * document's extracted text (what of the snippet is not from the document
 * there, a heading path or a repeated table header, maps to chunk_start),
 * chunk_start/_end where the chunk is in that text; all in Unicode code
 * points. The document offsets are null when the passage does not carry
 * them (Passage.end_offset 0). NULL when out of memory. */
json_t *sink_passage_json(unsigned n, const Quarry__V1__Passage *p);

/* The same object for a cited passage: the snippet is the span the answer
 * relies on (c->snippet_start/_end), with its offsets. */
json_t *sink_citation_json(const sink_citation_t *c);

/* The JSON reply of POST /v1/query for summary. NULL when out of memory. */
json_t *sink_summary_json(const sink_summary_t *summary);

/* The reply's "generation": {"provider","model","fallback",
 * "prompt_version","prompt_tokens","completion_tokens","cost"} of the
 * answer (the token counts null when the llm-gateway gave none), or JSON
 * null when summary->provider is NULL. NULL when out of memory. */
json_t *sink_generation_json(const sink_summary_t *summary);

/* {"error":{"code","message"}} for err. NULL when out of memory. */
json_t *sink_error_json(q_err_t err, const char *message);

#endif
