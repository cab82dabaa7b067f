/* gen_extractive.c - the built-in answerer: quotes the passages' sentences
 * that answer the question and cites them.
 *
 * No language model is involved, so nothing is made up: every sentence of
 * the answer is copied from a passage and followed by the marker [n] of the
 * passage it came from. docs/answers.md explains the method; in short:
 *   1. Units. Every passage is split into sentences (q_text_sentences),
 *      then into lines where a sentence spans list items or table rows. A
 *      passage that starts with its title carries its section path on the
 *      first line ("Travel Policy > Hotels"): a heading, as are Markdown
 *      headings and short unpunctuated lines over a block of text.
 *      Headings and questions are context only, never quoted.
 *   2. Terms. The question and every unit are tokenized with the shared
 *      tokenizer (Snowball stems, stopwords out). A question term matches
 *      a unit directly, or another way through the table of matchers
 *      (MATCHERS: the synonym table of answer/synonyms.h and misspellings
 *      of answer/typo.h at SYN_WEIGHT, quantities against the bounds a
 *      unit states with answer/quantity.h, a table's catch-all row), or
 *      through the unit's context - its heading, the sentence it follows,
 *      a table's header row and the sentence before the table - at
 *      CONTEXT_WEIGHT, the rest of its passage at PASSAGE_WEIGHT. Terms
 *      weigh their idf over the units (BM25's form).
 *   3. Fit. A unit's coverage is the share of the question's weight it
 *      matches. The question's type (answer/qtype.h: who, when, how much,
 *      how many, how long, where, yes/no, definition) names the kinds of
 *      answer it wants; a unit holding one gains TYPE_BONUS, and for the
 *      strict types (a number, an amount, a time is the answer) a unit
 *      holding none keeps only STRICT_FACTOR of its coverage: its fit.
 *      Units that add words the question does not have (novelty) rank
 *      above units that only repeat it.
 *      A question parted at "for", "of", "on" ("the refund policy | for
 *      the Growth plan") is answered only by a unit holding something of
 *      its first part.
 *   4. Don't know. The best unit is quoted when its fit reaches MIN_FIT
 *      and it matches a term itself (context alone is not an answer); one
 *      more may follow when it fits nearly as well. Otherwise the answer
 *      says plainly that the documents do not answer, with no markers.
 * Deterministic: the same question and passages give the same answer. The
 * answer is streamed one word at a time. */
#include "provider.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/text.h"

#include "answer/qtype.h"
#include "answer/quantity.h"
#include "answer/synonyms.h"
#include "answer/typo.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_QUERY_TERMS 64           /* one bit each in a unit's masks */
#define MAX_UNITS 8192               /* over all passages */
#define MAX_EXPANSIONS 256           /* synonym alternatives of one question */
#define MAX_TYPO_ALTS 32             /* passage words read as a question word misspelt */
#define MAX_ASKED 8                  /* quantities in the question */
#define MAX_UNIT_QUANTITIES 16       /* quantities looked at in one unit */
#define MAX_PASSAGE_SCAN (32u << 10) /* bytes of each passage looked at */
#define MAX_SENTENCE_OUT 400         /* bytes of a quoted sentence */
#define MAX_PICKS 2
#define NO_UNIT SIZE_MAX

/* Calibrated on the dev half of tools/eval/answers/samples.jsonl through
 * the whole pipeline (docs/answers.md has the figures). */
/* Just above STRICT_FACTOR: a strict question is never answered by a unit
 * without the kind of answer it wants, however much of it the unit holds. */
#define MIN_FIT 0.46
#define MIN_FIT_KIND 0.4   /* enough when the unit holds the kind asked for */
#define FOLLOW_SHARE 0.9   /* a second unit of the same passage fits this share */
#define SYN_WEIGHT 0.8     /* a term matched through a synonym */
#define CONTEXT_WEIGHT 0.5 /* a term matched only in the unit's context */
#define TITLE_WEIGHT 0.25  /* ... only in its document's title */
#define PASSAGE_WEIGHT 0.3 /* ... only elsewhere in its passage */
#define TYPE_BONUS 0.1     /* the unit holds the kind of answer asked for */
#define STRICT_FACTOR 0.45 /* strict type, and the unit holds no such answer */
#define NAMED_FACTOR 0.5   /* a name in the question is not in the unit's reach */
#define NOVELTY_WEIGHT 0.1 /* times the share of the unit's terms not asked */
#define ECHO_PENALTY 0.3   /* a unit that mostly repeats the question */

static const char NO_ANSWER[] =
    "The provided documents do not contain an answer to this question.";

struct gen_extractive {
  generator_t g; /* first: the generator_t * is this */
  synonyms_t *syn;
};

typedef struct unit {
  const char *s;
  size_t len;
  size_t passage;
  size_t pos;    /* index of the unit inside its passage */
  size_t ctx;    /* the unit it follows (lead sentence, sentence before) */
  size_t ctx2;   /* a table row's header row */
  size_t head;   /* the heading it sits under */
  size_t title;  /* its document's title */
  bool heading;  /* context, never quoted */
  bool question; /* ends with '?': asks rather than answers, never quoted */
  bool row;      /* a table row */
  bool header;   /* a table's first row */
  int words;
  size_t term_off, nterms; /* its stems in the call's term pool */
  uint64_t bloom;          /* one bit per stem's hash: most lookups stop here */
  uint64_t direct, syn;    /* question terms it holds, directly / by synonym */
  unsigned kinds;
  bool has_kind; /* holds a kind of answer the question wants */
  bool counted;  /* a number right before a question term: "2 users" */
  size_t novel;  /* terms that are not the question's */
  double novelty;
  double fit;
  double score;
} unit_t;

typedef struct query_terms {
  char term[MAX_QUERY_TERMS][Q_TEXT_MAX_TERM + 1];
  size_t n;
  uint64_t named; /* terms of names in the question ("Easter", "Growth plan") */
  uint64_t slot;  /* terms right after "in", "to", "for"...: "a hotel in lisbon" */
  uint64_t head;  /* terms before the first "for", "of", "on": what is asked ... */
  uint64_t tail;  /* ... and after it, what it is asked of ("the refund policy |
                     for the Growth plan") */
} query_terms_t;

/* A synonym that stands in for some of the question's terms. */
typedef struct expansion {
  const syn_entry_t *alt;
  uint64_t covers;
} expansion_t;

typedef struct answer_state {
  unit_t *u;
  size_t n;
  size_t passage, pos;
  size_t head;      /* current heading of the passage */
  size_t title;     /* the passage's title line */
  size_t last;      /* last unit of the passage */
  size_t lead;      /* last unit that was not a row or list item */
  size_t table_hdr; /* header row of the table being read */
  bool in_list;
  q_buf_t pool; /* stems of every unit, NUL-terminated */
} answer_state_t;

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int gen_count_words(const char *s, size_t n) {
  int words = 0;
  for (size_t i = 0; i < n; i++)
    if (!is_space(s[i]) && (i == 0 || is_space(s[i - 1])))
      words++;
  return words;
}

typedef enum { U_TEXT, U_ITEM, U_ROW, U_HEADING, U_TITLE } unit_type_t;

static void add_unit(answer_state_t *st, const char *s, size_t len, unit_type_t type) {
  while (len > 0 && is_space(s[len - 1]))
    len--;
  while (len > 0 && is_space(*s)) {
    s++;
    len--;
  }
  if (len == 0 || st->n == MAX_UNITS)
    return;
  size_t idx = st->n++;
  unit_t *u = &st->u[idx];
  memset(u, 0, sizeof *u);
  u->s = s;
  u->len = len;
  u->passage = st->passage;
  u->pos = st->pos++;
  u->ctx = u->ctx2 = NO_UNIT;
  u->head = st->head;
  u->title = st->title;
  u->words = gen_count_words(s, len);
  u->question = s[len - 1] == '?';
  switch (type) {
  case U_TITLE:
    u->heading = true;
    u->head = NO_UNIT;
    st->title = idx;
    break;
  case U_HEADING:
    u->heading = true;
    u->head = NO_UNIT;
    st->head = idx;
    st->lead = st->table_hdr = NO_UNIT;
    st->in_list = false;
    break;
  case U_ROW:
    u->row = true;
    u->ctx = st->lead;
    if (st->table_hdr == NO_UNIT) {
      u->header = true;
      st->table_hdr = idx;
    } else {
      u->ctx2 = st->table_hdr;
    }
    break;
  case U_ITEM:
    /* Every item of a list follows the sentence that introduced it. */
    u->ctx = st->in_list
                 ? st->lead
                 : (st->last != NO_UNIT && !st->u[st->last].heading ? st->last : NO_UNIT);
    if (!st->in_list)
      st->lead = u->ctx;
    st->in_list = true;
    st->table_hdr = NO_UNIT;
    break;
  case U_TEXT:
    if (st->last != NO_UNIT && !st->u[st->last].heading && !st->u[st->last].row)
      u->ctx = st->last;
    if (!st->in_list)
      st->lead = idx;
    st->table_hdr = NO_UNIT;
    break;
  }
  st->last = idx;
}

static bool list_marker(const char *s, size_t len, size_t *skip) {
  if (len >= 2 && (s[0] == '-' || s[0] == '*' || s[0] == '+') && s[1] == ' ') {
    *skip = 2;
    return true;
  }
  size_t i = 0;
  while (i < len && i < 3 && s[i] >= '0' && s[i] <= '9')
    i++;
  if (i > 0 && i + 1 < len && (s[i] == '.' || s[i] == ')') && s[i + 1] == ' ') {
    *skip = i + 2;
    return true;
  }
  return false;
}

static bool is_row(const char *s, size_t len) {
  for (size_t i = 0; i + 2 < len; i++)
    if (s[i] == ' ' && s[i + 1] == '|' && s[i + 2] == ' ')
      return true;
  return len > 0 && (s[0] == '|' || s[len - 1] == '|');
}

/* A short line with no closing punctuation over more text: "Laptops" in
 * a plain-text document. */
static bool heading_line(const char *s, size_t len) {
  if (len == 0 || len > 60)
    return false;
  char last = s[len - 1];
  if (last == '.' || last == ',' || last == ';' || last == ':' || last == '?' ||
      last == '!')
    return false;
  return gen_count_words(s, len) <= 4 && s[0] >= 'A' && s[0] <= 'Z';
}

static int sentence_cb(const char *start, size_t len, void *ud) {
  answer_state_t *st = ud;
  if (st->n == MAX_UNITS)
    return 1;
  /* Markdown headings: keep the words, drop the #s. */
  if (len > 0 && *start == '#') {
    while (len > 0 && (*start == '#' || is_space(*start))) {
      start++;
      len--;
    }
    add_unit(st, start, len, U_HEADING);
    return 0;
  }
  /* Lines: list items and table rows are units of their own; a line that
   * continues the one before (wrapped text) joins it. */
  size_t i = 0, cur_start = 0, cur_end = 0;
  unit_type_t cur = U_TEXT;
  bool have = false, first = true;
  while (i < len) {
    size_t e = i;
    while (e < len && start[e] != '\n')
      e++;
    const char *line = start + i;
    size_t ll = e - i, skip = 0;
    while (ll > 0 && is_space(*line)) {
      line++;
      ll--;
    }
    bool more = e < len;
    unit_type_t t;
    bool starts = true;
    if (ll == 0) {
      i = e + 1;
      continue;
    } else if (is_row(line, ll)) {
      t = U_ROW;
    } else if (list_marker(line, ll, &skip)) {
      t = U_ITEM;
      line += skip;
      ll -= skip;
    } else if (first && more && heading_line(line, ll) && e + 1 < len &&
               start[e + 1] >= 'A' && start[e + 1] <= 'Z') {
      t = U_HEADING;
    } else {
      t = U_TEXT;
      starts = !have || cur == U_ROW || cur == U_HEADING;
    }
    if (!starts) {
      cur_end = (size_t)(line + ll - start);
    } else {
      if (have)
        add_unit(st, start + cur_start, cur_end - cur_start, cur);
      cur = t;
      cur_start = (size_t)(line - start);
      cur_end = cur_start + ll;
      have = true;
    }
    first = false;
    i = e + 1;
  }
  if (have)
    add_unit(st, start + cur_start, cur_end - cur_start, cur);
  return 0;
}

static void split_passage(answer_state_t *st, const gen_passage_t *p) {
  size_t len = p->text_len > MAX_PASSAGE_SCAN ? MAX_PASSAGE_SCAN : p->text_len;
  const char *t = p->text;
  st->pos = 0;
  st->head = st->title = st->last = st->lead = st->table_hdr = NO_UNIT;
  st->in_list = false;
  /* Ingestion starts a chunk with its section path, "Title > Section". */
  size_t tl = p->title ? strlen(p->title) : 0;
  size_t off = 0;
  if (tl > 0 && len >= tl && memcmp(t, p->title, tl) == 0) {
    while (off < len && t[off] != '\n')
      off++;
    /* The title names the whole document: weaker context than the
     * section, which names what the passage is about. */
    add_unit(st, t, tl, U_TITLE);
    if (off > tl + 3 && memcmp(t + tl, " > ", 3) == 0)
      add_unit(st, t + tl + 3, off - tl - 3, U_HEADING);
  }
  q_text_sentences(t + off, len - off, sentence_cb, st);
}

/* ---- terms ------------------------------------------------------------------- */

/* Stems of words that shape a question ("how much", "how long", "what
 * happens") rather than say what it is about: the type carries them. */
static const char *const QUESTION_STEMS[] = {
    "much", "mani",   "long", "quick", "soon", "often", "far",
    "fast", "happen", "what", "doesn", "isn",  "don",   "aren",
    "didn", "won",    "can",  "ll",    "ve",   "re",    NULL};

/* Stems of verbs and fillers questions are phrased with ("do I need to
 * give", "what counts as", "still get"): they count, but LIGHT_WEIGHT of
 * their idf, so a sentence is not judged on whether it repeats them. */
static const char *const LIGHT_STEMS[] = {
    "need", "give", "get",   "got",   "go",   "use",   "make",   "take", "want",
    "let",  "put",  "tell",  "ask",   "send", "still", "ever",   "also", "today",
    "now",  "like", "count", "thing", "way",  "must",  "should", "see",  NULL};
#define LIGHT_WEIGHT 0.25

static bool is_light(const char *term) {
  for (size_t i = 0; LIGHT_STEMS[i]; i++)
    if (strcmp(term, LIGHT_STEMS[i]) == 0)
      return true;
  return false;
}

static int query_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  query_terms_t *q = ud;
  if (len < 2 && !(*term >= '0' && *term <= '9'))
    return 0; /* "m" of "I'm"; "8" of "8 hours" stays */
  for (size_t i = 0; QUESTION_STEMS[i]; i++)
    if (strcmp(term, QUESTION_STEMS[i]) == 0)
      return 0;
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->term[i], term) == 0)
      return 0;
  if (q->n == MAX_QUERY_TERMS)
    return 1;
  if (len > Q_TEXT_MAX_TERM)
    len = Q_TEXT_MAX_TERM;
  memcpy(q->term[q->n], term, len);
  q->term[q->n][len] = '\0';
  q->n++;
  return 0;
}

static size_t query_term_index(const query_terms_t *q, const char *term) {
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->term[i], term) == 0)
      return i;
  return NO_UNIT;
}

typedef struct mark_state {
  const query_terms_t *q;
  uint64_t *mask;
} mark_state_t;

static int mark_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  mark_state_t *m = ud;
  size_t i = query_term_index(m->q, term);
  if (i != NO_UNIT)
    *m->mask |= 1ull << i;
  return 0;
}

/* Prepositions whose object is what a table row may be keyed by: "a
 * hotel in lisbon", "a flight to madrid", "the limit for paris". */
static const char *const SLOT_WORDS[] = {"in", "to", "at", "for", "from", "near", NULL};

static bool slot_word(const char *s, size_t n) {
  for (size_t i = 0; SLOT_WORDS[i]; i++)
    if (strlen(SLOT_WORDS[i]) == n && strncasecmp(s, SLOT_WORDS[i], n) == 0)
      return true;
  return false;
}

/* The prepositions that part what a question asks from what it asks it
 * of: "the refund policy for the Growth plan", "the rate limit on the
 * Growth plan", "the length of parental leave". */
static bool head_split(const char *s, size_t n) {
  return (n == 3 && strncasecmp(s, "for", 3) == 0) ||
         (n == 2 && (strncasecmp(s, "of", 2) == 0 || strncasecmp(s, "on", 2) == 0));
}

static bool is_light(const char *term);

/* Stems of words that name the kind of answer rather than its subject:
 * "the length of parental leave", "the number of users on the free plan".
 * The answer's own words say it ("16 weeks"), not these. */
static const char *const ATTRIBUTE_STEMS[] = {
    "length", "durat", "size", "number",  "amount", "price",   "cost",   "rate",
    "fee",    "limit", "cap",  "maximum", "max",    "minimum", "min",    "total",
    "count",  "level", "valu", "time",    "date",   "deadlin", "period", "frequenc",
    "name",   "type",  "kind", "list",    NULL};

static uint64_t attribute_terms(const query_terms_t *q) {
  uint64_t m = 0;
  for (size_t t = 0; t < q->n; t++)
    for (size_t i = 0; ATTRIBUTE_STEMS[i]; i++)
      if (strcmp(q->term[t], ATTRIBUTE_STEMS[i]) == 0)
        m |= 1ull << t;
  return m;
}

/* Terms of mask that are not light fillers. */
static bool heavy_terms(const query_terms_t *q, uint64_t mask) {
  for (size_t t = 0; t < q->n; t++)
    if ((mask >> t & 1) && !is_light(q->term[t]))
      return true;
  return false;
}

/* Marks the terms of names: words written with a capital inside the
 * question, not at the start of it or of a clause, and not "I". A
 * question that names something ("the Enterprise plan", "Easter") is not
 * answered by a sentence about something else. Also marks the slots: the
 * word after a preposition of SLOT_WORDS. */
static void mark_named(const char *s, size_t n, query_terms_t *q) {
  bool opens = true, after_slot = false, in_tail = false;
  mark_state_t named = {.q = q, .mask = &q->named}, slot = {.q = q, .mask = &q->slot};
  for (size_t i = 0; i < n;) {
    if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
          (s[i] >= '0' && s[i] <= '9'))) {
      if (strchr(".?!,;:-\"(", s[i]))
        opens = true;
      i++;
      continue;
    }
    size_t j = i;
    while (j < n && !is_space(s[j]) && !strchr(".?!,;:\")", s[j]))
      j++;
    bool upper = s[i] >= 'A' && s[i] <= 'Z';
    bool pronoun = s[i] == 'I' && (j - i == 1 || s[i + 1] == '\'');
    if (upper && !opens && !pronoun)
      q_text_terms(s + i, j - i, mark_term_cb, &named);
    if (after_slot)
      q_text_terms(s + i, j - i, mark_term_cb, &slot);
    after_slot = slot_word(s + i, j - i);
    uint64_t word = 0;
    mark_state_t ws = {.q = q, .mask = &word};
    q_text_terms(s + i, j - i, mark_term_cb, &ws);
    if (in_tail) {
      q->tail |= word;
    } else if (head_split(s + i, j - i) && heavy_terms(q, q->head)) {
      in_tail = true;
    } else {
      q->head |= word;
    }
    opens = false;
    i = j;
  }
}

static uint64_t term_bit(const char *t) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *t; t++)
    h = (h ^ (unsigned char)*t) * 16777619u;
  return 1ull << (h & 63);
}

typedef struct unit_terms {
  answer_state_t *st;
  unit_t *u;
  const query_terms_t *q;
  size_t novel;
  size_t number_at; /* position just after the last number seen, or 0 */
} unit_terms_t;

static bool number_term(const char *t) {
  static const char *const words[] = {"one",   "two",    "three", "four",     "five",
                                      "six",   "seven",  "eight", "nine",     "ten",
                                      "twelv", "twenti", "hundr", "thousand", NULL};
  if (*t >= '0' && *t <= '9')
    return true;
  for (size_t i = 0; words[i]; i++)
    if (strcmp(t, words[i]) == 0)
      return true;
  return false;
}

static int unit_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  unit_terms_t *ut = ud;
  size_t t = query_term_index(ut->q, term);
  if (t != NO_UNIT) {
    ut->u->direct |= 1ull << t;
    /* "25 days", "2 users", "3 working days": what the number counts. */
    if (ut->number_at && pos <= ut->number_at + 1)
      ut->u->counted = true;
  } else {
    ut->novel++;
  }
  if (number_term(term))
    ut->number_at = pos + 1;
  if (q_buf_append(&ut->st->pool, term, len + 1))
    return 1;
  ut->u->nterms++;
  ut->u->bloom |= term_bit(term);
  return 0;
}

static bool unit_has(const answer_state_t *st, const unit_t *u, const char *term) {
  if (!(u->bloom & term_bit(term)))
    return false;
  const char *p = st->pool.data + u->term_off;
  for (size_t i = 0; i < u->nterms; i++) {
    if (strcmp(p, term) == 0)
      return true;
    p += strlen(p) + 1;
  }
  return false;
}

typedef struct expand_state {
  const synonyms_t *syn;
  const query_terms_t *q;
  expansion_t *x;
  size_t n;
} expand_state_t;

/* Every entry of the table whose words are all in the question lends its
 * group's other entries to the question terms it covers: "vacation" brings
 * "annual leave", "people ops" brings "people operations". */
static size_t expand_query(const synonyms_t *syn, const query_terms_t *q,
                           expansion_t *x) {
  size_t n = 0, ne = synonyms_entries(syn);
  for (size_t k = 0; k < ne; k++) {
    const syn_entry_t *e = synonyms_entry(syn, k);
    uint64_t covers = 0;
    size_t t;
    for (t = 0; t < e->nterms; t++) {
      size_t i = query_term_index(q, e->term[t]);
      if (i == NO_UNIT)
        break;
      covers |= 1ull << i;
    }
    if (t < e->nterms)
      continue;
    for (size_t j = 0; j < ne && n < MAX_EXPANSIONS; j++) {
      const syn_entry_t *a = synonyms_entry(syn, j);
      if (j != k && a->group == e->group)
        x[n++] = (expansion_t){.alt = a, .covers = covers};
    }
  }
  return n;
}

/* ---- other ways to hold a question term ---------------------------------------- */

/* Besides holding a question term itself, a unit may hold it another way:
 * through the synonym table or a misspelling, by meeting a quantity the
 * question gives, or as a table's catch-all row. Each way is a matcher:
 * it marks the question terms it finds in a unit as held (direct, full
 * weight) or as held another way (syn, SYN_WEIGHT). They run in table
 * order after every unit's own terms are known. */
typedef struct match_ctx {
  answer_state_t *st;
  const query_terms_t *q;
  const expansion_t *x; /* synonyms and misspellings lent to the question */
  size_t nx;
  quantity_t asked[MAX_ASKED]; /* quantities the question gives */
  uint64_t asked_terms[MAX_ASKED];
  size_t nasked;
  uint64_t nowhere; /* question terms no unit holds itself */
} match_ctx_t;

typedef struct term_matcher {
  const char *name;
  bool (*wanted)(const match_ctx_t *m); /* NULL: always */
  void (*match)(const match_ctx_t *m, unit_t *u);
} term_matcher_t;

/* An alternative lent to some question terms is held when all its words
 * are in the unit. */
static void match_expansions(const match_ctx_t *m, unit_t *u) {
  for (size_t k = 0; k < m->nx; k++) {
    if (((u->direct | u->syn) & m->x[k].covers) == m->x[k].covers)
      continue;
    size_t t = 0;
    while (t < m->x[k].alt->nterms && unit_has(m->st, u, m->x[k].alt->term[t]))
      t++;
    if (t == m->x[k].alt->nterms)
      u->syn |= m->x[k].covers & ~u->direct;
  }
}

static bool has_asked(const match_ctx_t *m) {
  return m->nasked > 0;
}

/* "13 hours" is held by "longer than 10 hours" (direct): the unit states
 * a bound the question's quantity meets. A quantity of the same measure
 * that it does not meet still speaks to it ("only for flights longer than
 * 10 hours" answers "a 5 hour flight?" with a no; "25 days" answers "do I
 * get 30 days?"), as does a unit of that measure ("per kilometre" for "a
 * 200 km trip"): syn. A rule stated by a
 * bound covers the asker's particular case, so the names in the question
 * that no passage mentions ("my flight to Singapore") count as held by a
 * unit whose bound the quantity meets, at SYN_WEIGHT. */
static void match_quantities(const match_ctx_t *m, unit_t *u) {
  if (u->heading)
    return;
  quantity_t have[MAX_UNIT_QUANTITIES];
  size_t nh = quantity_scan(u->s, u->len, have, MAX_UNIT_QUANTITIES);
  for (size_t a = 0; a < m->nasked; a++) {
    bool same = false;
    for (size_t h = 0; h < nh; h++) {
      if (quantity_meets(&m->asked[a], &have[h])) {
        u->direct |= m->asked_terms[a];
        u->syn |= m->q->named & m->nowhere & ~u->direct;
      } else if (quantity_same_dim(&m->asked[a], &have[h])) {
        same = true;
      }
    }
    /* "a 200 km trip": "0.42 EUR per kilometre" speaks of distance. Time
     * is left out: nearly every rule names a day or an hour. */
    if (!same && strcmp(m->asked[a].dim, "time") != 0)
      same = quantity_mentions(u->s, u->len, m->asked[a].dim);
    if (same)
      u->syn |= m->asked_terms[a] & ~u->direct;
  }
}

static bool has_keys(const match_ctx_t *m) {
  return (m->q->named | m->q->slot) != 0;
}

/* Words of a table's first cell that make its row the one for everything
 * the other rows do not name: "anywhere else", "all other countries",
 * "default", "otherwise". */
static const char *const CATCH_ALL_WORDS[] = {"else",    "elsewhere", "otherwise",
                                              "default", "other",     "others",
                                              "rest",    "remaining", NULL};

static bool catch_all_row(const unit_t *u) {
  const char *s = u->s, *end = u->s + u->len;
  while (s < end && (*s == '|' || is_space(*s)))
    s++;
  const char *cell_end = memchr(s, '|', (size_t)(end - s));
  if (!cell_end)
    return false;
  for (const char *w = s; w < cell_end;) {
    while (w < cell_end && is_space(*w))
      w++;
    const char *e = w;
    while (e < cell_end && !is_space(*e))
      e++;
    for (size_t i = 0; CATCH_ALL_WORDS[i]; i++)
      if (strlen(CATCH_ALL_WORDS[i]) == (size_t)(e - w) &&
          strncasecmp(w, CATCH_ALL_WORDS[i], (size_t)(e - w)) == 0)
        return true;
    w = e;
  }
  return false;
}

/* A table's catch-all row ("anywhere else | 150 EUR") holds what the
 * question names or places after a preposition ("a hotel in Lisbon")
 * when no unit holds it: not another row, not what introduces the table
 * (its header, the sentence before it, the heading), not another passage
 * ("the rate limit on the Growth plan" is not about the hotel table's
 * other cities when the Growth plan is written about elsewhere). */
static void match_catch_all(const match_ctx_t *m, unit_t *u) {
  if (!u->row || u->header || u->ctx2 == NO_UNIT || !catch_all_row(u))
    return;
  const answer_state_t *st = m->st;
  uint64_t keys = m->q->named | m->q->slot, held = 0;
  for (size_t i = u->ctx2; i < st->n && st->u[i].passage == u->passage; i++) {
    const unit_t *r = &st->u[i];
    if (i != u->ctx2 && r->ctx2 != u->ctx2)
      break; /* the rows of one table follow its header */
    held |= r->direct | r->syn;
  }
  size_t intro[3] = {u->ctx, u->head, u->title};
  for (size_t k = 0; k < 3; k++)
    if (intro[k] != NO_UNIT)
      held |= st->u[intro[k]].direct | st->u[intro[k]].syn;
  u->direct |= keys & ~held & m->nowhere;
}

static const term_matcher_t MATCHERS[] = {
    {"synonyms and misspellings", NULL, match_expansions},
    {"quantities", has_asked, match_quantities},
    {"catch-all rows", has_keys, match_catch_all},
};

/* Question terms no unit holds that are likely misspellings of a word
 * the units use ("adress" -> "address"), or another form of it the
 * stemmer keeps apart ("short" -> "shorter"), get that word as an
 * alternative, as a synonym would. Returns the expansions added to x. */
static size_t typo_expansions(const answer_state_t *st, const query_terms_t *q,
                              expansion_t *x, size_t room, syn_entry_t *alts) {
  uint64_t held = 0;
  for (size_t i = 0; i < st->n; i++)
    held |= st->u[i].direct;
  size_t n = 0;
  for (size_t t = 0; t < q->n && n < room && n < MAX_TYPO_ALTS; t++) {
    if (held & (1ull << t) || strlen(q->term[t]) < TYPO_MIN_LEN)
      continue;
    size_t first = n;
    for (const char *p = st->pool.data, *end = st->pool.data + st->pool.len;
         p < end && n < room && n < MAX_TYPO_ALTS; p += strlen(p) + 1) {
      if (!typo_near(q->term[t], p) && !typo_derived(q->term[t], p))
        continue;
      bool seen = false;
      for (size_t k = first; k < n && !seen; k++)
        seen = strcmp(alts[k].term[0], p) == 0;
      if (seen)
        continue;
      alts[n] = (syn_entry_t){.term = {p}, .nterms = 1};
      x[n] = (expansion_t){.alt = &alts[n], .covers = 1ull << t};
      n++;
    }
  }
  return n;
}

typedef struct asked_terms {
  const query_terms_t *q;
  uint64_t mask;
} asked_terms_t;

static int asked_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  asked_terms_t *a = ud;
  size_t i = query_term_index(a->q, term);
  if (i != NO_UNIT)
    a->mask |= 1ull << i;
  return 0;
}

/* The quantities of the question and the terms each is written with. */
static void read_asked(match_ctx_t *m, const char *query) {
  m->nasked = quantity_scan(query, strlen(query), m->asked, MAX_ASKED);
  for (size_t a = 0; a < m->nasked; a++) {
    asked_terms_t at = {.q = m->q};
    q_text_terms(query + m->asked[a].start, m->asked[a].end - m->asked[a].start,
                 asked_term_cb, &at);
    m->asked_terms[a] = at.mask;
  }
}

/* ---- output ------------------------------------------------------------------ */

/* Appends one word of a quoted sentence. Bracketed numbers in the source
 * text ("as shown in [12]") become "(12)": in the answer, [n] must only
 * ever be this answer's own citation markers. */
static void append_word(q_buf_t *out, const char *w, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t j = i + 1;
    if (w[i] == '[') {
      while (j < n && w[j] >= '0' && w[j] <= '9')
        j++;
      if (j > i + 1 && j < n && w[j] == ']') {
        q_buf_puts(out, "(");
        q_buf_append(out, w + i + 1, j - i - 1);
        q_buf_puts(out, ")");
        i = j + 1;
        continue;
      }
      j = i + 1;
    }
    q_buf_append(out, w + i, j - i);
    i = j;
  }
}

/* Appends a sentence with its white space collapsed, cut to at most
 * max_words words and MAX_SENTENCE_OUT bytes (at a word boundary, so UTF-8
 * stays whole). Returns the words written. */
static int append_sentence(q_buf_t *out, const char *text, size_t len, int max_words) {
  int words = 0;
  size_t written = 0;
  size_t i = 0;

  while (i < len) {
    while (i < len && is_space(text[i]))
      i++;
    size_t start = i;
    while (i < len && !is_space(text[i]))
      i++;
    size_t wl = i - start;
    if (wl == 0)
      break;
    if (words == max_words || (words > 0 && written + 1 + wl > MAX_SENTENCE_OUT)) {
      q_buf_puts(out, "..."); /* glued on: the word count stays the same */
      break;
    }
    if (words > 0)
      q_buf_puts(out, " ");
    if (wl > MAX_SENTENCE_OUT) {
      /* One enormous "word" (a URL, base64): cut it at a code point. */
      wl = q_text_cut(text + start, wl, MAX_SENTENCE_OUT);
    }
    append_word(out, text + start, wl);
    written += wl + (words > 0);
    words++;
  }
  return words;
}

q_err_t gen_emit_words(const char *answer, size_t len, gen_emit_cb emit, void *ud) {
  size_t i = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && !is_space(answer[i]))
      i++;
    while (i < len && is_space(answer[i]))
      i++;
    if (emit(answer + start, i - start, ud))
      return Q_ECANCELLED;
  }
  return 0;
}

/* Quotes unit u, after the unit it leans on when that one carries part of
 * the match (a table row after the sentence that says what the table is;
 * "Acknowledge within 15 minutes." after "SEV2: degraded service ...").
 * Returns the words written. */
static int quote_unit(q_buf_t *out, const answer_state_t *st, const unit_t *u, int room) {
  int used = 0;
  if (u->ctx != NO_UNIT) {
    const unit_t *c = &st->u[u->ctx];
    uint64_t lent = (c->direct | c->syn) & ~(u->direct | u->syn);
    bool echo = c->novel < (size_t)__builtin_popcountll(c->direct);
    if (!c->heading && !c->question && !c->row && !echo && c->words <= 40 &&
        (lent || u->row) && room > c->words + 1) {
      used += append_sentence(out, c->s, c->len, room);
      q_buf_puts(out, " ");
    }
  }
  used += append_sentence(out, u->s, u->len, room - used > 1 ? room - used : 1);
  return used;
}

static void score_units(answer_state_t *st, const query_terms_t *q, qtype_t qt) {
  double df[MAX_QUERY_TERMS] = {0}, idf[MAX_QUERY_TERMS], total = 0;
  for (size_t i = 0; i < st->n; i++)
    for (size_t t = 0; t < q->n; t++)
      if ((st->u[i].direct | st->u[i].syn) & (1ull << t))
        df[t] += 1;
  /* What each passage holds anywhere: a passage is one section, about
   * one thing. */
  uint64_t *pheld = calloc(st->n ? st->u[st->n - 1].passage + 1 : 1, sizeof *pheld);
  if (!pheld)
    return;
  for (size_t i = 0; i < st->n; i++)
    pheld[st->u[i].passage] |= st->u[i].direct;
  for (size_t t = 0; t < q->n; t++) {
    idf[t] = log(1.0 + (st->n - df[t] + 0.5) / (df[t] + 0.5));
    if (is_light(q->term[t]))
      idf[t] *= LIGHT_WEIGHT;
    total += idf[t];
  }
  unsigned wants = qtype_wants(qt);
  bool strict = qtype_strict(qt);
  uint64_t asked = q->head & ~q->tail & ~attribute_terms(q);
  for (size_t i = 0; i < st->n && total > 0; i++) {
    unit_t *u = &st->u[i];
    if (u->heading || u->question || u->header || (u->direct | u->syn) == 0)
      continue; /* fit stays 0: never picked */
    uint64_t cdirect = 0, csyn = 0, tdirect = 0, tsyn = 0;
    size_t ctx[3] = {u->ctx, u->ctx2, u->head};
    for (size_t k = 0; k < 3; k++)
      if (ctx[k] != NO_UNIT && st->u[ctx[k]].passage == u->passage) {
        cdirect |= st->u[ctx[k]].direct;
        csyn |= st->u[ctx[k]].syn;
      }
    if (u->title != NO_UNIT) {
      tdirect = st->u[u->title].direct;
      tsyn = st->u[u->title].syn;
    }
    double w = 0;
    for (size_t t = 0; t < q->n; t++) {
      uint64_t b = 1ull << t;
      double m = (u->direct & b) ? 1.0 : (u->syn & b) ? SYN_WEIGHT : 0.0;
      if ((cdirect | csyn) & b)
        m = fmax(m, CONTEXT_WEIGHT * ((cdirect & b) ? 1.0 : SYN_WEIGHT));
      if ((tdirect | tsyn) & b)
        m = fmax(m, TITLE_WEIGHT * ((tdirect & b) ? 1.0 : SYN_WEIGHT));
      if (pheld[u->passage] & b)
        m = fmax(m, PASSAGE_WEIGHT);
      w += m * idf[t];
    }
    if (w / total < MIN_FIT_KIND)
      continue; /* cannot reach the threshold: fit stays 0 */
    /* What the unit holds is looked at only now, for the few that may. */
    u->kinds = qtype_kinds(u->s, u->len);
    /* A count answers "how many" only when it counts what was asked. */
    bool has_kind = u->has_kind =
        qt == QTYPE_HOW_MANY ? u->counted : (u->kinds & wants) != 0;
    u->fit = w / total;
    if (strict && !has_kind)
      u->fit *= STRICT_FACTOR;
    if (q->named & ~(u->direct | u->syn | cdirect | csyn | tdirect | tsyn))
      u->fit *= NAMED_FACTOR;
    /* A unit about what the question asks it of, but not about what it
     * asks ("The Growth plan costs 49 USD" for "the refund policy for the
     * Growth plan"), does not answer it. Words naming the kind of answer
     * ("the length of") are not what it asks. */
    if (heavy_terms(q, asked) && heavy_terms(q, q->tail & ~q->head) &&
        !((u->direct | u->syn | cdirect | csyn) & asked))
      u->fit *= NAMED_FACTOR;
    u->score = u->fit + (has_kind ? TYPE_BONUS : 0) + NOVELTY_WEIGHT * u->novelty +
               0.02 / (1.0 + u->pos) + 0.03 / (1.0 + u->passage);
    if (u->words < 3 && !u->row)
      u->score *= 0.7;
    /* An echo - fewer new terms than terms of the question - restates
     * what was asked ("This section describes the refund policy"): a
     * sentence that adds something answers better. Yes/no questions are
     * answered by the very claim they ask about. */
    if (qt != QTYPE_YESNO && u->novel < (size_t)__builtin_popcountll(u->direct))
      u->score -= ECHO_PENALTY;
  }
  free(pheld);
}

static int extractive_generate(const generator_t *g, const char *query,
                               const gen_passage_t *passages, size_t n, int max_tokens,
                               gen_emit_cb emit, void *ud, gen_usage_t *usage, char *err,
                               size_t errlen) {
  const struct gen_extractive *gx = (const struct gen_extractive *)g;
  query_terms_t *q = NULL;
  expansion_t *x = NULL;
  syn_entry_t typo_alts[MAX_TYPO_ALTS];
  answer_state_t st = {0};
  q_buf_t answer;
  size_t picks[MAX_PICKS];
  size_t npicks = 0;
  int rc = 0;

  q_buf_init(&answer, 16u << 10);
  q_buf_init(&st.pool, 16u << 20);
  memset(usage, 0, sizeof *usage);
  usage->prompt_tokens = gen_count_words(query, strlen(query));
  for (size_t p = 0; p < n; p++)
    usage->prompt_tokens += gen_count_words(passages[p].text, passages[p].text_len);

  q = calloc(1, sizeof *q);
  x = calloc(MAX_EXPANSIONS, sizeof *x);
  st.u = calloc(MAX_UNITS, sizeof *st.u);
  if (!q || !x || !st.u) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  q_text_terms(query, strlen(query), query_term_cb, q);
  mark_named(query, strlen(query), q);
  qtype_t qt = qtype_of(query, strlen(query));
  size_t nx = expand_query(gx->syn, q, x);

  if (q->n > 0) {
    for (size_t p = 0; p < n && st.n < MAX_UNITS; p++) {
      st.passage = p;
      split_passage(&st, &passages[p]);
    }
  }
  for (size_t i = 0; i < st.n; i++) {
    unit_t *u = &st.u[i];
    unit_terms_t ut = {.st = &st, .u = u, .q = q};
    u->term_off = st.pool.len;
    q_text_terms(u->s, u->len, unit_term_cb, &ut);
    u->novel = ut.novel;
    u->novelty = u->nterms ? (double)ut.novel / (double)u->nterms : 0;
  }
  nx += typo_expansions(&st, q, x + nx, MAX_EXPANSIONS - nx, typo_alts);
  match_ctx_t *mc = calloc(1, sizeof *mc);
  if (!mc) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  *mc = (match_ctx_t){.st = &st, .q = q, .x = x, .nx = nx, .nowhere = ~0ull};
  for (size_t i = 0; i < st.n; i++)
    mc->nowhere &= ~st.u[i].direct;
  read_asked(mc, query);
  for (size_t k = 0; k < sizeof MATCHERS / sizeof MATCHERS[0]; k++)
    if (!MATCHERS[k].wanted || MATCHERS[k].wanted(mc))
      for (size_t i = 0; i < st.n; i++)
        MATCHERS[k].match(mc, &st.u[i]);
  free(mc);
  score_units(&st, q, qt);

  /* Greedy picks: the best unit, then one more that fits nearly as well. */
  double best_fit = 0;
  while (npicks < MAX_PICKS) {
    double best = -1;
    size_t bi = 0;
    for (size_t i = 0; i < st.n; i++) {
      const unit_t *u = &st.u[i];
      /* A second citation must be worth it: nearly as good from the same
       * passage, at least as good from another. */
      double need = npicks == 0 ? (u->has_kind ? MIN_FIT_KIND : MIN_FIT)
                    : u->passage == st.u[picks[0]].passage
                        ? fmax(MIN_FIT, FOLLOW_SHARE * best_fit)
                        : fmax(MIN_FIT, best_fit);
      if (u->fit < need)
        continue;
      int dup = 0;
      for (size_t k = 0; k < npicks; k++) {
        const unit_t *p = &st.u[picks[k]];
        if (p == u || u->ctx == picks[k] || p->ctx == i ||
            (p->len == u->len && memcmp(p->s, u->s, u->len) == 0))
          dup = 1;
      }
      if (dup || u->score <= best)
        continue;
      best = u->score;
      bi = i;
    }
    if (best < 0)
      break;
    if (npicks == 0)
      best_fit = st.u[bi].fit;
    picks[npicks++] = bi;
  }

  if (npicks == 0) {
    q_buf_puts(&answer, NO_ANSWER);
  } else {
    int budget = max_tokens > 0 ? max_tokens : INT32_MAX;
    int used = 0;
    for (size_t k = 0; k < npicks; k++) {
      const unit_t *u = &st.u[picks[k]];
      /* The marker counts as a word; the first unit always gets at least
       * one word so the answer is never a bare marker. */
      int room = budget - used - 1;
      if (room < 1) {
        if (k > 0)
          break;
        room = 1;
      }
      if (k > 0)
        q_buf_puts(&answer, " ");
      used += quote_unit(&answer, &st, u, room);
      q_buf_printf(&answer, " [%zu]", u->passage + 1);
      used++;
    }
  }

  usage->completion_tokens = gen_count_words(answer.data, answer.len);
  rc = gen_emit_words(answer.data, answer.len, emit, ud);
  if (rc)
    snprintf(err, errlen, "the client went away");
done:
  q_buf_cleanup(&answer);
  q_buf_cleanup(&st.pool);
  free(st.u);
  free(x);
  free(q);
  return rc;
}

static void extractive_free(generator_t *g) {
  struct gen_extractive *gx = (struct gen_extractive *)g;
  synonyms_free(gx->syn);
  free(gx);
}

generator_t *gen_extractive_new(void) {
  char err[256];
  return gen_extractive_new_with(NULL, err, sizeof err);
}

generator_t *gen_extractive_new_with(const char *synonyms_path, char *err,
                                     size_t errlen) {
  struct gen_extractive *gx = calloc(1, sizeof *gx);
  if (!gx) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (synonyms_path && *synonyms_path &&
      synonyms_load(synonyms_path, &gx->syn, err, errlen)) {
    free(gx);
    return NULL;
  }
  gx->g.name = "extractive";
  gx->g.model = "quarry-extractive";
  gx->g.generate = extractive_generate;
  gx->g.free = extractive_free;
  return &gx->g;
}
