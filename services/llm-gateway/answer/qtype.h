/* qtype.h - what kind of answer a question wants, and what kinds of
 * answer a sentence holds.
 *
 * The question's type comes from its wording ("who", "when", "how much",
 * "how many", "how long", "where", a yes/no opening, "what is"); the kinds
 * a sentence holds come from its surface (numbers, currency amounts,
 * durations, clock times and dates, names and roles, e-mail addresses and
 * phone extensions, places). The extractive answerer prefers sentences
 * holding what the question asks for. Pure functions, ASCII rules on UTF-8
 * text (other bytes are neither letters nor digits here). */
#ifndef QUARRY_LLM_QTYPE_H
#define QUARRY_LLM_QTYPE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
  QTYPE_OTHER = 0,
  QTYPE_WHO,        /* a person, role or team */
  QTYPE_WHEN,       /* a date, time or period */
  QTYPE_WHERE,      /* a place, address or tool */
  QTYPE_HOW_MUCH,   /* an amount, usually money */
  QTYPE_HOW_MANY,   /* a count */
  QTYPE_HOW_LONG,   /* a duration or deadline */
  QTYPE_YESNO,      /* "is / can / do ...?" */
  QTYPE_DEFINITION, /* "what is X", "what counts as X" */
  QTYPE_LEAD_TIME,  /* "how far in advance", "how much notice": time before an event */
} qtype_t;

/* Kinds of answer a sentence may hold (bits). */
enum {
  KIND_NUMBER = 1u << 0,     /* a number in digits or words ("25", "two", "fourth") */
  KIND_AMOUNT = 1u << 1,     /* a number with a currency ("49 USD", "EUR 5", "$3") */
  KIND_DURATION = 1u << 2,   /* a number with a unit of time ("15 minutes", "2 weeks") */
  KIND_TIME = 1u << 3,       /* a clock time, weekday, month or year */
  KIND_PERSON = 1u << 4,     /* a name ("Priya Raman") or a role ("manager", "CFO") */
  KIND_CONTACT = 1u << 5,    /* an e-mail address, phone number or extension */
  KIND_PLACE = 1u << 6,      /* a region, city or named place */
  KIND_DEFINITION = 1u << 7, /* "X is a ...", "X means ..." */
  KIND_LEAD =
      1u << 8, /* a duration before something ("14 days before", "2 weeks in advance") */
};

/* The type of question q[0..n). */
qtype_t qtype_of(const char *q, size_t n);

/* The kinds of answer each type looks for (KIND_* bits; 0 for none). */
unsigned qtype_wants(qtype_t t);

/* True when a sentence without any wanted kind cannot answer a question
 * of type t (a "how many" question needs a number), so such sentences
 * rank low; false when the kind is only a hint (a "where" answer may be a
 * tool's name). */
bool qtype_strict(qtype_t t);

/* The kinds of answer s[0..n) holds (KIND_* bits). */
unsigned qtype_kinds(const char *s, size_t n);

/* A short name for logs and tests: "who", "how_much", ... */
const char *qtype_name(qtype_t t);

#endif
