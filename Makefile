# forkless: `make` builds, `make demo` shows it, `make test` runs every test.
GO      ?= go
CC      ?= gcc
CFLAGS  ?= -O2 -Wall -Wextra -Werror

BINARIES = bin/forkless bin/forkless-probe bin/forkless-tiny bin/forkless-cbench bin/spawnzoo
LIBS     = lib/libforkless.so

# The preload library: C with minimal assembly, exporting only the
# interposed symbols (preload/libforkless.map).
PRELOAD_SRC  = $(wildcard preload/*.c preload/*.S)
PRELOAD_DEPS = $(PRELOAD_SRC) $(wildcard preload/*.h preload/*.inc) preload/libforkless.map
# Two load segments instead of four and lazy binding: every program the
# library is preloaded into pays for mapping and relocating it.
PRELOAD_FLAGS = -fPIC -shared -fvisibility=hidden -fno-strict-aliasing \
	-Wl,--version-script=preload/libforkless.map -Wl,-z,noseparate-code -Wl,-z,relro

.PHONY: all demo test test-go test-race test-cpython test-asan fuzz lint bench clean
all: $(BINARIES) $(LIBS)

bin/forkless: FORCE
	@mkdir -p bin
	$(GO) build -o $@ ./cmd/forkless

# Flags match internal/testbin, which builds the same helpers for plain `go test`.
bin/forkless-probe: tests/probe/probe.c
	@mkdir -p bin
	$(CC) $(CFLAGS) -static -o $@ $<
bin/forkless-tiny: tests/tiny/tiny.c
	@mkdir -p bin
	$(CC) $(CFLAGS) -static -nostdlib -fno-stack-protector -o $@ $<
bin/forkless-cbench: tests/cbench/cbench.c
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $<

lib/libforkless.so: $(PRELOAD_DEPS)
	@mkdir -p lib
	$(CC) $(CFLAGS) $(PRELOAD_FLAGS) -o $@ $(PRELOAD_SRC) -ldl -lpthread

# The same library with AddressSanitizer and UndefinedBehaviorSanitizer.
lib/libforkless-asan.so: $(PRELOAD_DEPS)
	@mkdir -p lib
	$(CC) -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined -fno-omit-frame-pointer \
		$(PRELOAD_FLAGS) -o $@ $(PRELOAD_SRC) -ldl -lpthread

bin/spawnzoo: examples/spawnzoo/spawnzoo.c
	@mkdir -p bin
	$(CC) $(CFLAGS) -pthread -o $@ $<

# The main job on a bundled example: a multi-threaded program creating
# processes in every way, run under the library, then its trace summarized.
demo: all
	bin/forkless run --trace bin/demo-trace.jsonl -- bin/spawnzoo
	bin/forkless trace bin/demo-trace.jsonl

test: all lint test-go test-race fuzz test-cpython test-asan

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# FORKLESS_TEST_REQUIRE: a test whose program (busybox, perl, ...) is
# missing fails instead of skipping (.ci/run installs them).
test-go:
	FORKLESS_TEST_REQUIRE=1 $(GO) test -count=1 ./...

# The race stress, the engine and the host under the race detector.
test-race:
	FORKLESS_TEST_REQUIRE=1 $(GO) test -count=1 -race ./spawn/... ./libos/... ./tests/... ./forkcp/... ./examples/...

# A short pass of every decoder's fuzzer, from the committed seed corpus.
# (-fuzz takes one target at a time; minimisation is capped so the time
# goes to executions.)
FUZZ = -run '^$$' -fuzztime 15s -fuzzminimizetime 3s
fuzz:
	$(GO) test $(FUZZ) -fuzz '^FuzzDecode$$' ./forkcp/
	$(GO) test $(FUZZ) -fuzz '^FuzzReceive$$' ./forkcp/
	$(GO) test $(FUZZ) -fuzz '^FuzzParseObservation$$' ./tests/difftest/
	$(GO) test $(FUZZ) -fuzz '^FuzzDecode$$' ./internal/trace/
	$(GO) test $(FUZZ) -fuzz '^FuzzHostMessage$$' ./libos/

# CPython's own process-creation suites, natively and under the library:
# the results must be the same.
test-cpython: all
	FORKLESS_CPYTHON=1 $(GO) test -count=1 ./tests/cpython/

# The library built with ASan+UBSan, through the differential suite and the
# race stress. The sanitizer runtime must be loaded first.
ASAN_RT = $(shell readlink -f $$($(CC) -print-file-name=libasan.so))
test-asan: all lib/libforkless-asan.so
	FORKLESS_TEST_LIB="$(ASAN_RT):$(abspath lib/libforkless-asan.so)" \
	FORKLESS_TEST_ASAN=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(GO) test -count=1 ./tests/difftest/ ./tests/preload/ ./tests/gramine/ ./tests/cstress/ ./tests/lazyvfork/ ./tests/host/

bench: all
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./spawn/
	$(GO) test -run '^$$' -bench . -benchmem ./forkcp/
	bin/forkless bench --rss 16,1024,4096 --svg bin/bench.svg

clean:
	rm -rf bin lib build

FORCE:

# Patched glibc builds: make glibc, make test-glibc (glibcpatch/README.md).
include glibcpatch/glibc.mk
