/* test_formats.c - the format table and how a document's format is decided:
 * declared type, aliases, extensions, sniffing, and files that lie about
 * their type. */
#include "extract/formats.h"

#include <criterion/criterion.h>
#include <string.h>

#include "quarry/error.h"

static format_choice_t c;
static char err[768];

/* Chooses and confirms; returns the format id or the error's rc as text. */
static q_err_t decide(const char *type, const char *name, const char *head, size_t n) {
  q_err_t rc = formats_choose(type, name, &c, err, sizeof err);
  return rc ? rc : formats_confirm(&c, head, n, err, sizeof err);
}

#define PDF "%PDF-1.7\n%\xe2\xe3\n1 0 obj"
#define ZIP "PK\x03\x04\x14\0\0\0\x08\0"
#define DOCX ZIP "[Content_Types].xml....word/document.xml"

Test(formats, table_lookups) {
  cr_assert_str_eq(formats_by_media("TEXT/X-Markdown")->id, "markdown");
  cr_assert_str_eq(formats_by_media("application/xhtml+xml")->id, "html");
  cr_assert_null(formats_by_media("image/gif"));
  cr_assert_str_eq(formats_by_media("image/png")->id, "png"); /* read with OCR */
  cr_assert_str_eq(formats_by_filename("Report.PDF")->id, "pdf");
  cr_assert_str_eq(formats_by_filename("a.b.docx")->id, "docx");
  cr_assert_null(formats_by_filename(".md"));
  cr_assert_null(formats_by_filename("notes.txt.exe"));
  for (size_t i = 0; i < formats_count; i++) {
    cr_assert_eq(formats_by_id(formats[i].id), &formats[i]);
    cr_assert_not_null(formats[i].extractor);
  }
}

Test(formats, sniffing) {
  cr_assert_eq(formats_sniff(PDF, sizeof PDF - 1), CONTENT_PDF);
  cr_assert_eq(formats_sniff(ZIP, sizeof ZIP - 1), CONTENT_ZIP);
  cr_assert_eq(formats_sniff(DOCX, sizeof DOCX - 1), CONTENT_DOCX);
  cr_assert_eq(formats_sniff("\x89PNG\r\n\x1a\n....", 12), CONTENT_PNG);
  cr_assert_eq(formats_sniff("MZ\x90\0", 4), CONTENT_EXE);
  cr_assert_eq(formats_sniff("hel\0\0lo\x01\x02\x03", 10), CONTENT_BINARY);
  cr_assert_eq(formats_sniff("H\0e\0l\0l\0o\0", 10), CONTENT_TEXT, "UTF-16 without BOM");
  cr_assert_eq(formats_sniff("\xff\xfeH\0", 4), CONTENT_TEXT);
  cr_assert_eq(formats_sniff("  <!-- c --> <!DOCTYPE html><p>", 31), CONTENT_HTML);
  cr_assert_eq(formats_sniff("Caf\xe9 latin-1 text", 17), CONTENT_TEXT);
  cr_assert_eq(formats_sniff("", 0), CONTENT_EMPTY);
}

Test(formats, declared_types_and_aliases) {
  cr_assert_eq(decide("application/pdf", "x.bin", PDF, sizeof PDF - 1), Q_OK, "%s", err);
  cr_assert_str_eq(c.fmt->id, "pdf");
  cr_assert_eq(decide("text/x-markdown; charset=ISO-8859-1", "", "# Hi", 4), Q_OK);
  cr_assert_str_eq(c.fmt->id, "markdown");
  char stored[300];
  formats_stored_type(&c, stored, sizeof stored);
  cr_assert_str_eq(stored, "text/markdown; charset=iso-8859-1");
  char cs[64];
  cr_assert_eq(formats_parse_stored(stored, cs, sizeof cs), formats_by_id("markdown"));
  cr_assert_str_eq(cs, "iso-8859-1");
  cr_assert_eq(formats_parse_stored("text/plain", cs, sizeof cs), formats_by_id("text"),
               "types stored before the table");
  /* A charset says nothing about a PDF. */
  cr_assert_eq(decide("application/pdf; charset=utf-8", "", PDF, sizeof PDF - 1), Q_OK);
  formats_stored_type(&c, stored, sizeof stored);
  cr_assert_str_eq(stored, "application/pdf");
}

Test(formats, octet_stream_and_missing_types_use_the_name_then_the_bytes) {
  cr_assert_eq(decide("application/octet-stream", "guide.docx", DOCX, sizeof DOCX - 1),
               Q_OK);
  cr_assert_str_eq(c.fmt->id, "docx");
  cr_assert_eq(c.source, FROM_FILENAME);
  cr_assert_eq(decide("", "scan", PDF, sizeof PDF - 1), Q_OK);
  cr_assert_str_eq(c.fmt->id, "pdf");
  cr_assert_eq(c.source, FROM_CONTENT);
  cr_assert_eq(decide(NULL, "", "<html><body>x", 13), Q_OK);
  cr_assert_str_eq(c.fmt->id, "html");
  cr_assert_eq(decide(NULL, "notes.log", "plain words", 11), Q_OK);
  cr_assert_str_eq(c.fmt->id, "text");
  cr_assert_eq(decide(NULL, "tool.exe", "MZ\x90\0", 4), Q_EUNSUPPORTED);
  cr_assert(
      strstr(err, "the content is an executable program, which Quarry does not read"),
      "%s", err);
}

Test(formats, lying_files_are_refused_naming_both_types) {
  cr_assert_eq(decide("application/pdf", "", ZIP, sizeof ZIP - 1), Q_EUNSUPPORTED);
  cr_assert_str_eq(err, "declared application/pdf but the content is a ZIP archive");
  cr_assert_eq(decide("text/plain", "", PDF, sizeof PDF - 1), Q_EUNSUPPORTED);
  cr_assert_str_eq(err,
                   "declared text/plain but the content is a PDF document (send it as "
                   "application/pdf)");
  cr_assert_eq(
      decide("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             "", "just text", 9),
      Q_EUNSUPPORTED);
  cr_assert(strstr(err, "but the content is text"), "%s", err);
  cr_assert_eq(decide("", "report.pdf", "\x89PNG\r\n\x1a\n", 8), Q_EUNSUPPORTED);
  cr_assert_str_eq(
      err, "the file name \"report.pdf\" says PDF but the content is a PNG image");
  cr_assert_eq(decide("text/html", "", "hel\0\0lo\x01\x02\x03", 10), Q_EUNSUPPORTED);
  cr_assert(strstr(err, "binary data"), "%s", err);
}

Test(formats, unsupported_and_malformed_declarations) {
  cr_assert_eq(decide("image/gif", "a.gif", "x", 1), Q_EUNSUPPORTED);
  cr_assert(strstr(err, "content type image/gif is not supported: send text/plain"), "%s",
            err);
  cr_assert(strstr(err, ".docx)"), "%s", err);
  cr_assert_eq(decide("text/plain; charset=klingon", "", "x", 1), Q_EUNSUPPORTED);
  cr_assert_str_eq(err, "charset \"klingon\" is not supported");
  cr_assert_eq(decide("not a type", "", "x", 1), Q_EINVAL);
  cr_assert_eq(decide("text/plain", "", "", 0), Q_EINVAL, "empty document");
}

Test(formats, default_file_names) {
  char name[64];
  formats_default_filename(formats_by_id("pdf"), name, sizeof name);
  cr_assert_str_eq(name, "document.pdf");
}
