/* sse.c - incremental Server-Sent Events parser (sse.h). */
#include "sse.h"

#include <string.h>

void sse_init(sse_parser_t *p, size_t max_bytes, sse_event_cb cb, void *ud) {
  memset(p, 0, sizeof *p);
  q_buf_init(&p->line, max_bytes);
  q_buf_init(&p->data, max_bytes);
  p->cb = cb;
  p->ud = ud;
}

void sse_cleanup(sse_parser_t *p) {
  q_buf_cleanup(&p->line);
  q_buf_cleanup(&p->data);
}

bool sse_pending(const sse_parser_t *p) {
  return p->line.len > 0 || p->has_data;
}

/* One complete line (without its break). */
static q_err_t line_done(sse_parser_t *p) {
  const char *l = p->line.data ? p->line.data : "";
  size_t n = p->line.len;
  q_err_t rc = 0;

  if (n == 0) { /* blank line: dispatch */
    if (p->has_data) {
      size_t len = p->data.len;
      if (len && p->data.data[len - 1] == '\n')
        len--;
      /* q_buf keeps a NUL after its data; cut there instead. */
      char *d = p->data.data;
      char saved = d[len];
      d[len] = '\0';
      p->events++;
      rc = p->cb(d, len, p->ud);
      d[len] = saved;
      q_buf_reset(&p->data);
      p->has_data = false;
    }
    return rc;
  }
  if (l[0] == ':')
    return 0; /* comment (keep-alive) */
  const char *colon = memchr(l, ':', n);
  size_t flen = colon ? (size_t)(colon - l) : n;
  if (flen != 4 || memcmp(l, "data", 4) != 0)
    return 0; /* event, id, retry and unknown fields: not used */
  const char *v = colon ? colon + 1 : l + n;
  if (v < l + n && *v == ' ')
    v++;
  rc = q_buf_append(&p->data, v, (size_t)(l + n - v));
  if (!rc)
    rc = q_buf_append(&p->data, "\n", 1);
  p->has_data = true;
  return rc;
}

q_err_t sse_feed(sse_parser_t *p, const char *buf, size_t n) {
  if (p->stopped)
    return p->stopped;
  size_t i = 0;
  while (i < n) {
    if (p->after_cr && buf[i] == '\n') {
      p->after_cr = false;
      i++;
      continue;
    }
    p->after_cr = false;
    const char *brk = NULL;
    for (size_t j = i; j < n; j++)
      if (buf[j] == '\n' || buf[j] == '\r') {
        brk = buf + j;
        break;
      }
    size_t take = brk ? (size_t)(brk - (buf + i)) : n - i;
    q_err_t rc = take ? q_buf_append(&p->line, buf + i, take) : 0;
    if (!rc && brk) {
      p->after_cr = *brk == '\r';
      rc = line_done(p);
      q_buf_reset(&p->line);
    }
    if (rc) {
      p->stopped = rc;
      return rc;
    }
    i += take + (brk ? 1 : 0);
  }
  return 0;
}
