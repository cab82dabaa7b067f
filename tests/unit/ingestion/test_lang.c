/* test_lang.c - language guessing (extract/lang.h): confident guesses for
 * plain prose in a few languages, none for text too short or mixed. */
#include "extract/lang.h"

#include <criterion/criterion.h>
#include <string.h>

static const char *guess(const char *text) {
  static char out[36];
  lang_detect(text, strlen(text), out, sizeof out);
  return out;
}

Test(lang, prose_in_several_languages) {
  cr_assert_str_eq(guess("The keeper of the lighthouse replaces the bulb every eighteen "
                         "hundred hours and writes the date into the log book, which is "
                         "kept in the office next to the stairs. When there is fog, the "
                         "horn is sounded twice every thirty seconds until it clears."),
                   "en");
  cr_assert_str_eq(
      guess("Der Leuchtturmwärter tauscht die Lampe alle achtzehnhundert "
            "Stunden aus und trägt das Datum in das Logbuch ein, das im Büro "
            "neben der Treppe liegt. Bei Nebel wird das Horn alle dreißig "
            "Sekunden zweimal geblasen, bis sich der Nebel wieder lichtet."),
      "de");
  cr_assert_str_eq(
      guess("Le gardien du phare remplace l'ampoule toutes les mille huit "
            "cents heures et inscrit la date dans le journal de bord, qui est "
            "rangé dans le bureau à côté de l'escalier. Par temps de brouillard, "
            "la corne sonne deux fois toutes les trente secondes."),
      "fr");
}

Test(lang, no_confident_guess) {
  char out[36] = "x";
  cr_assert_not(lang_detect("ok", 2, out, sizeof out));
  cr_assert_str_eq(out, "");
  cr_assert_not(lang_detect("", 0, out, sizeof out));
  cr_assert_not(lang_detect("1234 5678 90 %% 42 17", 20, out, sizeof out));
  char tiny[2];
  cr_assert_not(
      lang_detect("The keeper of the lighthouse replaces the bulb every day and writes "
                  "the date into the log book next to the stairs, as always.",
                  130, tiny, sizeof tiny));
}

Test(lang, a_short_sentence_is_too_little) {
  char out[36];
  const char *s = "hello there my friend, how are you";
  cr_assert_not(lang_detect(s, strlen(s), out, sizeof out));
}
