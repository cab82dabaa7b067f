/* chat.h - the OpenAI-compatible edge: POST /v1/chat/completions and
 * GET /v1/models (handlers.h), and the request parsing behind them,
 * declared here so it can be tested without HTTP.
 *
 * A chat request becomes one query of the pipeline. Its question is the
 * text of the last "user" message. A follow-up ("and its page size?")
 * means little to retrieval on its own, so when the question looks like
 * one (chat_is_follow_up) the salient terms of the previous user message
 * are put in front of it (chat_rewrite). This is a deterministic
 * heuristic, not a model: it looks one user turn back, never at the
 * assistant's answers or system messages, and only adds terms. */
#ifndef QUARRY_GW_CHAT_H
#define QUARRY_GW_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "quarry/error.h"
#include "quarry/limits.h"

/* Terms chat_rewrite takes from the previous user message, at most. */
#define CHAT_REWRITE_TERMS 8

/* A follow-up by its length: a question of at most this many words. */
#define CHAT_FOLLOW_UP_WORDS 3

/* A parsed chat request (chat_parse). */
typedef struct chat_req {
  bool stream;                         /* "stream": true */
  char *question;                      /* the last user message (owned) */
  char *previous;                      /* the user message before, or NULL */
  char query[Q_LIMIT_QUERY_BYTES + 1]; /* what the pipeline is asked */
  bool rewritten;                      /* query is not just the question */
  unsigned prompt_words;               /* words of every message's text */
  char *filter; /* quarry.filter as compact JSON (owned), or NULL: none */
} chat_req_t;

/* Parses and validates an OpenAI chat request body (an object). Fields:
 * messages (required: 1..Q_LIMIT_CHAT_MESSAGES objects {role, content},
 * role one of system, developer, user, assistant, tool, function; content
 * a string, an array of {"type":"text","text"} parts, or null for a
 * non-user message; Q_LIMIT_CHAT_BYTES of text in all; at least one user
 * message, the last of which is 1..Q_LIMIT_QUERY_BYTES and not blank),
 * stream (boolean or null), n (1 only), max_tokens and
 * max_completion_tokens (1..Q_LIMIT_MAX_TOKENS), temperature (0..2),
 * top_p (0..1), model and user (strings), and the Quarry extension
 * quarry (an object holding only filter: a metadata filter of
 * quarry/filter.h, at most Q_LIMIT_FILTER_BYTES as compact JSON; errors
 * name "quarry.filter..."). Other fields are ignored, as
 * OpenAI clients send many; the sampling fields are checked but the
 * llm-gateway's settings decide. 0 and *out filled (free with
 * chat_req_cleanup), or Q_EINVAL with a message in msg and the field at
 * fault in *param (a literal), Q_ENOMEM. */
q_err_t chat_parse(json_t *body, chat_req_t *out, char *msg, size_t msglen,
                   const char **param);

/* Frees what chat_parse allocated; the struct may be zeroed or parsed. */
void chat_req_cleanup(chat_req_t *c);

/* Whether question looks like a follow-up that needs the previous turn:
 * at most CHAT_FOLLOW_UP_WORDS words, or a word that refers back (it,
 * its, they, them, their, this, that, these, those, he, she, his, her,
 * there, one, ones, same, former, latter), or a start that continues
 * ("and", "also", "or", "but", "what about", "how about"), or a trailing
 * "..." / "…". ASCII case-insensitive. */
bool chat_is_follow_up(const char *question);

/* The query for question after previous (may be NULL): when question is a
 * follow-up, up to CHAT_REWRITE_TERMS terms of previous - its words of 3
 * bytes or more that are neither stop words nor referring words nor in
 * question, first occurrence first, case-insensitively distinct - then a
 * space and question; otherwise question. A term that would not fit in
 * outlen - 1 bytes is skipped; question must fit. Writes out
 * (NUL-terminated) and returns whether terms were added. */
bool chat_rewrite(const char *previous, const char *question, char *out, size_t outlen);

#endif
