/* Tests of near stems (answer/typo.h). */
#include "answer/typo.h"

#include <criterion/criterion.h>

Test(typo, one_edit_apart) {
  cr_assert(typo_near("adress", "address")); /* a letter left out */
  cr_assert(typo_near("lenght", "length"));  /* neighbours swapped */
  cr_assert(typo_near("reciev", "receiv"));  /* stems of "recieve", "receive" */
  cr_assert(typo_near("passwrd", "password"));
  cr_assert(typo_near("reimbrus", "reimburs"));
}

Test(typo, two_edits_only_in_long_words) {
  cr_assert(typo_near("accomodaton", "accommod") == false); /* three apart */
  cr_assert(typo_near("encyrpton", "encrypt") == false);
  cr_assert(typo_near("reimbursment", "reimburs") == false); /* 4 longer */
  cr_assert(typo_near("acknowlege", "acknowledg"));          /* one */
  cr_assert(typo_near("retrospectve", "retrospect"));        /* two, long */
  cr_assert_not(typo_near("shiped", "shipping"));            /* two, short */
}

Test(typo, short_words_numbers_and_other_first_letters_are_left_alone) {
  cr_assert_not(typo_near("till", "tell"));
  cr_assert_not(typo_near("dental", "rental")); /* another first letter */
  cr_assert_not(typo_near("2024a", "2024b"));
  cr_assert_not(typo_near("budget", "budget")); /* the same word */
  cr_assert_not(typo_near("travel", "trouble"));
}

Test(typo, derived_forms_the_stemmer_keeps_apart) {
  cr_assert(typo_derived("short", "shorter"));
  cr_assert(typo_derived("shorter", "short"));   /* either way round */
  cr_assert_not(typo_derived("long", "longer")); /* four letters: too short */
  cr_assert(typo_derived("depart", "departur"));
  cr_assert_not(typo_derived("plan", "planet"));       /* too short */
  cr_assert_not(typo_derived("pay", "payment"));       /* too short */
  cr_assert_not(typo_derived("secur", "secur"));       /* the same */
  cr_assert_not(typo_derived("employ", "employment")); /* four letters more */
  cr_assert_not(typo_derived("offic", "offset"));      /* not a prefix */
}
