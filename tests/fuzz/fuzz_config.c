/*
 * fuzz_config: libFuzzer target for the configuration loader
 * (core/config.c, inih underneath).  The input is written to a memfd and
 * loaded with config_load() through /proc/self/fd/N, exactly as a file
 * (there is no from-buffer entry).  The MAILGUN_* environment is cleared
 * once so that only the input decides.  "file:" secrets may name any file;
 * reading one is harmless.
 *
 * Asserted beyond "no crash":
 * - the result is 0 or a negative errno code;
 * - on error the message is a non-empty C string naming the file, and the
 *   config is left zeroed (config.h);
 * - on success config_free() leaves it zeroed, and a second load of the
 *   same bytes gives the same result (no hidden state).
 */
/* The assertions are the point: never compiled out. */
#undef NDEBUG
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "redrive/config.h"
#include "redrive/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int fuzz_config_fd = -1;
static char fuzz_config_path[64];

/* True when n bytes at p are all zero. */
static bool
fuzz_config_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/* Clears the environment overrides and opens the memfd once. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const vars[] = { "MAILGUN_API_KEY", "MAILGUN_DOMAIN",
		"MAILGUN_API_BASE", "MAILGUN_WEBHOOK_SIGNING_KEY" };
	char **e;
	size_t i;

	(void)argc;
	(void)argv;
	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	/* Any other MAILGUN_* too. */
	for (e = environ; e != NULL && *e != NULL;) {
		if (strncmp(*e, "MAILGUN_", 8) == 0) {
			char name[128];
			const char *eq = strchr(*e, '=');
			size_t n = eq != NULL ? (size_t)(eq - *e) : strlen(*e);

			if (n >= sizeof(name))
				n = sizeof(name) - 1;
			memcpy(name, *e, n);
			name[n] = '\0';
			unsetenv(name);
			e = environ;
			continue;
		}
		e++;
	}
	log_set_level(LOG_LEVEL_ERROR);
	fuzz_config_fd = memfd_create("fuzz-config", 0);
	assert(fuzz_config_fd >= 0);
	snprintf(fuzz_config_path, sizeof(fuzz_config_path), "/proc/self/fd/%d",
	    fuzz_config_fd);
	return 0;
}

/* Loads the memfd's contents once; returns the result. */
static int
fuzz_config_load(void)
{
	struct config cfg;
	char err[512];
	int r;

	memset(err, 'x', sizeof(err));
	memset(&cfg, 0x5a, sizeof(cfg));
	r = config_load(&cfg, fuzz_config_path, err, sizeof(err));
	assert(r <= 0 && r > -4096);
	if (r < 0) {
		assert(memchr(err, '\0', sizeof(err)) != NULL);
		assert(err[0] != '\0');
		assert(strncmp(err, fuzz_config_path,
			   strlen(fuzz_config_path)) == 0);
		assert(fuzz_config_zero(&cfg, sizeof(cfg)));
		return r;
	}
	config_free(&cfg);
	assert(fuzz_config_zero(&cfg, sizeof(cfg)));
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	int r;

	if (size > 64 * 1024)
		return 0;
	assert(ftruncate(fuzz_config_fd, 0) == 0);
	while (off < size) {
		ssize_t w =
		    pwrite(fuzz_config_fd, data + off, size - off, (off_t)off);

		assert(w > 0);
		off += (size_t)w;
	}
	r = fuzz_config_load();
	assert(fuzz_config_load() == r);
	return 0;
}
