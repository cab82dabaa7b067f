/* grpc.h - Quarry's adapter over the gRPC C core; the only code that calls
 * grpc_*.
 *
 * Server: a completion queue served by a pool of worker threads. Services
 * register their protoc-c service descriptor plus a table of handlers; one
 * generic dispatcher unpacks requests, runs handlers and packs replies.
 * Unknown methods get UNIMPLEMENTED. grpc.health.v1.Health/Check is built in.
 * Each call runs with the caller's deadline and trace id installed in the
 * thread's context (trace.h), so downstream calls inherit both.
 *
 * Client: one channel per target, created on first use and shared by all
 * threads. Calls take their deadline from the options, capped by the
 * thread's inherited deadline; idempotent unary calls are retried on
 * UNAVAILABLE with exponential backoff and full jitter. Code outside the
 * adapter calls a method through its typed stub from quarry/stubs.h,
 * generated at build time by tools/stubgen for every method of every service:
 * q_rpc_<service>_<method> in snake case (q_rpc_retriever_search), plus
 * _start/_send/_close_send/_recv/_finish/_cancel and a call type for
 * streaming methods. The stubs are q_grpc_unary and q_grpc_call_* with the
 * method fixed and the messages typed; the by-name functions below are what
 * they are built on (docs/development.md, "Calling another service").
 *
 * Every server and client call updates the grpc_server_* / grpc_client_*
 * metric families. */
#ifndef QUARRY_GRPC_H
#define QUARRY_GRPC_H

#include "quarry/arena.h"
#include "quarry/error.h"
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- server ------------------------------------------------------------ */

typedef struct q_grpc_server q_grpc_server_t;
typedef struct q_grpc_ctx q_grpc_ctx_t;

typedef enum {
  Q_GRPC_UNARY = 0,
  Q_GRPC_SERVER_STREAM, /* handler sends with q_grpc_ctx_send */
  Q_GRPC_CLIENT_STREAM, /* handler reads with q_grpc_ctx_recv */
} q_grpc_kind_t;

/* A handler. req is the unpacked request (NULL for client streaming; read
 * with q_grpc_ctx_recv instead). For unary and client-streaming methods the
 * handler sets *resp to a message allocated from q_grpc_ctx_arena(ctx) (or
 * leaves it NULL for an empty reply). Return 0 for OK or a q_err_t, with
 * detail given by q_grpc_ctx_errorf; the adapter maps it to a gRPC status.
 * Handlers run on worker threads and may block. */
typedef q_err_t (*q_grpc_handler_fn)(q_grpc_ctx_t *ctx, const ProtobufCMessage *req,
                                     ProtobufCMessage **resp, void *ud);

typedef struct q_grpc_method {
  const char *name; /* as in the .proto, e.g. "Search" */
  q_grpc_kind_t kind;
  q_grpc_handler_fn fn;
} q_grpc_method_t;

typedef struct q_grpc_server_opts {
  const char *addr;      /* "host:port"; port 0 picks a free one */
  int threads;           /* worker threads (default 8) */
  int64_t max_msg_bytes; /* receive and send limit (default 64 MiB) */
} q_grpc_server_opts_t;

/* Creates a server (not yet listening). NULL on failure (logged). */
q_grpc_server_t *q_grpc_server_new(const q_grpc_server_opts_t *opts);

/* Registers every method of svc. Methods of svc without a handler in
 * methods[] answer UNIMPLEMENTED. ud is passed to every handler. Call before
 * q_grpc_server_start. 0 or Q_EINVAL (unknown method name). */
q_err_t q_grpc_server_add_service(q_grpc_server_t *s,
                                  const ProtobufCServiceDescriptor *svc,
                                  const q_grpc_method_t *methods, size_t n, void *ud);

/* Binds, starts the worker threads and sets health to SERVING. Returns the
 * bound port (> 0), or a negative q_err_t on failure (logged). */
int q_grpc_server_start(q_grpc_server_t *s);

/* Sets the health status reported by grpc.health.v1.Health/Check. */
void q_grpc_server_set_serving(q_grpc_server_t *s, int serving);

/* Whether the process can do its work now (thread-safe, quick: called
 * from a worker thread on every health check). */
typedef bool (*q_grpc_health_cb)(void *ud);

/* Makes Health/Check answer NOT_SERVING while ready(ud) is false, on top of
 * the status above (so the check tells what the service's /readyz tells).
 * Call before q_grpc_server_start; NULL removes it. */
void q_grpc_server_set_health_cb(q_grpc_server_t *s, q_grpc_health_cb ready, void *ud);

/* Graceful stop: NOT_SERVING, stop accepting calls, let in-flight calls
 * finish for up to grace_ms, then cancel what remains, join workers and free
 * the server. Safe to call once, from any thread but a worker. */
void q_grpc_server_shutdown(q_grpc_server_t *s, int64_t grace_ms);

/* Arena of the call: freed when the call ends. */
q_arena_t *q_grpc_ctx_arena(q_grpc_ctx_t *ctx);

/* Value of request metadata key (lower case), or NULL. Owned by the call. */
const char *q_grpc_ctx_metadata(q_grpc_ctx_t *ctx, const char *key);

/* Milliseconds left before the caller's deadline (INT64_MAX when none). */
int64_t q_grpc_ctx_ms_left(q_grpc_ctx_t *ctx);

/* Sets the status message returned with the handler's error code. */
void q_grpc_ctx_errorf(q_grpc_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Server streaming: sends one message. 0, or Q_ECANCELLED when the client
 * has gone away (stop producing and return). */
q_err_t q_grpc_ctx_send(q_grpc_ctx_t *ctx, const ProtobufCMessage *msg);

/* Client streaming: receives the next message into the call's arena.
 * 0 with *msg set, 0 with *msg NULL at end of stream, Q_EINVAL when a
 * message cannot be unpacked, Q_ECANCELLED when the call died. */
q_err_t q_grpc_ctx_recv(q_grpc_ctx_t *ctx, ProtobufCMessage **msg);

/* Like q_grpc_ctx_recv, but unpacks into the caller's arena, so a long
 * upload can release each piece once it is written (one arena per piece)
 * instead of keeping every message until the call ends. */
q_err_t q_grpc_ctx_recv_into(q_grpc_ctx_t *ctx, q_arena_t *arena, ProtobufCMessage **msg);

/* ---- client ------------------------------------------------------------ */

typedef struct q_grpc_channel q_grpc_channel_t;

/* The shared channel for target ("host:port"), created on first use.
 * Owned by the adapter; lives until q_grpc_client_shutdown. Thread-safe. */
q_grpc_channel_t *q_grpc_channel(const char *target);

typedef struct q_grpc_call_opts {
  int timeout_ms;            /* per attempt; 0: 5000; capped by the
                                thread's inherited deadline */
  int max_attempts;          /* total tries on UNAVAILABLE when idempotent;
                                0: 3 */
  int idempotent;            /* retry on UNAVAILABLE */
  const char *authorization; /* sent as "authorization" metadata, or NULL */
  int64_t max_msg_bytes;     /* 0: 64 MiB */
  q_grpc_kind_t kind;        /* for metrics labels of streaming calls
                                started with q_grpc_call_start; the
                                q_rpc_* stubs set it from the method */
} q_grpc_call_opts_t;

/* Unary call. On success *resp is unpacked into arena (so freed with it).
 * Returns 0 or a q_err_t mapped from the gRPC status; err (if not NULL)
 * receives the status message. Thread-safe. */
q_err_t q_grpc_unary(q_grpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                     const char *method, const ProtobufCMessage *req,
                     ProtobufCMessage **resp, q_arena_t *arena,
                     const q_grpc_call_opts_t *opts, char *err, size_t errlen);

/* A streaming call in progress. Not thread-safe: one thread per call. */
typedef struct q_grpc_call q_grpc_call_t;

/* Starts a streaming call (client-, server- or bidi-). NULL only when out of
 * memory or the method is unknown; connection problems surface at the first
 * send/recv/finish. For server streaming, send the one request then call
 * q_grpc_call_close_send. */
q_grpc_call_t *q_grpc_call_start(q_grpc_channel_t *ch,
                                 const ProtobufCServiceDescriptor *svc,
                                 const char *method, const q_grpc_call_opts_t *opts);

/* Sends one message. 0, or an error when the call has failed (the status is
 * available from q_grpc_call_finish). */
q_err_t q_grpc_call_send(q_grpc_call_t *c, const ProtobufCMessage *msg);

/* Half-closes the sending side. */
q_err_t q_grpc_call_close_send(q_grpc_call_t *c);

/* Receives one message into arena: 0 with *msg set, 0 with *msg NULL at end
 * of stream (then call q_grpc_call_finish for the status). */
q_err_t q_grpc_call_recv(q_grpc_call_t *c, q_arena_t *arena, ProtobufCMessage **msg);

/* Waits for the final status, frees the call, returns 0 or a q_err_t; err
 * receives the status message. */
q_err_t q_grpc_call_finish(q_grpc_call_t *c, char *err, size_t errlen);

/* Cancels a streaming call without half-closing it, so the server sees an
 * aborted stream rather than a complete (truncated) one. q_grpc_call_finish
 * must still be called to free it; it then reports CANCELLED. */
void q_grpc_call_cancel(q_grpc_call_t *c);

/* Destroys every channel (at exit, after all calls are done). */
void q_grpc_client_shutdown(void);

#endif
