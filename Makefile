# Quarry build. Sources are found by directory, at any depth, and listed
# once; dependencies come from -MMD -MP. `make help` lists the targets.
#   common/src/**.c                libquarry.a (with the generated protobuf code)
#   services/<svc>/main.c          the entry of quarry-<svc>
#   services/<svc>/**.c (the rest) libsvc_<svc>.a, which unit tests link too
#   tools/<tool>/**.c              quarry-<tool> (a folder with a main.c)
#   tools/cli/**.c                 quarry, the command-line client
#   tests/unit/<area>/**/test_*.c  one Criterion binary each
#   tests/unit/support/**.c        fixtures every unit test links

BUILD    ?= build
CC       ?= gcc
SAN      ?=
OPT      ?= -O2
PKGS     := grpc libprotobuf-c jansson libmicrohttpd libpq hiredis rdkafka libcurl libsodium libcrypto libutf8proc
CPPFLAGS += -D_GNU_SOURCE -Icommon/include -I$(BUILD)/gen $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -pthread -MMD -MP $(SAN)
LDFLAGS  += -pthread $(SAN)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lstemmer -lm

SERVICES := gateway auth ingestion retriever reranker llm-gateway feedback
# Libraries only one service needs: SVC_PKGS_<svc> (pkg-config names) adds their
# compile flags to that service's objects and tests, and their link flags to its
# binary and tests only (quarry-gateway does not link poppler).
SVC_PKGS_ingestion := poppler-glib libxml-2.0 libzip md4c uchardet libseccomp tesseract lept libexttextcat
svc_cflags = $(if $(SVC_PKGS_$(1)),$(shell pkg-config --cflags $(SVC_PKGS_$(1)) 2>/dev/null))
svc_libs   = $(if $(SVC_PKGS_$(1)),$(shell pkg-config --libs $(SVC_PKGS_$(1)) 2>/dev/null))
PROTOS   := $(wildcard proto/quarry/v1/*.proto) proto/grpc/health/v1/health.proto
GEN_C    := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_H    := $(GEN_C:.c=.h)
# protoc-c's headers alone (GEN_H gains the stubs below): every generated
# object waits for all of them, since one .proto's code includes another's.
PB_H     := $(GEN_H)
# $(call find_src,DIR,NAME): files under DIR at any depth whose name matches the
# glob NAME, sorted; nothing when DIR does not exist (the image build copies no
# tests/).
find_src = $(sort $(shell find $(1) -type f -name '$(2)' 2>/dev/null))

COMMON_C := $(call find_src,common/src,*.c)
LIBQ     := $(BUILD)/lib/libquarry.a
# tools/stubgen is a build step with a rule of its own (below), not a tool;
# tools/cli is the client binary `quarry`, also with rules of its own.
TOOLS    := $(filter-out stubgen cli,$(patsubst tools/%/main.c,%,$(wildcard tools/*/main.c)))
BINS     := $(addprefix $(BUILD)/bin/quarry-,$(SERVICES) $(TOOLS))
PROTOSET := $(BUILD)/quarry.protoset
PYGEN    := $(BUILD)/py/quarry/v1/common_pb2.py

.SECONDARY: $(GEN_C) $(GEN_H)
.PHONY: all deps run test unit integration interop asan valgrind clean docs-check eval bench bench-ingest bench-ingest-formats bench-edge bench-http-floor bench-hnsw bench-hnsw-peer bench-retriever bench-retriever-grpc bench-ocr bench-providers help docs-config format lint bench-claim
all: $(BINS) $(PROTOSET)

help:
	@echo "make deps         install the Debian packages Quarry needs (idempotent)"
	@echo "make run          deps + build + start the whole stack on loopback"
	@echo "make test         deps + build + lint, docs-check, unit, integration and interop tests"
	@echo "make integration  the end-to-end suite only (make interop: the grpcio cases)"
	@echo "make asan         ASan+UBSan build: unit tests and an ingest+query round"
	@echo "make valgrind     run an ingest+query round under valgrind"
	@echo "make eval         nDCG@10 / Recall@100 / MRR@10 on a BEIR dataset (DATA=dir)"
	@echo "make bench        retrieval (vs Xapian BM25) and gateway (vs /healthz) benchmarks (DATA=dir)"
	@echo "make bench-ingest ingestion docs/s through REST, single and bulk, vs Xapian (INGEST_ARGS=)"
	@echo "make bench-ingest-formats  docs/s, MB/s per format (txt md html docx pdf), 100 MB PDF memory (FORMATS_ARGS=)"
	@echo "make bench-edge   the edge under load: /v1/query 16..1024 conns, 10K idle, streams, nginx (EDGE_ARGS=)"
	@echo "make bench-http-floor  /healthz from libmicrohttpd, h2o, libevent evhttp and nginx (FLOOR_ARGS=)"
	@echo "make bench-hnsw   HNSW index vs exact scan on synthetic vectors (HNSW_BENCH_ARGS=...)"
	@echo "make bench-claim  ingestion's job claim on 100k queued jobs: plan, latency, fairness (CLAIM_BENCH_ARGS=)"
	@echo "make bench-hnsw-peer  HNSW (float32, int8) beside hnswlib: recall@10 vs queries/s (HNSW_PEER_ARGS=...)"
	@echo "make bench-retriever  the embedded index in process: build, memory, snapshot, start (RETRIEVER_BENCH_ARGS=...)"
	@echo "make bench-retriever-grpc  the retriever over gRPC beside Xapian, float32 and int8 (RETRIEVER_GRPC_ARGS=--n N)"
	@echo "make bench-ocr    OCR cost through the sandbox: pages/s, peak RSS (OCR_BENCH_ARGS=...)"
	@echo "make bench-providers  time Quarry adds to a streamed answer beside the model's (fake provider)"
	@echo "make docs-config  regenerate docs/configuration.md from the config tables"
	@echo "make lint         the checks of tests/lint/ (format, q_ symbols, casts, includes, ...)"
	@echo "make format       clang-format 14 over every tracked .c/.h (what the format check wants)"
	@echo "make fuzz         libFuzzer targets of tests/fuzz/, FUZZ_SECONDS (30) each (clang)"

deps:
	@deploy/local/deps.sh

# ---- generated protobuf code ------------------------------------------------
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen -Iproto $<

$(PROTOSET): $(PROTOS)
	@mkdir -p $(dir $@)
	protoc --include_imports --descriptor_set_out=$@ -Iproto $(PROTOS)

$(PYGEN): $(PROTOS)
	@mkdir -p $(BUILD)/py
	protoc --python_out=$(BUILD)/py -Iproto $(PROTOS)

# ---- typed client stubs (q_rpc_*, quarry/stubs.h) ----------------------------
# tools/stubgen checks the descriptor set against the protoc-c descriptors it
# links and writes a stub per method into libquarry.a. Kept before the object
# rules: appending to GEN_H makes every object wait for stubs.h.
STUBS   := $(BUILD)/gen/quarry/stubs
STUBGEN := $(BUILD)/tools/quarry-stubgen
$(STUBGEN): tools/stubgen/main.c $(patsubst $(BUILD)/gen/%.c,$(BUILD)/obj/gen/%.o,$(GEN_C)) | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -rdynamic -o $@ $^ -lprotobuf-c -ldl
$(STUBS).c $(STUBS).h &: $(STUBGEN) $(PROTOSET)
	$(STUBGEN) $(PROTOSET) $(STUBS).h $(STUBS).c
$(BUILD)/obj/gen/quarry/stubs.o: $(STUBS).c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
GEN_C += $(STUBS).c
GEN_H += $(STUBS).h

# ---- objects ----------------------------------------------------------------
$(BUILD)/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c | $(PB_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-error -c -o $@ $<

COMMON_O := $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_C)) \
            $(patsubst $(BUILD)/gen/%.c,$(BUILD)/obj/gen/%.o,$(GEN_C))

$(LIBQ): $(COMMON_O)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Each service: every .c under services/<name>/, subfolders included, but the
# top-level main.c goes into libsvc_<name>.a so unit tests can link the
# service's modules. The service's folder is on the quote-include path of its
# own objects, so a file in a subfolder includes "index.h" or "engine/hnsw.h"
# the way a test does.
define service_rules
SVC_$(1)_C := $$(filter-out services/$(1)/main.c,$$(call find_src,services/$(1),*.c))
SVC_$(1)_O := $$(patsubst %.c,$(BUILD)/obj/%.o,$$(SVC_$(1)_C))
$(BUILD)/obj/services/$(1)/%.o: private CPPFLAGS += -iquote services/$(1) $(call svc_cflags,$(1))
$(BUILD)/lib/libsvc_$(1).a: $$(SVC_$(1)_O)
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^ $$(if $$^,,$(BUILD)/obj/empty.o)
$(BUILD)/bin/quarry-$(1): $(BUILD)/obj/services/$(1)/main.o $(BUILD)/lib/libsvc_$(1).a $(LIBQ)
	@mkdir -p $$(dir $$@)
	$(CC) $(LDFLAGS) -o $$@ $$^ $(call svc_libs,$(1)) $(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rules,$(s))))
SVC_LIBS   := $(foreach s,$(SERVICES),$(BUILD)/lib/libsvc_$(s).a)
SVC_MAIN_O := $(foreach s,$(SERVICES),$(BUILD)/obj/services/$(s)/main.o)

$(BUILD)/obj/empty.o:
	@mkdir -p $(dir $@)
	echo 'typedef int q_empty_t;' | $(CC) -x c -c -o $@ -

# Each tools/<name>/ with a main.c is the binary quarry-<name>, built from every
# .c under it (tools/eval/ is Python and has none).
define tool_rules
TOOL_$(1)_O := $$(patsubst %.c,$(BUILD)/obj/%.o,$$(call find_src,tools/$(1),*.c))
$(BUILD)/obj/tools/$(1)/%.o: private CPPFLAGS += -iquote tools/$(1)
$(BUILD)/bin/quarry-$(1): $$(TOOL_$(1)_O) $(LIBQ)
	@mkdir -p $$(dir $$@)
	$(CC) $(LDFLAGS) -o $$@ $$^ $(LDLIBS)
endef
$(foreach t,$(TOOLS),$(eval $(call tool_rules,$(t))))
TOOL_O := $(foreach t,$(TOOLS),$(TOOL_$(t)_O))

# ---- the command-line client: tools/cli/ -> build/bin/quarry ------------------
# Built like a tool, but named `quarry` (what people type), and its modules
# (every .c but main.c) link into the unit tests of area "cli" the way a
# service's archive links into its area's tests. Lint checks its objects too.
CLI_O     := $(patsubst %.c,$(BUILD)/obj/%.o,$(call find_src,tools/cli,*.c))
CLI_MOD_O := $(filter-out $(BUILD)/obj/tools/cli/main.o,$(CLI_O))
$(BUILD)/obj/tools/cli/%.o: private CPPFLAGS += -iquote tools/cli
$(BUILD)/bin/quarry: $(CLI_O) $(LIBQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
all: $(if $(wildcard tools/cli/main.c),$(BUILD)/bin/quarry)
TOOL_O    += $(CLI_O)
UNIT_MODS_cli := $(CLI_MOD_O)
UNIT_IQUOTE_cli := -iquote tools/cli

# ---- tests ------------------------------------------------------------------
# tests/unit/<area>/[<sub>/]test_<module>.c -> $(BUILD)/tests/<area>_[<sub>_]<module>.
# An area named after a service links that service's modules, and its tests
# include the service's headers by name ("index.h") through -iquote
# services/<area>; area cli links the client's modules and includes them
# through -iquote tools/cli. Every test links the fixtures of tests/unit/support/ and
# includes them by name ("pgtest.h") through -iquote tests/unit/support.
# -iquote is -I for #include "..." only: a service header never shadows a
# system one. tests/lint/includes.py fails when a header name is found in two
# of these folders.
UNIT_C    := $(filter-out tests/unit/support/%,$(call find_src,tests/unit,test_*.c))
SUPPORT_O := $(patsubst %.c,$(BUILD)/obj/%.o,$(call find_src,tests/unit/support,*.c))
unit_area  = $(word 3,$(subst /, ,$(1)))
unit_bin   = $(BUILD)/tests/$(subst /,_,$(patsubst tests/unit/%,%,$(dir $(1))))$(patsubst test_%.c,%,$(notdir $(1)))
UNIT_BIN  := $(foreach t,$(UNIT_C),$(call unit_bin,$(t)))
UNIT_AREAS := $(sort $(foreach t,$(UNIT_C),$(call unit_area,$(t))))
ifneq ($(words $(UNIT_BIN)),$(words $(sort $(UNIT_BIN))))
$(error two unit tests map to one binary name in $(BUILD)/tests; rename one)
endif

$(BUILD)/obj/tests/unit/support/%.o: private CPPFLAGS += -iquote tests/unit/support
$(foreach a,$(UNIT_AREAS),$(eval $(BUILD)/obj/tests/unit/$(a)/%.o: private CPPFLAGS += \
  $(if $(filter $(a),$(SERVICES)),-iquote services/$(a) $(call svc_cflags,$(a))) $(UNIT_IQUOTE_$(a)) -iquote tests/unit/support))

define unit_rule
$(call unit_bin,$(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(1)) $(SUPPORT_O) $(if $(filter $(call unit_area,$(1)),$(SERVICES)),$(BUILD)/lib/libsvc_$(call unit_area,$(1)).a) $(UNIT_MODS_$(call unit_area,$(1))) $(LIBQ)
	@mkdir -p $$(dir $$@)
	$(CC) $(LDFLAGS) -o $$@ $$^ $(call svc_libs,$(call unit_area,$(1))) $(LDLIBS) -lcriterion
endef
$(foreach t,$(UNIT_C),$(eval $(call unit_rule,$(t))))

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t --jobs=2; done

integration: all $(PYGEN)
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 tests/integration/run.py

interop: all $(PYGEN)
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 tests/integration/run.py -k Interop

test: deps
	$(MAKE) all
	$(MAKE) lint LINT_SKIP=
	$(MAKE) docs-check
	$(MAKE) unit
	$(MAKE) integration

# docs/configuration.md must be what the config tables say.
docs-check: all
	@deploy/local/gen-config-docs.sh $(BUILD)/bin | diff -u docs/configuration.md - \
	  || { echo "docs/configuration.md is stale: run 'make docs-config'"; exit 1; }
	@/usr/bin/python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' docs/api/openapi.yaml \
	  || { echo "docs/api/openapi.yaml is not valid YAML"; exit 1; }

run: deps
	$(MAKE) all
	QUARRY_BIN=$(abspath $(BUILD)/bin) /usr/bin/python3 deploy/local/stack.py run

asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" all
	$(MAKE) BUILD=build-asan build-asan/py/quarry/v1/common_pb2.py
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" unit
	QUARRY_BIN=$(abspath build-asan/bin) QUARRY_PYGEN=$(abspath build-asan/py) \
	  QUARRY_SANITIZER=asan /usr/bin/python3 tests/integration/run.py --round

valgrind: deps
	$(MAKE) all $(PYGEN)
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  QUARRY_SANITIZER=valgrind /usr/bin/python3 tests/integration/run.py --round

# Retrieval quality on a BEIR-format dataset (not part of make test).
DATA ?= ../shared/data/scifact
eval: all $(PYGEN)
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 tools/eval/beir_eval.py --data $(DATA)
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 tools/eval/answer_eval.py

# Benchmarks next to peers measured in the same run (figures only, no pass/fail):
# retrieval against Xapian BM25, the query pipeline against the gateway's
# HTTP floor, ingestion through REST against Xapian's in-process indexing.
# bench/deps.sh installs the peers (python3-xapian, wrk).
bench: all $(PYGEN)
	bench/deps.sh
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 bench/retrieval_bench.py --data $(DATA) $(BENCH_ARGS)
	$(MAKE) bench-ingest
	$(MAKE) bench-ingest-formats
	$(MAKE) bench-edge
	$(MAKE) bench-providers

# Time Quarry adds to a streamed answer beside the model's own time
# (bench/provider_bench.py): the llm-gateway in front of the loopback provider
# fake streaming at a fixed rate; p50/p95 of added time to first token and of
# total overhead. Also run by `make bench`. PROVIDER_BENCH_ARGS: --queries N
# --interval S --words N.
bench-providers: all
	QUARRY_BIN=$(abspath $(BUILD)/bin) \
	  /usr/bin/python3 bench/provider_bench.py $(PROVIDER_BENCH_ARGS)

# Ingestion documents/s and MB/s through the REST API, one document per
# request and bulk (NDJSON batches), beside Xapian indexing the same text in
# process (bench/ingest_bench.py). Also run by `make bench`.
bench-ingest: all $(PYGEN)
	bench/deps.sh
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 bench/ingest_bench.py --data $(DATA) $(INGEST_ARGS)

# Ingestion per format (txt, md, html, docx, pdf: the corpus converted by
# the script), one per request and multipart bulk, beside Xapian; peak memory
# of ingestion and its extractor while a 100 MB PDF is ingested
# (bench/ingest_formats.py). Also run by `make bench`.
bench-ingest-formats: all $(PYGEN)
	bench/deps.sh
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 bench/ingest_formats.py --data $(DATA) $(FORMATS_ARGS)

# The edge under load (bench/edge_bench.py): /v1/query at 16..1024
# connections, 10,000 idle keep-alive connections, streamed answers through a
# 2 s fake model, /healthz beside nginx. Also run by `make bench`.
bench-edge: all $(PYGEN)
	bench/deps.sh
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 bench/edge_bench.py --data $(DATA) $(EDGE_ARGS)

# The same /healthz reply from libmicrohttpd, h2o (libh2o-evloop), libevent's
# evhttp and nginx (bench/http_floor.c, bench-only; docs/edge.md). FLOOR_ARGS:
# see bench/http_floor.py.
HTTP_FLOOR := $(BUILD)/bench/http_floor
$(HTTP_FLOOR): bench/http_floor.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -o $@ $< -lh2o-evloop -levent -lmicrohttpd -lpthread
bench-http-floor: $(HTTP_FLOOR)
	bench/deps.sh
	/usr/bin/python3 bench/http_floor.py --bin $(HTTP_FLOOR) $(FLOOR_ARGS)

# The retriever's HNSW index beside an exact scan, on synthetic vectors
# (figures only; docs/benchmarks.md). HNSW_BENCH_ARGS: see bench/hnsw_bench.c.
HNSW_BENCH := $(BUILD)/bench/hnsw_bench
$(BUILD)/obj/bench/%.o: private CPPFLAGS += -iquote services/retriever
$(HNSW_BENCH): $(BUILD)/obj/bench/hnsw_bench.o $(BUILD)/lib/libsvc_retriever.a $(LIBQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
bench-hnsw: $(HNSW_BENCH)
	$(HNSW_BENCH) $(HNSW_BENCH_ARGS)

# The same index beside hnswlib (Debian python3-hnswlib, installed by
# bench/deps.sh) on the same vectors, one thread each: recall@10 against
# queries/s, float32 and int8 rows, memory per vector (bench/hnsw_peer.py).
# HNSW_PEER_ARGS: --n N (100000), --dim, --m, --efc, --ef LIST, --storage LIST.
bench-hnsw-peer: $(HNSW_BENCH)
	bench/deps.sh
	/usr/bin/python3 bench/hnsw_peer.py --bin $(HNSW_BENCH) $(HNSW_PEER_ARGS)

# The cost of OCR through the sandbox on pages drawn at run time (figures
# only; docs/benchmarks.md). OCR_BENCH_ARGS: see bench/ocr_bench.c.
OCR_BENCH := $(BUILD)/bench/ocr_bench
$(BUILD)/obj/bench/ocr_bench.o: private CPPFLAGS += -iquote services/ingestion $(call svc_cflags,ingestion)
$(OCR_BENCH): $(BUILD)/obj/bench/ocr_bench.o $(BUILD)/lib/libsvc_ingestion.a $(LIBQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(call svc_libs,ingestion) $(LDLIBS)
bench-ocr: $(OCR_BENCH)
	$(OCR_BENCH) $(OCR_BENCH_ARGS)

# The embedded engine's index at scale: build time, memory, snapshot size,
# start from snapshot, lexical latency with block-max MaxScore vs exhaustive
# scoring (figures only; docs/benchmarks.md).
# RETRIEVER_BENCH_ARGS: --n CHUNKS (100000), --dir DIR, --dim 0..384 (384; 0:
# lexical only), --per-tenant N (100000), --queries N (500), --vector-type float32|int8, --dump FILE (the
# first tenant's texts and the queries, for bench/lexical_peer.py: Xapian).
RETRIEVER_BENCH := $(BUILD)/bench/retriever_bench
$(RETRIEVER_BENCH): $(BUILD)/obj/bench/retriever_bench.o $(BUILD)/lib/libsvc_retriever.a $(LIBQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
bench-retriever: $(RETRIEVER_BENCH)
	$(RETRIEVER_BENCH) $(RETRIEVER_BENCH_ARGS)

# Ingestion's job claim on a large queue: its plan (EXPLAIN ANALYZE), its
# latency and its fairness across tenants, in a private PostgreSQL
# (figures only; docs/benchmarks.md). CLAIM_BENCH_ARGS: --jobs N (100000),
# --tenants T (50), --claims K (200).
CLAIM_BENCH := $(BUILD)/bench/claim_bench
$(BUILD)/obj/bench/claim_bench.o: private CPPFLAGS += -iquote services/ingestion -iquote tests/unit/support
$(CLAIM_BENCH): $(BUILD)/obj/bench/claim_bench.o $(SUPPORT_O) $(BUILD)/lib/libsvc_ingestion.a $(LIBQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(call svc_libs,ingestion) $(LDLIBS) -lcriterion
bench-claim: $(CLAIM_BENCH)
	$(CLAIM_BENCH) $(CLAIM_BENCH_ARGS)
# The retriever through its gRPC API on a synthetic corpus, beside Xapian:
# lexical, dense, hybrid p50/p95/p99, build, memory, snapshot, start, for
# float32 and int8 vectors (bench/retriever_grpc_bench.py; docs/benchmarks.md).
# RETRIEVER_GRPC_ARGS: --n CHUNKS (100000), --queries, --top-k, --vector-types.
bench-retriever-grpc: all $(PYGEN)
	bench/deps.sh
	QUARRY_BIN=$(abspath $(BUILD)/bin) QUARRY_PYGEN=$(abspath $(BUILD)/py) \
	  /usr/bin/python3 bench/retriever_grpc_bench.py $(RETRIEVER_GRPC_ARGS)

docs-config: all
	deploy/local/gen-config-docs.sh $(BUILD)/bin > docs/configuration.md

# ---- checks -----------------------------------------------------------------
# Each check is a script in tests/lint/ that prints file:line: what is wrong.
# All run, then lint fails if any did. LINT_SKIP="format returns" leaves some
# out while debugging; `make test` always runs them all.
#   format    every tracked .c/.h is what clang-format 14 makes of it
#   symbols   no q_ symbol defined outside libquarry.a
#   archives  each libsvc_<svc>.a holds every services/<svc>/**.c but main.c
#   casts     no (ProtobufCMessage **) cast in services/, tools/, tests/
#   includes  tests include headers by name, and no name is found twice
#   returns   no bare `return -1;` in services/ and common/src/
LINT_CHECKS := format.sh symbols.sh archives.sh casts.py includes.py returns.py
LINT_SKIP   ?=
LINT_RUN    := $(foreach c,$(LINT_CHECKS),$(if $(filter $(basename $(c)),$(LINT_SKIP)),,$(c)))
lint: $(if $(filter-out $(LINT_SKIP),symbols archives),$(SVC_LIBS) $(SVC_MAIN_O) $(TOOL_O))
	@rc=0; for c in $(LINT_RUN); do \
	  echo "== lint: $${c%.*}"; \
	  case $$c in symbols.sh) set -- $(SVC_LIBS) $(SVC_MAIN_O) $(TOOL_O);; \
	    archives.sh) set -- $(SERVICES);; *) set --;; esac; \
	  BUILD=$(BUILD) tests/lint/$$c "$$@" || rc=1; \
	done; \
	[ $$rc = 0 ] || echo "make lint: some checks failed (see above)"; exit $$rc

# Rewrites every file the format check reads; review with git diff.
format:
	tests/lint/format.sh --fix

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- fuzzing (make fuzz; not part of make test) ------------------------------
# tests/fuzz/fuzz_<name>.c is a libFuzzer target for one of the gateway's
# parsers of client input, or for one of ingestion's extractors or its
# chunker (docs/development.md, Fuzzing). `make fuzz` installs clang
# (tests/fuzz/deps.sh), builds every target into FUZZ_BUILD with clang,
# linked against libsvc_gateway.a (or libsvc_ingestion.a) and libquarry.a
# built there with the same coverage instrumentation and sanitizers, then
# runs each for FUZZ_SECONDS
# from its seeds in tests/fuzz/corpus/<name>/ and fails on any crash.
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 30
FUZZ_MAX_LEN ?= 16384
FUZZ_SAN     := -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(call find_src,tests/fuzz,fuzz_*.c))
FUZZ_BINS    := $(foreach n,$(FUZZ_NAMES),$(BUILD)/fuzz/fuzz_$(n))
.PHONY: fuzz fuzz-bins fuzz-clean

.PRECIOUS: $(BUILD)/obj/tests/fuzz/%.o
# The targets of ingestion's extractors, chunker and format decision
# (fuzz_extract_*.c, fuzz_chunker.c, fuzz_formats.c) link its archive and its
# format libraries and include its headers; the others the gateway's.
fuzz_svc = $(if $(filter extract_% chunker formats,$(1)),ingestion,gateway)
define fuzz_target
$(BUILD)/obj/tests/fuzz/fuzz_$(1).o: private CPPFLAGS += -iquote services/$(call fuzz_svc,$(1)) $(call svc_cflags,$(call fuzz_svc,$(1))) -iquote tests/fuzz
$(BUILD)/fuzz/fuzz_$(1): $(BUILD)/obj/tests/fuzz/fuzz_$(1).o $(BUILD)/lib/libsvc_$(call fuzz_svc,$(1)).a $(LIBQ)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -fsanitize=fuzzer -o $$@ $$^ $(call svc_libs,$(call fuzz_svc,$(1))) $$(LDLIBS)
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call fuzz_target,$(n))))
# libseccomp's SCMP_A0..5 macros leave a field to zero-initialisation,
# which clang's -Wmissing-field-initializers reports (gcc's does not): the
# clang build of ingestion's archive for the fuzz targets needs this.
$(BUILD)/obj/services/ingestion/extract/sandbox.o: private CFLAGS += -Wno-missing-field-initializers

# Only meaningful with the fuzz settings: `make fuzz` calls it with them.
fuzz-bins: $(FUZZ_BINS)

fuzz:
	tests/fuzz/deps.sh
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 SAN="$(FUZZ_SAN)" fuzz-bins
	tests/fuzz/run.sh $(FUZZ_BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_MAX_LEN) $(FUZZ_NAMES)

clean: fuzz-clean
fuzz-clean:
	rm -rf $(FUZZ_BUILD)

# ---- deployment artefacts (no Docker engine or helm binary needed) ----------
# check-deploy needs yamllint, promtool, node/npm and Go (golang-go,
# golang-github-masterminds-sprig-dev, golang-gopkg-yaml.v2-dev) for the chart
# renderer; see docs/operations.md.
.PHONY: check-deploy check-deploy-live
check-deploy:
	yamllint -s -c deploy/yamllint.yml docker-compose.yml deploy helm/quarry
	/usr/bin/python3 deploy/docker/check-compose.py
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts.test.yml
	deploy/grafana/check.sh
	deploy/k8s/check.sh

check-deploy-live: all
	deploy/docker/check-runtime-libs.sh $(BUILD)/bin
	QUARRY_BIN=$(abspath $(BUILD)/bin) /usr/bin/python3 deploy/grafana/live-check.py
