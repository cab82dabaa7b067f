/* error.h - the one error enum of the common library.
 *
 * Codes come from a single X-macro table so the enum, its names and its
 * messages can never drift apart (libuv's UV_ERRNO_MAP). 0 is success and
 * every error is negative (Q_EINVAL is -1), so a function can return either
 * a count or an error in one int and `if (rc < 0)` tells them apart. Codes
 * are never renumbered: add new ones at the end.
 *
 * Mapping to gRPC status codes and to HTTP statuses happens here and nowhere
 * else. */
#ifndef QUARRY_ERROR_H
#define QUARRY_ERROR_H

#define Q_ERRNO_MAP(XX)                                                                  \
  XX(OK, 0, "success")                                                                   \
  XX(EINVAL, 1, "invalid argument")                                                      \
  XX(ENOMEM, 2, "out of memory")                                                         \
  XX(ENOTFOUND, 3, "not found")                                                          \
  XX(EEXIST, 4, "already exists")                                                        \
  XX(EUNAVAIL, 5, "dependency unavailable")                                              \
  XX(ETIMEDOUT, 6, "deadline exceeded")                                                  \
  XX(EPERM, 7, "permission denied")                                                      \
  XX(EUNAUTH, 8, "unauthenticated")                                                      \
  XX(ETOOBIG, 9, "too large")                                                            \
  XX(EINTERNAL, 10, "internal error")                                                    \
  XX(EIO, 11, "i/o error")                                                               \
  XX(ECANCELLED, 12, "cancelled")                                                        \
  XX(EUNIMPL, 13, "not implemented")                                                     \
  XX(ERESOURCE, 14, "resource exhausted")                                                \
  XX(EUNSUPPORTED, 15, "unsupported media type")                                         \
  XX(ECONFLICT, 16, "conflict")

/* q_err_t: what every fallible function in the tree returns: Q_OK (0) or a
 * negative code. Predicates return bool, never a q_err_t. */
typedef enum {
#define XX(name, code, msg) Q_##name = -(code),
  Q_ERRNO_MAP(XX)
#undef XX
} q_err_t;

/* The static message for an error code ("invalid argument"); never NULL. */
const char *q_strerror(int err);

/* The static name of an error code ("EINVAL"); never NULL. */
const char *q_err_name(int err);

/* Maps an error to a gRPC status code (grpc_status_code as int). */
int q_err_to_grpc(int err);

/* Maps a gRPC status code back to an error (for client calls). */
q_err_t q_err_from_grpc(int grpc_status);

/* Name of a gRPC status code as used in metrics labels ("InvalidArgument"). */
const char *q_grpc_code_name(int grpc_status);

/* Maps an error to an HTTP status (400, 401, 404, 413, 503, ...). */
int q_err_to_http(int err);

/* Machine-readable code for REST error bodies ("invalid_argument"). */
const char *q_err_slug(int err);

#endif
