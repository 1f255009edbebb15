# cdviz — PGXS build.  `make && make install`, then `CREATE EXTENSION cdviz;`.
# `make unit` builds and runs the PostgreSQL-free core tests, `make fuzz`
# the libFuzzer harness (clang), `make installcheck` the pg_regress and
# pgTAP suites and `make prove` the TAP tests (against an installed server).

EXTENSION = cdviz
EXTVERSION = 0.2.0
# Every released version's install script is kept as shipped in
# sql/versions/, and sql/cdviz--A--B.sql holds the changes from A to B.  All
# are installed, so CREATE EXTENSION cdviz VERSION 'A' then ALTER EXTENSION
# cdviz UPDATE works from any release.
UPDATE_SCRIPTS = $(sort $(wildcard sql/$(EXTENSION)--*--*.sql))
MODULE_big = cdviz

# src/ is layered: core/ (no PostgreSQL header) at the bottom, common/
# (what every worker shares) above it, then the lake's ingest path (store/),
# webhooks, the summaries, and the workers that feed and read them.  A file
# includes headers of its own folder or of folders below it.
CORE_SRCS = $(sort $(wildcard src/core/*.c))
BACKEND_DIRS = common store webhook summaries http poll dispatch sources
BACKEND_SRCS = $(foreach d,$(BACKEND_DIRS),$(sort $(wildcard src/$(d)/*.c)))
OBJS = src/cdviz.o $(CORE_SRCS:.c=.o) $(BACKEND_SRCS:.c=.o)

PG_CPPFLAGS = -I$(srcdir)/src -DCDVIZ_EXTVERSION='"$(EXTVERSION)"'
# libmicrohttpd: the HTTP receiver; libcurl: S3 and HTTP sinks; libxml2:
# S3 listings; zlib: gzip request bodies; libnats and librdkafka: the NATS
# and Kafka sinks and sources.  --as-needed drops unused ones.
SHLIB_LINK = -ljson-c -lmicrohttpd -lcurl -lxml2 -lz -lnats -lrdkafka $(EXTRA_SHLIB_LINK)
PG_CPPFLAGS += -I/usr/include/libxml2

# The extension script is assembled from sql/ext/ in file-name order (the
# folder too is a prerequisite, so that removing a part rebuilds it).
EXT_SQL_PARTS = $(sort $(wildcard sql/ext/*.sql))
DATA = $(wildcard sql/versions/$(EXTENSION)--*.sql) $(UPDATE_SCRIPTS)
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/[0-9]*.sql)))
REGRESS_OPTS = --load-extension=$(EXTENSION)

# `make installcheck` also runs the pgTAP suite, test/pgtap/*.sql, in a
# database of its own (pgtap and cdviz created there): `make
# pgtap-installcheck` runs it alone, NO_PGTAP=1 leaves it out.  Both take
# the server from PGHOST, PGPORT and PGUSER.
PGTAP_DB ?= cdviz_pgtap
PGTAP_TESTS ?= $(sort $(wildcard test/pgtap/*.sql))

# TAP tests run apart from pg_regress: `make prove-installcheck`.  Tests are
# test/t/NNN_*.pl; other .pl files there are helpers the tests start.
PROVE_TESTS = test/t/[0-9]*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# No dependency tracking in PGXS builds: every object depends on every
# header of ours, so a changed struct never leaves a stale object behind.
$(OBJS): $(wildcard src/*.h src/*/*.h)

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/ext $(EXT_SQL_PARTS)
	cat $(filter %.sql,$^) > $@

# ---- PostgreSQL-free core: unit tests, validation CLI, fuzzing -----------
CORE_CC ?= cc
CORE_CFLAGS ?= -std=gnu99 -O2 -g -Wall -Wextra -Wno-unused-parameter -I$(srcdir)/src
# libxml2: the JUnit reader (src/core/report_junit.c)
CORE_CFLAGS += -I/usr/include/libxml2
CORE_LIBS = -ljson-c -lz -lxml2 -lm

test/unit/test_core: test/unit/test_core.c test/unit/tap.h $(CORE_SRCS) src/core/*.h
	$(CORE_CC) $(CORE_CFLAGS) -o $@ test/unit/test_core.c $(CORE_SRCS) $(CORE_LIBS)

test/unit/test_jsonl: test/unit/test_jsonl.c src/core/jsonl.c src/core/jsonl.h
	$(CORE_CC) $(CORE_CFLAGS) -o $@ test/unit/test_jsonl.c src/core/jsonl.c $(CORE_LIBS)

test/unit/test_json_scan: test/unit/test_json_scan.c test/unit/tap.h src/core/json_scan.c src/core/json_scan.h
	$(CORE_CC) $(CORE_CFLAGS) -o $@ test/unit/test_json_scan.c src/core/json_scan.c

test/unit/test_envelope: test/unit/test_envelope.c test/unit/tap.h $(CORE_SRCS) src/core/*.h
	$(CORE_CC) $(CORE_CFLAGS) -o $@ test/unit/test_envelope.c $(CORE_SRCS) $(CORE_LIBS)

test/unit/test_report: test/unit/test_report.c test/unit/tap.h $(CORE_SRCS) src/core/*.h
	$(CORE_CC) $(CORE_CFLAGS) -o $@ test/unit/test_report.c $(CORE_SRCS) $(CORE_LIBS)

test/unit/validate_cli: test/unit/validate_cli.c $(CORE_SRCS) src/core/*.h
	$(CORE_CC) $(CORE_CFLAGS) -o $@ test/unit/validate_cli.c $(CORE_SRCS) $(CORE_LIBS)

.PHONY: unit fuzz prove prove-installcheck pgtap-installcheck schemas check-layout

pgtap-installcheck:
	psql -X -q -v ON_ERROR_STOP=1 -d postgres \
		-c 'DROP DATABASE IF EXISTS $(PGTAP_DB) WITH (FORCE)' -c 'CREATE DATABASE $(PGTAP_DB)'
	psql -X -q -v ON_ERROR_STOP=1 -d $(PGTAP_DB) -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION cdviz'
	pg_prove -d $(PGTAP_DB) $(PGTAP_TESTS)

ifndef NO_PGTAP
installcheck: pgtap-installcheck
endif
unit: test/unit/test_core test/unit/test_jsonl test/unit/test_envelope test/unit/test_json_scan test/unit/test_report test/unit/validate_cli
	test/unit/test_core
	test/unit/test_jsonl
	test/unit/test_envelope
	test/unit/test_json_scan
	test/unit/test_report $(srcdir)/test/fixtures/reports
	python3 $(srcdir)/tools/check_layout.py $(srcdir)/src

# The shape docs/design.md describes: includes point down the layers, no two
# files of a folder call each other both ways, no C file over 800 lines.
check-layout:
	python3 $(srcdir)/tools/check_layout.py $(srcdir)/src

FUZZ_SECONDS ?= 60
fuzz/fuzz_core: fuzz/fuzz_core.c $(CORE_SRCS) src/core/*.h
	clang -g -O1 -fsanitize=fuzzer,address,undefined -I$(srcdir)/src -I/usr/include/libxml2 -o $@ fuzz/fuzz_core.c $(CORE_SRCS) $(CORE_LIBS)

# libFuzzer's progress goes to build/fuzz.log; its end is shown, and all of
# it when the run finds something.
fuzz: fuzz/fuzz_core
	mkdir -p build/fuzz-corpus
	if fuzz/fuzz_core -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -print_final_stats=1 \
		-dict=fuzz/cdevents.dict build/fuzz-corpus fuzz/seeds > build/fuzz.log 2>&1; then \
		grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)' build/fuzz.log; \
	else \
		tail -n 60 build/fuzz.log; exit 1; \
	fi

# The Kafka tests' broker: librdkafka's mock cluster behind a small command
# reader (test/kafka/mock_cluster.c; not part of the extension).
test/kafka/mock_cluster: test/kafka/mock_cluster.c
	$(CORE_CC) $(CORE_CFLAGS) -o $@ $< -lrdkafka

prove-installcheck: test/kafka/mock_cluster
	$(prove_installcheck)

prove: prove-installcheck

# Regenerates src/core/cdevents_schemas.c from the official schemas
# (development time only; the generated file is committed).
SPEC_DIR ?= test/fixtures/cdevents-spec
schemas:
	python3 tools/gen_schemas.py $(SPEC_DIR) > src/core/cdevents_schemas.c

EXTRA_CLEAN = test/kafka/mock_cluster test/unit/test_report test/unit/test_envelope test/unit/test_json_scan test/unit/test_core test/unit/test_jsonl test/unit/validate_cli fuzz/fuzz_core build
