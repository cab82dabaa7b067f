/* extract/doc.h - a document's extracted structure, built from the records
 * an extractor emits, in the shape the chunker reads (chunker_input_t).
 *
 * Body records (paragraphs, list items, table rows) are appended to one
 * text: separated by a blank line, except consecutive list items and
 * consecutive table rows, which are separated by a line break; list items
 * start with "- ". Headings are not text: each one sets its level of the
 * heading path ("Guide > Install > Linux", deeper levels cleared) and
 * starts a new section when body text follows it. With CHUNK_BY_PAGE a
 * new page starts a new section too, so no chunk spans two pages. Page
 * marks record where each page's text starts. Consecutive table rows in
 * one section make a table (its first row the header), which the chunker
 * keeps whole or splits with the header repeated. Title and author are
 * kept apart (the first of each).
 *
 * Everything is bounded: text and heading paths by max_text bytes each,
 * sections, tables and page marks by one per body record. Not thread-safe. */
#ifndef QUARRY_INGESTION_DOC_H
#define QUARRY_INGESTION_DOC_H

#include <stddef.h>
#include <stdint.h>

#include "chunker.h"
#include "extract/extract.h"
#include "extract/formats.h"
#include "quarry/buf.h"
#include "quarry/error.h"

#define DOC_HEADING_TEXT_MAX 200 /* bytes kept of one heading */
#define DOC_LANGUAGE_BYTES 35    /* a BCP 47 tag: [A-Za-z0-9-] */

typedef struct doc {
  q_buf_t text;
  q_buf_t headings; /* heading paths, each NUL-terminated; offset 0 is "" */
  chunker_section_t *sections;
  size_t nsections, capsections;
  chunker_page_t *pages;
  size_t npages, cappages;
  chunker_table_t *tables; /* runs of table rows (chunker.h) */
  size_t ntables, captables;
  char title[EXTRACT_META_BYTES + 1];
  char author[EXTRACT_META_BYTES + 1];
  /* What the format says, when it does (0 / "": it does not). */
  int64_t created, modified; /* unix seconds */
  char language[DOC_LANGUAGE_BYTES + 1];
  int page_count; /* EXTRACT_PAGES; 0: use max_page */
  int max_page;   /* highest page seen, 0 when the format has none */
  size_t blocks;  /* body records */

  /* while building */
  format_chunking_t chunking;
  char levels[EXTRACT_HEADING_LEVELS][DOC_HEADING_TEXT_MAX + 1];
  int new_section; /* a heading or page change since the last body record */
  size_t path;     /* offset of the current heading path */
  int path_dirty;  /* the levels changed since path was written */
  int last_kind;
  int last_page;
} doc_t;

/* Prepares an empty document; text may grow to max_text bytes. */
void doc_init(doc_t *d, format_chunking_t chunking, size_t max_text);
void doc_cleanup(doc_t *d);

/* Adds one record (an extract_sink_cb: ud is the doc_t). 0; Q_ETOOBIG past
 * the text limit; Q_ENOMEM. */
q_err_t doc_add_cb(void *ud, extract_kind_t kind, int level, int page, const char *text,
                   size_t len);

/* The chunker's view of d (borrowed from d). */
void doc_input(const doc_t *d, chunker_input_t *in);

#endif
