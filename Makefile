# redrive: one GNU Makefile. `make` builds the daemon and the CLI into
# build/; MODE=debug|asan|release picks the flags (objects of each mode live
# apart, so switching modes never mixes them).

MODE ?= debug
PREFIX ?= /usr/local
LINK_SENDMAIL ?= no
DESTDIR ?=
CC ?= cc
PYTHON ?= /usr/bin/python3

PKGS := libuv libcurl sqlite3 jansson inih openssl libcrypt libesmtp-1.0
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

# llhttp: a system library where pkg-config knows one, else Debian's
# node-llhttp sources compiled by their own rule with their own flags.
LLHTTP_PC := $(shell pkg-config --exists libllhttp 2>/dev/null && echo yes)
ifeq ($(LLHTTP_PC),yes)
LLHTTP_CFLAGS := $(shell pkg-config --cflags libllhttp)
LLHTTP_LIBS := $(shell pkg-config --libs libllhttp)
LLHTTP_OBJS :=
else
LLHTTP_SRCDIR ?= /usr/share/llhttp
LLHTTP_INCDIR ?= /usr/share/include/llhttp
LLHTTP_CFLAGS := -isystem $(LLHTTP_INCDIR)
LLHTTP_LIBS :=
LLHTTP_OBJS = $(OBJDIR)/llhttp/llhttp.o $(OBJDIR)/llhttp/api.o \
	$(OBJDIR)/llhttp/http.o
endif

WARN := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2 -Wvla -Wimplicit-fallthrough -Werror
CPPFLAGS_ALL := -D_GNU_SOURCE -Iinclude $(PKG_CFLAGS) $(LLHTTP_CFLAGS)

ifeq ($(MODE),release)
OPT := -O2 -g -DNDEBUG -D_FORTIFY_SOURCE=2 -fstack-protector-strong
LDMODE :=
else ifeq ($(MODE),asan)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
LDMODE := -fsanitize=address,undefined
else ifeq ($(MODE),debug)
OPT := -O0 -g
LDMODE :=
else
$(error MODE must be debug, asan or release)
endif

CFLAGS_ALL := $(WARN) $(OPT) $(CFLAGS)
LDFLAGS_ALL := $(LDMODE) $(LDFLAGS)
LIBS := $(PKG_LIBS) $(LLHTTP_LIBS) -lpthread -lm

B := build
OBJDIR := $(B)/obj/$(MODE)

# Every .c under core/ relay/ tracker/ goes into the shared library of
# objects, except the daemon's main; the CLI's files live in cli/.
DAEMON_MAIN := core/redrived.c
LIB_SRCS := $(filter-out $(DAEMON_MAIN),$(sort $(wildcard core/*.c relay/*.c tracker/*.c)))
CLI_SRCS := $(sort $(wildcard cli/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(OBJDIR)/%.o) $(LLHTTP_OBJS)
CLI_OBJS := $(CLI_SRCS:%.c=$(OBJDIR)/%.o)
DAEMON_OBJ := $(DAEMON_MAIN:%.c=$(OBJDIR)/%.o)
SENDMAIL_SRCS := $(sort $(wildcard sendmail/*.c))
SENDMAIL_OBJS := $(SENDMAIL_SRCS:%.c=$(OBJDIR)/%.o)
# The sendmail modules but its main, for the unit tests.
SENDMAIL_LIB_OBJS = $(filter-out $(OBJDIR)/sendmail/redrive_sendmail.o,$(SENDMAIL_OBJS))

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
UNIT_HELPERS := $(filter-out tests/unit/test_%,$(wildcard tests/unit/*.c))

BINS := $(B)/redrived $(B)/redrive
ifneq ($(SENDMAIL_SRCS),)
BINS += $(B)/redrive-sendmail
endif

.PHONY: all deps test unit integration run bench lint format format-check \
	install clean asan fuzz soak valgrind FORCE

all: $(BINS)

# The binaries in build/ are of whatever MODE built them last; a change of
# MODE relinks them (build/.mode records it).
$(B)/.mode: FORCE
	@mkdir -p $(B)
	@if [ "$$(cat $@ 2>/dev/null)" != "$(MODE)" ]; then echo $(MODE) > $@; fi

$(B)/redrived: $(DAEMON_OBJ) $(LIB_OBJS) $(B)/.mode
	$(CC) $(LDFLAGS_ALL) -o $@ $(DAEMON_OBJ) $(LIB_OBJS) $(LIBS)

$(B)/redrive: $(CLI_OBJS) $(LIB_OBJS) $(B)/.mode
	$(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJS) $(LIB_OBJS) $(LIBS)

$(B)/redrive-sendmail: $(SENDMAIL_OBJS) $(LIB_OBJS) $(B)/.mode
	$(CC) $(LDFLAGS_ALL) -o $@ $(SENDMAIL_OBJS) $(LIB_OBJS) $(LIBS)

$(OBJDIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

$(OBJDIR)/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -isystem $(LLHTTP_INCDIR) $(OPT) -w -c -o $@ $<

$(B)/tests/%: tests/unit/%.c $(UNIT_HELPERS) $(LIB_OBJS) $(SENDMAIL_LIB_OBJS) \
    $(B)/.mode
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CMOCKA_CFLAGS) $(CFLAGS_ALL) $(LDFLAGS_ALL) \
	    -o $@ $< $(UNIT_HELPERS) $(LIB_OBJS) $(SENDMAIL_LIB_OBJS) $(LIBS) \
	    $(CMOCKA_LIBS)

-include $(shell find $(B)/obj/$(MODE) -name '*.d' 2>/dev/null)

deps:
	@sh scripts/install-deps.sh

# make test: install what is missing, build, run every unit test, then the
# integration suite against the real daemon.
test: deps
	@$(MAKE) --no-print-directory all unit-bins
	@$(MAKE) --no-print-directory unit integration

.PHONY: unit-bins
unit-bins: $(UNIT_BINS)

unit: $(UNIT_BINS)
	@sh scripts/run-unit.sh $(UNIT_BINS)

# The simulator's own tests run here too: the suite trusts it.
integration: $(BINS)
	@cd tests && REDRIVE_BUILD=$(abspath $(B)) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) \
	    integration mailgun_sim

asan:
	@$(MAKE) --no-print-directory MODE=asan test

run: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/run.sh

# Benchmarks use their own release build, so build/ keeps its MODE.
bench: deps
	@$(MAKE) --no-print-directory MODE=release B=$(B)/release all
	@REDRIVE_BUILD=$(abspath $(B))/release sh tests/bench/run.sh

# The long runs, beyond make test: libFuzzer targets for a bounded time
# (FUZZ_SECS per target), kill -9 rounds under load (SOAK_ROUNDS), and the
# integration suite with the daemon under valgrind.
fuzz: deps
	@FUZZ_B=$(abspath $(B))/fuzz sh scripts/fuzz.sh

soak: deps
	@$(MAKE) --no-print-directory all
	@REDRIVE_BUILD=$(abspath $(B)) sh scripts/soak.sh

valgrind: deps
	@$(MAKE) --no-print-directory MODE=debug B=$(B)/valgrind all unit-bins
	@REDRIVE_BUILD=$(abspath $(B))/valgrind sh scripts/valgrind.sh

LINT_SRCS = $(LIB_SRCS) $(CLI_SRCS) $(DAEMON_MAIN) $(SENDMAIL_SRCS) $(UNIT_SRCS) \
	$(UNIT_HELPERS)
FORMAT_SRCS = $(LINT_SRCS) $(wildcard include/redrive/*.h tests/unit/*.h)

lint: format-check
	@sh scripts/banned.sh $(LINT_SRCS) $(wildcard include/redrive/*.h)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	    --inline-suppr --std=c11 -Iinclude -D_GNU_SOURCE \
	    --suppress=missingIncludeSystem $(LIB_SRCS) $(CLI_SRCS) \
	    $(DAEMON_MAIN) $(SENDMAIL_SRCS)
	@sh scripts/tidy.sh "$(CPPFLAGS_ALL) -std=c11" $(LIB_SRCS) $(CLI_SRCS) \
	    $(DAEMON_MAIN) $(SENDMAIL_SRCS)

format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS)

# make install: FHS paths under PREFIX and DESTDIR.  The configuration goes
# to /etc/redrive (never overwriting one that is there), the store's
# directory is /var/lib/redrive; the unit's ExecStart names PREFIX/sbin.
# LINK_SENDMAIL=yes also links PREFIX/sbin/sendmail to redrive-sendmail
# (nothing else named sendmail is ever touched).
MANPAGES_1 := man/redrive.1
MANPAGES_5 := man/redrive.conf.5
MANPAGES_8 := man/redrived.8 man/redrive-sendmail.8

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin \
	    $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 \
	    $(DESTDIR)$(PREFIX)/share/man/man8 \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0755 $(B)/redrived $(DESTDIR)$(PREFIX)/sbin/redrived
	install -m 0755 $(B)/redrive $(DESTDIR)$(PREFIX)/bin/redrive
	install -m 0755 $(B)/redrive-sendmail \
	    $(DESTDIR)$(PREFIX)/sbin/redrive-sendmail
	install -m 0644 $(MANPAGES_1) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 $(MANPAGES_5) $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0644 $(MANPAGES_8) $(DESTDIR)$(PREFIX)/share/man/man8
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' etc/redrived.service \
	    > $(DESTDIR)$(PREFIX)/lib/systemd/system/redrived.service.tmp
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/redrived.service.tmp
	mv $(DESTDIR)$(PREFIX)/lib/systemd/system/redrived.service.tmp \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system/redrived.service
	install -d -m 0750 $(DESTDIR)/var/lib/redrive
	install -d $(DESTDIR)/etc/redrive
	if [ ! -e $(DESTDIR)/etc/redrive/redrive.conf ]; then \
	    install -m 0640 etc/redrive.conf $(DESTDIR)/etc/redrive/redrive.conf; \
	else echo "install: keeping the existing /etc/redrive/redrive.conf"; fi
	if [ "$(LINK_SENDMAIL)" = yes ]; then \
	    ln -sf redrive-sendmail $(DESTDIR)$(PREFIX)/sbin/sendmail; fi

clean:
	rm -rf $(B)
