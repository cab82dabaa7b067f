/* test_validate.c - the shared checks on tenant ids, UUIDs, UTF-8, free
 * text and request fields. */
#include "quarry/error.h"
#include "quarry/validate.h"

#include <criterion/criterion.h>
#include <string.h>

Test(validate, tenant_ids) {
  cr_assert(q_valid_tenant_id("acme"));
  cr_assert(q_valid_tenant_id("Acme-Corp_2.eu"));
  cr_assert(q_valid_tenant_id("t1.eu-west_2"));
  cr_assert(q_valid_tenant_id("0"));
  cr_assert_not(q_valid_tenant_id(""));
  cr_assert_not(q_valid_tenant_id(NULL));
  cr_assert_not(q_valid_tenant_id("-acme"));
  cr_assert_not(q_valid_tenant_id(".hidden"));
  cr_assert_not(q_valid_tenant_id("ac me"));
  cr_assert_not(q_valid_tenant_id("acme/other"));
  cr_assert_not(q_valid_tenant_id("acm\xc3\xa9"));
  cr_assert_not(q_valid_tenant_id("a'; drop table documents; --"));
  char max[Q_LIMIT_TENANT_ID_BYTES + 2];
  memset(max, 'a', sizeof max);
  max[Q_LIMIT_TENANT_ID_BYTES] = '\0';
  cr_assert(q_valid_tenant_id(max));
  max[Q_LIMIT_TENANT_ID_BYTES] = 'a';
  max[Q_LIMIT_TENANT_ID_BYTES + 1] = '\0';
  cr_assert_not(q_valid_tenant_id(max));
}

Test(validate, uuids) {
  cr_assert(q_valid_uuid("6f1c1c2e-0000-4000-8000-000000000001"));
  cr_assert(q_valid_uuid("6F1C1C2E-ABCD-4000-8000-00000000000F"));
  cr_assert_not(q_valid_uuid(""));
  cr_assert_not(q_valid_uuid(NULL));
  cr_assert_not(q_valid_uuid("6f1c1c2e00004000800000000000000001"));
  cr_assert_not(q_valid_uuid("6f1c1c2e-0000-4000-8000-00000000000g"));
  cr_assert_not(q_valid_uuid("6f1c1c2e-0000-4000-8000-0000000000011"));
  cr_assert_not(q_valid_uuid("6f1c1c2e-0000-4000-8000_000000000001"));
  cr_assert_not(q_valid_uuid("{6f1c1c2e-0000-4000-8000-00000000001}"));
}

Test(validate, idempotency_keys) {
  cr_assert(q_valid_idempotency_key("a"));
  cr_assert(q_valid_idempotency_key("6f1c1c2e-0000-4000-8000-000000000001"));
  cr_assert(q_valid_idempotency_key("upload 42: report.pdf (retry) ~!@#$%^&*"));
  cr_assert_not(q_valid_idempotency_key(NULL));
  cr_assert_not(q_valid_idempotency_key(""));
  cr_assert_not(q_valid_idempotency_key("tab\there"));
  cr_assert_not(q_valid_idempotency_key("line\n"));
  cr_assert_not(q_valid_idempotency_key("del\x7f"));
  cr_assert_not(q_valid_idempotency_key("caf\xc3\xa9"), "printable ASCII only");
  char max[Q_LIMIT_IDEMPOTENCY_KEY_BYTES + 2];
  memset(max, 'k', sizeof max);
  max[Q_LIMIT_IDEMPOTENCY_KEY_BYTES] = '\0';
  cr_assert(q_valid_idempotency_key(max));
  max[Q_LIMIT_IDEMPOTENCY_KEY_BYTES] = 'k';
  max[Q_LIMIT_IDEMPOTENCY_KEY_BYTES + 1] = '\0';
  cr_assert_not(q_valid_idempotency_key(max));
}

Test(validate, utf8) {
  cr_assert(q_valid_utf8("", 0));
  cr_assert(q_valid_utf8(NULL, 0));
  cr_assert(q_valid_utf8("plain ascii", 11));
  cr_assert(q_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
  cr_assert(q_valid_utf8("\xf4\x8f\xbf\xbf", 4), "U+10FFFF is the last");
  cr_assert_not(q_valid_utf8("ab\xff", 3));
  cr_assert_not(q_valid_utf8("a\xc0\xaf", 3), "overlong");
  cr_assert_not(q_valid_utf8("\xe0\x80\xaf", 3), "overlong");
  cr_assert_not(q_valid_utf8("\xed\xa0\x80", 3), "surrogate");
  cr_assert_not(q_valid_utf8("\xf4\x90\x80\x80", 4), "past U+10FFFF");
  cr_assert_not(q_valid_utf8("abc\xe2\x82", 5), "truncated");
  cr_assert_not(q_valid_utf8("\x82", 1), "stray continuation byte");
  cr_assert_not(q_valid_utf8("a\0b", 3), "NUL");
  /* Only the n bytes given are looked at. */
  cr_assert(q_valid_utf8("ab\xff", 2));
}

Test(validate, utf8_prefix_is_the_offset_of_the_first_bad_byte) {
  cr_assert_eq(q_valid_utf8_prefix("plain", 5), 5);
  cr_assert_eq(q_valid_utf8_prefix("ab\xff", 3), 2);
  cr_assert_eq(q_valid_utf8_prefix("a\xc0\xaf", 3), 1);
  cr_assert_eq(q_valid_utf8_prefix("\xed\xa0\x80", 3), 0);
  cr_assert_eq(q_valid_utf8_prefix("abc\xe2\x82", 5), 3);
  cr_assert_eq(q_valid_utf8_prefix("a\0b", 3), 1);
  cr_assert_eq(q_valid_utf8_prefix("\xc3\xa9\xc3", 3), 2);
}

Test(validate, utf8_sequence_lengths) {
  cr_assert_eq(q_valid_utf8_seq("a", 1), 1);
  cr_assert_eq(q_valid_utf8_seq("\xc3\xa9x", 3), 2);
  cr_assert_eq(q_valid_utf8_seq("\xe2\x82\xac", 3), 3);
  cr_assert_eq(q_valid_utf8_seq("\xf0\x9f\x98\x80", 4), 4);
  cr_assert_eq(q_valid_utf8_seq("\xf0\x9f\x98\x80", 3), 0, "cut off by n");
  cr_assert_eq(q_valid_utf8_seq("\xa9", 1), 0);
  cr_assert_eq(q_valid_utf8_seq("", 1), 0, "NUL");
  cr_assert_eq(q_valid_utf8_seq("a", 0), 0);
}

Test(validate, free_text) {
  cr_assert(q_valid_text("", 10));
  cr_assert(q_valid_text(NULL, 10));
  cr_assert(q_valid_text("R\xc3\xa9union \xe2\x80\x94 notes.md", 64));
  cr_assert(q_valid_text("cl\xc3\xa9 de l'\xc3\xa9quipe", 64));
  cr_assert_not(q_valid_text("tab\there", 64));
  cr_assert_not(q_valid_text("new\nline", 64));
  cr_assert_not(q_valid_text("del\x7f", 64));
  cr_assert_not(q_valid_text("c1 \xc2\x85", 64), "NEL is a C1 control");
  cr_assert(q_valid_text("nbsp \xc2\xa0", 64), "U+00A0 is past the C1 block");
  cr_assert_not(q_valid_text("bad \xfe", 64));
  cr_assert_not(q_valid_text("overlong \xc0\xaf", 64));
  cr_assert_not(q_valid_text("0123456789a", 10));
  cr_assert(q_valid_text("0123456789", 10));
}

Test(validate, fields_name_themselves_in_the_error) {
  char err[128] = "";
  cr_assert_eq(q_valid_field("query_id", "q1", 1, 8, err, sizeof err), 0);
  cr_assert_eq(q_valid_field("comment", NULL, 0, 8, err, sizeof err), 0);
  cr_assert_eq(q_valid_field("comment", "", 0, 8, err, sizeof err), 0);
  cr_assert_eq(q_valid_field("query_id", "", 1, 8, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "query_id: required");
  cr_assert_eq(q_valid_field("query_id", NULL, 1, 8, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "query_id: required");
  cr_assert_eq(q_valid_field("text", "123456789", 1, 8, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "text: 9 bytes, at most 8 allowed");
  cr_assert_eq(q_valid_field("text", "12345678", 1, 8, err, sizeof err), 0);
  cr_assert_eq(q_valid_field("title", "bad \xff", 0, 8, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "title: not valid UTF-8");
  /* Control characters are fine here: fields like these carry any text. */
  cr_assert_eq(q_valid_field("text", "a\tb\nc", 1, 8, err, sizeof err), 0);
}

Test(validate, blank_is_ascii_white_space_only) {
  cr_assert(q_is_blank(NULL, 0));
  cr_assert(q_is_blank("", 0));
  cr_assert(q_is_blank(" \t\r\n\v\f", 6));
  cr_assert_not(q_is_blank(" x ", 3));
  cr_assert_not(q_is_blank("\xc2\xa0", 2), "NO-BREAK SPACE is not ASCII white space");
  cr_assert_not(q_is_blank(" \0 ", 3), "a NUL byte is not white space");
  cr_assert(q_is_blank("  x", 2), "only the first n bytes count");
}
