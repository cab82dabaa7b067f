/* sink_sse.c - the sink behind a streamed POST /v1/query: every call of the
 * pipeline becomes one Server-Sent Event, appended to a bounded byte queue
 * that the HTTP side drains as the client reads (see sink.h for the events
 * and their payloads). */
#include "sink.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"

#include "http_util.h"

typedef struct sse_sink {
  sink_t base;
  pthread_mutex_t mu;
  sink_wake_fn wake;
  void *ud;
  q_buf_t out;     /* events not read yet start at out.data + rd */
  size_t rd;       /* bytes of out already read */
  bool started;    /* the first event has been queued */
  bool ended;      /* done or error: nothing more will be queued */
  bool overflowed; /* the reader fell max_bytes behind */
  bool has_reply;  /* failed before the stream: reply below not taken yet */
  sink_reply_t reply;
} sse_sink_t;

/* Queues frame[0..len) whole (never in part) and wakes the reader.
 * Q_ETOOBIG when the reader is too far behind (the stream is then cut),
 * Q_ENOMEM when frame is NULL. last: nothing follows. */
static q_err_t push(sse_sink_t *s, const char *frame, size_t len, bool last) {
  q_err_t rc = 0;
  pthread_mutex_lock(&s->mu);
  if (s->overflowed || !frame) {
    rc = frame ? Q_ETOOBIG : Q_ENOMEM;
  } else {
    if (s->rd > 0) { /* drop what has been read: max_bytes bounds the unread */
      memmove(s->out.data, s->out.data + s->rd, s->out.len - s->rd + 1);
      s->out.len -= s->rd;
      s->rd = 0;
    }
    size_t before = s->out.len;
    if (q_buf_append(&s->out, frame, len) != 0) {
      s->out.len = before; /* nothing of it goes out */
      if (s->out.data)
        s->out.data[before] = '\0';
      s->overflowed = true;
      rc = Q_ETOOBIG;
    }
  }
  s->started = true;
  if (last || rc)
    s->ended = true;
  pthread_mutex_unlock(&s->mu);
  s->wake(s->ud);
  return rc;
}

/* Queues "event: name\ndata: <json>\n\n" (takes data's reference). */
static q_err_t emit(sse_sink_t *s, const char *name, json_t *data, bool last) {
  char *js = data ? json_dumps(data, GW_JSON_FLAGS) : NULL;
  json_decref(data);
  char *frame = NULL;
  size_t len = 0;
  if (js) {
    len = strlen(name) + strlen(js) + sizeof "event: \ndata: \n\n" - 1;
    frame = malloc(len + 1);
    if (frame)
      snprintf(frame, len + 1, "event: %s\ndata: %s\n\n", name, js);
  }
  q_err_t rc = push(s, frame, len, last);
  free(frame);
  free(js);
  return rc;
}

q_err_t sink_sse_push(sink_t *b, const char *frame, size_t len, bool last) {
  return push((sse_sink_t *)b, frame, len, last);
}

static q_err_t sse_retrieval(sink_t *b, const char *query_id,
                             Quarry__V1__Passage *const *ps, size_t n) {
  sse_sink_t *s = (sse_sink_t *)b;
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < n; i++)
    if (json_array_append_new(arr, sink_passage_json((unsigned)(i + 1), ps[i]))) {
      json_decref(arr);
      arr = NULL;
    }
  json_t *data =
      arr ? json_pack("{s:s,s:o}", "query_id", query_id, "passages", arr) : NULL;
  return emit(s, "retrieval", data, false);
}

static q_err_t sse_token(sink_t *b, const char *text, size_t len) {
  sse_sink_t *s = (sse_sink_t *)b;
  json_t *t = http_json_text(text, len);
  return emit(s, "token", t ? json_pack("{s:o}", "text", t) : NULL, false);
}

static q_err_t sse_citation(sink_t *b, const sink_citation_t *c) {
  return emit((sse_sink_t *)b, "citation", sink_citation_json(c), false);
}

static void sse_done(sink_t *b, const sink_summary_t *summary) {
  emit((sse_sink_t *)b, "done", sink_summary_json(summary), true);
}

static void sse_error(sink_t *b, q_err_t err, const char *message, int retry_after_s) {
  sse_sink_t *s = (sse_sink_t *)b;
  pthread_mutex_lock(&s->mu);
  bool started = s->started;
  if (!started) {
    /* Before the stream: an ordinary reply with its own status. */
    s->reply.err = err ? err : Q_EINTERNAL;
    snprintf(s->reply.message, sizeof s->reply.message, "%s", message ? message : "");
    s->reply.retry_after_s = retry_after_s;
    s->has_reply = true;
    s->ended = true;
  }
  pthread_mutex_unlock(&s->mu);
  if (started)
    emit(s, "error", sink_error_json(err ? err : Q_EINTERNAL, message), true);
  else
    s->wake(s->ud);
}

static void sse_free(sink_t *b) {
  sse_sink_t *s = (sse_sink_t *)b;
  if (!s)
    return;
  q_buf_cleanup(&s->out);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

sink_t *sink_sse_new(size_t max_bytes, sink_wake_fn wake, void *ud) {
  sse_sink_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->base = (sink_t){
      .name = "sse",
      .retrieval = sse_retrieval,
      .token = sse_token,
      .citation = sse_citation,
      .done = sse_done,
      .error = sse_error,
      .free = sse_free,
  };
  pthread_mutex_init(&s->mu, NULL);
  q_buf_init(&s->out, max_bytes);
  s->wake = wake;
  s->ud = ud;
  return &s->base;
}

sink_sse_state_t sink_sse_begin(sink_t *b, sink_reply_t *out) {
  sse_sink_t *s = (sse_sink_t *)b;
  sink_sse_state_t st = SINK_SSE_WAIT;
  pthread_mutex_lock(&s->mu);
  if (s->started) {
    st = SINK_SSE_STREAM;
  } else if (s->has_reply) {
    *out = s->reply;
    s->has_reply = false;
    st = SINK_SSE_REPLY;
  }
  pthread_mutex_unlock(&s->mu);
  return st;
}

ssize_t sink_sse_read(sink_t *b, char *buf, size_t max) {
  sse_sink_t *s = (sse_sink_t *)b;
  ssize_t n;
  pthread_mutex_lock(&s->mu);
  size_t avail = s->out.len - s->rd;
  if (avail == 0) {
    n = s->overflowed ? SINK_SSE_CUT : s->ended ? SINK_SSE_END : 0;
  } else {
    size_t k = avail < max ? avail : max;
    memcpy(buf, s->out.data + s->rd, k);
    s->rd += k;
    n = (ssize_t)k;
  }
  pthread_mutex_unlock(&s->mu);
  return n;
}

size_t sink_sse_unread(sink_t *b) {
  sse_sink_t *s = (sse_sink_t *)b;
  pthread_mutex_lock(&s->mu);
  size_t n = s->out.len - s->rd;
  pthread_mutex_unlock(&s->mu);
  return n;
}
