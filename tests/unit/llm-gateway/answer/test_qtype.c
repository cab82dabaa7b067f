/* Tests of question typing and answer kinds (answer/qtype.h). */
#include "answer/qtype.h"

#include <criterion/criterion.h>
#include <string.h>

static qtype_t T(const char *q) {
  return qtype_of(q, strlen(q));
}

static unsigned K(const char *s) {
  return qtype_kinds(s, strlen(s));
}

#define assert_type(q, want)                                                             \
  cr_assert_eq(T(q), want, "%s: got %s, want %s", q, qtype_name(T(q)), qtype_name(want))

Test(qtype, interrogatives) {
  assert_type("Who do I call when production is down at night?", QTYPE_WHO);
  assert_type("how much can I spend on a hotel in London?", QTYPE_HOW_MUCH);
  assert_type("How many users can I have on the free plan?", QTYPE_HOW_MANY);
  assert_type("How long is maternity leave?", QTYPE_HOW_LONG);
  assert_type("how quickly must a SEV1 page be acknowledged?", QTYPE_HOW_LONG);
  assert_type("how far in advance do flights need to be booked", QTYPE_LEAD_TIME);
  assert_type("how much notice do I need to give", QTYPE_LEAD_TIME);
  assert_type("how long before departure must I book?", QTYPE_HOW_LONG);
  assert_type("When is the on-call hand-over?", QTYPE_WHEN);
  assert_type("Where is my data stored?", QTYPE_WHERE);
  assert_type("In which region is customer data hosted?", QTYPE_WHERE);
  assert_type("Which team owns the database?", QTYPE_WHO);
}

Test(qtype, the_first_clause_opening_wins) {
  /* "when" inside a clause is a conjunction, not the question. */
  assert_type("whats the daily meal allowance when travelling", QTYPE_HOW_MUCH);
  assert_type("I'm sick today - who do I tell and by when?", QTYPE_WHO);
  assert_type("My flight is 13 hours, am I allowed to book business class?", QTYPE_YESNO);
}

Test(qtype, cues_without_interrogative) {
  assert_type("hotel cap for NYC?", QTYPE_HOW_MUCH);
  assert_type("deadline to submit travel receipts", QTYPE_HOW_LONG);
  assert_type("Support hours?", QTYPE_WHEN);
  assert_type("help desk phone extension", QTYPE_WHERE);
  assert_type("Is SSO included in the Growth plan?", QTYPE_YESNO);
  assert_type("What is Harborview Analytics?", QTYPE_DEFINITION);
  assert_type("ingestion jobs are stuck in running, how do I fix them?", QTYPE_OTHER);
}

Test(qtype, a_lead_time_is_a_duration_before_something) {
  cr_assert(K("booked at least 14 days before departure") & KIND_LEAD);
  cr_assert(K("Request leave at least 2 weeks in advance") & KIND_LEAD);
  cr_assert_not(K("Flights shorter than 6 hours are booked in economy") & KIND_LEAD);
  cr_assert_not(K("tell your manager before 10:00") & KIND_LEAD);
  cr_assert(qtype_wants(QTYPE_LEAD_TIME) & KIND_LEAD);
  cr_assert(qtype_strict(QTYPE_LEAD_TIME));
}

Test(qtype, wants_and_strictness) {
  cr_assert(qtype_wants(QTYPE_HOW_MUCH) & KIND_AMOUNT);
  cr_assert(qtype_wants(QTYPE_WHO) & KIND_PERSON);
  cr_assert(qtype_wants(QTYPE_WHEN) & KIND_TIME);
  cr_assert_eq(qtype_wants(QTYPE_YESNO), 0);
  cr_assert(qtype_strict(QTYPE_HOW_MANY));
  cr_assert_not(qtype_strict(QTYPE_WHERE), "a place may be any name: a hint only");
}

Test(qtype, kinds) {
  cr_assert(K("The Growth plan costs 49 USD per month.") & KIND_AMOUNT);
  cr_assert(K("London | 240 GBP") & KIND_AMOUNT);
  cr_assert(K("Acknowledge within 15 minutes.") & KIND_DURATION);
  cr_assert(K("Write it within 5 working days.") & KIND_DURATION);
  cr_assert(K("Hand-over happens every Tuesday at 10:00 UTC.") & KIND_TIME);
  cr_assert(K("It was last revised in March 2024.") & KIND_TIME);
  cr_assert(K("it goes to the engineering manager, Priya Raman.") & KIND_PERSON);
  cr_assert(K("Page the incident commander on duty.") & KIND_PERSON);
  cr_assert(K("Email support@harborview.example.") & KIND_CONTACT);
  cr_assert(K("by phone on extension 4357.") & KIND_CONTACT);
  cr_assert(K("Data is stored in the Frankfurt region.") & KIND_PLACE);
  cr_assert(K("Harborview Analytics is a hosted dashboard product.") & KIND_DEFINITION);
  cr_assert(K("from the fourth consecutive day") & KIND_NUMBER);
  /* Nothing of the kind. */
  unsigned k = K("Alcohol is never reimbursed.");
  cr_assert_eq(k & (KIND_NUMBER | KIND_AMOUNT | KIND_DURATION | KIND_TIME | KIND_PERSON |
                    KIND_CONTACT),
               0, "kinds %x", k);
  cr_assert_eq(K("Handle the page.") & KIND_PLACE, 0,
               "a sentence's first word is no name");
}

Test(qtype, hostile_input_is_harmless) {
  char big[100000];
  memset(big, 'a', sizeof big);
  cr_assert_eq(qtype_of(big, sizeof big), QTYPE_OTHER);
  (void)qtype_kinds(big, sizeof big);
  cr_assert_eq(qtype_of("", 0), QTYPE_OTHER);
  cr_assert_eq(qtype_kinds("\xff\xfe 12:", 6) & KIND_TIME, 0);
}
