/* grpctest.h - one service's handlers on a loopback gRPC server, and unary
 * calls to them through the typed stubs, for the tests of a service's gRPC
 * surface. */
#ifndef QUARRY_TEST_GRPCTEST_H
#define QUARRY_TEST_GRPCTEST_H

#include "quarry/arena.h"
#include "quarry/grpc.h"
#include "quarry/stubs.h"

#include <stddef.h>

typedef struct grpctest {
  q_grpc_server_t *srv;
  const ProtobufCServiceDescriptor *service;
  char target[64];  /* "127.0.0.1:<port>" */
  q_arena_t *arena; /* replies live here until grpctest_stop */
} grpctest_t;

/* Serves methods[0..n) of service, each called with ud, on 127.0.0.1 at a
 * port the kernel picks. Fails the test when the server cannot start. */
void grpctest_start(grpctest_t *t, const ProtobufCServiceDescriptor *service,
                    const q_grpc_method_t *methods, size_t n, void *ud);

/* Stops the server, drops the client channels and frees the replies. */
void grpctest_stop(grpctest_t *t);

/* Options of the calls below: a 5 s deadline. */
extern const q_grpc_call_opts_t grpctest_opts;

/* Calls t's server through stub, a unary q_rpc_* stub of its service (so
 * request and reply are typed). Evaluates to 0 with *resp in t->arena, or
 * to the q_err_t the call ended with and the server's message in err. */
#define grpctest_call(t, stub, req, resp, err, errlen)                                   \
  ((err)[0] = '\0', stub(q_grpc_channel((t)->target), (req), (resp), (t)->arena,         \
                         &grpctest_opts, (err), (errlen)))

#endif
