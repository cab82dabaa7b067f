/* extract/text.c - plain text in any common encoding, and the decoding
 * every text format shares: the encoding is chosen (declared charset, byte
 * order mark, <meta charset>, UTF-8, UTF-16, uchardet's guess) before the
 * sandbox locks down, because iconv loads its converters from files; the
 * conversion to UTF-8 runs after. A plain text file becomes paragraphs,
 * split at blank lines, with their line breaks kept. */
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uchardet/uchardet.h>

#include "extract/extract.h"
#include "quarry/validate.h"

#define GUESS_BYTES (1u << 20) /* what uchardet looks at */

typedef struct decoder {
  iconv_t cd;  /* (iconv_t)-1 for UTF-8 input: validated, not converted */
  size_t skip; /* byte order mark */
  char name[64];
} decoder_t;

static bool starts(const char *s, size_t n, const char *p, size_t k) {
  return n >= k && memcmp(s, p, k) == 0;
}

/* The charset of a <meta charset=...> or <meta http-equiv content="...;
 * charset=..."> in the first 1024 bytes (the HTML5 prescan, simplified). */
static bool meta_charset(const char *s, size_t n, char *out, size_t outlen) {
  if (n > 1024)
    n = 1024;
  for (size_t i = 0; i + 5 < n; i++) {
    if (strncasecmp(s + i, "<meta", 5) != 0)
      continue;
    const char *gt = memchr(s + i, '>', n - i);
    size_t end = gt ? (size_t)(gt - s) : n;
    for (size_t k = i; k + 8 <= end; k++) {
      if (strncasecmp(s + k, "charset=", 8) != 0)
        continue;
      size_t v = k + 8, m = 0;
      while (v < end && (s[v] == '"' || s[v] == '\'' || s[v] == ' '))
        v++;
      while (v + m < end && m + 1 < outlen &&
             (s[v + m] == '-' || s[v + m] == '_' || s[v + m] == ':' ||
              (s[v + m] >= '0' && s[v + m] <= '9') ||
              (s[v + m] >= 'a' && s[v + m] <= 'z') ||
              (s[v + m] >= 'A' && s[v + m] <= 'Z')))
        m++;
      if (m == 0)
        return false;
      memcpy(out, s + v, m);
      out[m] = '\0';
      return true;
    }
  }
  return false;
}

static bool is_utf8_name(const char *name) {
  return strcasecmp(name, "utf-8") == 0 || strcasecmp(name, "utf8") == 0;
}

q_err_t extract_decode_prepare(extract_ctx_t *ctx, bool html) {
  const char *s = ctx->data;
  size_t n = ctx->size;
  decoder_t *d = calloc(1, sizeof *d);
  if (!d)
    return extract_fail(ctx, Q_ENOMEM, "out of memory");
  d->cd = (iconv_t)-1;
  const char *name = NULL;
  char meta[64];
  if (ctx->charset[0]) {
    name = ctx->charset;
    if (is_utf8_name(name) && starts(s, n, "\xef\xbb\xbf", 3))
      d->skip = 3;
  } else if (starts(s, n, "\xff\xfe\0\0", 4)) {
    name = "UTF-32LE";
    d->skip = 4;
  } else if (starts(s, n, "\0\0\xfe\xff", 4)) {
    name = "UTF-32BE";
    d->skip = 4;
  } else if (starts(s, n, "\xef\xbb\xbf", 3)) {
    name = "UTF-8";
    d->skip = 3;
  } else if (starts(s, n, "\xff\xfe", 2)) {
    name = "UTF-16LE";
    d->skip = 2;
  } else if (starts(s, n, "\xfe\xff", 2)) {
    name = "UTF-16BE";
    d->skip = 2;
  } else if (html && meta_charset(s, n, meta, sizeof meta) && !is_utf8_name(meta)) {
    /* A page labelled UTF-8 is checked as UTF-8 below like any other. */
    name = meta;
  } else if (q_valid_utf8(s, n)) {
    name = "UTF-8";
  } else {
    size_t nul[2] = {0, 0}, k = n < GUESS_BYTES ? n : GUESS_BYTES;
    for (size_t i = 0; i < k; i++)
      if (s[i] == '\0')
        nul[i & 1]++;
    if (nul[0] && !nul[1]) {
      name = "UTF-16BE";
    } else if (nul[1] && !nul[0]) {
      name = "UTF-16LE";
    } else {
      uchardet_t u = uchardet_new();
      if (!u) {
        free(d);
        return extract_fail(ctx, Q_ENOMEM, "out of memory");
      }
      uchardet_handle_data(u, s, k);
      uchardet_data_end(u);
      const char *g = uchardet_get_charset(u);
      snprintf(meta, sizeof meta, "%s",
               g && *g && strcasecmp(g, "ASCII") != 0 ? g : "ISO-8859-1");
      uchardet_delete(u);
      name = meta;
    }
  }
  snprintf(d->name, sizeof d->name, "%s", name);
  if (!is_utf8_name(d->name)) {
    d->cd = iconv_open("UTF-8", d->name);
    if (d->cd == (iconv_t)-1) {
      q_err_t rc = extract_fail(ctx, Q_EUNSUPPORTED,
                                "the text encoding %s is not supported", d->name);
      free(d);
      return rc;
    }
  }
  ctx->state = d;
  return Q_OK;
}

/* Converts s[0..n) with cd into *out (malloc()ed, NUL-terminated). The
 * buffer doubles as needed, up to the text limit. */
static q_err_t convert(extract_ctx_t *ctx, decoder_t *d, const char *s, size_t n,
                       char **out, size_t *outlen) {
  size_t max = (size_t)ctx->limits.max_text_bytes;
  size_t cap = n + n / 2 + 64 < max + 1 ? n + n / 2 + 64 : max + 1, len = 0;
  char *buf = malloc(cap), *in = (char *)s;
  size_t left = n;
  q_err_t rc = buf ? Q_OK : extract_fail(ctx, Q_ENOMEM, "out of memory");
  while (!rc && left > 0) {
    char *o = buf + len;
    size_t room = cap - 1 - len, before = room;
    size_t r = iconv(d->cd, &in, &left, &o, &room);
    len += before - room;
    if (r != (size_t)-1 || left == 0)
      break;
    if (errno == EILSEQ) {
      rc = extract_fail(ctx, Q_EINVAL,
                        "the text is not valid %s (invalid byte sequence at offset %zu)",
                        d->name, d->skip + (size_t)(in - s));
    } else if (errno == EINVAL) {
      break; /* a character cut off at the end: dropped */
    } else if (errno != E2BIG) {
      rc = extract_fail(ctx, Q_EINTERNAL, "iconv failed: %s", strerror(errno));
    } else if (cap > max) {
      rc = extract_text_too_big(ctx);
    } else {
      size_t ncap = cap * 2 < max + 1 ? cap * 2 : max + 1;
      char *nb = realloc(buf, ncap);
      if (!nb)
        rc = extract_fail(ctx, Q_ENOMEM, "out of memory");
      else {
        buf = nb;
        cap = ncap;
      }
    }
  }
  if (!rc && memchr(buf, '\0', len))
    rc = extract_fail(ctx, Q_EINVAL, "the text contains NUL characters (is it text?)");
  if (rc) {
    free(buf);
    return rc;
  }
  buf[len] = '\0';
  *out = buf;
  *outlen = len;
  return Q_OK;
}

q_err_t extract_decode(extract_ctx_t *ctx, char **out, size_t *outlen) {
  decoder_t *d = ctx->state;
  ctx->state = NULL;
  *out = NULL;
  *outlen = 0;
  if (!d)
    return extract_fail(ctx, Q_EINTERNAL, "the decoder was not prepared");
  const char *s = ctx->data + d->skip;
  size_t n = ctx->size - d->skip;
  q_err_t rc = Q_OK;
  if (d->cd != (iconv_t)-1) {
    rc = convert(ctx, d, s, n, out, outlen);
    iconv_close(d->cd);
  } else {
    size_t ok = q_valid_utf8_prefix(s, n);
    if (ok < n)
      rc = extract_fail(ctx, Q_EINVAL,
                        "the text is not valid UTF-8 (first invalid byte at offset %zu)",
                        ok + d->skip);
    else if (n > (size_t)ctx->limits.max_text_bytes)
      rc = extract_text_too_big(ctx);
    else if (!(*out = malloc(n + 1)))
      rc = extract_fail(ctx, Q_ENOMEM, "out of memory");
    else {
      memcpy(*out, s, n);
      (*out)[n] = '\0';
      *outlen = n;
    }
  }
  free(d);
  return rc;
}

/* ---- plain text ------------------------------------------------------------- */

static q_err_t text_prepare(extract_ctx_t *ctx) {
  return extract_decode_prepare(ctx, false);
}

static bool blank_line(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
      return false;
  return true;
}

static q_err_t text_run(extract_ctx_t *ctx) {
  char *t;
  size_t n;
  q_err_t rc = extract_decode(ctx, &t, &n);
  if (rc)
    return rc;
  size_t para = 0; /* start of the paragraph being collected */
  for (size_t i = 0; i <= n && !rc;) {
    const char *nl = i < n ? memchr(t + i, '\n', n - i) : NULL;
    size_t e = nl ? (size_t)(nl - t) : n;
    if (i == n || blank_line(t + i, e - i)) {
      if (i > para)
        rc = extract_emit(ctx, EXTRACT_PARAGRAPH, 0, 0, t + para, i - para);
      para = e + 1;
    }
    if (i == n)
      break;
    i = e < n ? e + 1 : n;
  }
  free(t);
  return rc;
}

const extractor_t extract_text = {"text", text_prepare, text_run};
