/*
 * fdguard: file descriptors under a low RLIMIT_NOFILE.  Each listener
 * (the relay, the tracker) admits a new connection only if its
 * descriptor leaves a reserve free for the rest of the daemon (the store,
 * the forwarder's requests, alerts, the resolver) and, while the other
 * listener holds fewer than FDGUARD_SHARE connections, room for it to
 * reach that many: a flood on one port never starves the other, and the
 * process never reaches EMFILE, where libuv closes new connections
 * without a word.  Loop thread only.
 */
#ifndef REDRIVE_FDGUARD_H
#define REDRIVE_FDGUARD_H

#include <stdbool.h>

/* Connections each listener may always reach, whatever the other does. */
#define FDGUARD_SHARE 16

enum fdguard_who { FDGUARD_RELAY = 0, FDGUARD_TRACKER, FDGUARD_N };

/* The listener runs (true) or stopped (false): room is kept for a
 * running one only. */
void fdguard_listening(enum fdguard_who who, bool on);

/*
 * True when a connection of who on descriptor fd may be kept: fd plus
 * reserve plus the room kept for the other listener is below
 * RLIMIT_NOFILE.  A refusal is logged ("smtp client refused" or "http
 * client refused", with peer, fd, the limit and what was kept free).
 */
bool fdguard_admit(
    enum fdguard_who who, int fd, unsigned reserve, const char *peer);

/* A connection of who was admitted (+1) or closed (-1). */
void fdguard_count(enum fdguard_who who, int delta);

#endif
