/* test_upload.c - the pure parts of uploads: Content-Type parsing and file
 * name cleaning. Which types a document may have is ingestion's business
 * (tests/unit/ingestion/test_formats.c). */
#include "upload.h"

#include "quarry/validate.h"

#include <criterion/criterion.h>
#include <string.h>

Test(upload, media_type_is_lowercased_without_parameters) {
  char out[64];
  cr_assert_eq(upload_media_type("text/plain", out, sizeof out), 0);
  cr_assert_str_eq(out, "text/plain");
  cr_assert_eq(upload_media_type("Text/Markdown; charset=UTF-8", out, sizeof out), 0);
  cr_assert_str_eq(out, "text/markdown");
  cr_assert_eq(upload_media_type("  multipart/form-data; boundary=xyz", out, sizeof out),
               0);
  cr_assert_str_eq(out, "multipart/form-data");
  cr_assert_eq(upload_media_type("application/vnd.api+json", out, sizeof out), 0);
  cr_assert_str_eq(out, "application/vnd.api+json");
}

Test(upload, malformed_media_types_are_refused) {
  char out[64];
  const char *bad[] = {"",
                       "text",
                       "/plain",
                       "text/",
                       "text/plain/x",
                       "te xt/plain",
                       "text/pl\"ain",
                       "text/pl@in"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(upload_media_type(bad[i], out, sizeof out), -1, "%s", bad[i]);
  cr_assert_eq(upload_media_type(NULL, out, sizeof out), -1);
  char tiny[6];
  cr_assert_eq(upload_media_type("text/plain", tiny, sizeof tiny), -1);
}

Test(upload, file_names_keep_only_the_last_component) {
  char out[Q_LIMIT_FILENAME_BYTES + 1];
  cr_assert_eq(upload_clean_filename("notes.md", out, sizeof out), 0);
  cr_assert_str_eq(out, "notes.md");
  cr_assert_eq(upload_clean_filename("../../etc/passwd", out, sizeof out), 0);
  cr_assert_str_eq(out, "passwd");
  cr_assert_eq(upload_clean_filename("C:\\Users\\me\\doc.txt", out, sizeof out), 0);
  cr_assert_str_eq(out, "doc.txt");
  cr_assert_eq(upload_clean_filename("résumé.md", out, sizeof out), 0);
  cr_assert_str_eq(out, "résumé.md");
}

Test(upload, unusable_file_names_are_refused) {
  char out[Q_LIMIT_FILENAME_BYTES + 1];
  const char *bad[] = {"", "dir/", "..", "a/..", ".", "bad\nname.txt", "tab\x7f.md"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(upload_clean_filename(bad[i], out, sizeof out), -1, "%s", bad[i]);
  char longname[Q_LIMIT_FILENAME_BYTES + 2];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  cr_assert_eq(upload_clean_filename(longname, out, sizeof out), -1);
  longname[Q_LIMIT_FILENAME_BYTES] = '\0';
  cr_assert_eq(upload_clean_filename(longname, out, sizeof out), 0);
}

/* Found by tests/fuzz/fuzz_upload: the gateway accepted file names that
 * ingestion refuses (q_valid_text), after streaming the whole document. */
Test(upload, file_names_ingestion_would_refuse_are_refused) {
  char out[Q_LIMIT_FILENAME_BYTES + 1];
  const char *bad[] = {"caf\xe9.txt",         /* Latin-1, not UTF-8 */
                       "a\xff\xfe.md",        /* stray bytes */
                       "\xc3.txt",            /* a cut sequence */
                       "tab\there.md",        /* tabs: ingestion refuses them too */
                       "c1\xc2\x85line.txt"}; /* U+0085, a C1 control */
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(upload_clean_filename(bad[i], out, sizeof out), Q_EINVAL, "case %zu", i);
    cr_assert_not(q_valid_text(bad[i], Q_LIMIT_FILENAME_BYTES), "ingestion agrees");
  }
  cr_assert_eq(upload_clean_filename("dir\xff/ok.md", out, sizeof out), 0,
               "only the last component counts");
  cr_assert_str_eq(out, "ok.md");
}
