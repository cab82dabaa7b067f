/* answer.c - assembling and printing answers (see answer.h). */
#include "answer.h"

#include <stdlib.h>
#include <string.h>

#include "quarry/limits.h"

void answer_init(answer_t *a, answer_token_cb on_token, void *ud) {
  memset(a, 0, sizeof *a);
  /* The gateway cuts answers at Q_LIMIT_ANSWER_BYTES; a little room over it
   * so a server that does not is still shown (up to the cap). */
  q_buf_init(&a->text, (size_t)Q_LIMIT_ANSWER_BYTES * 2);
  a->citations = json_array();
  a->on_token = on_token;
  a->ud = ud;
}

void answer_cleanup(answer_t *a) {
  q_buf_cleanup(&a->text);
  json_decref(a->citations);
  json_decref(a->done);
  a->citations = a->done = NULL;
}

/* Appends to the answer; notify: pass it on to on_token (streamed
 * pieces), not for an answer taken whole from a JSON reply. */
static void add_text(answer_t *a, const char *s, size_t n, bool notify) {
  if (!n)
    return;
  if (q_buf_append(&a->text, s, n) == 0 && notify && a->on_token)
    a->on_token(a->ud, s, n);
}

static const char *token_text(const json_t *d, size_t *n) {
  static const char *const keys[] = {"text", "token", "delta", "content", NULL};
  const json_t *v = d;
  for (size_t i = 0; json_is_object(d) && keys[i]; i++)
    if (json_is_string(v = json_object_get(d, keys[i])))
      break;
  if (!json_is_string(v))
    return NULL;
  *n = json_string_length(v);
  return json_string_value(v);
}

static void set_error(answer_t *a, const json_t *d) {
  a->got_error = true;
  const json_t *e =
      json_is_object(json_object_get(d, "error")) ? json_object_get(d, "error") : d;
  const char *code = json_string_value(json_object_get(e, "code"));
  const char *msg = json_string_value(json_object_get(e, "message"));
  if (!msg && json_is_string(d))
    msg = json_string_value(d);
  if (!msg && json_is_string(json_object_get(d, "error")))
    msg = json_string_value(json_object_get(d, "error"));
  snprintf(a->error_code, sizeof a->error_code, "%s", code ? code : "internal");
  snprintf(a->error_message, sizeof a->error_message, "%s",
           msg ? msg : "the server reported an error without a message");
}

/* Adopts the fields of a done event (streamed: true) or a JSON reply. */
static void take_done(answer_t *a, json_t *d, bool streamed) {
  json_t *cits = json_object_get(d, "citations");
  if (json_is_array(cits) && json_array_size(a->citations) == 0)
    json_array_extend(a->citations, cits);
  const char *ans = json_string_value(json_object_get(d, "answer"));
  if (ans && a->text.len == 0)
    add_text(a, ans, json_string_length(json_object_get(d, "answer")), streamed);
  json_decref(a->done);
  a->done = json_incref(d);
  a->got_done = true;
}

int answer_on_event(void *ud, const sse_event_t *ev) {
  answer_t *a = ud;
  json_error_t je;
  json_t *d = json_loadb(ev->data, ev->data_len, JSON_DECODE_ANY, &je);
  if (strcmp(ev->type, "token") == 0) {
    size_t n = 0;
    const char *s = d ? token_text(d, &n) : NULL;
    if (s)
      add_text(a, s, n, true);
    else if (!d) /* plain text data: the token itself */
      add_text(a, ev->data, ev->data_len, true);
    else
      a->ignored_events++;
  } else if (strcmp(ev->type, "citation") == 0) {
    json_t *c = json_is_object(json_object_get(d, "citation"))
                    ? json_object_get(d, "citation")
                    : d;
    if (json_is_object(c))
      json_array_append(a->citations, c);
    else
      a->ignored_events++;
  } else if (strcmp(ev->type, "done") == 0) {
    json_t *obj = json_is_object(d) ? d : NULL;
    json_t *empty = obj ? NULL : json_object();
    take_done(a, obj ? obj : empty, true);
    json_decref(empty);
  } else if (strcmp(ev->type, "error") == 0) {
    if (d)
      set_error(a, d);
    else {
      json_t *s = json_stringn(ev->data, ev->data_len);
      set_error(a, s);
      json_decref(s);
    }
  }
  /* retrieval, message and anything newer: nothing to show. */
  json_decref(d);
  return 0;
}

q_err_t answer_from_json(answer_t *a, const json_t *reply) {
  if (!json_is_object(reply) || !json_is_string(json_object_get(reply, "answer")))
    return Q_EINVAL;
  take_done(a, (json_t *)reply, false);
  return 0;
}

json_t *answer_to_json(const answer_t *a) {
  json_t *o = a->done ? json_deep_copy(a->done) : json_object();
  if (!o)
    return NULL;
  json_object_set_new(o, "answer",
                      json_stringn(a->text.data ? a->text.data : "", a->text.len));
  json_object_set(o, "citations", a->citations);
  return o;
}

/* Writes s with runs of white space (line breaks included) as one space. */
static void put_collapsed(FILE *f, const char *s) {
  bool space = false, started = false;
  for (; *s; s++) {
    if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v') {
      space = started;
      continue;
    }
    if (space)
      fputc(' ', f);
    space = false;
    started = true;
    fputc(*s, f);
  }
}

void answer_print_sources(FILE *f, const json_t *citations) {
  size_t i;
  json_t *c;
  if (!json_array_size(citations))
    return;
  fputs("\nSources:\n", f);
  json_array_foreach(citations, i, c) {
    json_int_t n = json_is_integer(json_object_get(c, "n"))
                       ? json_integer_value(json_object_get(c, "n"))
                       : (json_int_t)i + 1;
    const char *title = json_string_value(json_object_get(c, "title"));
    const char *snippet = json_string_value(json_object_get(c, "snippet"));
    json_int_t page = json_integer_value(json_object_get(c, "page"));
    fprintf(f, "[%lld] ", (long long)n);
    put_collapsed(f, title && *title ? title : "(untitled)");
    if (page > 0)
      fprintf(f, ", page %lld", (long long)page);
    fputc('\n', f);
    if (snippet && *snippet) {
      fputs("    ", f);
      put_collapsed(f, snippet);
      fputc('\n', f);
    }
  }
}

void answer_print_degraded(FILE *f, const json_t *done) {
  static const struct {
    const char *stage, *why;
  } notes[] = {
      {"embed", "no embeddings: the answer comes from lexical retrieval only"},
      {"rerank", "the reranker was unavailable: passages are in retrieval order"},
      {"citations",
       "the model cited passages it was not given; those markers were removed"},
      {"answer_truncated", "the answer was too long and was cut"},
      {"record_query", "the query was not recorded for analytics"},
  };
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(done, "degraded"), i, d) {
    const char *stage = json_string_value(d);
    if (!stage)
      continue;
    const char *why = "a stage fell back";
    for (size_t k = 0; k < sizeof notes / sizeof notes[0]; k++)
      if (strcmp(notes[k].stage, stage) == 0)
        why = notes[k].why;
    fprintf(f, "quarry: note: degraded (%s): %s\n", stage, why);
  }
}
