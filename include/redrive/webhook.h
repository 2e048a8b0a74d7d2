/*
 * webhook: Mailgun's webhooks, as bytes in and a verified, normalised
 * event out.  No I/O, no store: tracker/tracker.c feeds it the request and
 * records what it returns.  Any thread.
 *
 * Verification (FACTS.md 3.8): the signature is lowercase hex HMAC-SHA256
 * of timestamp||token under a signing key, compared in constant time
 * against every configured key (rotation); the timestamp must lie within
 * the window of now.  Only timestamp and token are signed, not the body:
 * the caller remembers tokens (after commit) and compares the event data
 * of a reused token (webhook_event.digest).
 */
#ifndef REDRIVE_WEBHOOK_H
#define REDRIVE_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEBHOOK_TOKEN_MAX 256

enum webhook_result {
	WEBHOOK_OK = 0,
	WEBHOOK_MALFORMED,     /* 400: not JSON / form, or event-data missing */
	WEBHOOK_BAD_SIGNATURE, /* 401: missing, malformed, or no key matches */
	WEBHOOK_STALE,	       /* 401: timestamp outside the window */
	WEBHOOK_NOMEM,	       /* 503 */
};

/* A Mailgun event, normalised.  Strings are malloc'd, NULL when absent. */
struct webhook_event {
	char *token;	/* signature.token */
	char *event;	/* "delivered", "failed", "accepted", ... as sent */
	char *severity; /* "temporary" / "permanent" for failed */
	char *reason;	/* "old", "bounce", "suppress-bounce", ... */
	char *recipient;
	char *message_id;      /* message.headers.message-id, bare */
	char *redrive_id_text; /* user-variables.redrive-id as sent */
	int64_t redrive_id;    /* parsed; 0 when absent or not a number */
	char *event_id;	       /* event-data.id */
	int64_t at;	       /* event-data.timestamp in ms */
	int code;	       /* delivery-status.code; 0 when absent/invalid */
	char *enhanced_code;   /* delivery-status.enhanced-code ("5.1.1") */
	char *status_message;  /* delivery-status.message or description */
	char *storage_url;     /* storage.url, exactly as sent */
	bool delayed_bounce;   /* flags.is-delayed-bounce */
	char digest[65];       /* hex SHA-256 of the canonical event data: the
				  same event sent again has the same digest */
};

/*
 * Parses and verifies a webhook body of the given Content-Type (JSON, or
 * the legacy application/x-www-form-urlencoded and multipart/form-data
 * formats).  keys: the signing keys; window_ms: the timestamp window;
 * now_ms: the current time.  On WEBHOOK_OK fills ev (free it with
 * webhook_event_clear); otherwise ev is left empty.  A missing or empty
 * Content-Type is taken as JSON; a subaccount's signature.parent-signature
 * under one of the keys verifies too.  Verification comes before the
 * window, and both before event-data is looked at (DESIGN.md "On the
 * wire, precisely"); a well-signed event-data without "event" is OK with
 * ev->event NULL.
 */
enum webhook_result webhook_parse(const char *content_type, const char *body,
    size_t len, const char *const *keys, size_t nkeys, int64_t window_ms,
    int64_t now_ms, struct webhook_event *ev);

/*
 * Checks one signature: hex HMAC-SHA256(key, timestamp || token) against
 * sig, in constant time.  Exposed for the test vectors.
 */
bool webhook_verify(
    const char *key, const char *timestamp, const char *token, const char *sig);

/*
 * Fills ev from an event-data JSON object given as text (len bytes), as
 * webhook_parse() does for a webhook's event-data, with ev->token a copy
 * of token: for events that come from elsewhere (the Events API) and have
 * no signature.  Returns 0 (free ev with webhook_event_clear), -EINVAL
 * (not a JSON object, or no token) or -ENOMEM; on an error ev is empty.
 */
int webhook_event_from_data(
    const char *json, size_t len, const char *token, struct webhook_event *ev);

/* Frees what ev owns; NULL-safe; leaves it zeroed. */
void webhook_event_clear(struct webhook_event *ev);

#endif
