/* qtype.c - question types and answer kinds (see qtype.h).
 *
 * Both work on words: maximal runs of ASCII letters, digits and the few
 * marks that belong inside a word ("10:00", "0.42", "a@b.example",
 * "sign-on", "what's"). Word lists are small and English; what they miss
 * only costs a hint, never an answer. */
#include "answer/qtype.h"

#include <string.h>
#include <strings.h>

#define MAX_WORD 48

typedef struct word {
  char w[MAX_WORD + 1]; /* lower-cased */
  size_t len;
  bool upper;  /* first letter upper case */
  bool first;  /* first word of the text or of a sentence inside it */
  bool clause; /* first word of a clause: after a comma, dash, semicolon */
  bool digit;  /* holds a digit */
} word_t;

static bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static bool is_inner(char c) {
  return c == '.' || c == ':' || c == '@' || c == '-' || c == '\'' || c == '_' ||
         c == ',' || c == '/';
}

static bool is_core(char c) {
  return is_alpha(c) || is_digit(c) || c == '$' || c == '%';
}

/* Reads the next word of s[*i..n) into w; false at the end. A mark stays
 * inside a word only between two letters or digits ("10:00" but not
 * "note:"); a sentence end (". ", "? ", ":" before a line break) makes
 * the next word a first word. */
static bool next_word(const char *s, size_t n, size_t *i, word_t *w, bool *sent_start) {
  size_t k = *i;
  bool clause = false;
  while (k < n && !is_core(s[k])) {
    if (s[k] == ',' || s[k] == ';' || s[k] == '-' || s[k] == ':')
      clause = true;
    if ((s[k] == '.' || s[k] == '?' || s[k] == '!' || s[k] == '\n' || s[k] == '|' ||
         s[k] == ';') &&
        (k + 1 == n || s[k + 1] == ' ' || s[k + 1] == '\n'))
      *sent_start = true;
    if (s[k] == '-' && (k == 0 || s[k - 1] == '\n'))
      *sent_start = true; /* a list item */
    k++;
  }
  if (k == n) {
    *i = k;
    return false;
  }
  size_t start = k;
  while (k < n && (is_core(s[k]) ||
                   (is_inner(s[k]) && k > start && k + 1 < n && is_core(s[k + 1]) &&
                    is_core(s[k - 1]) && !(s[k] == ',' && !is_digit(s[k - 1])))))
    k++;
  memset(w, 0, sizeof *w);
  size_t len = k - start;
  if (len > MAX_WORD)
    len = MAX_WORD;
  for (size_t j = 0; j < len; j++) {
    char c = s[start + j];
    w->digit |= is_digit(c);
    w->w[j] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  w->len = len;
  w->upper = s[start] >= 'A' && s[start] <= 'Z';
  w->first = *sent_start;
  w->clause = clause || *sent_start;
  *sent_start = false;
  *i = k;
  return true;
}

static bool in_list(const char *w, const char *const *list) {
  for (size_t i = 0; list[i]; i++)
    if (strcmp(w, list[i]) == 0)
      return true;
  return false;
}

/* ---- question types --------------------------------------------------------- */

#define MAX_QWORDS 64

static const char *const AMOUNT_CUES[] = {
    "cost",    "costs", "price",  "prices", "spend",     "limit", "limits",  "cap",
    "rate",    "fee",   "fees",   "budget", "allowance", "diem",  "maximum", "max",
    "minimum", "min",   "length", "salary", "charge",    "much",  NULL};
static const char *const TIME_CUES[] = {"hours", "date", "day", "schedule", "time", NULL};
static const char *const DURATION_CUES[] = {"deadline", "notice", "long",    "quickly",
                                            "soon",     "fast",   "advance", NULL};
static const char *const CONTACT_CUES[] = {"email",   "e-mail", "phone", "extension",
                                           "address", "number", NULL};
static const char *const YESNO_OPENERS[] = {
    "is",  "are",   "am",    "was",    "were",   "do",      "does",  "did",
    "can", "could", "will",  "would",  "should", "shall",   "may",   "must",
    "has", "have",  "isn't", "aren't", "don't",  "doesn't", "can't", NULL};
static const char *const WHO_NOUNS[] = {"person", "team",  "manager", "owner", "people",
                                        "one",    "group", "contact", NULL};
static const char *const WHERE_NOUNS[] = {
    "region", "country", "city",    "place", "location", "tool", "system",
    "portal", "channel", "website", "site",  "office",   "app",  NULL};
static const char *const WHEN_NOUNS[] = {"day",  "date", "month", "year",
                                         "time", "week", NULL};

/* Words that make a question about time ask for a lead time: how long
 * before something ("how far in advance", "how much notice"). */
static const char *const LEAD_CUES[] = {"advance", "ahead",  "beforehand",
                                        "prior",   "notice", NULL};
/* ... and what says a duration is one: "14 days before departure". */
static const char *const LEAD_WORDS[] = {"before", "prior",      "ahead",   "advance",
                                         "notice", "beforehand", "earlier", NULL};

static qtype_t type_of(const word_t *w, size_t nw);

qtype_t qtype_of(const char *q, size_t n) {
  word_t w[MAX_QWORDS];
  size_t nw = 0, i = 0;
  bool ss = true;
  while (nw < MAX_QWORDS && next_word(q, n, &i, &w[nw], &ss))
    nw++;
  qtype_t t = type_of(w, nw);
  if (t == QTYPE_HOW_LONG || t == QTYPE_WHEN)
    for (size_t k = 0; k < nw; k++)
      if (in_list(w[k].w, LEAD_CUES))
        return QTYPE_LEAD_TIME;
  return t;
}

static qtype_t type_of(const word_t *w, size_t nw) {
  /* An interrogative that opens the question or one of its clauses, the
   * first one wins: "who do I tell and by when", but not the "when" of
   * "the meal allowance when travelling". */
  for (size_t k = 0; k < nw; k++) {
    const char *a = w[k].w;
    const char *b = k + 1 < nw ? w[k + 1].w : "";
    bool opens = w[k].clause ||
                 (k > 0 && (!strcmp(w[k - 1].w, "and") || !strcmp(w[k - 1].w, "or") ||
                            !strcmp(w[k - 1].w, "but")));
    if (!opens)
      continue;
    if (!strcmp(a, "who") || !strcmp(a, "whom") || !strcmp(a, "whose"))
      return QTYPE_WHO;
    if (!strcmp(a, "when"))
      return QTYPE_WHEN;
    if (!strcmp(a, "where"))
      return QTYPE_WHERE;
    if (!strcmp(a, "how")) {
      if (!strcmp(b, "much")) {
        const char *c = k + 2 < nw ? w[k + 2].w : "";
        if (!strcmp(c, "notice") || !strcmp(c, "time") || !strcmp(c, "longer"))
          return QTYPE_HOW_LONG;
        return QTYPE_HOW_MUCH;
      }
      if (!strcmp(b, "many"))
        return QTYPE_HOW_MANY;
      if (!strcmp(b, "often"))
        return QTYPE_WHEN;
      if (in_list(b, DURATION_CUES) || !strcmp(b, "far"))
        return QTYPE_HOW_LONG;
      continue; /* "how do I ..." says how, not what kind */
    }
    if (!strcmp(a, "which") || !strcmp(a, "what")) {
      if (in_list(b, WHO_NOUNS))
        return QTYPE_WHO;
      if (in_list(b, WHERE_NOUNS))
        return QTYPE_WHERE;
      if (in_list(b, WHEN_NOUNS))
        return QTYPE_WHEN;
    }
  }
  /* "In which region ...": a "which" anywhere still names its noun. */
  for (size_t k = 0; k + 1 < nw; k++)
    if (!strcmp(w[k].w, "which")) {
      if (in_list(w[k + 1].w, WHO_NOUNS))
        return QTYPE_WHO;
      if (in_list(w[k + 1].w, WHERE_NOUNS))
        return QTYPE_WHERE;
    }
  /* A clause that opens like a yes/no question: "..., am I allowed to". */
  for (size_t k = 0; k < nw; k++)
    if (w[k].clause && in_list(w[k].w, YESNO_OPENERS))
      return QTYPE_YESNO;
  /* No interrogative that names a kind: cue words anywhere. */
  for (size_t k = 0; k < nw; k++) {
    if (in_list(w[k].w, AMOUNT_CUES))
      return QTYPE_HOW_MUCH;
    if (!strcmp(w[k].w, "deadline") || !strcmp(w[k].w, "notice"))
      return QTYPE_HOW_LONG;
  }
  for (size_t k = 0; k < nw; k++) {
    if (in_list(w[k].w, CONTACT_CUES))
      return QTYPE_WHERE;
    if (in_list(w[k].w, TIME_CUES))
      return QTYPE_WHEN;
  }
  /* "what is X" with a short X asks what X is. */
  if (nw >= 2 && nw <= 5 &&
      (!strcmp(w[0].w, "what's") || !strcmp(w[0].w, "whats") ||
       (!strcmp(w[0].w, "what") &&
        (!strcmp(w[1].w, "is") || !strcmp(w[1].w, "are") || !strcmp(w[1].w, "counts")))))
    return QTYPE_DEFINITION;
  if (nw >= 1 && !strcmp(w[0].w, "define"))
    return QTYPE_DEFINITION;
  return QTYPE_OTHER;
}

unsigned qtype_wants(qtype_t t) {
  switch (t) {
  case QTYPE_WHO: return KIND_PERSON | KIND_CONTACT;
  case QTYPE_WHEN: return KIND_TIME | KIND_DURATION;
  case QTYPE_WHERE: return KIND_PLACE | KIND_CONTACT;
  case QTYPE_HOW_MUCH: return KIND_AMOUNT | KIND_NUMBER;
  case QTYPE_HOW_MANY: return KIND_NUMBER;
  case QTYPE_HOW_LONG: return KIND_DURATION | KIND_TIME;
  case QTYPE_DEFINITION: return KIND_DEFINITION;
  case QTYPE_LEAD_TIME: return KIND_LEAD;
  default: return 0;
  }
}

bool qtype_strict(qtype_t t) {
  return t == QTYPE_WHEN || t == QTYPE_HOW_MUCH || t == QTYPE_HOW_MANY ||
         t == QTYPE_HOW_LONG || t == QTYPE_LEAD_TIME;
}

const char *qtype_name(qtype_t t) {
  static const char *const names[] = {"other",      "who",      "when",     "where",
                                      "how_much",   "how_many", "how_long", "yes_no",
                                      "definition", "lead_time"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "other";
}

/* ---- answer kinds ------------------------------------------------------------ */

static const char *const NUMBER_WORDS[] = {
    "one",     "two",      "three",  "four",   "five",   "six",    "seven", "eight",
    "nine",    "ten",      "eleven", "twelve", "twenty", "thirty", "forty", "fifty",
    "hundred", "thousand", "first",  "second", "third",  "fourth", "fifth", "sixth",
    "dozen",   "half",     "once",   "twice",  NULL};
static const char *const CURRENCIES[] = {
    "usd", "eur",     "gbp",    "chf",   "jpy",  "cad",    "aud",   "$", "€",
    "£",   "dollars", "dollar", "euros", "euro", "pounds", "cents", NULL};
static const char *const TIME_UNITS[] = {
    "second", "seconds", "minute", "minutes", "min",  "mins",  "hour",  "hours",
    "hrs",    "hr",      "day",    "days",    "week", "weeks", "month", "months",
    "year",   "years",   "night",  "nights",  "h",    "d",     NULL};
static const char *const TIME_WORDS[] = {
    "monday",    "tuesday",  "wednesday", "thursday", "friday",  "saturday", "sunday",
    "january",   "february", "march",     "april",    "june",    "july",     "august",
    "september", "october",  "november",  "december", "utc",     "cet",      "gmt",
    "noon",      "midnight", "weekly",    "daily",    "monthly", "yearly",   "annually",
    "christmas", "tomorrow", "today",     "morning",  "evening", NULL};
static const char *const ROLES[] = {
    "manager",  "commander",  "head",    "cfo",           "ceo",        "cto",
    "director", "lead",       "led",     "owner",         "team",       "secondary",
    "primary",  "desk",       "officer", "administrator", "admin",      "supervisor",
    "host",     "operations", "hr",      "engineer",      "department", NULL};
static const char *const PLACES[] = {"region",   "city",    "office",  "portal",
                                     "tool",     "channel", "room",    "reception",
                                     "building", "site",    "country", NULL};

static bool is_number_word(const word_t *w) {
  return w->digit || in_list(w->w, NUMBER_WORDS);
}

unsigned qtype_kinds(const char *s, size_t n) {
  unsigned k = 0;
  size_t i = 0;
  bool ss = true;
  word_t prev2 = {0}, prev = {0}, w;
  bool have_prev = false, have_prev2 = false;
  int since_duration = -1; /* words since the last duration; -1: none yet */
  while (next_word(s, n, &i, &w, &ss)) {
    if (since_duration >= 0)
      since_duration++;
    if (since_duration >= 1 && since_duration <= 3 && in_list(w.w, LEAD_WORDS))
      k |= KIND_LEAD; /* "14 days before", "2 weeks in advance" */
    bool num = is_number_word(&w);
    if (num)
      k |= KIND_NUMBER;
    if (w.digit) {
      const char *colon = strchr(w.w, ':');
      if (colon && colon > w.w && is_digit(colon[1]))
        k |= KIND_TIME; /* 10:00 */
      if (w.len == 4 && (strncmp(w.w, "19", 2) == 0 || strncmp(w.w, "20", 2) == 0) &&
          is_digit(w.w[2]) && is_digit(w.w[3]))
        k |= KIND_TIME; /* a year */
      if (w.w[0] == '$')
        k |= KIND_AMOUNT;
      if (strchr(w.w, '@'))
        k |= KIND_CONTACT;
    }
    if (strchr(w.w, '@') && strchr(strchr(w.w, '@'), '.'))
      k |= KIND_CONTACT; /* an e-mail address */
    if (in_list(w.w, CURRENCIES) &&
        ((have_prev && is_number_word(&prev)) || (num && have_prev)))
      k |= KIND_AMOUNT;
    if (have_prev && in_list(prev.w, CURRENCIES) && num)
      k |= KIND_AMOUNT; /* EUR 5 */
    if (in_list(w.w, TIME_UNITS) && ((have_prev && is_number_word(&prev)) ||
                                     (have_prev2 && is_number_word(&prev2)))) {
      k |= KIND_DURATION; /* "15 minutes", "5 working days" */
      since_duration = 0;
    }
    if (in_list(w.w, TIME_WORDS))
      k |= KIND_TIME;
    if (have_prev &&
        (!strcmp(prev.w, "extension") || !strcmp(prev.w, "ext") ||
         !strcmp(prev.w, "phone")) &&
        w.digit)
      k |= KIND_CONTACT;
    if (in_list(w.w, ROLES))
      k |= KIND_PERSON;
    if (in_list(w.w, PLACES))
      k |= KIND_PLACE;
    /* Names: a capitalized word inside a sentence is a name of something
     * (a place, a tool); two in a row, of someone. */
    if (w.upper && !w.first && !w.digit) {
      k |= KIND_PLACE;
      if (have_prev && prev.upper && !prev.first && !prev.digit)
        k |= KIND_PERSON;
    }
    if ((!strcmp(w.w, "a") || !strcmp(w.w, "an")) && have_prev &&
        (!strcmp(prev.w, "is") || !strcmp(prev.w, "are")))
      k |= KIND_DEFINITION;
    if (!strcmp(w.w, "means") || !strcmp(w.w, "refers"))
      k |= KIND_DEFINITION;
    prev2 = prev;
    have_prev2 = have_prev;
    prev = w;
    have_prev = true;
  }
  return k;
}
