/* extract/doc.c - building the chunker's input from extracted records (see
 * doc.h). */
#include "extract/doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/filter.h"
#include "quarry/text.h"

void doc_init(doc_t *d, format_chunking_t chunking, size_t max_text) {
  memset(d, 0, sizeof *d);
  d->chunking = chunking;
  q_buf_init(&d->text, max_text);
  q_buf_init(&d->headings, max_text);
  d->last_page = -1;
}

void doc_cleanup(doc_t *d) {
  q_buf_cleanup(&d->text);
  q_buf_cleanup(&d->headings);
  free(d->sections);
  free(d->pages);
  free(d->tables);
  memset(d, 0, sizeof *d);
}

/* Grows an array of n elements of size sz to hold one more. */
static q_err_t reserve(void **arr, size_t *cap, size_t n, size_t sz) {
  if (n < *cap)
    return Q_OK;
  size_t ncap = *cap ? *cap * 2 : 64;
  void *p = realloc(*arr, ncap * sz);
  if (!p)
    return Q_ENOMEM;
  *arr = p;
  *cap = ncap;
  return Q_OK;
}

/* Writes the heading path of the current levels into headings; d->path is
 * its offset. */
static q_err_t write_path(doc_t *d) {
  if (d->headings.len == 0 && q_buf_append(&d->headings, "", 1))
    return Q_ENOMEM; /* offset 0: the empty path */
  char path[CHUNKER_HEADING_MAX];
  size_t used = 0;
  for (int l = 0; l < EXTRACT_HEADING_LEVELS; l++) {
    if (!d->levels[l][0])
      continue;
    const char *sep = used ? " > " : "";
    size_t ks = strlen(sep), kt = strlen(d->levels[l]);
    if (used + ks + kt >= sizeof path) { /* keep what fits, at a character boundary */
      char tmp[CHUNKER_HEADING_MAX + 8];
      size_t k = (size_t)snprintf(tmp, sizeof tmp, "%s%s", sep, d->levels[l]);
      k = q_text_cut(tmp, k < sizeof tmp ? k : sizeof tmp - 1, sizeof path - 1 - used);
      memcpy(path + used, tmp, k);
      used += k;
      break;
    }
    memcpy(path + used, sep, ks);
    memcpy(path + used + ks, d->levels[l], kt);
    used += ks + kt;
  }
  path[used] = '\0';
  if (used == 0) {
    d->path = 0;
    return Q_OK;
  }
  d->path = d->headings.len;
  return q_buf_append(&d->headings, path, used + 1);
}

static q_err_t heading(doc_t *d, int level, const char *text, size_t len) {
  char *slot = d->levels[level - 1];
  len = q_text_cut(text, len, DOC_HEADING_TEXT_MAX);
  memcpy(slot, text, len);
  slot[len] = '\0';
  for (int l = level; l < EXTRACT_HEADING_LEVELS; l++)
    d->levels[l][0] = '\0';
  d->new_section = 1;
  d->path_dirty = 1;
  return Q_OK;
}

static q_err_t body(doc_t *d, extract_kind_t kind, int page, const char *text,
                    size_t len) {
  q_err_t rc;
  if (page != d->last_page && d->last_page >= 0 && d->chunking == CHUNK_BY_PAGE)
    d->new_section = 1;
  bool new_table = kind == EXTRACT_TABLE_ROW &&
                   ((int)d->last_kind != EXTRACT_TABLE_ROW || d->new_section);
  if (d->text.len > 0) {
    bool tight = (int)kind == d->last_kind &&
                 (kind == EXTRACT_LIST_ITEM || kind == EXTRACT_TABLE_ROW);
    if ((rc = q_buf_puts(&d->text, tight && !d->new_section ? "\n" : "\n\n")))
      return rc;
  }
  if (d->new_section || d->nsections == 0) {
    if (d->path_dirty || d->headings.len == 0) {
      if ((rc = write_path(d)))
        return rc;
      d->path_dirty = 0;
    }
    if ((rc = reserve((void **)&d->sections, &d->capsections, d->nsections,
                      sizeof *d->sections)))
      return rc;
    d->sections[d->nsections++] = (chunker_section_t){d->text.len, d->path};
    d->new_section = 0;
  }
  if (page != d->last_page) {
    if ((rc = reserve((void **)&d->pages, &d->cappages, d->npages, sizeof *d->pages)))
      return rc;
    d->pages[d->npages++] = (chunker_page_t){d->text.len, page};
    d->last_page = page;
    if (page > d->max_page)
      d->max_page = page;
  }
  if (kind == EXTRACT_LIST_ITEM && (rc = q_buf_puts(&d->text, "- ")))
    return rc;
  size_t at = d->text.len;
  if ((rc = q_buf_append(&d->text, text, len)))
    return rc;
  if (new_table) {
    if ((rc = reserve((void **)&d->tables, &d->captables, d->ntables, sizeof *d->tables)))
      return rc;
    d->tables[d->ntables++] = (chunker_table_t){at, d->text.len, d->text.len};
  } else if (kind == EXTRACT_TABLE_ROW && d->ntables) {
    d->tables[d->ntables - 1].end = d->text.len;
  }
  d->last_kind = kind;
  d->blocks++;
  return Q_OK;
}

q_err_t doc_add_cb(void *ud, extract_kind_t kind, int level, int page, const char *text,
                   size_t len) {
  doc_t *d = ud;
  switch (kind) {
  case EXTRACT_TITLE:
  case EXTRACT_AUTHOR: {
    char *dst = kind == EXTRACT_TITLE ? d->title : d->author;
    if (!dst[0]) {
      len = q_text_cut(text, len, EXTRACT_META_BYTES);
      memcpy(dst, text, len);
      dst[len] = '\0';
    }
    return Q_OK;
  }
  case EXTRACT_CREATED:
  case EXTRACT_MODIFIED: {
    char tmp[64];
    int64_t t;
    if (len >= sizeof tmp)
      return Q_OK;
    memcpy(tmp, text, len);
    tmp[len] = '\0';
    int64_t *dst = kind == EXTRACT_CREATED ? &d->created : &d->modified;
    if (!*dst && q_rfc3339_parse(tmp, &t) && t > 0)
      *dst = t;
    return Q_OK;
  }
  case EXTRACT_LANGUAGE:
    if (!d->language[0] && len <= DOC_LANGUAGE_BYTES) {
      for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
          return Q_OK; /* not a tag: ignored */
      }
      for (size_t i = 0; i < len; i++)
        d->language[i] = text[i] == '_' ? '-' : text[i];
      d->language[len] = '\0';
    }
    return Q_OK;
  case EXTRACT_PAGES: {
    int n = 0;
    for (size_t i = 0; i < len && text[i] >= '0' && text[i] <= '9' && n < 1000000; i++)
      n = n * 10 + (text[i] - '0');
    if (!d->page_count)
      d->page_count = n;
    return Q_OK;
  }
  case EXTRACT_HEADING:
    if (level < 1 || level > EXTRACT_HEADING_LEVELS)
      level = level < 1 ? 1 : EXTRACT_HEADING_LEVELS;
    return heading(d, level, text, len);
  case EXTRACT_PARAGRAPH:
  case EXTRACT_LIST_ITEM:
  case EXTRACT_TABLE_ROW: return body(d, kind, page < 0 ? 0 : page, text, len);
  }
  return Q_EINVAL;
}

void doc_input(const doc_t *d, chunker_input_t *in) {
  memset(in, 0, sizeof *in);
  in->text = d->text.data ? d->text.data : "";
  in->len = d->text.len;
  in->sections = d->sections;
  in->nsections = d->nsections;
  in->headings = d->headings.data ? d->headings.data : "";
  in->pages = d->pages;
  in->npages = d->npages;
  in->tables = d->tables;
  in->ntables = d->ntables;
}
