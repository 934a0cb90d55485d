# postern — build, test, demo, bench, fuzz.
# Builds go to build/<flavour>/: gcc (default), clang, asan (clang ASan+UBSan), fuzz (libFuzzer).

PKGS      := openssl libuv libnghttp2 jansson libfyaml libseccomp libcurl sqlite3 hiredis libpcre2-8
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
BASEFLAGS := -std=c17 -D_GNU_SOURCE -DPOSTERN_VERSION='"$(VERSION)"' -Isrc -MMD -MP $(WARN)

FLAVOUR ?= gcc
ifeq ($(FLAVOUR),gcc)
  CC := gcc
  OPT := -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
else ifeq ($(FLAVOUR),clang)
  CC := clang
  OPT := -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
else ifeq ($(FLAVOUR),asan)
  CC := clang
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDSAN := -fsanitize=address,undefined
else ifeq ($(FLAVOUR),fuzz)
  CC := clang
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
  LDSAN := -fsanitize=address,undefined
endif

B        := build/$(FLAVOUR)
LIB_SRCS := $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/%.o)
UNIT_SRCS:= $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS:= $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
FUZZ_SRCS:= $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS:= $(FUZZ_SRCS:tests/fuzz/%.c=$(B)/fuzz/%)
BIN      := $(B)/postern

.PHONY: all build install uninstall deb oci deb-boot-check clean deps deps-npm unit layers check check-build integration sanitize fuzz fuzz-corpus demo bench clang asan
all: build
build: $(BIN)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC [$(FLAVOUR)] $<"; $(CC) $(BASEFLAGS) $(OPT) $(PKG_CFLAGS) -c $< -o $@

# The sandbox's seccomp program, compiled by libseccomp at build time: a cold start then skips ~1.5 ms of
# libseccomp work. The runtime compiler stays as the fallback and the unit test compares the two.
SECPOL_INC := $(B)/gen/secpol_bpf.inc
$(SECPOL_INC): src/sandbox/engine/seccomp_policy.c src/sandbox/engine/seccomp_policy.h
	@mkdir -p $(dir $@)
	@echo "  GEN [$(FLAVOUR)] $@"; $(CC) $(BASEFLAGS) -O1 -DSECPOL_GENERATOR -o $(B)/gen/secpol_gen $< $(PKG_LIBS) \
		&& $(B)/gen/secpol_gen > $@.tmp && mv $@.tmp $@
$(B)/src/sandbox/engine/seccomp_policy.o: $(SECPOL_INC)
$(B)/src/sandbox/engine/seccomp_policy.o: BASEFLAGS += -I$(B)/gen

# The file tools' worker, linked statically (static-pie) so that it runs in any --image, with no dynamic
# loader or libc of the image's (docs/sandbox-mcp.md), and embedded in the binary by
# src/sandbox/tools/tool_worker_image.c. Built without sanitizers in every flavour: a static program cannot
# carry ASan's runtime (the unit tests run the same code in-process under ASan).
TW_SRCS := src/sandbox/tools/tool_worker.c src/sandbox/tools/tool_files.c src/sandbox/tools/tool_search.c \
	src/sandbox/tools/tool_wire.c src/sandbox/tools/tool_text.c src/sandbox/tools/tools.c src/core/cbuf.c src/core/arr.c
TW_OBJS := $(TW_SRCS:%.c=$(B)/tw/%.o)
TW_BIN  := $(B)/tw/postern-tool-worker
$(B)/tw/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC [$(FLAVOUR) static worker] $<"; $(CC) $(BASEFLAGS) -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
		$(PKG_CFLAGS) -DTWORKER_STATIC_MAIN -c $< -o $@
$(TW_BIN): $(TW_OBJS)
	@echo "  LD [$(FLAVOUR)] $@"; $(CC) -static-pie -s -o $@ $^ -ljansson -lpcre2-8 -lcrypto
$(B)/src/sandbox/tools/tool_worker_image.o: $(TW_BIN)
$(B)/src/sandbox/tools/tool_worker_image.o: BASEFLAGS += -DTWORKER_IMAGE='"$(TW_BIN)"'

$(B)/libpostern.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# The release binary links its libraries statically (glibc stays dynamic): dynamic symbol lookups for
# libcrypto and friends cost ~1 ms on every start, and `postern sandbox run` starts once per command.
STATIC_LIBS := -Wl,-Bstatic -lssl -lcrypto -lnghttp2 -ljansson -lpcre2-8 -lfyaml -lseccomp -lsqlite3 -lhiredis -lhttp_parser \
	-luv_a -Wl,-Bdynamic -lpthread -ldl -lm
ifneq ($(filter gcc clang,$(FLAVOUR)),)
  BIN_LIBS := $(STATIC_LIBS)
else
  BIN_LIBS := $(PKG_LIBS)
endif

$(BIN): $(B)/src/main.o $(B)/libpostern.a
	$(CC) $(OPT) $(LDSAN) -o $@ $^ $(BIN_LIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libpostern.a
	@mkdir -p $(dir $@)
	@echo "  CC [$(FLAVOUR)] $<"; $(CC) $(BASEFLAGS) $(OPT) $(PKG_CFLAGS) -Itests/unit -o $@ $< $(B)/libpostern.a $(LDSAN) $(PKG_LIBS) -lcmocka

$(B)/fuzz/%: tests/fuzz/%.c $(B)/libpostern.a
	@mkdir -p $(dir $@)
	@echo "  CC [$(FLAVOUR)] $<"; $(CC) $(BASEFLAGS) $(OPT) $(PKG_CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/libpostern.a $(PKG_LIBS)

unit-bins: $(UNIT_BINS)
unit: $(BIN) $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== unit [$(FLAVOUR)] $$t"; timeout 600 $$t || { echo "unit: $$t failed or ran over 600 s" >&2; exit 1; }; done

fuzz-bins: $(FUZZ_BINS)

clean:
	rm -rf build

# --- packaging (docs/operations.md) ----------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=...]: binary, docs (README, docs/, every --help), example configs
# (kept when present) and the systemd units. INSTALL_BIN packages another build (the tests pass theirs).
PREFIX      ?= /usr/local
SYSCONFDIR  ?= /etc
BINDIR      ?= $(PREFIX)/bin
DOCDIR      ?= $(PREFIX)/share/doc/postern
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
INSTALL_BIN ?= $(BIN)
INSTALL_VARS = INSTALL_BIN='$(INSTALL_BIN)' PREFIX='$(PREFIX)' SYSCONFDIR='$(SYSCONFDIR)' BINDIR='$(BINDIR)' \
	DOCDIR='$(DOCDIR)' UNITDIR='$(UNITDIR)' SYSUSERSDIR='$(SYSUSERSDIR)' DESTDIR='$(DESTDIR)'
install: $(INSTALL_BIN)
	@$(INSTALL_VARS) scripts/install.sh
# The configs in SYSCONFDIR stay (they are the operator's).
uninstall:
	@$(INSTALL_VARS) scripts/install.sh --list | awk '{print $$1}' | grep -v '^$(SYSCONFDIR)/' | \
		while read -r f; do rm -f "$(DESTDIR)$$f"; done
# make deb: build/deb/postern_<VERSION>_<arch>.deb (dpkg-deb; units, configs as conffiles, the user postern).
deb: $(INSTALL_BIN)
	@INSTALL_BIN='$(INSTALL_BIN)' scripts/mkdeb.sh
# make oci: build/oci/image, the Containerfile's image as an OCI layout, built without a container engine
# (root: debootstrap, chroot, umoci; docs/operations.md, "Container").
oci: $(INSTALL_BIN)
	@INSTALL_BIN='$(INSTALL_BIN)' scripts/oci-image.sh
# The package on a fresh Debian 12 booted with systemd (debootstrap + systemd-nspawn; root, ~1-3 min).
deb-boot-check: $(INSTALL_BIN)
	@INSTALL_BIN='$(INSTALL_BIN)' scripts/deb-boot-check.sh

# Installs missing Debian packages (as root) and the pinned npm test clients.
deps:
	@scripts/deps.sh

# --- test tiers ------------------------------------------------------------
# Integration tests drive the binary named by POSTERN_BIN with real clients.
integration: $(BIN)
	POSTERN_BIN=$(abspath $(BIN)) scripts/run-integration.sh

# The include rule between src/ folders (docs/internals.md, "Layers") and the naming rule (module prefixes,
# scripts/prefixes.txt), each with proof that its check can fail. Reads the sources only: no build needed.
layers:
	@scripts/layers.sh src && scripts/layers-selftest.sh && scripts/prefixes.sh && scripts/prefixes-selftest.sh

check: deps
	@scripts/check.sh

fuzz: deps
	@scripts/fuzz.sh $${FUZZ_SECONDS:-60}

demo: deps
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh $(abspath $(BIN))

bench: deps
	@$(MAKE) --no-print-directory build
	@bench/run.sh $(abspath $(BIN))

# (this flavour's dependency files only: build/deb holds a Debian root, with files such as invoke-rc.d)
-include $(shell find $(B) -name '*.d' -type f 2>/dev/null)
