/* chat.c - the OpenAI-compatible edge (chat.h): POST /v1/chat/completions
 * turns a chat into one pipeline query answered by the OpenAI sink
 * (sink_openai.c) through query.c, and GET /v1/models lists the one model
 * the gateway offers (QUARRY_OPENAI_MODEL). */
#include "chat.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "quarry/filter.h"
#include "quarry/metrics.h"
#include "quarry/validate.h"

#include "handlers.h"
#include "http_util.h"
#include "pipeline.h"
#include "query.h"
#include "sink.h"

/* ---- words ------------------------------------------------------------------ */

/* Bytes that make words: ASCII letters and digits, '_' and '-', and every
 * byte of a non-ASCII UTF-8 character (letters of other scripts). */
static bool word_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         c == '_' || c == '-' || c >= 0x80;
}

/* The next word of s at or after *pos: its start and length (0 at the
 * end); *pos moves past it. */
static size_t next_word(const char *s, size_t *pos, const char **start) {
  size_t i = *pos;
  while (s[i] && !word_byte((unsigned char)s[i]))
    i++;
  size_t b = i;
  while (s[i] && word_byte((unsigned char)s[i]))
    i++;
  *start = s + b;
  *pos = i;
  return i - b;
}

static bool word_in(const char *w, size_t n, const char *const *list) {
  for (; *list; list++)
    if (strlen(*list) == n && strncasecmp(w, *list, n) == 0)
      return true;
  return false;
}

static const char *const referring[] = {
    "it",    "its",   "they", "them",   "their",  "theirs", "this", "that",
    "these", "those", "he",   "him",    "his",    "she",    "her",  "there",
    "one",   "ones",  "same", "former", "latter", NULL};

static const char *const continuing[] = {"and", "also", "or", "but", NULL};

/* Common English words that say nothing about the topic. */
static const char *const stop_words[] = {
    "the",   "and",     "for",    "are",     "was",   "were",     "what",  "which",
    "who",   "whom",    "why",    "how",     "when",  "where",    "with",  "without",
    "about", "does",    "did",    "doing",   "done",  "can",      "could", "should",
    "would", "will",    "shall",  "may",     "might", "must",     "have",  "has",
    "had",   "having",  "not",    "but",     "you",   "your",     "yours", "our",
    "ours",  "from",    "into",   "onto",    "than",  "then",     "also",  "any",
    "all",   "some",    "more",   "most",    "other", "such",     "very",  "just",
    "only",  "own",     "out",    "over",    "under", "again",    "there", "here",
    "tell",  "explain", "please", "give",    "show",  "describe", "want",  "need",
    "get",   "use",     "used",   "using",   "being", "been",     "is",    "an",
    "a",     "of",      "to",     "in",      "on",    "at",       "by",    "as",
    "be",    "do",      "me",     "my",      "we",    "us",       "i",     "if",
    "so",    "no",      "yes",    "between", NULL};

static bool has_word(const char *s, const char *w, size_t n) {
  size_t pos = 0;
  const char *start;
  size_t len;
  while ((len = next_word(s, &pos, &start)) > 0)
    if (len == n && strncasecmp(start, w, n) == 0)
      return true;
  return false;
}

bool chat_is_follow_up(const char *q) {
  size_t pos = 0, words = 0;
  const char *start;
  size_t len;
  while ((len = next_word(q, &pos, &start)) > 0) {
    if (words == 0 && word_in(start, len, continuing))
      return true;
    static const char *const asking[] = {"what", "how", NULL};
    if (words == 0 && word_in(start, len, asking)) { /* "what about ..." */
      size_t p2 = pos;
      const char *s2;
      size_t l2 = next_word(q, &p2, &s2);
      if (l2 == 5 && strncasecmp(s2, "about", 5) == 0)
        return true;
    }
    if (word_in(start, len, referring))
      return true;
    words++;
  }
  if (words <= CHAT_FOLLOW_UP_WORDS)
    return true;
  size_t n = strlen(q);
  while (n &&
         (q[n - 1] == ' ' || q[n - 1] == '\t' || q[n - 1] == '\n' || q[n - 1] == '?'))
    n--;
  return (n >= 3 && memcmp(q + n - 3, "...", 3) == 0) ||
         (n >= 3 && memcmp(q + n - 3, "\xe2\x80\xa6", 3) == 0);
}

bool chat_rewrite(const char *previous, const char *question, char *out, size_t outlen) {
  size_t qlen = strlen(question);
  if (!previous || !chat_is_follow_up(question) || qlen + 1 > outlen) {
    snprintf(out, outlen, "%s", question);
    return false;
  }
  const char *terms[CHAT_REWRITE_TERMS];
  size_t lens[CHAT_REWRITE_TERMS];
  size_t nterms = 0, total = 0;
  size_t pos = 0;
  const char *start;
  size_t len;
  while (nterms < CHAT_REWRITE_TERMS && (len = next_word(previous, &pos, &start)) > 0) {
    if (len < 3 || word_in(start, len, stop_words) || word_in(start, len, referring) ||
        has_word(question, start, len))
      continue;
    bool dup = false;
    for (size_t i = 0; i < nterms && !dup; i++)
      dup = lens[i] == len && strncasecmp(terms[i], start, len) == 0;
    if (dup || total + len + 1 + qlen + 1 > outlen)
      continue;
    terms[nterms] = start;
    lens[nterms++] = len;
    total += len + 1;
  }
  size_t o = 0;
  for (size_t i = 0; i < nterms; i++) {
    memcpy(out + o, terms[i], lens[i]);
    o += lens[i];
    out[o++] = ' ';
  }
  memcpy(out + o, question, qlen + 1);
  return nterms > 0;
}

/* ---- parsing ------------------------------------------------------------------ */

static const char *const roles[] = {"system", "developer", "user", "assistant",
                                    "tool",   "function",  NULL};

static bool role_known(const char *role, size_t len) {
  for (const char *const *r = roles; *r; r++)
    if (strlen(*r) == len && strcmp(*r, role) == 0)
      return true;
  return false;
}

/* The text of message i's content into *text (malloc'd; NULL for a null
 * content) and its length into *len. */
static q_err_t content_text(json_t *content, size_t i, char **text, size_t *len,
                            char *msg, size_t msglen) {
  *text = NULL;
  *len = 0;
  if (!content || json_is_null(content))
    return 0;
  if (json_is_string(content)) {
    *len = json_string_length(content);
    *text = strndup(json_string_value(content), *len);
    return *text ? 0 : Q_ENOMEM;
  }
  if (!json_is_array(content)) {
    snprintf(msg, msglen, "messages[%zu].content must be a string or an array of parts",
             i);
    return Q_EINVAL;
  }
  /* Text parts, joined with newlines. */
  size_t total = 0, idx;
  json_t *part;
  json_array_foreach(content, idx, part) {
    json_t *type = json_object_get(part, "type");
    json_t *t = json_object_get(part, "text");
    if (!json_is_object(part) || !json_is_string(type) ||
        strcmp(json_string_value(type), "text") != 0 || !json_is_string(t)) {
      snprintf(msg, msglen,
               "messages[%zu].content[%zu]: only {\"type\":\"text\",\"text\":...} parts "
               "are supported",
               i, idx);
      return Q_EINVAL;
    }
    total += json_string_length(t) + 1;
    if (total > Q_LIMIT_CHAT_BYTES + 1) {
      snprintf(msg, msglen, "messages hold more than %d bytes of text",
               Q_LIMIT_CHAT_BYTES);
      return Q_EINVAL;
    }
  }
  char *buf = malloc(total + 1);
  if (!buf)
    return Q_ENOMEM;
  size_t o = 0;
  json_array_foreach(content, idx, part) {
    json_t *t = json_object_get(part, "text");
    if (o)
      buf[o++] = '\n';
    memcpy(buf + o, json_string_value(t), json_string_length(t));
    o += json_string_length(t);
  }
  buf[o] = '\0';
  *text = buf;
  *len = o;
  return 0;
}

static q_err_t check_messages(json_t *messages, chat_req_t *out, char *msg, size_t msglen,
                              const char **param) {
  *param = "messages";
  if (!json_is_array(messages) || json_array_size(messages) == 0) {
    snprintf(msg, msglen, "messages must be a non-empty array");
    return Q_EINVAL;
  }
  if (json_array_size(messages) > Q_LIMIT_CHAT_MESSAGES) {
    snprintf(msg, msglen, "messages may hold at most %d messages", Q_LIMIT_CHAT_MESSAGES);
    return Q_EINVAL;
  }
  size_t total = 0, i;
  json_t *m;
  json_array_foreach(messages, i, m) {
    json_t *role = json_object_get(m, "role");
    /* Exactly one of the roles (OpenAI's enum is case-sensitive): "User"
     * would pass for another role and not count as the question. */
    if (!json_is_object(m) || !json_is_string(role) ||
        !role_known(json_string_value(role), json_string_length(role))) {
      snprintf(msg, msglen,
               "messages[%zu] must be an object whose role is one of system, developer, "
               "user, assistant, tool, function",
               i);
      return Q_EINVAL;
    }
    bool user = strcmp(json_string_value(role), "user") == 0;
    char *text;
    size_t len;
    q_err_t rc = content_text(json_object_get(m, "content"), i, &text, &len, msg, msglen);
    if (rc)
      return rc;
    if (!text && user) {
      snprintf(msg, msglen, "messages[%zu]: a user message needs content", i);
      return Q_EINVAL;
    }
    total += len;
    if (total > Q_LIMIT_CHAT_BYTES) {
      free(text);
      snprintf(msg, msglen, "messages hold more than %d bytes of text",
               Q_LIMIT_CHAT_BYTES);
      return Q_EINVAL;
    }
    out->prompt_words += text ? sink_openai_words(text, len) : 0;
    if (user) {
      free(out->previous);
      out->previous = out->question;
      out->question = text;
    } else {
      free(text);
    }
  }
  if (!out->question) {
    snprintf(msg, msglen, "messages must include a user message (the question)");
    return Q_EINVAL;
  }
  size_t qlen = strlen(out->question);
  if (qlen > Q_LIMIT_QUERY_BYTES) {
    snprintf(msg, msglen, "the last user message is longer than %d bytes",
             Q_LIMIT_QUERY_BYTES);
    return Q_EINVAL;
  }
  if (q_is_blank(out->question, qlen)) {
    snprintf(msg, msglen, "the last user message must not be blank");
    return Q_EINVAL;
  }
  return 0;
}

/* Field key, when present and not null, must be a number in lo..hi
 * (integer: a whole number). */
static q_err_t check_number(json_t *body, const char *key, bool integer, double lo,
                            double hi, char *msg, size_t msglen, const char **param) {
  json_t *v = json_object_get(body, key);
  if (!v || json_is_null(v))
    return 0;
  bool ok = integer ? json_is_integer(v) : json_is_number(v);
  double d = ok ? json_number_value(v) : 0;
  if (ok && d >= lo && d <= hi)
    return 0;
  *param = key;
  if (integer)
    snprintf(msg, msglen, "%s must be an integer from %.0f to %.0f", key, lo, hi);
  else
    snprintf(msg, msglen, "%s must be a number from %g to %g", key, lo, hi);
  return Q_EINVAL;
}

static q_err_t check_string(json_t *body, const char *key, size_t max, char *msg,
                            size_t msglen, const char **param) {
  json_t *v = json_object_get(body, key);
  if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) <= max))
    return 0;
  *param = key;
  snprintf(msg, msglen, "%s must be a string of at most %zu bytes", key, max);
  return Q_EINVAL;
}

/* The extension object "quarry" (absent or null: none), whose only field
 * today is "filter": the metadata filter of POST /v1/query, checked by the
 * same rule (q_filter_compile, at most Q_LIMIT_FILTER_BYTES as compact
 * JSON) and kept as compact JSON in out->filter. */
static q_err_t check_extension(json_t *body, chat_req_t *out, char *msg, size_t msglen,
                               const char **param) {
  json_t *ext = json_object_get(body, "quarry");
  if (!ext || json_is_null(ext))
    return 0;
  *param = "quarry";
  if (!json_is_object(ext)) {
    snprintf(msg, msglen, "quarry must be an object (the Quarry extension: filter)");
    return Q_EINVAL;
  }
  const char *key;
  json_t *v;
  json_object_foreach(ext, key, v) {
    if (strcmp(key, "filter") != 0) {
      snprintf(msg, msglen, "quarry: unknown field \"%.64s\" (known: filter)", key);
      return Q_EINVAL;
    }
  }
  v = json_object_get(ext, "filter");
  if (!v || json_is_null(v))
    return 0;
  *param = "quarry.filter";
  char err[384];
  q_err_t rc = query_filter_compact(v, &out->filter, err, sizeof err);
  if (rc)
    /* err names the place from "filter" on ("filter.and[1]: ..."). */
    snprintf(msg, msglen, "quarry.%s", err);
  return rc;
}

q_err_t chat_parse(json_t *body, chat_req_t *out, char *msg, size_t msglen,
                   const char **param) {
  memset(out, 0, sizeof *out);
  *param = NULL;
  json_t *stream = json_object_get(body, "stream");
  json_t *n = json_object_get(body, "n");
  q_err_t rc = check_string(body, "model", Q_LIMIT_MODEL_BYTES, msg, msglen, param);
  if (!rc)
    rc = check_string(body, "user", Q_LIMIT_USER_ID_BYTES, msg, msglen, param);
  if (!rc && stream && !json_is_null(stream) && !json_is_boolean(stream)) {
    *param = "stream";
    snprintf(msg, msglen, "stream must be true or false");
    rc = Q_EINVAL;
  }
  if (!rc && n && !json_is_null(n) &&
      !(json_is_integer(n) && json_integer_value(n) == 1)) {
    *param = "n";
    snprintf(msg, msglen, "only n = 1 is supported");
    rc = Q_EINVAL;
  }
  if (!rc)
    rc =
        check_number(body, "max_tokens", true, 1, Q_LIMIT_MAX_TOKENS, msg, msglen, param);
  if (!rc)
    rc = check_number(body, "max_completion_tokens", true, 1, Q_LIMIT_MAX_TOKENS, msg,
                      msglen, param);
  if (!rc)
    rc = check_number(body, "temperature", false, 0, 2, msg, msglen, param);
  if (!rc)
    rc = check_number(body, "top_p", false, 0, 1, msg, msglen, param);
  if (!rc)
    rc = check_messages(json_object_get(body, "messages"), out, msg, msglen, param);
  if (!rc)
    rc = check_extension(body, out, msg, msglen, param);
  if (rc) {
    if (rc == Q_ENOMEM)
      snprintf(msg, msglen, "out of memory");
    chat_req_cleanup(out);
    return rc;
  }
  *param = NULL;
  out->stream = json_is_true(stream);
  out->rewritten =
      chat_rewrite(out->previous, out->question, out->query, sizeof out->query);
  return 0;
}

void chat_req_cleanup(chat_req_t *c) {
  free(c->question);
  free(c->previous);
  free(c->filter);
  c->question = c->previous = c->filter = NULL;
}

/* ---- handlers ------------------------------------------------------------------ */

/* When the gateway started answering as its model ("created" of the
 * model object). */
static long long started_at;
static pthread_once_t started_once = PTHREAD_ONCE_INIT;

static void note_start(void) {
  started_at = (long long)time(NULL);
}

static const char *model_name(const gw_req_t *r) {
  return r->cfg && r->cfg->openai_model ? r->cfg->openai_model : "quarry-rag";
}

void models_get(gw_req_t *r) {
  pthread_once(&started_once, note_start);
  http_reply_json(r, 200,
                  json_pack("{s:s,s:[{s:s,s:s,s:I,s:s}]}", "object", "list", "data", "id",
                            model_name(r), "object", "model", "created",
                            (json_int_t)started_at, "owned_by", "quarry"));
}

typedef struct chat_sink_args {
  sink_openai_opts_t opts;
} chat_sink_args_t;

static sink_t *make_sink(void *ud, sink_wake_fn wake, void *wake_ud, sink_t **reader) {
  chat_sink_args_t *a = ud;
  sink_t *s = sink_openai_new(&a->opts, wake, wake_ud);
  *reader = s ? sink_openai_carrier(s) : NULL;
  return s;
}

void chat_completions_post(gw_req_t *r) {
  pthread_once(&started_once, note_start);
  json_t *body = NULL;
  chat_req_t c;
  char msg[512];
  const char *param = NULL;
  if (http_parse_json_object(r, &body))
    goto rejected;
  q_err_t rc = chat_parse(body, &c, msg, sizeof msg, &param);
  json_decref(body);
  if (rc) {
    http_reply_param_error(r, rc, param, "%s", msg);
    goto rejected;
  }
  chat_sink_args_t args = {
      .opts =
          {
              .model = model_name(r),
              .query = c.query,
              .created = (long long)time(NULL),
              .prompt_tokens = c.prompt_words,
              .stream = c.stream,
              .max_bytes = QUERY_SSE_MAX_BYTES,
          },
  };
  /* The pipeline and the sink copy what they keep. */
  query_submit(r, c.query, PIPELINE_TOP_K_DEFAULT, c.filter, c.stream, make_sink, &args);
  chat_req_cleanup(&c);
  return;

rejected : {
  const char *labels[] = {"rejected"};
  q_metrics_inc(gw_metrics.queries, labels);
}
}
