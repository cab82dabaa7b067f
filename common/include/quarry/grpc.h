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
 * Those calls block the calling thread. Event-driven callers (the gateway)
 * use the asynchronous client instead: q_grpc_unary_async and
 * q_grpc_stream_async_start (typed: q_rpc_<service>_<method>_async and
 * _async_start) return at once and deliver the outcome to a callback run on
 * one of a few loop threads owned by the adapter, so no thread waits for a
 * downstream reply (see "asynchronous client" below).
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

/* true once the call is over for the client: it cancelled the call, went
 * away or let its deadline pass. A long handler polls it to stop work
 * nobody will read; a streaming handler also learns it from
 * q_grpc_ctx_send. Does not block. */
bool q_grpc_ctx_cancelled(q_grpc_ctx_t *ctx);

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
  int timeout_ms;            /* per attempt; 0: 5000; capped by
                                deadline_ms and, for blocking calls, by the
                                thread's inherited deadline */
  int max_attempts;          /* total tries on UNAVAILABLE when idempotent;
                                0: 3 */
  int idempotent;            /* retry on UNAVAILABLE */
  const char *authorization; /* sent as "authorization" metadata, or NULL */
  int64_t max_msg_bytes;     /* 0: 64 MiB */
  q_grpc_kind_t kind;        /* for metrics labels of streaming calls
                                started with q_grpc_call_start; the
                                q_rpc_* stubs set it from the method */
  int64_t deadline_ms;       /* absolute, in q_now_ms() time: caps every
                                attempt, and no retry waits past it; 0:
                                none. The one deadline an asynchronous call
                                has (it ignores the thread's) */
  const char *trace_id;      /* sent as x-trace-id (and traceparent when a
                                32-hex W3C id); must pass q_trace_id_valid.
                                NULL or "": a blocking call sends the
                                thread's (q_trace_id), an asynchronous call
                                none */
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
 * memory, the method is unknown or opts->trace_id is not a valid trace id;
 * connection problems surface at the first send/recv/finish. For server
 * streaming, send the one request then call q_grpc_call_close_send. */
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

/* Stops the asynchronous client (see below), then destroys every channel.
 * At exit, once no thread starts calls any more and every blocking call is
 * done; never from a callback. Asynchronous calls still in flight end with
 * Q_ECANCELLED, their callbacks run before this returns. The client can be
 * used again afterwards: channels and loop threads start again on first
 * use. */
void q_grpc_client_shutdown(void);

/* ---- asynchronous client ------------------------------------------------
 *
 * Threads. A few loop threads (q_grpc_async_set_threads; 2 by default),
 * started with the first asynchronous call and stopped by
 * q_grpc_client_shutdown, each wait on a completion queue of their own.
 * Every callback of an asynchronous call runs on a loop thread. A callback
 * must not block (no blocking q_rpc_* call, no database, no sleep, no lock
 * held for long): while it runs, every other call served by that thread
 * waits. It may start further asynchronous calls, cancel or resume any call.
 *
 * Affinity. A call is served by the loop thread chosen by its arena: calls
 * given the same arena (the calls of one request) run their callbacks on the
 * same thread, one at a time, so they may use that arena and the request's
 * state without a lock. Between the start of a call and its final callback
 * the adapter writes replies into the arena on that thread: the owner
 * touches the arena there only (in callbacks of calls sharing it), never
 * from another thread meanwhile.
 *
 * Context. An asynchronous call never reads the thread's trace context: its
 * deadline is opts->deadline_ms (with timeout_ms per attempt) and its trace
 * id opts->trace_id. A loop thread serves many requests, so a thread-local
 * context there would be another request's.
 *
 * Outcome. A start function returns 0 when the call has started: its final
 * callback (cb for a unary call, on_done for a stream) will then run exactly
 * once, also when the call fails, times out or is cancelled, so the owner
 * frees its state in one place. It may run on a loop thread before the start
 * function has returned. Any other return is the error of a call that never
 * started (Q_EINVAL: bad arguments; Q_ETOOBIG: request over the message
 * limit; Q_ENOMEM; Q_ERESOURCE: no loop thread could be started;
 * Q_ECANCELLED: q_grpc_client_shutdown is under way; Q_EINTERNAL: the gRPC
 * core refused the call): no callback will run and *handle is NULL.
 *
 * Handle. *handle is set before the call can complete and is valid until
 * the final callback returns; the adapter frees it then, so the owner drops
 * its copy there. Until then q_grpc_async_cancel and
 * q_grpc_stream_async_resume may be called from any thread; once the final
 * callback has started they do nothing. On the call's loop thread (in
 * callbacks of calls sharing its arena) a copy not yet dropped is always
 * valid. Another thread must order its call before the final callback's
 * return: hold a lock of the owner's, which the final callback also takes
 * to drop the copy.
 *
 * The request message is packed before the start function returns: it need
 * not outlive the call. Metrics are those of blocking calls
 * (grpc_client_*, same labels). */

/* An asynchronous call in flight; see "Handle" above. */
typedef struct q_grpc_async q_grpc_async_t;

/* Final callback of an asynchronous unary call, on a loop thread. rc is 0 or
 * a q_err_t as q_grpc_unary returns it (Q_ECANCELLED after
 * q_grpc_async_cancel). resp is the reply, unpacked into the call's arena,
 * when rc is 0, else NULL. status_message is the status message ("" on
 * success), valid until the callback returns. */
typedef void (*q_grpc_unary_cb)(void *ud, q_err_t rc, ProtobufCMessage *resp,
                                const char *status_message);

/* Sets how many loop threads serve asynchronous calls, 1 to 16 (default 2).
 * Takes effect when the loops start: with the first asynchronous call, or
 * the first after q_grpc_client_shutdown. 0, or Q_EINVAL out of range. */
q_err_t q_grpc_async_set_threads(int n);

/* Starts an asynchronous unary call of svc->methods[method_index] with the
 * semantics of q_grpc_unary (per-attempt timeout capped by opts->deadline_ms,
 * authorization, trace id, retries of idempotent calls on UNAVAILABLE with
 * exponential backoff and full jitter, waiting on a timer of the loop
 * thread). arena receives the reply and picks the loop thread; opts may be
 * NULL; handle may be NULL when the call will never be cancelled. Returns
 * 0 and later calls cb(ud, ...) once, or an error and never calls it (see
 * "Outcome"). Thread-safe. */
q_err_t q_grpc_unary_async(q_grpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                           unsigned method_index, const ProtobufCMessage *req,
                           q_arena_t *arena, const q_grpc_call_opts_t *opts,
                           q_grpc_unary_cb cb, void *ud, q_grpc_async_t **handle);

/* Receives one message of an asynchronous server stream, on a loop thread.
 * msg is unpacked into the stream's arena. Return true to receive the next
 * message, false to pause: no further message is read (and HTTP/2 flow
 * control soon stops the server) until q_grpc_stream_async_resume. A paused
 * stream still ends, with on_done, when the server had sent everything, or
 * the call fails or is cancelled. */
typedef bool (*q_grpc_stream_msg_cb)(void *ud, ProtobufCMessage *msg);

/* Final callback of an asynchronous server stream, on a loop thread, after
 * the last on_message: rc is 0 when the server ended the stream with OK,
 * else a q_err_t mapped from the status (Q_ECANCELLED after
 * q_grpc_async_cancel, Q_EINTERNAL for a malformed message, which also
 * cancels the call). status_message as for q_grpc_unary_cb. */
typedef void (*q_grpc_stream_done_cb)(void *ud, q_err_t rc, const char *status_message);

/* Starts a server-streaming call of svc->methods[method_index]: sends req and
 * half-closes, then calls on_message for each message received, in order,
 * one at a time, and on_done once at the end (see "Outcome"). The next
 * message is read only once on_message has returned true, so a consumer
 * never receives faster than it handles. Streams are not retried;
 * timeout_ms (capped by deadline_ms) bounds the whole stream. Arguments as for
 * q_grpc_unary_async; every message is unpacked into arena, so it lives until the arena
 * is freed. Thread-safe. */
q_err_t q_grpc_stream_async_start(q_grpc_channel_t *ch,
                                  const ProtobufCServiceDescriptor *svc,
                                  unsigned method_index, const ProtobufCMessage *req,
                                  q_arena_t *arena, const q_grpc_call_opts_t *opts,
                                  q_grpc_stream_msg_cb on_message,
                                  q_grpc_stream_done_cb on_done, void *ud,
                                  q_grpc_async_t **handle);

/* Reads the next message of a stream whose on_message returned false. A
 * resume that comes while the stream is not paused is remembered until the
 * next on_message returns: if that one asks for a pause, the stream goes
 * on instead (so a consumer that drains between deciding to pause and the
 * pause taking effect cannot lose its resume; at worst one more message is
 * read). A no-op on a unary call, or once on_done has started. Thread-safe
 * (see "Handle"). */
void q_grpc_stream_async_resume(q_grpc_async_t *h);

/* Cancels an asynchronous call: the server sees the call cancelled, no
 * further on_message runs once the current one (if any) has returned, and
 * the final callback runs once with Q_ECANCELLED, promptly even while the
 * call waits to retry or a stream is paused. A no-op once the final callback
 * has started, and for NULL. Thread-safe (see "Handle"). */
void q_grpc_async_cancel(q_grpc_async_t *h);

#endif
