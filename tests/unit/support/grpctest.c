/* grpctest.c - a service on a loopback gRPC server for tests (see
 * grpctest.h). */
#include "grpctest.h"

#include <criterion/criterion.h>
#include <stdio.h>

void grpctest_start(grpctest_t *t, const ProtobufCServiceDescriptor *service,
                    const q_grpc_method_t *methods, size_t n, void *ud) {
  q_grpc_server_opts_t o = {.addr = "127.0.0.1:0", .threads = 2};
  t->service = service;
  t->srv = q_grpc_server_new(&o);
  cr_assert_not_null(t->srv);
  cr_assert_eq(q_grpc_server_add_service(t->srv, service, methods, n, ud), 0);
  int port = q_grpc_server_start(t->srv);
  cr_assert_gt(port, 0);
  snprintf(t->target, sizeof t->target, "127.0.0.1:%d", port);
  t->arena = q_arena_new(0);
}

void grpctest_stop(grpctest_t *t) {
  q_grpc_server_shutdown(t->srv, 1000);
  q_grpc_client_shutdown();
  q_arena_free(t->arena);
}

const q_grpc_call_opts_t grpctest_opts = {.timeout_ms = 5000};
