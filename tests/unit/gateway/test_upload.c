/* test_upload.c - the pure parts of uploads: Content-Type parsing, file
 * name cleaning and the chunking parameters. Which types a document may have is
 * ingestion's business (tests/unit/ingestion/test_formats.c). */
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

/* The chunking parameters as the query string, a multipart field or a
 * batch line give them, and the spec that goes to ingestion. */
Test(upload, chunking_parameters) {
  q_chunking_t c = Q_CHUNKING_DEFAULT;
  char err[256] = "", spec[Q_LIMIT_CHUNKING_BYTES + 1];
  cr_assert_eq(upload_chunking_spec(&c, spec, sizeof spec, err, sizeof err), Q_OK);
  cr_assert_str_eq(spec, "", "nothing chosen: ingestion's settings");
  cr_assert_eq(upload_chunking_param(&c, "chunking", "fixed", 5, err, sizeof err), Q_OK);
  cr_assert_eq(upload_chunking_param(&c, "chunk_tokens", "300", 3, err, sizeof err),
               Q_OK);
  cr_assert_eq(upload_chunking_param(&c, "chunk_overlap", "0", 1, err, sizeof err), Q_OK);
  cr_assert_eq(upload_chunking_spec(&c, spec, sizeof spec, err, sizeof err), Q_OK);
  cr_assert_str_eq(spec, "fixed:300:0");
  cr_assert_eq(upload_chunking_param(&c, "title", "x", 1, err, sizeof err), Q_ENOTFOUND);

  static const struct {
    const char *name, *value, *words;
  } bad[] = {
      {"chunking", "pages", "chunking: unknown strategy \"pages\""},
      {"chunking", "", "chunking: unknown strategy"},
      {"chunking", "structure-and-more", "chunking: unknown strategy"},
      {"chunk_tokens", "0", "chunk_tokens: must be 1..4096"},
      {"chunk_tokens", "-3", "chunk_tokens: must be a whole number"},
      {"chunk_tokens", "12a", "chunk_tokens: must be a whole number"},
      {"chunk_tokens", "999999", "chunk_tokens: must be a whole number"},
      {"chunk_overlap", "", "chunk_overlap: must be a whole number"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    q_chunking_t b = Q_CHUNKING_DEFAULT;
    err[0] = '\0';
    cr_assert_eq(upload_chunking_param(&b, bad[i].name, bad[i].value,
                                       strlen(bad[i].value), err, sizeof err),
                 Q_EINVAL, "%s=%s", bad[i].name, bad[i].value);
    cr_assert(strstr(err, bad[i].words), "%s=%s: %s", bad[i].name, bad[i].value, err);
  }
  /* Each part fine, the whole not: checked together. */
  q_chunking_t w = Q_CHUNKING_DEFAULT;
  cr_assert_eq(upload_chunking_param(&w, "chunk_tokens", "5000", 4, err, sizeof err),
               Q_OK);
  cr_assert_eq(upload_chunking_spec(&w, spec, sizeof spec, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "chunk_tokens: must be 1..4096"), "%s", err);
  w = Q_CHUNKING_DEFAULT;
  cr_assert_eq(upload_chunking_param(&w, "chunk_overlap", "4", 1, err, sizeof err), Q_OK);
  cr_assert_eq(upload_chunking_spec(&w, spec, sizeof spec, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "chunk_overlap: needs chunk_tokens"), "%s", err);
}
