# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# RayOS: one non-recursive Makefile, everything built under $(BUILD).
#
#   make            agent, BPF objects, skeletons, tests
#   make check      every test (tests/run), TAP, ends with "N passed, N failed, N skipped"
#   make bench      benchmarks: figures against a baseline measured in the same run
#   make run        the agent in the foreground on policies/examples
#   make install    binaries, example policies, JSON Schema, systemd unit, the QEMU user
#   make deps       the Debian packages the build and the tests need
#   make vmlinux    regenerate vmlinux.h from the running kernel's BTF

BUILD    ?= build
CC       ?= cc
CLANG    ?= clang
BPFTOOL  ?= bpftool
PREFIX   ?= /usr/local
DESTDIR  ?=
# The user rayos-qemu runs QEMU as (made by make install, tests/deps).
QEMU_USER ?= rayos-qemu

ARCH     := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -Wno-missing-field-initializers \
	    -D_GNU_SOURCE -MMD -MP -I$(BUILD)/include -I. -DRAYOS_QEMU_USER='"$(QEMU_USER)"'
LDLIBS   += -lbpf -lelf -lz -lcjson -lcap -lmicrohttpd -lm \
	    -ltss2-esys -ltss2-tctildr -ltss2-mu -ltss2-rc -lcrypto

BPF_CFLAGS := -O2 -g -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	      -Wno-unused-function -I. -Ibpf/include -MMD -MP

# ---- BPF objects and skeletons -------------------------------------------
BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_NAMES := $(patsubst bpf/%.bpf.c,%,$(BPF_SRCS))
BPF_OBJS  := $(BPF_NAMES:%=$(BUILD)/bpf/%.bpf.o)
BPF_LINKED:= $(BPF_NAMES:%=$(BUILD)/bpf/%.o)
SKELS     := $(BPF_NAMES:%=$(BUILD)/include/%.skel.h)

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c vmlinux.h | $(BUILD)/bpf
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/bpf/%.o: $(BUILD)/bpf/%.bpf.o
	$(BPFTOOL) gen object $@ $<

$(BUILD)/include/%.skel.h: $(BUILD)/bpf/%.o | $(BUILD)/include
	$(BPFTOOL) gen skeleton $< name $* > $@.tmp && mv $@.tmp $@

# ---- host code -------------------------------------------------------------
# librayos.a: everything but main(), so tests link the real code.
LIB_SRCS   := $(filter-out agent/main.c,$(wildcard agent/*.c agent/*/*.c loader/*.c))
LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
AGENT      := $(BUILD)/rayos-agent

$(BUILD)/%.o: %.c | $(SKELS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/librayos.a: $(LIB_OBJS)
	rm -f $@ && $(AR) rcs $@ $^

$(AGENT): $(BUILD)/agent/main.o $(BUILD)/librayos.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# qemu-hooks/NAME.c: one program each (rayos-qemu, the libvirt hook).
HOOK_SRCS := $(wildcard qemu-hooks/*.c)
HOOK_BINS := $(patsubst qemu-hooks/%.c,$(BUILD)/%,$(HOOK_SRCS))

$(BUILD)/%: $(BUILD)/qemu-hooks/%.o $(BUILD)/librayos.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- tests -----------------------------------------------------------------
# tests/<area>/test_*.c: one TAP binary each, linked with tests/lib and librayos.
TEST_LIB_SRCS := $(wildcard tests/lib/*.c)
TEST_LIB_OBJS := $(TEST_LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS     := $(wildcard tests/*/test_*.c)
TEST_BINS     := $(TEST_SRCS:%.c=$(BUILD)/%)
BENCH_SRCS    := $(wildcard tests/*/bench_*.c)
BENCH_BINS    := $(BENCH_SRCS:%.c=$(BUILD)/%)
# tests/<area>/tool_*.c: helpers the shell tests and benchmarks run.
TOOL_SRCS     := $(wildcard tests/*/tool_*.c)
TOOL_BINS     := $(TOOL_SRCS:%.c=$(BUILD)/%)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_LIB_OBJS) $(BUILD)/librayos.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- top-level targets -----------------------------------------------------
all: $(AGENT) $(HOOK_BINS) $(BPF_LINKED) $(TEST_BINS) $(BENCH_BINS) $(TOOL_BINS)

# check, bench and run install their own dependencies first (tests/deps is
# quick when nothing is missing), then build, then run.
check:
	tests/deps
	$(MAKE) all
	BUILD=$(BUILD) tests/run

bench:
	tests/deps
	$(MAKE) all
	BUILD=$(BUILD) tests/bench

# Run the agent for real, in the foreground, on the example policies.
run:
	tests/deps
	$(MAKE) all
	$(AGENT) start --policy-dir policies/examples

install: $(AGENT) $(HOOK_BINS)
	install -D -m 0755 $(AGENT) $(DESTDIR)$(PREFIX)/sbin/rayos-agent
	for b in $(HOOK_BINS); do install -D -m 0755 $$b $(DESTDIR)$(PREFIX)/sbin/; done
	install -d -m 0755 $(DESTDIR)/etc/rayos/policies
	install -m 0644 policies/examples/*.json $(DESTDIR)/etc/rayos/policies/
	install -D -m 0644 policies/rayos-policy.schema.json \
		$(DESTDIR)$(PREFIX)/share/rayos/rayos-policy.schema.json
	install -D -m 0644 agent/rayos-agent.service \
		$(DESTDIR)/lib/systemd/system/rayos-agent.service
	sed -i 's|@SBINDIR@|$(PREFIX)/sbin|' $(DESTDIR)/lib/systemd/system/rayos-agent.service
	install -D -m 0755 qemu-hooks/rayos-qemu-user.sh \
		$(DESTDIR)$(PREFIX)/share/rayos/rayos-qemu-user.sh
	@if [ -z "$(DESTDIR)" ]; then qemu-hooks/rayos-qemu-user.sh $(QEMU_USER); \
	else echo "install: staging root: on the target, run" \
		"$(PREFIX)/share/rayos/rayos-qemu-user.sh $(QEMU_USER) as root"; fi

deps:
	tests/deps

vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h.tmp
	mv vmlinux.h.tmp vmlinux.h

clean:
	rm -rf $(BUILD)

$(BUILD)/bpf $(BUILD)/include:
	mkdir -p $@

.PHONY: all check bench run install deps vmlinux clean
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
