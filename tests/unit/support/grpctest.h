/* grpctest.h - one service's handlers on a loopback gRPC server, and unary
 * calls to them, for the tests of a service's gRPC surface. */
#ifndef QUARRY_TEST_GRPCTEST_H
#define QUARRY_TEST_GRPCTEST_H

#include "quarry/arena.h"
#include "quarry/grpc.h"

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

/* Calls method with req (5 s deadline). Returns 0 with *resp in t->arena,
 * or the q_err_t the call ended with and the server's message in err. */
int grpctest_call(grpctest_t *t, const char *method, const ProtobufCMessage *req,
                  ProtobufCMessage **resp, char *err, size_t errlen);

#endif
