/* error.c - names and messages of q_err_t, and the one place where errors
 * are mapped to gRPC status codes and HTTP statuses.
 *
 * The gRPC mapping is chosen so that every error a Quarry service returns
 * survives a gRPC hop with the HTTP status the REST contract promises: the
 * gateway turns a downstream status back into a q_err_t (q_err_from_grpc)
 * and then into HTTP (q_err_to_http). Three errors therefore use the gRPC
 * codes whose meaning is closest among those still free:
 *   Q_ETOOBIG      -> OUT_OF_RANGE        (413 after the hop; RESOURCE_EXHAUSTED
 *                                          is kept for rate limits, 429)
 *   Q_ECONFLICT    -> ABORTED             (409; gRPC's code for conflicts)
 *   Q_EUNSUPPORTED -> FAILED_PRECONDITION (415; INVALID_ARGUMENT would turn
 *                                          it into 400)
 * Errors with no client-visible distinction are folded: Q_ENOMEM (usually
 * an arena's maximum reached) maps to INTERNAL, not RESOURCE_EXHAUSTED,
 * which would reach a REST client as 429 "retry later"; Q_EIO (a failed
 * dependency such as the database) maps to UNAVAILABLE. */
#include "quarry/error.h"

#include <grpc/status.h> /* enum constants only; grpc_* calls stay in grpc.c */

const char *q_strerror(int err) {
  switch (err) {
#define XX(name, code, msg)                                                              \
  case Q_##name: return msg;
    Q_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown error";
}

const char *q_err_name(int err) {
  switch (err) {
#define XX(name, code, msg)                                                              \
  case Q_##name: return #name;
    Q_ERRNO_MAP(XX)
#undef XX
  }
  return "EUNKNOWN";
}

int q_err_to_grpc(int err) {
  switch (err) {
  case Q_OK: return GRPC_STATUS_OK;
  case Q_EINVAL: return GRPC_STATUS_INVALID_ARGUMENT;
  case Q_ENOMEM: return GRPC_STATUS_INTERNAL;
  case Q_ENOTFOUND: return GRPC_STATUS_NOT_FOUND;
  case Q_EEXIST: return GRPC_STATUS_ALREADY_EXISTS;
  case Q_EUNAVAIL: return GRPC_STATUS_UNAVAILABLE;
  case Q_ETIMEDOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
  case Q_EPERM: return GRPC_STATUS_PERMISSION_DENIED;
  case Q_EUNAUTH: return GRPC_STATUS_UNAUTHENTICATED;
  case Q_ETOOBIG: return GRPC_STATUS_OUT_OF_RANGE;
  case Q_EINTERNAL: return GRPC_STATUS_INTERNAL;
  case Q_EIO: return GRPC_STATUS_UNAVAILABLE;
  case Q_ECANCELLED: return GRPC_STATUS_CANCELLED;
  case Q_EUNIMPL: return GRPC_STATUS_UNIMPLEMENTED;
  case Q_ERESOURCE: return GRPC_STATUS_RESOURCE_EXHAUSTED;
  case Q_EUNSUPPORTED: return GRPC_STATUS_FAILED_PRECONDITION;
  case Q_ECONFLICT: return GRPC_STATUS_ABORTED;
  }
  return GRPC_STATUS_UNKNOWN;
}

q_err_t q_err_from_grpc(int grpc_status) {
  switch (grpc_status) {
  case GRPC_STATUS_OK: return Q_OK;
  case GRPC_STATUS_CANCELLED: return Q_ECANCELLED;
  case GRPC_STATUS_INVALID_ARGUMENT: return Q_EINVAL;
  case GRPC_STATUS_DEADLINE_EXCEEDED: return Q_ETIMEDOUT;
  case GRPC_STATUS_NOT_FOUND: return Q_ENOTFOUND;
  case GRPC_STATUS_ALREADY_EXISTS: return Q_EEXIST;
  case GRPC_STATUS_PERMISSION_DENIED: return Q_EPERM;
  case GRPC_STATUS_RESOURCE_EXHAUSTED: return Q_ERESOURCE;
  case GRPC_STATUS_FAILED_PRECONDITION: return Q_EUNSUPPORTED;
  case GRPC_STATUS_ABORTED: return Q_ECONFLICT;
  case GRPC_STATUS_OUT_OF_RANGE: return Q_ETOOBIG;
  case GRPC_STATUS_UNIMPLEMENTED: return Q_EUNIMPL;
  case GRPC_STATUS_UNAVAILABLE: return Q_EUNAVAIL;
  case GRPC_STATUS_UNAUTHENTICATED: return Q_EUNAUTH;
  case GRPC_STATUS_UNKNOWN:
  case GRPC_STATUS_INTERNAL:
  case GRPC_STATUS_DATA_LOSS:
  default: return Q_EINTERNAL;
  }
}

const char *q_grpc_code_name(int grpc_status) {
  /* The strings of Go's codes.Code.String(), which go-grpc-prometheus puts
   * in the grpc_code label; dashboards match on them. */
  static const char *const names[] = {
      "OK",                 /* 0 */
      "Canceled",           /* 1 */
      "Unknown",            /* 2 */
      "InvalidArgument",    /* 3 */
      "DeadlineExceeded",   /* 4 */
      "NotFound",           /* 5 */
      "AlreadyExists",      /* 6 */
      "PermissionDenied",   /* 7 */
      "ResourceExhausted",  /* 8 */
      "FailedPrecondition", /* 9 */
      "Aborted",            /* 10 */
      "OutOfRange",         /* 11 */
      "Unimplemented",      /* 12 */
      "Internal",           /* 13 */
      "Unavailable",        /* 14 */
      "DataLoss",           /* 15 */
      "Unauthenticated",    /* 16 */
  };
  if (grpc_status < 0 || (unsigned)grpc_status >= sizeof names / sizeof names[0])
    return "Unknown";
  return names[grpc_status];
}

/* HTTP status and REST slug side by side so the two cannot disagree. A
 * cancelled call is reported as unavailable: the client can retry it. */
static int http_of(int err, const char **slug) {
  switch (err) {
  case Q_OK: *slug = "ok"; return 200;
  case Q_EINVAL: *slug = "invalid_argument"; return 400;
  case Q_EUNAUTH: *slug = "unauthenticated"; return 401;
  case Q_EPERM: *slug = "permission_denied"; return 403;
  case Q_ENOTFOUND: *slug = "not_found"; return 404;
  case Q_EEXIST:
  case Q_ECONFLICT: *slug = "conflict"; return 409;
  case Q_ETOOBIG: *slug = "too_large"; return 413;
  case Q_EUNSUPPORTED: *slug = "unsupported_media_type"; return 415;
  case Q_ERESOURCE: *slug = "resource_exhausted"; return 429;
  case Q_EUNIMPL: *slug = "not_implemented"; return 501;
  case Q_EUNAVAIL:
  case Q_EIO:
  case Q_ECANCELLED: *slug = "unavailable"; return 503;
  case Q_ETIMEDOUT: *slug = "deadline_exceeded"; return 504;
  case Q_ENOMEM:
  case Q_EINTERNAL:
  default: *slug = "internal"; return 500;
  }
}

int q_err_to_http(int err) {
  const char *slug;
  return http_of(err, &slug);
}

const char *q_err_slug(int err) {
  const char *slug;
  http_of(err, &slug);
  return slug;
}
