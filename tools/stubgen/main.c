/* quarry-stubgen: writes the typed client stubs (quarry/stubs.h and
 * stubs.c, compiled into libquarry.a) for every method of every gRPC service
 * Quarry knows. Run by the Makefile; not installed.
 *
 *   quarry-stubgen DESCRIPTOR_SET STUBS_H STUBS_C
 *
 * The descriptor set (protoc --descriptor_set_out --include_imports) names
 * every service and says which methods stream; protoc-c's descriptors do not
 * carry that. Each service is then looked up as the protoc-c descriptor
 * linked into this program (every generated .pb-c.o; the program is linked
 * with -rdynamic so dlsym finds the symbol protoc-c gives it) and checked
 * method by method: same position, name, input and output type. A stub
 * names its method by its index in that descriptor and takes its C types
 * from the descriptors' c_name fields, so no method name or type in the
 * stubs is typed by hand, and a mismatch stops the build here instead of
 * failing a call at run time.
 *
 * Naming: q_rpc_<service>_<method>, both in snake case the way protoc-c
 * lowers names ("LlmGateway", "CreateApiKey" -> q_rpc_llm_gateway_...,
 * ..._create_api_key). A unary method gets one blocking function and an
 * asynchronous one, _async, with a callback type _cb; a streaming method
 * gets a call type q_rpc_<s>_<m>_call_t and _start, _send, _close_send,
 * _recv, _finish and _cancel, and a server-streaming one also _async_start
 * with a message callback type _msg_cb. The typed callbacks reach the
 * untyped ones of quarry/grpc.h through a trampoline per method, which gets
 * the typed callback and its user data from a record in the call's arena.
 * Exits 0 having written both files, or 1 having written neither, with the
 * reason on stderr. */
#include <protobuf-c/protobuf-c.h>

#include "quarry/error.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERVICES 64
#define MAX_METHODS 64
#define MAX_NAME 256
#define MAX_SET_BYTES (16 << 20) /* descriptor set size */

/* ---- reading the descriptor set (protobuf wire format) ------------------- */

typedef struct span {
  const uint8_t *p, *end;
} span_t;

typedef struct field {
  uint32_t num;
  int type;    /* wire type */
  uint64_t v;  /* varint value */
  span_t data; /* length-delimited value */
} field_t;

static bool read_varint(span_t *in, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && in->p < in->end; shift += 7) {
    uint8_t b = *in->p++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return true;
  }
  return false;
}

/* Reads the next field of a message: 1 with *f set, 0 at the end of the
 * message, Q_EINVAL (negative) when it is malformed. */
static int next_field(span_t *in, field_t *f) {
  uint64_t key, len;
  if (in->p == in->end)
    return 0;
  if (!read_varint(in, &key))
    return Q_EINVAL;
  f->num = (uint32_t)(key >> 3);
  f->type = (int)(key & 7);
  switch (f->type) {
  case 0: return read_varint(in, &f->v) ? 1 : Q_EINVAL;
  case 1: len = 8; break;
  case 2:
    if (!read_varint(in, &len))
      return Q_EINVAL;
    break;
  case 5: len = 4; break;
  default: /* groups: not used by descriptor.proto */ return Q_EINVAL;
  }
  if (len > (uint64_t)(in->end - in->p))
    return Q_EINVAL;
  f->data.p = in->p;
  f->data.end = in->p + len;
  in->p += len;
  return 1;
}

/* ---- the model ------------------------------------------------------------ */

typedef struct method {
  char name[MAX_NAME]; /* "Search" */
  char in[MAX_NAME];   /* ".quarry.v1.SearchRequest" */
  char out[MAX_NAME];
  bool client_stream, server_stream;
  const char *in_c, *out_c;    /* "Quarry__V1__SearchRequest", from protoc-c */
  char stub[2 * MAX_NAME + 8]; /* "q_rpc_retriever_search" */
} method_t;

typedef struct service {
  char file[MAX_NAME]; /* "quarry/v1/retriever.proto" */
  char full[MAX_NAME]; /* "quarry.v1.Retriever" */
  char short_name[MAX_NAME];
  char symbol[MAX_NAME]; /* "quarry__v1__retriever__descriptor" */
  const ProtobufCServiceDescriptor *d;
  method_t methods[MAX_METHODS];
  size_t n;
} service_t;

static service_t services[MAX_SERVICES];
static size_t nservices;

static q_err_t fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static q_err_t fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("quarry-stubgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return Q_EINVAL;
}

/* Copies a length-delimited string field into dst. */
static q_err_t copy_str(char *dst, const field_t *f, const char *what) {
  size_t n = (size_t)(f->data.end - f->data.p);
  if (f->type != 2 || n >= MAX_NAME)
    return fail("descriptor set: bad %s", what);
  memcpy(dst, f->data.p, n);
  dst[n] = '\0';
  return 0;
}

/* MethodDescriptorProto: name 1, input_type 2, output_type 3,
 * client_streaming 5, server_streaming 6. */
static q_err_t parse_method(span_t in, method_t *m) {
  field_t f;
  int r;
  while ((r = next_field(&in, &f)) == 1) {
    if (f.num == 1 && copy_str(m->name, &f, "method name"))
      return Q_EINVAL;
    if (f.num == 2 && copy_str(m->in, &f, "input type"))
      return Q_EINVAL;
    if (f.num == 3 && copy_str(m->out, &f, "output type"))
      return Q_EINVAL;
    if (f.num == 5 && f.type == 0)
      m->client_stream = f.v != 0;
    if (f.num == 6 && f.type == 0)
      m->server_stream = f.v != 0;
  }
  return r ? fail("descriptor set: malformed method") : 0;
}

/* ServiceDescriptorProto: name 1, method 2. */
static q_err_t parse_service(span_t in, service_t *s) {
  field_t f;
  int r;
  while ((r = next_field(&in, &f)) == 1) {
    if (f.num == 1 && copy_str(s->short_name, &f, "service name"))
      return Q_EINVAL;
    if (f.num == 2 && f.type == 2) {
      if (s->n == MAX_METHODS)
        return fail("more than %d methods in a service", MAX_METHODS);
      if (parse_method(f.data, &s->methods[s->n++]))
        return Q_EINVAL;
    }
  }
  return r ? fail("descriptor set: malformed service") : 0;
}

/* FileDescriptorProto: name 1, package 2, service 6. */
static q_err_t parse_file(span_t in) {
  char name[MAX_NAME] = "", pkg[MAX_NAME] = "";
  size_t first = nservices;
  field_t f;
  int r;
  while ((r = next_field(&in, &f)) == 1) {
    if (f.num == 1 && copy_str(name, &f, "file name"))
      return Q_EINVAL;
    if (f.num == 2 && copy_str(pkg, &f, "package"))
      return Q_EINVAL;
    if (f.num == 6 && f.type == 2) {
      if (nservices == MAX_SERVICES)
        return fail("more than %d services", MAX_SERVICES);
      service_t *s = &services[nservices++];
      memset(s, 0, sizeof *s);
      if (parse_service(f.data, s))
        return Q_EINVAL;
    }
  }
  if (r)
    return fail("descriptor set: malformed file");
  /* The package may come after the services. */
  for (size_t i = first; i < nservices; i++) {
    service_t *s = &services[i];
    snprintf(s->file, sizeof s->file, "%s", name);
    if (snprintf(s->full, sizeof s->full, "%s%s%s", pkg, pkg[0] ? "." : "",
                 s->short_name) >= (int)sizeof s->full)
      return fail("service name too long: %s", s->short_name);
  }
  return 0;
}

/* FileDescriptorSet: file 1. */
static q_err_t parse_set(const uint8_t *buf, size_t len) {
  span_t in = {buf, buf + len};
  field_t f;
  int r;
  while ((r = next_field(&in, &f)) == 1)
    if (f.num == 1 && f.type == 2 && parse_file(f.data))
      return Q_EINVAL;
  return r ? fail("descriptor set: malformed") : 0;
}

/* ---- checking against the protoc-c descriptors ---------------------------- */

/* Appends s to dst (cap bytes). -1 when it does not fit. */
static q_err_t append(char *dst, size_t cap, const char *s) {
  size_t n = strlen(dst);
  int w = snprintf(dst + n, cap - n, "%s", s);
  return w < 0 || (size_t)w >= cap - n ? fail("name too long: %s%s", dst, s) : 0;
}

/* Appends name lowered the way protoc-c does (CamelToLower: "LlmGateway" ->
 * "llm_gateway"). Q_EINVAL when it does not fit. */
static q_err_t append_lower(char *dst, size_t cap, const char *name, size_t len) {
  size_t n = strlen(dst);
  bool was_upper = true; /* no leading '_' */
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    bool upper = c >= 'A' && c <= 'Z';
    if (n + 3 > cap)
      return fail("name too long: %s", name);
    if (upper && !was_upper)
      dst[n++] = '_';
    dst[n++] = upper ? (char)(c - 'A' + 'a') : c;
    was_upper = upper;
  }
  dst[n] = '\0';
  return 0;
}

static bool is_identifier(const char *s) {
  if (!*s || (*s >= '0' && *s <= '9'))
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_'))
      return false;
  return true;
}

/* Finds the protoc-c descriptor of s and checks every method against it. */
static q_err_t check_service(service_t *s) {
  /* protoc-c's FullNameToLower: each dotted part lowered, joined by "__". */
  s->symbol[0] = '\0';
  for (const char *part = s->full; *part;) {
    size_t len = strcspn(part, ".");
    if (len && ((s->symbol[0] && append(s->symbol, sizeof s->symbol, "__")) ||
                append_lower(s->symbol, sizeof s->symbol, part, len)))
      return Q_EINVAL;
    part += len + (part[len] == '.');
  }
  if (append(s->symbol, sizeof s->symbol, "__descriptor"))
    return Q_EINVAL;
  s->d = dlsym(RTLD_DEFAULT, s->symbol);
  if (!s->d)
    return fail("%s (%s): no protoc-c descriptor %s linked in", s->full, s->file,
                s->symbol);
  if (s->d->magic != PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC || strcmp(s->d->name, s->full))
    return fail("%s: %s is not its service descriptor", s->full, s->symbol);
  if (s->d->n_methods != s->n)
    return fail("%s: %u methods in protoc-c's descriptor, %zu in the descriptor set",
                s->full, s->d->n_methods, s->n);
  for (size_t i = 0; i < s->n; i++) {
    method_t *m = &s->methods[i];
    const ProtobufCMethodDescriptor *md = &s->d->methods[i];
    if (strcmp(md->name, m->name))
      return fail("%s: method %zu is %s in protoc-c's descriptor, %s in the set", s->full,
                  i, md->name, m->name);
    if (m->in[0] != '.' || strcmp(md->input->name, m->in + 1) || m->out[0] != '.' ||
        strcmp(md->output->name, m->out + 1))
      return fail("%s/%s: message types differ between protoc-c and the set", s->full,
                  m->name);
    if (m->client_stream && m->server_stream)
      return fail("%s/%s: bidirectional streaming is not supported by quarry/grpc.h",
                  s->full, m->name);
    m->in_c = md->input->c_name;
    m->out_c = md->output->c_name;
    snprintf(m->stub, sizeof m->stub, "q_rpc_");
    if (append_lower(m->stub, sizeof m->stub, s->short_name, strlen(s->short_name)) ||
        append(m->stub, sizeof m->stub, "_") ||
        append_lower(m->stub, sizeof m->stub, m->name, strlen(m->name)))
      return Q_EINVAL;
    if (!is_identifier(m->stub) || !is_identifier(m->in_c) || !is_identifier(m->out_c))
      return fail("%s/%s: not a C identifier: %s", s->full, m->name, m->stub);
  }
  return 0;
}

/* Two methods must not get the same stub name (services of different
 * packages with the same short name would). */
static q_err_t check_unique(void) {
  for (size_t a = 0; a < nservices; a++)
    for (size_t i = 0; i < services[a].n; i++)
      for (size_t b = a; b < nservices; b++)
        for (size_t j = b == a ? i + 1 : 0; j < services[b].n; j++)
          if (strcmp(services[a].methods[i].stub, services[b].methods[j].stub) == 0)
            return fail("%s/%s and %s/%s would both be %s", services[a].full,
                        services[a].methods[i].name, services[b].full,
                        services[b].methods[j].name, services[a].methods[i].stub);
  return 0;
}

/* ---- writing -------------------------------------------------------------- */

static const char *kind_enum(const method_t *m) {
  return m->client_stream   ? "Q_GRPC_CLIENT_STREAM"
         : m->server_stream ? "Q_GRPC_SERVER_STREAM"
                            : "Q_GRPC_UNARY";
}

static const char *kind_text(const method_t *m) {
  return m->client_stream   ? "client streaming"
         : m->server_stream ? "server streaming"
                            : "unary";
}

static void write_header(FILE *h) {
  fputs("/* stubs.h - typed client stubs for every method of every gRPC service\n"
        " * Quarry knows. GENERATED by tools/stubgen (quarry-stubgen) from the\n"
        " * descriptor set and the protoc-c descriptors: do not edit.\n"
        " *\n"
        " * q_rpc_<service>_<method>, in snake case. A unary stub is q_grpc_unary\n"
        " * for that method with typed request and reply: on success *resp is\n"
        " * the reply (never NULL), unpacked into arena; on failure *resp is NULL,\n"
        " * the q_err_t is mapped from the gRPC status and err receives its\n"
        " * message. A streaming method has a call type q_rpc_<s>_<m>_call_t (a\n"
        " * q_grpc_call_t that only takes that method's messages) and _start,\n"
        " * _send, _close_send, _recv, _finish and _cancel, which behave as the\n"
        " * q_grpc_call_* functions, except that _start sets opts->kind from the\n"
        " * method.\n"
        " *\n"
        " * Asynchronous: a unary method also has _async, q_grpc_unary_async with\n"
        " * a callback of type _cb that gets the typed reply; a server-streaming\n"
        " * method has _async_start, q_grpc_stream_async_start with an on_message\n"
        " * of type _msg_cb that gets the typed message. Besides the errors of\n"
        " * those, they return Q_ENOMEM when arena cannot hold the record (a few\n"
        " * words) that carries the typed callback. Client streaming has no\n"
        " * asynchronous form. Thread-safety, ownership, callback rules:\n"
        " * quarry/grpc.h. */\n"
        "#ifndef QUARRY_STUBS_H\n"
        "#define QUARRY_STUBS_H\n\n"
        "#include \"quarry/arena.h\"\n"
        "#include \"quarry/error.h\"\n"
        "#include \"quarry/grpc.h\"\n\n",
        h);
  for (size_t i = 0; i < nservices; i++) {
    bool seen = false;
    for (size_t j = 0; j < i; j++)
      seen = seen || strcmp(services[j].file, services[i].file) == 0;
    size_t n = strlen(services[i].file);
    if (!seen)
      fprintf(h, "#include \"%.*s.pb-c.h\"\n", (int)(n > 6 ? n - 6 : n),
              services[i].file);
  }
  for (size_t i = 0; i < nservices; i++) {
    const service_t *s = &services[i];
    fprintf(h, "\n/* ---- %s (%s) ---- */\n", s->full, s->file);
    for (size_t k = 0; k < s->n; k++) {
      const method_t *m = &s->methods[k];
      fprintf(h, "\n/* %s/%s (%s). */\n", s->full, m->name, kind_text(m));
      if (!m->client_stream && !m->server_stream) {
        fprintf(h,
                "q_err_t %s(\n"
                "    q_grpc_channel_t *ch, const %s *req,\n"
                "    %s **resp, q_arena_t *arena,\n"
                "    const q_grpc_call_opts_t *opts, char *err, size_t errlen);\n"
                "typedef void (*%s_cb)(void *ud, q_err_t rc,\n"
                "    %s *resp, const char *status_message);\n"
                "q_err_t %s_async(\n"
                "    q_grpc_channel_t *ch, const %s *req,\n"
                "    q_arena_t *arena, const q_grpc_call_opts_t *opts,\n"
                "    %s_cb cb, void *ud, q_grpc_async_t **handle);\n",
                m->stub, m->in_c, m->out_c, m->stub, m->out_c, m->stub, m->in_c, m->stub);
        continue;
      }
      fprintf(h,
              "typedef struct %s_call %s_call_t;\n"
              "%s_call_t *%s_start(\n"
              "    q_grpc_channel_t *ch, const q_grpc_call_opts_t *opts);\n"
              "q_err_t %s_send(%s_call_t *c,\n"
              "    const %s *msg);\n"
              "q_err_t %s_close_send(%s_call_t *c);\n"
              "q_err_t %s_recv(%s_call_t *c, q_arena_t *arena,\n"
              "    %s **msg);\n"
              "q_err_t %s_finish(%s_call_t *c, char *err,\n"
              "    size_t errlen);\n"
              "void %s_cancel(%s_call_t *c);\n",
              m->stub, m->stub, m->stub, m->stub, m->stub, m->stub, m->in_c, m->stub,
              m->stub, m->stub, m->stub, m->out_c, m->stub, m->stub, m->stub, m->stub);
      if (m->server_stream)
        fprintf(h,
                "typedef bool (*%s_msg_cb)(void *ud,\n"
                "    %s *msg);\n"
                "q_err_t %s_async_start(\n"
                "    q_grpc_channel_t *ch, const %s *req,\n"
                "    q_arena_t *arena, const q_grpc_call_opts_t *opts,\n"
                "    %s_msg_cb on_message, q_grpc_stream_done_cb on_done,\n"
                "    void *ud, q_grpc_async_t **handle);\n",
                m->stub, m->out_c, m->stub, m->in_c, m->stub);
    }
  }
  fputs("\n#endif\n", h);
}

static void write_source(FILE *c) {
  fputs(
      "/* stubs.c - GENERATED by tools/stubgen: the typed client stubs of\n"
      " * quarry/stubs.h. Each names its method by index in the protoc-c service\n"
      " * descriptor; the generator checked every index against the descriptor\n"
      " * set. */\n"
      "#include \"quarry/stubs.h\"\n\n"
      "static q_err_t unary(q_grpc_channel_t *ch, const ProtobufCServiceDescriptor "
      "*svc,\n"
      "                     unsigned i, const ProtobufCMessage *req,\n"
      "                     ProtobufCMessage **resp, q_arena_t *arena,\n"
      "                     const q_grpc_call_opts_t *opts, char *err, size_t errlen) {\n"
      "  return q_grpc_unary(ch, svc, svc->methods[i].name, req, resp, arena, opts, "
      "err,\n"
      "                      errlen);\n"
      "}\n\n"
      "/* The kind (the grpc_type metrics label) is the method's, whatever\n"
      " * opts says. */\n"
      "static q_grpc_call_t *start(q_grpc_channel_t *ch,\n"
      "                            const ProtobufCServiceDescriptor *svc, unsigned i,\n"
      "                            q_grpc_kind_t kind, const q_grpc_call_opts_t *opts) "
      "{\n"
      "  q_grpc_call_opts_t o = opts ? *opts : (q_grpc_call_opts_t){0};\n"
      "  o.kind = kind;\n"
      "  return q_grpc_call_start(ch, svc, svc->methods[i].name, &o);\n"
      "}\n\n"
      "/* An asynchronous stub's typed callback and user data, in the call's\n"
      " * arena: the method's trampoline restores fn's type and calls it. */\n"
      "typedef struct typed {\n"
      "  void (*fn)(void);\n"
      "  q_grpc_stream_done_cb on_done;\n"
      "  void *ud;\n"
      "} typed_t;\n\n"
      "static q_err_t typed_new(q_arena_t *arena, void (*fn)(void),\n"
      "                         q_grpc_stream_done_cb on_done, bool stream, void *ud,\n"
      "                         q_grpc_async_t **handle, typed_t **out) {\n"
      "  if (handle)\n"
      "    *handle = NULL;\n"
      "  if (!arena || !fn || (stream && !on_done))\n"
      "    return Q_EINVAL;\n"
      "  typed_t *t = q_arena_alloc(arena, sizeof *t);\n"
      "  if (!t)\n"
      "    return Q_ENOMEM;\n"
      "  t->fn = fn;\n"
      "  t->on_done = on_done;\n"
      "  t->ud = ud;\n"
      "  *out = t;\n"
      "  return Q_OK;\n"
      "}\n\n"
      "/* Unused when no method streams from the server. */\n"
      "static __attribute__((unused)) void typed_done(void *ud, q_err_t rc,\n"
      "                                               const char *status_message) {\n"
      "  const typed_t *t = ud;\n"
      "  t->on_done(t->ud, rc, status_message);\n"
      "}\n",
      c);
  for (size_t i = 0; i < nservices; i++) {
    const service_t *s = &services[i];
    fprintf(c, "\n/* ---- %s ---- */\n", s->full);
    for (size_t k = 0; k < s->n; k++) {
      const method_t *m = &s->methods[k];
      const char *st = m->stub;
      /* The trampolines are static: named without the q_rpc_ prefix. */
      const char *local = st + strlen("q_rpc_");
      if (!m->client_stream && !m->server_stream) {
        fprintf(c,
                "\nq_err_t %s(\n"
                "    q_grpc_channel_t *ch, const %s *req,\n"
                "    %s **resp, q_arena_t *arena,\n"
                "    const q_grpc_call_opts_t *opts, char *err, size_t errlen) {\n"
                "  ProtobufCMessage *m = NULL;\n"
                "  q_err_t rc = unary(ch, &%s, %zu /* %s */, &req->base, &m,\n"
                "                     arena, opts, err, errlen);\n"
                "  *resp = (%s *)m;\n"
                "  return rc;\n"
                "}\n",
                st, m->in_c, m->out_c, s->symbol, k, m->name, m->out_c);
        fprintf(c,
                "\nstatic void %s_reply(void *ud, q_err_t rc,\n"
                "    ProtobufCMessage *resp, const char *status_message) {\n"
                "  const typed_t *t = ud;\n"
                "  ((%s_cb)t->fn)(t->ud, rc, (%s *)resp,\n"
                "      status_message);\n"
                "}\n\n"
                "q_err_t %s_async(\n"
                "    q_grpc_channel_t *ch, const %s *req,\n"
                "    q_arena_t *arena, const q_grpc_call_opts_t *opts,\n"
                "    %s_cb cb, void *ud, q_grpc_async_t **handle) {\n"
                "  typed_t *t = NULL;\n"
                "  q_err_t rc = typed_new(arena, (void (*)(void))cb, NULL, false, ud,\n"
                "                         handle, &t);\n"
                "  if (rc)\n"
                "    return rc;\n"
                "  return q_grpc_unary_async(ch, &%s, %zu /* %s */, &req->base,\n"
                "                            arena, opts, %s_reply, t, handle);\n"
                "}\n",
                local, st, m->out_c, st, m->in_c, st, s->symbol, k, m->name, local);
        continue;
      }
      fprintf(c,
              "\n%s_call_t *%s_start(\n"
              "    q_grpc_channel_t *ch, const q_grpc_call_opts_t *opts) {\n"
              "  return (%s_call_t *)start(ch, &%s, %zu /* %s */,\n"
              "                            %s, opts);\n"
              "}\n\n"
              "q_err_t %s_send(%s_call_t *c,\n"
              "    const %s *msg) {\n"
              "  return q_grpc_call_send((q_grpc_call_t *)c, &msg->base);\n"
              "}\n\n"
              "q_err_t %s_close_send(%s_call_t *c) {\n"
              "  return q_grpc_call_close_send((q_grpc_call_t *)c);\n"
              "}\n\n"
              "q_err_t %s_recv(%s_call_t *c, q_arena_t *arena,\n"
              "    %s **msg) {\n"
              "  ProtobufCMessage *m = NULL;\n"
              "  q_err_t rc = q_grpc_call_recv((q_grpc_call_t *)c, arena, &m);\n"
              "  *msg = (%s *)m;\n"
              "  return rc;\n"
              "}\n\n"
              "q_err_t %s_finish(%s_call_t *c, char *err,\n"
              "    size_t errlen) {\n"
              "  return q_grpc_call_finish((q_grpc_call_t *)c, err, errlen);\n"
              "}\n\n"
              "void %s_cancel(%s_call_t *c) {\n"
              "  q_grpc_call_cancel((q_grpc_call_t *)c);\n"
              "}\n",
              st, st, st, s->symbol, k, m->name, kind_enum(m), st, st, m->in_c, st, st,
              st, st, m->out_c, m->out_c, st, st, st, st);
      if (m->server_stream)
        fprintf(c,
                "\nstatic bool %s_message(void *ud, ProtobufCMessage *msg) {\n"
                "  const typed_t *t = ud;\n"
                "  return ((%s_msg_cb)t->fn)(t->ud,\n"
                "      (%s *)msg);\n"
                "}\n\n"
                "q_err_t %s_async_start(\n"
                "    q_grpc_channel_t *ch, const %s *req,\n"
                "    q_arena_t *arena, const q_grpc_call_opts_t *opts,\n"
                "    %s_msg_cb on_message, q_grpc_stream_done_cb on_done,\n"
                "    void *ud, q_grpc_async_t **handle) {\n"
                "  typed_t *t = NULL;\n"
                "  q_err_t rc = typed_new(arena, (void (*)(void))on_message, on_done,\n"
                "                         true, ud, handle, &t);\n"
                "  if (rc)\n"
                "    return rc;\n"
                "  return q_grpc_stream_async_start(ch, &%s, %zu /* %s */,\n"
                "                                   &req->base, arena, opts,\n"
                "                                   %s_message, typed_done, t,\n"
                "                                   handle);\n"
                "}\n",
                local, st, m->out_c, st, m->in_c, st, s->symbol, k, m->name, local);
    }
  }
}

/* Writes path through a temporary file, so a failed run leaves no file a
 * later make would take as up to date. */
static q_err_t write_file(const char *path, void (*fn)(FILE *)) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return fail("path too long: %s", path);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return fail("cannot write %s", tmp);
  fn(f);
  if (ferror(f) | fclose(f)) {
    remove(tmp);
    return fail("cannot write %s", tmp);
  }
  if (rename(tmp, path)) {
    remove(tmp);
    return fail("cannot rename %s to %s", tmp, path);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: quarry-stubgen DESCRIPTOR_SET STUBS_H STUBS_C\n");
    return 2;
  }
  static uint8_t buf[MAX_SET_BYTES];
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    fail("cannot open %s", argv[1]);
    return 1;
  }
  size_t len = fread(buf, 1, sizeof buf, f);
  bool bad = ferror(f) || len == sizeof buf;
  fclose(f);
  if (bad) {
    fail("cannot read %s (or larger than %d bytes)", argv[1], MAX_SET_BYTES);
    return 1;
  }
  if (parse_set(buf, len))
    return 1;
  if (nservices == 0) {
    fail("%s holds no service", argv[1]);
    return 1;
  }
  for (size_t i = 0; i < nservices; i++)
    if (check_service(&services[i]))
      return 1;
  if (check_unique())
    return 1;
  if (write_file(argv[2], write_header) || write_file(argv[3], write_source)) {
    remove(argv[2]);
    return 1;
  }
  return 0;
}
