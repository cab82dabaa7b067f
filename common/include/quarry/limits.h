/* limits.h - every size a client request may carry or that travels between
 * services, declared once.
 *
 * Before this table each service kept its own copy of each limit, and the
 * copies disagreed (a chunk ingestion produced could be too long for the
 * embedder; a title valid at the gateway was refused by nobody, another
 * valid at the retriever could never be uploaded). Now the gateway, every
 * service's request validation, the chunker, the config tables that bound
 * configurable sizes, docs/api/openapi.yaml (x-quarry-limit annotations) and
 * docs/limits.md all take their numbers from here; tests/unit/common/
 * test_limits.c checks the OpenAPI file and docs/limits.md against the table.
 *
 * Limits internal to one module (an arena cap, a metrics buffer, the
 * tokenizer's longest term) stay in that module.
 *
 * Each row is X(name, value, description): name becomes the constant
 * Q_LIMIT_<name> (an enum constant: usable in array sizes, static
 * initialisers and _Static_assert, not in #if). Values are plain decimal
 * literals because they are also shown as text (Q_LIMIT_TEXT, the docs).
 * Bytes are bytes of UTF-8, not characters. Never renumber a limit without
 * changing the OpenAPI file and the docs with it (test_limits fails until
 * they agree). */
#ifndef QUARRY_LIMITS_H
#define QUARRY_LIMITS_H

#include <stddef.h>

#define Q_LIMITS(X)                                                                      \
  /* Identifiers */                                                                      \
  X(TENANT_ID_BYTES, 64, "tenant id: [A-Za-z0-9._-], the first a letter or digit")       \
  X(USER_ID_BYTES, 128, "user id of a principal (auth sets \"key:<key id>\")")           \
  X(KEY_ID_BYTES, 128, "API key id of a principal (auth issues 16 hex digits)")          \
  X(REQUEST_ID_BYTES, 64, "X-Request-Id and trace ids: [A-Za-z0-9._-]")                  \
  X(DOCUMENT_ID_BYTES, 64, "document id (a UUID), in paths and between services")        \
  X(JOB_ID_BYTES, 64, "ingestion job id (a UUID)")                                       \
  X(EXTERNAL_ID_BYTES, 256, "the caller's external_id of a document")                    \
  X(CHUNK_ID_BYTES, 128, "chunk id \"<document id>:<version>:<ordinal>\"")               \
  X(QUERY_ID_BYTES, 128, "query id in feedback and query events")                        \
  X(IDEMPOTENCY_KEY_BYTES, 128, "Idempotency-Key of an upload: printable ASCII")         \
  X(BATCH_IDEMPOTENCY_KEY_BYTES, 120, "Idempotency-Key of a batch (items add \"#<i>\")") \
  /* Batches of documents */                                                             \
  X(BATCH_DOCUMENTS, 1000, "documents in one batch (REST batch route, UploadBatch)")     \
  X(BATCH_BYTES, 16777216, "body of one REST batch (NDJSON or multipart), 16 MiB")       \
  X(BATCH_LINE_BYTES, 1048576, "one NDJSON line of a batch (1 MiB)")                     \
  /* Credentials */                                                                      \
  X(CREDENTIAL_BYTES, 512, "API key in Authorization: Bearer or X-API-Key")              \
  X(API_KEY_NAME_BYTES, 128, "name of an API key (CreateApiKey, create-key --name)")     \
  /* Lists (GET /v1/documents, /v1/jobs, /v1/keys) */                                    \
  X(LIST_ITEMS_DEFAULT, 50, "items of one list page when limit is not given")            \
  X(LIST_ITEMS_MAX, 500, "largest limit of one list page")                               \
  X(CURSOR_BYTES, 128, "opaque paging cursor (next_cursor) of a list")                   \
  /* Documents */                                                                        \
  X(TITLE_BYTES, 512, "document title (upload, chunks, passages)")                       \
  X(FILENAME_BYTES, 255, "file name of a document (its last path component)")            \
  X(MEDIA_TYPE_BYTES, 256, "Content-Type of a document, parameters included")            \
  X(AUTHOR_BYTES, 512, "author recorded in a document's file (Chunk.author)")            \
  X(LANGUAGE_BYTES, 35, "BCP 47 language tag of a document (Chunk.language)")            \
  X(UPLOAD_BYTES_MIN, 1, "smallest QUARRY_MAX_UPLOAD_BYTES")                             \
  X(UPLOAD_BYTES_DEFAULT, 104857600, "default QUARRY_MAX_UPLOAD_BYTES (100 MiB)")        \
  X(UPLOAD_BYTES_MAX, 1073741824, "largest QUARRY_MAX_UPLOAD_BYTES (1 GiB)")             \
  X(CHUNK_BYTES, 32768, "a chunk's text with its heading path (<= EMBED_TEXT_BYTES)")    \
  X(UPSERT_CHUNKS, 4096, "chunks per Retriever.Upsert call")                             \
  X(COMMIT_CHUNKS, 1048576, "chunks of one version a staged Upsert commit publishes")    \
  X(CHUNK_TOKENS_MAX, 4096,                                                              \
    "chunk size in tokens (words): chunk_tokens, QUARRY_CHUNK_TOKENS")                   \
  X(CHUNKING_BYTES, 32, "an upload's chunking spec \"<strategy>:<tokens>:<overlap>\"")   \
  /* Queries and answers */                                                              \
  X(QUERY_BYTES, 4096, "query text (REST, Embed, Search, Rerank, Generate, events)")     \
  X(TOP_K_MAX, 50, "largest top_k of POST /v1/query")                                    \
  X(RERANK_PASSAGES, 1000, "passages per Reranker.Rerank call")                          \
  X(GENERATE_PASSAGES, 64, "passages per Generate call; most a Rerank keeps (top_n)")    \
  X(PASSAGE_TEXT_BYTES, 65536, "text of a chunk or passage (Upsert, Rerank, Generate)")  \
  X(SNIPPET_BYTES, 300, "snippet of a citation")                                         \
  X(ANSWER_BYTES, 262144, "answer the gateway keeps (longer: answer_truncated)")         \
  X(EVENT_ANSWER_BYTES, 65536, "answer carried by a query event")                        \
  X(CHAT_MESSAGES, 128, "messages of one POST /v1/chat/completions")                     \
  X(CHAT_BYTES, 262144, "text of all messages of one POST /v1/chat/completions")         \
  /* Metadata and filters */                                                             \
  X(METADATA_BYTES, 8192, "user metadata of a document: its JSON object as text")        \
  X(METADATA_KEYS, 64, "keys of a document's user metadata object")                      \
  X(METADATA_KEY_BYTES, 64, "one key of user metadata ([A-Za-z0-9_.-])")                 \
  X(METADATA_VALUE_BYTES, 1024, "one string value of user metadata or of a filter")      \
  X(METADATA_LIST_ITEMS, 64, "strings of one list value of user metadata")               \
  X(FILTER_BYTES, 16384, "a retrieval filter as compact JSON (query, Search)")           \
  X(FILTER_DEPTH, 8, "nesting of and/or/not in a retrieval filter")                      \
  X(FILTER_CLAUSES, 64, "conditions and and/or/not nodes of one filter")                 \
  X(FILTER_VALUES, 256, "values of one \"in\" list of a filter")                         \
  /* Models */                                                                           \
  X(EMBED_TEXTS, 256, "texts per LlmGateway.Embed call")                                 \
  X(EMBED_TEXT_BYTES, 32768, "one text to embed")                                        \
  X(EMBED_DIM_MAX, 8192, "dimensions of an embedding (QUARRY_EMBED_DIM)")                \
  X(MODEL_BYTES, 256, "model name in Embed and Generate requests")                       \
  X(MAX_TOKENS, 32768, "max_tokens of Generate, and QUARRY_GEN_MAX_TOKENS")              \
  /* Feedback */                                                                         \
  X(COMMENT_BYTES, 4096, "feedback comment")                                             \
  X(FEEDBACK_CHUNK_IDS, 64, "chunk_ids of one feedback or query event")

/* The limits as constants: Q_LIMIT_TITLE_BYTES, ... */
#define Q_LIMIT_ENUM_(name, value, help) Q_LIMIT_##name = value,
enum { Q_LIMITS(Q_LIMIT_ENUM_) };
#undef Q_LIMIT_ENUM_

/* Their positions in q_limits[]: Q_LIMIT_IDX_TITLE_BYTES, ..., Q_LIMIT_COUNT. */
#define Q_LIMIT_IDX_(name, value, help) Q_LIMIT_IDX_##name,
enum { Q_LIMITS(Q_LIMIT_IDX_) Q_LIMIT_COUNT };
#undef Q_LIMIT_IDX_

/* One row of the table, for code that lists or looks up limits (tests,
 * docs). */
typedef struct q_limit {
  const char *name; /* "Q_LIMIT_TITLE_BYTES" */
  long long value;
  char text[24];    /* the value in decimal ("512") */
  const char *help; /* the one-line description */
} q_limit_t;

/* The table in declaration order; q_limits[Q_LIMIT_IDX_<name>] is <name>. */
extern const q_limit_t q_limits[Q_LIMIT_COUNT];

/* The value of limit <name> as a decimal string, usable in static
 * initialisers (the text default of a config table entry):
 * Q_LIMIT_TEXT(UPLOAD_BYTES_DEFAULT) is "104857600". */
#define Q_LIMIT_TEXT(name) (q_limits[Q_LIMIT_IDX_##name].text)

/* The row whose name is name ("Q_LIMIT_TITLE_BYTES"; the "Q_LIMIT_" prefix
 * may be left out), or NULL. Thread-safe. */
const q_limit_t *q_limit_find(const char *name);

/* Relations between limits, as compile-time facts. */
_Static_assert(Q_LIMIT_CHUNK_BYTES <= Q_LIMIT_EMBED_TEXT_BYTES,
               "every chunk ingestion makes must be accepted by the embedder");
_Static_assert(Q_LIMIT_CHUNK_BYTES <= Q_LIMIT_PASSAGE_TEXT_BYTES,
               "every chunk must be accepted by the retriever, reranker and generator");
_Static_assert(Q_LIMIT_DOCUMENT_ID_BYTES + 2 * 11 <= Q_LIMIT_CHUNK_ID_BYTES,
               "a chunk id is <document id>:<version>:<ordinal> (two ints of 10 digits)");
_Static_assert(Q_LIMIT_TOP_K_MAX <= Q_LIMIT_GENERATE_PASSAGES,
               "the gateway generates from top_k passages");
_Static_assert(Q_LIMIT_GENERATE_PASSAGES <= Q_LIMIT_RERANK_PASSAGES,
               "the passages generated from are the best of those reranked");
_Static_assert(Q_LIMIT_GENERATE_PASSAGES <= Q_LIMIT_FEEDBACK_CHUNK_IDS,
               "a query event lists the chunks its answer cites");
_Static_assert(Q_LIMIT_EVENT_ANSWER_BYTES <= Q_LIMIT_ANSWER_BYTES,
               "the query event carries a prefix of the answer");
_Static_assert(
    Q_LIMIT_BATCH_DOCUMENTS <= 1000 &&
        Q_LIMIT_BATCH_IDEMPOTENCY_KEY_BYTES + 1 + 3 <= Q_LIMIT_IDEMPOTENCY_KEY_BYTES,
    "an item of a batch is stored under \"<batch key>#<index>\", index < 1000");
_Static_assert(Q_LIMIT_BATCH_LINE_BYTES <= Q_LIMIT_BATCH_BYTES,
               "a line of a batch fits in the batch");
_Static_assert(Q_LIMIT_UPLOAD_BYTES_MIN <= Q_LIMIT_UPLOAD_BYTES_DEFAULT &&
                   Q_LIMIT_UPLOAD_BYTES_DEFAULT <= Q_LIMIT_UPLOAD_BYTES_MAX,
               "the default upload limit lies within its bounds");

#endif
