/* test_extract.c - each extractor in this process (the sandbox has its own
 * tests): text in legacy encodings, Markdown, HTML, DOCX and PDF with their
 * structure, and the hostile documents each must refuse with a reason. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "extract/extract.h"
#include "extract_fixtures.h"
#include "quarry/error.h"

static recs_t r;
static char err[512];

static q_err_t run(const extractor_t *x, const char *data, size_t n,
                   const char *charset) {
  recs_free(&r);
  return run_extractor(x, data, n, charset, NULL, &r, err, sizeof err);
}

static q_err_t run_s(const extractor_t *x, const char *s) {
  return run(x, s, strlen(s), "");
}

static void fini(void) {
  recs_free(&r);
}

TestSuite(extract, .fini = fini);

/* ---- text ------------------------------------------------------------------ */

Test(extract, text_paragraphs_split_at_blank_lines) {
  cr_assert_eq(run_s(&extract_text, "one\ntwo  three\n \t\nfour\n\n\n"), Q_OK, "%s", err);
  cr_assert_eq(r.n, 2);
  cr_assert_str_eq(r.text[0], "one\ntwo three");
  cr_assert_str_eq(r.text[1], "four");
  cr_assert_eq(r.kind[0], EXTRACT_PARAGRAPH);
  cr_assert_eq(r.page[0], 0);
}

Test(extract, text_in_latin1_windows1252_and_utf16_becomes_utf8) {
  /* "Café crème brûlée" in ISO-8859-1 */
  const char latin1[] = "Caf\xe9 cr\xe8me br\xfbl\xe9\x65 for the \xe9quipe du caf\xe9.";
  cr_assert_eq(run(&extract_text, latin1, strlen(latin1), ""), Q_OK, "%s", err);
  cr_assert(strstr(r.text[0], "Café crème brûlée"), "%s", r.text[0]);
  /* Windows-1252 curly quotes, a dash and the euro sign */
  const char cp1252[] = "\x93Quoted\x94 \x96 price \x80"
                        "5 in a sentence long enough.";
  cr_assert_eq(run(&extract_text, cp1252, strlen(cp1252), ""), Q_OK, "%s", err);
  cr_assert(strstr(r.text[0], "“Quoted”"), "%s", r.text[0]);
  cr_assert(strstr(r.text[0], "€5"), "%s", r.text[0]);
  /* UTF-16 LE and BE with a byte order mark */
  const char le[] = "\xff\xfeH\0i\0 \0\xe5\x65\x2c\x67\n\0";
  cr_assert_eq(run(&extract_text, le, sizeof le - 1, ""), Q_OK, "%s", err);
  cr_assert_str_eq(r.text[0], "Hi 日本");
  const char be[] = "\xfe\xff\0H\0i";
  cr_assert_eq(run(&extract_text, be, sizeof be - 1, ""), Q_OK, "%s", err);
  cr_assert_str_eq(r.text[0], "Hi");
  /* A UTF-8 byte order mark is not text */
  cr_assert_eq(run_s(&extract_text, "\xef\xbb\xbfplain"), Q_OK);
  cr_assert_str_eq(r.text[0], "plain");
}

Test(extract, declared_charset_wins_and_is_checked) {
  const char s[] = "\xa4 sign"; /* ISO-8859-15: € */
  cr_assert_eq(run(&extract_text, s, strlen(s), "iso-8859-15"), Q_OK, "%s", err);
  cr_assert_str_eq(r.text[0], "€ sign");
  const char bad[] = "valid start \xff\xfe broken";
  cr_assert_eq(run(&extract_text, bad, strlen(bad), "utf-8"), Q_EINVAL);
  cr_assert_str_eq(err, "the text is not valid UTF-8 (first invalid byte at offset 12)");
  cr_assert_eq(run(&extract_text, "x", 1, "no-such-charset"), Q_EUNSUPPORTED);
  cr_assert(strstr(err, "no-such-charset"), "%s", err);
}

Test(extract, text_limit_is_enforced) {
  extract_limits_t lim = {10, 1 << 20, 10, 10};
  recs_free(&r);
  cr_assert_eq(
      run_extractor(&extract_text, "0123456789abc", 13, "", &lim, &r, err, sizeof err),
      Q_ETOOBIG);
  cr_assert(strstr(err, "larger than"), "%s", err);
}

/* ---- Markdown ---------------------------------------------------------------- */

Test(extract, markdown_structure) {
  const char *md = "# Guide\n\nIntro *with* [a link](http://example.com) &amp; more.\n\n"
                   "## Install\n\n- first\n- second\n  - nested\n\n"
                   "| Name | Port |\n|------|------|\n| gateway | 8080 |\n\n"
                   "```\n# not a heading\nmake\n```\n\nSetext\n======\n\n"
                   "<div>raw html</div>\n\nLast &#x41;.\n";
  cr_assert_eq(run_s(&extract_markdown, md), Q_OK, "%s", err);
  cr_assert_eq(recs_find(&r, EXTRACT_TITLE, "Guide"), 0);
  int h = recs_find(&r, EXTRACT_HEADING, "Install");
  cr_assert_geq(h, 0);
  cr_assert_eq(r.level[h], 2);
  cr_assert_geq(recs_find(&r, EXTRACT_PARAGRAPH, "Intro with a link & more."), 0);
  int li = recs_find(&r, EXTRACT_LIST_ITEM, "nested");
  cr_assert_geq(li, 0);
  cr_assert_eq(r.level[li], 2);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_LIST_ITEM, "second")], 1);
  cr_assert_geq(recs_find(&r, EXTRACT_TABLE_ROW, "Name | Port"), 0);
  cr_assert_geq(recs_find(&r, EXTRACT_TABLE_ROW, "gateway | 8080"), 0);
  cr_assert_geq(recs_find(&r, EXTRACT_PARAGRAPH, "# not a heading\nmake"), 0);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_HEADING, "Setext")], 1);
  cr_assert_geq(recs_find(&r, EXTRACT_PARAGRAPH, "Last A."), 0);
  cr_assert(!recs_contain(&r, "raw html"), "raw HTML is markup");
  cr_assert(!recs_contain(&r, "example.com"), "link targets are markup");
}

/* ---- HTML -------------------------------------------------------------------- */

Test(extract, html_keeps_content_and_drops_boilerplate) {
  const char *html =
      "<!doctype html><html><head><title>Pump &amp; Valve Manual</title>"
      "<style>p{color:red}</style><script>var secret = 1;</script></head><body>"
      "<header>Site banner</header><nav><a href=/>Home</a> <a>About</a></nav>"
      "<main><article><header><h1>Maintenance</h1></header>"
      "<p>Check the\n   seals <b>monthly</b>.<br>Replace yearly.</p>"
      "<div hidden>hidden text</div><div aria-hidden=\"true\">also hidden</div>"
      "<h2>Parts</h2><ul><li>Seal kit<ul><li>O-ring</li></ul></li><li>Valve</li></ul>"
      "<table><tr><th>Part</th><th>Code</th></tr><tr><td>Seal</td><td>S-1</td></tr></"
      "table>"
      "<pre>line one\nline two</pre></article></main>"
      "<footer>Copyright footer</footer><noscript>enable js</noscript></body></html>";
  cr_assert_eq(run_s(&extract_html, html), Q_OK, "%s", err);
  cr_assert_eq(recs_find(&r, EXTRACT_TITLE, "Pump & Valve Manual"), 0);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_HEADING, "Maintenance")], 1);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_HEADING, "Parts")], 2);
  cr_assert_geq(
      recs_find(&r, EXTRACT_PARAGRAPH, "Check the seals monthly.\nReplace yearly."), 0);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_LIST_ITEM, "Seal kit")], 1);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_LIST_ITEM, "O-ring")], 2);
  cr_assert_geq(recs_find(&r, EXTRACT_TABLE_ROW, "Part | Code"), 0);
  cr_assert_geq(recs_find(&r, EXTRACT_TABLE_ROW, "Seal | S-1"), 0);
  cr_assert_geq(recs_find(&r, EXTRACT_PARAGRAPH, "line one\nline two"), 0);
  const char *gone[] = {"secret",    "color",  "Site banner", "Home",
                        "Copyright", "hidden", "enable js"};
  for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
    cr_assert(!recs_contain(&r, gone[i]), "%s was kept", gone[i]);
}

Test(extract, html_meta_charset_is_honoured) {
  const char *html = "<html><head><meta charset=\"windows-1252\"><title>T</title></head>"
                     "<body><p>\x93quoted\x94 caf\xe9</p></body></html>";
  cr_assert_eq(run_s(&extract_html, html), Q_OK, "%s", err);
  cr_assert_geq(recs_find(&r, EXTRACT_PARAGRAPH, "“quoted” café"), 0);
}

Test(extract, html_nested_too_deep_fails) {
  q_buf_t b;
  q_buf_init(&b, 16 << 20);
  q_buf_puts(&b, "<html><body>");
  for (int i = 0; i < 20000; i++)
    q_buf_puts(&b, "<div>");
  q_buf_puts(&b, "deep</body></html>");
  cr_assert_eq(run(&extract_html, b.data, b.len, ""), Q_EINVAL);
  cr_assert_str_eq(err, "elements are nested deeper than 256 levels");
  q_buf_cleanup(&b);
}

/* ---- DOCX -------------------------------------------------------------------- */

#define P(style, text)                                                                   \
  "<w:p><w:pPr><w:pStyle w:val=\"" style "\"/></w:pPr><w:r><w:t>" text                   \
  "</w:t></w:r></w:p>"
#define PLAIN(text) "<w:p><w:r><w:t>" text "</w:t></w:r></w:p>"
#define ITEM(lvl, text)                                                                  \
  "<w:p><w:pPr><w:numPr><w:ilvl w:val=\"" lvl "\"/><w:numId w:val=\"1\"/></w:numPr>"     \
  "</w:pPr><w:r><w:t>" text "</w:t></w:r></w:p>"
#define CELL(text) "<w:tc>" PLAIN(text) "</w:tc>"

Test(extract, docx_headings_lists_tables_and_metadata) {
  const char *body = P("Heading1", "Installation") PLAIN("Read this first.")
      P("Heading2",
        "Linux") "<w:p><w:r><w:t>Use </w:t></w:r><w:hyperlink><w:r><w:t>apt"
                 "</w:t></w:r></w:hyperlink><w:del><w:r><w:delText>yum</w:delText></"
                 "w:r></w:del>"
                 "<w:r><w:tab/><w:t>now.</w:t></w:r></w:p>" ITEM("0", "first step")
                     ITEM("1", "sub step") "<w:tbl><w:tr>" CELL("Name")
                         CELL("Port") "</w:tr><w:tr>" CELL("gateway")
                             CELL("8080") "</w:tr></w:tbl>" P("Custom3", "Outline three")
                                 PLAIN("Tail text.");
  size_t n;
  char *d = make_docx(body, "Install Guide", "Grace Hopper", &n);
  cr_assert_eq(run(&extract_docx, d, n, ""), Q_OK, "%s", err);
  cr_assert_geq(recs_find(&r, EXTRACT_TITLE, "Install Guide"), 0);
  cr_assert_geq(recs_find(&r, EXTRACT_AUTHOR, "Grace Hopper"), 0);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_HEADING, "Installation")], 1);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_HEADING, "Linux")], 2);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_HEADING, "Outline three")], 3);
  cr_assert_geq(recs_find(&r, EXTRACT_PARAGRAPH, "Use apt now."), 0, "deleted text goes");
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_LIST_ITEM, "first step")], 1);
  cr_assert_eq(r.level[recs_find(&r, EXTRACT_LIST_ITEM, "sub step")], 2);
  cr_assert_geq(recs_find(&r, EXTRACT_TABLE_ROW, "Name | Port"), 0);
  cr_assert_geq(recs_find(&r, EXTRACT_TABLE_ROW, "gateway | 8080"), 0);
  cr_assert_geq(recs_find(&r, EXTRACT_PARAGRAPH, "Tail text."), 0);
  free(d);
}

Test(extract, docx_zip_bomb_is_refused) {
  /* 80 MiB of spaces packs to about 80 KB; the test limit is 64 MiB. */
  size_t big = 80u << 20;
  char *doc = malloc(big + 256);
  int k = snprintf(doc, 256, "<w:document xmlns:w=\"" W_NS "\"><w:body><w:p><w:r><w:t>");
  memset(doc + k, ' ', big);
  strcpy(doc + k + big, "</w:t></w:r></w:p></w:body></w:document>");
  const char *names[] = {"word/document.xml", NULL};
  const char *datas[] = {doc, NULL};
  size_t sizes[] = {strlen(doc)}, n;
  char *z = make_zip_sized(names, datas, sizes, &n);
  cr_assert_lt(n, 1u << 20, "the bomb is small");
  cr_assert_eq(run(&extract_docx, z, n, ""), Q_ETOOBIG);
  cr_assert_str_eq(err, "word/document.xml unpacks to more than 64 MiB (a zip bomb?)");
  free(z);
  free(doc);
}

Test(extract, docx_billion_laughs_is_not_expanded) {
  q_buf_t b;
  q_buf_init(&b, 1 << 20);
  q_buf_puts(&b, "<?xml version=\"1.0\"?><!DOCTYPE w:document [<!ENTITY l0 \"lol\">");
  for (int i = 1; i < 10; i++) {
    q_buf_printf(&b, "<!ENTITY l%d \"", i);
    for (int k = 0; k < 10; k++)
      q_buf_printf(&b, "&l%d;", i - 1);
    q_buf_puts(&b, "\">");
  }
  q_buf_puts(&b,
             "]><w:document xmlns:w=\"" W_NS
             "\"><w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>");
  const char *names[] = {"word/document.xml", NULL};
  const char *datas[] = {b.data, NULL};
  size_t n;
  char *z = make_zip(names, datas, &n);
  q_err_t rc = run(&extract_docx, z, n, "");
  /* libxml2 refuses the entity loop; were it accepted, nothing may have
   * been expanded. */
  if (rc == Q_OK)
    cr_assert(!recs_contain(&r, "lollol"), "entities were expanded");
  else
    cr_assert(strstr(err, "not well-formed XML"), "%s", err);
  free(z);
  q_buf_cleanup(&b);
}

Test(extract, docx_hostile_archives) {
  size_t n;
  /* Not a Word document */
  const char *names1[] = {"readme.txt", NULL};
  const char *datas1[] = {"hello", NULL};
  char *z = make_zip(names1, datas1, &n);
  cr_assert_eq(run(&extract_docx, z, n, ""), Q_EINVAL);
  cr_assert_str_eq(err, "not a Word document: the archive has no word/document.xml");
  free(z);
  /* Too many members */
  extract_limits_t lim = {1 << 20, 1 << 20, 2, 64};
  const char *names2[] = {"a", "b", "word/document.xml", NULL};
  const char *datas2[] = {"1", "2", "<w:document/>", NULL};
  z = make_zip(names2, datas2, &n);
  recs_free(&r);
  cr_assert_eq(run_extractor(&extract_docx, z, n, "", &lim, &r, err, sizeof err),
               Q_ETOOBIG);
  cr_assert_str_eq(err, "the archive has 3 members, more than 2");
  free(z);
  /* Damaged archive */
  cr_assert_eq(run(&extract_docx, "PK\x03\x04garbage", 11, ""), Q_EINVAL);
  cr_assert(strstr(err, "damaged"), "%s", err);
}

/* ---- PDF --------------------------------------------------------------------- */

Test(extract, pdf_text_per_page_with_metadata) {
  const char *p1[] = {"Page one says hello.", "Second line.", NULL};
  const char *p2[] = {"The turbine manual is on page two.", NULL};
  const char *p3[] = {"Bulb type QX-4471 (page three).", NULL};
  const char *const *pages[] = {p1, p2, p3};
  size_t n;
  char *pdf = make_pdf(pages, 3, "Pump Manual", "Ada Lovelace", &n);
  cr_assert_eq(run(&extract_pdf, pdf, n, ""), Q_OK, "%s", err);
  cr_assert_geq(recs_find(&r, EXTRACT_TITLE, "Pump Manual"), 0);
  cr_assert_geq(recs_find(&r, EXTRACT_AUTHOR, "Ada Lovelace"), 0);
  int a = recs_find(&r, EXTRACT_PARAGRAPH, "Page one says hello.\nSecond line.");
  int b = recs_find(&r, EXTRACT_PARAGRAPH, "The turbine manual is on page two.");
  int c = recs_find(&r, EXTRACT_PARAGRAPH, "Bulb type QX-4471 (page three).");
  cr_assert(a >= 0 && b >= 0 && c >= 0);
  cr_assert_eq(r.page[a], 1);
  cr_assert_eq(r.page[b], 2);
  cr_assert_eq(r.page[c], 3);
  free(pdf);
}

Test(extract, damaged_pdfs_fail_with_a_reason) {
  const char *p1[] = {"Some text.", NULL};
  const char *const *pages[] = {p1};
  size_t n;
  char *pdf = make_pdf(pages, 1, NULL, NULL, &n);
  cr_assert_eq(run(&extract_pdf, pdf, n / 2, ""), Q_EINVAL);
  cr_assert(strstr(err, "damaged"), "%s", err);
  cr_assert_eq(run(&extract_pdf, "%PDF-1.4\n", 9, ""), Q_EINVAL);
  free(pdf);
}
