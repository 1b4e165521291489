# Patched glibc builds (glibcpatch/README.md). Included by the Makefile;
# not part of `make demo` or `make test`.
#   make glibc        build every version below (cached, see build.sh) and lib/libforkless.a
#   make test-glibc   tests/glibc against those builds
GLIBC_VERSIONS ?= 2.36 2.41

.PHONY: glibc test-glibc

glibc: lib/libforkless.a
	@for v in $(GLIBC_VERSIONS); do glibcpatch/build.sh $$v || exit 1; done

# lib/libforkless.a: the preload library's objects as one relocatable
# object in which only the hooks stay global (the interposers become
# local: in a static program libc.a's own functions stay in place and
# call the hooks). Link it with -Wl,-u,__forkless_spawn_hook_v1 (or
# --whole-archive): libc.a's references to the hooks are weak and do not
# pull archive members in.
HOOK_SYMS = __forkless_spawn_hook_v1 __forkless_fork_hook_v1 __forkless_vfork_hook_v1
STATIC_OBJDIR = build/libforkless-a
lib/libforkless.a: $(PRELOAD_DEPS) glibcpatch/glibc.mk
	@mkdir -p lib $(STATIC_OBJDIR)
	rm -f $(STATIC_OBJDIR)/*.o $@
	for s in $(PRELOAD_SRC); do \
		b=$$(basename $$s); \
		$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -fno-strict-aliasing -c -o $(STATIC_OBJDIR)/$${b%.*}.o $$s || exit 1; \
	done
	$(LD) -r -o $(STATIC_OBJDIR)/combined.o $(STATIC_OBJDIR)/*.o
	objcopy $(foreach s,$(HOOK_SYMS),--keep-global-symbol=$(s)) $(STATIC_OBJDIR)/combined.o $(STATIC_OBJDIR)/libforkless-hooks.o
	$(AR) rcs $@ $(STATIC_OBJDIR)/libforkless-hooks.o

test-glibc: all glibc
	FORKLESS_GLIBC_TEST=1 FORKLESS_GLIBC_VERSIONS="$(GLIBC_VERSIONS)" $(GO) test -count=1 -timeout 60m -v ./tests/glibc/
