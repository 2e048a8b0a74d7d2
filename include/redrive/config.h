/*
 * config: the INI configuration (libinih) with every key of DESIGN.md, its
 * defaults, durations ("30s"), sizes ("25M"), `env:NAME` / `file:PATH`
 * secrets, and the MAILGUN_* environment overrides.  An unknown section or
 * key, or a bad value, is an error that names the file, the line and the
 * reason.  Loaded once at start on the main thread; read-only afterwards,
 * so any thread may read it.
 */
#ifndef REDRIVE_CONFIG_H
#define REDRIVE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redrive/cidr.h"

#define CONFIG_DEFAULT_PATH "/etc/redrive/redrive.conf"
#define CONFIG_MAX_ALLOW 64
#define CONFIG_MAX_SIGNING_KEYS 8
#define CONFIG_MAX_LIST 32
#define CONFIG_ERR_MAX 512

/* An inclusive range of SMTP codes, e.g. 500-554. */
struct config_code_range {
	int lo;
	int hi;
};

struct config {
	char *path; /* the file loaded, or NULL when defaults only */

	struct {
		bool enabled;
		char *listen; /* "host:port", "[v6]:port" */
		char *hostname;
		struct cidr allow[CONFIG_MAX_ALLOW];
		size_t nallow;
		uint64_t max_message_size; /* bytes */
		unsigned max_recipients;
		unsigned max_connections;
		int64_t timeout_ms;
		char *tls_cert;
		char *tls_key;
		char *auth_users;
		bool require_auth;
	} relay;

	struct {
		char *api_key; /* secret: never logged */
		char *domain;
		char *api_base;
		char *signing_keys[CONFIG_MAX_SIGNING_KEYS]; /* secrets */
		size_t nsigning_keys;
		int64_t timeout_ms;
		unsigned concurrency;
		int64_t retry_min_ms;
		int64_t retry_max_ms;
		char
		    *ca_file; /* extra: a CA bundle (tests' local TLS server) */
	} mailgun;

	struct {
		bool enabled;
		char *listen;
		char *path;
		uint64_t max_body;
		int64_t timestamp_window_ms;
		/* Reconciliation through the Events API (core/reconcile.c). */
		int64_t reconcile_after_ms; /* 0: off */
		int64_t reconcile_interval_ms;
		unsigned reconcile_batch; /* messages looked up per round */
	} tracker;

	struct {
		unsigned max_attempts;
		int64_t backoff_base_ms;
		unsigned backoff_factor;
		char *reasons[CONFIG_MAX_LIST];
		size_t nreasons;
		struct config_code_range codes[CONFIG_MAX_LIST];
		size_t ncodes;
		char *never_reasons[CONFIG_MAX_LIST];
		size_t nnever_reasons;
		char *never_enhanced[CONFIG_MAX_LIST];
		size_t nnever_enhanced;
		int64_t storage_ttl_ms;
	} retry;

	struct {
		char *to;
		char *from;
		char *smtp;
		char *smtp_user;
		char *smtp_password; /* secret */
		char *smtp_tls;	     /* "starttls", "tls" or "none" */
		char *smtp_ca_file;  /* extra: CA bundle for smtp; "": system */
		char *webhook_url;
		double failure_rate;
		int64_t failure_window_ms;
		unsigned failure_min;
	} alert;

	struct {
		char *path;
		int64_t retention_ms;
	} store;

	struct {
		char *level; /* "debug", "info", "warn", "error" */
	} log;
};

/*
 * Fills cfg with every default (hostname from gethostname(2)).  Returns 0
 * or -ENOMEM.  The caller frees with config_free().
 */
int config_defaults(struct config *cfg);

/*
 * Loads the defaults, then path over them, then the MAILGUN_* environment
 * overrides, and resolves env:/file: secrets.  On error returns a negative
 * errno code and writes "FILE:LINE: reason" (or "FILE: reason") into err
 * (errlen bytes); cfg is then freed and zeroed.  path NULL: defaults and
 * environment only.
 */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);

/* Frees every string the config owns; NULL-safe; leaves cfg zeroed. */
void config_free(struct config *cfg);

/*
 * Parses a size: a decimal integer with an optional K, M or G suffix
 * (powers of 1024; "B" allowed).  Returns 0 or -EINVAL / -ERANGE.
 */
int config_parse_size(const char *s, uint64_t *out);

/* Parses yes/no/true/false/on/off/1/0; returns 0 or -EINVAL. */
int config_parse_bool(const char *s, bool *out);

/*
 * Splits a listen address "127.0.0.1:2525", "[::1]:2525" or "*:2525" into
 * host (hostlen bytes) and port.  Returns 0 or -EINVAL.
 */
int config_split_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
