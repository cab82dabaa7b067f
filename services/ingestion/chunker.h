/* chunker.h - splits a document's text into overlapping chunks for
 * embedding and retrieval, by one of a table of strategies.
 *
 * Sizes are counted in words (runs of non-white-space, a word longer than
 * CHUNKER_MAX_WORD bytes counting once per piece it is cut into), a
 * stand-in for model tokens that needs no tokenizer: QUARRY_CHUNK_TOKENS
 * and the upload's chunk_tokens are words. A chunk holds at most target
 * words; the next chunk starts up to overlap words before the previous one
 * ended.
 *
 * Strategies (chunker_strategy, by name):
 *
 *  - "structure" (the default): chunks follow the document's structure.
 *    Where a chunk ends is chosen by preference: a paragraph break (blank
 *    line) in the last third of the chunk, else the last sentence end
 *    (q_text_sentences) in it, so a chunk ends mid-sentence only when one
 *    sentence is longer than the window, else a line break in its last
 *    quarter, else exactly at target words. The overlap starts at a
 *    sentence start when one lies inside it. A chunk never spans two
 *    sections (headings; pages too for paged formats). A table (the rows
 *    the extractor emitted one after another, extract/doc.h) stays whole
 *    in one chunk when it fits one: a chunk that could not hold all of it
 *    ends before it. A table larger than a chunk is split between rows,
 *    and every piece after the first starts with the table's header row
 *    (its first row) repeated, then a line break; pieces of a table do
 *    not overlap. A single row longer than a chunk is split like a
 *    paragraph, without the header.
 *  - "fixed": windows of exactly target words (fewer only at the end of
 *    the text or at CHUNKER_MAX_BYTES) that start exactly overlap words
 *    before the previous window ended, across headings, paragraphs and
 *    tables. Each chunk still carries the heading path of its first word.
 *
 * Structure comes from the extractor (extract/doc.h builds the input):
 * the text is cut into sections, each with its heading path ("Guide >
 * Install > Linux"), and chunks carry the heading path of their section;
 * headings themselves are not part of chunk text. Page marks give each
 * chunk the page its first word is on.
 *
 * Text is rebuilt from the words with white space normalised (a blank line,
 * a line break or one space). The extractors normalise white space the
 * same way (extract/emit.c), so for a document's text a chunk's text,
 * after its lead (a repeated table header), is exactly the part of the
 * document between its start and end offsets. Longer "words" than
 * CHUNKER_MAX_WORD bytes (base64 blobs, minified code, Japanese or Chinese
 * text, which has no spaces) are cut at UTF-8 boundaries into pieces
 * joined without a space. Besides target words, a chunk's text never
 * exceeds CHUNKER_MAX_BYTES whatever the input looks like: a window stops
 * at the word that would not fit, and the chunk ends at the best break
 * before it, preferred as above.
 *
 * The chunker is an iterator that holds only one window of words at a time,
 * so memory does not grow with the document. Not thread-safe: one chunker
 * per thread. The input must stay valid and unchanged while in use. */
#ifndef QUARRY_INGESTION_CHUNKER_H
#define QUARRY_INGESTION_CHUNKER_H

#include <stddef.h>
#include "quarry/error.h"

#include "quarry/limits.h"

#define CHUNKER_MAX_WORD 256                        /* bytes; longer words are cut */
#define CHUNKER_MAX_TARGET Q_LIMIT_CHUNK_TOKENS_MAX /* largest target in words */
#define CHUNKER_HEADING_MAX 512 /* bytes of a heading path, NUL included */

/* Most bytes of a chunk's text. The worker embeds and indexes the heading
 * path, a blank line and the text together, so the text leaves room for the
 * longest heading path: the whole stays within Q_LIMIT_CHUNK_BYTES, which
 * limits.h asserts the embedder accepts (Q_LIMIT_EMBED_TEXT_BYTES). Without
 * this cap, 200 words of CHUNKER_MAX_WORD bytes made chunks of 51,200
 * bytes, refused by the embedder. */
#define CHUNKER_MAX_BYTES (Q_LIMIT_CHUNK_BYTES - (CHUNKER_HEADING_MAX - 1) - 2)

/* A chunking strategy (see the top of this file); the table lives in
 * chunker.c. */
typedef struct chunker_strategy chunker_strategy_t;

/* The strategies are those quarry/chunking.h names (the API's), the
 * default first; test_chunker holds the two lists together. */
#define CHUNKER_DEFAULT_STRATEGY "structure"

/* The strategy called name (NUL-terminated), NULL when there is none. */
const chunker_strategy_t *chunker_strategy(const char *name);

/* The name a strategy is chosen by. */
const char *chunker_strategy_name(const chunker_strategy_t *s);

typedef struct chunker_opts {
  int target_words;                   /* 1..CHUNKER_MAX_TARGET */
  int overlap_words;                  /* 0..target_words/2 */
  const chunker_strategy_t *strategy; /* NULL: CHUNKER_DEFAULT_STRATEGY */
} chunker_opts_t;

/* A section: from start to the next section's start (or the end). */
typedef struct chunker_section {
  size_t start;   /* offset in the text */
  size_t heading; /* offset of its heading path in headings (NUL-terminated,
                     at most CHUNKER_HEADING_MAX - 1 bytes; "" for none) */
} chunker_section_t;

/* The text from start on is on page (until the next mark). */
typedef struct chunker_page {
  size_t start;
  int page;
} chunker_page_t;

/* A table: its rows are text[start..end), one a line; the first row,
 * text[start..header_end), is its header. */
typedef struct chunker_table {
  size_t start, header_end, end;
} chunker_table_t;

/* What is chunked; borrowed, and must stay unchanged while in use. */
typedef struct chunker_input {
  const char *text;
  size_t len;
  const chunker_section_t *sections; /* by start; none: one section, no heading */
  size_t nsections;
  const char *headings;
  const chunker_page_t *pages; /* by start; none: every chunk on page 0 */
  size_t npages;
  const chunker_table_t *tables; /* by start, not overlapping, each inside one
                                    section; none: no tables */
  size_t ntables;
} chunker_input_t;

typedef struct chunk {
  const char *text;    /* NUL-terminated; owned by the chunker, valid until
                          the next chunker_next or chunker_free */
  size_t len;          /* bytes of text, at most CHUNKER_MAX_BYTES */
  const char *heading; /* section heading path, "" when none; valid as long
                          as the input */
  int page;            /* page of the chunk's first word, 0 when none */
  int ordinal;         /* 0, 1, 2, ... across the whole document */
  int words;           /* words in text */
  /* Where the chunk is in the input text, in characters (Unicode code
   * points, the unit of the API's offsets): text[lead..len) is the input
   * text between characters start and end (exactly so for white space
   * normalised as the extractors do, see above). lead is 0 but for a piece
   * of a split table, whose text starts with the header row repeated and
   * a line break. */
  size_t start, end;
  size_t lead; /* bytes of text before the part at start */
} chunk_t;

typedef struct chunker chunker_t;

/* The options an upload's chunking spec (quarry/chunking.h) asks for, its
 * empty parts taken from def (the service's settings; an overlap not
 * given is def's, at most half the chunk size). NULL or "" is def.
 * Q_EINVAL with err naming the part at fault. */
q_err_t chunker_opts_parse(const char *spec, const chunker_opts_t *def,
                           chunker_opts_t *out, char *err, size_t errlen);

/* The full spec of o ("structure:200:40") into out, which holds
 * Q_LIMIT_CHUNKING_BYTES + 1 bytes; returns its length. */
size_t chunker_opts_format(const chunker_opts_t *o, char *out, size_t outlen);

/* Prepares to chunk in (borrowed). Q_EINVAL when the options are out of
 * range (err says which), Q_ENOMEM. The caller frees the chunker. */
q_err_t chunker_new(const chunker_input_t *in, const chunker_opts_t *opts,
                    chunker_t **out, char *err, size_t errlen);

/* Produces the next chunk: 1 with *out set, 0 when the text is exhausted,
 * Q_ENOMEM (negative) when out of memory. */
int chunker_next(chunker_t *c, chunk_t *out);

void chunker_free(chunker_t *c);

/* Formats a chunk id "<doc_id>:<version>:<ordinal>" into out. Returns the
 * length, or 0 when out is too small. */
size_t chunker_chunk_id(char *out, size_t outlen, const char *doc_id, int version,
                        int ordinal);

#endif
