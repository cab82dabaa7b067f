/* Tests of the built-in extractive answerer. */
#include "provider.h"

#include "quarry/error.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char NO_ANSWER[] =
    "The provided documents do not contain an answer to this question.";

typedef struct collected {
  char text[8192];
  size_t len;
  int pieces;
  int stop_after; /* 0: never stop */
} collected_t;

static int collect_cb(const char *piece, size_t len, void *ud) {
  collected_t *c = ud;
  cr_assert_lt(c->len + len, sizeof c->text);
  memcpy(c->text + c->len, piece, len);
  c->len += len;
  c->text[c->len] = '\0';
  c->pieces++;
  return c->stop_after && c->pieces >= c->stop_after;
}

static generator_t *g;

static void setup(void) {
  g = gen_extractive_new();
  cr_assert_not_null(g);
}

static void teardown(void) {
  g->free(g);
}

TestSuite(gen_extractive, .init = setup, .fini = teardown);

static gen_passage_t P(const char *title, const char *text) {
  gen_passage_t p = {title, text, strlen(text)};
  return p;
}

static int answer(const char *query, const gen_passage_t *ps, size_t n, int max_tokens,
                  collected_t *c, gen_usage_t *u) {
  char err[256] = "";
  memset(c, 0, sizeof *c);
  return g->generate(g, query, ps, n, max_tokens, collect_cb, c, u, err, sizeof err);
}

/* Every [n] in s must be 1..n; returns how many there are. */
static int check_markers(const char *s, size_t n) {
  int count = 0;
  for (const char *p = strchr(s, '['); p; p = strchr(p + 1, '[')) {
    char *end;
    long v = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end != ']')
      continue;
    cr_assert(v >= 1 && (size_t)v <= n, "marker [%ld] outside 1..%zu in: %s", v, n, s);
    count++;
  }
  return count;
}

static const gen_passage_t *corpus(size_t *n) {
  static gen_passage_t ps[4];
  ps[0] =
      P("Install guide", "Quarry runs on Debian. Install the packages with make deps. "
                         "The build needs gcc and protoc-c.");
  ps[1] = P("Geography",
            "France is a country in Western Europe. Paris is the capital of France "
            "and its largest city. The Loire is the longest river in France.");
  ps[2] = P("Cooking", "Bread needs flour, water, salt and yeast. Knead the dough for "
                       "ten minutes, then let it rise.");
  ps[3] = P("Rivers", "The Danube flows through ten countries. It empties into the "
                      "Black Sea.");
  *n = 4;
  return ps;
}

Test(gen_extractive, picks_the_right_sentence) {
  size_t n;
  const gen_passage_t *ps = corpus(&n);
  collected_t c;
  gen_usage_t u;
  cr_assert_eq(answer("What is the capital of France?", ps, n, 0, &c, &u), 0);
  cr_assert(strncmp(c.text, "Paris is the capital of France and its largest city. [2]",
                    56) == 0,
            "answer should open with the Paris sentence, got: %s", c.text);
  cr_assert_geq(check_markers(c.text, n), 1);
  cr_assert_null(strstr(c.text, "Bread"), "unrelated sentence quoted: %s", c.text);
}

Test(gen_extractive, markers_follow_each_sentence_and_are_valid) {
  size_t n;
  const gen_passage_t *ps = corpus(&n);
  collected_t c;
  gen_usage_t u;
  cr_assert_eq(answer("Which river flows through ten countries?", ps, n, 0, &c, &u), 0);
  int markers = check_markers(c.text, n);
  cr_assert_geq(markers, 1, "no markers in: %s", c.text);
  cr_assert_leq(markers, 3);
  cr_assert(strstr(c.text, "[4]") != NULL, "the Danube passage must be cited: %s",
            c.text);
  /* The answer ends with a marker: every quoted sentence is followed by one. */
  cr_assert_eq(c.text[c.len - 1], ']', "answer does not end with a marker: %s", c.text);
}

Test(gen_extractive, no_answer_is_honest) {
  size_t n;
  const gen_passage_t *ps = corpus(&n);
  collected_t c;
  gen_usage_t u;
  cr_assert_eq(answer("How fast is a cheetah sprinting?", ps, n, 0, &c, &u), 0);
  cr_assert_str_eq(c.text, NO_ANSWER);
  cr_assert_eq(check_markers(c.text, n), 0);

  /* Half a match is no answer: nothing here is about Germany, so the
   * sentence about France's capital must not be passed off as one. */
  cr_assert_eq(answer("What is the capital of Germany?", ps, n, 0, &c, &u), 0);
  cr_assert_str_eq(c.text, NO_ANSWER);

  /* Nothing to search at all, and a query of stopwords only. */
  cr_assert_eq(answer("What is Quarry?", NULL, 0, 0, &c, &u), 0);
  cr_assert_str_eq(c.text, NO_ANSWER);
  cr_assert_eq(answer("what is it", ps, n, 0, &c, &u), 0);
  cr_assert_str_eq(c.text, NO_ANSWER);
}

Test(gen_extractive, streams_words_and_counts_usage) {
  size_t n;
  const gen_passage_t *ps = corpus(&n);
  collected_t c;
  gen_usage_t u;
  cr_assert_eq(answer("How do I install Quarry packages?", ps, n, 0, &c, &u), 0);
  int words = 0;
  for (size_t i = 0; i < c.len; i++)
    if (!isspace((unsigned char)c.text[i]) &&
        (i == 0 || isspace((unsigned char)c.text[i - 1])))
      words++;
  cr_assert_eq(c.pieces, words, "one piece per word expected");
  cr_assert_eq(u.completion_tokens, words);
  cr_assert_gt(u.prompt_tokens, 40);
  cr_assert(strstr(c.text, "make deps") != NULL, "got: %s", c.text);
  cr_assert(strstr(c.text, "[1]") != NULL, "got: %s", c.text);
}

Test(gen_extractive, prefers_distinct_passages) {
  gen_passage_t ps[3];
  ps[0] = P("a", "Backups run nightly at two. Backups are kept for thirty days in "
                 "object storage.");
  ps[1] = P("b", "Backups can be restored with the restore command from any "
                 "retained day.");
  ps[2] = P("c", "Unrelated words about gardening and tomatoes.");
  collected_t c;
  gen_usage_t u;
  cr_assert_eq(answer("how are backups kept and restored", ps, 3, 0, &c, &u), 0);
  cr_assert(strstr(c.text, "[1]") && strstr(c.text, "[2]"), "both passages: %s", c.text);
  cr_assert_null(strstr(c.text, "[3]"), "got: %s", c.text);
}

Test(gen_extractive, max_tokens_caps_the_answer) {
  size_t n;
  const gen_passage_t *ps = corpus(&n);
  collected_t c;
  gen_usage_t u;
  cr_assert_eq(answer("What is the capital of France?", ps, n, 5, &c, &u), 0);
  cr_assert_leq(u.completion_tokens, 5, "got %d words: %s", u.completion_tokens, c.text);
  cr_assert(strstr(c.text, "[2]") != NULL, "even a cut answer cites: %s", c.text);
}

Test(gen_extractive, duplicate_passages_are_not_repeated) {
  gen_passage_t ps[2];
  ps[0] = P("x", "The retention period for audit logs is ninety days.");
  ps[1] = ps[0];
  collected_t c;
  gen_usage_t u;
  cr_assert_eq(answer("audit logs retention period", ps, 2, 0, &c, &u), 0);
  cr_assert_eq(check_markers(c.text, 2), 1, "same sentence quoted twice: %s", c.text);
}

Test(gen_extractive, stops_when_the_client_goes_away) {
  size_t n;
  const gen_passage_t *ps = corpus(&n);
  collected_t c;
  gen_usage_t u;
  char err[128];
  memset(&c, 0, sizeof c);
  c.stop_after = 2;
  cr_assert_eq(g->generate(g, "What is the capital of France?", ps, n, 0, collect_cb, &c,
                           &u, err, sizeof err),
               Q_ECANCELLED);
  cr_assert_eq(c.pieces, 2);
}

Test(gen_extractive, source_brackets_never_look_like_markers) {
  gen_passage_t ps[1];
  ps[0] = P("paper", "Transformers use self-attention [12] as shown before [3].");
  collected_t c;
  gen_usage_t u;
  cr_assert_eq(answer("what do transformers use", ps, 1, 0, &c, &u), 0);
  cr_assert_eq(check_markers(c.text, 1), 1, "only the answer's own marker: %s", c.text);
  cr_assert(strstr(c.text, "self-attention (12) as shown before (3). [1]") != NULL,
            "got: %s", c.text);
}

/* ---- the answerer with its synonym table, on passages shaped as ingestion
 * makes them ("Title > Section" first, then the section's text) ---------- */

static generator_t *ga;

static void setup_syn(void) {
  char err[256];
  ga = gen_extractive_new_with("services/llm-gateway/prompts/synonyms.txt", err,
                               sizeof err);
  cr_assert_not_null(ga, "%s", err);
}

static void teardown_syn(void) {
  ga->free(ga);
}

TestSuite(answerer, .init = setup_syn, .fini = teardown_syn);

static const gen_passage_t *samples(size_t *n) {
  static gen_passage_t ps[8];
  ps[0] = P("Northwind Travel Policy", "Northwind Travel Policy > Hotels\n\n"
                                       "The nightly hotel limit depends on the city:\n\n"
                                       "city | limit per night\nLondon | 240 GBP\n"
                                       "New York | 310 USD\nanywhere else | 150 EUR");
  ps[1] = P("Northwind Travel Policy",
            "Northwind Travel Policy > Booking\n\nAll flights, trains and hotels are "
            "booked through TripDesk, the company travel portal, at least 14 days before "
            "departure. Bookings made later need written approval from your department "
            "head.");
  ps[2] =
      P("Platform On-Call Runbook",
        "Platform On-Call Runbook > Severity levels\n\n"
        "- SEV1: customer-facing outage or data loss. Acknowledge the page within\n"
        "5 minutes and open an incident. Page the incident commander on duty.\n"
        "- SEV2: degraded service for some customers. Acknowledge within 15 minutes.");
  ps[3] = P("Platform On-Call Runbook",
            "Platform On-Call Runbook > Rotation\n\nThe rotation is weekly. Hand-over "
            "happens every Tuesday at 10:00 UTC in the #platform-oncall channel. The "
            "outgoing engineer writes a hand-over note listing open incidents.");
  ps[4] =
      P("Harborview Analytics FAQ",
        "Harborview Analytics FAQ > What does the free plan include?\n\nThe free "
        "Starter plan includes 3 dashboards and 2 users. The Growth plan costs 49 USD "
        "per month and includes unlimited dashboards.");
  ps[5] = P("Harborview Analytics FAQ",
            "Harborview Analytics FAQ > Do you support single sign-on?\n\nYes. SAML "
            "single sign-on is available on the Enterprise plan only.");
  ps[6] = P("Northwind Leave Policy",
            "Northwind Leave Policy > Company shutdown\n\nThe offices close between "
            "Christmas and New Year. These days come out of the annual leave allowance.");
  ps[7] = P("Northwind Travel Policy",
            "Northwind Travel Policy > Ground transport\n\nTaxis are reimbursed between "
            "airports and hotels. Use of a private car is reimbursed at 0.42 EUR per "
            "kilometre.");
  *n = 8;
  return ps;
}

static void ask(const char *query, collected_t *c) {
  size_t n;
  const gen_passage_t *ps = samples(&n);
  gen_usage_t u;
  char err[256] = "";
  memset(c, 0, sizeof *c);
  cr_assert_eq(ga->generate(ga, query, ps, n, 0, collect_cb, c, &u, err, sizeof err), 0,
               "%s", err);
  check_markers(c->text, n);
}

Test(answerer, paraphrase_how_much_to_spend_on_a_hotel) {
  collected_t c;
  ask("how much can I spend on a hotel in London?", &c);
  cr_assert(strstr(c.text, "London | 240 GBP [1]"), "%s", c.text);
  /* A table row is quoted after the sentence that says what it lists. */
  cr_assert(strstr(c.text, "The nightly hotel limit depends on the city:"), "%s", c.text);
  ask("hotel cap for NYC?", &c); /* "cap" ~ "limit", "NYC" ~ "New York" */
  cr_assert(strstr(c.text, "310 USD [1]"), "%s", c.text);
}

Test(answerer, paraphrase_who_to_call_when_production_is_down) {
  collected_t c;
  ask("Who do I call when production is down at night?", &c);
  cr_assert(strstr(c.text, "Page the incident commander on duty. [3]"), "%s", c.text);
}

Test(answerer, stems_match_other_forms) {
  collected_t c;
  /* "reimbursement" and "reimbursed", "taxis" and "taxi" share stems. */
  ask("reimbursement rules for a taxi", &c);
  cr_assert(strstr(c.text, "Taxis are reimbursed between airports and hotels. [8]"), "%s",
            c.text);
}

Test(answerer, the_kind_of_answer_decides_between_sentences) {
  collected_t c;
  /* Both sentences name the hand-over; only one says when. */
  ask("When is the on-call hand-over?", &c);
  cr_assert(strstr(c.text, "every Tuesday at 10:00 UTC"), "%s", c.text);
  cr_assert_null(strstr(c.text, "hand-over note"), "%s", c.text);
  /* The sentence after its list item's lead, with the lead quoted. */
  ask("response time for sev2", &c);
  cr_assert(strstr(c.text,
                   "SEV2: degraded service for some customers. Acknowledge within "
                   "15 minutes. [3]"),
            "%s", c.text);
}

Test(answerer, adds_information_rather_than_repeating_the_question) {
  gen_passage_t ps[] = {P(
      "Shop help", "This section describes the refund policy for cancelled orders. "
                   "Cancelled orders are refunded to the original card within 14 days.")};
  collected_t c;
  gen_usage_t u;
  char err[256];
  memset(&c, 0, sizeof c);
  cr_assert_eq(ga->generate(ga, "What is the refund policy for cancelled orders?", ps, 1,
                            0, collect_cb, &c, &u, err, sizeof err),
               0);
  cr_assert(strstr(c.text, "refunded to the original card within 14 days"), "%s", c.text);
  cr_assert_null(strstr(c.text, "This section describes"), "%s", c.text);
}

Test(answerer, does_not_know_what_the_passages_do_not_say) {
  collected_t c;
  /* Close matches that answer something else: another holiday, another
   * plan, a count that counts something else. */
  ask("Is the office closed over Easter?", &c);
  cr_assert_str_eq(c.text, NO_ANSWER);
  ask("How much does the Enterprise plan cost?", &c);
  cr_assert_str_eq(c.text, NO_ANSWER);
  ask("How many dashboards does the Enterprise plan include?", &c);
  cr_assert_str_eq(c.text, NO_ANSWER);
  ask("What is the guest wifi password?", &c);
  cr_assert_str_eq(c.text, NO_ANSWER);
  /* ... while what they do say is answered. */
  ask("Are the offices closed over Christmas?", &c);
  cr_assert(strstr(c.text, "[7]"), "%s", c.text);
  ask("How many users are on the free plan?", &c);
  cr_assert(strstr(c.text, "2 users"), "%s", c.text);
}

Test(answerer, a_catch_all_row_answers_for_what_no_row_names) {
  collected_t c;
  ask("nightly hotel limit in Lisbon?", &c);
  cr_assert(strstr(c.text, "anywhere else | 150 EUR [1]"), "%s", c.text);
  ask("what's the hotel limit for paris", &c); /* lower case, after "for" */
  cr_assert(strstr(c.text, "anywhere else | 150 EUR [1]"), "%s", c.text);
  /* A city with a row of its own gets that row. */
  ask("nightly hotel limit in London?", &c);
  cr_assert(strstr(c.text, "London | 240 GBP [1]"), "%s", c.text);
  cr_assert_null(strstr(c.text, "anywhere else"), "%s", c.text);
  /* A name the passages write about elsewhere is not an unlisted city. */
  ask("what is the rate limit on the Growth plan", &c);
  cr_assert_null(strstr(c.text, "anywhere else"), "%s", c.text);
}

static void ask_flights(const char *query, collected_t *c) {
  gen_passage_t ps[] = {
      P("Northwind Travel Policy",
        "Northwind Travel Policy > Flights\n\n"
        "- Flights shorter than 6 hours are booked in economy class.\n"
        "- Flights of 6 hours or more may be booked in premium economy.\n"
        "- Business class is only allowed for flights longer than 10 hours and needs\n"
        "  approval from the CFO."),
      P("Northwind Travel Policy",
        "Northwind Travel Policy > Expenses\n\nSubmit receipts in the Ledgerly expense "
        "tool within 30 days of your return. Claims submitted later than 90 days are not "
        "reimbursed.")};
  gen_usage_t u;
  char err[256] = "";
  memset(c, 0, sizeof *c);
  cr_assert_eq(ga->generate(ga, query, ps, 2, 0, collect_cb, c, &u, err, sizeof err), 0);
}

Test(answerer, a_quantity_is_answered_by_the_bound_it_meets) {
  collected_t c;
  ask_flights("My flight to Singapore is around 13 hours, am I allowed to book business "
              "class?",
              &c);
  cr_assert(strstr(c.text, "longer than 10 hours"), "%s", c.text);
  ask_flights("a 4h flight, which class do I book?", &c);
  cr_assert(strstr(c.text, "shorter than 6 hours"), "%s", c.text);
  cr_assert_null(strstr(c.text, "premium"), "%s", c.text);
  ask_flights("my flight is 8 hours, which class can I book?", &c);
  cr_assert(strstr(c.text, "6 hours or more"), "%s", c.text);
  /* Four months is later than 90 days, not within 30. */
  ask_flights("Can I still claim expenses from four months ago?", &c);
  cr_assert(strstr(c.text, "later than 90 days"), "%s", c.text);
}

Test(answerer, a_quantity_is_answered_by_a_rate_of_its_measure) {
  collected_t c;
  ask("200 km in my own car, what is the rate?", &c);
  cr_assert(strstr(c.text, "0.42 EUR per kilometre. [8]"), "%s", c.text);
}

Test(answerer, a_unit_must_speak_to_what_is_asked_not_only_to_what_of) {
  collected_t c;
  /* "The Growth plan costs 49 USD" is about the Growth plan, not about
   * its refund policy. */
  ask("What is the refund policy for the Growth plan?", &c);
  cr_assert_str_eq(c.text, NO_ANSWER);
  /* ... while what is asked of it is answered. */
  ask("What is the price of the Growth plan?", &c);
  cr_assert(strstr(c.text, "49 USD per month"), "%s", c.text);
  /* Words that name the kind of answer are not what is asked. */
  ask("what is the number of users on the free plan", &c);
  cr_assert(strstr(c.text, "2 users"), "%s", c.text);
}

Test(answerer, a_misspelt_word_matches_the_word_it_misspells) {
  gen_passage_t ps[] = {P("Travel", "Taxis are reimbursed between airports and hotels."),
                        P("Leave", "Request leave in the HR portal.")};
  collected_t c;
  gen_usage_t u;
  char err[256] = "";
  memset(&c, 0, sizeof c);
  cr_assert_eq(ga->generate(ga, "are airprot taxis reimbrused?", ps, 2, 0, collect_cb, &c,
                            &u, err, sizeof err),
               0);
  cr_assert(strstr(c.text, "Taxis are reimbursed between airports and hotels. [1]"), "%s",
            c.text);
  /* Words that are no misspelling of anything there are still missing. */
  memset(&c, 0, sizeof c);
  cr_assert_eq(ga->generate(ga, "are limousines refunded?", ps, 2, 0, collect_cb, &c, &u,
                            err, sizeof err),
               0);
  cr_assert_str_eq(c.text, NO_ANSWER);
}

Test(answerer, a_lead_time_question_wants_the_time_before) {
  collected_t c;
  ask("how far in advance do hotels need to be booked?", &c);
  cr_assert(strstr(c.text, "at least 14 days before departure. [2]"), "%s", c.text);
}

Test(answerer, per_answer_time) {
  size_t n;
  const gen_passage_t *ps = samples(&n);
  const char *qs[] = {"how much can I spend on a hotel in London?",
                      "Who do I call when production is down at night?",
                      "Is the office closed over Easter?", "response time for sev2"};
  collected_t c;
  gen_usage_t u;
  char err[256];
  struct timespec t0, t1;
  int runs = 400;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < runs; i++) {
    memset(&c, 0, sizeof c);
    cr_assert_eq(
        ga->generate(ga, qs[i % 4], ps, n, 0, collect_cb, &c, &u, err, sizeof err), 0);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6) / runs;
  cr_log_info("extractive answer over %zu passages: %.3f ms each", n, ms);
  cr_assert_lt(ms, 50.0, "%.3f ms per answer", ms);
}

Test(answerer, time_at_the_limits) {
  /* The most one Generate call carries: 64 passages, each scanned to
   * 32 KiB, of short sentences that all match the question. */
  static const char *const words[] = {"hotel",  "limit", "call",    "page",   "leave",
                                      "London", "cost",  "manager", "within", "15"};
  gen_passage_t ps[64];
  char *bufs[64];
  unsigned seed = 1;
  for (int p = 0; p < 64; p++) {
    bufs[p] = malloc(33000);
    cr_assert_not_null(bufs[p]);
    size_t o = 0;
    while (o < 32700) {
      int n = 4 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 8;
      for (int w = 0; w < n; w++)
        o += (size_t)sprintf(bufs[p] + o, "%s ",
                             words[((seed = seed * 1103515245u + 12345u) >> 16) % 10]);
      bufs[p][o - 1] = '.';
      bufs[p][o++] = ' ';
    }
    ps[p] = (gen_passage_t){"T", bufs[p], o};
  }
  collected_t c;
  gen_usage_t u;
  char err[256];
  struct timespec t0, t1;
  memset(&c, 0, sizeof c);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  cr_assert_eq(ga->generate(ga, "what is the hotel limit in London", ps, 64, 0,
                            collect_cb, &c, &u, err, sizeof err),
               0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
  cr_log_info("extractive answer over 64 x 32 KiB passages: %.1f ms", ms);
  cr_assert_lt(ms, 5000.0, "%.1f ms", ms);
  check_markers(c.text, 64);
  /* Every matcher at work: a quantity read against every unit, a name,
   * a misspelt word looked up in every passage word. */
  memset(&c, 0, sizeof c);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  cr_assert_eq(ga->generate(ga, "what is the hotle limit in Lisbon for 15 nights", ps, 64,
                            0, collect_cb, &c, &u, err, sizeof err),
               0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
  cr_log_info("... with a quantity, a name and a misspelling: %.1f ms", ms);
  cr_assert_lt(ms, 5000.0, "%.1f ms", ms);
  check_markers(c.text, 64);
  for (int p = 0; p < 64; p++)
    free(bufs[p]);
}
