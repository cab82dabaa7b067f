/* test_doc.c - building the chunker's input from extracted records:
 * heading paths, separators, sections, and page marks (by page for PDF). */
#include "extract/doc.h"

#include <criterion/criterion.h>
#include <string.h>

static void add(doc_t *d, extract_kind_t k, int level, int page, const char *text) {
  cr_assert_eq(doc_add_cb(d, k, level, page, text, strlen(text)), Q_OK);
}

Test(doc, heading_paths_and_separators) {
  doc_t d;
  doc_init(&d, CHUNK_BY_SECTION, 1 << 20);
  add(&d, EXTRACT_TITLE, 0, 0, "The Title");
  add(&d, EXTRACT_TITLE, 0, 0, "ignored second title");
  add(&d, EXTRACT_PARAGRAPH, 0, 0, "Preface.");
  add(&d, EXTRACT_HEADING, 1, 0, "Guide");
  add(&d, EXTRACT_HEADING, 2, 0, "Install");
  add(&d, EXTRACT_LIST_ITEM, 1, 0, "one");
  add(&d, EXTRACT_LIST_ITEM, 2, 0, "two");
  add(&d, EXTRACT_TABLE_ROW, 0, 0, "a | b");
  add(&d, EXTRACT_HEADING, 1, 0, "Appendix");
  add(&d, EXTRACT_PARAGRAPH, 0, 0, "End.");
  chunker_input_t in;
  doc_input(&d, &in);
  cr_assert_str_eq(d.title, "The Title");
  cr_assert_str_eq(in.text, "Preface.\n\n- one\n- two\n\na | b\n\nEnd.");
  cr_assert_eq(in.nsections, 3);
  cr_assert_str_eq(in.headings + in.sections[0].heading, "");
  cr_assert_str_eq(in.headings + in.sections[1].heading, "Guide > Install");
  cr_assert_str_eq(in.headings + in.sections[2].heading, "Appendix",
                   "deeper levels cleared");
  cr_assert_eq(strncmp(in.text + in.sections[1].start, "- one", 5), 0);
  cr_assert_eq(d.max_page, 0);
  doc_cleanup(&d);
}

Test(doc, pages_start_sections_when_chunking_by_page) {
  doc_t d;
  doc_init(&d, CHUNK_BY_PAGE, 1 << 20);
  add(&d, EXTRACT_PARAGRAPH, 0, 1, "first page");
  add(&d, EXTRACT_PARAGRAPH, 0, 1, "still first");
  add(&d, EXTRACT_PARAGRAPH, 0, 2, "second page");
  add(&d, EXTRACT_PARAGRAPH, 0, 5, "fifth page");
  chunker_input_t in;
  doc_input(&d, &in);
  cr_assert_eq(in.nsections, 3);
  cr_assert_eq(in.npages, 3);
  cr_assert_eq(in.pages[1].page, 2);
  cr_assert_str_eq(in.text + in.pages[1].start, "second page\n\nfifth page");
  cr_assert_eq(d.max_page, 5);
  doc_cleanup(&d);
}

Test(doc, text_limit_holds) {
  doc_t d;
  doc_init(&d, CHUNK_BY_SECTION, 8);
  cr_assert_eq(doc_add_cb(&d, EXTRACT_PARAGRAPH, 0, 0, "0123456789", 10), Q_ETOOBIG);
  doc_cleanup(&d);
}

Test(doc, format_metadata_is_kept_and_checked) {
  doc_t d;
  doc_init(&d, CHUNK_BY_SECTION, 1 << 16);
  add(&d, EXTRACT_CREATED, 0, 0, "not a date");
  add(&d, EXTRACT_CREATED, 0, 0, "2021-03-04T05:06:07+01:00");
  add(&d, EXTRACT_CREATED, 0, 0, "2030-01-01T00:00:00Z"); /* the first one counts */
  add(&d, EXTRACT_MODIFIED, 0, 0, "2022-01-01");
  add(&d, EXTRACT_LANGUAGE, 0, 0, "en US; drop table"); /* not a tag: ignored */
  add(&d, EXTRACT_LANGUAGE, 0, 0, "pt_BR");
  add(&d, EXTRACT_PAGES, 0, 0, "12");
  add(&d, EXTRACT_PARAGRAPH, 0, 3, "Body.");
  cr_assert_eq(d.created, 1614830767);
  cr_assert_eq(d.modified, 1640995200);
  cr_assert_str_eq(d.language, "pt-BR");
  cr_assert_eq(d.page_count, 12);
  cr_assert_eq(d.blocks, 1, "metadata is not body text");
  doc_cleanup(&d);
}
