/* test_error.c - error names, messages and the gRPC/HTTP mappings. */
#include <criterion/criterion.h>
#include <grpc/status.h>
#include <string.h>

#include "quarry/error.h"

Test(error, names_and_messages_come_from_the_table) {
  cr_assert_str_eq(q_err_name(Q_OK), "OK");
  cr_assert_str_eq(q_err_name(Q_EINVAL), "EINVAL");
  cr_assert_str_eq(q_err_name(Q_ECONFLICT), "ECONFLICT");
  cr_assert_str_eq(q_strerror(Q_ENOTFOUND), "not found");
  cr_assert_str_eq(q_strerror(Q_ETIMEDOUT), "deadline exceeded");
}

Test(error, unknown_codes_never_give_null) {
  cr_assert_not_null(q_strerror(999));
  cr_assert_not_null(q_err_name(-5));
  cr_assert_str_eq(q_err_slug(999), "internal");
  cr_assert_eq(q_err_to_http(999), 500);
  cr_assert_eq(q_err_to_grpc(999), GRPC_STATUS_UNKNOWN);
}

Test(error, grpc_mapping) {
  cr_assert_eq(q_err_to_grpc(Q_OK), GRPC_STATUS_OK);
  cr_assert_eq(q_err_to_grpc(Q_EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
  cr_assert_eq(q_err_to_grpc(Q_EUNAUTH), GRPC_STATUS_UNAUTHENTICATED);
  cr_assert_eq(q_err_to_grpc(Q_EUNAVAIL), GRPC_STATUS_UNAVAILABLE);
  cr_assert_eq(q_err_to_grpc(Q_ETIMEDOUT), GRPC_STATUS_DEADLINE_EXCEEDED);
  cr_assert_eq(q_err_to_grpc(Q_ENOTFOUND), GRPC_STATUS_NOT_FOUND);
  cr_assert_eq(q_err_to_grpc(Q_EPERM), GRPC_STATUS_PERMISSION_DENIED);
  cr_assert_eq(q_err_to_grpc(Q_ERESOURCE), GRPC_STATUS_RESOURCE_EXHAUSTED);
  cr_assert_eq(q_err_to_grpc(Q_EUNIMPL), GRPC_STATUS_UNIMPLEMENTED);
  cr_assert_eq(q_err_to_grpc(Q_EINTERNAL), GRPC_STATUS_INTERNAL);
}

/* Every error that has its own HTTP status must keep it across a gRPC hop
 * (service -> gateway -> REST client). */
Test(error, http_status_survives_a_grpc_hop) {
#define XX(name, code, msg)                                                              \
  cr_assert_eq(q_err_to_http(q_err_from_grpc(q_err_to_grpc(Q_##name))),                  \
               q_err_to_http(Q_##name), "%s", #name);
  Q_ERRNO_MAP(XX)
#undef XX
}

Test(error, from_grpc_covers_every_code) {
  for (int c = 0; c <= 16; c++) {
    int e = q_err_from_grpc(c);
    cr_assert((c == 0) == (e == Q_OK), "code %d", c);
  }
  cr_assert_eq(q_err_from_grpc(GRPC_STATUS_DATA_LOSS), Q_EINTERNAL);
  cr_assert_eq(q_err_from_grpc(42), Q_EINTERNAL);
  cr_assert_eq(q_err_from_grpc(-1), Q_EINTERNAL);
}

Test(error, grpc_code_names_match_go_grpc_prometheus) {
  static const char *const want[] = {"OK",
                                     "Canceled",
                                     "Unknown",
                                     "InvalidArgument",
                                     "DeadlineExceeded",
                                     "NotFound",
                                     "AlreadyExists",
                                     "PermissionDenied",
                                     "ResourceExhausted",
                                     "FailedPrecondition",
                                     "Aborted",
                                     "OutOfRange",
                                     "Unimplemented",
                                     "Internal",
                                     "Unavailable",
                                     "DataLoss",
                                     "Unauthenticated"};
  for (int c = 0; c <= 16; c++)
    cr_assert_str_eq(q_grpc_code_name(c), want[c]);
  cr_assert_str_eq(q_grpc_code_name(GRPC_STATUS_UNAUTHENTICATED), "Unauthenticated");
  cr_assert_str_eq(q_grpc_code_name(17), "Unknown");
  cr_assert_str_eq(q_grpc_code_name(-3), "Unknown");
}

Test(error, rest_contract_statuses_and_slugs) {
  struct {
    int err, http;
    const char *slug;
  } rows[] = {
      {Q_EINVAL, 400, "invalid_argument"},
      {Q_EUNAUTH, 401, "unauthenticated"},
      {Q_EPERM, 403, "permission_denied"},
      {Q_ENOTFOUND, 404, "not_found"},
      {Q_ECONFLICT, 409, "conflict"},
      {Q_EEXIST, 409, "conflict"},
      {Q_ETOOBIG, 413, "too_large"},
      {Q_EUNSUPPORTED, 415, "unsupported_media_type"},
      {Q_ERESOURCE, 429, "resource_exhausted"},
      {Q_EINTERNAL, 500, "internal"},
      {Q_EUNIMPL, 501, "not_implemented"},
      {Q_EUNAVAIL, 503, "unavailable"},
      {Q_ETIMEDOUT, 504, "deadline_exceeded"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    cr_assert_eq(q_err_to_http(rows[i].err), rows[i].http, "%s", q_err_name(rows[i].err));
    cr_assert_str_eq(q_err_slug(rows[i].err), rows[i].slug);
  }
}

Test(error, every_error_is_negative) {
#define XX(name, code, msg) cr_assert((Q_##name < 0) == (code != 0), "%s", #name);
  Q_ERRNO_MAP(XX)
#undef XX
}
