/* sse.c - Server-Sent Events parser (see sse.h). Works byte by byte on the
 * line buffer; a line is interpreted when its break is seen. */
#include "sse.h"

#include <stdlib.h>
#include <string.h>

static const char BOM[3] = {'\xef', '\xbb', '\xbf'};

void sse_parser_init(sse_parser_t *p, size_t max_event_bytes, sse_event_cb cb, void *ud) {
  memset(p, 0, sizeof *p);
  p->cb = cb;
  p->ud = ud;
  q_buf_init(&p->line, max_event_bytes);
  q_buf_init(&p->data, max_event_bytes);
  q_buf_init(&p->type, 64);
  p->retry_ms = -1;
}

void sse_parser_cleanup(sse_parser_t *p) {
  q_buf_cleanup(&p->line);
  q_buf_cleanup(&p->data);
  q_buf_cleanup(&p->type);
}

static void reset_event(sse_parser_t *p) {
  q_buf_reset(&p->data);
  q_buf_reset(&p->type);
  p->has_data = false;
}

static q_err_t dispatch(sse_parser_t *p) {
  if (!p->has_data) { /* the standard: no data, no event */
    reset_event(p);
    return 0;
  }
  sse_event_t ev = {
      .type = p->type.len ? p->type.data : "message",
      .data = p->data.data ? p->data.data : "",
      .data_len = p->data.len,
      .id = p->id,
  };
  int stop = p->cb ? p->cb(p->ud, &ev) : 0;
  reset_event(p);
  return stop ? Q_ECANCELLED : 0;
}

/* Interprets one complete line (without its break). */
static q_err_t process_line(sse_parser_t *p, const char *s, size_t n) {
  if (n == 0)
    return dispatch(p);
  if (s[0] == ':')
    return 0; /* comment, e.g. a keep-alive */
  const char *colon = memchr(s, ':', n);
  size_t flen = colon ? (size_t)(colon - s) : n;
  const char *v = colon ? colon + 1 : s + n;
  size_t vlen = colon ? n - flen - 1 : 0;
  if (vlen && *v == ' ') {
    v++;
    vlen--;
  }
  q_err_t rc = 0;
  if (flen == 5 && memcmp(s, "event", 5) == 0) {
    q_buf_reset(&p->type);
    rc = q_buf_append(&p->type, v, vlen);
  } else if (flen == 4 && memcmp(s, "data", 4) == 0) {
    if (p->has_data)
      rc = q_buf_append(&p->data, "\n", 1);
    if (!rc)
      rc = q_buf_append(&p->data, v, vlen);
    p->has_data = true;
    if (!rc && !p->data.data) /* an empty first data line: still "" */
      rc = q_buf_append(&p->data, "", 0);
  } else if (flen == 2 && memcmp(s, "id", 2) == 0) {
    /* An id with a NUL is ignored, as the standard says; so is one longer
     * than we keep (ids are informational here). */
    if (!memchr(v, '\0', vlen) && vlen < sizeof p->id) {
      memcpy(p->id, v, vlen);
      p->id[vlen] = '\0';
    }
  } else if (flen == 5 && memcmp(s, "retry", 5) == 0) {
    long ms = 0;
    size_t i = 0;
    for (; i < vlen && v[i] >= '0' && v[i] <= '9' && ms < 100000000; i++)
      ms = ms * 10 + (v[i] - '0');
    if (vlen && i == vlen)
      p->retry_ms = ms;
  }
  /* Any other field is ignored. */
  return rc;
}

static q_err_t end_line(sse_parser_t *p) {
  q_err_t rc = process_line(p, p->line.data ? p->line.data : "", p->line.len);
  q_buf_reset(&p->line);
  return rc;
}

q_err_t sse_feed(sse_parser_t *p, const char *bytes, size_t n) {
  size_t i = 0;
  /* A byte order mark may only start the stream; match it across feeds. */
  while (!p->started && i < n) {
    if (bytes[i] == BOM[p->bom_seen]) {
      i++;
      if (++p->bom_seen == 3)
        p->started = true;
      continue;
    }
    /* Not a BOM after all: the bytes matched so far were content. */
    q_err_t rc = q_buf_append(&p->line, BOM, (size_t)p->bom_seen);
    if (rc)
      return rc;
    p->started = true;
  }
  while (i < n) {
    char c = bytes[i];
    if (p->cr && c == '\n') { /* the \n of a \r\n */
      p->cr = false;
      i++;
      continue;
    }
    p->cr = false;
    if (c == '\n' || c == '\r') {
      p->cr = c == '\r';
      q_err_t rc = end_line(p);
      if (rc)
        return rc;
      i++;
      continue;
    }
    /* Copy the run up to the next break in one go. */
    size_t j = i;
    while (j < n && bytes[j] != '\n' && bytes[j] != '\r')
      j++;
    q_err_t rc = q_buf_append(&p->line, bytes + i, j - i);
    if (rc)
      return rc;
    i = j;
  }
  return 0;
}

bool sse_finish(sse_parser_t *p) {
  bool pending = p->line.len > 0 || p->has_data || (!p->started && p->bom_seen > 0);
  q_buf_reset(&p->line);
  reset_event(p);
  return pending;
}
